//! Tokens: JWTs signed with HMAC-SHA256 and the shared secret, or — when `auth.signing_key_file` is
//! set — with this node's RSA or P-256 key (RS256/ES256, its `kid` published at `/.well-known/jwks.json`);
//! tokens of an identity provider verify against its JWKS (`auth.jwks_url`, [`super::keys`]). An HS256
//! token is verified with the shared secret only; an RS256/ES256 token with the key its `kid` names, and
//! only with the algorithm that key is for; `alg: none` and every other algorithm are rejected.
//! Verification requires `exp`, `sub` and the configured `iss` (`iat` is optional, as in JWT itself:
//! issued tokens carry it, a token without it verifies; a provider's tokens must also carry the
//! configured `aud`), and allows a small clock leeway. Tokens the mock issuer signs carry `"mock": true`, and a node can refuse
//! them (`auth.accept_mock_tokens`). Verification is a pure function of the token, so the HTTP extractor
//! calls [`TokenService::verify`] in place.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{KeySet, SigningKey};

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
    /// An RS256/ES256 token whose `kid` no key known here has (the provider may have rotated its keys:
    /// the key set is read again).
    #[error("token signed with an unknown key {0:?}")]
    UnknownKey(String),
}

/// An identity provider whose tokens verify here.
pub struct Provider {
    pub keys: Arc<KeySet>,
    validation: Validation,
}

impl Provider {
    /// Its keys, and the `iss` (and, if given, `aud`) its tokens must carry.
    pub fn new(keys: Arc<KeySet>, issuer: &str, audience: Option<&str>, leeway_seconds: u64) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.leeway = leeway_seconds;
        validation.validate_nbf = true;
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            }
        }
        Self { keys, validation }
    }
}

/// Signs and verifies tokens with one HMAC key.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    accept_mock: bool,
    /// The key this node signs with instead of the shared secret.
    signing: Option<SigningKey>,
    provider: Option<Provider>,
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
            signing: None,
            provider: None,
        }
    }

    /// Signs with `key` (RS256 or ES256) instead of the shared secret; tokens signed with the secret
    /// still verify.
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing = Some(key);
        self
    }

    /// Also accepts the tokens of an identity provider.
    pub fn with_provider(mut self, provider: Provider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The public keys of this node's issuer, as a JWKS document's `keys` (empty when it signs with the
    /// shared secret, which is never published).
    pub fn public_keys(&self) -> Vec<jsonwebtoken::jwk::Jwk> {
        self.signing.iter().map(|key| key.public.clone()).collect()
    }

    /// The identity provider's key set, if one is configured.
    pub fn provider_keys(&self) -> Option<Arc<KeySet>> {
        self.provider.as_ref().map(|p| p.keys.clone())
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
        let signed = match &self.signing {
            Some(key) => {
                let mut header = Header::new(key.algorithm);
                header.kid = Some(key.kid.clone());
                jsonwebtoken::encode(&header, &claims, &key.encoding)
            }
            None => jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding),
        };
        let access_token = signed.map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: ttl.as_secs(),
            claims,
        })
    }

    /// Verifies signature, algorithm, `exp`, `iss` and a non-empty `sub`.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = match header.alg {
            Algorithm::HS256 => decode(token, &self.decoding, &self.validation)?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header.kid.ok_or_else(|| TokenError::Invalid("no kid".into()))?;
                let (key, validation) = match (&self.signing, &self.provider) {
                    (Some(own), _) if own.kid == kid => (own.verifying.clone(), self.own_validation(own)),
                    (_, Some(provider)) => {
                        let key = provider.keys.get(&kid).ok_or(TokenError::UnknownKey(kid))?;
                        let mut validation = provider.validation.clone();
                        validation.algorithms = vec![key.algorithm];
                        (key, validation)
                    }
                    _ => return Err(TokenError::UnknownKey(kid)),
                };
                if key.algorithm != header.alg {
                    return Err(TokenError::Invalid(format!(
                        "{:?} token for a {:?} key",
                        header.alg, key.algorithm
                    )));
                }
                decode(token, &key.key, &validation)?
            }
            other => {
                return Err(TokenError::Invalid(format!(
                    "algorithm {other:?} is not accepted"
                )));
            }
        };
        if claims.sub.trim().is_empty() {
            return Err(TokenError::Invalid("empty sub".into()));
        }
        if claims.mock && !self.accept_mock {
            return Err(TokenError::MockRefused);
        }
        Ok(claims)
    }

    /// The shared secret's rules, for this node's own key's algorithm.
    fn own_validation(&self, own: &SigningKey) -> Validation {
        let mut validation = self.validation.clone();
        validation.algorithms = vec![own.algorithm];
        validation
    }
}

fn decode(
    token: &str,
    key: &jsonwebtoken::DecodingKey,
    validation: &Validation,
) -> Result<Claims, TokenError> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid(e.to_string()),
        })
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
