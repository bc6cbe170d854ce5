//! Stock: upsert, get, list, roles and validation.

use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};
use crate::on_every_backend;

on_every_backend! {
    async fn admin_upserts_stock_with_post_and_put(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.admin_token().await;
        let created = app.post("/api/stocks", Some(&token), &json!({"skuId": "SKU-001", "availableQty": 10})).await;
        assert_eq!(created.status(), 200);
        let created: Value = created.json().await.unwrap();
        assert_eq!(created["skuId"], "SKU-001");
        assert_eq!(created["availableQty"], 10);
        assert_eq!(created["reservedQty"], 0);
        assert!(created["updatedAt"].is_string());

        let updated = app.put("/api/stocks/SKU-001", Some(&token), &json!({"availableQty": 25})).await;
        assert_eq!(updated.status(), 200);
        let updated: Value = updated.json().await.unwrap();
        assert_eq!(updated["availableQty"], 25);
        assert!(updated["version"].as_i64().unwrap() > created["version"].as_i64().unwrap());

        let fetched: Value = app.get("/api/stocks/SKU-001", None).await.json().await.unwrap();
        assert_eq!(fetched, updated);
    }

    async fn put_creates_an_unknown_sku(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.admin_token().await;
        let response = app.put("/api/stocks/NEW-1", Some(&token), &json!({"availableQty": 3})).await;
        assert_eq!(response.status(), 200);
        let fetched: Value = app.get("/api/v1/stocks/NEW-1", None).await.json().await.unwrap();
        assert_eq!(fetched["availableQty"], 3);
    }

    async fn unknown_sku_answers_404(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        assert_problem(app.get("/api/stocks/NOPE", None).await, 404).await;
    }

    async fn changing_stock_needs_admin(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let buyer = app.buyer_token("u-1").await;
        let body = json!({"skuId": "SKU-001", "availableQty": 10});
        assert_problem(app.post("/api/stocks", Some(&buyer), &body).await, 403).await;
        assert_problem(app.put("/api/stocks/SKU-001", Some(&buyer), &json!({"availableQty": 1})).await, 403).await;
        assert_problem(app.post("/api/stocks", None, &body).await, 401).await;
        assert_problem(app.put("/api/stocks/SKU-001", None, &json!({"availableQty": 1})).await, 401).await;
        assert_problem(app.get("/api/stocks/SKU-001", None).await, 404).await;
    }

    async fn invalid_stock_requests_answer_400(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.admin_token().await;
        for body in [
            json!({"skuId": "SKU-001", "availableQty": -1}),
            json!({"skuId": "", "availableQty": 1}),
            json!({"skuId": "bad sku", "availableQty": 1}),
            json!({"skuId": "SKU-001"}),
            json!({"skuId": "SKU-001", "availableQty": "ten"}),
            json!({"skuId": "SKU-001", "availableQty": 1.5}),
        ] {
            let response = app.post("/api/stocks", Some(&token), &body).await;
            assert_problem(response, 400).await;
        }
        let malformed = app
            .client
            .post(app.url("/api/stocks"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{\"skuId\":")
            .send()
            .await
            .unwrap();
        assert_problem(malformed, 400).await;
    }

    async fn an_oversized_body_answers_413(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let token = app.admin_token().await;
        let big = json!({"skuId": "SKU-001", "availableQty": 1, "padding": "x".repeat(200_000)});
        assert_problem(app.post("/api/stocks", Some(&token), &big).await, 413).await;
    }

    async fn stocks_are_listed_in_pages(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        for i in 0..5 {
            app.set_stock(&format!("SKU-{i:03}"), i).await;
        }
        let first: Value = app.get("/api/stocks?page=0&size=2", None).await.json().await.unwrap();
        assert_eq!(first["totalElements"], 5);
        assert_eq!(first["totalPages"], 3);
        assert_eq!(first["hasNext"], true);
        let skus: Vec<&str> = first["items"].as_array().unwrap().iter().map(|s| s["skuId"].as_str().unwrap()).collect();
        assert_eq!(skus, ["SKU-000", "SKU-001"]);
        let last: Value = app.get("/api/v1/stocks?page=2&size=2", None).await.json().await.unwrap();
        assert_eq!(last["items"].as_array().unwrap().len(), 1);
        assert_eq!(last["hasNext"], false);
        let beyond: Value = app.get("/api/stocks?page=9&size=2", None).await.json().await.unwrap();
        assert_eq!(beyond["items"], json!([]));
        for bad in ["size=0", "size=101", "page=-1", "page=abc"] {
            assert_problem(app.get(&format!("/api/stocks?{bad}"), None).await, 400).await;
        }
    }
}

on_every_backend! {
    async fn admins_reserve_stock_all_or_nothing_once_per_order(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("R-1", 5).await;
        app.set_stock("R-2", 1).await;
        let admin = app.admin_token().await;
        let order_id = uuid::Uuid::new_v4().to_string();
        let body = json!({"orderId": order_id, "items": [{"skuId": "R-1", "quantity": 2}, {"skuId": "R-2", "quantity": 1}]});
        let first = app.post("/api/stocks/reserve", Some(&admin), &body).await;
        assert_eq!(first.status(), 200);
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["status"], "RESERVED");
        assert_eq!(first["orderId"], order_id.as_str());
        let again: Value = app.post("/api/v1/stocks/reserve", Some(&admin), &body).await.json().await.unwrap();
        assert_eq!(again["reservationId"], first["reservationId"], "idempotent per order");
        let stock: Value = app.get("/api/stocks/R-1", None).await.json().await.unwrap();
        assert_eq!((stock["availableQty"].as_i64(), stock["reservedQty"].as_i64()), (Some(3), Some(2)));

        let short = json!({"orderId": uuid::Uuid::new_v4(), "items": [{"skuId": "R-1", "quantity": 1}, {"skuId": "R-2", "quantity": 1}]});
        assert_problem(app.post("/api/stocks/reserve", Some(&admin), &short).await, 409).await;
        let stock: Value = app.get("/api/stocks/R-1", None).await.json().await.unwrap();
        assert_eq!(stock["availableQty"], 3, "nothing held when one line is short");
        let unknown = json!({"orderId": uuid::Uuid::new_v4(), "items": [{"skuId": "NOPE", "quantity": 1}]});
        assert_problem(app.post("/api/stocks/reserve", Some(&admin), &unknown).await, 409).await;

        let buyer = app.buyer_token("u-1").await;
        assert_problem(app.post("/api/stocks/reserve", Some(&buyer), &body).await, 403).await;
        assert_problem(app.post("/api/stocks/reserve", None, &body).await, 401).await;
        for bad in [
            json!({"orderId": "not-a-uuid", "items": [{"skuId": "R-1", "quantity": 1}]}),
            json!({"orderId": uuid::Uuid::new_v4(), "items": []}),
            json!({"orderId": uuid::Uuid::new_v4(), "items": [{"skuId": "R-1", "quantity": 0}]}),
            json!({"orderId": uuid::Uuid::new_v4(), "items": [{"skuId": "bad sku", "quantity": 1}]}),
        ] {
            assert_problem(app.post("/api/stocks/reserve", Some(&admin), &bad).await, 400).await;
        }
    }

    async fn the_reservation_resource_answers_reserved_or_failed_naming_the_sku(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-001", 3).await;
        app.set_stock("SKU-002", 1).await;
        let admin = app.admin_token().await;
        let order_id = uuid::Uuid::new_v4().to_string();
        let body = json!({"orderId": order_id, "items": [{"skuId": "SKU-001", "quantity": 2}]});
        let first = app.post("/api/stocks/reservations", Some(&admin), &body).await;
        assert_eq!(first.status(), 200);
        let first: Value = first.json().await.unwrap();
        assert_eq!(first["status"], "RESERVED", "{first}");
        assert_eq!(first["orderId"], order_id.as_str());
        assert_eq!(first["reason"], Value::Null);
        assert_eq!(first["items"], json!([{"skuId": "SKU-001", "quantity": 2}]));
        assert!(uuid::Uuid::parse_str(first["reservationId"].as_str().unwrap()).is_ok());
        assert!(chrono::DateTime::parse_from_rfc3339(first["createdAt"].as_str().unwrap()).is_ok(), "{first}");
        let again: Value = app.post("/api/v1/stocks/reservations", Some(&admin), &body).await.json().await.unwrap();
        assert_eq!(again, first, "the same reservation for a repeated orderId");
        // The two reservation routes share one reservation per order.
        let old_route: Value = app.post("/api/stocks/reserve", Some(&admin), &body).await.json().await.unwrap();
        assert_eq!(old_route["reservationId"], first["reservationId"]);
        assert_eq!(app.stock("SKU-001").await, (1, 2), "reserved once");

        let short_order = uuid::Uuid::new_v4().to_string();
        let short = json!({"orderId": short_order, "items": [{"skuId": "SKU-001", "quantity": 1}, {"skuId": "SKU-002", "quantity": 2}]});
        let failed = app.post("/api/stocks/reservations", Some(&admin), &short).await;
        assert_eq!(failed.status(), 200, "a refusal is an answer of the resource, not an error");
        let failed: Value = failed.json().await.unwrap();
        assert_eq!(failed["status"], "FAILED", "{failed}");
        assert_eq!(failed["reason"], "INSUFFICIENT_STOCK:SKU-002 available=1 requested=2");
        assert_eq!(failed["orderId"], short_order.as_str());
        assert_eq!(failed["reservationId"], Value::Null, "nothing is held, so there is no reservation");
        assert_eq!(failed["items"], short["items"]);
        assert_eq!(app.stock("SKU-001").await, (1, 2), "all or nothing");
        assert_eq!(app.stock("SKU-002").await, (1, 0));

        let unknown = json!({"orderId": uuid::Uuid::new_v4(), "items": [{"skuId": "NO-SUCH-1", "quantity": 1}]});
        let unknown: Value = app.post("/api/stocks/reservations", Some(&admin), &unknown).await.json().await.unwrap();
        assert_eq!((unknown["status"].as_str(), unknown["reason"].as_str()), (Some("FAILED"), Some("SKU_NOT_FOUND:NO-SUCH-1")));

        let buyer = app.buyer_token("u-1").await;
        assert_problem(app.post("/api/stocks/reservations", Some(&buyer), &body).await, 403).await;
        assert_problem(app.post("/api/stocks/reservations", None, &body).await, 401).await;
        for bad in [
            json!({"orderId": "not-a-uuid", "items": [{"skuId": "SKU-001", "quantity": 1}]}),
            json!({"orderId": uuid::Uuid::new_v4(), "items": []}),
            json!({"orderId": uuid::Uuid::new_v4(), "items": [{"skuId": "SKU-001", "quantity": 0}]}),
            json!({"items": [{"skuId": "SKU-001", "quantity": 1}]}),
        ] {
            assert_problem(app.post("/api/stocks/reservations", Some(&admin), &bad).await, 400).await;
        }
    }
}

on_every_backend! {
    async fn a_batch_of_orders_reserves_as_if_one_came_after_the_other(backend) {
        // Orders delivered to the inventory together are decided against the stock the batch read once:
        // each must see what the ones before it took, and a refused one takes nothing.
        use actors::mailbox::{Delivery, Disposition, Mailbox};
        use actors::outbox::OutboxSignal;
        use entities::outbox_events;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-X", 5).await;
        app.set_stock("SKU-T", 1).await;
        let template = app.order("u-1", vec![crate::helpers::line("SKU-T", 1, "2.00")]).await;
        let template_id = template["orderId"].as_str().unwrap();
        app.ended(template_id).await;
        let template: Value = serde_json::from_str(&app.order_created(template_id).await.payload).unwrap();
        let version = || async {
            entities::stocks::Entity::find_by_id("SKU-X".to_owned()).one(&app.state.db).await.unwrap().unwrap().version
        };
        let version_before = version().await;

        let orders: Vec<(String, Vec<(&str, i64)>)> = [
            vec![("SKU-X", 2)],                // reserved: 3 left
            vec![("SKU-X", 4)],                // short
            vec![("SKU-X", 1), ("NOPE", 1)],   // an unknown SKU: nothing held
            vec![("SKU-X", 3)],                // reserved: 0 left
            vec![("SKU-X", 1)],                // short
        ]
        .into_iter()
        .map(|lines| (uuid::Uuid::now_v7().to_string(), lines))
        .collect();
        let batch: Vec<Delivery> = orders
            .iter()
            .map(|(order_id, lines)| {
                let mut event = template.clone();
                let event_id = uuid::Uuid::now_v7().to_string();
                event["event_id"] = json!(event_id);
                event["data"]["order_id"] = json!(order_id);
                let line = event["data"]["items"][0].clone();
                event["data"]["items"] = lines
                    .iter()
                    .map(|(sku, quantity)| {
                        let mut l = line.clone();
                        l["sku_id"] = json!(sku);
                        l["quantity"] = json!(quantity);
                        l
                    })
                    .collect();
                Delivery {
                    body: std::sync::Arc::from(event.to_string().into_bytes()),
                    routing_key: "order.created".into(),
                    attempt: 1,
                    message_id: Some(event_id),
                    rejected: None,
                }
            })
            .collect();
        let engine = app.state.engine().unwrap();
        let [inventory, _] = actors::consumers::inventory::consumers(&engine.inventory, &actix::Arbiter::current());
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        assert_eq!(mailbox.handle(&inventory, &batch).await, vec![Disposition::Ack; batch.len()]);

        let mut outcomes = Vec::new();
        for (order_id, _) in &orders {
            let rows = outbox_events::Entity::find()
                .filter(outbox_events::Column::AggregateId.eq(order_id.as_str()))
                .all(&app.state.db)
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "one result per order: {rows:?}");
            let payload: Value = serde_json::from_str(&rows[0].payload).unwrap();
            outcomes.push((rows[0].routing_key.clone(), payload["data"]["reason"].as_str().map(str::to_owned)));
        }
        let reserved = || ("inventory.reserved".to_owned(), None);
        let failed = |reason: &str| ("inventory.failed".to_owned(), Some(reason.to_owned()));
        assert_eq!(
            outcomes,
            [reserved(), failed("INSUFFICIENT_STOCK"), failed("UNKNOWN_SKU"), reserved(), failed("INSUFFICIENT_STOCK")]
        );
        assert_eq!(app.stock("SKU-X").await, (0, 5), "every unit accounted for, none below zero");
        assert_eq!(version().await, version_before + 2, "one change per reservation");

        // Delivered again, nothing changes: every order was claimed once.
        assert_eq!(mailbox.handle(&inventory, &batch).await, vec![Disposition::Ack; batch.len()]);
        assert_eq!(app.stock("SKU-X").await, (0, 5));
    }
}

