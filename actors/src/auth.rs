//! Tokens, passwords and the `AuthActor`.
//!
//! Tokens are JWTs signed with HMAC-SHA256. Verification accepts only that algorithm (a token with
//! `alg: none` or any other algorithm is rejected), requires `exp`, `sub` and the configured `iss`, and
//! allows a small clock leeway. Tokens the mock issuer signs carry `"mock": true`, and a node can refuse
//! them (`auth.accept_mock_tokens`). Verification is a pure function of the token, so the HTTP extractor
//! calls [`TokenService::verify`] in place; the actor serves the auth routes, where the work is either
//! hashing (argon2, run on the blocking pool, never on the actor's thread) or database access.
//!
//! Hashing is bounded: each argon2 hash takes 19 MiB and a core for a while, so at most
//! `auth.hash_concurrency` run at once; a login or registration waits `auth.hash_wait_ms` for a turn,
//! then gives up with [`AuthError::Busy`] (`503`). A login takes its turn before it reads the user, so
//! waiting logins hold no database connection.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::db;
use entities::users;

/// May place orders.
pub const ROLE_BUYER: &str = "buyer";
/// May change stock, replay dead letters and read any order.
pub const ROLE_ADMIN: &str = "admin";
/// The roles a token may carry.
pub const KNOWN_ROLES: &[&str] = &[ROLE_BUYER, ROLE_ADMIN];

/// Who caused something: the subject of a verified token and its roles. Travels in every event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: String,
    pub roles: Vec<String>,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    pub fn is_admin(&self) -> bool {
        self.has_role(ROLE_ADMIN)
    }
}

/// The claims of an ordersaga token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Signed by the mock issuer (`POST /api/auth/token`), not after a login.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mock: bool,
}

/// A freshly signed token.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

/// Why a token was not accepted. The reasons are logged, never told to the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid: {0}")]
    Invalid(String),
    #[error("tokens of the mock issuer are refused here")]
    MockRefused,
}

/// Signs and verifies tokens with one HMAC key.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    accept_mock: bool,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    /// `accept_mock`: whether tokens of the mock issuer verify.
    pub fn new(secret: &[u8], issuer: &str, leeway_seconds: u64, accept_mock: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            accept_mock,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a token for `user_id` with `roles`, valid for `ttl`; `mock` marks it as the mock issuer's.
    pub fn issue(
        &self,
        user_id: &str,
        roles: &[String],
        ttl: Duration,
        mock: bool,
    ) -> Result<IssuedToken, TokenError> {
        let now = Utc::now().timestamp();
        let ttl_secs =
            i64::try_from(ttl.as_secs()).map_err(|_| TokenError::Invalid("ttl too large".into()))?;
        let claims = Claims {
            sub: user_id.to_owned(),
            roles: roles.to_vec(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            mock,
        };
        let access_token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: ttl.as_secs(),
        })
    }

    /// Verifies signature, algorithm, `exp`, `iss` and a non-empty `sub`.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            }
        })?;
        if data.claims.sub.trim().is_empty() {
            return Err(TokenError::Invalid("empty sub".into()));
        }
        if data.claims.mock && !self.accept_mock {
            return Err(TokenError::MockRefused);
        }
        Ok(data.claims)
    }
}

/// What can go wrong in the auth routes.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("username is taken")]
    UsernameTaken,
    #[error(
        "the mock token issuer is off on this node (auth.mock_issuer); it is on by default only for the \
         embedded defaults on a loopback address"
    )]
    MockIssuerDisabled,
    /// Too many logins or registrations are hashing; trying again shortly may work.
    #[error("too many logins at once; try again shortly")]
    Busy,
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("{0}")]
    Internal(String),
}

/// Issues, introspects, registers and logs in.
pub struct AuthActor {
    db: DatabaseConnection,
    tokens: Arc<TokenService>,
    settings: AuthSettings,
    hashing: HashTurns,
}

