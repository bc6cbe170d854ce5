//! The database away: a node that starts without it, and requests that meet a stalled one.

use std::time::{Duration, Instant};

use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, Database, EntityTrait, PaginatorTrait, QueryFilter,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::spawn_server;
use crate::helpers::{Backend, TestDb, assert_problem, eventually, line, spawn_app_with};
use crate::on_every_backend;
use entities::orders;

/// What the proxy does with the connections to the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Connections are closed at once, and open ones are cut: the database is down.
    Down,
    /// Bytes flow both ways.
    Up,
    /// Connections stay open and nothing flows until the mode changes: the database hangs.
    Stalled,
    /// The server forgets every connection without a word, as a machine that restarted does: they are
    /// reset, and new ones refused. Behind a network cut the reset is lost, and the client's connections
    /// stay open on its side only (half-open).
    Gone,
}

/// A TCP proxy in front of a server (the database, the broker), to take it away and bring it back for
/// one test.
pub struct DbProxy {
    ip: std::net::IpAddr,
    port: u16,
    mode: watch::Sender<Mode>,
    /// Connections being relayed.
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// `host:port` of a database URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_owned()
}

impl DbProxy {
    /// A proxy on loopback for the server of `url`, starting in `mode`.
    pub async fn start(url: &str, mode: Mode) -> DbProxy {
        DbProxy::start_on(std::net::Ipv4Addr::LOCALHOST.into(), url, mode).await
    }

