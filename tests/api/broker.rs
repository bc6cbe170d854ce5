//! RabbitMQ: the topology of the seed, envelopes on the wire, poison and forged messages, retries to the
//! failing queue only, a broker that stops and comes back, and two nodes sharing a database and a vhost.
//! Each test has a vhost of its own, deleted afterwards.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actors::config::PaymentMode;
use actors::topology::QUEUES;
use futures::future::join_all;
use sea_orm::{ColumnTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::config::{Server, start_server};
use crate::helpers::{
    BROKER, BrokerOutage, TEST_SECRET, TestApp, TestBroker, TestDb, eventually, line, mint_token,
    spawn_app_with, test_client,
};
use crate::on_every_backend;
use entities::{
    dead_letters, inventory_release_events, inventory_reservations, order_items, orders, payment_records,
    saga_history, saga_instances, stocks,
};

async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    BROKER.read().await
}

async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    BROKER.write().await
}

async fn app_on(
    backend: crate::helpers::Backend,
    broker: &TestBroker,
    configure: impl FnOnce(&mut ordersaga::config::Settings),
) -> Option<TestApp> {
    let url = broker.amqp_url.clone();
    let app = spawn_app_with(backend, move |s| {
        s.amqp_url = Some(url);
        configure(s);
    })
    .await?;
    app.ready().await;
    Some(app)
}

/// Two node processes on one server database (of its own) and one vhost (of its own); `None` on SQLite
/// (nodes share a server database) or without the services.
async fn two_nodes(
    backend: crate::helpers::Backend,
    env: &[(&str, &str)],
) -> Option<(TestBroker, TestDb, [Server; 2])> {
    if backend == crate::helpers::Backend::Sqlite {
        eprintln!("skipped on Sqlite: nodes share a server database");
        return None;
    }
    let broker = TestBroker::create().await?;
    let db = TestDb::create(backend).await?;
    let mut env = env.to_vec();
    env.push(("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str()));
    let nodes = [start_server(&db, &env).await, start_server(&db, &env).await];
    Some((broker, db, nodes))
}

fn header<'a>(message: &'a Value, name: &str) -> &'a Value {
    &message["properties"]["headers"][name]
}

