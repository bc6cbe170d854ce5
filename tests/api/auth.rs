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
    let mut no_iss = admin_claims();
    no_iss.as_object_mut().unwrap().remove("iss");
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
        ("no iss", sign(&no_iss, TEST_SECRET)),
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
        assert_eq!(body["userId"], "u-1");
        assert_eq!(body["roles"], json!(["buyer"]));
        let expires_at = chrono::DateTime::parse_from_rfc3339(body["expiresAt"].as_str().unwrap()).unwrap();
        assert!((expires_at.timestamp() - (now() + 600)).abs() <= 5, "expiresAt {expires_at}");
        let token = body["accessToken"].as_str().unwrap();
        let introspected: Value =
            app.post("/api/auth/introspect", None, &json!({"token": token})).await.json().await.unwrap();
        assert_eq!(introspected["active"], true);
        assert_eq!(introspected["sub"], "u-1");
        assert_eq!(introspected["userId"], "u-1");
        assert_eq!(introspected["roles"], json!(["buyer"]));
        assert_eq!(introspected["iss"], "ordersaga");
        assert!(introspected["exp"].as_i64().unwrap() > now());
        assert_eq!(
            chrono::DateTime::parse_from_rfc3339(introspected["expiresAt"].as_str().unwrap()).unwrap().timestamp(),
            introspected["exp"].as_i64().unwrap()
        );
    }

    async fn the_mock_issuer_issues_any_role_name_and_the_routes_decide_what_it_may_do(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let response = app.post("/api/auth/token", None, &json!({"userId": "u-1", "roles": ["viewer"]})).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["roles"], json!(["viewer"]));
        let viewer = format!("Bearer {}", body["accessToken"].as_str().unwrap());
        assert_problem(create_stock_with(&app, Some(&viewer)).await, 403).await;
    }

    async fn a_token_without_iat_is_accepted(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let mut claims = admin_claims();
        claims.as_object_mut().unwrap().remove("iat");
        let token = sign(&claims, TEST_SECRET);
        assert_eq!(create_stock_with(&app, Some(&format!("Bearer {token}"))).await.status(), 200);
        let introspected: Value =
            app.post("/api/auth/introspect", None, &json!({"token": token})).await.json().await.unwrap();
        assert_eq!(introspected["active"], true);
        assert_eq!(introspected["userId"], "admin-1");
    }

    async fn mock_issuer_rejects_bad_requests(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        for role in ["", "two words", "<script>", &"r".repeat(65)] {
            let malformed_role = app.post("/api/auth/token", None, &json!({"userId": "u-1", "roles": [role]})).await;
            assert_problem(malformed_role, 400).await;
        }
        let too_many: Vec<String> = (0..17).map(|i| format!("role-{i}")).collect();
        let too_many_roles = app.post("/api/auth/token", None, &json!({"userId": "u-1", "roles": too_many})).await;
        assert_problem(too_many_roles, 400).await;
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
        let Some(app) = spawn_app_with(backend, |s| s.auth.mock_issuer = Some(false)).await else { return };
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

/// The claims of a token, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn register(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.post(
        "/api/auth/register",
        None,
        &json!({"username": username, "password": password}),
    )
    .await
}

async fn login(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.post(
        "/api/auth/login",
        None,
        &json!({"username": username, "password": password}),
    )
    .await
}

