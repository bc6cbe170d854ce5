//! A node cut off from its database or its broker by a network partition. The node runs in a network
//! namespace of its own (`netns`), behind a router namespace; it reaches the machine's database and
//! broker through relays in the test process on the machine's end of the pair, and the cut drops their
//! packets in the router, so neither end hears of it: the node sees a real partition (hangs, no
//! errors). Its clients reach it on the namespace's address, a path that stays up while only the
//! database or the broker is cut.
//!
//! The scenarios (on PostgreSQL and MariaDB; about 100 s for all of them on two threads):
//! - cut off from the database while orders arrive: `503` in time, recovery by itself (≈ 12 s);
//! - cut off from the broker while sagas are in flight: orders accepted, caught up after (≈ 12 s);
//! - half-open connections (the server forgot them behind the cut), to the broker (≈ 35 s) and to the
//!   database (≈ 20 s): noticed and replaced in bounded time;
//! - two nodes, one cut off from everything: the other serves, every order ends once (≈ 15 s).
//!
//! Each cut is held for a few seconds; `ORDERSAGA_TEST_PARTITION_HOLD_SECONDS` holds them longer, for a
//! run by hand.

use std::time::{Duration, Instant};

use futures::future::join_all;
use sea_orm::{ColumnTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::config::{Server, spawn_server_in};
use crate::crash::assert_ended_once;
use crate::helpers::{Backend, TestBroker, TestDb, eventually, line, mint_token};
use crate::netns::Netns;
use crate::on_every_backend;
use crate::outage::{DbProxy, Mode};
use entities::outbox_events;

const SKUS: [&str; 3] = ["PT-A", "PT-B", "PT-C"];
const STOCK: i64 = 400;
/// The node's request deadline in these tests.
const DEADLINE: Duration = Duration::from_secs(3);

/// A node in its own namespace, its relays to the machine's database (and broker).
struct Partitioned {
    netns: Netns,
    db_relay: DbProxy,
    amqp_relay: Option<DbProxy>,
    server: Server,
    client: reqwest::Client,
}

impl Partitioned {
    /// Starts a node in a new namespace on `db` (and `broker`), waits until it is ready. `None` when
    /// namespaces are unavailable and not required.
    async fn start(db: &TestDb, broker: Option<&TestBroker>, env: &[(&str, &str)]) -> Option<Partitioned> {
        let netns = Netns::create()?;
        let host = netns.host_addr.into();
        let db_relay = DbProxy::start_on(host, &db.url, Mode::Up).await;
        let amqp_relay = match broker {
            Some(broker) => Some(DbProxy::start_on(host, &broker.amqp_url, Mode::Up).await),
            None => None,
        };
        let server = Self::spawn(&netns, db, &db_relay, amqp_relay.as_ref(), broker, env);
        server.ready().await;
        Some(Partitioned {
            netns,
            db_relay,
            amqp_relay,
            server,
            client: crate::helpers::test_client(),
        })
    }

    fn spawn(
        netns: &Netns,
        db: &TestDb,
        db_relay: &DbProxy,
        amqp_relay: Option<&DbProxy>,
        broker: Option<&TestBroker>,
        env: &[(&str, &str)],
    ) -> Server {
        let database_url = db_relay.url(&db.url);
        let amqp_url = amqp_relay
            .zip(broker)
            .map(|(relay, broker)| relay.url(&broker.amqp_url));
        let deadline = DEADLINE.as_secs().to_string();
        let mut all = vec![
            ("ORDERSAGA_DATABASE_URL", database_url.as_str()),
            ("ORDERSAGA_REQUEST_TIMEOUT_SECONDS", deadline.as_str()),
            ("ORDERSAGA_DATABASE__CONNECT_TIMEOUT_SECONDS", "2"),
            ("ORDERSAGA_DATABASE__MAX_CONNECTIONS", "8"),
            ("ORDERSAGA_PAYMENT_MODE", "HASHED"),
            ("ORDERSAGA_PAYMENT__LATENCY_MS", "50"),
        ];
        if let Some(url) = &amqp_url {
            all.push(("ORDERSAGA_AMQP_URL", url.as_str()));
        }
        all.extend_from_slice(env);
        spawn_server_in(netns, db, &all)
    }

    async fn stock_up(&self) -> String {
        let admin = mint_token(&self.client, self.base(), "admin-1", "admin").await;
        crate::helpers::set_stocks(&self.client, self.base(), &admin, &SKUS, STOCK).await;
        admin
    }
}

/// Keeps a cut in place for `default`, or for `ORDERSAGA_TEST_PARTITION_HOLD_SECONDS` when set: a longer
/// partition, run by hand (`ORDERSAGA_TEST_PARTITION_HOLD_SECONDS=300 cargo test --test api --
/// partition::`).
async fn hold(default: Duration) {
    let held = std::env::var("ORDERSAGA_TEST_PARTITION_HOLD_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(default);
    tokio::time::sleep(held).await;
}

/// A node the test talks to over HTTP.
trait Node {
    fn client(&self) -> &reqwest::Client;
    fn base(&self) -> &str;
}

impl Node for Partitioned {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }
    fn base(&self) -> &str {
        &self.server.address
    }
}

/// A node on the machine itself.
struct Local {
    server: Server,
    client: reqwest::Client,
}

impl Node for Local {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }
    fn base(&self) -> &str {
        &self.server.address
    }
}

