//! An identity provider's JWKS document (`actors::auth::keys::KeySet::replace_from_json`), on any bytes
//! the provider's URL can answer.
//!
//! Asserts: reading never panics; it holds at most as many keys as the document lists with a `kid`;
//! a key it holds is an RSA key (verifies RS256 only) or an EC P-256 key (ES256 only) whose declared
//! `alg` and `use`, if any, fit; and a token signed by a key the document does not truly hold is
//! refused — this node's P-256 key signs an ES256 token for every `kid` of the document, and only a
//! `kid` whose key is that very public key may verify it; an HS256 token signed with an `oct` key's
//! bytes, or with no signature at all, never verifies.

#![no_main]

use std::sync::{Arc, LazyLock};

use actors::auth::TokenService;
use actors::auth::keys::{KeySet, SigningKey};
use actors::auth::tokens::Provider;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
const IDP_ISSUER: &str = "https://idp.example";
const EC_PEM: &[u8] = include_bytes!("../keys/node-ec.pem");

struct Ours {
    encoding: EncodingKey,
    x: String,
    y: String,
}

static OURS: LazyLock<Ours> = LazyLock::new(|| {
    let key = SigningKey::from_pem(EC_PEM).unwrap_or_else(|e| panic!("test key: {e}"));
    let public = serde_json::to_value(&key.public).unwrap_or_default();
    Ours {
        encoding: key.encoding,
        x: public["x"].as_str().unwrap_or_default().to_owned(),
        y: public["y"].as_str().unwrap_or_default().to_owned(),
    }
});

fn claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "u-1", "iss": IDP_ISSUER, "exp": now + 600, "roles": ["admin"]})
}

fn hs256(secret: &[u8], kid: &str) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(message.as_bytes());
    format!(
        "{message}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn unsigned(alg: &str, kid: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string();
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    )
}

fuzz_target!(|data: &[u8]| {
    let ours = &*OURS;
    let keys = Arc::new(KeySet::default());
    let Ok(held) = keys.replace_from_json(data) else {
        return;
    };
    let document: Value = match serde_json::from_slice(data) {
        Ok(document) => document,
        Err(e) => panic!("a document that is not JSON was read: {e}"),
    };
    let listed: Vec<&Value> = document["keys"]
        .as_array()
        .map(|k| k.iter().collect())
        .unwrap_or_default();
    let with_kid: Vec<(&str, &Value)> = listed
        .iter()
        .filter_map(|k| Some((k.get("kid")?.as_str()?, *k)))
        .collect();
    assert!(
        held <= with_kid.len(),
        "{held} keys held of {} with a kid",
        with_kid.len()
    );

    let service = TokenService::new(SECRET, "ordersaga", 5, true).with_provider(Provider::new(
        keys.clone(),
        IDP_ISSUER,
        None,
        5,
    ));
    // Each kid costs an ES256 signature: the first eight are enough to hold the rule.
    for (kid, _) in with_kid.iter().take(8) {
        if let Some(key) = keys.get(kid) {
            // The held key is one of the document's keys of that kid (the last one that can verify).
            let fits = |jwk: &Value| {
                let kty = jwk["kty"].as_str();
                let kind = match key.algorithm {
                    Algorithm::RS256 => kty == Some("RSA") && jwk.get("alg").is_none_or(|a| a == "RS256"),
                    Algorithm::ES256 => {
                        kty == Some("EC")
                            && jwk["crv"] == "P-256"
                            && jwk.get("alg").is_none_or(|a| a == "ES256")
                    }
                    _ => false,
                };
                kind && jwk.get("use").is_none_or(|u| u == "sig")
            };
            assert!(
                with_kid.iter().any(|(k, jwk)| k == kid && fits(jwk)),
                "key `{kid}` held for {:?}, and no key of the document fits",
                key.algorithm
            );
        }

        // Our P-256 key signs a token for this kid: only our public key may verify it.
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some((*kid).to_owned());
        if let Ok(token) = jsonwebtoken::encode(&header, &claims(), &ours.encoding)
            && service.verify(&token).is_ok()
        {
            let genuine = with_kid.iter().any(|(k, jwk)| {
                k == kid
                    && jwk["x"].as_str() == Some(ours.x.as_str())
                    && jwk["y"].as_str() == Some(ours.y.as_str())
            });
            assert!(
                genuine,
                "an ES256 token verified with key `{kid}`, which is not ours"
            );
        }

        for token in [
            unsigned("none", kid),
            unsigned("ES256", kid),
            unsigned("RS256", kid),
        ] {
            assert!(
                service.verify(&token).is_err(),
                "an unsigned token verified: {token}"
            );
        }
    }
    // An `oct` (HMAC) key is never a key for tokens, whatever its kid.
    for jwk in &listed {
        if let (Some(k), Some(kid)) = (jwk["k"].as_str(), jwk["kid"].as_str())
            && let Ok(secret) = URL_SAFE_NO_PAD.decode(k)
            && secret != SECRET
        {
            let token = hs256(&secret, kid);
            assert!(
                service.verify(&token).is_err(),
                "an HS256 token of a JWKS key verified: {token}"
            );
        }
    }
});
