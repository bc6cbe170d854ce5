//! Passwords: argon2id hashes computed on the blocking pool, never on an actor's thread, and at most a
//! bounded number at once. Each hash takes 19 MiB and a core for a while, so at most
//! `auth.hash_concurrency` run together; a login or registration waits `auth.hash_wait_ms` for a turn,
//! then gives up with [`AuthError::Busy`] (`503`).

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::AuthError;

/// Turns at hashing: a bounded number at once, a bounded wait for one.
#[derive(Clone)]
pub(super) struct HashTurns {
    permits: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl HashTurns {
    pub(super) fn new(at_once: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(at_once.max(1))),
            wait,
        }
    }

    /// A turn, or [`AuthError::Busy`] when none came within the wait.
    pub(super) async fn take(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AuthError> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("auth_hash_busy_total").increment(1);
                Err(AuthError::Busy)
            }
        }
    }
}

/// A valid argon2 hash of a password nobody has, verified against when the user does not exist so that
/// "no such user" and "wrong password" take the same time.
pub(super) const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jf3PBZ5Q7y1F0u0sA2XfYQWm4v8o3Vw9rCqk0r7Yh5k";

pub(super) async fn hash_password(password: String) -> Result<String, AuthError> {
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

pub(super) async fn verify_password(password: String, hash: String) -> Result<bool, AuthError> {
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

/// Whether `register` takes this username: 3–64 of `A-Za-z0-9-_.@`.
pub(super) fn valid_username(username: &str) -> bool {
    (3..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

/// A username register takes and a password of 8–256 bytes (register and login). Public for the
/// fuzzers (`tests/fuzz`).
pub fn validate_credentials(username: &str, password: &str) -> Result<(), AuthError> {
    if !valid_username(username) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