/// One placement: its status, body, `Retry-After` and how long it took to answer.
struct Placed {
    status: u16,
    body: Value,
    content_type: String,
    retry_after: bool,
    took: Duration,
}

async fn place(client: &reqwest::Client, base: &str, buyer: &str, key: &str, i: usize) -> Placed {
    let items = vec![line(SKUS[i % 3], 1 + (i % 2) as i64, "2.50")];
    let sent = Instant::now();
    let r = client
        .post(format!("{base}/api/orders"))
        .bearer_auth(buyer)
        .header("Idempotency-Key", key)
        .json(&json!({"userId": "pt-buyer", "items": items}))
        .send()
        .await
        .expect("the node answers (it never hangs past its deadline)");
    let took = sent.elapsed();
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    let content_type = crate::helpers::content_type(&r);
    let body = r.json().await.unwrap_or(Value::Null);
    Placed {
        status,
        body,
        content_type,
        retry_after,
        took,
    }
}

/// Places `keys` until each is accepted (`201`, or `200` for a key placed before), retrying a `503`
/// after a pause as its `Retry-After` asks; answers the order ids.
async fn place_until_accepted(
    client: &reqwest::Client,
    base: &str,
    buyer: &str,
    keys: &[(String, usize)],
) -> Vec<String> {
    let mut ids = Vec::new();
    for (key, i) in keys {
        let id = eventually(
            Duration::from_secs(60),
            &format!("order {key} to be accepted"),
            || async {
                let placed = place(client, base, buyer, key, *i).await;
                match placed.status {
                    200 | 201 => placed.body["orderId"].as_str().map(str::to_owned),
                    503 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        None
                    }
                    other => panic!("order {key} answered {other}: {}", placed.body),
                }
            },
        )
        .await;
        ids.push(id);
    }
    ids
}

/// Waits until every order of `ids` has ended; answers how long that took.
async fn all_end(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    ids: &[String],
    within: Duration,
) -> Duration {
    let started = Instant::now();
    for id in ids {
        eventually(within, &format!("order {id} to end"), || async {
            crate::crash::status(client, base, admin, id)
                .await
                .filter(|s| s != "PENDING")
        })
        .await;
    }
    started.elapsed()
}

