//! Auth: the mock issuer, register/login, introspection, and tokens that must be refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{TEST_SECRET, TestApp, assert_problem, spawn_app, spawn_app_with};
use crate::on_every_backend;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: &Value, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

fn admin_claims() -> Value {
    json!({"sub": "admin-1", "roles": ["admin"], "iss": "ordersaga", "iat": now(), "exp": now() + 600})
}

/// Tokens that must not be accepted, with what is wrong with each.
fn forged_tokens() -> Vec<(&'static str, String)> {
    let good = sign(&admin_claims(), TEST_SECRET);
    let header_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(admin_claims().to_string());
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims = admin_claims();
    tampered_claims["sub"] = json!("someone-else");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered_claims.to_string()),
        parts[2]
    );
    let mut expired = admin_claims();
    expired["exp"] = json!(now() - 3600);
    let mut wrong_issuer = admin_claims();
    wrong_issuer["iss"] = json!("someone-else");
    let mut no_exp = admin_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_sub = admin_claims();
    no_sub.as_object_mut().unwrap().remove("sub");
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &admin_claims(),
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .unwrap();
    vec![
        (
            "signed with another key",
            sign(&admin_claims(), "another-secret-another-secret-another!"),
        ),
        ("alg none, no signature", format!("{header_none}.{payload}.")),
        (
            "alg none, original signature",
            format!("{header_none}.{payload}.{}", parts[2]),
        ),
        ("payload tampered", tampered),
        ("expired", sign(&expired, TEST_SECRET)),
        ("wrong issuer", sign(&wrong_issuer, TEST_SECRET)),
        ("no exp", sign(&no_exp, TEST_SECRET)),
        ("no sub", sign(&no_sub, TEST_SECRET)),
        ("HS512 instead of HS256", hs512),
        ("not a JWT", "not-a-token".to_owned()),
    ]
}

async fn create_stock_with(app: &TestApp, auth_header: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/stocks"))
        .json(&json!({"skuId": "SKU-1", "availableQty": 1}));
    if let Some(value) = auth_header {
        request = request.header("Authorization", value);
    }
    request.send().await.unwrap()
}

