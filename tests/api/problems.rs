//! Problem documents name the problem in their `type`, so a client can tell one failure from another.

use serde_json::{Value, json};

use crate::helpers::{assert_problem, line, spawn_app, spawn_app_with};
use crate::on_every_backend;

async fn kind(response: reqwest::Response, status: u16) -> String {
    let problem: Value = assert_problem(response, status).await;
    problem["type"].as_str().unwrap().to_owned()
}

on_every_backend! {
    async fn a_path_asked_with_a_method_it_does_not_take_answers_405_with_allow(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        for (method, path, allow) in [
            ("DELETE", "/api/stocks", "POST, GET"),
            ("DELETE", "/api/v1/stocks", "POST, GET"),
            ("POST", "/api/stocks/SKU-1", "PUT, GET"),
            ("TRACE", "/health/ready", "GET"),
            ("PATCH", "/swagger-ui/index.html", "GET"),
        ] {
            let response = app
                .client
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
            assert_eq!(kind(response, 405).await, "/problems/method-not-allowed", "{method} {path}");
        }
        // A dashboard answers it as a page.
        let page = app.client.post(app.url("/dashboard/sagas")).send().await.unwrap();
        assert_eq!(page.status(), 405);
        assert_eq!(page.headers()["allow"], "GET");
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        // A path that no route has is still 404.
        assert_eq!(kind(app.get("/api/no-such-thing", None).await, 404).await, "/problems/not-found");
        assert_eq!(kind(app.client.delete(app.url("/api/no-such-thing")).send().await.unwrap(), 404).await, "/problems/not-found");
    }

    async fn a_nul_character_in_a_name_or_a_search_is_refused_or_unknown_never_a_500(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let admin = app.admin_token().await;
        for path in [
            "/api/admin/dead-letters?consumer=q.a%00b",
            "/dashboard/dead-letters?consumer=q.a%00b",
            "/dashboard/sagas?q=a%00b",
        ] {
            let response = app.get(path, Some(&admin)).await;
            assert_eq!(response.status(), 400, "{path}");
            assert!(response.text().await.unwrap().contains("must not contain a NUL character"), "{path}");
        }
        assert_eq!(kind(app.get("/api/stocks/SKU%00-1", None).await, 404).await, "/problems/not-found");
        for verb in ["replay", "discard"] {
            let path = format!("/api/admin/dead-letters/a%00b/{verb}");
            assert_eq!(kind(app.post(&path, Some(&admin), &Value::Null).await, 404).await, "/problems/not-found", "{path}");
        }
        for product in [
            json!({"name": "Kettle\u{0}", "price": "1.00"}),
            json!({"name": "Kettle", "description": "1.7\u{0}l", "price": "1.00"}),
        ] {
            let response = app.client.put(app.url("/api/catalog/products/SKU-NUL")).bearer_auth(&admin).json(&product).send().await.unwrap();
            assert_eq!(kind(response, 400).await, "/problems/bad-request", "{product}");
        }
        // A username that register refuses cannot exist: the answer of an unknown user.
        let login = json!({"username": "a\u{0}b", "password": "long-enough"});
        assert_eq!(kind(app.post("/api/auth/login", None, &login).await, 401).await, "/problems/invalid-credentials");
    }

    async fn problems_name_what_went_wrong(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let buyer = app.buyer_token("u-1").await;
        let admin = app.admin_token().await;
        let first = app.place_order(&buyer, "u-1", "named-1", vec![line("SKU-1", 1, "1.00")]).await;
        assert_eq!(first.status(), 201);
        let reused = app.place_order(&buyer, "u-1", "named-1", vec![line("SKU-1", 2, "1.00")]).await;
        assert_eq!(kind(reused, 422).await, "/problems/idempotency-key-reused");

        app.set_stock("SKU-N", 1).await;
        let short = app.post("/api/stocks/reserve", Some(&admin), &json!({
            "orderId": uuid::Uuid::new_v4().to_string(), "items": [{"skuId": "SKU-N", "quantity": 2}]})).await;
        assert_eq!(kind(short, 409).await, "/problems/insufficient-stock");
        let unknown = app.post("/api/stocks/reserve", Some(&admin), &json!({
            "orderId": uuid::Uuid::new_v4().to_string(), "items": [{"skuId": "NO-SUCH", "quantity": 1}]})).await;
        assert_eq!(kind(unknown, 409).await, "/problems/unknown-sku");

        let credentials = json!({"username": "named-user", "password": "named-password"});
        assert_eq!(app.post("/api/auth/register", None, &credentials).await.status(), 201);
        assert_eq!(kind(app.post("/api/auth/register", None, &credentials).await, 409).await, "/problems/username-taken");
        let wrong = json!({"username": "named-user", "password": "not-the-password"});
        assert_eq!(kind(app.post("/api/auth/login", None, &wrong).await, 401).await, "/problems/invalid-credentials");
        assert_eq!(kind(app.get("/api/sagas", Some("not-a-token")).await, 401).await, "/problems/invalid-token");
        assert_eq!(kind(app.get("/api/sagas", Some(&buyer)).await, 403).await, "/problems/forbidden");
        assert_eq!(kind(app.get("/api/sagas?size=0", Some(&admin)).await, 400).await, "/problems/bad-request");
        assert_eq!(kind(app.post("/api/admin/dead-letters/nope/replay", Some(&admin), &Value::Null).await, 404).await, "/problems/not-found");

        let inactive = json!({"name": "Retired", "price": 1, "active": false});
        assert_eq!(app.put("/api/catalog/products/SKU-OFF", Some(&admin), &inactive).await.status(), 200);
        let refused = app.place_order(&buyer, "u-1", "named-2", vec![line("SKU-OFF", 1, "1")]).await;
        assert_eq!(kind(refused, 400).await, "/problems/product-inactive");

        let Some(checked) = spawn_app_with(backend, |s| s.catalog.check_prices = true).await else { return };
        let admin = checked.admin_token().await;
        let priced = json!({"name": "Priced", "price": "2.50"});
        assert_eq!(checked.put("/api/catalog/products/SKU-P", Some(&admin), &priced).await.status(), 200);
        let buyer = checked.buyer_token("u-1").await;
        let cheaper = checked.place_order(&buyer, "u-1", "named-3", vec![line("SKU-P", 1, "2.49")]).await;
        assert_eq!(kind(cheaper, 400).await, "/problems/price-mismatch");

        let Some(off) = spawn_app_with(backend, |s| s.auth.mock_issuer = Some(false)).await else { return };
        let minted = off.post("/api/auth/token", None, &json!({"userId": "u-1"})).await;
        assert_eq!(kind(minted, 404).await, "/problems/mock-issuer-off");
    }
}