#[actix_web::test]
async fn reservations_and_releases_of_the_same_skus_run_in_batches_without_deadlocks() {
    // Orders of three lines each on six SKUs, half of them compensated: batches of reservations and
    // batches of releases of the same stock rows run at the same time on the two stock queues. Both lock
    // the rows in one order, so neither waits for the other in a cycle. A deadlock would roll one batch
    // back after PostgreSQL's `deadlock_timeout` (a second of every saga behind it), and PostgreSQL counts
    // each one per database.
    use crate::helpers::{Backend, eventually, spawn_app_with};
    use ordersaga::config::PaymentMode;
    use ordersaga::loadtest::{self, Extent, Interrupt, Load, Options};
    use sea_orm::{ConnectionTrait, Database};

    let Some(app) = spawn_app_with(Backend::Postgres, |s| s.payment_mode = PaymentMode::Hashed).await else {
        return;
    };
    let mut options = Options::new(&app.address);
    options.extent = Extent::Orders(1_000);
    options.load = Load::Closed { concurrency: 32 };
    options.skus = 6;
    options.lines = 3;
    options.max_quantity = 2;
    options.stock = 1_000_000;
    options.timeout = std::time::Duration::from_secs(60);

    let report = loadtest::run(&options, Interrupt::new()).await.unwrap();

    assert!(report.invariants.ok, "{:#?}", report.invariants.violations);
    assert_eq!(
        (report.accepted, report.completed),
        (1_000, 1_000),
        "{:?}",
        report.rejections
    );
    assert!(
        report.compensated > 200,
        "about half compensated: {}",
        report.compensated
    );
    // A server process reports its counts when it ends at the latest: close the node's connections and
    // wait until they are gone, then read the database's count.
    app.state.db.close_by_ref().await.unwrap();
    let name = app
        .db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let admin = Database::connect(&std::env::var("ORDERSAGA_TEST_POSTGRES").unwrap())
        .await
        .unwrap();
    let number = |sql: String| {
        let admin = &admin;
        async move {
            let row = admin.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql));
            row.await.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
        }
    };
    eventually(
        std::time::Duration::from_secs(10),
        "the node's connections to close",
        || async {
            let open = number(format!(
                "SELECT count(*)::bigint FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await;
            (open == 0).then_some(())
        },
    )
    .await;
    let deadlocks = number(format!(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = '{name}'"
    ))
    .await;
    let _ = admin.close().await;
    assert_eq!(deadlocks, 0, "deadlocks between stock batches");
}

on_every_backend! {
    async fn a_batch_of_releases_gives_back_each_reservation_once(backend) {
        // Release requests delivered to the inventory together are decided against the reservations the
        // batch read once: each gives back exactly what its reservation holds, with one audit row, and a
        // reservation released before gives nothing back again.
        use actors::auth::Identity;
        use actors::envelope::{Envelope, Event, InventoryReleaseRequested};
        use actors::mailbox::{Delivery, Disposition, Mailbox};
        use actors::outbox::OutboxSignal;
        use entities::{inventory_release_events, outbox_events};
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("REL-A", 10).await;
        app.set_stock("REL-B", 10).await;
        let admin = app.admin_token().await;
        let orders: Vec<(String, Value)> = [
            json!([{"skuId": "REL-B", "quantity": 1}, {"skuId": "REL-A", "quantity": 2}]),
            json!([{"skuId": "REL-A", "quantity": 3}]),
            json!([{"skuId": "REL-B", "quantity": 4}]),
            json!([{"skuId": "REL-A", "quantity": 1}]),
        ]
        .into_iter()
        .map(|items| (uuid::Uuid::now_v7().to_string(), items))
        .collect();
        for (order_id, items) in &orders {
            let reserved = app
                .post("/api/stocks/reserve", Some(&admin), &json!({"orderId": order_id, "items": items}))
                .await;
            assert_eq!(reserved.status(), 200);
        }
        assert_eq!(app.stock("REL-A").await, (4, 6));
        assert_eq!(app.stock("REL-B").await, (5, 5));

        // A reason of this test's own, so that the process-wide counter of releases by reason is its own.
        let reason = format!("TEST-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let requests = |order_ids: &[&str]| -> Vec<Delivery> {
            order_ids
                .iter()
                .map(|order_id| {
                    let event = Event::InventoryReleaseRequested(InventoryReleaseRequested {
                        order_id: order_id.to_string(),
                        reason: reason.clone(),
                    });
                    let identity = Identity { user_id: "u-1".into(), roles: vec!["USER".into()] };
                    let envelope = Envelope::new(event, "trace-release-batch", identity);
                    Delivery {
                        body: std::sync::Arc::from(envelope.encode().unwrap().into_bytes()),
                        routing_key: envelope.routing_key().into(),
                        attempt: 1,
                        message_id: Some(envelope.event_id.clone()),
                        rejected: None,
                    }
                })
                .collect()
        };
        let engine = app.state.engine().unwrap();
        let [_, releasing] = actors::consumers::inventory::consumers(&engine.inventory, &actix::Arbiter::current());
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        // The last order's reservation is released first, on its own.
        let last = orders[3].0.as_str();
        assert_eq!(mailbox.handle(&releasing, &requests(&[last])).await, vec![Disposition::Ack]);
        assert_eq!(app.stock("REL-A").await, (5, 5));

        let all: Vec<&str> = orders.iter().map(|(id, _)| id.as_str()).collect();
        let batch = requests(&all);
        assert_eq!(mailbox.handle(&releasing, &batch).await, vec![Disposition::Ack; batch.len()]);
        assert_eq!(app.stock("REL-A").await, (10, 0), "every unit back, once");
        assert_eq!(app.stock("REL-B").await, (10, 0));
        let released = |order_id: String| {
            let db = app.state.db.clone();
            async move {
                outbox_events::Entity::find()
                    .filter(outbox_events::Column::AggregateId.eq(order_id))
                    .filter(outbox_events::Column::RoutingKey.eq("inventory.released"))
                    .all(&db)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|row| serde_json::from_str::<Value>(&row.payload).unwrap()["data"]["released_items"].clone())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            released(orders[0].0.clone()).await,
            [json!([{"sku_id": "REL-A", "quantity": 2}, {"sku_id": "REL-B", "quantity": 1}])],
            "what the reservation held, in SKU order"
        );
        for (order_id, _) in &orders[1..] {
            assert_eq!(released(order_id.clone()).await.len(), 1, "one release of {order_id}");
        }
        let audit = || inventory_release_events::Entity::find().count(&app.state.db);
        assert_eq!(audit().await.unwrap(), 4, "one audit row per reservation");

        // Asked again (new events for the same orders), nothing is given back twice.
        let again = requests(&all);
        assert_eq!(mailbox.handle(&releasing, &again).await, vec![Disposition::Ack; again.len()]);
        assert_eq!(app.stock("REL-A").await, (10, 0));
        assert_eq!(app.stock("REL-B").await, (10, 0));
        assert_eq!(audit().await.unwrap(), 4);
        let released_count = || async {
            let metrics = app.get("/metrics", None).await.text().await.unwrap();
            crate::helpers::counter(&metrics, "inventory_releases_total", &[("reason", reason.as_str())])
        };
        assert_eq!(released_count().await, 4.0, "each release counted once");

        // A batch with a request for an order that has no reservation fails and runs one message at a
        // time: the two real releases happen and are counted once each, the stray one is dead-lettered.
        let (fifth, sixth) = (uuid::Uuid::now_v7().to_string(), uuid::Uuid::now_v7().to_string());
        for order_id in [&fifth, &sixth] {
            let body = json!({"orderId": order_id, "items": [{"skuId": "REL-A", "quantity": 2}]});
            assert_eq!(app.post("/api/stocks/reserve", Some(&admin), &body).await.status(), 200);
        }
        let stray = uuid::Uuid::now_v7().to_string();
        let mixed = requests(&[fifth.as_str(), stray.as_str(), sixth.as_str()]);
        let dispositions = mailbox.handle(&releasing, &mixed).await;
        assert_eq!(dispositions[0], Disposition::Ack);
        assert!(matches!(dispositions[1], Disposition::DeadLettered { .. }), "{dispositions:?}");
        assert_eq!(dispositions[2], Disposition::Ack);
        assert_eq!(app.stock("REL-A").await, (10, 0));
        assert_eq!(audit().await.unwrap(), 6);
        assert_eq!(released_count().await, 6.0, "a batch run again counts its releases once");
    }
}
