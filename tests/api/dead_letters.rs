//! Poison messages and exhausted retries end in the dead-letter store, where admins read, replay or
//! discard them; the node keeps processing.

use std::sync::Arc;
use std::time::Duration;

use actors::topology;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::helpers::{assert_problem, eventually, line, spawn_app, spawn_app_with};
use crate::on_every_backend;

async fn dead_letters(app: &crate::helpers::TestApp, query: &str) -> Value {
    let admin = app.admin_token().await;
    app.get(&format!("/api/admin/dead-letters{query}"), Some(&admin))
        .await
        .json()
        .await
        .unwrap()
}

on_every_backend! {
    async fn a_poison_message_is_dead_lettered_and_the_node_carries_on(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.state
            .engine()
            .unwrap()
            .transport
            .deliver_to(topology::Q_INVENTORY_ORDER_CREATED, "order.created", Arc::from(&b"{not an envelope"[..]))
            .await
            .unwrap();
        let page = eventually(Duration::from_secs(10), "a dead letter", || async {
            let page = dead_letters(&app, "").await;
            (page["totalElements"] == 1).then_some(page)
        })
        .await;
        let letter = &page["items"][0];
        assert_eq!(letter["consumer"], topology::Q_INVENTORY_ORDER_CREATED);
        assert_eq!(letter["status"], "DEAD");
        assert_eq!(letter["attempts"], 1, "poison is not retried");
        assert!(letter["reason"].as_str().unwrap().contains("undecodable"), "{letter}");
        assert_eq!(letter["payload"], "{not an envelope");

        // The node keeps processing.
        app.set_stock("SKU-P", 1).await;
        let order = app.order("u-1", vec![line("SKU-P", 1, "1")]).await;
        assert_eq!(app.ended(order["orderId"].as_str().unwrap()).await["status"], "CONFIRMED");

        // Replay sends it back to its queue, where it fails again and is dead-lettered anew.
        let admin = app.admin_token().await;
        let id = letter["id"].as_str().unwrap();
        let replayed = app.post(&format!("/api/admin/dead-letters/{id}/replay"), Some(&admin), &Value::Null).await;
        assert_eq!(replayed.status(), 200);
        let replayed: Value = replayed.json().await.unwrap();
        assert_eq!(replayed["status"], "REPLAYED");
        eventually(Duration::from_secs(10), "the replayed message to be dead-lettered again", || async {
            (dead_letters(&app, "?status=DEAD").await["totalElements"] == 1).then_some(())
        })
        .await;
        assert_eq!(dead_letters(&app, "").await["totalElements"], 2);
        assert_problem(app.post(&format!("/api/admin/dead-letters/{id}/replay"), Some(&admin), &Value::Null).await, 409).await;

        let fresh = dead_letters(&app, "?status=DEAD").await;
        let fresh_id = fresh["items"][0]["id"].as_str().unwrap().to_owned();
        let discarded = app.post(&format!("/api/admin/dead-letters/{fresh_id}/discard"), Some(&admin), &Value::Null).await;
        assert_eq!(discarded.status(), 200);
        assert_eq!(discarded.json::<Value>().await.unwrap()["status"], "DISCARDED");
        assert_problem(app.post(&format!("/api/admin/dead-letters/{fresh_id}/discard"), Some(&admin), &Value::Null).await, 409).await;
        assert_problem(app.post("/api/admin/dead-letters/nope/discard", Some(&admin), &Value::Null).await, 404).await;
        let by_consumer = dead_letters(&app, &format!("?consumer={}", topology::Q_PAYMENT_INVENTORY_RESERVED)).await;
        assert_eq!(by_consumer["totalElements"], 0);
    }

    async fn a_message_the_database_refuses_is_dead_lettered_at_once(backend) {
        // A second reservation event for an order already charged: its payment would be the order's
        // second, which the ledger's unique order id refuses. No retry can change that.
        let Some(app) = spawn_app_with(backend, |s| s.retry.max_attempts = 5).await else { return };
        app.set_stock("SKU-U", 5).await;
        let order = app.order("u-1", vec![line("SKU-U", 1, "2")]).await;
        let id = order["orderId"].as_str().unwrap().to_owned();
        assert_eq!(app.ended(&id).await["status"], "CONFIRMED");
        let reserved = entities::outbox_events::Entity::find()
            .filter(entities::outbox_events::Column::AggregateId.eq(id.as_str()))
            .filter(entities::outbox_events::Column::RoutingKey.eq("inventory.reserved"))
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        let mut again: Value = serde_json::from_str(&reserved.payload).unwrap();
        again["event_id"] = Value::from(uuid::Uuid::new_v4().to_string());
        app.state
            .engine()
            .unwrap()
            .transport
            .deliver_to(topology::Q_PAYMENT_INVENTORY_RESERVED, "inventory.reserved", Arc::from(again.to_string().into_bytes()))
            .await
            .unwrap();
        let page = eventually(Duration::from_secs(20), "a dead letter", || async {
            let page = dead_letters(&app, "").await;
            (page["totalElements"] == 1).then_some(page)
        })
        .await;
        let letter = &page["items"][0];
        assert_eq!(letter["consumer"], topology::Q_PAYMENT_INVENTORY_RESERVED);
        assert_eq!(letter["attempts"], 1, "not retried: {letter}");
        assert!(letter["reason"].as_str().unwrap().contains("the database refused it"), "{letter}");
        let payments = entities::payment_records::Entity::find()
            .filter(entities::payment_records::Column::OrderId.eq(id.as_str()))
            .count(&app.state.db)
            .await
            .unwrap();
        assert_eq!(payments, 1, "charged once");
    }

    async fn exhausted_retries_are_dead_lettered_with_the_reason(backend) {
        let Some(app) = spawn_app_with(backend, |s| {
            s.payment.transient_failure_rate = 1.0;
            s.retry.max_attempts = 3;
            s.saga.payment_timeout_seconds = 600;
        })
        .await else { return };
        app.set_stock("SKU-X", 5).await;
        let order = app.order("u-1", vec![line("SKU-X", 1, "1")]).await;
        let page = eventually(Duration::from_secs(20), "the payment to be dead-lettered", || async {
            let page = dead_letters(&app, &format!("?consumer={}", topology::Q_PAYMENT_INVENTORY_RESERVED)).await;
            (page["totalElements"] == 1).then_some(page)
        })
        .await;
        let letter = &page["items"][0];
        assert_eq!(letter["attempts"], 3);
        assert_eq!(letter["eventType"], "InventoryReserved");
        assert_eq!(letter["traceId"], order["traceId"]);
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains("gave up after 3 attempts") && reason.contains("gateway"), "{reason}");
        assert_eq!(app.saga(order["orderId"].as_str().unwrap()).await["state"], "AWAITING_PAYMENT");
    }

    async fn dead_letters_are_for_admins(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let buyer = app.buyer_token("u-1").await;
        assert_problem(app.get("/api/admin/dead-letters", Some(&buyer)).await, 403).await;
        assert_problem(app.get("/api/admin/dead-letters", None).await, 401).await;
        assert_problem(app.post("/api/admin/dead-letters/x/replay", Some(&buyer), &Value::Null).await, 403).await;
        let admin = app.admin_token().await;
        assert_problem(app.get("/api/admin/dead-letters?status=ALIVE", Some(&admin)).await, 400).await;
        let empty: Value = app.get("/api/v1/admin/dead-letters", Some(&admin)).await.json().await.unwrap();
        assert_eq!(empty["totalElements"], 0);
    }
}
