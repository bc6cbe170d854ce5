//! The HTTP routes. Every `/api/...` route also answers under `/api/v1/...`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::ApiError;
use crate::state::AppState;

pub mod admin;
pub mod auth;
pub mod health;
pub mod notifications;
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
        .configure(notifications::configure)
        .configure(sagas::configure)
        .configure(admin::configure);
}

/// Middleware: while the engine has not started (a node waiting for its database), every route but the
/// health routes and `/metrics` answers `503` with `Retry-After`.
pub async fn starting_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let waiting = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| !state.started());
    let path = req.path();
    if waiting && !(path.starts_with("/health/") || path == "/metrics") {
        let refusal = AppState::not_started().error_response();
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// `404` as a problem document for any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
