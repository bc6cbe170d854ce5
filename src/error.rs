//! The one error type of the HTTP boundary, answered as `application/problem+json` (RFC 9457), and every
//! mapping from the engine's errors to it. A problem's `type` names it (`/problems/idempotency-key-reused`,
//! `/problems/insufficient-stock`, …), so a client can tell one failure from another without reading the
//! detail; `docs/api.md` lists them.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use actors::auth::{AuthError, TokenError};
use actors::catalog::CatalogRefusal;
use actors::consumers::inventory::{INSUFFICIENT_STOCK, InventoryError, UNKNOWN_SKU};
use actors::mailbox::dead_letters::DeadLetterError;
use actors::placement::PlaceError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is out of range.
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one that does not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but lacks a role or ownership.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not with this method; the second field is the `Allow` header's value.
    #[error("{0}")]
    MethodNotAllowed(String, String),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but cannot be processed.
    #[error("{0}")]
    Unprocessable(String),
    /// A known problem of the domain: its status, the name of its `type`, and the detail.
    #[error("{2}")]
    Problem(StatusCode, &'static str, String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency (database, broker) is unreachable, or the node is busy; trying again shortly may
    /// work (`Retry-After` says when).
    #[error("{0}")]
    Unavailable(String),
    /// The request ran out of time (`request_timeout_seconds`); it may be retried.
    #[error("{0}")]
    DeadlinePassed(String),
    /// The caller spent its attempts; the next is allowed after the duration (`Retry-After`).
    #[error("{0}")]
    TooManyRequests(String, std::time::Duration),
    /// A bug or an unexpected failure; details are logged, not returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The problem document (RFC 9457), answered as `application/problem+json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// What went wrong, as a stable name: `/problems/<kind>`.
    #[serde(rename = "type")]
    #[schema(example = "/problems/bad-request")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in words.
    pub detail: String,
}