    /// A proxy listening on `ip` (e.g. the machine's end of a network namespace's veth pair) for the
    /// server of `url`, starting in `mode`.
    pub async fn start_on(ip: std::net::IpAddr, url: &str, mode: Mode) -> DbProxy {
        let target = host_port(url);
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = watch::channel(mode);
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = open.clone();
        actix_web::rt::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                match *rx.borrow() {
                    Mode::Down => {
                        drop(client);
                        continue;
                    }
                    Mode::Gone => {
                        let _ = client.set_zero_linger();
                        continue;
                    }
                    Mode::Up | Mode::Stalled => {}
                }
                let open = counted.clone();
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let relayed = relay(client, target.clone(), rx.clone());
                actix_web::rt::spawn(async move {
                    relayed.await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        DbProxy {
            ip,
            port,
            mode: tx,
            open,
        }
    }

    /// `url` with the proxy in place of the server.
    pub fn url(&self, url: &str) -> String {
        url.replacen(&host_port(url), &format!("{}:{}", self.ip, self.port), 1)
    }

    /// How many connections the proxy relays now.
    pub fn connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn relay(client: tokio::net::TcpStream, target: String, rx: watch::Receiver<Mode>) {
    let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = actix_web::rt::spawn(pump(client_read, server_write, rx.clone()));
    pump(server_read, client_write, rx).await;
    up.abort();
}

/// Copies one direction, holding the bytes while stalled and stopping when the database goes down.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            mode = rx.wait_for(|m| matches!(m, Mode::Down | Mode::Gone)) => {
                if mode.is_ok_and(|m| *m == Mode::Gone) {
                    // Closed with a reset, not a FIN that the kernel would send again and again.
                    let _ = from.as_ref().set_zero_linger();
                    let _ = to.as_ref().set_zero_linger();
                }
                return;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match rx.wait_for(|m| *m != Mode::Stalled).await {
            Ok(mode) if *mode == Mode::Up => {}
            Ok(mode) if *mode == Mode::Gone => {
                let _ = from.as_ref().set_zero_linger();
                let _ = to.as_ref().set_zero_linger();
                return;
            }
            _ => return,
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// How often the log says the database could not be reached.
fn failed_attempts(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("the database is not reachable yet")
        .count()
}

on_every_backend! {
    async fn a_node_started_while_its_database_is_down_answers_503_and_starts_when_it_comes(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: a local file is never away");
            return;
        }
        let Some(db) = TestDb::create(backend).await else { return };
        let proxy = DbProxy::start(&db.url, Mode::Down).await;
        let url = proxy.url(&db.url);
        // A short pool timeout: the node used to exit when its first connection timed out.
        let mut server = spawn_server(&db, &[
            ("ORDERSAGA_DATABASE_URL", url.as_str()),
            ("ORDERSAGA_DATABASE__CONNECT_TIMEOUT_SECONDS", "1"),
        ]);
        let client = crate::helpers::test_client();
        let base = server.address.clone();
        eventually(Duration::from_secs(30), "the node to listen", || async {
            let r = client.get(format!("{base}/health/live")).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        let ready = client.get(format!("{base}/health/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        assert!(ready.headers().contains_key("retry-after"));
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "starting", "{body}");
        assert_eq!(body["checks"]["database"], "down", "{body}");
        let refused = client.post(format!("{base}/api/auth/token")).json(&json!({"userId": "u-1"})).send().await.unwrap();
        assert!(refused.headers().contains_key("retry-after"));
        let problem = assert_problem(refused, 503).await;
        assert!(problem["detail"].as_str().unwrap().contains("starting"), "{problem}");
        let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(metrics.status(), 200, "metrics answer while starting");
        // The actuator aliases pass the starting gate too, and say the same in Spring's words.
        let liveness = client.get(format!("{base}/actuator/health/liveness")).send().await.unwrap();
        assert_eq!(liveness.status(), 200, "liveness answers while starting");
        for path in ["/actuator/health", "/actuator/health/readiness"] {
            let ready = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(ready.status(), 503, "{path}");
            assert!(ready.headers().contains_key("retry-after"), "{path}");
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["status"], "OUT_OF_SERVICE", "{path}: {body}");
        }
        let prometheus = client.get(format!("{base}/actuator/prometheus")).send().await.unwrap();
        assert_eq!(prometheus.status(), 200, "actuator/prometheus answers while starting");

        // It keeps trying, with back-off, instead of exiting.
        let log = server.log.clone();
        eventually(Duration::from_secs(30), "three failed attempts at the database", || async {
            (failed_attempts(&log) >= 3).then_some(())
        })
        .await;
        assert!(server.running(), "the node is still up; log in {}", log.display());

        // The database comes: the node migrates, starts its engine and serves.
        proxy.set(Mode::Up);
        server.ready().await;
        let admin: Value = client.post(format!("{base}/api/auth/token"))
            .json(&json!({"userId": "admin-1", "roles": ["admin"]})).send().await.unwrap().json().await.unwrap();
        let admin = admin["accessToken"].as_str().unwrap();
        let stocked = client.post(format!("{base}/api/stocks")).bearer_auth(admin)
            .json(&json!({"skuId": "LATE-1", "availableQty": 3})).send().await.unwrap();
        assert_eq!(stocked.status(), 200);
        let buyer: Value = client.post(format!("{base}/api/auth/token"))
            .json(&json!({"userId": "u-1", "roles": ["buyer"]})).send().await.unwrap().json().await.unwrap();
        let placed = client.post(format!("{base}/api/orders")).bearer_auth(buyer["accessToken"].as_str().unwrap())
            .header("Idempotency-Key", "after-the-outage")
            .json(&json!({"userId": "u-1", "items": [line("LATE-1", 1, "2.00")]})).send().await.unwrap();
        assert_eq!(placed.status(), 201);
        let id = placed.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
        eventually(Duration::from_secs(30), "the order to be confirmed", || async {
            let order: Value = client.get(format!("{base}/api/orders/{id}")).bearer_auth(admin).send().await.ok()?.json().await.ok()?;
            (order["status"] == "CONFIRMED").then_some(())
        })
        .await;
    }

    async fn an_order_past_its_request_deadline_answers_503_and_is_not_placed(backend) {
        // Without the server's URL, `spawn_app_with` below skips (or fails where services are required).
        let proxy = match backend.admin_url() {
            Some(url) => Some(DbProxy::start(&url, Mode::Up).await),
            None => None,
        };
        let Some(app) = spawn_app_with(backend, |s| {
            s.request_timeout_seconds = 2;
            if let Some(proxy) = &proxy {
                s.database_url = proxy.url(&s.database_url);
            }
        })
        .await else { return };
        app.set_stock("SLOW-1", 5).await;
        let token = app.buyer_token("u-1").await;

        // The database hangs: a SQLite file is held by another writer, a server stops answering.
        let holder = match &proxy {
            Some(proxy) => {
                proxy.set(Mode::Stalled);
                None
            }
            None => {
                let mut options = ConnectOptions::new(app.db.url.clone());
                options.max_connections(1).min_connections(1);
                let holder = Database::connect(options).await.unwrap();
                holder.execute_unprepared("BEGIN IMMEDIATE").await.unwrap();
                Some(holder)
            }
        };
        let abandoned_before = abandoned(&app).await;
        let impatient = reqwest::Client::builder().timeout(Duration::from_secs(8)).build().unwrap();
        let sent = Instant::now();
        let response = impatient.post(app.url("/api/orders")).bearer_auth(&token)
            .header("Idempotency-Key", "in-the-stall")
            .json(&json!({"userId": "u-1", "items": [line("SLOW-1", 2, "1.50")]}))
            .send().await.expect("answered before the client gave up");
        let waited = sent.elapsed();
        assert!(response.headers().contains_key("retry-after"));
        let problem = assert_problem(response, 503).await;
        assert_eq!(problem["type"], "/problems/deadline-passed", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("Idempotency-Key"), "{problem}");
        assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(5), "answered after {waited:?}");

        // The database comes back: the placement that was on its way rolls back instead of committing.
        match (&proxy, holder) {
            (Some(proxy), _) => proxy.set(Mode::Up),
            (None, Some(holder)) => holder.execute_unprepared("COMMIT").await.map(|_| ()).unwrap(),
            (None, None) => unreachable!(),
        }
        eventually(Duration::from_secs(20), "the late placement to be abandoned", || async {
            (abandoned(&app).await > abandoned_before).then_some(())
        })
        .await;
        let placed = orders::Entity::find()
            .filter(orders::Column::IdempotencyKey.eq("in-the-stall"))
            .count(&app.state.db).await.unwrap();
        assert_eq!(placed, 0, "nothing was placed for the request that answered 503");

        // The client retries with the same key, as told: one order.
        let retried = app.place_order(&token, "u-1", "in-the-stall", vec![line("SLOW-1", 2, "1.50")]).await;
        assert_eq!(retried.status(), 201, "placed by the retry");
        let again = app.place_order(&token, "u-1", "in-the-stall", vec![line("SLOW-1", 2, "1.50")]).await;
        assert_eq!(again.status(), 200);
        let id = again.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned();
        assert_eq!(app.ended(&id).await["status"], "CONFIRMED");
        assert_eq!(app.stock("SLOW-1").await, (3, 2), "reserved once");
    }
}

/// `orders_abandoned_total` of the process's metrics.
async fn abandoned(app: &crate::helpers::TestApp) -> u64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("orders_abandoned_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

on_every_backend! {
    async fn a_database_away_for_longer_than_the_retries_dead_letters_nothing(backend) {
        if backend == Backend::Sqlite {
            eprintln!("skipped on Sqlite: a local file is never away");
            return;
        }
        let Some(db) = TestDb::create(backend).await else { return };
        let proxy = DbProxy::start(&db.url, Mode::Up).await;
        let url = proxy.url(&db.url);
        // Two attempts, 50–200 ms apart: an outage of a few seconds outlasts them many times over.
        let server = crate::config::start_server(&db, &[
            ("ORDERSAGA_DATABASE_URL", url.as_str()),
            ("ORDERSAGA_DATABASE__CONNECT_TIMEOUT_SECONDS", "1"),
            ("ORDERSAGA_RETRY__MAX_ATTEMPTS", "2"),
            ("ORDERSAGA_RETRY__INITIAL_DELAY_MS", "50"),
            ("ORDERSAGA_RETRY__MAX_DELAY_MS", "200"),
            ("ORDERSAGA_PAYMENT__LATENCY_MS", "1000"),
        ])
        .await;
        let client = crate::helpers::test_client();
        let base = server.address.clone();
        let admin = crate::helpers::mint_token(&client, &base, "admin-1", "admin").await;
        let buyer = crate::helpers::mint_token(&client, &base, "away-buyer", "buyer").await;
        let stocked = client.post(format!("{base}/api/stocks")).bearer_auth(&admin)
            .json(&json!({"skuId": "AWAY-1", "availableQty": 10})).send().await.unwrap();
        assert_eq!(stocked.status(), 200);
        let mut ids = Vec::new();
        for i in 0..4 {
            let placed = client.post(format!("{base}/api/orders")).bearer_auth(&buyer)
                .header("Idempotency-Key", format!("away-{i}"))
                .json(&json!({"userId": "away-buyer", "items": [line("AWAY-1", 1, "3.00")]})).send().await.unwrap();
            assert_eq!(placed.status(), 201);
            ids.push(placed.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned());
        }
        // The payments are at the gateway (1 s each) when the database goes away: recording them fails.
        for id in &ids {
            eventually(Duration::from_secs(30), &format!("order {id} to await its payment"), || async {
                let saga: Value = client.get(format!("{base}/api/orders/{id}/saga")).bearer_auth(&admin)
                    .send().await.ok()?.json().await.ok()?;
                (saga["state"] == "AWAITING_PAYMENT").then_some(())
            })
            .await;
        }
        proxy.set(Mode::Down);
        // Far more tries than two attempts per message allow: each one met a database that is away.
        eventually(Duration::from_secs(60), "the deliveries to be tried again and again", || async {
            let metrics = crate::helpers::metrics_of(&client, &base).await;
            (crate::helpers::counter(&metrics, "message_retries_total", &[]) >= 12.0).then_some(())
        })
        .await;
        proxy.set(Mode::Up);
        let conn = Database::connect(&db.url).await.unwrap();
        for id in &ids {
            eventually(Duration::from_secs(60), &format!("order {id} to be confirmed"), || async {
                let order = orders::Entity::find_by_id(id.clone()).one(&conn).await.ok()??;
                (order.status == "CONFIRMED").then_some(())
            })
            .await;
        }
        let dead = entities::dead_letters::Entity::find().count(&conn).await.unwrap();
        assert_eq!(dead, 0, "an unreachable database is waited for, not a reason to give up; log in {}", server.log.display());
        crate::crash::assert_ended_once(&db.url, &ids, &["AWAY-1"], 10).await;
    }
}
