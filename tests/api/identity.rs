//! Tokens from an identity provider (RS256/ES256 against its JWKS, served on loopback by the test) and
//! from a node that signs with its own key (published at `/.well-known/jwks.json`). Token checks do not
//! touch the database, so these run on SQLite only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, eventually, serve_on_loopback, spawn_app_with};

const IDP: &str = "https://idp.example.test";
const AUDIENCE: &str = "ordersaga-api";

/// A private key made for the test by openssl: `rsa` or `ec` (P-256), as PEM.
fn private_key(kind: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("ordersaga-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.pem");
    let options: &[&str] = match kind {
        "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        _ => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-quiet"])
        .args(options)
        .arg("-out")
        .arg(&path)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey {kind}");
    std::fs::read(&path).unwrap()
}

/// A signing key of the test's identity provider, and its public JWK with `kid`.
struct ProviderKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    public: Jwk,
}

impl ProviderKey {
    fn new(kind: &str, kid: &str) -> Self {
        let pem = private_key(kind);
        let (algorithm, encoding) = match kind {
            "rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap()),
            _ => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap()),
        };
        let mut public = Jwk::from_encoding_key(&encoding, algorithm).unwrap();
        public.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            public,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims(sub: &str, roles: &[&str]) -> Value {
    let exp = chrono::Utc::now().timestamp() + 600;
    json!({"sub": sub, "roles": roles, "iss": IDP, "aud": AUDIENCE, "exp": exp})
}

/// Serves `document` at `http://127.0.0.1:PORT/jwks` until the test ends; the document can change.
fn serve_jwks(document: Arc<Mutex<Value>>) -> String {
    let base = serve_on_loopback(move |cfg| {
        let document = document.clone();
        cfg.route(
            "/jwks",
            actix_web::web::get().to(move || {
                let body = document.lock().unwrap().clone();
                async move { actix_web::HttpResponse::Ok().json(body) }
            }),
        );
    });
    format!("{base}/jwks")
}

/// The status of an admin-only read with `token`.
async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.client
        .get(app.url("/api/sagas"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn tokens_of_an_identity_provider_verify_against_its_jwks_and_attacks_are_refused() {
    ordersaga::runtime::block_on(async {
        let rsa = ProviderKey::new("rsa", "rsa-1");
        let ec = ProviderKey::new("ec", "ec-1");
        let document = Arc::new(Mutex::new(json!({"keys": [rsa.public, ec.public]})));
        let url = serve_jwks(document.clone());
        let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
            s.auth.jwks_url = Some(url);
            s.auth.jwks_issuer = Some(IDP.to_owned());
            s.auth.audience = Some(AUDIENCE.to_owned());
            s.auth.jwks_refresh_seconds = 3600;
        })
        .await
        else {
            return;
        };

        let admin = rsa.sign(&claims("idp-admin", &["admin"]));
        eventually(
            Duration::from_secs(20),
            "the provider's keys to be read",
            || async { (status_with(&app, &admin).await == 200).then_some(()) },
        )
        .await;
        assert_eq!(
            status_with(&app, &ec.sign(&claims("idp-admin", &["admin"]))).await,
            200,
            "ES256"
        );
        assert_eq!(
            status_with(&app, &rsa.sign(&claims("idp-buyer", &["buyer"]))).await,
            403,
            "verified, but not admin"
        );

        let mut wrong_audience = claims("idp-admin", &["admin"]);
        wrong_audience["aud"] = json!("another-api");
        let mut no_audience = claims("idp-admin", &["admin"]);
        no_audience.as_object_mut().unwrap().remove("aud");
        let mut wrong_issuer = claims("idp-admin", &["admin"]);
        wrong_issuer["iss"] = json!("https://evil.example.test");
        let mut expired = claims("idp-admin", &["admin"]);
        expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
        for (what, token) in [
            ("another audience", rsa.sign(&wrong_audience)),
            ("no audience", rsa.sign(&no_audience)),
            ("another issuer", rsa.sign(&wrong_issuer)),
            ("expired", rsa.sign(&expired)),
            (
                "unknown kid",
                ProviderKey::new("rsa", "rsa-unknown").sign(&claims("idp-admin", &["admin"])),
            ),
        ] {
            assert_eq!(status_with(&app, &token).await, 401, "{what}");
        }

        // Algorithm confusion: HS256 with the RSA key's public half (its JWK's modulus, or the whole JWK
        // text) as the HMAC secret, naming the RSA key's kid.
        let public_text = serde_json::to_string(&rsa.public).unwrap();
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.kid = Some("rsa-1".to_owned());
        let confused = jsonwebtoken::encode(
            &hs_header,
            &claims("idp-admin", &["admin"]),
            &EncodingKey::from_secret(public_text.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            status_with(&app, &confused).await,
            401,
            "HS256 signed with the public key"
        );
        // An RS256 header on the EC key's kid, and the EC key's signature under an RS256 header.
        let mut swapped = Header::new(Algorithm::ES256);
        swapped.kid = Some("rsa-1".to_owned());
        let swapped = jsonwebtoken::encode(&swapped, &claims("idp-admin", &["admin"]), &ec.encoding).unwrap();
        assert_eq!(
            status_with(&app, &swapped).await,
            401,
            "ES256 signature on an RSA key"
        );
        // `alg: none`, unsigned.
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
            b64(claims("idp-admin", &["admin"]).to_string().as_bytes())
        );
        assert_eq!(status_with(&app, &none).await, 401, "alg none");

        // The provider rotates: a token with a new kid verifies once the set has been read again.
        let rotated = ProviderKey::new("rsa", "rsa-2");
        document.lock().unwrap()["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::to_value(&rotated.public).unwrap());
        let token = rotated.sign(&claims("idp-admin", &["admin"]));
        eventually(Duration::from_secs(30), "the rotated key to be read", || async {
            (status_with(&app, &token).await == 200).then_some(())
        })
        .await;
    })
    .unwrap();
}

#[test]
fn a_node_that_signs_with_its_own_key_publishes_it_and_another_node_trusts_it() {
    ordersaga::runtime::block_on(async {
        let dir = std::env::temp_dir().join(format!("ordersaga-keys-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("signing.pem");
        std::fs::write(&key_file, private_key("ec")).unwrap();
        let key_path = key_file.to_string_lossy().into_owned();
        let Some(issuer) = spawn_app_with(Backend::Sqlite, |s| s.auth.signing_key_file = Some(key_path)).await
        else { return };

        let token = issuer.token("own-admin", &["admin"]).await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        let kid = header.kid.expect("a kid");
        let jwks: Value = issuer.client.get(issuer.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
        let published: Vec<&str> = jwks["keys"].as_array().unwrap().iter().filter_map(|k| k["kid"].as_str()).collect();
        assert_eq!(published, vec![kid.as_str()]);
        assert!(jwks["keys"][0].get("d").is_none(), "only the public half is published");
        assert_eq!(status_with(&issuer, &token).await, 200);

        // Another node that knows only the JWKS URL (and the issuer's name) trusts the token.
        let url = issuer.url("/.well-known/jwks.json");
        let Some(other) = spawn_app_with(Backend::Sqlite, |s| {
            s.jwt_secret = Some(ordersaga::config::Secret::new("another-secret-another-secret-another-secret"));
            s.auth.jwks_url = Some(url);
            s.auth.jwks_issuer = Some("ordersaga".to_owned());
        })
        .await else { return };
        eventually(Duration::from_secs(20), "the other node to read the issuer's keys", || async {
            (status_with(&other, &token).await == 200).then_some(())
        })
        .await;
        // Its own shared secret differs, so the issuer's HS256 tokens would not verify there; the
        // issuer itself still takes HS256 tokens signed with its secret.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "own-admin", "roles": ["admin"], "iss": "ordersaga", "exp": chrono::Utc::now().timestamp() + 600}),
            &EncodingKey::from_secret(crate::helpers::TEST_SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(status_with(&issuer, &hs).await, 200);
        assert_eq!(status_with(&other, &hs).await, 401);
    })
    .unwrap();
}
