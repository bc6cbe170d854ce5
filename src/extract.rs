//! Extractors: the verified identity of the caller, and the trace id of the request.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use tracing_actix_web::RequestId;

use crate::error::ApiError;
use crate::observability::RequestTrace;
use crate::state::AppState;
use actors::auth::Identity;

/// The caller, proven by a valid bearer token. A handler that takes this argument answers `401` to a
/// request without one; `require` turns a missing role into `403`.
#[derive(Clone, Debug)]
pub struct Authenticated(pub Identity);

impl Authenticated {
    /// `403` unless the caller has `role`.
    pub fn require(&self, role: &str) -> Result<&Identity, ApiError> {
        if self.0.has_role(role) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden(format!("this needs the `{role}` role")))
        }
    }

    /// `403` unless the caller is `user_id` or an admin.
    pub fn require_owner_or_admin(&self, user_id: &str) -> Result<&Identity, ApiError> {
        if self.0.user_id == user_id || self.0.is_admin() {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden("this belongs to another user".to_owned()))
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.0
    }
}

fn authenticate(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".to_owned()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".to_owned()))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            token.trim()
        }
        _ => {
            return Err(ApiError::Unauthorized(
                "expected `Authorization: Bearer <token>`".to_owned(),
            ));
        }
    };
    let claims = state.engine()?.verify_token(token)?;
    Ok(Authenticated(Identity {
        user_id: claims.sub,
        roles: claims.roles,
    }))
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// The trace id of this request (the client's valid `X-Trace-Id`, else the request id), which becomes
/// the `trace_id` of every event it causes.
#[derive(Clone, Debug)]
pub struct TraceId(pub String);

impl FromRequest for TraceId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let extensions = req.extensions();
        let id = extensions
            .get::<RequestTrace>()
            .map(|trace| trace.0.clone())
            .or_else(|| extensions.get::<RequestId>().map(|id| id.to_string()))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        ready(Ok(TraceId(id)))
    }
}
