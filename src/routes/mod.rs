//! The HTTP routes. Every `/api/...` route also answers under `/api/v1/...`.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;

pub mod auth;
pub mod health;
pub mod paging;
pub mod stocks;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .service(web::scope("/api/v1").configure(api))
        .service(web::scope("/api").configure(api));
}

/// The routes under `/api` (and `/api/v1`).
fn api(cfg: &mut web::ServiceConfig) {
    cfg.configure(auth::configure).configure(stocks::configure);
}

/// `404` as a problem document for any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
