//! The seed system's end-to-end flow tests (`order-service/src/test/java/com/cloud/order/
//! *FlowIntegrationTest.java`), ported: a payment that succeeds, one that fails, `HASHED`, and the
//! `401`/`403`/`400` refusals of an order. Written as the seed's client calls: a token from
//! `POST /api/auth/token` with `ttlSeconds`, sent as `tokenType + " " + accessToken`; orders with the seed's
//! body and an `it-<uuid>` key; the order polled until `CONFIRMED` or `FAILED`; then what the seed checks
//! in its databases: the order's status, its reservation's, its payment's and its release events.
//!
//! Where ordersaga differs on purpose (see `docs/compatibility.md`), the test does what a seed client
//! must do here: stock is set with an `admin` token, and the order is read with its owner's token.

use std::time::Duration;

use actors::config::PaymentMode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{SAGA_WAIT, TestApp, assert_problem, eventually, spawn_app, spawn_app_with};
use crate::on_every_backend;
use entities::{inventory_release_events, inventory_reservations, payment_records};

/// `bearerToken(userId, roles)` of the seed's test: the mock issuer, 600 s, `tokenType accessToken`.
async fn bearer_token(app: &TestApp, user_id: &str, roles: &[&str]) -> String {
    let response = app
        .post(
            "/api/auth/token",
            None,
            &json!({"userId": user_id, "roles": roles, "ttlSeconds": 600}),
        )
        .await;
    assert_eq!(response.status(), 200, "the auth service issues a token");
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["userId"], user_id);
    assert_eq!(token["roles"], json!(roles));
    assert!(token["expiresAt"].is_string(), "{token}");
    let access_token = token["accessToken"].as_str().unwrap_or_default();
    assert!(
        !access_token.is_empty(),
        "the auth service returns an access token"
    );
    format!(
        "{} {access_token}",
        token["tokenType"].as_str().unwrap_or("Bearer")
    )
}

/// `postJson(orderPort, "/api/orders", body, headers)`.
async fn post_order(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/orders"))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The seed's order of two lines, 10.00 + 12.00.
const TWO_LINES: &str = r#"{"userId":"it-user","items":[{"skuId":"SKU-001","quantity":1,"price":10.00},{"skuId":"SKU-002","quantity":1,"price":12.00}]}"#;
/// The seed's order of one line, for the refusals.
const ONE_LINE: &str = r#"{"userId":"it-user","items":[{"skuId":"SKU-001","quantity":1,"price":10.00}]}"#;

/// Java's `UUID.fromString(id).hashCode()`, written out from its definition.
fn java_hash_code(id: &str) -> i32 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let most = u64::from_str_radix(&hex[..16], 16).unwrap();
    let least = u64::from_str_radix(&hex[16..], 16).unwrap();
    let hilo = most ^ least;
    ((hilo >> 32) as i32) ^ (hilo as i32)
}

/// `hashedSuccess(orderId)` of `PaymentHashedFlowIntegrationTest`: `Math.floorMod(hashCode, 2) == 0`.
fn hashed_success(id: &str) -> bool {
    java_hash_code(id).rem_euclid(2) == 0
}

/// What the seed expects of one order.
struct Expected {
    order: &'static str,
    inventory: &'static str,
    payment: &'static str,
    release_events: u64,
}

impl Expected {
    const CONFIRMED: Expected = Expected {
        order: "CONFIRMED",
        inventory: "RESERVED",
        payment: "SUCCEEDED",
        release_events: 0,
    };
    const PAYMENT_FAILED: Expected = Expected {
        order: "FAILED",
        inventory: "RELEASED",
        payment: "FAILED",
        release_events: 1,
    };
}

/// Sets the seed's stock (10 of SKU-001 and SKU-002) and places its two-line order; returns the order id.
async fn place_the_seeds_order(app: &TestApp, buyer: &str) -> String {
    let response = post_order(
        app,
        TWO_LINES,
        &[
            ("Idempotency-Key", &format!("it-{}", uuid::Uuid::new_v4())),
            ("Authorization", buyer),
        ],
    )
    .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["reused"], false);
    let order_id = created["orderId"].as_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&order_id).is_ok(),
        "orderId is a UUID: {order_id}"
    );
    order_id
}