/// The outbox rows not yet published.
async fn unpublished(url: &str) -> u64 {
    let conn = Database::connect(url).await.unwrap();
    let n = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(&conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    n
}

/// `/health/ready`: its status and how long it took.
async fn readiness(client: &reqwest::Client, base: &str) -> (u16, Value, Duration) {
    let sent = Instant::now();
    let r = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("readiness answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null), sent.elapsed())
}

on_every_backend! {
    async fn a_node_cut_off_from_its_database_answers_503_in_time_and_recovers_by_itself(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: a local file cannot be cut off");
            return;
        }
        let Some(db) = TestDb::create(backend).await else { return };
        let Some(node) = Partitioned::start(&db, None, &[]).await else { return };
        let (client, base) = (node.client.clone(), node.base().to_owned());
        let admin = node.stock_up().await;
        let buyer = mint_token(&client, &base, "pt-buyer", "buyer").await;

        // Orders arrive; the cut comes while some are in flight.
        let before: Vec<(String, usize)> = (0..30).map(|i| (format!("pt-before-{i}"), i)).collect();
        let placed = join_all(before.iter().map(|(key, i)| place(&client, &base, &buyer, key, *i))).await;
        let mut ids: Vec<String> = Vec::new();
        for p in &placed {
            assert_eq!(p.status, 201, "{}", p.body);
            ids.push(p.body["orderId"].as_str().unwrap().to_owned());
        }
        node.netns.cut_to(node.db_relay.port());
        let cut_at = Instant::now();

        // New orders answer 503 within the deadline, as problems with Retry-After; none hangs.
        let during: Vec<(String, usize)> = (0..8).map(|i| (format!("pt-during-{i}"), i)).collect();
        let answers = join_all(during.iter().map(|(key, i)| place(&client, &base, &buyer, key, *i))).await;
        let mut slowest = Duration::ZERO;
        for p in &answers {
            assert_eq!(p.status, 503, "{}", p.body);
            assert_eq!(p.content_type, "application/problem+json");
            assert!(p.retry_after, "Retry-After on {}", p.body);
            slowest = slowest.max(p.took);
        }
        assert!(slowest < DEADLINE + Duration::from_secs(2), "answered after {slowest:?}");
        // Readiness says so within its own timeout; liveness stays up.
        let (ready, body, took) = readiness(&client, &base).await;
        assert_eq!(ready, 503, "{body}");
        assert_eq!(body["checks"]["database"], "down", "{body}");
        assert!(took < Duration::from_secs(4), "readiness answered after {took:?}");
        let live = client.get(format!("{base}/health/live")).send().await.unwrap();
        assert_eq!(live.status(), 200);
        assert!(node.netns.dropped() > 0, "the cut dropped the node's database traffic");
        // Held for a while, the node still runs.
        hold(Duration::from_secs(2)).await;
        let mut server = node.server;
        assert!(server.running(), "the node survived the cut; log in {}", server.log.display());
        let cut_for = cut_at.elapsed();

        node.netns.heal();
        let healed = Instant::now();
        eventually(Duration::from_secs(60), "the node to be ready again", || async {
            (readiness(&client, &base).await.0 == 200).then_some(())
        })
        .await;
        let ready_after = healed.elapsed();
        // The keys that met the cut are placed by their retries, once; more orders after the heal.
        ids.extend(place_until_accepted(&client, &base, &buyer, &during).await);
        let accepting_after = healed.elapsed();
        let after: Vec<(String, usize)> = (0..10).map(|i| (format!("pt-after-{i}"), i)).collect();
        ids.extend(place_until_accepted(&client, &base, &buyer, &after).await);
        all_end(&client, &base, &admin, &ids, Duration::from_secs(60)).await;
        eprintln!(
            "database cut on {backend:?}: {} orders, cut {cut_for:?}, slowest 503 {slowest:?}, ready {ready_after:?} and accepting {accepting_after:?} after the heal, all ended {:?} after the heal",
            ids.len(),
            healed.elapsed(),
        );
        assert_ended_once(&db.url, &ids, &SKUS, STOCK).await;
        assert!(server.running(), "log in {}", server.log.display());
    }
}

/// The bus's status in readiness (`up`, `down`).
async fn bus_status(client: &reqwest::Client, base: &str) -> Option<String> {
    let (_, body, _) = readiness(client, base).await;
    body["checks"]["bus"]["status"].as_str().map(str::to_owned)
}

/// Places `n` orders under `prefix` at once, all of which must be accepted; answers their ids. A key
/// that meets a database too busy to answer in time (`503` with `Retry-After`: "the database is
/// unavailable", or `/problems/deadline-passed` when the request ran past its deadline — a loaded
/// machine) is sent again with the same key, as a client does; any other answer fails the test.
async fn place_accepted(node: &impl Node, buyer: &str, prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<(String, usize)> = (0..n).map(|i| (format!("{prefix}-{i}"), i)).collect();
    join_all(keys.iter().map(|(key, i)| async move {
        let sent = std::cell::Cell::new(0);
        eventually(
            Duration::from_secs(30),
            &format!("order {key} to be accepted"),
            || async {
                let p = place(node.client(), node.base(), buyer, key, *i).await;
                sent.set(sent.get() + 1);
                let busy = p.status == 503
                    && p.retry_after
                    && (p.body["type"] == "/problems/deadline-passed"
                        || p.body["detail"]
                            .as_str()
                            .is_some_and(|d| d.starts_with("the database is unavailable")));
                if busy {
                    assert!(
                        p.took < DEADLINE + Duration::from_secs(2),
                        "answered after {:?}",
                        p.took
                    );
                    eprintln!("order {key}: the database was busy; sending it again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    return None;
                }
                // A retry may find the order its first attempt placed after all (`200`, the same order).
                let accepted = p.status == 201 || (p.status == 200 && sent.get() > 1);
                assert!(accepted, "answered {}: {}", p.status, p.body);
                p.body["orderId"].as_str().map(str::to_owned)
            },
        )
        .await
    }))
    .await
}

/// Places `n` orders under `prefix` at once; answers the ids of those accepted (the others answered
/// `503` in time).
async fn place_accepted_or_503(node: &impl Node, buyer: &str, prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<(String, usize)> = (0..n).map(|i| (format!("{prefix}-{i}"), i)).collect();
    let placed = join_all(
        keys.iter()
            .map(|(key, i)| place(node.client(), node.base(), buyer, key, *i)),
    )
    .await;
    placed
        .iter()
        .filter_map(|p| match p.status {
            201 => Some(p.body["orderId"].as_str().unwrap().to_owned()),
            503 => {
                assert!(
                    p.took < DEADLINE + Duration::from_secs(2),
                    "answered after {:?}",
                    p.took
                );
                None
            }
            other => panic!("answered {other}: {}", p.body),
        })
        .collect()
}

/// Waits until some of `ids` have ended and some not: sagas are in flight.
async fn some_in_flight(node: &impl Node, admin: &str, ids: &[String]) {
    eventually(
        Duration::from_secs(30),
        "some orders to end while others are in flight",
        || async {
            let mut ended = 0;
            for id in ids {
                if crate::crash::status(node.client(), node.base(), admin, id)
                    .await
                    .is_some_and(|s| s != "PENDING")
                {
                    ended += 1;
                }
            }
            (ended > 0 && ended < ids.len()).then_some(())
        },
    )
    .await;
}

on_every_backend! {
    async fn a_node_cut_off_from_its_broker_keeps_accepting_orders_and_catches_up_after_the_heal(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: the broker cut is tested on the server databases");
            return;
        }
        let _broker = crate::helpers::BROKER.read().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        let Some(node) = Partitioned::start(&db, Some(&broker), &[("ORDERSAGA_PAYMENT__LATENCY_MS", "300")]).await else { return };
        let admin = node.stock_up().await;
        let buyer = mint_token(&node.client, node.base(), "pt-buyer", "buyer").await;
        let mut ids = place_accepted(&node, &buyer, "pt-b-before", 40).await;
        some_in_flight(&node, &admin, &ids).await;

        let amqp = node.amqp_relay.as_ref().unwrap();
        node.netns.cut_to(amqp.port());
        let cut_at = Instant::now();
        // Orders are still accepted: their events wait in the outbox.
        ids.extend(place_accepted(&node, &buyer, "pt-b-during", 20).await);
        eventually(Duration::from_secs(10), "the cut to drop the node's broker traffic", || async {
            (node.netns.dropped() > 0).then_some(())
        })
        .await;
        hold(Duration::from_secs(5)).await;
        let waiting = unpublished(&db.url).await;
        assert!(waiting > 0, "events wait in the outbox during the cut");
        let cut_for = cut_at.elapsed();

        node.netns.heal();
        let healed = Instant::now();
        ids.extend(place_accepted(&node, &buyer, "pt-b-after", 10).await);
        all_end(&node.client, node.base(), &admin, &ids, Duration::from_secs(90)).await;
        let ended = healed.elapsed();
        eventually(Duration::from_secs(30), "the outbox to drain", || async {
            (unpublished(&db.url).await == 0).then_some(())
        })
        .await;
        let drained = healed.elapsed();
        assert_eq!(bus_status(&node.client, node.base()).await.as_deref(), Some("up"));
        eprintln!(
            "broker cut on {backend:?}: {} orders, cut {cut_for:?} with {waiting} events waiting, all ended {:?} and the outbox drained {drained:?} after the heal",
            ids.len(),
            ended,
        );
        assert_ended_once(&db.url, &ids, &SKUS, STOCK).await;
    }

    async fn a_half_open_broker_connection_is_detected_and_replaced_in_bounded_time(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: the broker cut is tested on the server databases");
            return;
        }
        let _broker = crate::helpers::BROKER.read().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        let heartbeat = Duration::from_secs(2);
        let env = [("ORDERSAGA_BROKER__HEARTBEAT_SECONDS", "2"), ("ORDERSAGA_BROKER__CONNECT_TIMEOUT_SECONDS", "2")];
        let Some(node) = Partitioned::start(&db, Some(&broker), &env).await else { return };
        let admin = node.stock_up().await;
        let buyer = mint_token(&node.client, node.base(), "pt-buyer", "buyer").await;
        let mut ids = place_accepted(&node, &buyer, "pt-c-before", 30).await;
        some_in_flight(&node, &admin, &ids).await;

        // The cut, and behind it the broker forgets the connection (as it does once it has missed the
        // node's heartbeats): nothing tells the node, whose socket stays open.
        let amqp = node.amqp_relay.as_ref().unwrap();
        node.netns.cut_to(amqp.port());
        let cut_at = Instant::now();
        amqp.set(Mode::Gone);
        eventually(Duration::from_secs(10), "the server to forget the node's connections", || async {
            (amqp.connections() == 0).then_some(())
        })
        .await;
        amqp.set(Mode::Up);
        ids.extend(place_accepted(&node, &buyer, "pt-c-during", 10).await);
        eventually(Duration::from_secs(60), "the node to see its broker connection dead", || async {
            (bus_status(&node.client, node.base()).await.as_deref() == Some("down")).then_some(())
        })
        .await;
        let detected = cut_at.elapsed();
        // The cut lasts on while the node tries to reconnect: an attempt whose SYN is lost would wait on
        // TCP's back-off (the next SYN 16 s after the fifth) without the connect timeout.
        hold(Duration::from_secs(20)).await;
        let cut_for = cut_at.elapsed();

        node.netns.heal();
        let healed = Instant::now();
        eventually(Duration::from_secs(120), "the node to reconnect", || async {
            (bus_status(&node.client, node.base()).await.as_deref() == Some("up")).then_some(())
        })
        .await;
        let reconnected = healed.elapsed();
        ids.extend(place_accepted(&node, &buyer, "pt-c-after", 10).await);
        all_end(&node.client, node.base(), &admin, &ids, Duration::from_secs(90)).await;
        eventually(Duration::from_secs(30), "the outbox to drain", || async {
            (unpublished(&db.url).await == 0).then_some(())
        })
        .await;
        eprintln!(
            "half-open broker connection on {backend:?}: {} orders, heartbeat {heartbeat:?}, detected {detected:?} after the cut, cut {cut_for:?}, reconnected {reconnected:?} and drained {:?} after the heal",
            ids.len(),
            healed.elapsed(),
        );
        assert!(detected <= heartbeat * 2 + Duration::from_secs(3), "detected after {detected:?}");
        // The attempt under way gives up within the connect timeout (2 s), the next comes after at most
        // the longest back-off (5 s).
        assert!(reconnected <= Duration::from_secs(8), "reconnected {reconnected:?} after the heal");
        assert_ended_once(&db.url, &ids, &SKUS, STOCK).await;
    }
}

