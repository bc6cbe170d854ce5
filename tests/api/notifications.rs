//! `GET /api/notifications`: who reads which notifications, paging and bad parameters; and the seed's
//! third scenario, the same `order.created` payload delivered twice persisting one notification (here on
//! the in-process bus; over RabbitMQ in `broker.rs`).

use actors::mailbox::{Disposition, Mailbox};
use actors::outbox::OutboxSignal;
use actors::topology;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::helpers::{
    SAGA_WAIT, TestApp, assert_problem, eventually, first_delivery, line, notification_consumer, spawn_app,
};
use crate::on_every_backend;
use entities::{consumed_messages, notifications};

/// `GET path` as `token`, which must answer `200`, as JSON.
async fn page(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(path, Some(token)).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// Waits until the order's notification can be read, and returns the page.
pub async fn notified(app: &TestApp, order_id: &str, token: &str) -> Value {
    let path = format!("/api/notifications?orderId={order_id}");
    eventually(
        SAGA_WAIT,
        &format!("the notification of order {order_id}"),
        || async {
            let body = page(app, &path, token).await;
            (body["totalElements"] == 1).then_some(body)
        },
    )
    .await
}

/// The problem `type` of a refused request.
async fn refused(app: &TestApp, path: &str, token: Option<&str>, status: u16) -> String {
    let problem = assert_problem(app.get(path, token).await, status).await;
    problem["type"].as_str().unwrap().to_owned()
}

on_every_backend! {
    async fn an_order_s_notification_is_read_by_its_owner_or_an_admin(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-NT", 20).await;
        let (one, two, admin) = (app.buyer_token("u-1").await, app.buyer_token("u-2").await, app.admin_token().await);
        // One at a time, so that the notifications are written in this order.
        let mut mine = vec![];
        for price in ["2.50", "4.00", "9.99"] {
            let order = app.order("u-1", vec![line("SKU-NT", 1, price)]).await;
            notified(&app, order["orderId"].as_str().unwrap(), &admin).await;
            mine.push(order);
        }
        let theirs = app.order("u-2", vec![line("SKU-NT", 1, "1.00")]).await;
        let first = mine[0]["orderId"].as_str().unwrap();
        let theirs_id = theirs["orderId"].as_str().unwrap();
        notified(&app, theirs_id, &admin).await;

        // The owner reads its order's notification, with an order id in any case.
        let body = page(&app, &format!("/api/notifications?orderId={}", first.to_uppercase()), &one).await;
        let note = &body["items"][0];
        assert_eq!(note["orderId"], first);
        assert_eq!(note["userId"], "u-1");
        assert_eq!(note["kind"], "ORDER_PLACED");
        assert!(note["message"].as_str().unwrap().contains(first), "{note}");
        assert!(note["createdAt"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{note}");
        assert!(note["id"].is_i64(), "{note}");
        let event_id = app.order_created(first).await.event_id;
        assert_eq!(note["eventId"], event_id.as_str(), "one notification per order.created event");
        assert_eq!((body["page"].clone(), body["size"].clone(), body["totalPages"].clone(), body["hasNext"].clone()),
            (0.into(), 20.into(), 1.into(), false.into()), "the page shape of GET /api/stocks: {body}");
        assert_eq!(page(&app, &format!("/api/notifications?orderId={first}"), &admin).await["items"], body["items"]);
        assert_eq!(page(&app, &format!("/api/v1/notifications?orderId={first}"), &one).await["items"], body["items"]);

        // Without an order id: a user's own, newest first, in pages; an admin's, everyone's.
        let own = page(&app, "/api/notifications?size=2", &one).await;
        assert_eq!((own["totalElements"].clone(), own["totalPages"].clone(), own["hasNext"].clone()), (3.into(), 2.into(), true.into()), "{own}");
        let rest = page(&app, "/api/notifications?size=2&page=1", &one).await;
        let walked: Vec<&str> = own["items"].as_array().unwrap().iter().chain(rest["items"].as_array().unwrap())
            .map(|n| n["orderId"].as_str().unwrap()).collect();
        let placed: Vec<&str> = mine.iter().rev().map(|o| o["orderId"].as_str().unwrap()).collect();
        assert_eq!(walked, placed, "u-1's three notifications, newest first");
        assert_eq!(rest["hasNext"], false);
        assert!(page(&app, "/api/notifications?page=5", &one).await["items"].as_array().unwrap().is_empty(), "past the end: no items");
        let everyone = page(&app, "/api/notifications", &admin).await;
        assert_eq!(everyone["totalElements"], 4);
        assert_eq!(page(&app, "/api/notifications", &two).await["items"][0]["orderId"], theirs_id);

        // Someone else's order, an unknown one, bad parameters, no token: as GET /api/orders/{id}.
        assert_eq!(refused(&app, &format!("/api/notifications?orderId={theirs_id}"), Some(&one), 403).await, "/problems/forbidden");
        let unknown = uuid::Uuid::new_v4();
        assert_eq!(refused(&app, &format!("/api/notifications?orderId={unknown}"), Some(&admin), 404).await, "/problems/not-found");
        for bad in ["orderId=not-a-uuid", "size=0", "size=101", "size=ten", "page=-1"] {
            let problem = assert_problem(app.get(&format!("/api/notifications?{bad}"), Some(&one)).await, 400).await;
            assert_eq!(problem["type"], "/problems/bad-request");
            let parameter = bad.split('=').next().unwrap();
            assert!(problem["detail"].as_str().unwrap().contains(parameter), "the detail names {parameter}: {problem}");
        }
        assert_eq!(refused(&app, "/api/notifications", None, 401).await, "/problems/unauthorized");
    }

    async fn order_created_events_delivered_together_persist_one_notification_each(backend) {
        // A batch's notifications are written together when it ends: each event of the batch once, a
        // repeated one (the same event id twice in the batch) once.
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-NB", 5).await;
        let owner = app.buyer_token("u-1").await;
        let mut created = Vec::new();
        for _ in 0..3 {
            let order = app.order("u-1", vec![line("SKU-NB", 1, "3.00")]).await;
            let id = order["orderId"].as_str().unwrap().to_owned();
            notified(&app, &id, &owner).await;
            created.push(app.order_created(&id).await);
        }
        // The same orders' events again, under new event ids (as a second publisher would send them).
        let mut batch = Vec::new();
        let mut fresh_ids = Vec::new();
        for row in &created {
            let mut payload: Value = serde_json::from_str(&row.payload).unwrap();
            let event_id = uuid::Uuid::new_v4().to_string();
            payload["event_id"] = Value::from(event_id.clone());
            let mut delivery = first_delivery(row);
            delivery.body = std::sync::Arc::from(payload.to_string().into_bytes());
            delivery.message_id = Some(event_id.clone());
            batch.push(delivery);
            fresh_ids.push(event_id);
        }
        batch.push(batch[0].clone());
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        let dispositions = mailbox.handle(&notification_consumer(), &batch).await;
        assert_eq!(dispositions, vec![Disposition::Ack; 4]);
        for (row, event_id) in created.iter().zip(&fresh_ids) {
            let rows = notifications::Entity::find()
                .filter(notifications::Column::EventId.eq(event_id.as_str()))
                .filter(notifications::Column::OrderId.eq(row.aggregate_id.as_str()))
                .count(&app.state.db).await.unwrap();
            assert_eq!(rows, 1, "one notification for the batch's event of order {}", row.aggregate_id);
            let listed = page(&app, &format!("/api/notifications?orderId={}", row.aggregate_id), &owner).await;
            assert_eq!(listed["totalElements"], 2, "the first event's and the batch's: {listed}");
        }
    }

    async fn the_same_order_created_payload_delivered_twice_persists_one_notification(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-ND", 5).await;
        let order = app.order("u-1", vec![line("SKU-ND", 1, "3.00")]).await;
        let id = order["orderId"].as_str().unwrap();
        let owner = app.buyer_token("u-1").await;
        let before = notified(&app, id, &owner).await;

        // The payload the outbox published, delivered twice more to the notification queue.
        let created = app.order_created(id).await;
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        let queue = notification_consumer();
        let delivery = first_delivery(&created);
        for _ in 0..2 {
            assert_eq!(mailbox.handle(&queue, std::slice::from_ref(&delivery)).await, [Disposition::Ack]);
        }
        let after = page(&app, &format!("/api/notifications?orderId={id}"), &owner).await;
        assert_eq!(after["totalElements"], 1, "one notification: {after}");
        assert_eq!(after["items"], before["items"], "the first one, unchanged");

        // Even with the inbox's record of it gone, the event id keeps it to one row.
        let forgotten = consumed_messages::Entity::delete_many()
            .filter(consumed_messages::Column::MessageId.eq(created.event_id.as_str()))
            .filter(consumed_messages::Column::Consumer.eq(topology::Q_NOTIFICATION_ORDER_CREATED))
            .exec(&app.state.db).await.unwrap();
        assert_eq!(forgotten.rows_affected, 1, "the inbox had claimed the first delivery");
        assert_eq!(mailbox.handle(&queue, std::slice::from_ref(&delivery)).await, [Disposition::Ack]);
        let rows = notifications::Entity::find()
            .filter(notifications::Column::EventId.eq(created.event_id.as_str()))
            .count(&app.state.db).await.unwrap();
        assert_eq!(rows, 1, "one notification row per event id");
        assert_eq!(page(&app, &format!("/api/notifications?orderId={id}"), &owner).await["items"], before["items"]);
    }
}
