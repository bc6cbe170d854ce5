//! Asymmetric keys: the key this node's issuer signs with (`auth.signing_key_file`, RS256 or ES256),
//! and the keys of an identity provider read from its JWKS (`auth.jwks_url`). Tokens signed with either
//! are chosen by their `kid`, and only with the algorithm that the key's type allows: an RSA key verifies
//! RS256 only and a P-256 key ES256 only, so a token cannot pick an algorithm its key was not made for
//! (an HS256 token never meets these keys: it is verified with the shared secret alone).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// A verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The key this node signs its tokens with.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    /// Its public half, as published at `/.well-known/jwks.json`.
    pub public: Jwk,
    pub verifying: VerifyingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A PEM private key: RSA (signs RS256) or EC P-256 (signs ES256), PKCS#8 or the key's own format.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (algorithm, encoding) = match EncodingKey::from_rsa_pem(pem) {
            Ok(key) => (Algorithm::RS256, key),
            Err(_) => match EncodingKey::from_ec_pem(pem) {
                Ok(key) => (Algorithm::ES256, key),
                Err(e) => return Err(format!("not an RSA or P-256 private key in PEM: {e}")),
            },
        };
        let mut public =
            Jwk::from_encoding_key(&encoding, algorithm).map_err(|e| format!("its public key: {e}"))?;
        if algorithm == Algorithm::ES256
            && !matches!(&public.algorithm, AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256)
        {
            return Err("an EC key must be on P-256 (ES256)".to_owned());
        }
        let kid = public.thumbprint(ThumbprintHash::SHA256);
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let verifying = verifying_key(&public).ok_or("its public key does not verify")?;
        Ok(Self {
            kid,
            algorithm,
            encoding,
            public,
            verifying,
        })
    }
}

/// The algorithm a JWK may verify, and its decoding key; `None` for a key of another kind (an HMAC key,
/// EdDSA, RSA-PSS, another curve), or one whose declared `alg` does not fit its type.
fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let declared_fits = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => algorithm == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
        Some(_) => false,
    };
    if !declared_fits
        || jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { algorithm, key })
}

/// The identity provider's keys by `kid`, replaced whole at each refresh.
#[derive(Default)]
pub struct KeySet {
    keys: RwLock<HashMap<String, VerifyingKey>>,
    /// Woken when a token names a `kid` the set does not hold.
    unknown_kid: Notify,
}

/// Where a JWKS document is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

impl JwksSource {
    /// `http(s)://…`, `file:///…` or a path; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.starts_with("http://") || text.starts_with("https://") {
            Some(Self::Url(text.to_owned()))
        } else if let Some(path) = text.strip_prefix("file://") {
            (!path.is_empty()).then(|| Self::File(PathBuf::from(path)))
        } else if !text.is_empty() && !text.contains("://") {
            Some(Self::File(PathBuf::from(text)))
        } else {
            None
        }
    }

    async fn read(&self, client: &reqwest::Client) -> Result<Vec<u8>, String> {
        match self {
            Self::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display())),
            Self::Url(url) => {
                let response = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("{url}: {}", response.status()));
                }
                Ok(response
                    .bytes()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?
                    .to_vec())
            }
        }
    }
}

/// Shortest pause between two readings caused by unknown `kid`s.
const UNKNOWN_KID_PAUSE: Duration = Duration::from_secs(10);
/// Pause after a failed reading before the next attempt.
const RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Keeps `keys` filled from `source`: now, every `every`, and when a token names an unknown `kid` (at
/// most every [`UNKNOWN_KID_PAUSE`]). A failed reading keeps the keys it had. Runs for as long as the
/// actix system does.
pub async fn refresh(keys: Arc<KeySet>, source: JwksSource, every: Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut last = None::<Instant>;
    loop {
        if let Some(at) = last {
            let since = at.elapsed();
            if since < UNKNOWN_KID_PAUSE {
                tokio::time::sleep(UNKNOWN_KID_PAUSE - since).await;
            }
        }
        last = Some(Instant::now());
        let wait = match source
            .read(&client)
            .await
            .and_then(|document| keys.replace_from_json(&document))
        {
            Ok(n) => {
                metrics::counter!("jwks_refreshes_total", "outcome" => "ok").increment(1);
                tracing::info!(keys = n, source = ?source, "jwks: identity provider keys read");
                every
            }
            Err(e) => {
                metrics::counter!("jwks_refreshes_total", "outcome" => "failed").increment(1);
                tracing::warn!(error = %e, "jwks: cannot read the identity provider's keys; keeping the last ones");
                RETRY_PAUSE.min(every)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = keys.unknown_kid.notified() => {}
        }
    }
}

impl KeySet {
    /// Replaces the keys with those of a JWKS document; keys without a `kid` or of a kind that cannot
    /// verify RS256/ES256 are left out. Answers how many keys it holds now; a document that does not
    /// parse changes nothing.
    pub fn replace_from_json(&self, document: &[u8]) -> Result<usize, String> {
        let set: JwkSet =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let keys: HashMap<String, VerifyingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, verifying_key(jwk)?)))
            .collect();
        let n = keys.len();
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys;
        }
        Ok(n)
    }

    /// The key of `kid`, if the set holds it; asks for the set to be read again if not.
    pub fn get(&self, kid: &str) -> Option<VerifyingKey> {
        let key = self.keys.read().ok()?.get(kid).cloned();
        if key.is_none() {
            self.unknown_kid.notify_one();
        }
        key
    }
}
