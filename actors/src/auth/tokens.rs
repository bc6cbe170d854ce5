//! Tokens: JWTs signed with HMAC-SHA256. Verification accepts only that algorithm (a token with
//! `alg: none` or any other algorithm is rejected), requires `exp`, `sub` and the configured `iss` (`iat`
//! is optional, as in JWT itself: issued tokens carry it, a token without it verifies), and allows a small
//! clock leeway. Tokens the mock issuer signs carry `"mock": true`, and a node can refuse
//! them (`auth.accept_mock_tokens`). Verification is a pure function of the token, so the HTTP extractor
//! calls [`TokenService::verify`] in place.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims of an ordersaga token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iss: String,
    /// Issued at; optional in JWT, so a token without it verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    pub exp: i64,
    /// Signed by the mock issuer (`POST /api/auth/token`), not after a login.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mock: bool,
}

/// A freshly signed token, and what it says.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub claims: Claims,
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
            iat: Some(now),
            exp: now.saturating_add(ttl_secs),
            mock,
        };
        let access_token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: ttl.as_secs(),
            claims,
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

    /// Signs `claims` as they are, with the key of [`service`].
    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    #[test]
    fn a_token_without_iat_verifies_and_one_without_exp_sub_or_iss_does_not() {
        let exp = Utc::now().timestamp() + 60;
        let claims = service()
            .verify(&signed(
                serde_json::json!({"sub": "u-1", "roles": ["buyer"], "iss": "ordersaga", "exp": exp}),
            ))
            .unwrap();
        assert_eq!(claims.sub, "u-1");
        assert_eq!(claims.iat, None);
        for missing in [
            serde_json::json!({"sub": "u-1", "iss": "ordersaga"}),
            serde_json::json!({"iss": "ordersaga", "exp": exp}),
            serde_json::json!({"sub": "u-1", "exp": exp}),
            serde_json::json!({"sub": "", "iss": "ordersaga", "exp": exp}),
        ] {
            assert!(service().verify(&signed(missing.clone())).is_err(), "{missing}");
        }
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
}
