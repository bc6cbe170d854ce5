//! The fault campaign: nodes under load from clients that retry as told (same `Idempotency-Key`,
//! possibly on another node), faults of every kind repeated in rounds while the load runs, then — once
//! everything has drained, awaited rather than slept on — every guarantee checked and every violation
//! counted:
//!
//! - every accepted order ended, once: confirmed with its reservation held and its payment kept,
//!   compensated with one release, or failed with nothing reserved; nothing reserved, charged or
//!   released twice, no saga step applied twice;
//! - no order charged and failed (a payment of an order that does not confirm is declined or refunded);
//! - stock conserved, and confirmed orders hold exactly the reserved stock;
//! - what each client was told is what the database holds (one order per key);
//! - the outbox drained, nothing left on the consumer queues;
//! - the dead letters are exactly the poison messages the campaign sent, each once.
//!
//! Scenarios: two nodes on a PostgreSQL cluster and a RabbitMQ node of the campaign's own (`kill -9`
//! of a node, broker stop and start, PostgreSQL crash-restart and outage, consumers failing transiently,
//! a poison message per queue); one node on SQLite killed in a loop; two nodes on a three-node RabbitMQ
//! cluster with quorum queues, one broker node killed mid-run. Each prints a summary, and the same as
//! one JSON line starting `CAMPAIGN ` (appended to the file `ORDERSAGA_CAMPAIGN_REPORT` names, if set).
//!
//! A consumer's transient failures come from the `consume-fails` fault point (events whose id starts
//! with `a` fail twice, with `5` once); the poison messages are, in turn, a signed undecodable body and
//! an unsigned envelope, published straight to each queue.
//!
//! The default profile is bounded for CI: the whole module takes about two and a half minutes on a
//! two-core machine, its loaded scenarios one at a time (`cargo test --test api -- campaign::`; add
//! `--nocapture` to see the summaries). A longer run:
//!
//! ```sh
//! ORDERSAGA_CAMPAIGN_RUNS=3 ORDERSAGA_CAMPAIGN_ROUNDS=8 ORDERSAGA_CAMPAIGN_ORDERS=3000 \
//!   cargo test --test api -- campaign:: --nocapture
//! ```
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `ORDERSAGA_CAMPAIGN_RUNS` | 1 | runs per scenario, each on a fresh database and broker state |
//! | `ORDERSAGA_CAMPAIGN_ROUNDS` | 2 | fault rounds per run (each round: every kind of fault once) |
//! | `ORDERSAGA_CAMPAIGN_ORDERS` | 150 | orders placed per run at least (the load runs until the rounds are over and this many were accepted) |
//! | `ORDERSAGA_CAMPAIGN_CLIENTS` | 4 | concurrent clients |
//! | `ORDERSAGA_CAMPAIGN_PACE_MS` | 100 | each client's pause after an order is answered (0: as fast as the nodes answer) |
//! | `ORDERSAGA_CAMPAIGN_PG_BIN` | `/usr/lib/postgresql/15/bin` | PostgreSQL's binaries (`initdb`, `pg_ctl`) |
//!
//! Without PostgreSQL's binaries or RabbitMQ a scenario is skipped, saying why (it fails instead with
//! `ORDERSAGA_REQUIRE_SERVICES=1`).

mod checks;
mod load;
mod services;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::config::{Server, spawn_server_at};
use crate::helpers::{Backend, TEST_SECRET, TestDb, mint_token, test_client};
use checks::Poison;
use load::{Load, LoadReport, SKUS};
use services::{AmqpClient, PrivatePostgres, RabbitCluster, free_low_port};

/// Consumers fail transiently on events whose id starts with `a` (twice, then succeed) or `5` (once):
/// about one event in eight, well within the retry budget.
const CONSUME_FAILS: &str = "consume-fails=return(a@3,5@2)";
/// How long the drain may go without any progress before the run counts as hung (longer than the
/// redelivery of a lost event takes, `saga.redeliver_after_seconds` + a sweep).
const DRAIN_STALL: Duration = Duration::from_secs(90);
/// How long a fault round waits for the load to make progress before it fails.
const PROGRESS_WITHIN: Duration = Duration::from_secs(120);

