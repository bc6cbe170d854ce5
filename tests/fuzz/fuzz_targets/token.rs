//! Bearer token verification (`actors::auth::TokenService::verify`) on a node that signs with the
//! shared secret and its own P-256 key (ES256, as with `auth.signing_key_file`) and also accepts an
//! identity provider's tokens (its JWKS: a P-256 key and an RSA key).
//!
//! Two kinds of input (the first byte picks):
//! - a raw token text, as a client can send it: verification never panics, and a token that verifies
//!   carries a genuine signature — an HMAC-SHA256 with the secret (checked here with the `hmac` crate),
//!   or the ES256/RS256 signature of the key its `kid` names — and acceptable claims;
//! - a header and claims chosen by the fuzzer, signed here in one of eight ways: the right secret,
//!   another secret, no signature, HMAC with the node's public key as the secret (key confusion),
//!   HS384/HS512 with the right secret, the node's P-256 key, the provider's P-256 key. A token verifies
//!   only when its signature is the one its header's `alg` and `kid` name with the right key, and its
//!   claims are acceptable for that issuer (`sub`, `iss`, `exp`, `nbf`, and the provider's `aud`); a
//!   mock token never verifies on a node that refuses them.

#![no_main]

use std::sync::{Arc, LazyLock};

use actors::auth::TokenService;
use actors::auth::keys::{KeySet, SigningKey};
use actors::auth::tokens::Provider;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use ordersaga_fuzz::{claims_acceptable, hmac_signed, token_part};

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
const OTHER_SECRET: &[u8] = b"another-secret-another-secret-anoth";
const ISSUER: &str = "ordersaga";
const IDP_ISSUER: &str = "https://idp.example";
const IDP_AUDIENCE: &str = "ordersaga-api";
const IDP_EC_KID: &str = "idp-ec-1";
const IDP_RSA_KID: &str = "idp-rsa-1";
const LEEWAY: u64 = 5;
const NODE_EC_PEM: &[u8] = include_bytes!("../keys/node-ec.pem");
const IDP_EC_PEM: &[u8] = include_bytes!("../keys/idp-ec.pem");
const IDP_RSA_PEM: &[u8] = include_bytes!("../keys/idp-rsa.pem");

struct Node {
    /// Accepts mock tokens.
    lenient: TokenService,
    /// Refuses mock tokens.
    strict: TokenService,
    own_kid: String,
    own_encoding: EncodingKey,
    own_decoding: DecodingKey,
    /// The node's public key as it publishes it, the bytes an attacker would try as an HMAC secret.
    own_public_json: Vec<u8>,
    idp_ec_encoding: EncodingKey,
    idp_ec_decoding: DecodingKey,
    idp_rsa_decoding: DecodingKey,
}

fn key(pem: &[u8]) -> SigningKey {
    SigningKey::from_pem(pem).unwrap_or_else(|e| panic!("test key: {e}"))
}

fn node() -> Node {
    let (idp_ec, idp_rsa) = (key(IDP_EC_PEM), key(IDP_RSA_PEM));
    let published = |k: &SigningKey, kid: &str| {
        let mut public = k.public.clone();
        public.common.key_id = Some(kid.to_owned());
        public
    };
    let keys = Arc::new(KeySet::default());
    let document =
        serde_json::json!({ "keys": [published(&idp_ec, IDP_EC_KID), published(&idp_rsa, IDP_RSA_KID)] });
    assert_eq!(keys.replace_from_json(document.to_string().as_bytes()), Ok(2));
    let service = |accept_mock| {
        TokenService::new(SECRET, ISSUER, LEEWAY, accept_mock)
            .with_signing_key(key(NODE_EC_PEM))
            .with_provider(Provider::new(
                keys.clone(),
                IDP_ISSUER,
                Some(IDP_AUDIENCE),
                LEEWAY,
            ))
    };
    let own = key(NODE_EC_PEM);
    Node {
        lenient: service(true),
        strict: service(false),
        own_kid: own.kid.clone(),
        own_public_json: serde_json::to_vec(&own.public).unwrap_or_default(),
        own_encoding: own.encoding,
        own_decoding: own.verifying.key,
        idp_ec_encoding: idp_ec.encoding,
        idp_ec_decoding: idp_ec.verifying.key,
        idp_rsa_decoding: idp_rsa.verifying.key,
    }
}