on_every_backend! {
    async fn a_node_whose_database_forgot_its_connections_behind_a_cut_recovers_in_bounded_time(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: a local file cannot be cut off");
            return;
        }
        let Some(db) = TestDb::create(backend).await else { return };
        let work_timeout = Duration::from_secs(5);
        let env = [("ORDERSAGA_PAYMENT__LATENCY_MS", "200"), ("ORDERSAGA_DATABASE__WORK_TIMEOUT_SECONDS", "5")];
        let Some(node) = Partitioned::start(&db, None, &env).await else { return };
        let admin = node.stock_up().await;
        let buyer = mint_token(&node.client, node.base(), "pt-buyer", "buyer").await;
        let mut ids = place_accepted(&node, &buyer, "pt-h-before", 30).await;
        some_in_flight(&node, &admin, &ids).await;

        // The database stops answering while queries are on their way (they are received, so TCP has
        // nothing left to send), then the cut, and behind it the database ends the node's sessions (a
        // restart, a failover, its own keepalive giving up): their transactions roll back, and nothing
        // tells the node, which waits for answers that will never come.
        node.db_relay.set(Mode::Stalled);
        ids.extend(place_accepted_or_503(&node, &buyer, "pt-h-stalled", 10).await);
        node.netns.cut_to(node.db_relay.port());
        let cut_at = Instant::now();
        node.db_relay.set(Mode::Gone);
        eventually(Duration::from_secs(10), "the server to forget the node's connections", || async {
            (node.db_relay.connections() == 0).then_some(())
        })
        .await;
        node.db_relay.set(Mode::Up);
        let (ready, body, took) = readiness(&node.client, node.base()).await;
        assert_eq!(ready, 503, "{body}");
        assert!(took < Duration::from_secs(4), "readiness answered after {took:?}");
        hold(Duration::from_secs(10)).await;
        let cut_for = cut_at.elapsed();

        node.netns.heal();
        let healed = Instant::now();
        eventually(Duration::from_secs(120), "the node to be ready again", || async {
            (readiness(&node.client, node.base()).await.0 == 200).then_some(())
        })
        .await;
        let ready_after = healed.elapsed();
        let after: Vec<(String, usize)> = (0..10).map(|i| (format!("pt-h-after-{i}"), i)).collect();
        ids.extend(place_until_accepted(&node.client, node.base(), &buyer, &after).await);
        let accepting_after = healed.elapsed();
        all_end(&node.client, node.base(), &admin, &ids, Duration::from_secs(180)).await;
        let ended_after = healed.elapsed();
        eprintln!(
            "database sessions lost behind a cut on {backend:?}: {} orders, cut {cut_for:?}, ready {ready_after:?}, accepting {accepting_after:?} and all ended {ended_after:?} after the heal",
            ids.len(),
        );
        assert_ended_once(&db.url, &ids, &SKUS, STOCK).await;
        // Work waiting on a lost connection gives up within the work timeout; retried, it ends.
        assert!(ended_after < work_timeout * 4, "the orders ended {ended_after:?} after the heal");
    }
}

