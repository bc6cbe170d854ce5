//! Saga behaviour beyond the happy path: deadlines, late results, memory, inspection.

use std::time::Duration;

use std::sync::Arc;

use actors::auth::Identity;
use actors::config::PaymentMode;
use actors::envelope::{Envelope, Event, InventoryReserved, PaymentFailed, PaymentSucceeded};
use actors::mailbox::{ConsumeError, Delivery, Disposition, Mailbox};
use actors::outbox::OutboxSignal;
use actors::saga::machine::SagaInput;
use actors::saga::step::{self, Cause, SagaRows};
use actors::saga::{InMemory, SagaState};
use actors::topology;
use entities::{consumed_messages, orders, outbox_events, payment_records, saga_instances};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::Value;

use crate::helpers::{assert_problem, eventually, line, spawn_app, spawn_app_with};
use crate::on_every_backend;

/// The outbox rows of an order with `routing_key`.
async fn outbox_rows(
    app: &crate::helpers::TestApp,
    order_id: &str,
    routing_key: &str,
) -> Vec<outbox_events::Model> {
    outbox_events::Entity::find()
        .filter(outbox_events::Column::AggregateId.eq(order_id))
        .filter(outbox_events::Column::RoutingKey.eq(routing_key))
        .all(&app.state.db)
        .await
        .unwrap()
}

/// The state of a saga's row as `txn` sees it.
async fn state_in(txn: &DatabaseTransaction, order_id: &str) -> String {
    saga_instances::Entity::find_by_id(order_id.to_owned())
        .one(txn)
        .await
        .unwrap()
        .unwrap()
        .state
}

/// A delivery of `event`, caused by the `inventory.reserved` event of `order_id` (its trace and identity).
async fn result_of(app: &crate::helpers::TestApp, order_id: &str, event: Event) -> Delivery {
    let reserved = outbox_rows(app, order_id, "inventory.reserved").await;
    let reserved = Envelope::decode(reserved[0].payload.as_bytes()).unwrap();
    delivery_of(&reserved.caused(event))
}

/// `envelope` delivered as a first attempt.
fn delivery_of(envelope: &Envelope) -> Delivery {
    Delivery {
        body: Arc::from(envelope.encode().unwrap().into_bytes()),
        routing_key: envelope.routing_key().to_owned(),
        attempt: 1,
        message_id: Some(envelope.event_id.clone()),
        rejected: None,
    }
}