impl AuthActor {
    pub fn new(db: DatabaseConnection, tokens: Arc<TokenService>, settings: AuthSettings) -> Self {
        let hashing = HashTurns::new(
            settings.hash_permits(),
            Duration::from_millis(settings.hash_wait_ms),
        );
        Self {
            db,
            tokens,
            settings,
            hashing,
        }
    }
}

/// Turns at hashing: a bounded number at once, a bounded wait for one.
#[derive(Clone)]
struct HashTurns {
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl HashTurns {
    fn new(at_once: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(at_once.max(1))),
            wait,
        }
    }

    /// A turn, or [`AuthError::Busy`] when none came within the wait.
    async fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AuthError> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("auth_hash_busy_total").increment(1);
                Err(AuthError::Busy)
            }
        }
    }
}

impl Actor for AuthActor {
    type Context = Context<Self>;
}

/// Mock issuer: a token for any user and known roles (`POST /api/auth/token`).
#[derive(Message)]
#[rtype(result = "Result<IssuedToken, AuthError>")]
pub struct IssueToken {
    pub user_id: String,
    pub roles: Vec<String>,
    pub ttl_seconds: Option<u64>,
}

/// Whether a token verifies, and what it says (`POST /api/auth/introspect`).
#[derive(Message)]
#[rtype(result = "Option<Claims>")]
pub struct Introspect {
    pub token: String,
}

/// Creates a user with role `buyer` (`POST /api/auth/register`).
#[derive(Message)]
#[rtype(result = "Result<users::Model, AuthError>")]
pub struct Register {
    pub username: String,
    pub password: String,
}

/// Checks a password and issues a token with the user's roles (`POST /api/auth/login`).
#[derive(Message)]
#[rtype(result = "Result<IssuedToken, AuthError>")]
pub struct Login {
    pub username: String,
    pub password: String,
}

fn validate_user_id(user_id: &str) -> Result<(), AuthError> {
    let ok = !user_id.is_empty()
        && user_id.len() <= 64
        && user_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidRequest(
            "userId must be 1-64 characters of letters, digits and -_.@:".into(),
        ))
    }
}

fn validate_roles(roles: &[String]) -> Result<(), AuthError> {
    match roles.iter().find(|r| !KNOWN_ROLES.contains(&r.as_str())) {
        Some(role) => Err(AuthError::InvalidRequest(format!(
            "unknown role `{role}`; known roles are {}",
            KNOWN_ROLES.join(", ")
        ))),
        None => Ok(()),
    }
}

impl Handler<IssueToken> for AuthActor {
    type Result = Result<IssuedToken, AuthError>;

    fn handle(&mut self, msg: IssueToken, _: &mut Self::Context) -> Self::Result {
        if !self.settings.mock_issuer_on() {
            return Err(AuthError::MockIssuerDisabled);
        }
        validate_user_id(&msg.user_id)?;
        validate_roles(&msg.roles)?;
        let ttl = msg.ttl_seconds.unwrap_or(self.settings.default_ttl_seconds);
        if ttl == 0 || ttl > self.settings.max_ttl_seconds {
            return Err(AuthError::InvalidRequest(format!(
                "ttlSeconds must be between 1 and {}",
                self.settings.max_ttl_seconds
            )));
        }
        self.tokens
            .issue(&msg.user_id, &msg.roles, Duration::from_secs(ttl), true)
            .map_err(|e| AuthError::Internal(e.to_string()))
    }
}

impl Handler<Introspect> for AuthActor {
    type Result = Option<Claims>;

    fn handle(&mut self, msg: Introspect, _: &mut Self::Context) -> Self::Result {
        self.tokens.verify(&msg.token).ok()
    }
}

/// A valid argon2 hash of a password nobody has, verified against when the user does not exist so that
/// "no such user" and "wrong password" take the same time.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jf3PBZ5Q7y1F0u0sA2XfYQWm4v8o3Vw9rCqk0r7Yh5k";

