//! The HTTP routes. Every `/api/...` route also answers under `/api/v1/...`.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;

pub mod admin;
pub mod auth;
pub mod health;
pub mod orders;
pub mod paging;
pub mod release_events;
pub mod sagas;
pub mod stocks;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .configure(crate::dashboard::configure)
        .service(web::scope("/api/v1").configure(api))
        .service(web::scope("/api").configure(api));
}

/// The routes under `/api` (and `/api/v1`).
fn api(cfg: &mut web::ServiceConfig) {
    cfg.configure(auth::configure)
        // Before the stock routes, so that `/stocks/release-events` is not read as a SKU.
        .configure(release_events::configure)
        .configure(stocks::configure)
        .configure(orders::configure)
        .configure(sagas::configure)
        .configure(admin::configure);
}

/// `404` as a problem document for any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
