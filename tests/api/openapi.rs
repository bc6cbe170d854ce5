//! The OpenAPI document: it lists exactly the routes the router answers, the responses of real calls
//! match its schemas, and Swagger UI is served by the node itself.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::fixtures::{insert_dead_letter, insert_releases, release_row};
use crate::helpers::{SAGA_WAIT, TestApp, content_type, eventually, line, spawn_app};
use crate::on_every_backend;

/// The methods a route may have.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// The document as the node serves it.
async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// (method, path) of every operation of the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method.to_lowercase()).is_some() {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

/// A path pattern of the router as OpenAPI writes it: `{file:.*}` → `{file}`.
fn openapi_path(pattern: &str) -> String {
    let mut out = String::new();
    let (mut in_parameter, mut in_regex) = (false, false);
    for c in pattern.chars() {
        match c {
            '{' => {
                in_parameter = true;
                out.push(c);
            }
            '}' => {
                (in_parameter, in_regex) = (false, false);
                out.push(c);
            }
            ':' if in_parameter => in_regex = true,
            _ if in_regex => {}
            _ => out.push(c),
        }
    }
    out
}

/// The router's routes, as the registration declares them.
fn registered() -> BTreeSet<(String, String)> {
    ordersaga::routes::table()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), openapi_path(&path)))
        .collect()
}