/// The loaded scenarios run one at a time: each starts nodes, databases and broker nodes of its own and
/// loads the machine, and two at once on a small machine (beside the other tests) can slow each other
/// past their time limits.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The size of a campaign, from the environment.
#[derive(Clone, Copy, Debug)]
struct Profile {
    runs: usize,
    rounds: usize,
    orders: usize,
    clients: usize,
    pace: Duration,
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

impl Profile {
    /// This profile's clients placing orders on every node as `campaign-buyer`, their keys tagged `tag`.
    fn load(&self, nodes: &Nodes, buyer: String, tag: &str) -> Load {
        Load::start(
            nodes.bases(),
            buyer,
            "campaign-buyer",
            self.clients,
            self.pace,
            tag,
        )
    }

    fn from_env() -> Profile {
        Profile {
            runs: env_number("ORDERSAGA_CAMPAIGN_RUNS", 1).max(1),
            rounds: env_number("ORDERSAGA_CAMPAIGN_ROUNDS", 2).max(1),
            orders: env_number("ORDERSAGA_CAMPAIGN_ORDERS", 150).max(10),
            clients: env_number("ORDERSAGA_CAMPAIGN_CLIENTS", 4).max(1),
            pace: Duration::from_millis(env_number("ORDERSAGA_CAMPAIGN_PACE_MS", 100) as u64),
        }
    }

    /// Orders to wait for between two faults.
    fn step(&self) -> usize {
        (self.orders / (self.rounds * 6)).clamp(3, 200)
    }

    /// The stock of the scarce SKU: enough for about a third of the orders that ask for it.
    fn stock(&self) -> i64 {
        (self.orders / 6).max(10) as i64
    }
}

/// The figures of one scenario over its runs.
struct Summary {
    scenario: &'static str,
    started: Instant,
    runs: usize,
    placed: usize,
    accepted: usize,
    retries: usize,
    outcomes: BTreeMap<String, u64>,
    faults: BTreeMap<&'static str, usize>,
    transient_events: u64,
    violations: Vec<String>,
    drains: Vec<Duration>,
}

impl Summary {
    fn new(scenario: &'static str) -> Summary {
        Summary {
            scenario,
            started: Instant::now(),
            runs: 0,
            placed: 0,
            accepted: 0,
            retries: 0,
            outcomes: BTreeMap::new(),
            faults: BTreeMap::new(),
            transient_events: 0,
            violations: Vec::new(),
            drains: Vec::new(),
        }
    }

    fn fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    /// Adds a finished run: its load, drain and violations, and the outcomes in its database.
    async fn add_run(
        &mut self,
        url: &str,
        load: &LoadReport,
        drain: Result<Duration, String>,
        violations: Vec<String>,
    ) {
        self.runs += 1;
        self.placed += load.placed;
        self.accepted += load.accepted.len();
        self.retries += load.retries;
        match drain {
            Ok(took) => self.drains.push(took),
            Err(hang) => self.violations.push(hang),
        }
        self.violations.extend(violations);
        let conn = sea_orm::Database::connect(url).await.unwrap();
        for state in ["COMPLETED", "COMPENSATED", "FAILED"] {
            let n = entities::saga_instances::Entity::find()
                .filter(entities::saga_instances::Column::State.eq(state))
                .count(&conn)
                .await
                .unwrap();
            *self.outcomes.entry(state.to_owned()).or_default() += n;
        }
        let refunded = entities::payment_records::Entity::find()
            .filter(entities::payment_records::Column::Status.eq("REFUNDED"))
            .count(&conn)
            .await
            .unwrap();
        *self.outcomes.entry("REFUNDED payments".to_owned()).or_default() += refunded;
        let mut transient = 0;
        for prefix in ["a", "5"] {
            transient += entities::outbox_events::Entity::find()
                .filter(entities::outbox_events::Column::EventId.starts_with(prefix))
                .count(&conn)
                .await
                .unwrap();
        }
        self.transient_events += transient;
        let _ = conn.close().await;
    }

