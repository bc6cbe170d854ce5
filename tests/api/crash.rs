//! `kill -9` of a node with sagas in flight: after a restart every accepted order ends, nothing is lost
//! or done twice, and stock is conserved.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::config::start_server;
use crate::helpers::{TestDb, eventually, line, mint_token};
use crate::on_every_backend;
use entities::{
    inventory_release_events, inventory_reservations, order_items, orders, payment_records, saga_instances,
    stocks,
};

const SKUS: [&str; 3] = ["CR-A", "CR-B", "CR-C"];
const STOCK: i64 = 12;
const ORDERS: usize = 40;

/// An order's status, asked of a node (`None` while it does not answer).
pub async fn status(client: &reqwest::Client, base: &str, admin: &str, id: &str) -> Option<String> {
    let order: Value = client
        .get(format!("{base}/api/orders/{id}"))
        .bearer_auth(admin)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    order["status"].as_str().map(str::to_owned)
}

on_every_backend! {
    async fn a_node_killed_mid_flight_loses_nothing_and_doubles_nothing(backend) {
        let Some(db) = TestDb::create(backend).await else { return };
        let env = [("ORDERSAGA_PAYMENT_MODE", "HASHED"), ("ORDERSAGA_PAYMENT__LATENCY_MS", "150")];
        let client = crate::helpers::test_client();
        let server = start_server(&db, &env).await;
        let base = server.address.clone();
        let admin = mint_token(&client, &base, "admin-1", "admin").await;
        for sku in SKUS {
            let r = client.post(format!("{base}/api/stocks")).bearer_auth(&admin)
                .json(&json!({"skuId": sku, "availableQty": STOCK})).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let buyer = mint_token(&client, &base, "crash-buyer", "buyer").await;
        let placed = join_all((0..ORDERS).map(|i| {
            let (client, base, buyer) = (client.clone(), base.clone(), buyer.clone());
            async move {
                let items = vec![line(SKUS[i % 3], 1 + (i % 2) as i64, "2.50")];
                let r = client.post(format!("{base}/api/orders")).bearer_auth(&buyer)
                    .header("Idempotency-Key", format!("crash-{i}"))
                    .json(&json!({"userId": "crash-buyer", "items": items})).send().await.unwrap();
                assert_eq!(r.status(), 201);
                r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned()
            }
        }))
        .await;
        // Kill while sagas are in flight: some ended, some not.
        eventually(Duration::from_secs(30), "some orders to end while others are in flight", || async {
            let mut ended = 0;
            for id in &placed {
                if status(&client, &base, &admin, id).await.is_some_and(|s| s != "PENDING") {
                    ended += 1;
                }
            }
            (ended > 0 && ended < ORDERS).then_some(())
        })
        .await;
        drop(server); // SIGKILL

        // A second crash soon after the restart, during recovery.
        let server = start_server(&db, &env).await;
        drop(server);

        let server = start_server(&db, &env).await;
        let base = server.address.clone();
        for id in &placed {
            eventually(Duration::from_secs(60), &format!("order {id} to end after the restarts"), || async {
                status(&client, &base, &admin, id).await.filter(|s| s != "PENDING")
            })
            .await;
        }

        assert_ended_once(&db.url, &placed, &SKUS, STOCK).await;
        drop(server);
    }
}

/// Every order of `ids` ended exactly once — confirmed with its reservation held, compensated with one
/// release, or failed with nothing reserved — nothing was reserved or charged twice, and each SKU of
/// `skus` (each set to `stock`) is conserved.
pub async fn assert_ended_once(url: &str, ids: &[String], skus: &[&str], stock: i64) {
    let stocks: Vec<(&str, i64)> = skus.iter().map(|sku| (*sku, stock)).collect();
    let violations = ended_once_violations(url, ids, &stocks).await;
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// What breaks the guarantees of [`assert_ended_once`] for the orders `ids` and the SKUs of `skus`
/// (each set to its quantity once, before any order), and, money-wise: a confirmed order holds one
/// succeeded payment, and no order that did not confirm keeps one (a payment it had is failed or
/// refunded). Empty when every guarantee holds.
pub async fn ended_once_violations(url: &str, ids: &[String], skus: &[(&str, i64)]) -> Vec<String> {
    let conn = Database::connect(url).await.unwrap();
    let mut violations = Vec::new();
    let mut confirmed_qty: HashMap<String, i64> = HashMap::new();
    for id in ids {
        let Some(order) = orders::Entity::find_by_id(id.clone()).one(&conn).await.unwrap() else {
            violations.push(format!("order {id} was accepted and does not exist"));
            continue;
        };
        let Some(saga) = saga_instances::Entity::find_by_id(id.clone())
            .one(&conn)
            .await
            .unwrap()
        else {
            violations.push(format!("order {id} has no saga"));
            continue;
        };
        let reservations = inventory_reservations::Entity::find()
            .filter(inventory_reservations::Column::OrderId.eq(id.as_str()))
            .all(&conn)
            .await
            .unwrap();
        let releases = inventory_release_events::Entity::find()
            .filter(inventory_release_events::Column::OrderId.eq(id.as_str()))
            .all(&conn)
            .await
            .unwrap();
        let payments = payment_records::Entity::find()
            .filter(payment_records::Column::OrderId.eq(id.as_str()))
            .all(&conn)
            .await
            .unwrap();
        if reservations.len() > 1 || payments.len() > 1 {
            violations.push(format!(
                "order {id} reserved {} times, charged {} times",
                reservations.len(),
                payments.len()
            ));
            continue;
        }
        let reservation = reservations.first().map(|r| r.status.as_str());
        let payment = payments.first().map(|p| p.status.as_str());
        let state = saga.state.as_str();
        let shape = (order.status.as_str(), reservation, releases.len());
        let fits = match state {
            "COMPLETED" => shape == ("CONFIRMED", Some("RESERVED"), 0) && payment == Some("SUCCEEDED"),
            "COMPENSATED" => shape == ("FAILED", Some("RELEASED"), 1) && payment != Some("SUCCEEDED"),
            "FAILED" => shape == ("FAILED", None, 0) && payment != Some("SUCCEEDED"),
            _ => false,
        };
        if !fits {
            violations.push(format!(
                "order {id}: saga {state}, order {}, reservation {reservation:?}, {} releases, payment {payment:?}",
                order.status,
                releases.len()
            ));
        }
        if state == "COMPLETED" {
            for item in order_items::Entity::find()
                .filter(order_items::Column::OrderId.eq(id.as_str()))
                .all(&conn)
                .await
                .unwrap()
            {
                *confirmed_qty.entry(item.sku_id).or_default() += i64::from(item.quantity);
            }
        }
    }
    for (sku, stock) in skus {
        let Some(row) = stocks::Entity::find_by_id((*sku).to_owned())
            .one(&conn)
            .await
            .unwrap()
        else {
            violations.push(format!("{sku} has no stock row"));
            continue;
        };
        let held = confirmed_qty.get(*sku).copied().unwrap_or(0);
        if row.available_qty < 0 || row.available_qty + row.reserved_qty != *stock {
            violations.push(format!(
                "{sku} not conserved: {} available + {} reserved, set to {stock}",
                row.available_qty, row.reserved_qty
            ));
        }
        if row.reserved_qty != held {
            violations.push(format!(
                "{sku}: {} reserved, confirmed orders hold {held}",
                row.reserved_qty
            ));
        }
    }
    let _ = conn.close().await;
    violations
}

/// The body of `GET path` as admin.
pub async fn get_json(client: &reqwest::Client, base: &str, admin: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sets a SKU's stock and places one order of `quantity` units; answers the order id.
async fn stock_and_order(client: &reqwest::Client, base: &str, sku: &str, key: &str) -> String {
    let admin = mint_token(client, base, "admin-1", "admin").await;
    let r = client
        .post(format!("{base}/api/stocks"))
        .bearer_auth(&admin)
        .json(&json!({"skuId": sku, "availableQty": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let buyer = mint_token(client, base, "pay-buyer", "buyer").await;
    let r = client
        .post(format!("{base}/api/orders"))
        .bearer_auth(&buyer)
        .header("Idempotency-Key", key)
        .json(&json!({"userId": "pay-buyer", "items": [line(sku, 2, "4.25")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["orderId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for the order to end and answers its saga.
async fn ended_saga(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let admin = mint_token(client, base, "admin-1", "admin").await;
    eventually(Duration::from_secs(60), &format!("order {id} to end"), || async {
        status(client, base, &admin, id).await.filter(|s| s != "PENDING")
    })
    .await;
    get_json(client, base, &admin, &format!("/api/orders/{id}/saga")).await
}

/// The order confirmed, its payment kept, its stock held: never charged and failed.
async fn assert_confirmed_and_charged(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    saga: &Value,
    sku: &str,
) {
    let admin = mint_token(client, base, "admin-1", "admin").await;
    let order = get_json(client, base, &admin, &format!("/api/orders/{id}")).await;
    assert_eq!(order["status"], "CONFIRMED", "{saga}");
    assert_eq!(saga["state"], "COMPLETED", "{saga}");
    assert_eq!(saga["payment"]["status"], "SUCCEEDED", "{saga}");
    let history = saga["history"].as_array().unwrap();
    assert!(
        history.iter().all(|h| h["eventType"] != "PaymentTimedOut"),
        "the deadline did not compensate a paid order: {saga}"
    );
    let stock = get_json(client, base, &admin, &format!("/api/stocks/{sku}")).await;
    assert_eq!(
        (stock["availableQty"].as_i64(), stock["reservedQty"].as_i64()),
        (Some(3), Some(2))
    );
}

on_every_backend! {
    async fn a_payment_recorded_but_never_delivered_confirms_the_order_at_its_deadline(backend) {
        // A frozen publisher: the payment's success is committed and claimed, and never sent.
        let Some(db) = TestDb::create(backend).await else { return };
        let env = [
            ("FAILPOINTS", "outbox-hold=return(payment.succeeded)"),
            ("ORDERSAGA_SAGA__PAYMENT_TIMEOUT_SECONDS", "2"),
            ("ORDERSAGA_OUTBOX__CLAIM_LEASE_SECONDS", "1"),
        ];
        let client = crate::helpers::test_client();
        let server = start_server(&db, &env).await;
        let base = server.address.clone();
        let id = stock_and_order(&client, &base, "HOLD-1", "hold-1").await;
        let saga = ended_saga(&client, &base, &id).await;
        assert_confirmed_and_charged(&client, &base, &id, &saga, "HOLD-1").await;
        let history = saga["history"].as_array().unwrap();
        let paid = history.iter().find(|h| h["eventType"] == "PaymentSucceeded").unwrap();
        assert_eq!(paid["fromState"], "AWAITING_PAYMENT");
        assert_eq!(paid["toState"], "COMPLETED");
        assert!(paid["routingKey"].is_null(), "decided at the deadline, not by the event: {saga}");
        assert!(paid["detail"].as_str().unwrap().contains("payment ledger"), "{saga}");
    }

    async fn a_node_killed_between_a_payment_and_its_publication_confirms_the_order(backend) {
        let _broker = crate::helpers::BROKER.read().await;
        let Some(broker) = crate::helpers::TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        let client = crate::helpers::test_client();
        let common = [
            ("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str()),
            ("ORDERSAGA_SAGA__PAYMENT_TIMEOUT_SECONDS", "12"),
            ("ORDERSAGA_OUTBOX__CLAIM_LEASE_SECONDS", "5"),
        ];
        let with = |node: &'static str, fault: bool| {
            let mut env = common.to_vec();
            env.push(("ORDERSAGA_NODE_ID", node));
            if fault {
                env.push(("FAILPOINTS", "outbox-claimed=return(payment.succeeded)"));
            }
            env
        };
        let conn = Database::connect(&db.url).await.unwrap();
        for (round, comes_back_as) in [(1, "node-a"), (2, "node-b")] {
            // Node A dies right after claiming the payment's success for publication.
            let mut doomed = start_server(&db, &with("node-a", true)).await;
            let sku = format!("KILL-{round}");
            let id = stock_and_order(&client, &doomed.address, &sku, &format!("kill-{round}")).await;
            assert!(doomed.exited(Duration::from_secs(30)).await, "node A died between the payment's commit and its publication");
            drop(doomed);
            let payment = payment_records::Entity::find()
                .filter(payment_records::Column::OrderId.eq(id.as_str()))
                .one(&conn).await.unwrap().expect("the payment was committed");
            assert_eq!(payment.status, "SUCCEEDED");
            let event = entities::outbox_events::Entity::find()
                .filter(entities::outbox_events::Column::AggregateId.eq(id.as_str()))
                .filter(entities::outbox_events::Column::RoutingKey.eq("payment.succeeded"))
                .one(&conn).await.unwrap().expect("the payment's success is in the outbox");
            assert_eq!(event.claimed_by.as_deref(), Some("node-a"));
            assert!(event.published_at.is_none(), "and was not published");

            // Round 1: node A comes back under its identity and sends the event at once. Round 2:
            // another node takes it over after the lease, well before the payment deadline.
            let server = start_server(&db, &with(comes_back_as, false)).await;
            let saga = ended_saga(&client, &server.address, &id).await;
            assert_confirmed_and_charged(&client, &server.address, &id, &saga, &sku).await;
            let history = saga["history"].as_array().unwrap();
            let paid = history
                .iter()
                .find(|h| h["eventType"] == "PaymentSucceeded" && h["toState"] == "COMPLETED")
                .unwrap();
            assert_eq!(paid["routingKey"], "payment.succeeded", "confirmed by the event itself: {saga}");
            eventually(Duration::from_secs(30), "the payment's success to be published", || async {
                let row = entities::outbox_events::Entity::find_by_id(event.id).one(&conn).await.ok()??;
                row.published_at.map(|_| ())
            })
            .await;
            drop(server);
        }
    }
}

/// A unit's events written claimed by this node, to be handed to its relay after the commit, whatever
/// becomes of the commit's caller. On SQLite and PostgreSQL only: MySQL answers no ids from an insert,
/// so there the relay claims every row itself and nothing is handed over.
mod handed_over {
    use super::*;
    use crate::helpers::Backend;

    fn on(test: fn(Backend) -> futures::future::LocalBoxFuture<'static, ()>, backend: Backend) {
        let outcome = std::panic::catch_unwind(|| ordersaga::runtime::block_on(test(backend)));
        crate::helpers::drop_finished_databases();
        match outcome {
            Ok(result) => result.unwrap(),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    #[test]
    fn a_reservation_committed_but_answered_as_failed_is_still_published_sqlite() {
        on(
            |b| {
                Box::pin(a_reservation_committed_but_answered_as_failed_is_still_published(
                    b,
                ))
            },
            Backend::Sqlite,
        )
    }
    #[test]
    fn a_reservation_committed_but_answered_as_failed_is_still_published_postgres() {
        on(
            |b| {
                Box::pin(a_reservation_committed_but_answered_as_failed_is_still_published(
                    b,
                ))
            },
            Backend::Postgres,
        )
    }
    #[test]
    fn a_reservation_whose_delivery_was_given_up_mid_commit_is_still_published_sqlite() {
        on(
            |b| Box::pin(a_reservation_whose_delivery_was_given_up_mid_commit_is_still_published(b)),
            Backend::Sqlite,
        )
    }
    #[test]
    fn a_reservation_whose_delivery_was_given_up_mid_commit_is_still_published_postgres() {
        on(
            |b| Box::pin(a_reservation_whose_delivery_was_given_up_mid_commit_is_still_published(b)),
            Backend::Postgres,
        )
    }

    async fn a_reservation_committed_but_answered_as_failed_is_still_published(backend: Backend) {
        // The inventory's commit goes through and its answer is lost: the reservation's event, written
        // claimed by this node, is released for the relay, and the saga goes on without a restart.
        let Some(db) = TestDb::create(backend).await else {
            return;
        };
        let env = [("FAILPOINTS", "commit-unanswered=return(inventory.reserved)")];
        let client = crate::helpers::test_client();
        let server = start_server(&db, &env).await;
        let base = server.address.clone();
        let id = stock_and_order(&client, &base, "LOST-1", "lost-1").await;
        let saga = ended_saga(&client, &base, &id).await;
        assert_confirmed_and_charged(&client, &base, &id, &saga, "LOST-1").await;
        let history = saga["history"].as_array().unwrap();
        assert!(
            history.iter().any(|h| h["routingKey"] == "inventory.reserved"),
            "the reservation's event reached the saga: {saga}"
        );
    }

    async fn a_reservation_whose_delivery_was_given_up_mid_commit_is_still_published(backend: Backend) {
        // The unit that reserved the stock commits after its delivery's deadline has passed: its
        // events still reach the relay, and the saga ends without a restart.
        let Some(db) = TestDb::create(backend).await else {
            return;
        };
        let env = [
            ("FAILPOINTS", "commit-outlived=return(inventory.reserved)"),
            ("ORDERSAGA_DATABASE__WORK_TIMEOUT_SECONDS", "1"),
        ];
        let client = crate::helpers::test_client();
        let server = start_server(&db, &env).await;
        let base = server.address.clone();
        let id = stock_and_order(&client, &base, "LATE-1", "late-1").await;
        let saga = ended_saga(&client, &base, &id).await;
        assert_confirmed_and_charged(&client, &base, &id, &saga, "LATE-1").await;
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let timed_out = metrics
            .lines()
            .find_map(|l| l.strip_prefix("database_work_timed_out_total "))
            .and_then(|n| n.trim().parse::<f64>().ok());
        assert!(
            timed_out.is_some_and(|n| n >= 1.0),
            "the delivery was given up first: {timed_out:?}"
        );
    }
}

/// A node whose inventory never gets its orders (their events stay in the outbox), so that their sagas
/// wait on the engine, which has room for three; and a buyer.
struct HeldNode {
    client: reqwest::Client,
    server: crate::config::Server,
    buyer: String,
}

impl HeldNode {
    async fn start(db: &TestDb) -> HeldNode {
        let env = [
            ("FAILPOINTS", "outbox-hold=return(order.created)"),
            ("ORDERSAGA_ADMISSION__MAX_BACKLOG", "3"),
        ];
        let client = crate::helpers::test_client();
        let server = start_server(db, &env).await;
        let buyer = mint_token(&client, &server.address, "u-b", "buyer").await;
        HeldNode {
            client,
            server,
            buyer,
        }
    }

    async fn place(&self, key: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/orders", self.server.address))
            .bearer_auth(&self.buyer)
            .header("Idempotency-Key", key)
            .json(&json!({"userId": "u-b", "items": [line("SKU-B", 1, "1.00")]}))
            .send()
            .await
            .unwrap()
    }
}

on_every_backend! {
    async fn a_node_with_a_full_backlog_refuses_new_orders_until_it_catches_up(backend) {
        let Some(db) = TestDb::create(backend).await else { return };
        let node = HeldNode::start(&db).await;
        let (client, base) = (&node.client, &node.server.address);
        for key in ["b-1", "b-2", "b-3"] {
            assert_eq!(node.place(key).await.status(), 201, "{key}");
        }
        let refused = node.place("b-4").await;
        assert!(refused.headers().contains_key("retry-after"));
        let problem = crate::helpers::assert_problem(refused, 503).await;
        assert_eq!(problem["type"], "/problems/overloaded", "{problem}");
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("orders_refused_overloaded_total 1"), "refusals are counted");
        // Reading is not refused.
        let admin = mint_token(client, base, "admin-1", "admin").await;
        let sagas: Value = client.get(format!("{base}/api/sagas?state=AWAITING_INVENTORY")).bearer_auth(&admin)
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(sagas["totalElements"], 3);
    }
    async fn a_full_backlog_lets_in_no_more_orders_than_its_bound_at_once(backend) {
        // Sixteen orders at once: an order counts from its admission until the saga registry counts its
        // saga, so exactly three get in.
        let Some(db) = TestDb::create(backend).await else { return };
        let node = HeldNode::start(&db).await;
        let keys: Vec<String> = (0..16).map(|i| format!("c-{i}")).collect();
        let answers: Vec<u16> = join_all(keys.iter().map(|key| node.place(key)))
            .await
            .iter()
            .map(|response| response.status().as_u16())
            .collect();
        let accepted = answers.iter().filter(|s| **s == 201).count();
        let refused = answers.iter().filter(|s| **s == 503).count();
        assert_eq!((accepted, refused), (3, 13), "{answers:?}");
    }
}