/// Whether a concrete path is one that `template` matches (a parameter matches one segment).
fn matches(template: &str, path: &str) -> bool {
    let (template, path): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template
            .iter()
            .zip(&path)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// A path with sample values in its parameters.
fn sample(path: &str) -> String {
    path.replace("{skuId}", "SKU-DOC")
        .replace("{orderId}", &uuid::Uuid::new_v4().to_string())
        .replace("{id}", "no-such-letter")
        .replace("{file}", "index.html")
}

/// Calls `method path` without a token (a JSON body `{}` for writes), following no redirect.
async fn call(app: &TestApp, method: &str, path: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client.request(method.clone(), app.url(path));
    if method != Method::GET {
        request = request.json(&json!({}));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = content_type(&response);
    (status, content_type, response.text().await.unwrap())
}

/// Whether an answer is the router's "no such route": its `404` problem, or the dashboards' `404` page
/// for a path under `/dashboard` that no page has.
fn is_no_route(status: u16, content_type: &str, body: &str) -> bool {
    if status != 404 {
        return false;
    }
    if content_type.starts_with("application/problem+json") {
        let problem: Value = serde_json::from_str(body).unwrap();
        return problem["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("no route for");
    }
    content_type.starts_with("text/html") && body.contains("there is no dashboard at")
}

/// The schema the document gives for `method template` answering `status` as `content_type`.
fn response_schema(doc: &Value, method: &str, template: &str, status: u16, content_type: &str) -> Value {
    let operation = &doc["paths"][template][method.to_lowercase()];
    assert!(
        operation.is_object(),
        "{method} {template} is not in the document"
    );
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which the document does not list: {}",
        operation["responses"]
    );
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let schema = &response["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status}: the document has no schema for {media}: {}",
        response["content"]
    );
    schema.clone()
}

/// How `body` differs from the document's schema for the answer (nothing when it matches).
fn violations(
    doc: &Value,
    method: &str,
    template: &str,
    status: u16,
    content_type: &str,
    body: &Value,
) -> Vec<String> {
    let schema = response_schema(doc, method, template, status, content_type);
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("{method} {template} {status}: the schema does not compile: {e}"));
    validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Asserts that `body` matches the document's schema for the answer.
fn assert_matches(doc: &Value, method: &str, template: &str, status: u16, content_type: &str, body: &Value) {
    let errors = violations(doc, method, template, status, content_type, body);
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: the answer does not match the document:\n{}\n{body}",
        errors.join("\n")
    );
}

/// Sends a request and checks its answer against the document; returns status and body.
#[allow(clippy::too_many_arguments)]
async fn checked(
    app: &TestApp,
    doc: &Value,
    method: &str,
    template: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app
        .client
        .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = content_type(&response);
    let body: Value = response.json().await.unwrap();
    assert_matches(doc, method, template, status, &content_type, &body);
    (status, body)
}

on_every_backend! {
    async fn the_document_and_the_router_list_the_same_routes(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let doc = document(&app).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let springdoc: Value = app.get("/v3/api-docs", None).await.json().await.unwrap();
        assert_eq!(springdoc, doc, "/v3/api-docs serves the same document");

        let documented = documented(&doc);
        let registered = registered();
        let missing: Vec<_> = registered.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&registered).collect();
        assert!(missing.is_empty(), "registered but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not registered: {extra:?}");
        assert!(documented.len() > 40, "{documented:?}");
        let ids: Vec<&str> = doc["paths"].as_object().unwrap().values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|operation| operation["operationId"].as_str())
            .collect();
        assert_eq!(ids.len(), documented.len(), "every operation has an id");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "operation ids are unique: {ids:?}");
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(doc["paths"]["/api/orders"]["post"]["security"], json!([{"bearer": []}]));
        assert!(doc["paths"]["/api/stocks/{skuId}"]["get"].get("security").is_none(), "reading stock needs no token");
        assert!(doc["info"]["description"].as_str().unwrap().contains("/api/v1/"), "the aliases are noted");

        // Every documented operation is answered by a route (not the router's 404), under /api/v1 too.
        for (method, path) in &documented {
            let concrete = sample(path);
            let (status, content_type, body) = call(&app, method, &concrete).await;
            assert!(!is_no_route(status, &content_type, &body), "{method} {path}: no route answered ({body})");
            if let Some(rest) = concrete.strip_prefix("/api/") {
                let alias = format!("/api/v1/{rest}");
                let (status, content_type, body) = call(&app, method, &alias).await;
                assert!(!is_no_route(status, &content_type, &body), "{method} {alias}: no route answered ({body})");
            }
        }
        // And no other method of those paths is: the document has every method the router has, and the
        // router answers any other `405` with the documented ones in `Allow`.
        let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
        for path in paths {
            for method in METHODS {
                let concrete = sample(path);
                // `PUT /api/stocks/release-events` is `PUT /api/stocks/{skuId}`.
                let another = documented.iter().any(|(m, template)| m == method && matches(template, &concrete));
                if another {
                    continue;
                }
                let response = app
                    .client
                    .request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(&concrete))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
                let body = response.text().await.unwrap();
                assert_eq!(status, 405, "{method} {path} answered {status} but is not documented: {body}");
                let allowed: BTreeSet<String> = allow.unwrap_or_default().split(", ").map(str::to_owned).collect();
                let expected: BTreeSet<String> = documented
                    .iter()
                    .filter(|(_, template)| matches(template, &concrete))
                    .map(|(m, _)| m.clone())
                    .collect();
                assert_eq!(allowed, expected, "{method} {path}: Allow");
            }
        }
    }

    async fn answers_match_the_documents_schemas(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let doc = document(&app).await;
        let d = &doc;
        // The check can fail: a stock row with a number for its SKU, or without its version, does not match.
        let json = "application/json";
        assert!(!violations(d, "GET", "/api/stocks/{skuId}", 200, json, &json!({"skuId": 1})).is_empty());
        let unversioned = json!({"skuId": "S", "availableQty": 1, "reservedQty": 0, "updatedAt": "2026-11-21T05:44:02Z"});
        assert!(!violations(d, "GET", "/api/stocks/{skuId}", 200, json, &unversioned).is_empty());
        assert!(!violations(d, "GET", "/api/stocks", 200, json, &json!({"items": [{"skuId": "S"}]})).is_empty());

        let (status, token) = checked(&app, d, "POST", "/api/auth/token", "/api/auth/token", None,
            Some(json!({"userId": "admin-1", "roles": ["admin"]})), &[]).await;
        assert_eq!(status, 200);
        let admin = token["accessToken"].as_str().unwrap().to_owned();
        let buyer = app.buyer_token("u-doc").await;
        let credentials = json!({"username": "doc-user", "password": "doc-password"});
        assert_eq!(checked(&app, d, "POST", "/api/auth/register", "/api/auth/register", None, Some(credentials.clone()), &[]).await.0, 201);
        assert_eq!(checked(&app, d, "POST", "/api/auth/register", "/api/auth/register", None, Some(credentials.clone()), &[]).await.0, 409);
        assert_eq!(checked(&app, d, "POST", "/api/auth/login", "/api/auth/login", None, Some(credentials), &[]).await.0, 200);
        let wrong = json!({"username": "doc-user", "password": "not-the-password"});
        assert_eq!(checked(&app, d, "POST", "/api/auth/login", "/api/auth/login", None, Some(wrong), &[]).await.0, 401);
        let (_, active) = checked(&app, d, "POST", "/api/auth/introspect", "/api/auth/introspect", None, Some(json!({"token": buyer})), &[]).await;
        assert_eq!(active["active"], true);
        let (_, inactive) = checked(&app, d, "POST", "/api/auth/introspect", "/api/auth/introspect", None, Some(json!({"token": "nope"})), &[]).await;
        assert_eq!(inactive, json!({"active": false}));
        checked(&app, d, "GET", "/.well-known/jwks.json", "/.well-known/jwks.json", None, None, &[]).await;

        // Stock and the catalog.
        let stock = Some(json!({"skuId": "SKU-D1", "availableQty": 10}));
        assert_eq!(checked(&app, d, "POST", "/api/stocks", "/api/stocks", Some(&admin), stock.clone(), &[]).await.0, 200);
        assert_eq!(checked(&app, d, "POST", "/api/stocks", "/api/stocks", Some(&buyer), stock.clone(), &[]).await.0, 403);
        assert_eq!(checked(&app, d, "POST", "/api/stocks", "/api/stocks", None, stock, &[]).await.0, 401);
        assert_eq!(checked(&app, d, "PUT", "/api/stocks/{skuId}", "/api/stocks/SKU-D2", Some(&admin), Some(json!({"availableQty": 1})), &[]).await.0, 200);
        assert_eq!(checked(&app, d, "GET", "/api/stocks/{skuId}", "/api/stocks/SKU-D1", None, None, &[]).await.0, 200);
        assert_eq!(checked(&app, d, "GET", "/api/stocks/{skuId}", "/api/stocks/NO-SUCH", None, None, &[]).await.0, 404);
        let (_, page) = checked(&app, d, "GET", "/api/stocks", "/api/stocks?size=1", None, None, &[]).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(checked(&app, d, "GET", "/api/stocks", "/api/stocks?size=0", None, None, &[]).await.0, 400);
        let product = Some(json!({"name": "Kettle", "description": "1.7 l", "price": "19.90"}));
        assert_eq!(checked(&app, d, "PUT", "/api/catalog/products/{skuId}", "/api/catalog/products/SKU-D1", Some(&admin), product, &[]).await.0, 200);
        assert_eq!(checked(&app, d, "GET", "/api/catalog/products/{skuId}", "/api/catalog/products/SKU-D1", None, None, &[]).await.0, 200);
        // A product the stock upsert made: no price.
        let (_, unpriced) = checked(&app, d, "GET", "/api/catalog/products/{skuId}", "/api/catalog/products/SKU-D2", None, None, &[]).await;
        assert_eq!(unpriced["price"], Value::Null);
        assert_eq!(checked(&app, d, "GET", "/api/catalog/products", "/api/catalog/products?active=true", None, None, &[]).await.0, 200);

        // Reservations.
        let reserve = json!({"orderId": uuid::Uuid::new_v4().to_string(), "items": [{"skuId": "SKU-D2", "quantity": 1}]});
        assert_eq!(checked(&app, d, "POST", "/api/stocks/reserve", "/api/stocks/reserve", Some(&admin), Some(reserve), &[]).await.0, 200);
        let short = json!({"orderId": uuid::Uuid::new_v4().to_string(), "items": [{"skuId": "SKU-D2", "quantity": 5}]});
        assert_eq!(checked(&app, d, "POST", "/api/stocks/reserve", "/api/stocks/reserve", Some(&admin), Some(short.clone()), &[]).await.0, 409);
        let (_, failed) = checked(&app, d, "POST", "/api/stocks/reservations", "/api/stocks/reservations", Some(&admin), Some(short), &[]).await;
        assert_eq!(failed["status"], "FAILED");
        let held = json!({"orderId": uuid::Uuid::new_v4().to_string(), "items": [{"skuId": "SKU-D1", "quantity": 1}]});
        let (_, reserved) = checked(&app, d, "POST", "/api/stocks/reservations", "/api/stocks/reservations", Some(&admin), Some(held), &[]).await;
        assert_eq!(reserved["status"], "RESERVED");

        // An order, its replay, the order and its saga once it ended.
        let order = json!({"userId": "u-doc", "items": [line("SKU-D1", 2, "19.90")]});
        let key = [("Idempotency-Key", "doc-1")];
        let (status, placed) = checked(&app, d, "POST", "/api/orders", "/api/orders", Some(&buyer), Some(order.clone()), &key).await;
        assert_eq!(status, 201);
        assert_eq!(checked(&app, d, "POST", "/api/orders", "/api/orders", Some(&buyer), Some(order), &key).await.0, 200);
        let no_key = json!({"userId": "u-doc", "items": [line("SKU-D1", 1, "19.90")]});
        assert_eq!(checked(&app, d, "POST", "/api/orders", "/api/orders", Some(&buyer), Some(no_key), &[]).await.0, 400);
        let order_id = placed["orderId"].as_str().unwrap().to_owned();
        app.ended(&order_id).await;
        let path = format!("/api/orders/{order_id}");
        assert_eq!(checked(&app, d, "GET", "/api/orders/{orderId}", &path, Some(&buyer), None, &[]).await.0, 200);
        assert_eq!(checked(&app, d, "GET", "/api/orders/{orderId}", "/api/orders/not-a-uuid", Some(&buyer), None, &[]).await.0, 400);
        let (_, saga) = checked(&app, d, "GET", "/api/orders/{orderId}/saga", &format!("{path}/saga"), Some(&buyer), None, &[]).await;
        assert!(saga["history"].as_array().unwrap().len() >= 2, "{saga}");
        assert!(saga["payment"].is_object(), "{saga}");
        assert_eq!(checked(&app, d, "GET", "/api/sagas", "/api/sagas", Some(&admin), None, &[]).await.0, 200);
        assert_eq!(checked(&app, d, "GET", "/api/sagas", "/api/sagas?state=NOPE", Some(&admin), None, &[]).await.0, 400);

        // The release audit and dead letters.
        let rows = vec![release_row(chrono::Utc::now(), &order_id, "PAYMENT_FAILED")];
        insert_releases(&app, &rows).await;
        let (_, releases) = checked(&app, d, "GET", "/api/stocks/release-events", "/api/stocks/release-events", None, None, &[]).await;
        assert_eq!(releases["totalElements"], 1);
        let (_, keyset) = checked(&app, d, "GET", "/api/stocks/release-events/cursor", "/api/stocks/release-events/cursor?limit=1", None, None, &[]).await;
        assert_eq!(keyset["hasMore"], false);
        assert_eq!(checked(&app, d, "GET", "/api/stocks/release-events", "/api/stocks/release-events?from=yesterday", None, None, &[]).await.0, 400);
        let letter = insert_dead_letter(&app, &order_id, "doc-trace", "poison").await;
        let (_, letters) = checked(&app, d, "GET", "/api/admin/dead-letters", "/api/admin/dead-letters", Some(&admin), None, &[]).await;
        assert_eq!(letters["totalElements"], 1);
        let replay = format!("/api/admin/dead-letters/{letter}/replay");
        assert_eq!(checked(&app, d, "POST", "/api/admin/dead-letters/{id}/replay", &replay, Some(&admin), None, &[]).await.0, 200);
        let discard = format!("/api/admin/dead-letters/{letter}/discard");
        assert_eq!(checked(&app, d, "POST", "/api/admin/dead-letters/{id}/discard", &discard, Some(&admin), None, &[]).await.0, 409);

        // Operations.
        for path in ["/health/live", "/health/ready", "/actuator/health", "/actuator/health/liveness", "/actuator/health/readiness", "/actuator/info"] {
            assert_eq!(checked(&app, d, "GET", path, path, None, None, &[]).await.0, 200, "{path}");
        }
        app.state.db.close_by_ref().await.unwrap();
        eventually(SAGA_WAIT, "readiness to answer 503", || async {
            let response = app.get("/health/ready", None).await;
            (response.status() == 503).then_some(())
        }).await;
        assert_eq!(checked(&app, d, "GET", "/health/ready", "/health/ready", None, None, &[]).await.0, 503);
        assert_eq!(checked(&app, d, "GET", "/actuator/health", "/actuator/health", None, None, &[]).await.0, 503);
    }

    async fn every_operation_with_a_json_body_documents_what_its_extractor_refuses(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let doc = document(&app).await;
        let admin = app.admin_token().await;
        let oversized = json!({"padding": "x".repeat(ordersaga::config::Settings::default().body_limit_bytes)});
        let mut operations = 0;
        for (template, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item[method.to_lowercase()]["requestBody"].is_null() {
                    continue;
                }
                operations += 1;
                let path = sample(template);
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let request = || {
                    app.client
                        .request(method.clone(), app.url(&path))
                        .bearer_auth(&admin)
                        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                };
                let refusals = [
                    (request().header("content-type", "text/plain").body("{}"), 415),
                    (request(), 415),
                    (request().json(&oversized), 413),
                    (request().header("content-type", "application/json").body("{\"items\": ["), 400),
                ];
                for (refused, expected) in refusals {
                    let response = refused.send().await.unwrap();
                    let status = response.status().as_u16();
                    assert_eq!(status, expected, "{method} {path}");
                    let content_type = content_type(&response);
                    let body: Value = response.json().await.unwrap();
                    assert_matches(&doc, method.as_str(), template, status, &content_type, &body);
                }
            }
        }
        assert!(operations >= 9, "{operations} operations with a body");
    }

    async fn swagger_ui_is_served_by_the_node_and_loads_nothing_from_elsewhere(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        for entry in ["/swagger-ui.html", "/docs", "/swagger-ui"] {
            let (status, _, _) = call(&app, "GET", entry).await;
            assert_eq!(status, 302, "{entry}");
            let followed = app.get(entry, None).await;
            assert_eq!(followed.status(), 200, "{entry}");
            assert_eq!(followed.url().path(), "/swagger-ui/index.html", "{entry}");
        }
        let page = app.get("/swagger-ui/index.html", None).await;
        let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = page.text().await.unwrap();
        let mut loaded = 0;
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attribute) {
                let rest = &html[at + attribute.len()..];
                let target = &rest[..rest.find('"').unwrap()];
                assert!(!target.contains("//"), "the page loads {target} from elsewhere");
                let file = target.trim_start_matches("./");
                let asset = app.get(&format!("/swagger-ui/{file}"), None).await;
                assert_eq!(asset.status(), 200, "{target}");
                assert!(!asset.bytes().await.unwrap().is_empty(), "{target}");
                loaded += 1;
            }
        }
        assert!(loaded >= 4, "the page's scripts and styles: {html}");
        let initializer = app.get("/swagger-ui/swagger-initializer.js", None).await.text().await.unwrap();
        assert!(initializer.contains("\"/api/openapi.json\""), "{initializer}");
        assert!(initializer.contains("\"validatorUrl\": \"none\"") || initializer.contains("\"validatorUrl\":\"none\""), "{initializer}");
        assert!(!initializer.contains("petstore"), "{initializer}");
        let (status, content_type, body) = call(&app, "GET", "/swagger-ui/no-such-file.js").await;
        assert_eq!(status, 404);
        assert!(content_type.starts_with("application/problem+json") && !is_no_route(status, &content_type, &body), "{body}");
    }
}