on_every_backend! {
    async fn the_mock_issuer_is_on_by_default_only_for_the_embedded_defaults_on_loopback(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.auth.mock_issuer = None).await else { return };
        let response = app.post("/api/auth/token", None, &json!({"userId": "u-1", "roles": ["admin"]})).await;
        if backend == crate::helpers::Backend::Sqlite {
            assert_eq!(response.status(), 200, "embedded defaults on 127.0.0.1");
            let body: Value = response.json().await.unwrap();
            let token = body["accessToken"].as_str().unwrap();
            assert_eq!(claims_of(token)["mock"], true, "its tokens are marked");
            let introspected: Value = app.post("/api/auth/introspect", None, &json!({"token": token})).await.json().await.unwrap();
            assert_eq!(introspected["mock"], true);
        } else {
            let problem = assert_problem(response, 404).await;
            assert!(problem["detail"].as_str().unwrap().contains("auth.mock_issuer"), "{problem}");
        }
        drop(app);

        // Reachable from elsewhere: off, whatever the database.
        let Some(app) = spawn_app_with(backend, |s| {
            s.auth.mock_issuer = None;
            s.bind = "0.0.0.0:0".to_owned();
        })
        .await else { return };
        let response = app.post("/api/auth/token", None, &json!({"userId": "u-1", "roles": ["admin"]})).await;
        assert_problem(response, 404).await;
    }

    async fn a_node_without_the_mock_issuer_refuses_its_tokens(backend) {
        let Some(minting) = spawn_app(backend).await else { return };
        let mock_admin = minting.admin_token().await;
        assert_eq!(claims_of(&mock_admin)["mock"], true);
        // Same secret, mock issuer off: it refuses mock tokens and takes tokens of logins.
        let Some(strict) = spawn_app_with(backend, |s| s.auth.mock_issuer = Some(false)).await else { return };
        let refused = create_stock_with(&strict, Some(&format!("Bearer {mock_admin}"))).await;
        let problem = assert_problem(refused, 401).await;
        assert!(problem["detail"].as_str().unwrap().contains("mock"), "{problem}");
        assert_eq!(register(&strict, "carol", "carols-password").await.status(), 201);
        let body: Value = login(&strict, "carol", "carols-password").await.json().await.unwrap();
        let token = body["accessToken"].as_str().unwrap();
        assert!(claims_of(token).get("mock").is_none(), "a login's token is not a mock token");
        let order = strict.get(&format!("/api/orders/{}", uuid::Uuid::new_v4()), Some(token)).await;
        assert_problem(order, 404).await;
        // And a node told to accept them does.
        let Some(lenient) = spawn_app_with(backend, |s| {
            s.auth.mock_issuer = Some(false);
            s.auth.accept_mock_tokens = Some(true);
        })
        .await else { return };
        assert_eq!(create_stock_with(&lenient, Some(&format!("Bearer {mock_admin}"))).await.status(), 200);
    }

    async fn guessing_passwords_is_throttled_and_the_right_one_works_after_the_wait(backend) {
        let Some(app) = spawn_app_with(backend, |s| {
            s.auth.limit_per_username = 3;
            s.auth.limit_per_address = 8;
            s.auth.limit_period_seconds = 6;
        })
        .await else { return };
        assert_eq!(register(&app, "dave", "daves-password").await.status(), 201);
        assert_problem(login(&app, "dave", "guess-one").await, 401).await;
        assert_problem(login(&app, "dave", "guess-two").await, 401).await;
        let refused = login(&app, "dave", "daves-password").await;
        let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry_after), "one attempt comes back every 2 s: {retry_after}");
        let problem = assert_problem(refused, 429).await;
        assert!(problem["detail"].as_str().unwrap().contains("username"), "{problem}");
        // Other users are not locked out by dave's guesses.
        assert_eq!(register(&app, "erin", "erins-password").await.status(), 201);

        // Waiting as told, the right password works for the right user.
        tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
        let welcome = login(&app, "dave", "daves-password").await;
        assert_eq!(welcome.status(), 200);

        // One address spraying usernames meets the address limit.
        let mut sprayed = None;
        for i in 0..20 {
            let response = login(&app, &format!("nobody-{i}"), "whatever-pw").await;
            if response.status() == 429 {
                sprayed = Some(assert_problem(response, 429).await);
                break;
            }
            assert_problem(response, 401).await;
        }
        let problem = sprayed.expect("the address ran out of attempts");
        assert!(problem["detail"].as_str().unwrap().contains("address"), "{problem}");
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        assert!(metrics.contains("auth_throttled_total{limit=\"username\"}"), "refusals are counted");
        assert!(metrics.contains("auth_throttled_total{limit=\"address\"}"));
    }
}

/// The peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

on_every_backend! {
    async fn a_flood_of_logins_stays_within_memory_and_does_not_starve_orders(backend) {
        let Some(db) = crate::helpers::TestDb::create(backend).await else { return };
        // No rate limits here: the bound on hashing alone has to hold.
        let env = [("ORDERSAGA_AUTH__LIMIT_PER_ADDRESS", "0"), ("ORDERSAGA_AUTH__LIMIT_PER_USERNAME", "0")];
        let server = crate::config::start_server(&db, &env).await;
        let base = server.address.clone();
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(8)).build().unwrap();
        let before = peak_rss_mib(server.pid());
        let token = |user: &'static str, role: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let body: Value = client.post(format!("{base}/api/auth/token"))
                    .json(&json!({"userId": user, "roles": [role]})).send().await.unwrap().json().await.unwrap();
                body["accessToken"].as_str().unwrap().to_owned()
            }
        };
        let admin = token("admin-1", "admin").await;
        let buyer = token("u-flood", "buyer").await;
        let r = client.post(format!("{base}/api/stocks")).bearer_auth(&admin)
            .json(&json!({"skuId": "FLOOD-1", "availableQty": 5})).send().await.unwrap();
        assert_eq!(r.status(), 200);

        const LOGINS: usize = 384;
        let flood = tokio::spawn({
            let (client, base) = (client.clone(), base.clone());
            futures::future::join_all((0..LOGINS).map(move |i| {
                let (client, base) = (client.clone(), base.clone());
                async move {
                    let r = client.post(format!("{base}/api/auth/login"))
                        .json(&json!({"username": format!("nobody-{i}"), "password": "not-the-password"}))
                        .send().await.expect("every login is answered before the client gives up");
                    (r.status().as_u16(), r.headers().contains_key("retry-after"))
                }
            }))
        });
        // Another user's order while the logins pour in.
        let order = client.post(format!("{base}/api/orders")).bearer_auth(&buyer)
            .header("Idempotency-Key", "during-the-flood")
            .json(&json!({"userId": "u-flood", "items": [crate::helpers::line("FLOOD-1", 1, "3.10")]}))
            .send().await.unwrap();
        assert_eq!(order.status(), 201, "orders go on during a flood of logins");
        let answers = flood.await.unwrap();
        let busy = answers.iter().filter(|(status, _)| *status == 503).count();
        assert!(answers.iter().all(|(status, _)| *status == 401 || *status == 503), "{answers:?}");
        assert!(answers.iter().filter(|(s, _)| *s == 503).all(|(_, retry)| *retry), "503 says when to retry");
        assert!(busy > 0, "more logins than turns: some were told to come back");
        let after = peak_rss_mib(server.pid());
        eprintln!("{backend:?}: peak resident memory {before} MiB before, {after} MiB after {LOGINS} logins ({busy} answered 503)");
        assert!(after < 512, "peak resident memory {after} MiB after {LOGINS} concurrent logins");
    }
}