on_every_backend! {
    async fn the_seed_topology_is_declared_on_the_broker(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(_app) = app_on(backend, &broker, |_| {}).await else { return };
        let vhost = &broker.vhost;
        let exchange = broker.api_get(&format!("exchanges/{vhost}/ecom.events")).await;
        assert_eq!(exchange["type"], "topic");
        assert_eq!(exchange["durable"], true);
        let queues: HashMap<String, Value> = broker
            .api_get(&format!("queues/{vhost}"))
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|q| (q["name"].as_str().unwrap().to_owned(), q.clone()))
            .collect();
        let bindings = broker.api_get(&format!("exchanges/{vhost}/ecom.events/bindings/source")).await;
        let bound: HashSet<(String, String)> = bindings
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["destination"].as_str().unwrap().to_owned(), b["routing_key"].as_str().unwrap().to_owned()))
            .collect();
        for spec in QUEUES {
            let queue = &queues[spec.name];
            assert_eq!(queue["durable"], true, "{}", spec.name);
            for pattern in spec.bindings {
                assert!(bound.contains(&(spec.name.to_owned(), (*pattern).to_owned())), "{} <- {pattern}", spec.name);
            }
            let retry = &queues[&format!("{}.retry", spec.name)];
            assert_eq!(retry["durable"], true);
            assert_eq!(retry["arguments"]["x-dead-letter-exchange"], "", "a retry goes back through the default exchange");
            assert_eq!(retry["arguments"]["x-dead-letter-routing-key"], spec.name, "to the queue that failed");
            // One retry queue per back-off step (the test settings: 20 ms doubling, five attempts).
            for ms in [20, 40, 80, 160] {
                let level = &queues[&format!("{}.retry.{ms}ms", spec.name)];
                assert_eq!(level["arguments"]["x-message-ttl"], ms, "{}: every message waits {ms} ms", spec.name);
                assert_eq!(level["arguments"]["x-dead-letter-exchange"], "");
                assert_eq!(level["arguments"]["x-dead-letter-routing-key"], spec.name);
            }
            assert!(queues.contains_key(&format!("{}.dlq", spec.name)));
        }
        // The stock queues have one consumer at a time in the whole deployment; the others any number.
        for (queue, single) in [("q.inventory.order-created", true), ("q.inventory.release-requested", true), ("q.payment.inventory-reserved", false), ("q.order.payment-result", false)] {
            let argument = &queues[queue]["arguments"]["x-single-active-consumer"];
            assert_eq!(argument == &json!(true), single, "{queue}: {argument}");
        }
        // The seed's bindings, and the two result queues of the saga.
        for (queue, key) in [
            ("q.inventory.order-created", "order.created"),
            ("q.inventory.release-requested", "inventory.release.requested"),
            ("q.payment.inventory-reserved", "inventory.reserved"),
            ("q.order.inventory-result", "inventory.*"),
            ("q.order.payment-result", "payment.*"),
        ] {
            assert!(bound.contains(&(queue.to_owned(), key.to_owned())), "{queue} <- {key}");
        }
        let ready: Value = _app.get("/health/ready", None).await.json().await.unwrap();
        assert_eq!(ready["checks"]["bus"], json!({"transport": "rabbitmq", "status": "up"}));
    }

    async fn orders_travel_through_rabbitmq_as_documented_envelopes(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(app) = app_on(backend, &broker, |s| s.payment_mode = PaymentMode::Hashed).await else { return };
        broker.tap("tap").await;
        app.set_stock("SKU-Q", 50).await;
        // HASHED decides per order id: place orders until both outcomes have happened (eight at least).
        let mut orders = vec![];
        let mut outcomes = HashSet::new();
        for i in 0..40 {
            let order = app.order(&format!("u-{i}"), vec![line("SKU-Q", 1, "3.30")]).await;
            let ended = app.ended(order["orderId"].as_str().unwrap()).await;
            outcomes.insert(ended["status"].as_str().unwrap().to_owned());
            orders.push(order);
            if orders.len() >= 8 && outcomes.len() == 2 {
                break;
            }
        }
        assert_eq!(outcomes.len(), 2, "some payments succeeded and some failed: {outcomes:?}");
        let messages = eventually(Duration::from_secs(20), "every event on the tap", || async {
            let mut messages = broker.take("tap", 1000).await;
            messages.retain(|m| m["payload"].is_string());
            (!messages.is_empty()).then_some(messages)
        })
        .await;
        let mut traces: HashMap<String, HashSet<String>> = HashMap::new();
        let mut keys: HashSet<String> = HashSet::new();
        for message in &messages {
            let envelope: Value = serde_json::from_str(message["payload"].as_str().unwrap()).unwrap();
            let properties = &message["properties"];
            assert_eq!(properties["delivery_mode"], 2, "persistent");
            assert_eq!(properties["message_id"], envelope["event_id"]);
            assert_eq!(properties["type"], envelope["event_type"]);
            assert_eq!(header(message, "x-event-id"), &envelope["event_id"]);
            assert_eq!(header(message, "x-event-type"), &envelope["event_type"]);
            assert_eq!(header(message, "x-trace-id"), &envelope["trace_id"]);
            // The order's trace id is its request id, a UUID: a W3C trace id too.
            let w3c = envelope["trace_id"].as_str().unwrap().replace('-', "");
            let parent = header(message, "traceparent").as_str().expect("a traceparent header");
            assert_eq!(actors::trace::parse_traceparent(parent), Some(w3c));
            let signature = header(message, "x-signature").as_str().unwrap();
            assert!(actors::envelope::verify_signature(TEST_SECRET.as_bytes(), message["payload"].as_str().unwrap().as_bytes(), signature));
            assert_eq!(envelope["version"], 1);
            keys.insert(message["routing_key"].as_str().unwrap().to_owned());
            let order_id = envelope["data"]["order_id"].as_str().unwrap().to_owned();
            traces.entry(order_id).or_default().insert(envelope["trace_id"].as_str().unwrap().to_owned());
        }
        for order in &orders {
            let id = order["orderId"].as_str().unwrap();
            assert_eq!(traces[id], HashSet::from([order["traceId"].as_str().unwrap().to_owned()]), "one trace per order");
        }
        for key in ["order.created", "inventory.reserved", "payment.succeeded", "payment.failed", "inventory.release.requested", "inventory.released"] {
            assert!(keys.contains(key), "{key} seen on the tap: {keys:?}");
        }
    }

    async fn poison_and_forged_messages_reach_the_dlq_with_a_reason(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(app) = app_on(backend, &broker, |_| {}).await else { return };
        let envelope = json!({
            "event_id": uuid::Uuid::new_v4(), "event_type": "InventoryReleaseRequested",
            "occurred_at": "2026-11-21T00:00:00Z", "trace_id": "t-poison",
            "identity": {"user_id": "x", "roles": []},
            "data": {"order_id": uuid::Uuid::new_v4(), "reason": "PAYMENT_FAILED"}, "version": 1
        })
        .to_string();
        let signed = actors::envelope::sign(TEST_SECRET.as_bytes(), envelope.as_bytes());
        let forged = actors::envelope::sign(b"someone-else-s-key-someone-else-s-key", envelope.as_bytes());
        let key = "inventory.release.requested";
        assert!(broker.publish(key, &envelope, json!({})).await, "unsigned");
        assert!(broker.publish(key, &envelope, json!({"x-signature": forged})).await, "forged");
        assert!(broker.publish(key, "{garbage", json!({"x-signature": actors::envelope::sign(TEST_SECRET.as_bytes(), b"{garbage")})).await);
        assert!(broker.publish(key, &envelope, json!({"x-signature": signed})).await, "signed, but for no reservation");

        eventually(Duration::from_secs(20), "four messages on the .dlq", || async {
            let queue = broker.api_get(&format!("queues/{}/q.inventory.release-requested.dlq", broker.vhost)).await;
            (queue["messages"] == 4).then_some(())
        })
        .await;
        let messages = broker.take("q.inventory.release-requested.dlq", 10).await;
        let reasons: Vec<String> = messages.iter().map(|m| header(m, "x-dlq-reason").as_str().unwrap().to_owned()).collect();
        assert!(reasons.iter().any(|r| r.contains("unsigned")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("forged")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("undecodable")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("no reservation")), "{reasons:?}");
        let stored = dead_letters::Entity::find().count(&app.state.db).await.unwrap();
        assert_eq!(stored, 4, "every dead letter is also in the store");
        // Nothing forged was applied, and the node keeps processing.
        assert_eq!(inventory_release_events::Entity::find().count(&app.state.db).await.unwrap(), 0);
        app.set_stock("SKU-D", 1).await;
        let order = app.order("u-1", vec![line("SKU-D", 1, "1")]).await;
        assert_eq!(app.ended(order["orderId"].as_str().unwrap()).await["status"], "CONFIRMED");
    }

    async fn a_second_release_request_for_a_released_order_changes_nothing(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(app) = app_on(backend, &broker, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        app.set_stock("SKU-R1", 5).await;
        app.set_stock("SKU-R2", 5).await;
        let order = app.order("u-1", vec![line("SKU-R1", 1, "1"), line("SKU-R2", 2, "1")]).await;
        let order_id = order["orderId"].as_str().unwrap();
        assert_eq!(app.ended(order_id).await["failureReason"], "PAYMENT_FAILED");
        assert_eq!((app.stock("SKU-R1").await, app.stock("SKU-R2").await), ((5, 0), (5, 0)), "the stock came back once");
        // The same request again, as a new event (another id, so the inbox does not absorb it).
        let envelope = json!({
            "event_id": uuid::Uuid::new_v4(), "event_type": "InventoryReleaseRequested",
            "occurred_at": "2026-11-21T00:00:00Z", "trace_id": "t-again",
            "identity": {"user_id": "u-1", "roles": ["buyer"]},
            "data": {"order_id": order_id, "reason": "PAYMENT_FAILED"}, "version": 1
        })
        .to_string();
        let signed = actors::envelope::sign(TEST_SECRET.as_bytes(), envelope.as_bytes());
        assert!(broker.publish("inventory.release.requested", &envelope, json!({"x-signature": signed})).await);
        eventually(Duration::from_secs(20), "the second request consumed", || async {
            let queue = broker.api_get(&format!("queues/{}/q.inventory.release-requested", broker.vhost)).await;
            (queue["messages"] == 0 && queue["message_stats"]["ack"].as_u64().unwrap_or(0) >= 2).then_some(())
        })
        .await;
        assert_eq!((app.stock("SKU-R1").await, app.stock("SKU-R2").await), ((5, 0), (5, 0)), "nothing came back twice");
        assert_eq!(inventory_release_events::Entity::find().count(&app.state.db).await.unwrap(), 1, "one release in the audit");
        assert_eq!(dead_letters::Entity::find().count(&app.state.db).await.unwrap(), 0, "a repeated release is not an error");
    }

    async fn a_retry_comes_back_to_the_failing_queue_only(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(app) = app_on(backend, &broker, |s| {
            s.payment.transient_failure_rate = 1.0;
            s.retry.max_attempts = 3;
            s.retry.initial_delay_ms = 50;
            s.saga.payment_timeout_seconds = 600;
        })
        .await else { return };
        app.set_stock("SKU-Y", 5).await;
        let order = app.order("u-1", vec![line("SKU-Y", 1, "1")]).await;
        let id = order["orderId"].as_str().unwrap();
        let dead = eventually(Duration::from_secs(30), "the payment message on the .dlq", || async {
            let messages = broker.take("q.payment.inventory-reserved.dlq", 1).await;
            messages.into_iter().next()
        })
        .await;
        assert_eq!(header(&dead, "x-retry-count"), 2, "three attempts: the first and two retries");
        assert!(header(&dead, "x-dlq-reason").as_str().unwrap().contains("gave up after 3 attempts"));
        // The saga saw inventory.reserved once: the retries did not fan out to its queue again.
        let reserved = saga_history::Entity::find()
            .filter(saga_history::Column::OrderId.eq(id))
            .filter(saga_history::Column::EventType.eq("InventoryReserved"))
            .count(&app.state.db)
            .await
            .unwrap();
        assert_eq!(reserved, 1);
        assert_eq!(app.saga(id).await["state"], "AWAITING_PAYMENT");
    }

    async fn a_broker_that_stops_and_comes_back_loses_no_order(backend) {
        let _broker_lock = exclusive().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(app) = app_on(backend, &broker, |s| s.payment_mode = PaymentMode::Hashed).await else { return };
        app.set_stock("SKU-B", 100).await;
        let mut ids = vec![];
        for i in 0..10 {
            ids.push(app.order(&format!("u-{i}"), vec![line("SKU-B", 1, "2")]).await["orderId"].as_str().unwrap().to_owned());
        }
        let outage = BrokerOutage::begin();
        let down = eventually(Duration::from_secs(20), "readiness to report the broker down", || async {
            let ready = app.get("/health/ready", None).await;
            if ready.status() != 503 {
                return None;
            }
            ready.json::<Value>().await.ok()
        })
        .await;
        assert_eq!(down["checks"]["bus"]["status"], "down");
        // Orders are still accepted: the outbox holds their events.
        for i in 10..20 {
            ids.push(app.order(&format!("u-{i}"), vec![line("SKU-B", 1, "2")]).await["orderId"].as_str().unwrap().to_owned());
        }
        outage.end();
        app.ready().await;
        let mut confirmed = 0;
        for id in &ids {
            if app.ended(id).await["status"] == "CONFIRMED" {
                confirmed += 1;
            }
        }
        assert_eq!(app.stock("SKU-B").await, (100 - confirmed, confirmed));
    }
}