    fn json(&self) -> Value {
        let max_drain = self.drains.iter().max().copied().unwrap_or_default();
        json!({
            "scenario": self.scenario,
            "runs": self.runs,
            "ordersPlaced": self.placed,
            "ordersAccepted": self.accepted,
            "clientRetries": self.retries,
            "outcomes": self.outcomes,
            "faults": self.faults,
            "eventsFailedTransiently": self.transient_events,
            "violations": self.violations.len(),
            "drainMs": self.drains.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            "maxDrainMs": max_drain.as_millis() as u64,
            "wallMs": self.started.elapsed().as_millis() as u64,
        })
    }

    /// Prints the summary (and its JSON line), then fails on any violation.
    fn finish(self) {
        let line = self.json();
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let drains: Vec<String> = self
            .drains
            .iter()
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .collect();
        println!(
            "campaign {}: {} runs, {} orders placed, {} accepted ({} client retries), outcomes {:?}; faults: {}; {} events failed transiently in consumers; violations: {}; drain {}; wall {:.0} s",
            self.scenario,
            self.runs,
            self.placed,
            self.accepted,
            self.retries,
            self.outcomes,
            faults.join(", "),
            self.transient_events,
            self.violations.len(),
            drains.join(", "),
            self.started.elapsed().as_secs_f64()
        );
        println!("CAMPAIGN {line}");
        if let Ok(path) = std::env::var("ORDERSAGA_CAMPAIGN_REPORT") {
            use std::io::Write;
            if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                let _ = writeln!(file, "{line}");
            }
        }
        assert!(
            self.violations.is_empty(),
            "{} violations:\n{}",
            self.violations.len(),
            self.violations.join("\n")
        );
    }
}

/// The ordersaga nodes of a run: child processes on fixed ports, so a node restarted keeps its address
/// (and its `node_id`).
struct Nodes {
    url: String,
    ports: Vec<u16>,
    envs: Vec<Vec<(String, String)>>,
    servers: Vec<Option<Server>>,
}

impl Nodes {
    /// One node per environment, on the database `url`; waits until each is ready.
    async fn start(url: &str, envs: Vec<Vec<(String, String)>>) -> Nodes {
        let mut nodes = Nodes {
            url: url.to_owned(),
            ports: envs.iter().map(|_| free_low_port()).collect(),
            servers: envs.iter().map(|_| None).collect(),
            envs,
        };
        for i in 0..nodes.ports.len() {
            nodes.restart(i).await;
        }
        nodes
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn bases(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.base(i)).collect()
    }

    /// `kill -9` of node `i`.
    fn kill(&mut self, i: usize) {
        // Dropping the child SIGKILLs it and reaps it.
        drop(self.servers[i].take());
    }

    /// Starts node `i` (again) and waits until it is ready.
    async fn restart(&mut self, i: usize) {
        let env: Vec<(&str, &str)> = self.envs[i]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let server = spawn_server_at(&self.url, self.ports[i], &env);
        server.ready().await;
        self.servers[i] = Some(server);
    }
}