on_every_backend! {
    async fn saga_events_delivered_together_each_take_their_step_once(backend) {
        // Two sagas await their payments (the gateway answers only after the test); their results come
        // in one batch with a contradicting late result for the first. The batch reads the saga rows
        // once for all its events: the second event of a saga must see the step the first one took.
        let Some(app) = spawn_app_with(backend, |s| {
            s.payment.latency_ms = 120_000;
            s.saga.payment_timeout_seconds = 300;
        })
        .await else { return };
        app.set_stock("SKU-B", 10).await;
        let mut ids = Vec::new();
        for quantity in [1, 2] {
            let order = app.order("u-1", vec![line("SKU-B", quantity, "3.00")]).await;
            ids.push(order["orderId"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            eventually(Duration::from_secs(20), "the order to await its payment", || async {
                (app.saga(id).await["state"] == "AWAITING_PAYMENT").then_some(())
            })
            .await;
        }
        let (first, second) = (&ids[0], &ids[1]);
        let paid = |order_id: &str, payment_id: &str| {
            Event::PaymentSucceeded(PaymentSucceeded { order_id: order_id.to_owned(), payment_id: payment_id.to_owned() })
        };
        let late = Event::PaymentFailed(PaymentFailed {
            order_id: first.clone(),
            payment_id: "pay-late".into(),
            reason: "DECLINED".into(),
        });
        let batch = [
            result_of(&app, first, paid(first, "pay-1")).await,
            result_of(&app, second, paid(second, "pay-2")).await,
            result_of(&app, first, late).await,
        ];
        let engine = app.state.engine().unwrap();
        let [_, consumer] = actors::saga::consumers(&engine.sagas, &actix::Arbiter::current());
        assert_eq!(consumer.queue, topology::Q_ORDER_PAYMENT_RESULT);
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        assert_eq!(mailbox.handle(&consumer, &batch).await, [Disposition::Ack, Disposition::Ack, Disposition::Ack]);

        for id in &ids {
            let saga = app.saga(id).await;
            assert_eq!(saga["state"], "COMPLETED", "{saga}");
            assert_eq!(app.ended(id).await["status"], "CONFIRMED");
        }
        let history = app.saga(first).await["history"].as_array().unwrap().clone();
        let results: Vec<&Value> =
            history.iter().filter(|h| h["eventType"] == "PaymentSucceeded" || h["eventType"] == "PaymentFailed").collect();
        assert_eq!(results.len(), 2, "{history:?}");
        assert_eq!(results[0]["eventType"], "PaymentSucceeded");
        assert_eq!(results[0]["toState"], "COMPLETED");
        assert_eq!(results[1]["eventType"], "PaymentFailed");
        assert_eq!(results[1]["fromState"], "COMPLETED", "the late result saw the step before it");
        assert!(results[1]["detail"].as_str().unwrap().contains("recorded and ignored"), "{history:?}");
        let seqs: Vec<i64> = history.iter().map(|h| h["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "one history row per step, in order: {seqs:?}");
        assert_eq!(app.stock("SKU-B").await, (7, 3), "nothing released for the ignored result");

        // The same batch again changes nothing: every event was claimed once.
        assert_eq!(mailbox.handle(&consumer, &batch).await, [Disposition::Ack, Disposition::Ack, Disposition::Ack]);
        assert_eq!(app.saga(first).await["history"].as_array().unwrap().len(), history.len());
    }

    async fn a_batch_of_saga_steps_is_written_when_the_batch_ends_and_not_at_all_if_a_saga_moved_on(backend) {
        // The steps of a batch keep their writes for the batch's end (one statement per table), except on
        // MySQL, where each step writes at once. Kept writes are conditioned on the version each step
        // read: a saga that moved on meanwhile fails the whole batch, which then runs one message at a time.
        let Some(app) = spawn_app_with(backend, |s| {
            s.payment.latency_ms = 120_000;
            s.saga.payment_timeout_seconds = 300;
        })
        .await else { return };
        app.set_stock("SKU-W", 10).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let order = app.order("u-1", vec![line("SKU-W", 1, "2.00")]).await;
            ids.push(order["orderId"].as_str().unwrap().to_owned());
        }
        for id in &ids {
            eventually(Duration::from_secs(20), "the order to await its payment", || async {
                (app.saga(id).await["state"] == "AWAITING_PAYMENT").then_some(())
            })
            .await;
        }
        let kept = app.state.db.get_database_backend() != DbBackend::MySql;
        // A payment id per order (ids are 36 characters).
        let payments: std::collections::HashMap<String, String> =
            ids.iter().map(|id| (id.clone(), uuid::Uuid::new_v4().to_string())).collect();
        let paid = |id: &str| SagaInput::PaymentSucceeded { payment_id: payments[id].clone() };
        let envelope = |id: &str| {
            let identity = Identity { user_id: "u-1".into(), roles: vec![] };
            let event = PaymentSucceeded { order_id: id.to_owned(), payment_id: payments[id].clone() };
            Envelope::new(Event::PaymentSucceeded(event), "trace-w", identity)
        };
        let timeout = Duration::from_secs(300);

        // A batch of two: nothing is written until it ends, then both steps are.
        let txn = app.state.db.begin().await.unwrap();
        let rows = SagaRows::read(&txn, ids[..2].iter().map(String::as_str)).await.unwrap();
        for id in &ids[..2] {
            let event = envelope(id);
            let applied =
                step::apply_input(&txn, id, &paid(id), Cause::Event(&event), timeout, Some(&rows)).await.unwrap();
            assert_eq!(applied.update.unwrap().state, SagaState::Completed);
            let expected = if kept { "AWAITING_PAYMENT" } else { "COMPLETED" };
            assert_eq!(state_in(&txn, id).await, expected, "kept for the batch's end: {kept}");
        }
        rows.write(&txn).await.unwrap();
        for id in &ids[..2] {
            assert_eq!(state_in(&txn, id).await, "COMPLETED");
        }
        txn.commit().await.unwrap();
        for id in &ids[..2] {
            let saga = app.saga(id).await;
            assert_eq!(saga["state"], "COMPLETED", "{saga}");
            let last = saga["history"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["eventType"], "PaymentSucceeded", "{saga}");
            assert_eq!(last["fromState"], "AWAITING_PAYMENT");
            assert_eq!(last["toState"], "COMPLETED");
            assert_eq!(last["detail"], format!("payment {}", payments[id]));
            let order: Value = app.get(&format!("/api/orders/{id}"), Some(&app.admin_token().await)).await.json().await.unwrap();
            assert_eq!(order["status"], "CONFIRMED", "{order}");
        }

        // The third saga moves on after its row was read: the batch's writes change nothing.
        let third = ids[2].as_str();
        let before = app.saga(third).await;
        let txn = app.state.db.begin().await.unwrap();
        let rows = SagaRows::read(&txn, [third]).await.unwrap();
        let event = envelope(third);
        let step = step::apply_input(&txn, third, &paid(third), Cause::Event(&event), timeout, Some(&rows)).await;
        if kept {
            step.unwrap();
            saga_instances::Entity::update_many()
                .col_expr(saga_instances::Column::Version, Expr::col(saga_instances::Column::Version).add(1))
                .filter(saga_instances::Column::OrderId.eq(third))
                .exec(&txn)
                .await
                .unwrap();
            assert!(matches!(rows.write(&txn).await, Err(ConsumeError::Conflict(_))), "the batch fails as a conflict");
            assert_eq!(state_in(&txn, third).await, "AWAITING_PAYMENT", "the batch wrote nothing");
        }
        txn.rollback().await.unwrap();
        let after = app.saga(third).await;
        assert_eq!(after["state"], "AWAITING_PAYMENT");
        assert_eq!(after["history"], before["history"]);
    }

    async fn inventory_reserved_events_delivered_together_charge_each_order_once_at_its_total(backend) {
        // A batch of charges reads its orders' totals once and writes the payment records together when
        // it ends. The orders here failed for want of stock, so nothing charged them before.
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        app.set_stock("SKU-C", 0).await;
        let mut created = Vec::new();
        for quantity in [1, 2, 3] {
            let order = app.order("u-1", vec![line("SKU-C", quantity, "4.50")]).await;
            let id = order["orderId"].as_str().unwrap().to_owned();
            assert_eq!(app.ended(&id).await["status"], "FAILED");
            let row = app.order_created(&id).await;
            created.push((id, Envelope::decode(row.payload.as_bytes()).unwrap()));
        }
        let mut batch: Vec<Delivery> = created
            .iter()
            .map(|(id, placed)| {
                let reserved = placed.caused(Event::InventoryReserved(InventoryReserved {
                    order_id: id.clone(),
                    reservation_id: uuid::Uuid::new_v4().to_string(),
                    reserved_items: vec![],
                }));
                delivery_of(&reserved)
            })
            .collect();
        batch.push(batch[1].clone());
        let engine = app.state.engine().unwrap();
        let [charging, _] = actors::consumers::payment::consumers(&engine.payment, &actix::Arbiter::current());
        assert_eq!(charging.queue, topology::Q_PAYMENT_INVENTORY_RESERVED);
        let mailbox = Mailbox::new(app.state.db.clone(), app.state.settings.retry.clone(), OutboxSignal::new());
        assert_eq!(mailbox.handle(&charging, &batch).await, vec![Disposition::Ack; 4]);
        for (id, _) in &created {
            let records = payment_records::Entity::find()
                .filter(payment_records::Column::OrderId.eq(id.as_str()))
                .all(&app.state.db)
                .await
                .unwrap();
            assert_eq!(records.len(), 1, "one payment for order {id}: {records:?}");
            let order = orders::Entity::find_by_id(id.clone()).one(&app.state.db).await.unwrap().unwrap();
            assert_eq!(records[0].amount, order.total_amount, "charged the order's total");
            assert_eq!(records[0].status, "FAILED");
            assert_eq!(records[0].reason.as_deref(), Some("PAYMENT_DECLINED"));
        }
        let totals: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
        let charged = payment_records::Entity::find()
            .filter(payment_records::Column::OrderId.is_in(totals))
            .all(&app.state.db)
            .await
            .unwrap();
        let mut amounts: Vec<String> = charged.iter().map(|r| r.amount.0.to_string()).collect();
        amounts.sort();
        assert_eq!(amounts, ["13.50", "4.50", "9.00"]);
    }

    async fn a_payment_that_succeeds_after_its_deadline_is_refunded_exactly_once(backend) {
        // The gateway answers after the deadline: the saga has compensated by then, so the money it
        // took must go back.
        let Some(app) = spawn_app_with(backend, |s| {
            s.saga.payment_timeout_seconds = 2;
            s.outbox.claim_lease_seconds = 1;
            s.payment.latency_ms = 3_500;
        })
        .await else { return };
        app.set_stock("SKU-T", 4).await;
        let order = app.order("u-1", vec![line("SKU-T", 3, "7.00")]).await;
        let id = order["orderId"].as_str().unwrap().to_owned();
        let ended = app.ended(&id).await;
        assert_eq!(ended["status"], "FAILED");
        assert_eq!(ended["failureReason"], "PAYMENT_TIMEOUT");
        assert_eq!(app.stock("SKU-T").await, (4, 0));

        let saga = eventually(Duration::from_secs(30), "the refund in the ledger and the saga's history", || async {
            let saga = app.saga(&id).await;
            let recorded = saga["history"].as_array()?.iter().any(|h| h["eventType"] == "PaymentRefunded");
            (recorded && saga["payment"]["status"] == "REFUNDED").then_some(saga)
        })
        .await;
        assert_eq!(saga["state"], "COMPENSATED", "the saga stays failed");
        assert_eq!(saga["payment"]["amount"].to_string(), "21.00");
        assert_eq!(saga["payment"]["refundReason"], "PAYMENT_TIMEOUT");
        assert!(saga["payment"]["refundId"].is_string() && saga["payment"]["refundedAt"].is_string());
        let history = saga["history"].as_array().unwrap();
        let timed_out = history.iter().find(|h| h["eventType"] == "PaymentTimedOut").unwrap();
        assert_eq!(timed_out["fromState"], "AWAITING_PAYMENT");
        assert_eq!(timed_out["toState"], "COMPENSATING");
        let late: Vec<&Value> = history.iter().filter(|h| h["eventType"] == "PaymentSucceeded").collect();
        assert_eq!(late.len(), 1, "{history:?}");
        assert!(late[0]["detail"].as_str().unwrap().contains("refund requested"), "{history:?}");
        let refunded: Vec<&Value> = history.iter().filter(|h| h["eventType"] == "PaymentRefunded").collect();
        assert_eq!(refunded.len(), 1, "{history:?}");
        assert_eq!(refunded[0]["routingKey"], "payment.refunded");
        assert_eq!(app.stock("SKU-T").await, (4, 0), "the late success did not take the stock again");
        let status: Value = app.get(&format!("/api/orders/{id}"), Some(&app.admin_token().await)).await.json().await.unwrap();
        assert_eq!(status["status"], "FAILED");

        // The same refund asked for again (a redelivery under another id) refunds nothing twice.
        let request = outbox_rows(&app, &id, "payment.refund.requested").await;
        assert_eq!(request.len(), 1, "one refund requested");
        let mut again: Value = serde_json::from_str(&request[0].payload).unwrap();
        let again_id = uuid::Uuid::new_v4().to_string();
        again["event_id"] = Value::from(again_id.clone());
        app.state
            .engine()
            .unwrap()
            .transport
            .deliver_to(
                topology::Q_PAYMENT_REFUND_REQUESTED,
                "payment.refund.requested",
                Arc::from(again.to_string().into_bytes()),
            )
            .await
            .unwrap();
        eventually(Duration::from_secs(20), "the repeated refund request to be consumed", || async {
            consumed_messages::Entity::find_by_id((again_id.clone(), topology::Q_PAYMENT_REFUND_REQUESTED.to_owned()))
                .one(&app.state.db)
                .await
                .unwrap()
                .map(|_| ())
        })
        .await;
        assert_eq!(outbox_rows(&app, &id, "payment.refunded").await.len(), 1, "refunded exactly once");
        let after = app.saga(&id).await;
        assert_eq!(after["payment"]["refundedAt"], saga["payment"]["refundedAt"]);
        assert_eq!(after["payment"]["status"], "REFUNDED");
        let dashboard = app.get(&format!("/dashboard/sagas/{id}"), None).await.text().await.unwrap();
        assert!(dashboard.contains("REFUNDED") && dashboard.contains("was refunded at"), "the dashboard tells of the refund");
    }

    async fn a_saga_keeps_an_actor_only_while_it_has_something_to_do_and_its_deadline_still_holds(backend) {
        // The gateway never answers in time: the saga waits 20 s for its payment, then compensates.
        let Some(app) = spawn_app_with(backend, |s| {
            s.payment.latency_ms = 60_000;
            s.saga.payment_timeout_seconds = 20;
        })
        .await else { return };
        let in_memory = || async { app.state.engine().unwrap().sagas.send(InMemory).await.unwrap() };
        app.set_stock("SKU-M", 10).await;
        let failing = app.order("u-1", vec![line("NOPE", 1, "1")]).await;
        app.ended(failing["orderId"].as_str().unwrap()).await;
        let waiting = app.order("u-1", vec![line("SKU-M", 1, "1")]).await;
        let id = waiting["orderId"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(10), "the order to await its payment", || async {
            (app.saga(&id).await["state"] == "AWAITING_PAYMENT").then_some(())
        })
        .await;
        // Its deadline is further away than the registry looks ahead: no actor, no timer.
        eventually(Duration::from_secs(10), "no saga actor in memory", || async {
            (in_memory().await == 0).then_some(())
        })
        .await;
        // Woken by the sweep ahead of its deadline, which then passes on time.
        eventually(Duration::from_secs(15), "the waiting saga's actor back before its deadline", || async {
            (in_memory().await == 1).then_some(())
        })
        .await;
        let ended = app.ended(&id).await;
        assert_eq!(ended["failureReason"], "PAYMENT_TIMEOUT");
        let saga = app.saga(&id).await;
        let timed_out = saga["history"].as_array().unwrap().iter().find(|h| h["eventType"] == "PaymentTimedOut").unwrap();
        let at: chrono::DateTime<chrono::Utc> = timed_out["at"].as_str().unwrap().parse().unwrap();
        let placed: chrono::DateTime<chrono::Utc> = waiting["createdAt"].as_str().unwrap().parse().unwrap();
        let late = (at - placed).num_milliseconds() - 20_000;
        assert!((0..3_000).contains(&late), "the deadline passed {late} ms after its time");
    }

    async fn admins_list_sagas_with_counts_per_state(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-L", 1).await;
        let ok = app.order("u-1", vec![line("SKU-L", 1, "1")]).await;
        let short = app.order("u-2", vec![line("SKU-L", 1, "1")]).await;
        app.ended(ok["orderId"].as_str().unwrap()).await;
        app.ended(short["orderId"].as_str().unwrap()).await;
        let admin = app.admin_token().await;
        let page: Value = app.get("/api/sagas?page=0&size=10", Some(&admin)).await.json().await.unwrap();
        assert_eq!(page["totalElements"], 2);
        assert_eq!(page["counts"]["COMPLETED"], 1);
        assert_eq!(page["counts"]["FAILED"], 1);
        assert_eq!(page["counts"]["AWAITING_PAYMENT"], 0);
        let failed: Value = app.get("/api/sagas?state=FAILED", Some(&admin)).await.json().await.unwrap();
        assert_eq!(failed["items"].as_array().unwrap().len(), 1);
        assert_eq!(failed["items"][0]["orderId"], short["orderId"]);
        let stuck: Value = app.get("/api/v1/sagas?olderThanSeconds=3600", Some(&admin)).await.json().await.unwrap();
        assert_eq!(stuck["totalElements"], 0, "nothing is an hour old");
        assert_problem(app.get("/api/sagas?state=SLEEPING", Some(&admin)).await, 400).await;
        assert_problem(app.get("/api/sagas?size=1000", Some(&admin)).await, 400).await;
        // Past any time the databases keep: refused, not a 500.
        for too_old in ["215000000000", "315360001", "18446744073709551615"] {
            let problem = assert_problem(app.get(&format!("/api/sagas?olderThanSeconds={too_old}"), Some(&admin)).await, 400).await;
            assert!(problem["detail"].as_str().unwrap().contains("olderThanSeconds"), "{too_old}: {problem}");
        }
        for nonsense in ["-1", "soon", "1e9"] {
            assert_problem(app.get(&format!("/api/sagas?olderThanSeconds={nonsense}"), Some(&admin)).await, 400).await;
        }
        let ten_years: Value = app.get("/api/sagas?olderThanSeconds=315360000", Some(&admin)).await.json().await.unwrap();
        assert_eq!(ten_years["totalElements"], 0);
        assert_problem(app.get("/api/sagas", Some(&app.buyer_token("u-1").await)).await, 403).await;
        assert_problem(app.get("/api/sagas", None).await, 401).await;
    }
}

on_every_backend! {
    async fn a_slow_consumer_keeps_only_a_few_deliveries_in_memory_and_loses_none(backend) {
        // A payment gateway that takes a while, and room for three deliveries per queue in memory: the
        // payment queue keeps the rest as outbox row ids and reads them back in turn.
        let Some(app) = spawn_app_with(backend, |s| {
            s.payment.latency_ms = 300;
            s.bus.in_memory_per_queue = 3;
        })
        .await else { return };
        app.set_stock("SKU-S", 100).await;
        let token = app.buyer_token("u-s").await;
        let placed = futures::future::join_all((0..30).map(|i| {
            let token = token.clone();
            let app = &app;
            async move {
                let r = app.place_order(&token, "u-s", &format!("spill-{i}"), vec![line("SKU-S", 1, "1.00")]).await;
                assert_eq!(r.status(), 201);
                r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned()
            }
        }))
        .await;
        for id in &placed {
            assert_eq!(app.ended(id).await["status"], "CONFIRMED", "order {id}");
        }
        assert_eq!(app.stock("SKU-S").await, (70, 30));
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        let spilled = metrics
            .lines()
            .find(|l| l.starts_with("bus_spilled_total{queue=\"q.payment.inventory-reserved\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(spilled > 0.0, "the payment queue kept deliveries as row ids: {spilled}");
    }
}

on_every_backend! {
    async fn every_event_is_published_once_by_the_node_that_wrote_it(backend) {
        // On PostgreSQL and SQLite a writer claims its outbox rows as it inserts them and hands them to
        // the relay after the commit, so the relay never claims them a second time; on MySQL, whose
        // inserts answer no ids, the relay claims them. Either way each is published once, by this node.
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-O", 10).await;
        let id = app.order("u-1", vec![line("SKU-O", 1, "3.00")]).await["orderId"].as_str().unwrap().to_owned();
        assert_eq!(app.ended(&id).await["status"], "CONFIRMED");
        let rows = eventually(Duration::from_secs(10), "every event of the order to be published", || async {
            let rows = outbox_events::Entity::find()
                .filter(outbox_events::Column::AggregateId.eq(id.as_str()))
                .all(&app.state.db)
                .await
                .unwrap();
            rows.iter().all(|r| r.published_at.is_some()).then_some(rows)
        })
        .await;
        let keys: Vec<&str> = rows.iter().map(|r| r.routing_key.as_str()).collect();
        for key in ["order.created", "inventory.reserved", "payment.succeeded"] {
            assert_eq!(keys.iter().filter(|k| **k == key).count(), 1, "one {key} in {keys:?}");
        }
        let node = rows[0].claimed_by.clone().expect("claimed by the node");
        for row in &rows {
            assert_eq!(row.claimed_by.as_ref(), Some(&node), "{}", row.routing_key);
            assert_eq!(row.attempts, 0, "{} was published at the first attempt", row.routing_key);
            let claimed_at = row.claimed_at.expect("a claim time");
            assert!(row.published_at >= Some(claimed_at), "{}", row.routing_key);
            if backend == crate::helpers::Backend::MySql {
                assert!(claimed_at >= row.created_at, "{}", row.routing_key);
            } else {
                assert_eq!(claimed_at, row.created_at, "{} was claimed as it was written", row.routing_key);
            }
        }
    }
}