static NODE: LazyLock<Node> = LazyLock::new(node);

fn genuine(token: &str, key: &DecodingKey, algorithm: Algorithm) -> bool {
    let (message, signature) = token.rsplit_once('.').unwrap_or_default();
    matches!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, algorithm),
        Ok(true)
    )
}

/// The key and issuer rules a token that verified must have met, from its header.
fn check_accepted(node: &Node, token: &str, claims: &actors::auth::Claims, strict: bool) {
    let header = token_part(token, 0).unwrap_or_default();
    let payload = token_part(token, 1).unwrap_or_default();
    let alg = header["alg"].as_str().unwrap_or_default();
    let kid = header["kid"].as_str().unwrap_or_default();
    let (issuer, audience) = match (alg, kid) {
        ("HS256", _) => {
            assert!(
                hmac_signed(token, SECRET),
                "HS256 token without the secret's signature: {token}"
            );
            (ISSUER, None)
        }
        ("ES256", kid) if kid == node.own_kid => {
            assert!(
                genuine(token, &node.own_decoding, Algorithm::ES256),
                "ES256 token not signed by the node's key: {token}"
            );
            (ISSUER, None)
        }
        ("ES256", IDP_EC_KID) => {
            assert!(
                genuine(token, &node.idp_ec_decoding, Algorithm::ES256),
                "ES256 token not signed by the provider's key: {token}"
            );
            (IDP_ISSUER, Some(IDP_AUDIENCE))
        }
        ("RS256", IDP_RSA_KID) => {
            assert!(
                genuine(token, &node.idp_rsa_decoding, Algorithm::RS256),
                "RS256 token not signed by the provider's key: {token}"
            );
            (IDP_ISSUER, Some(IDP_AUDIENCE))
        }
        (alg, kid) => panic!("a token with alg {alg:?} and kid {kid:?} verified: {token}"),
    };
    assert!(
        claims_acceptable(&payload, issuer, audience, LEEWAY as i64),
        "claims accepted that should not be: {payload}"
    );
    assert_eq!(claims.sub, payload["sub"].as_str().unwrap_or_default());
    if strict {
        assert!(!claims.mock && payload.get("mock") != Some(&serde_json::Value::Bool(true)));
    }
}

fn verify_both(node: &Node, token: &str) {
    if let Ok(claims) = node.lenient.verify(token) {
        check_accepted(node, token, &claims, false);
    }
    if let Ok(claims) = node.strict.verify(token) {
        check_accepted(node, token, &claims, true);
    }
}

fn hmac_b64<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &str) -> String {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// `header` and `claims` (the fuzzer's bytes, as they are) signed in the way `how` picks.
fn signed(node: &Node, how: u8, header: &[u8], claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = match how % 8 {
        0 => hmac_b64::<Hmac<sha2::Sha256>>(SECRET, &message),
        1 => hmac_b64::<Hmac<sha2::Sha256>>(OTHER_SECRET, &message),
        2 => String::new(),
        3 => hmac_b64::<Hmac<sha2::Sha256>>(&node.own_public_json, &message),
        4 => hmac_b64::<Hmac<sha2::Sha384>>(SECRET, &message),
        5 => hmac_b64::<Hmac<sha2::Sha512>>(SECRET, &message),
        6 => jsonwebtoken::crypto::sign(message.as_bytes(), &node.own_encoding, Algorithm::ES256)
            .unwrap_or_default(),
        _ => jsonwebtoken::crypto::sign(message.as_bytes(), &node.idp_ec_encoding, Algorithm::ES256)
            .unwrap_or_default(),
    };
    format!("{message}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let node = &*NODE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 128 {
        // A raw token.
        if let Ok(token) = std::str::from_utf8(rest) {
            verify_both(node, token);
        }
        return;
    }
    // A header and claims, split at the first 0xff (never in UTF-8 text), signed here.
    let (header, claims) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
    };
    let token = signed(node, mode, header, claims);
    verify_both(node, &token);
});