on_every_backend! {
    async fn mock_issuer_issues_a_bearer_token(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let response = app
            .post("/api/auth/token", None, &json!({"userId": "u-1", "roles": ["buyer"], "ttlSeconds": 600}))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["tokenType"], "Bearer");
        assert_eq!(body["expiresIn"], 600);
        let token = body["accessToken"].as_str().unwrap();
        let introspected: Value =
            app.post("/api/auth/introspect", None, &json!({"token": token})).await.json().await.unwrap();
        assert_eq!(introspected["active"], true);
        assert_eq!(introspected["sub"], "u-1");
        assert_eq!(introspected["roles"], json!(["buyer"]));
        assert_eq!(introspected["iss"], "ordersaga");
        assert!(introspected["exp"].as_i64().unwrap() > now());
    }

    async fn mock_issuer_rejects_bad_requests(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let unknown_role = app.post("/api/auth/token", None, &json!({"userId": "u-1", "roles": ["root"]})).await;
        assert_problem(unknown_role, 400).await;
        let no_user = app.post("/api/auth/token", None, &json!({"userId": "", "roles": ["buyer"]})).await;
        assert_problem(no_user, 400).await;
        let huge_ttl =
            app.post("/api/auth/token", None, &json!({"userId": "u-1", "ttlSeconds": 100_000_000})).await;
        assert_problem(huge_ttl, 400).await;
        let malformed = app
            .client
            .post(app.url("/api/auth/token"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_problem(malformed, 400).await;
    }

    async fn mock_issuer_switched_off_answers_404(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.auth.mock_issuer = false).await else { return };
        let response = app.post("/api/auth/token", None, &json!({"userId": "u-1"})).await;
        assert_problem(response, 404).await;
    }

    async fn register_then_login_gives_a_buyer_token(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let credentials = json!({"username": "alice", "password": "correct horse battery"});
        let registered = app.post("/api/auth/register", None, &credentials).await;
        assert_eq!(registered.status(), 201);
        let registered: Value = registered.json().await.unwrap();
        assert_eq!(registered["username"], "alice");
        assert_eq!(registered["roles"], json!(["buyer"]));

        let login = app.post("/api/auth/login", None, &credentials).await;
        assert_eq!(login.status(), 200);
        let login: Value = login.json().await.unwrap();
        assert_eq!(login["tokenType"], "Bearer");
        let token = login["accessToken"].as_str().unwrap();
        let introspected: Value =
            app.post("/api/auth/introspect", None, &json!({"token": token})).await.json().await.unwrap();
        assert_eq!(introspected["active"], true);
        assert_eq!(introspected["sub"], registered["userId"]);
        assert_eq!(introspected["roles"], json!(["buyer"]));
    }

    async fn passwords_are_stored_hashed(backend) {
        use sea_orm::EntityTrait;
        let Some(app) = spawn_app(backend).await else { return };
        let credentials = json!({"username": "bob", "password": "a-very-secret-password"});
        assert_eq!(app.post("/api/auth/register", None, &credentials).await.status(), 201);
        let users = entities::users::Entity::find().all(&app.state.db).await.unwrap();
        assert_eq!(users.len(), 1);
        assert!(users[0].password_hash.starts_with("$argon2"), "{}", users[0].password_hash);
        assert!(!users[0].password_hash.contains("a-very-secret-password"));
    }

    async fn registering_a_taken_username_answers_409(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let credentials = json!({"username": "carol", "password": "password-123"});
        assert_eq!(app.post("/api/auth/register", None, &credentials).await.status(), 201);
        let again = app.post("/api/auth/register", None, &credentials).await;
        assert_problem(again, 409).await;
    }

    async fn registering_with_bad_credentials_answers_400(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let short_password = app.post("/api/auth/register", None, &json!({"username": "dave", "password": "short"})).await;
        assert_problem(short_password, 400).await;
        let bad_name = app.post("/api/auth/register", None, &json!({"username": "a b", "password": "long enough"})).await;
        assert_problem(bad_name, 400).await;
        let missing = app.post("/api/auth/register", None, &json!({"username": "erin"})).await;
        assert_problem(missing, 400).await;
    }

    async fn wrong_password_and_unknown_user_answer_the_same_401(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let credentials = json!({"username": "frank", "password": "right-password"});
        assert_eq!(app.post("/api/auth/register", None, &credentials).await.status(), 201);
        let wrong = app.post("/api/auth/login", None, &json!({"username": "frank", "password": "wrong-password"})).await;
        let wrong = assert_problem(wrong, 401).await;
        let unknown = app.post("/api/auth/login", None, &json!({"username": "nobody", "password": "right-password"})).await;
        let unknown = assert_problem(unknown, 401).await;
        assert_eq!(wrong, unknown);
    }

    async fn forged_tokens_are_refused_and_inactive(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let genuine = sign(&admin_claims(), TEST_SECRET);
        assert_eq!(create_stock_with(&app, Some(&format!("Bearer {genuine}"))).await.status(), 200);
        for (what, token) in forged_tokens() {
            let response = create_stock_with(&app, Some(&format!("Bearer {token}"))).await;
            assert_eq!(response.status(), 401, "{what}");
            assert_eq!(response.headers().get("www-authenticate").unwrap(), "Bearer", "{what}");
            let introspected: Value =
                app.post("/api/auth/introspect", None, &json!({"token": token})).await.json().await.unwrap();
            assert_eq!(introspected, json!({"active": false}), "{what}");
        }
    }

    async fn missing_or_malformed_authorization_answers_401(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        assert_problem(create_stock_with(&app, None).await, 401).await;
        assert_problem(create_stock_with(&app, Some("Bearer")).await, 401).await;
        assert_problem(create_stock_with(&app, Some("Basic dXNlcjpwYXNz")).await, 401).await;
        let token = app.admin_token().await;
        assert_problem(create_stock_with(&app, Some(&token)).await, 401).await;
    }
}