async fn hash_password(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Internal(format!("hashing failed: {e}")))
    })
    .await
    .map_err(|e| AuthError::Internal(format!("hashing task failed: {e}")))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, AuthError> {
    tokio::task::spawn_blocking(move || {
        let parsed =
            PasswordHash::new(&hash).map_err(|e| AuthError::Internal(format!("stored hash: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| AuthError::Internal(format!("verification task failed: {e}")))?
}

fn validate_credentials(username: &str, password: &str) -> Result<(), AuthError> {
    let username_ok = (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !username_ok {
        return Err(AuthError::InvalidRequest(
            "username must be 3-64 characters of letters, digits and -_.@".into(),
        ));
    }
    if !(8..=256).contains(&password.len()) {
        return Err(AuthError::InvalidRequest(
            "password must be 8-256 bytes long".into(),
        ));
    }
    Ok(())
}

impl Handler<Register> for AuthActor {
    type Result = ResponseFuture<Result<users::Model, AuthError>>;

    fn handle(&mut self, msg: Register, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let hashing = self.hashing.clone();
        Box::pin(async move {
            validate_credentials(&msg.username, &msg.password)?;
            let turn = hashing.take().await?;
            let password_hash = hash_password(msg.password).await?;
            drop(turn);
            let user = users::ActiveModel {
                id: Set(db::new_id()),
                username: Set(msg.username),
                password_hash: Set(password_hash),
                roles: Set(ROLE_BUYER.to_owned()),
                created_at: Set(db::now()),
            };
            user.insert(&db).await.map_err(|e| {
                if db::is_unique_violation(&e) {
                    AuthError::UsernameTaken
                } else {
                    AuthError::Database(e)
                }
            })
        })
    }
}

impl Handler<Login> for AuthActor {
    type Result = ResponseFuture<Result<IssuedToken, AuthError>>;

    fn handle(&mut self, msg: Login, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let tokens = self.tokens.clone();
        let hashing = self.hashing.clone();
        let ttl = Duration::from_secs(self.settings.default_ttl_seconds);
        Box::pin(async move {
            // The turn first: a login waiting for one holds no database connection.
            let turn = hashing.take().await?;
            let user = users::Entity::find()
                .filter(users::Column::Username.eq(msg.username))
                .one(&db)
                .await?;
            let hash = user
                .as_ref()
                .map(|u| u.password_hash.clone())
                .unwrap_or_else(|| DUMMY_HASH.to_owned());
            let matches = verify_password(msg.password, hash).await.unwrap_or(false);
            drop(turn);
            let user = match user {
                Some(user) if matches => user,
                _ => return Err(AuthError::InvalidCredentials),
            };
            let roles: Vec<String> = user
                .roles
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
            tokens
                .issue(&user.id, &roles, ttl, false)
                .map_err(|e| AuthError::Internal(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        TokenService::new(b"0123456789abcdef0123456789abcdef", "ordersaga", 0, true)
    }

    #[test]
    fn issued_tokens_verify() {
        let s = service();
        let t = s
            .issue("u-1", &["buyer".to_owned()], Duration::from_secs(60), false)
            .unwrap();
        let claims = s.verify(&t.access_token).unwrap();
        assert!(!claims.mock);
        assert_eq!(claims.sub, "u-1");
        assert_eq!(claims.roles, vec!["buyer".to_owned()]);
        assert_eq!(claims.iss, "ordersaga");
    }

    #[test]
    fn a_token_from_another_key_is_rejected() {
        let other = TokenService::new(b"another-key-another-key-another-k", "ordersaga", 0, true);
        let t = other.issue("u-1", &[], Duration::from_secs(60), false).unwrap();
        assert!(service().verify(&t.access_token).is_err());
    }

    #[test]
    fn mock_tokens_are_marked_and_can_be_refused() {
        let key = b"0123456789abcdef0123456789abcdef";
        let t = service()
            .issue("u-1", &[], Duration::from_secs(60), true)
            .unwrap();
        assert!(service().verify(&t.access_token).unwrap().mock);
        let strict = TokenService::new(key, "ordersaga", 0, false);
        assert!(matches!(
            strict.verify(&t.access_token),
            Err(TokenError::MockRefused)
        ));
        let login = service()
            .issue("u-1", &[], Duration::from_secs(60), false)
            .unwrap();
        assert!(strict.verify(&login.access_token).is_ok());
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
