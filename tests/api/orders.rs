//! Orders and their sagas: the flow of the first seed, end to end over HTTP.

use actors::config::PaymentMode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, line, spawn_app, spawn_app_with};
use crate::on_every_backend;
use entities::{inventory_release_events, inventory_reservations, orders, outbox_events, payment_records};

async fn release_events_of(app: &crate::helpers::TestApp, order_id: &str) -> u64 {
    inventory_release_events::Entity::find()
        .filter(inventory_release_events::Column::OrderId.eq(order_id))
        .count(&app.state.db)
        .await
        .unwrap()
}

async fn outbox_keys_of(app: &crate::helpers::TestApp, order_id: &str) -> Vec<String> {
    let mut keys: Vec<String> = outbox_events::Entity::find()
        .filter(outbox_events::Column::AggregateId.eq(order_id))
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.routing_key)
        .collect();
    keys.sort();
    keys
}

fn steps(saga: &Value) -> Vec<(String, String)> {
    saga["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["eventType"].as_str().unwrap().to_owned(),
                h["toState"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

on_every_backend! {
    async fn a_paid_order_is_confirmed_and_keeps_its_stock(backend) {
        // The gateway takes a moment, as a real one does: the reservation then reaches the saga before the
        // payment's result (which may overtake it otherwise, see docs/architecture.md).
        let Some(app) = spawn_app_with(backend, |s| s.payment.latency_ms = 300).await else { return };
        app.set_stock("SKU-001", 10).await;
        let token = app.buyer_token("u-1").await;
        let response = app.place_order(&token, "u-1", "key-1", vec![line("SKU-001", 2, "19.90")]).await;
        assert_eq!(response.status(), 201);
        let request_id = response.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
        let location = response.headers().get("location").unwrap().to_str().unwrap().to_owned();
        let order: Value = response.json().await.unwrap();
        let id = order["orderId"].as_str().unwrap();
        assert_eq!(location, format!("/api/orders/{id}"));
        assert_eq!(order["status"], "PENDING");
        assert_eq!(order["userId"], "u-1");
        assert_eq!(order["totalAmount"].to_string(), "39.80");
        assert_eq!(order["items"], json!([line("SKU-001", 2, "19.90")]));
        assert_eq!(order["traceId"], request_id.as_str());
        assert!(order["createdAt"].is_string());

        let ended = app.ended(id).await;
        assert_eq!(ended["status"], "CONFIRMED");
        assert_eq!(ended["failureReason"], Value::Null);
        assert_eq!(app.stock("SKU-001").await, (8, 2));

        let saga = app.saga(id).await;
        assert_eq!(saga["state"], "COMPLETED");
        assert_eq!(saga["traceId"], request_id.as_str());
        assert_eq!(saga["identity"], json!({"userId": "u-1", "roles": ["buyer"]}));
        assert!(saga["completedAt"].is_string());
        assert_eq!(
            steps(&saga),
            [
                ("OrderPlaced".into(), "AWAITING_INVENTORY".into()),
                ("InventoryReserved".into(), "AWAITING_PAYMENT".into()),
                ("PaymentSucceeded".into(), "COMPLETED".into()),
            ]
        );
        for step in saga["history"].as_array().unwrap() {
            assert!(step["eventId"].is_string() && step["routingKey"].is_string(), "{step}");
        }
        assert_eq!(release_events_of(&app, id).await, 0);
    }

    async fn a_failed_payment_is_compensated_once_and_the_stock_comes_back(backend) {
        // A gateway that takes a moment lets the reservation reach the saga first (as above).
        let Some(app) = spawn_app_with(backend, |s| {
            s.payment_mode = PaymentMode::Fail;
            s.payment.latency_ms = 300;
        })
        .await else { return };
        app.set_stock("SKU-001", 10).await;
        let order = app.order("u-1", vec![line("SKU-001", 3, "5.00")]).await;
        let id = order["orderId"].as_str().unwrap();
        let ended = app.ended(id).await;
        assert_eq!(ended["status"], "FAILED");
        assert_eq!(ended["failureReason"], "PAYMENT_FAILED");
        assert_eq!(app.stock("SKU-001").await, (10, 0));
        let saga = app.saga(id).await;
        assert_eq!(saga["state"], "COMPENSATED");
        assert_eq!(
            steps(&saga),
            [
                ("OrderPlaced".into(), "AWAITING_INVENTORY".into()),
                ("InventoryReserved".into(), "AWAITING_PAYMENT".into()),
                ("PaymentFailed".into(), "COMPENSATING".into()),
                ("InventoryReleased".into(), "COMPENSATED".into()),
            ]
        );
        assert_eq!(release_events_of(&app, id).await, 1);
        assert_eq!(
            outbox_keys_of(&app, id).await,
            ["inventory.release.requested", "inventory.released", "inventory.reserved", "order.created", "payment.failed"]
        );
        let release = inventory_release_events::Entity::find()
            .filter(inventory_release_events::Column::OrderId.eq(id))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(release.reason, "PAYMENT_FAILED");
        assert_eq!(release.trace_id, order["traceId"].as_str().unwrap(), "the release keeps the order's trace");
        let reservation = inventory_reservations::Entity::find()
            .filter(inventory_reservations::Column::OrderId.eq(id))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reservation.status, "RELEASED");
        // Every event of the order is published (its mark is written a moment after its delivery), and
        // carries the trace and identity of the request that placed it.
        let events = crate::helpers::eventually(crate::helpers::SAGA_WAIT, "the order's events to be marked published", || async {
            let rows = outbox_events::Entity::find()
                .filter(outbox_events::Column::AggregateId.eq(id))
                .all(&app.state.db)
                .await
                .unwrap();
            rows.iter().all(|r| r.published_at.is_some()).then_some(rows)
        })
        .await;
        assert_eq!(events.len(), 5);
        for event in events {
            let envelope: Value = serde_json::from_str(&event.payload).unwrap();
            assert_eq!(envelope["trace_id"], order["traceId"], "{}", event.routing_key);
            assert_eq!(envelope["identity"], json!({"user_id": "u-1", "roles": ["buyer"]}), "{}", event.routing_key);
            assert_eq!(envelope["version"], 1);
        }
    }

    async fn hashed_payments_decide_per_order_and_conserve_stock(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Hashed).await else { return };
        app.set_stock("SKU-H", 100).await;
        let mut ids = vec![];
        for i in 0..12 {
            let order = app.order(&format!("u-{i}"), vec![line("SKU-H", 1, "1.00")]).await;
            ids.push(order["orderId"].as_str().unwrap().to_owned());
        }
        let mut confirmed = 0;
        for id in &ids {
            let ended = app.ended(id).await;
            let approved = actors::consumers::payment::approves(PaymentMode::Hashed, id);
            assert_eq!(ended["status"], if approved { "CONFIRMED" } else { "FAILED" }, "order {id}");
            assert_eq!(release_events_of(&app, id).await, u64::from(!approved));
            confirmed += i64::from(approved);
        }
        assert_eq!(app.stock("SKU-H").await, (100 - confirmed, confirmed));
        let charged = payment_records::Entity::find().count(&app.state.db).await.unwrap();
        assert_eq!(charged, 12, "one payment record per order");
    }

    async fn short_and_unknown_stock_fail_the_order_without_touching_stock(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-A", 1).await;
        app.set_stock("SKU-B", 5).await;
        let short = app.order("u-1", vec![line("SKU-B", 2, "1"), line("SKU-A", 2, "1")]).await;
        let short = app.ended(short["orderId"].as_str().unwrap()).await;
        assert_eq!(short["status"], "FAILED");
        assert_eq!(short["failureReason"], "INSUFFICIENT_STOCK");
        let unknown = app.order("u-1", vec![line("SKU-B", 1, "1"), line("NO-SUCH-SKU", 1, "1")]).await;
        let unknown = app.ended(unknown["orderId"].as_str().unwrap()).await;
        assert_eq!(unknown["status"], "FAILED");
        assert_eq!(unknown["failureReason"], "UNKNOWN_SKU");
        assert_eq!(app.stock("SKU-A").await, (1, 0));
        assert_eq!(app.stock("SKU-B").await, (5, 0), "all or nothing: SKU-B was not held");
        let saga = app.saga(short["orderId"].as_str().unwrap()).await;
        assert_eq!(saga["state"], "FAILED");
        assert_eq!(release_events_of(&app, short["orderId"].as_str().unwrap()).await, 0);
    }

    async fn placing_needs_a_buyer_token(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let body = json!({"userId": "u-1", "items": [line("SKU-1", 1, "1.00")]});
        let no_token = app.client.post(app.url("/api/orders")).header("Idempotency-Key", "k").json(&body).send().await.unwrap();
        assert_problem(no_token, 401).await;
        let garbage = app
            .client
            .post(app.url("/api/orders"))
            .bearer_auth("garbage")
            .header("Idempotency-Key", "k")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(garbage, 401).await;
        let admin_only = app.token("u-1", &["admin"]).await;
        assert_problem(app.place_order(&admin_only, "u-1", "k", vec![line("SKU-1", 1, "1")]).await, 403).await;
    }

    async fn invalid_orders_answer_400(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.buyer_token("u-1").await;
        let cases: Vec<(&str, Value)> = vec![
            ("another user", json!({"userId": "u-2", "items": [line("SKU-1", 1, "1")]})),
            ("no items", json!({"userId": "u-1", "items": []})),
            ("quantity 0", json!({"userId": "u-1", "items": [line("SKU-1", 0, "1")]})),
            ("negative quantity", json!({"userId": "u-1", "items": [line("SKU-1", -1, "1")]})),
            ("negative price", json!({"userId": "u-1", "items": [line("SKU-1", 1, "-0.01")]})),
            ("duplicate sku", json!({"userId": "u-1", "items": [line("SKU-1", 1, "1"), line("SKU-1", 2, "1")]})),
            ("bad sku", json!({"userId": "u-1", "items": [line("SKU 1", 1, "1")]})),
            ("no userId", json!({"items": [line("SKU-1", 1, "1")]})),
            ("price as words", json!({"userId": "u-1", "items": [{"skuId": "SKU-1", "quantity": 1, "price": "ten"}]})),
        ];
        for (what, body) in cases {
            let response = app
                .client
                .post(app.url("/api/orders"))
                .bearer_auth(&token)
                .header("Idempotency-Key", "k-1")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{what}");
            assert_problem(response, 400).await;
        }
        let body = json!({"userId": "u-1", "items": [line("SKU-1", 1, "1")]});
        let no_key = app.client.post(app.url("/api/orders")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_problem(no_key, 400).await;
        let long_key = "k".repeat(256);
        assert_problem(app.place_order(&token, "u-1", &long_key, vec![line("SKU-1", 1, "1")]).await, 400).await;
        let spaced_key = app.place_order(&token, "u-1", "has space", vec![line("SKU-1", 1, "1")]).await;
        assert_problem(spaced_key, 400).await;
        let malformed = app
            .client
            .post(app.url("/api/orders"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "k-2")
            .header("content-type", "application/json")
            .body("{\"userId\": \"u-1\", \"items\": [")
            .send()
            .await
            .unwrap();
        assert_problem(malformed, 400).await;
        let huge: Vec<Value> = (0..3000).map(|i| line(&format!("SKU-{i}"), 1, "1.00")).collect();
        assert_problem(app.place_order(&token, "u-1", "k-3", huge).await, 413).await;
    }

    async fn an_unknown_sku_is_accepted_and_fails_in_the_saga(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let order = app.order("u-1", vec![line("GHOST-1", 1, "9.99")]).await;
        let ended = app.ended(order["orderId"].as_str().unwrap()).await;
        assert_eq!(ended["failureReason"], "UNKNOWN_SKU");
    }

    async fn money_is_exact(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-M", 100).await;
        let order = app.order("u-1", vec![line("SKU-M", 3, "0.10"), line("SKU-N", 1, "0.20")]).await;
        assert_eq!(order["totalAmount"].to_string(), "0.50");
        let read: Value = app.get(&format!("/api/orders/{}", order["orderId"].as_str().unwrap()), Some(&app.admin_token().await)).await.json().await.unwrap();
        assert_eq!(read["totalAmount"].to_string(), "0.50");
        assert_eq!(read["items"][0]["price"].to_string(), "0.10");
    }

    async fn amounts_outside_the_accepted_format_are_refused_not_rounded(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.buyer_token("u-1").await;
        let number = |text: &str| Value::Number(serde_json::Number::from_string_unchecked(text.to_owned()));
        let refused: Vec<(&str, Value)> = vec![
            ("more decimals than kept", Value::from("0.123456789012345678901234567890")),
            ("more decimals than kept, as a number", number("0.123456789012345678901234567890")),
            ("a tiny fraction", number("0.00000000000000000000000000001")),
            ("an exponent", number("1e-29")),
            ("an exponent in a string", Value::from("1E2")),
            ("a separator", Value::from("1_000")),
            ("a comma", Value::from("1,000")),
            ("a sign", Value::from("+5")),
            ("spaces", Value::from(" 5")),
            ("five decimals", number("0.00001")),
            ("true", Value::Bool(true)),
        ];
        for (what, price) in refused {
            let body = json!({"userId": "u-1", "items": [{"skuId": "SKU-1", "quantity": 1, "price": price}]});
            let response = app.client.post(app.url("/api/orders")).bearer_auth(&token)
                .header("Idempotency-Key", "money-k").json(&body).send().await.unwrap();
            let problem = assert_problem(response, 400).await;
            assert!(problem["detail"].as_str().unwrap().contains("price"), "{what}: {problem}");
        }
        // Four decimals, as a number or a string, are kept as sent.
        let order = app.order("u-1", vec![line("SKU-1", 3, "0.0001"), json!({"skuId": "SKU-2", "quantity": 2, "price": "1000"})]).await;
        assert_eq!(order["totalAmount"].to_string(), "2000.0003");
    }

    async fn a_hundred_line_order_totals_exactly(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        // Σ over 100 lines of 999 999 × 9 999.9999 + the line number in ten-thousandths.
        let items: Vec<Value> = (0..100)
            .map(|i| line(&format!("BIG-{i:03}"), 999_999, &format!("9999.{:04}", 9_900 + i)))
            .collect();
        let mut expected: u128 = 0; // in ten-thousandths
        for i in 0..100u128 {
            expected += 999_999 * (9_999 * 10_000 + 9_900 + i);
        }
        let expected = format!("{}.{:04}", expected / 10_000, expected % 10_000);
        let order = app.order("u-1", items).await;
        assert_eq!(order["totalAmount"].to_string(), expected);
        let read: Value = app.get(&format!("/api/orders/{}", order["orderId"].as_str().unwrap()), Some(&app.admin_token().await)).await.json().await.unwrap();
        assert_eq!(read["totalAmount"].to_string(), expected, "stored exactly");
    }

    async fn reading_an_order_needs_its_owner_or_an_admin(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let order = app.order("owner", vec![line("SKU-1", 1, "1")]).await;
        let path = format!("/api/orders/{}", order["orderId"].as_str().unwrap());
        let owner = app.buyer_token("owner").await;
        let other = app.buyer_token("other").await;
        let admin = app.admin_token().await;
        assert_eq!(app.get(&path, Some(&owner)).await.status(), 200);
        assert_eq!(app.get(&path, Some(&admin)).await.status(), 200);
        assert_problem(app.get(&path, Some(&other)).await, 403).await;
        assert_problem(app.get(&path, None).await, 401).await;
        assert_eq!(app.get(&format!("{path}/saga"), Some(&owner)).await.status(), 200);
        assert_problem(app.get(&format!("{path}/saga"), Some(&other)).await, 403).await;
        let unknown = format!("/api/orders/{}", uuid::Uuid::new_v4());
        assert_problem(app.get(&unknown, Some(&admin)).await, 404).await;
        assert_problem(app.get(&format!("{unknown}/saga"), Some(&admin)).await, 404).await;
        assert_problem(app.get("/api/orders/not-a-uuid", Some(&admin)).await, 400).await;
        assert_eq!(app.get(&format!("/api/v1/orders/{}", order["orderId"].as_str().unwrap()), Some(&owner)).await.status(), 200);
    }
}

on_every_backend! {
    async fn old_terminal_orders_move_to_the_archive_and_stay_readable(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.archive.after_days = 0).await else { return };
        app.set_stock("SKU-Z", 5).await;
        let order = app.order("u-1", vec![line("SKU-Z", 1, "4.25")]).await;
        let id = order["orderId"].as_str().unwrap();
        app.ended(id).await;
        let moved = app.state.engine().unwrap().archive.send(actors::archive::RunArchive).await.unwrap().unwrap();
        assert_eq!(moved, 1);
        assert_eq!(orders::Entity::find().count(&app.state.db).await.unwrap(), 0);
        let read: Value = app.get(&format!("/api/orders/{id}"), Some(&app.buyer_token("u-1").await)).await.json().await.unwrap();
        assert_eq!(read["status"], "CONFIRMED");
        assert_eq!(read["items"], json!([line("SKU-Z", 1, "4.25")]));
        assert_eq!(read["totalAmount"].to_string(), "4.25");
    }
}

#[actix_web::test]
async fn on_sqlite_reads_answer_while_the_writer_is_busy() {
    // SQLite has one writer connection; the API's reads have read-only connections of their own, so an
    // order can be read while a long transaction holds the writer (a reader sees the last commit).
    let Some(app) = spawn_app_with(crate::helpers::Backend::Sqlite, |s| s.request_timeout_seconds = 3).await
    else {
        return;
    };
    app.set_stock("SKU-R", 5).await;
    let placed = app.order("u-read", vec![line("SKU-R", 1, "2.00")]).await;
    let order_id = placed["orderId"].as_str().unwrap();
    let ended = app.ended(order_id).await;
    let admin = app.admin_token().await;

    let writer = sea_orm::TransactionTrait::begin(&app.state.db).await.unwrap();
    for path in [
        format!("/api/orders/{order_id}"),
        format!("/api/orders/{order_id}/saga"),
        "/api/sagas".to_owned(),
        "/api/stocks".to_owned(),
        format!("/api/stocks/release-events?orderId={order_id}"),
    ] {
        let r = app.get(&path, Some(&admin)).await;
        assert_eq!(r.status(), 200, "{path} while the writer is held");
        if path == format!("/api/orders/{order_id}") {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["status"], ended["status"], "{body}");
        }
    }
    writer.rollback().await.unwrap();
}

on_every_backend! {
    async fn an_order_of_several_lines_reads_back_with_its_lines_as_placed(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        // Line order differs from SKU order and from the order of their prices.
        let lines = vec![line("SKU-C", 1, "3.00"), line("SKU-A", 2, "1.50"), line("SKU-B", 3, "0.25")];
        for sku in ["SKU-A", "SKU-B", "SKU-C"] {
            app.set_stock(sku, 10).await;
        }
        let placed = app.order("u-1", lines.clone()).await;
        let id = placed["orderId"].as_str().unwrap();
        assert_eq!(placed["items"], json!(lines));
        let token = app.buyer_token("u-1").await;
        let read: Value = app.get(&format!("/api/orders/{id}"), Some(&token)).await.json().await.unwrap();
        assert_eq!(read["items"], json!(lines), "{read}");
        assert_eq!(read["totalAmount"].to_string(), "6.75");
        let ended = app.ended(id).await;
        assert_eq!(ended["items"], json!(lines), "{ended}");
        // An order with no such id is still a 404, not an order without lines.
        let unknown = format!("/api/orders/{}", uuid::Uuid::new_v4());
        assert_problem(app.get(&unknown, Some(&app.admin_token().await)).await, 404).await;
    }
}
