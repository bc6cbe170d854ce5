//! `POST /api/auth/token`, `/register`, `/login`, `/introspect`.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;
use actors::auth::{IssueToken, IssuedToken, ROLE_BUYER};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/token", web::post().to(issue_token))
        .route("/auth/register", web::post().to(register))
        .route("/auth/login", web::post().to(login))
        .route("/auth/introspect", web::post().to(introspect));
}

/// `/.well-known/jwks.json`, outside `/api`.
pub fn configure_well_known(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jwks.json", web::get().to(jwks));
}

/// The public keys this node's issuer signs with (`auth.signing_key_file`): `{"keys":[…]}`, empty when
/// it signs with the shared secret.
async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.engine()?.tokens.public_keys();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub user_id: String,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    pub ttl_seconds: Option<u64>,
}

/// A token as the auth routes answer it: ordersaga's `expiresIn` beside the seed system's `expiresAt`,
/// `userId` and `roles`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub expires_at: Option<DateTime<Utc>>,
    pub user_id: String,
    pub roles: Vec<String>,
}

/// `exp` (seconds since the epoch) as a time.
fn expires_at(exp: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(exp, 0)
}

impl From<IssuedToken> for TokenResponse {
    fn from(t: IssuedToken) -> Self {
        TokenResponse {
            access_token: t.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: t.expires_in,
            expires_at: expires_at(t.claims.exp),
            user_id: t.claims.sub,
            roles: t.claims.roles,
        }
    }
}

/// Mock issuer: a token for any user (roles default to `buyer`); `404` when switched off.
async fn issue_token(
    state: web::Data<AppState>,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let token = state
        .engine()?
        .issue_token(IssueToken {
            user_id: body.user_id,
            roles: body.roles.unwrap_or_else(|| vec![ROLE_BUYER.to_owned()]),
            ttl_seconds: body.ttl_seconds,
        })
        .await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The credentials of a password route, once the caller may spend an attempt (`429` with `Retry-After`
/// when the client address or the username has none left).
fn allowed(
    state: &AppState,
    req: &HttpRequest,
    body: web::Json<Credentials>,
) -> Result<Credentials, ApiError> {
    let credentials = body.into_inner();
    state
        .throttle
        .attempt(req, &credentials.username)
        .map_err(|refused| {
            tracing::info!(limit = refused.limit.as_str(), "password attempt refused");
            ApiError::TooManyRequests(
                format!(
                    "too many attempts for this {}; try again in {} s",
                    refused.limit.as_str(),
                    refused.retry_after.as_secs().max(1)
                ),
                refused.retry_after,
            )
        })?;
    Ok(credentials)
}

/// Creates a user with role `buyer`; `409` when the username is taken.
async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = allowed(&state, &req, body)?;
    let user = state.engine()?.register(username, password).await?;
    let roles: Vec<&str> = user.roles.split(',').filter(|r| !r.is_empty()).collect();
    Ok(HttpResponse::Created().json(json!({"userId": user.id, "username": user.username, "roles": roles})))
}

/// A token for a registered user; wrong password and unknown user both answer `401`.
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = allowed(&state, &req, body)?;
    let token = state.engine()?.login(username, password).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

#[derive(Debug, Deserialize)]
pub struct IntrospectRequest {
    pub token: String,
}

/// `{"active":true,…claims}` for a token that verifies (its claims, and the seed system's `userId` and
/// `expiresAt`), `{"active":false}` for any other (never why).
async fn introspect(
    state: web::Data<AppState>,
    body: web::Json<IntrospectRequest>,
) -> Result<HttpResponse, ApiError> {
    let claims = state.engine()?.introspect(body.into_inner().token).await?;
    Ok(HttpResponse::Ok().json(match claims {
        Some(c) => {
            json!({
                "active": true,
                "sub": c.sub,
                "userId": c.sub,
                "roles": c.roles,
                "exp": c.exp,
                "expiresAt": expires_at(c.exp),
                "iat": c.iat,
                "iss": c.iss,
                "mock": c.mock,
            })
        }
        None => json!({"active": false}),
    }))
}
