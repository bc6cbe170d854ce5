//! Server-side request deadlines: every request answers within `request_timeout_seconds`, before a
//! client that waits about as long gives up, so that an answer never arrives after nobody is listening
//! and work is not done for a client that has gone.
//!
//! A request past its deadline answers `503` (`/problems/deadline-passed`, `Retry-After`), and the work
//! it started is abandoned where it can be: order placement checks the deadline before it commits and
//! rolls back instead. Whether a request that answered `503` took effect cannot always be known (the
//! commit may have been on its way), which is what `Idempotency-Key` is for: the same request with the
//! same key answers the order it placed, or places it.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};

use crate::error::ApiError;
use crate::state::AppState;

/// When the request in hand must have answered.
#[derive(Clone, Copy, Debug)]
pub struct RequestDeadline(pub Instant);

impl RequestDeadline {
    /// The deadline of `req` (none outside the middleware, e.g. in a unit test).
    pub fn of(req: &HttpRequest) -> Option<Instant> {
        req.extensions().get::<RequestDeadline>().map(|d| d.0)
    }
}

/// Middleware: gives the request its deadline and answers `503` when the handler has not answered by then
/// (the handler's future is dropped: whatever it was waiting for is abandoned).
pub async fn request_deadline(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map(|state| Duration::from_secs(state.settings.request_timeout_seconds))
        .unwrap_or(Duration::from_secs(
            crate::config::DEFAULT_REQUEST_TIMEOUT_SECONDS,
        ));
    req.extensions_mut()
        .insert(RequestDeadline(Instant::now() + limit));
    // The request itself cannot be kept for the answer (cloned before routing, it breaks the router):
    // past the deadline the answer is an error, which actix turns into the problem document.
    let path = req.path().to_owned();
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("http_requests_past_deadline_total").increment(1);
            tracing::warn!(%path, seconds = limit.as_secs(), "request abandoned at its deadline");
            Err(ApiError::DeadlinePassed(format!(
                "the request did not complete within {} s and was abandoned; it may or may not have \
                 taken effect: retry it (an order with the same Idempotency-Key)",
                limit.as_secs()
            ))
            .into())
        }
    }
}
