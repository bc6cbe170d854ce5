//! Identities, and the `AuthActor` behind the auth routes. [`tokens`] signs and verifies (the HTTP
//! extractor calls it in place); [`passwords`] hashes within bounds. The actor's work is either hashing
//! or database access; a login takes its hashing turn before it reads the user, so waiting logins hold
//! no database connection.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::db;
use entities::users;

pub mod keys;
pub mod passwords;
pub mod tokens;

use passwords::{DUMMY_HASH, HashTurns, hash_password, validate_credentials, verify_password};
pub use tokens::{Claims, IssuedToken, TokenError, TokenService};

/// May place orders.
pub const ROLE_BUYER: &str = "buyer";
/// May change stock, replay dead letters and read any order.
pub const ROLE_ADMIN: &str = "admin";
/// The roles ordersaga gives a meaning to. A token may carry others (`viewer`, say): they grant nothing,
/// and a route that needs `buyer` or `admin` refuses such a token with `403`.
pub const KNOWN_ROLES: &[&str] = &[ROLE_BUYER, ROLE_ADMIN];
/// Most roles one token of the mock issuer carries.
pub const MAX_ROLES: usize = 16;
/// Longest role name.
pub const MAX_ROLE_LENGTH: usize = 64;

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

impl Actor for AuthActor {
    type Context = Context<Self>;
}

/// Mock issuer: a token for any user and any well-formed roles (`POST /api/auth/token`).
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

/// The mock issuer's `userId`: 1–64 of `A-Za-z0-9-_.@:`. Public for the fuzzers (`tests/fuzz`).
pub fn validate_user_id(user_id: &str) -> Result<(), AuthError> {
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

/// Any well-formed role name is issued: 1–64 of `A-Za-z0-9-_.:`, at most [`MAX_ROLES`] of them. Which
/// roles may do what is the routes' business (authorization), not the issuer's. Public for the fuzzers.
pub fn validate_roles(roles: &[String]) -> Result<(), AuthError> {
    if roles.len() > MAX_ROLES {
        return Err(AuthError::InvalidRequest(format!(
            "a token carries at most {MAX_ROLES} roles"
        )));
    }
    let well_formed = |role: &str| {
        !role.is_empty()
            && role.len() <= MAX_ROLE_LENGTH
            && role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    };
    match roles.iter().find(|r| !well_formed(r)) {
        Some(role) => Err(AuthError::InvalidRequest(format!(
            "role `{}` is not a role name: 1-{MAX_ROLE_LENGTH} characters of letters, digits and -_.:",
            role.chars()
                .take(MAX_ROLE_LENGTH)
                .collect::<String>()
                .escape_debug()
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
            // A name `register` refuses cannot exist: it is an unknown user (the same answer, the
            // same hashing), without asking the database what it may not compare (PostgreSQL
            // refuses a NUL character).
            let user = if passwords::valid_username(&msg.username) {
                users::Entity::find()
                    .filter(users::Column::Username.eq(msg.username))
                    .one(&db)
                    .await?
            } else {
                None
            };
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
