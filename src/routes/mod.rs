//! The HTTP routes. Every `/api/...` route also answers under `/api/v1/...`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::ApiError;
use crate::state::AppState;

pub mod admin;
pub mod auth;
pub mod catalog;
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
        .configure(auth::configure_well_known)
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
        .configure(catalog::configure)
        .configure(orders::configure)
        .configure(notifications::configure)
        .configure(sagas::configure)
        .configure(admin::configure);
}

/// Middleware: while the engine has not started (a node waiting for its database), and once the node
/// has begun to shut down, every route but the health routes (`/health/*`, `/actuator/*`) and
/// `/metrics` answers `503` with `Retry-After`.
pub async fn starting_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>();
    let (waiting, draining) = state.map_or((false, false), |state| (!state.started(), state.draining()));
    let path = req.path();
    let health = path.starts_with("/health/") || path.starts_with("/actuator/") || path == "/metrics";
    if (waiting || draining) && !health {
        let refusal = if draining {
            AppState::shutting_down()
        } else {
            AppState::not_started()
        };
        return Ok(req.into_response(refusal.error_response()).map_into_right_body());
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
