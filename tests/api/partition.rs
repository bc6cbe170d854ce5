//! A node cut off from its database or its broker by a network partition. The node runs in a network
//! namespace of its own (`netns`); it reaches the machine's database and broker through relays in the
//! test process on the machine's end of the veth pair, and the cut drops their packets on the veth, so
//! the node sees a real partition (hangs, no errors). Its clients reach it on the namespace's address,
//! a path that stays up while only the database or the broker is cut.

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

    fn base(&self) -> &str {
        &self.server.address
    }

    async fn stock_up(&self) -> String {
        let admin = mint_token(&self.client, self.base(), "admin-1", "admin").await;
        for sku in SKUS {
            let r = self
                .client
                .post(format!("{}/api/stocks", self.base()))
                .bearer_auth(&admin)
                .json(&json!({"skuId": sku, "availableQty": STOCK}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        admin
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

async fn status(client: &reqwest::Client, base: &str, admin: &str, id: &str) -> Option<String> {
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
            status(client, base, admin, id).await.filter(|s| s != "PENDING")
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
        tokio::time::sleep(Duration::from_secs(2)).await;
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