on_every_backend! {
    async fn two_nodes_on_one_database_and_one_vhost_end_every_order_once(backend) {
        let _broker_lock = exclusive().await;
        let env = [("ORDERSAGA_PAYMENT_MODE", "HASHED"), ("ORDERSAGA_DATABASE__MAX_CONNECTIONS", "8")];
        let Some((_broker, db, nodes)) = two_nodes(backend, &env).await else { return };
        let client = test_client();
        let admin = mint_token(&client, &nodes[0].address, "admin-1", "admin").await;
        let buyer = mint_token(&client, &nodes[0].address, "buyer-1", "buyer").await;
        let skus = ["N-A", "N-B", "N-C", "N-D"];
        for sku in skus {
            let r = client.post(format!("{}/api/stocks", nodes[1].address)).bearer_auth(&admin)
                .json(&json!({"skuId": sku, "availableQty": 60})).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        const ORDERS: usize = 240;
        let place = |i: usize| {
            let (client, base, buyer) = (client.clone(), nodes[i % 2].address.clone(), buyer.clone());
            async move {
                let items = vec![line(skus[i % 4], 1 + (i % 3) as i64, "1.10")];
                let r = client.post(format!("{base}/api/orders")).bearer_auth(&buyer)
                    .header("Idempotency-Key", format!("n-{i}"))
                    .json(&json!({"userId": "buyer-1", "items": items})).send().await.unwrap();
                assert_eq!(r.status(), 201);
                r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned()
            }
        };
        let mut ids = Vec::new();
        for chunk in (0..ORDERS / 2).collect::<Vec<_>>().chunks(8) {
            ids.extend(join_all(chunk.iter().map(|&i| place(i))).await);
        }
        // The broker goes away in the middle; both nodes keep taking orders.
        let outage = BrokerOutage::begin();
        for chunk in (ORDERS / 2..ORDERS * 3 / 4).collect::<Vec<_>>().chunks(8) {
            ids.extend(join_all(chunk.iter().map(|&i| place(i))).await);
        }
        outage.end();
        for chunk in (ORDERS * 3 / 4..ORDERS).collect::<Vec<_>>().chunks(8) {
            ids.extend(join_all(chunk.iter().map(|&i| place(i))).await);
        }

        let conn = Database::connect(&db.url).await.unwrap();
        eventually(Duration::from_secs(120), "every order to end on the two nodes", || async {
            let pending = orders::Entity::find().filter(orders::Column::Status.eq("PENDING")).count(&conn).await.ok()?;
            (pending == 0).then_some(())
        })
        .await;
        assert_eq!(orders::Entity::find().count(&conn).await.unwrap(), ORDERS as u64);
        let mut held: HashMap<String, i64> = HashMap::new();
        for id in &ids {
            let saga = saga_instances::Entity::find_by_id(id.clone()).one(&conn).await.unwrap().unwrap();
            let reservations = inventory_reservations::Entity::find().filter(inventory_reservations::Column::OrderId.eq(id.as_str())).count(&conn).await.unwrap();
            let payments = payment_records::Entity::find().filter(payment_records::Column::OrderId.eq(id.as_str())).count(&conn).await.unwrap();
            let releases = inventory_release_events::Entity::find().filter(inventory_release_events::Column::OrderId.eq(id.as_str())).count(&conn).await.unwrap();
            assert!(reservations <= 1 && payments <= 1, "order {id} reserved or charged twice");
            let history = saga_history::Entity::find().filter(saga_history::Column::OrderId.eq(id.as_str())).all(&conn).await.unwrap();
            let mut applied = HashSet::new();
            for step in history.iter().filter(|h| h.from_state != Some(h.to_state.clone())) {
                assert!(applied.insert(step.event_type.clone()), "order {id}: {} applied twice", step.event_type);
            }
            match saga.state.as_str() {
                "COMPLETED" => {
                    assert_eq!((reservations, payments, releases), (1, 1, 0), "order {id}");
                    for item in order_items::Entity::find().filter(order_items::Column::OrderId.eq(id.as_str())).all(&conn).await.unwrap() {
                        *held.entry(item.sku_id).or_default() += i64::from(item.quantity);
                    }
                }
                "COMPENSATED" => assert_eq!((reservations, payments, releases), (1, 1, 1), "order {id} released once"),
                "FAILED" => assert_eq!((reservations, payments, releases), (0, 0, 0), "order {id}"),
                other => panic!("order {id} ended in {other}"),
            }
        }
        for sku in skus {
            let stock = stocks::Entity::find_by_id(sku.to_owned()).one(&conn).await.unwrap().unwrap();
            assert!(stock.available_qty >= 0);
            assert_eq!(stock.available_qty + stock.reserved_qty, 60, "{sku} conserved");
            assert_eq!(stock.reserved_qty, held.get(sku).copied().unwrap_or(0), "{sku}");
        }
        assert_eq!(dead_letters::Entity::find().count(&conn).await.unwrap(), 0, "nothing dead-lettered");
        drop(nodes);
    }

    async fn admission_over_rabbitmq_counts_what_waits_not_what_another_node_finished(backend) {
        let _broker_lock = exclusive().await;
        // A small bound: any saga counted after another node advanced it would soon fill it.
        let Some((_broker, db, nodes)) = two_nodes(backend, &[("ORDERSAGA_ADMISSION__MAX_BACKLOG", "6")]).await else { return };
        let client = test_client();
        let base = nodes[0].address.clone();
        let admin = mint_token(&client, &base, "admin-1", "admin").await;
        let buyer = mint_token(&client, &base, "buyer-1", "buyer").await;
        let r = client.post(format!("{base}/api/stocks")).bearer_auth(&admin)
            .json(&json!({"skuId": "ADM-A", "availableQty": 1000})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // One order at a time, each waited for: nothing ever waits on the engine for long, so none may
        // be refused — although the other node takes about half of the saga's steps.
        for i in 0..40 {
            let r = client.post(format!("{base}/api/orders")).bearer_auth(&buyer)
                .header("Idempotency-Key", format!("adm-{i}"))
                .json(&json!({"userId": "buyer-1", "items": [line("ADM-A", 1, "1")]})).send().await.unwrap();
            assert_eq!(r.status(), 201, "order {i}: {}", r.text().await.unwrap_or_default());
            let id = r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
            eventually(Duration::from_secs(20), "the order to end", || async {
                let order: Value = client.get(format!("{base}/api/orders/{id}")).bearer_auth(&buyer)
                    .send().await.ok()?.json().await.ok()?;
                (order["status"] != "PENDING").then_some(())
            })
            .await;
        }
        let conn = Database::connect(&db.url).await.unwrap();
        let mine = saga_history::Entity::find().filter(saga_history::Column::EventType.eq("InventoryReserved")).count(&conn).await.unwrap();
        assert_eq!(mine, 40, "every order was reserved");
        drop(nodes);
    }
}

on_every_backend! {
    async fn the_same_order_created_payload_delivered_twice_over_rabbitmq_persists_one_notification(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(app) = app_on(backend, &broker, |_| {}).await else { return };
        app.set_stock("SKU-NB", 5).await;
        let order = app.order("u-1", vec![line("SKU-NB", 1, "3.00")]).await;
        let id = order["orderId"].as_str().unwrap();
        let owner = app.buyer_token("u-1").await;
        let before = crate::notifications::notified(&app, id, &owner).await;

        // The envelope the node published, published again twice straight to the notification queue.
        let created = app.order_created(id).await;
        let signature = actors::envelope::sign(TEST_SECRET.as_bytes(), created.payload.as_bytes());
        let queue = actors::topology::Q_NOTIFICATION_ORDER_CREATED;
        for _ in 0..2 {
            let headers = json!({"x-signature": signature, "x-routing-key": "order.created"});
            assert!(broker.publish_to_queue(queue, &created.payload, headers).await, "routed to {queue}");
        }
        eventually(Duration::from_secs(30), "the first delivery and both repeats acknowledged", || async {
            let stats = broker.api_get(&format!("queues/{}/{queue}", broker.vhost)).await;
            (stats["messages"] == 0 && stats["message_stats"]["ack"].as_u64().unwrap_or(0) >= 3).then_some(())
        })
        .await;
        let after: Value = app.get(&format!("/api/notifications?orderId={id}"), Some(&owner)).await.json().await.unwrap();
        assert_eq!(after["totalElements"], 1, "one notification: {after}");
        assert_eq!(after["items"], before["items"], "the first one, unchanged");
        let rows = entities::notifications::Entity::find()
            .filter(entities::notifications::Column::EventId.eq(created.event_id.as_str()))
            .count(&app.state.db).await.unwrap();
        assert_eq!(rows, 1, "one notification row for the event");
        assert_eq!(dead_letters::Entity::find().count(&app.state.db).await.unwrap(), 0, "a repeat is not an error");
        assert_eq!(broker.depth(&format!("{queue}.dlq")).await, 0);
    }
}

/// An `order.created` envelope for the notification queue, signed as the nodes sign.
fn signed_order_created(event_id: &str) -> (String, Value) {
    let envelope = json!({
        "event_id": event_id,
        "event_type": "OrderCreated",
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "trace_id": "retry-levels",
        "identity": {"user_id": "u-1", "roles": ["buyer"]},
        "data": {
            "order_id": uuid::Uuid::new_v4().to_string(),
            "user_id": "u-1",
            "items": [{"sku_id": "SKU-R", "quantity": 1, "price": serde_json::Number::from_string_unchecked("1.00".into())}],
            "total_amount": serde_json::Number::from_string_unchecked("1.00".into()),
        },
        "version": 1,
    })
    .to_string();
    let signature = actors::envelope::sign(TEST_SECRET.as_bytes(), envelope.as_bytes());
    (
        envelope,
        json!({"x-signature": signature, "x-routing-key": "order.created"}),
    )
}

on_every_backend! {
    async fn a_short_retry_is_not_held_behind_a_long_one(backend) {
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        // Event ids starting 0000 fail every time; those starting 1111 fail their first attempt only.
        let env = [
            ("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str()),
            ("ORDERSAGA_RETRY__INITIAL_DELAY_MS", "100"),
            ("ORDERSAGA_RETRY__MAX_DELAY_MS", "5000"),
            ("ORDERSAGA_RETRY__MAX_ATTEMPTS", "8"),
            ("FAILPOINTS", "consume-fails=return(0000@99,1111@2)"),
        ];
        let _server = start_server(&db, &env).await;
        let queue = QUEUES.iter().find(|q| q.name == "q.notification.order-created").unwrap().name;

        // A message on its seventh attempt fails again and waits the longest delay, 5 s.
        let slow = format!("0000{}", &uuid::Uuid::new_v4().to_string()[4..]);
        let (payload, mut headers) = signed_order_created(&slow);
        headers["x-retry-count"] = json!(6);
        assert!(broker.publish_to_queue(queue, &payload, headers).await);
        let long_level = format!("{queue}.retry.5000ms");
        eventually(Duration::from_secs(10), "the slow message in the 5 s retry level", || async {
            (broker.depth(&long_level).await == 1).then_some(())
        })
        .await;

        // A first attempt that fails comes back after 100 ms, not after the slow one's 5 s.
        let quick = format!("1111{}", &uuid::Uuid::new_v4().to_string()[4..]);
        let (payload, headers) = signed_order_created(&quick);
        let sent = std::time::Instant::now();
        assert!(broker.publish_to_queue(queue, &payload, headers).await);
        let conn = Database::connect(&db.url).await.unwrap();
        eventually(Duration::from_secs(10), "the quick message to be applied on its second attempt", || async {
            let found = entities::notifications::Entity::find()
                .filter(entities::notifications::Column::EventId.eq(quick.as_str()))
                .count(&conn).await.ok()?;
            (found == 1).then_some(())
        })
        .await;
        let waited = sent.elapsed();
        assert!(waited < Duration::from_millis(2_500), "applied after {waited:?}: held behind the 5 s retry");
        assert_eq!(broker.depth(&long_level).await, 1, "the slow one is still waiting its turn");
    }
}

on_every_backend! {
    async fn a_batch_is_acknowledged_together_and_its_failed_delivery_retried(backend) {
        // A consumer settles a batch with one acknowledgement for the deliveries it applied; the one that
        // failed goes to its retry level first and must not be acknowledged away with the rest.
        let _broker_lock = shared().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        // Event ids starting 2222 fail their first attempt.
        let env = [
            ("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str()),
            ("ORDERSAGA_RETRY__INITIAL_DELAY_MS", "100"),
            ("FAILPOINTS", "consume-fails=return(2222@2)"),
        ];
        let queue = QUEUES.iter().find(|q| q.name == "q.notification.order-created").unwrap().name;
        // A node declares the topology and goes: the messages then wait in the queue, and the next node's
        // consumer takes them in one batch.
        drop(start_server(&db, &env).await);
        let ids: Vec<String> = (0..20)
            .map(|i| {
                let id = uuid::Uuid::new_v4().to_string();
                if i == 7 { format!("2222{}", &id[4..]) } else { id }
            })
            .collect();
        for id in &ids {
            let (payload, headers) = signed_order_created(id);
            assert!(broker.publish_to_queue(queue, &payload, headers).await);
        }
        eventually(Duration::from_secs(10), "the 20 messages waiting in the queue", || async {
            (broker.depth(queue).await == 20).then_some(())
        })
        .await;
        let _server = start_server(&db, &env).await;

        let conn = Database::connect(&db.url).await.unwrap();
        eventually(Duration::from_secs(10), "every message applied, the failed one on its retry", || async {
            let found = entities::notifications::Entity::find()
                .filter(entities::notifications::Column::EventId.is_in(ids.clone()))
                .count(&conn)
                .await
                .ok()?;
            (found == 20).then_some(())
        })
        .await;
        let retry_level = format!("{queue}.retry.100ms");
        eventually(Duration::from_secs(10), "nothing left unacknowledged or waiting", || async {
            (broker.depth(queue).await == 0 && broker.depth(&retry_level).await == 0).then_some(())
        })
        .await;
    }
}
