//! `POST /api/auth/token`, `/register`, `/login`, `/introspect`.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::state::AppState;
use actors::auth::{IssueToken, IssuedToken, ROLE_BUYER};

crate::routes! {
    pub fn configure, pub const ROUTES;
    post "/auth/token" => issue_token;
    post "/auth/register" => register;
    post "/auth/login" => login;
    post "/auth/introspect" => introspect;
}

// `/.well-known/jwks.json`, outside `/api`.
crate::routes! {
    pub fn configure_well_known, pub const WELL_KNOWN_ROUTES;
    get "/.well-known/jwks.json" => jwks;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(
    paths(issue_token, register, login, introspect, jwks),
    components(schemas(
        TokenRequest,
        TokenResponse,
        Credentials,
        RegisteredUser,
        IntrospectRequest,
        Introspection,
        Jwks
    ))
)]
pub struct Doc;

/// A JWK set: `{"keys":[…]}`.
#[derive(ToSchema)]
pub struct Jwks {
    /// The public keys (RFC 7517), each with its `kid`; empty when the node signs with the shared
    /// secret.
    pub keys: Vec<serde_json::Value>,
}

/// A registered user.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RegisteredUser {
    pub user_id: String,
    pub username: String,
    /// `["buyer"]`.
    pub roles: Vec<String>,
}

/// What introspection says of a token: `{"active":false}` alone for any token that does not verify.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Introspection {
    pub active: bool,
    pub sub: Option<String>,
    /// `sub`, the seed system's name.
    pub user_id: Option<String>,
    pub roles: Option<Vec<String>>,
    /// Seconds since the epoch.
    pub exp: Option<i64>,
    /// `exp` as an RFC 3339 time, the seed system's name.
    pub expires_at: Option<DateTime<Utc>>,
    pub iat: Option<i64>,
    pub iss: Option<String>,
    /// Whether the mock issuer made it.
    pub mock: Option<bool>,
}

/// The public keys this node's issuer signs with (`auth.signing_key_file`): `{"keys":[…]}`, empty when
/// it signs with the shared secret.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The issuer's public keys", body = Jwks)))]
async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.engine()?.tokens.public_keys();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(json!({ "keys": keys })))
}

/// What the mock issuer is asked for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// 1–64 of `A-Za-z0-9-_.@:`.
    #[schema(pattern = "^[A-Za-z0-9._@:-]{1,64}$")]
    pub user_id: String,
    /// 1–16 roles, each 1–64 of `A-Za-z0-9-_.:`; `["buyer"]` when absent.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 16)]
    pub roles: Option<Vec<String>>,
    /// 1…`auth.max_ttl_seconds` (default `auth.default_ttl_seconds`).
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
}

/// A token as the auth routes answer it: ordersaga's `expiresIn` beside the seed system's `expiresAt`,
/// `userId` and `roles`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
#[utoipa::path(post, path = "/api/auth/token", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 200, description = "A token", body = TokenResponse),
        (status = 400, description = "A bad user id, role or lifetime"),
        (status = 404, description = "The mock issuer is off (`/problems/mock-issuer-off`)")))]
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

/// A username and a password.
#[derive(Debug, Deserialize, ToSchema)]
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
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "The user", body = RegisteredUser),
        (status = 400, description = "Username 3–64 of `A-Za-z0-9-_.@`, password 8–256 bytes"),
        (status = 409, description = "The username is taken (`/problems/username-taken`)"),
        (status = 429, description = "Too many attempts for this address or username (`Retry-After`)")))]
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
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "A token with the user's roles", body = TokenResponse),
        (status = 400, description = "A malformed body"),
        (status = 401, description = "A wrong password or an unknown user (`/problems/invalid-credentials`)"),
        (status = 429, description = "Too many attempts for this address or username (`Retry-After`)")))]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = allowed(&state, &req, body)?;
    let token = state.engine()?.login(username, password).await?;
    Ok(HttpResponse::Ok().json(TokenResponse::from(token)))
}

/// A token to introspect.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    pub token: String,
}

/// `{"active":true,…claims}` for a token that verifies (its claims, and the seed system's `userId` and
/// `expiresAt`), `{"active":false}` for any other (never why).
#[utoipa::path(post, path = "/api/auth/introspect", tag = "auth", request_body = IntrospectRequest,
    responses(
        (status = 200, description = "Whether the token verifies here, and its claims if it does", body = Introspection),
        (status = 400, description = "A malformed body")))]
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