/// The environment of node `i` of a campaign.
fn node_env(i: usize, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("ORDERSAGA_NODE_ID".to_owned(), format!("campaign-{i}")),
        ("ORDERSAGA_PAYMENT_MODE".to_owned(), "HASHED".to_owned()),
        ("FAILPOINTS".to_owned(), CONSUME_FAILS.to_owned()),
        // The default deadline: a request that meets an outage answers 503 and is retried.
        ("ORDERSAGA_REQUEST_TIMEOUT_SECONDS".to_owned(), "5".to_owned()),
        (
            "ORDERSAGA_SAGA__PAYMENT_TIMEOUT_SECONDS".to_owned(),
            "10".to_owned(),
        ),
        // A saga that waited on the inventory this long has its events sent again.
        (
            "ORDERSAGA_SAGA__REDELIVER_AFTER_SECONDS".to_owned(),
            "15".to_owned(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// Sets every SKU's stock through node `base` (the last SKU to `scarce`, the others plenty, so that
/// some orders fail for want of stock); answers the SKUs with their stock and a buyer's token.
async fn prepare(base: &str, scarce: i64) -> (Vec<(&'static str, i64)>, String) {
    let client = test_client();
    let admin = mint_token(&client, base, "admin-1", "admin").await;
    let stocks: Vec<(&'static str, i64)> = SKUS
        .iter()
        .enumerate()
        .map(|(i, sku)| (*sku, if i + 1 == SKUS.len() { scarce } else { 1_000_000 }))
        .collect();
    for (sku, stock) in &stocks {
        let r = client
            .post(format!("{base}/api/stocks"))
            .bearer_auth(&admin)
            .json(&json!({"skuId": sku, "availableQty": stock}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "stock of {sku}");
    }
    let buyer = mint_token(&client, base, "campaign-buyer", "buyer").await;
    (stocks, buyer)
}

/// One poison message per consumer queue, published straight to the queue: in turn an undecodable
/// body that is correctly signed, and a well-formed envelope without a signature.
async fn send_poison(amqp_url: &str, tag: &str, round: usize, poisons: &mut Vec<Poison>) {
    let broker = AmqpClient::connect(amqp_url).await;
    for (q, spec) in actors::topology::QUEUES.iter().enumerate() {
        let message_id = format!("poison-{tag}-{round}-{q}");
        if (q + round).is_multiple_of(2) {
            let body = format!("{{not an envelope {message_id}");
            let signature = actors::envelope::sign(TEST_SECRET.as_bytes(), body.as_bytes());
            broker
                .publish_to_queue(
                    spec.name,
                    body.as_bytes(),
                    &message_id,
                    &[("x-signature", &signature)],
                )
                .await;
        } else {
            let body = json!({
                "event_id": uuid::Uuid::new_v4(), "event_type": "InventoryReleaseRequested",
                "occurred_at": "2026-12-01T00:00:00Z", "trace_id": message_id,
                "identity": {"user_id": "intruder", "roles": []},
                "data": {"order_id": uuid::Uuid::new_v4(), "reason": "PAYMENT_FAILED"}, "version": 1
            })
            .to_string();
            broker
                .publish_to_queue(spec.name, body.as_bytes(), &message_id, &[])
                .await;
        }
        poisons.push(Poison {
            queue: spec.name.to_owned(),
            message_id,
        });
    }
    broker.close().await;
}

/// Two nodes on a PostgreSQL cluster and a RabbitMQ node of the campaign's own, under load; every round
/// brings each kind of fault once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_and_rabbitmq_survive_repeated_faults() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let profile = Profile::from_env();
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let Some(mut rabbit) = RabbitCluster::start(1, "").await else {
        return;
    };
    let broker = rabbit.node(0);
    let mut summary = Summary::new("postgres+rabbitmq, two nodes");
    for run in 0..profile.runs {
        // A fresh database and a fresh vhost per run.
        let url = pg.create_database(&format!("campaign_{run}")).await;
        let amqp_url = broker.vhost(&format!("campaign-{run}")).await;
        let extra = [
            ("ORDERSAGA_AMQP_URL", amqp_url.as_str()),
            ("ORDERSAGA_DATABASE__MAX_CONNECTIONS", "8"),
            ("ORDERSAGA_DATABASE__CONNECT_TIMEOUT_SECONDS", "3"),
        ];
        let mut nodes = Nodes::start(&url, (0..2).map(|i| node_env(i, &extra)).collect()).await;
        let (stocks, buyer) = prepare(&nodes.base(0), profile.stock()).await;
        let load = profile.load(&nodes, buyer, &format!("r{run}"));
        let step = profile.step();
        let mut poisons = Vec::new();
        for round in 0..profile.rounds {
            load.progress(step, PROGRESS_WITHIN, &format!("before round {round}"))
                .await;
            let victim = round % 2;
            nodes.kill(victim);
            summary.fault("node kill -9");
            load.progress(step, PROGRESS_WITHIN, "with a node down").await;
            nodes.restart(victim).await;

            send_poison(&amqp_url, &format!("{run}"), round, &mut poisons).await;
            summary.fault("poison message per queue");

            broker.stop_app().await;
            summary.fault("broker stop/start");
            load.progress(step, PROGRESS_WITHIN, "while the broker is down")
                .await;
            broker.start_app().await;

            load.progress(step, PROGRESS_WITHIN, "after the broker came back")
                .await;
            pg.crash_restart().await;
            summary.fault("postgres restart -m immediate");
            load.progress(step, PROGRESS_WITHIN, "after the database crash-restart")
                .await;

            pg.stop().await;
            // The outage's length: nothing can progress meanwhile.
            tokio::time::sleep(Duration::from_secs(2)).await;
            pg.start_again().await;
            summary.fault("postgres down 2 s");
        }
        // The load goes on after the last fault until the run has its orders.
        load.progress(step, PROGRESS_WITHIN, "after the last fault").await;
        let remaining = profile.orders.saturating_sub(load.accepted());
        load.progress(remaining, PROGRESS_WITHIN * 5, "to complete the run")
            .await;
        let report = load.finish().await;
        let (drain, violations) =
            checks::settle(&url, &report, &stocks, &poisons, Some(&amqp_url), DRAIN_STALL).await;
        summary.add_run(&url, &report, drain, violations).await;
        drop(nodes);
    }
    summary.finish();
}

/// One node on embedded SQLite, killed (`kill -9`) and restarted on the same database file again and
/// again under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_on_sqlite_killed_in_a_loop() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let profile = Profile::from_env();
    let mut summary = Summary::new("sqlite, one node killed in a loop");
    for run in 0..profile.runs {
        let db = TestDb::create(Backend::Sqlite).await.unwrap();
        let mut nodes = Nodes::start(&db.url, vec![node_env(0, &[])]).await;
        let (stocks, buyer) = prepare(&nodes.base(0), profile.stock()).await;
        let load = profile.load(&nodes, buyer, &format!("s{run}"));
        let step = profile.step();
        for kill in 0..profile.rounds * 3 {
            load.progress(step, PROGRESS_WITHIN, &format!("before kill {kill}"))
                .await;
            nodes.kill(0);
            summary.fault("node kill -9");
            nodes.restart(0).await;
        }
        load.progress(step, PROGRESS_WITHIN, "after the last kill").await;
        let remaining = profile.orders.saturating_sub(load.accepted());
        load.progress(remaining, PROGRESS_WITHIN * 5, "to complete the run")
            .await;
        let report = load.finish().await;
        let (drain, violations) = checks::settle(&db.url, &report, &stocks, &[], None, DRAIN_STALL).await;
        summary.add_run(&db.url, &report, drain, violations).await;
        drop(nodes);
    }
    summary.finish();
}

/// Two nodes on quorum queues of a three-node RabbitMQ cluster of the campaign's own. A node takes one
/// AMQP URL, so each ordersaga node connects to a broker node that stays up (the first and the
/// second), and the third — which leads some of the queues (leaders placed `balanced`) and holds a
/// replica of every one — is killed (`kill -9`) mid-run, every round, and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_lose_nothing_when_a_broker_node_is_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let profile = Profile::from_env();
    let Some(pg) = PrivatePostgres::start().await else {
        return;
    };
    let Some(mut rabbit) = RabbitCluster::start(3, "queue_leader_locator = balanced\n").await else {
        return;
    };
    let mut summary = Summary::new("postgres+rabbitmq quorum queues, three broker nodes");
    for run in 0..profile.runs {
        let url = pg.create_database(&format!("quorum_{run}")).await;
        let vhost = format!("quorum-{run}");
        let urls = [rabbit.node(0).vhost(&vhost).await, rabbit.node(1).url_of(&vhost)];
        let envs = (0..2)
            .map(|i| {
                node_env(
                    i,
                    &[
                        ("ORDERSAGA_AMQP_URL", urls[i].as_str()),
                        ("ORDERSAGA_BROKER__QUORUM_QUEUES", "true"),
                        ("ORDERSAGA_DATABASE__MAX_CONNECTIONS", "8"),
                    ],
                )
            })
            .collect();
        let nodes = Nodes::start(&url, envs).await;
        let (stocks, buyer) = prepare(&nodes.base(0), profile.stock()).await;
        let load = profile.load(&nodes, buyer, &format!("q{run}"));
        let step = profile.step();
        let mut poisons = Vec::new();
        for round in 0..profile.rounds {
            load.progress(step, PROGRESS_WITHIN, &format!("before round {round}"))
                .await;
            send_poison(&urls[0], &format!("q{run}"), round, &mut poisons).await;
            summary.fault("poison message per queue");
            let victim = rabbit.node(2).name.clone();
            let led = rabbit.node(0).leaders(&vhost, &victim).await;
            assert!(round > 0 || led > 0, "the third broker node leads some queues");
            rabbit.node(2).kill().await;
            summary.fault("broker node kill -9 (quorum)");
            *summary
                .faults
                .entry("queue leaders on the killed broker node")
                .or_default() += led;
            load.progress(step, PROGRESS_WITHIN, "with a broker node dead")
                .await;
            load.progress(step, PROGRESS_WITHIN, "with a broker node dead, again")
                .await;
            rabbit.node(2).boot().await;
        }
        load.progress(step, PROGRESS_WITHIN, "after the last fault").await;
        let remaining = profile.orders.saturating_sub(load.accepted());
        load.progress(remaining, PROGRESS_WITHIN * 5, "to complete the run")
            .await;
        let report = load.finish().await;
        let (drain, violations) =
            checks::settle(&url, &report, &stocks, &poisons, Some(&urls[0]), DRAIN_STALL).await;
        summary.add_run(&url, &report, drain, violations).await;
        drop(nodes);
    }
    summary.finish();
}

/// Every event fails its first attempt, so messages wait in the retry queues all the time; the broker
/// stops and starts again while they do. None may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_waiting_when_the_broker_stops_are_not_lost() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut rabbit) = RabbitCluster::start(1, "").await else {
        return;
    };
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let amqp_url = rabbit.node(0).vhost("retries").await;
    let env = node_env(
        0,
        &[
            ("ORDERSAGA_AMQP_URL", amqp_url.as_str()),
            ("FAILPOINTS", "consume-fails=return(@2)"),
            ("ORDERSAGA_RETRY__INITIAL_DELAY_MS", "300"),
            // Every event takes a retry, so the node falls behind its clients: a bounded backlog
            // (clients are told 503 and retry) bounds what is left to drain, whatever else the
            // machine is running; above what piles up while the broker is down.
            ("ORDERSAGA_ADMISSION__MAX_BACKLOG", "600"),
        ],
    );
    let nodes = Nodes::start(&db.url, vec![env]).await;
    let (stocks, buyer) = prepare(&nodes.base(0), 1_000).await;
    let load = Load::start(
        nodes.bases(),
        buyer,
        "campaign-buyer",
        4,
        Duration::from_millis(50),
        "retry",
    );
    let mut summary = Summary::new("retries waiting when the broker stops");
    for round in 0..3 {
        load.progress(20, PROGRESS_WITHIN, &format!("before stop {round}"))
            .await;
        rabbit.node(0).stop_app().await;
        summary.fault("broker stop/start");
        load.progress(5, PROGRESS_WITHIN, "while the broker is down")
            .await;
        rabbit.node(0).start_app().await;
    }
    load.progress(20, PROGRESS_WITHIN, "after the last stop").await;
    let report = load.finish().await;
    let (drain, violations) =
        checks::settle(&db.url, &report, &stocks, &[], Some(&amqp_url), DRAIN_STALL).await;
    summary.add_run(&db.url, &report, drain, violations).await;
    drop(nodes);
    summary.finish();
}

/// The broker loses an order's event (its queues are purged while the event waits for a retry): the
/// saga, which waits on the inventory, has its events published again and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_broker_lost_is_published_again() {
    let Some(mut rabbit) = RabbitCluster::start(1, "").await else {
        return;
    };
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let vhost = "lost";
    let amqp_url = rabbit.node(0).vhost(vhost).await;
    let common = [
        ("ORDERSAGA_AMQP_URL", amqp_url.as_str()),
        ("ORDERSAGA_SAGA__REDELIVER_AFTER_SECONDS", "2"),
    ];
    // Every delivery fails for now and waits 5 s for its retry.
    let mut failing = node_env(0, &common);
    failing.retain(|(k, _)| k != "FAILPOINTS");
    failing.extend([
        ("FAILPOINTS".to_owned(), "consume-fails=return(@99)".to_owned()),
        ("ORDERSAGA_RETRY__INITIAL_DELAY_MS".to_owned(), "5000".to_owned()),
        ("ORDERSAGA_RETRY__MAX_ATTEMPTS".to_owned(), "50".to_owned()),
    ]);
    let mut nodes = Nodes::start(&db.url, vec![failing]).await;
    let (_, buyer) = prepare(&nodes.base(0), 10).await;
    let client = test_client();
    let placed: Value = client
        .post(format!("{}/api/orders", nodes.base(0)))
        .bearer_auth(&buyer)
        .header("Idempotency-Key", "lost-1")
        .json(&json!({"userId": "campaign-buyer", "items": [crate::helpers::line(SKUS[0], 1, "2.50")]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = placed["orderId"].as_str().unwrap().to_owned();
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    crate::helpers::eventually(
        Duration::from_secs(30),
        "order.created to reach the broker",
        || async {
            let row = entities::outbox_events::Entity::find()
                .filter(entities::outbox_events::Column::AggregateId.eq(id.as_str()))
                .one(&conn)
                .await
                .ok()??;
            row.published_at.map(|_| ())
        },
    )
    .await;
    nodes.kill(0);
    // The broker loses everything it held.
    let queues = rabbit
        .node(0)
        .ctl(&[
            "list_queues",
            "-p",
            vhost,
            "name",
            "--no-table-headers",
            "--quiet",
        ])
        .await;
    for queue in queues.lines().map(str::trim).filter(|q| !q.is_empty()) {
        rabbit.node(0).ctl(&["purge_queue", "-p", vhost, queue]).await;
    }
    // The node comes back, its consumers well.
    nodes.envs[0].retain(|(k, _)| k != "FAILPOINTS");
    nodes.restart(0).await;
    let ended = crate::helpers::eventually(Duration::from_secs(60), "the order to end", || async {
        let order = entities::orders::Entity::find_by_id(id.clone())
            .one(&conn)
            .await
            .ok()??;
        (order.status != "PENDING").then_some(order.status)
    })
    .await;
    assert!(ended == "CONFIRMED" || ended == "FAILED", "{ended}");
}

/// A poison message delivered twice — as the broker redelivers it to a node that stored it and died
/// before acknowledging it — is one dead letter.
#[actix_web::test]
async fn a_poison_message_delivered_twice_is_one_dead_letter() {
    let _shared = crate::helpers::BROKER.read().await;
    let Some(broker) = crate::helpers::TestBroker::create().await else {
        return;
    };
    let url = broker.amqp_url.clone();
    let Some(app) = crate::helpers::spawn_app_with(Backend::Sqlite, move |s| s.amqp_url = Some(url)).await
    else {
        return;
    };
    app.ready().await;
    let queue = actors::topology::Q_INVENTORY_RELEASE_REQUESTED;
    for _ in 0..2 {
        let headers = json!({"x-signature": actors::envelope::sign(TEST_SECRET.as_bytes(), b"{poison")});
        let body = json!({
            "properties": {"headers": headers, "delivery_mode": 2, "message_id": "poison-twice"},
            "routing_key": queue, "payload": "{poison", "payload_encoding": "string",
        });
        broker
            .api_send(
                reqwest::Method::POST,
                &format!("exchanges/{}/amq.default/publish", broker.vhost),
                &body,
            )
            .await;
    }
    crate::helpers::eventually(Duration::from_secs(30), "both deliveries consumed", || async {
        let stats = broker.api_get(&format!("queues/{}/{queue}", broker.vhost)).await;
        (stats["messages"] == 0 && stats["message_stats"]["ack"].as_u64().unwrap_or(0) >= 2).then_some(())
    })
    .await;
    let stored = entities::dead_letters::Entity::find()
        .filter(entities::dead_letters::Column::MessageId.eq("poison-twice"))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored, 1, "one dead letter for the message");
}
