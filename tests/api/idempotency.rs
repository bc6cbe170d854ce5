//! The seed's three scenarios: a repeated Idempotency-Key, ten orders on five units, a replayed event.

use actors::mailbox::{Consumer, Disposition, Mailbox};
use actors::outbox::OutboxSignal;
use actors::topology;
use futures::future::join_all;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::helpers::{assert_problem, first_delivery, line, notification_consumer, spawn_app};
use crate::on_every_backend;
use entities::{inventory_reservations, notifications, orders, outbox_events};

on_every_backend! {
    async fn a_repeated_key_returns_the_original_order_and_reserves_once(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-I", 10).await;
        let token = app.buyer_token("u-1").await;
        let first = app.place_order(&token, "u-1", "same-key", vec![line("SKU-I", 2, "19.90")]).await;
        assert_eq!(first.status(), 201);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["reused"], false, "the seed's field: a new order");
        let again = app.place_order(&token, "u-1", "same-key", vec![line("SKU-I", 2, "19.9")]).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["reused"], true, "the seed's field: the original order");
        assert_eq!(again["orderId"], first["orderId"]);
        assert_eq!(again["totalAmount"], first["totalAmount"]);
        app.ended(first["orderId"].as_str().unwrap()).await;
        let third = app.place_order(&token, "u-1", "same-key", vec![line("SKU-I", 2, "19.90")]).await;
        assert_eq!(third.status(), 200, "still the original after the saga ended");
        assert_eq!(app.stock("SKU-I").await, (8, 2), "the stock was decremented once");
        let reservations = inventory_reservations::Entity::find().count(&app.state.db).await.unwrap();
        assert_eq!(reservations, 1);
    }

    async fn a_repeated_key_with_another_body_answers_422(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.buyer_token("u-1").await;
        assert_eq!(app.place_order(&token, "u-1", "key", vec![line("SKU-1", 1, "1.00")]).await.status(), 201);
        let other = app.place_order(&token, "u-1", "key", vec![line("SKU-1", 2, "1.00")]).await;
        assert_problem(other, 422).await;
        // The key belongs to its user: another user may use the same one.
        let someone = app.buyer_token("u-2").await;
        assert_eq!(app.place_order(&someone, "u-2", "key", vec![line("SKU-1", 2, "1.00")]).await.status(), 201);
        assert_eq!(orders::Entity::find().count(&app.state.db).await.unwrap(), 2);
    }

    async fn concurrent_requests_with_one_key_create_one_order(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-C", 10).await;
        let token = app.buyer_token("u-1").await;
        let responses = join_all(
            (0..8).map(|_| app.place_order(&token, "u-1", "racing-key", vec![line("SKU-C", 1, "3.50")])),
        )
        .await;
        let mut created = 0;
        let mut ids = std::collections::HashSet::new();
        for response in responses {
            match response.status().as_u16() {
                201 => created += 1,
                200 => assert_eq!(response.headers().get("idempotent-replayed").unwrap(), "true"),
                other => panic!("unexpected status {other}"),
            }
            let body: Value = response.json().await.unwrap();
            ids.insert(body["orderId"].as_str().unwrap().to_owned());
        }
        assert_eq!(created, 1);
        assert_eq!(ids.len(), 1, "every answer names the same order");
        assert_eq!(orders::Entity::find().count(&app.state.db).await.unwrap(), 1);
        app.ended(ids.iter().next().unwrap()).await;
        assert_eq!(app.stock("SKU-C").await, (9, 1));
    }

    async fn ten_concurrent_orders_on_five_units_confirm_exactly_five(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-5", 5).await;
        let mut tokens = vec![];
        for i in 0..10 {
            tokens.push(app.buyer_token(&format!("u-{i}")).await);
        }
        let users: Vec<String> = (0..10).map(|i| format!("u-{i}")).collect();
        let responses = join_all((0..10).map(|i| {
            app.place_order(&tokens[i], &users[i], &users[i], vec![line("SKU-5", 1, "10")])
        }))
        .await;
        let mut ids = vec![];
        for response in responses {
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.unwrap();
            ids.push(body["orderId"].as_str().unwrap().to_owned());
        }
        let mut confirmed = 0;
        for id in &ids {
            let ended = app.ended(id).await;
            if ended["status"] == "CONFIRMED" {
                confirmed += 1;
            } else {
                assert_eq!(ended["failureReason"], "INSUFFICIENT_STOCK");
            }
        }
        assert_eq!(confirmed, 5);
        assert_eq!(app.stock("SKU-5").await, (0, 5), "never below zero, every unit accounted for");
    }

    async fn replaying_one_event_produces_one_effect(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-R", 10).await;
        let order = app.order("u-1", vec![line("SKU-R", 1, "2.00")]).await;
        let id = order["orderId"].as_str().unwrap();
        app.ended(id).await;
        let created = app.order_created(id).await;
        let engine = app.state.engine().unwrap();
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        let inventory = Consumer {
            queue: topology::Q_INVENTORY_ORDER_CREATED,
            apply: engine.inventory.clone().recipient(),
            prepare: None,
            prefetch: None,
            finish: None,
            serial: false,
            home: actix::Arbiter::current(),
        };
        let notifier = notification_consumer();
        let delivery = first_delivery(&created);
        for _ in 0..3 {
            for consumer in [&inventory, &notifier] {
                let dispositions = mailbox.handle(consumer, std::slice::from_ref(&delivery)).await;
                assert_eq!(dispositions, [Disposition::Ack]);
            }
        }
        assert_eq!(app.stock("SKU-R").await, (9, 1), "reserved once");
        let reservations =
            inventory_reservations::Entity::find().filter(inventory_reservations::Column::OrderId.eq(id)).count(&app.state.db).await.unwrap();
        assert_eq!(reservations, 1);
        let notes = notifications::Entity::find().filter(notifications::Column::OrderId.eq(id)).count(&app.state.db).await.unwrap();
        assert_eq!(notes, 1, "one notification row for one event");
        let reserved_events = outbox_events::Entity::find()
            .filter(outbox_events::Column::AggregateId.eq(id))
            .filter(outbox_events::Column::RoutingKey.eq("inventory.reserved"))
            .count(&app.state.db)
            .await
            .unwrap();
        assert_eq!(reserved_events, 1, "no second inventory.reserved");
    }
}