/// `waitForOrderTerminalState`, then the seed's `assertDatabaseValueEventually` of the order, the
/// reservation, the payment and the release events.
async fn assert_the_flow_ended(app: &TestApp, buyer: &str, order_id: &str, expected: &Expected) {
    let token = buyer.trim_start_matches("Bearer ");
    let path = format!("/api/orders/{order_id}");
    let order: Value = eventually(
        Duration::from_secs(60),
        "the order to reach a terminal state",
        || async {
            let response = app.get(&path, Some(token)).await;
            if response.status() != 200 {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            matches!(body["status"].as_str(), Some("CONFIRMED" | "FAILED")).then_some(body)
        },
    )
    .await;
    assert_eq!(order["status"], expected.order, "order {order_id}: {order}");
    assert_eq!(order["totalAmount"].to_string(), "22.00", "the exact total");

    let db = &app.state.db;
    let reservation = eventually(SAGA_WAIT, "the reservation's status", || async {
        let row = inventory_reservations::Entity::find()
            .filter(inventory_reservations::Column::OrderId.eq(order_id))
            .one(db)
            .await
            .ok()??;
        (row.status == expected.inventory).then_some(row.status)
    })
    .await;
    assert_eq!(reservation, expected.inventory);
    let payment = payment_records::Entity::find()
        .filter(payment_records::Column::OrderId.eq(order_id))
        .one(db)
        .await
        .unwrap()
        .map(|p| p.status);
    assert_eq!(payment.as_deref(), Some(expected.payment), "order {order_id}");
    let releases = eventually(SAGA_WAIT, "the release events", || async {
        let count = inventory_release_events::Entity::find()
            .filter(inventory_release_events::Column::OrderId.eq(order_id))
            .count(db)
            .await
            .ok()?;
        (count == expected.release_events).then_some(count)
    })
    .await;
    assert_eq!(releases, expected.release_events);
    // The same through the release audit, as the seed's operators read it.
    let audit: Value = app
        .get(&format!("/api/stocks/release-events?orderId={order_id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(audit["totalElements"], expected.release_events, "{audit}");
}

/// The seed's stock, set as ordersaga requires (an `admin` token).
async fn seed_stock(app: &TestApp) {
    app.set_stock("SKU-001", 10).await;
    app.set_stock("SKU-002", 10).await;
}

on_every_backend! {
    async fn a_payment_that_succeeds_confirms_the_order(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Success).await else { return };
        seed_stock(&app).await;
        let buyer = bearer_token(&app, "it-user", &["buyer"]).await;
        let order_id = place_the_seeds_order(&app, &buyer).await;
        assert_the_flow_ended(&app, &buyer, &order_id, &Expected::CONFIRMED).await;
        assert_eq!(app.stock("SKU-001").await, (9, 1));
    }

    async fn a_payment_that_fails_fails_the_order_and_releases_its_stock(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        seed_stock(&app).await;
        let buyer = bearer_token(&app, "it-user", &["buyer"]).await;
        let order_id = place_the_seeds_order(&app, &buyer).await;
        assert_the_flow_ended(&app, &buyer, &order_id, &Expected::PAYMENT_FAILED).await;
        assert_eq!(app.stock("SKU-001").await, (10, 0), "the stock came back");
    }

    async fn hashed_payments_decide_as_the_seeds_formula_says(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Hashed).await else { return };
        app.set_stock("SKU-001", 1_000).await;
        app.set_stock("SKU-002", 1_000).await;
        let buyer = bearer_token(&app, "it-user", &["buyer"]).await;
        // The seed's test places one order; here orders are placed until both outcomes were seen.
        let (mut confirmed, mut failed) = (0, 0);
        for _ in 0..32 {
            let order_id = place_the_seeds_order(&app, &buyer).await;
            let expected = if hashed_success(&order_id) { &Expected::CONFIRMED } else { &Expected::PAYMENT_FAILED };
            assert_the_flow_ended(&app, &buyer, &order_id, expected).await;
            if hashed_success(&order_id) { confirmed += 1 } else { failed += 1 }
            if confirmed >= 2 && failed >= 2 {
                break;
            }
        }
        assert!(confirmed >= 2 && failed >= 2, "both outcomes: {confirmed} confirmed, {failed} failed");
    }

    async fn an_order_without_authorization_answers_401(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let key = format!("it-auth-missing-{}", uuid::Uuid::new_v4());
        let response = post_order(&app, ONE_LINE, &[("Idempotency-Key", &key)]).await;
        assert_problem(response, 401).await;
    }

    async fn an_order_with_a_token_lacking_the_buyer_role_answers_403(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let key = format!("it-role-missing-{}", uuid::Uuid::new_v4());
        let viewer = bearer_token(&app, "it-user", &["viewer"]).await;
        let response = post_order(&app, ONE_LINE, &[("Idempotency-Key", &key), ("Authorization", &viewer)]).await;
        assert_problem(response, 403).await;
    }

    async fn an_order_for_another_user_than_the_tokens_subject_answers_400(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let key = format!("it-subject-mismatch-{}", uuid::Uuid::new_v4());
        let other = bearer_token(&app, "different-user", &["buyer"]).await;
        let response = post_order(&app, ONE_LINE, &[("Idempotency-Key", &key), ("Authorization", &other)]).await;
        assert_problem(response, 400).await;
    }

    async fn the_readme_session_repeats_an_order_and_follows_its_trace_id(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        seed_stock(&app).await;
        let buyer = bearer_token(&app, "user-1", &["buyer"]).await;
        let body = r#"{"userId":"user-1","items":[{"skuId":"SKU-001","quantity":2,"price":19.90}]}"#;
        let headers = [("Idempotency-Key", "order-1"), ("Authorization", buyer.as_str()), ("X-Trace-Id", "demo-trace-001")];
        let first = post_order(&app, body, &headers).await;
        assert_eq!(first.status(), 201);
        assert_eq!(first.headers()["x-trace-id"], "demo-trace-001");
        let first: Value = first.json().await.unwrap();
        assert_eq!((first["reused"].as_bool(), first["traceId"].as_str()), (Some(false), Some("demo-trace-001")));
        // "Repeat the same request with the same Idempotency-Key and it returns the same order with reused=true."
        let again = post_order(&app, body, &headers).await;
        assert_eq!(again.status(), 200);
        let again: Value = again.json().await.unwrap();
        assert_eq!((again["reused"].as_bool(), &again["orderId"]), (Some(true), &first["orderId"]));
        let order_id = first["orderId"].as_str().unwrap();
        let saga = app.saga(order_id).await;
        assert_eq!(saga["traceId"], "demo-trace-001", "the saga carries the client's trace id");
        let envelopes = entities::outbox_events::Entity::find()
            .filter(entities::outbox_events::Column::AggregateId.eq(order_id))
            .all(&app.state.db)
            .await
            .unwrap();
        assert!(!envelopes.is_empty());
        for event in envelopes {
            let envelope: Value = serde_json::from_str(&event.payload).unwrap();
            assert_eq!(envelope["trace_id"], "demo-trace-001", "{}", event.routing_key);
        }
    }
}