on_every_backend! {
    async fn two_nodes_one_partitioned_from_database_and_broker_the_other_serves_and_every_order_ends_once(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: two nodes share a server database");
            return;
        }
        let _broker = crate::helpers::BROKER.read().await;
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        let common = [
            ("ORDERSAGA_PAYMENT__LATENCY_MS", "300"),
            ("ORDERSAGA_BROKER__HEARTBEAT_SECONDS", "2"),
            ("ORDERSAGA_BROKER__CONNECT_TIMEOUT_SECONDS", "2"),
            ("ORDERSAGA_DATABASE__WORK_TIMEOUT_SECONDS", "5"),
            ("ORDERSAGA_OUTBOX__CLAIM_LEASE_SECONDS", "3"),
        ];
        let with = |node: &'static str| {
            let mut env = common.to_vec();
            env.push(("ORDERSAGA_NODE_ID", node));
            env
        };
        let Some(a) = Partitioned::start(&db, Some(&broker), &with("node-a")).await else { return };
        // Node B on the machine itself, straight to the database and the broker.
        let deadline = DEADLINE.as_secs().to_string();
        let mut b_env = with("node-b");
        b_env.extend([
            ("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str()),
            ("ORDERSAGA_REQUEST_TIMEOUT_SECONDS", deadline.as_str()),
            ("ORDERSAGA_PAYMENT_MODE", "HASHED"),
        ]);
        let b = crate::config::start_server(&db, &b_env).await;
        let admin = a.stock_up().await;
        let buyer = mint_token(&a.client, a.base(), "pt-buyer", "buyer").await;
        let b_node = Local { server: b, client: a.client.clone() };
        let mut ids = place_accepted(&a, &buyer, "pt-d-a", 30).await;
        ids.extend(place_accepted(&b_node, &buyer, "pt-d-b", 30).await);
        some_in_flight(&a, &admin, &ids).await;

        // A is cut off from everything, the database and the broker included; B serves.
        a.netns.cut_all();
        let cut_at = Instant::now();
        let during = place_accepted(&b_node, &buyer, "pt-d-b-during", 20).await;
        let served = cut_at.elapsed();
        let b_ended = all_end(b_node.client(), b_node.base(), &admin, &during, Duration::from_secs(60)).await;
        ids.extend(during);
        hold(Duration::ZERO).await;
        let cut_for = cut_at.elapsed();

        a.netns.heal();
        let healed = Instant::now();
        ids.extend(place_until_accepted(&a.client, a.base(), &buyer, &[("pt-d-a-after".to_owned(), 1)]).await);
        all_end(b_node.client(), b_node.base(), &admin, &ids, Duration::from_secs(90)).await;
        eventually(Duration::from_secs(30), "the outbox to drain", || async {
            (unpublished(&db.url).await == 0).then_some(())
        })
        .await;
        eprintln!(
            "two nodes on {backend:?}, one cut off from database and broker: {} orders, B accepted 20 in {served:?} and ended them {b_ended:?} later during the cut of {cut_for:?}; all ended and the outbox drained {:?} after the heal",
            ids.len(),
            healed.elapsed(),
        );
        assert_ended_once(&db.url, &ids, &SKUS, STOCK).await;
    }
}