impl ApiError {
    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(..) => "method-not-allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Problem(_, kind, _) => kind,
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::TooManyRequests(..) => "too-many-requests",
            ApiError::DeadlinePassed(_) => "deadline-passed",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
        }
    }

    /// A database error: unreachable is `503`, anything else is internal.
    pub fn database(err: sea_orm::DbErr) -> Self {
        if actors::db::is_transient(&err) {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::Unavailable("the database is unavailable; try again".to_owned())
        } else {
            ApiError::Internal(anyhow::Error::new(err).context("database error"))
        }
    }

    /// An actor did not answer (its mailbox is closed or it stopped).
    pub fn mailbox(err: actix::MailboxError) -> Self {
        ApiError::Unavailable(format!("the engine did not answer: {err}"))
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::database(err)
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(err: actix::MailboxError) -> Self {
        ApiError::mailbox(err)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let detail = err.to_string();
        let problem = |status, kind| ApiError::Problem(status, kind, detail);
        match err {
            AuthError::InvalidRequest(m) => ApiError::BadRequest(m),
            AuthError::InvalidCredentials => problem(StatusCode::UNAUTHORIZED, "invalid-credentials"),
            AuthError::UsernameTaken => problem(StatusCode::CONFLICT, "username-taken"),
            AuthError::MockIssuerDisabled => problem(StatusCode::NOT_FOUND, "mock-issuer-off"),
            AuthError::Busy => problem(StatusCode::SERVICE_UNAVAILABLE, "busy"),
            AuthError::Database(e) => ApiError::database(e),
            AuthError::Internal(m) => ApiError::Internal(anyhow::anyhow!(m)),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        let detail = match &err {
            TokenError::Expired => "the token has expired",
            TokenError::MockRefused => "tokens of the mock issuer are not accepted here",
            TokenError::Invalid(reason) => {
                tracing::debug!(%reason, "rejected token");
                "the token is not valid"
            }
            TokenError::UnknownKey(kid) => {
                tracing::debug!(%kid, "rejected token: unknown key");
                "the token is not valid"
            }
        };
        ApiError::Problem(StatusCode::UNAUTHORIZED, "invalid-token", detail.to_owned())
    }
}

impl From<PlaceError> for ApiError {
    fn from(err: PlaceError) -> Self {
        match err {
            PlaceError::KeyReused => ApiError::Problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                err.to_string(),
            ),
            PlaceError::Expired => {
                ApiError::DeadlinePassed(format!("{err}; retry with the same Idempotency-Key"))
            }
            PlaceError::Catalog(refusal) => {
                let kind = match refusal {
                    CatalogRefusal::Inactive { .. } => "product-inactive",
                    CatalogRefusal::PriceMismatch { .. } => "price-mismatch",
                };
                ApiError::Problem(StatusCode::BAD_REQUEST, kind, refusal.to_string())
            }
            PlaceError::Overloaded => {
                ApiError::Problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded", err.to_string())
            }
            PlaceError::Database(e) => ApiError::database(e),
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(err: InventoryError) -> Self {
        match err {
            InventoryError::InvalidRequest(m) => ApiError::BadRequest(m),
            InventoryError::Database(e) => ApiError::database(e),
            InventoryError::Contended | InventoryError::Unavailable(_) => {
                ApiError::Unavailable(err.to_string())
            }
        }
    }
}

impl From<DeadLetterError> for ApiError {
    fn from(err: DeadLetterError) -> Self {
        match err {
            DeadLetterError::NotFound(_) => ApiError::NotFound(err.to_string()),
            DeadLetterError::NotDead { .. } => {
                ApiError::Problem(StatusCode::CONFLICT, "dead-letter-not-dead", err.to_string())
            }
            DeadLetterError::Transport(_) => ApiError::Unavailable(err.to_string()),
            DeadLetterError::Database(e) => ApiError::database(e),
        }
    }
}

impl ApiError {
    /// A reservation refused for `reason` (`INSUFFICIENT_STOCK`, `UNKNOWN_SKU`): nothing is held.
    pub fn stock_refused(reason: &str) -> Self {
        let kind = match reason {
            INSUFFICIENT_STOCK => "insufficient-stock",
            UNKNOWN_SKU => "unknown-sku",
            _ => "conflict",
        };
        ApiError::Problem(StatusCode::CONFLICT, kind, format!("nothing reserved: {reason}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Problem(status, _, _) => *status,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::DeadlinePassed(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        match self {
            ApiError::Unauthorized(_) | ApiError::Problem(StatusCode::UNAUTHORIZED, ..) => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::Unavailable(_)
            | ApiError::DeadlinePassed(_)
            | ApiError::Problem(StatusCode::SERVICE_UNAVAILABLE, ..) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::MethodNotAllowed(_, allow) => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            ApiError::TooManyRequests(_, after) => {
                // Whole seconds, rounded up: a client that waits as told is not refused again.
                let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                response.insert_header((header::RETRY_AFTER, seconds.max(1)));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

/// Answers extractor failures (JSON body, query string, path) with the same problem documents.
pub mod handlers {
    use actix_web::HttpRequest;
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};

    use super::ApiError;

    pub fn json(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
        let api = match &err {
            JsonPayloadError::OverflowKnownLength { length, limit } => {
                ApiError::PayloadTooLarge(format!("the body is {length} bytes; the limit is {limit}"))
            }
            JsonPayloadError::Overflow { limit } => {
                ApiError::PayloadTooLarge(format!("the body is larger than the limit of {limit} bytes"))
            }
            JsonPayloadError::ContentType => {
                ApiError::UnsupportedMediaType("the body must be application/json".to_owned())
            }
            JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON body: {e}")),
            other => ApiError::BadRequest(format!("unreadable body: {other}")),
        };
        api.into()
    }

    pub fn query(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
        ApiError::BadRequest(format!("bad query parameter: {err}")).into()
    }

    pub fn path(err: PathError, _: &HttpRequest) -> actix_web::Error {
        ApiError::BadRequest(format!("bad path parameter: {err}")).into()
    }
}
