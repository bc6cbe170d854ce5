//! The binary: bad configuration stops it with one line, and data survives a restart.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TEST_SECRET, TestDb};
use crate::on_every_backend;

const BIN: &str = env!("CARGO_BIN_EXE_ordersaga");

/// A command for the binary in a fresh directory, with no ORDERSAGA_ settings inherited.
pub fn ordersaga(dir: &std::path::Path) -> Command {
    without_settings(Command::new(BIN), dir)
}

/// `cmd` (which runs the binary) in `dir`, with no ORDERSAGA_ settings inherited.
fn without_settings(mut cmd: Command, dir: &std::path::Path) -> Command {
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("ORDERSAGA_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A fresh directory under the system's temporary one.
pub fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ordersaga-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `serve` with `env` and expects it to stop at once with one line naming `setting`.
fn assert_refused(env: &[(&str, &str)], file: Option<&str>, setting: &str) {
    let dir = temp_dir();
    let mut cmd = ordersaga(&dir);
    cmd.arg("serve")
        .env("ORDERSAGA_BIND", "127.0.0.1:0")
        .envs(env.iter().copied());
    if let Some(contents) = file {
        std::fs::write(dir.join("ordersaga.toml"), contents).unwrap();
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("started with {env:?} {file:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "exit status of {env:?} {file:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(setting), "names {setting}: {stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_prints_the_effective_settings_with_secrets_redacted() {
    let dir = temp_dir();
    let secret = "a-token-secret-of-more-than-32-bytes-0123";
    let key = "a-signing-key-of-more-than-32-bytes-456789";
    std::fs::write(
        dir.join("ordersaga.toml"),
        "request_timeout_seconds = 7\n[admission]\nmax_backlog = 99\n",
    )
    .unwrap();
    let out = ordersaga(&dir)
        .arg("config")
        .env("ORDERSAGA_JWT_SECRET", secret)
        .env("ORDERSAGA_BROKER__SIGNING_KEY", key)
        .env(
            "ORDERSAGA_DATABASE_URL",
            "postgres://shop:hunter2@db.internal:5432/orders",
        )
        .env("ORDERSAGA_AMQP_URL", "amqp://guest:guest-pw@mq:5672/%2f")
        .env("ORDERSAGA_SHUTDOWN_TIMEOUT_SECONDS", "45")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for hidden in [secret, key, "hunter2", "guest-pw"] {
        assert!(!text.contains(hidden), "`{hidden}` is shown:\n{text}");
    }
    let shown: toml::Value = toml::from_str(&text).expect("the output is TOML");
    assert_eq!(shown["jwt_secret"].as_str(), Some("***"));
    assert_eq!(shown["broker"]["signing_key"].as_str(), Some("***"));
    assert_eq!(
        shown["database_url"].as_str(),
        Some("postgres://shop:***@db.internal:5432/orders")
    );
    assert_eq!(shown["amqp_url"].as_str(), Some("amqp://guest:***@mq:5672/%2f"));
    // Defaults, the file and the environment, the later winning.
    assert_eq!(shown["bind"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(shown["request_timeout_seconds"].as_integer(), Some(7));
    assert_eq!(shown["admission"]["max_backlog"].as_integer(), Some(99));
    assert_eq!(shown["shutdown_timeout_seconds"].as_integer(), Some(45));

    // A bad setting is refused as `serve` refuses it.
    let bad = ordersaga(&dir)
        .arg("config")
        .env("ORDERSAGA_SHUTDOWN_TIMEOUT_SECONDS", "0")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("shutdown_timeout_seconds"));
}

/// A build without the `otlp` feature refuses `otlp_endpoint` instead of ignoring it.
#[cfg(not(feature = "otlp"))]
#[test]
fn otlp_export_needs_a_build_with_the_feature() {
    assert_refused(
        &[("ORDERSAGA_OTLP_ENDPOINT", "http://127.0.0.1:4318/v1/traces")],
        None,
        "otlp_endpoint",
    );
}

#[test]
fn version_prints_the_package_version() {
    let out = ordersaga(&temp_dir()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("ordersaga {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_configuration_stops_the_start_with_one_line() {
    assert_refused(&[("ORDERSAGA_PAYMENT_MODE", "SOMETIMES")], None, "payment_mode");
    assert_refused(&[("ORDERSAGA_JWT_SECRET", "too-short")], None, "jwt_secret");
    assert_refused(&[("ORDERSAGA_DATABASE_URL", "oracle://db")], None, "database_url");
    assert_refused(&[("ORDERSAGA_AMQP_URL", "http://broker")], None, "amqp_url");
    assert_refused(
        &[("ORDERSAGA_SQLITE_SYNCHRONOUS", "SOMETIMES")],
        None,
        "sqlite_synchronous",
    );
    assert_refused(&[("ORDERSAGA_BIND", "nowhere")], None, "bind");
    assert_refused(&[], Some("paymnet_mode = \"FAIL\"\n"), "paymnet_mode");
    assert_refused(&[], Some("[auth]\nmock_isuer = false\n"), "mock_isuer");
    assert_refused(
        &[("ORDERSAGA_AUTH__SIGNING_KEY_FILE", "/nonexistent/signing.pem")],
        None,
        "signing_key_file",
    );
    assert_refused(
        &[("ORDERSAGA_AUTH__JWKS_URL", "ftp://idp/jwks")],
        None,
        "jwks_url",
    );
    assert_refused(
        &[("ORDERSAGA_RETRY__MAX_ATTEMPTS", "0")],
        None,
        "retry.max_attempts",
    );
    assert_refused(
        &[("ORDERSAGA_ARCHIVE__CHUNK_SIZE", "20000")],
        None,
        "archive.chunk_size",
    );
    assert_refused(
        &[("ORDERSAGA_BROKER__HEARTBEAT_SECONDS", "0")],
        None,
        "broker.heartbeat_seconds",
    );
    assert_refused(
        &[("ORDERSAGA_DATABASE__WORK_TIMEOUT_SECONDS", "0")],
        None,
        "database.work_timeout_seconds",
    );
}

/// A `serve` child process, killed when dropped.
pub struct Server {
    child: std::process::Child,
    pub address: String,
    /// Its log (standard error).
    pub log: std::path::PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as an orchestrator stopping the node does.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    /// The exit status once the process has exited by itself, or `None` if it still runs after `timeout`.
    pub async fn exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the process has exited by itself; `false` if it still runs after `timeout`.
    pub async fn exited(&mut self, timeout: Duration) -> bool {
        self.exit_status(timeout).await.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free local port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `ordersaga serve` on `db` and waits until it is ready.
pub async fn start_server(db: &TestDb, extra_env: &[(&str, &str)]) -> Server {
    let server = spawn_server(db, extra_env);
    server.ready().await;
    server
}

/// Starts `ordersaga serve` on `db` (its URL can be overridden in `extra_env`) without waiting.
pub fn spawn_server(db: &TestDb, extra_env: &[(&str, &str)]) -> Server {
    spawn_server_at(&db.url, free_port(), extra_env)
}

/// Starts `ordersaga serve` on the database `url`, listening on `port`, without waiting (a node
/// restarted on its port keeps its address).
pub fn spawn_server_at(url: &str, port: u16, extra_env: &[(&str, &str)]) -> Server {
    let dir = temp_dir();
    spawn_with(ordersaga(&dir), dir, "127.0.0.1", port, url, extra_env)
}

/// Starts `ordersaga serve` inside `netns` (`ip netns exec`), listening on the namespace's address,
/// without waiting. The database and broker URLs in `extra_env` must be reachable from inside.
pub fn spawn_server_in(netns: &crate::netns::Netns, db: &TestDb, extra_env: &[(&str, &str)]) -> Server {
    let dir = temp_dir();
    let cmd = without_settings(netns.command(BIN), &dir);
    // Every port of a fresh namespace is free.
    spawn_with(cmd, dir, &netns.ns_addr.to_string(), 8080, &db.url, extra_env)
}

fn spawn_with(
    mut cmd: Command,
    dir: std::path::PathBuf,
    host: &str,
    port: u16,
    url: &str,
    extra_env: &[(&str, &str)],
) -> Server {
    let log_path = dir.join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    cmd.arg("serve")
        .env("ORDERSAGA_BIND", format!("{host}:{port}"))
        .env("ORDERSAGA_DATABASE_URL", url)
        .env("ORDERSAGA_JWT_SECRET", TEST_SECRET)
        .env("ORDERSAGA_AUTH__MOCK_ISSUER", "true")
        .env("ORDERSAGA_REQUEST_TIMEOUT_SECONDS", "30")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let child = cmd.spawn().unwrap();
    Server {
        child,
        address: format!("http://{host}:{port}"),
        log: log_path,
    }
}

impl Server {
    /// Waits until `/health/ready` answers `200`.
    pub async fn ready(&self) {
        let client = crate::helpers::test_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/health/ready", self.address)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready; log in {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

on_every_backend! {
    async fn stock_survives_a_restart(backend) {
        let Some(db) = TestDb::create(backend).await else { return };
        let client = crate::helpers::test_client();
        let server = start_server(&db, &[]).await;
        let token: Value = client
            .post(format!("{}/api/auth/token", server.address))
            .json(&json!({"userId": "admin-1", "roles": ["admin"]}))
            .send().await.unwrap().json().await.unwrap();
        let token = token["accessToken"].as_str().unwrap().to_owned();
        let set = client
            .post(format!("{}/api/stocks", server.address))
            .bearer_auth(&token)
            .json(&json!({"skuId": "KEEP-1", "availableQty": 42}))
            .send().await.unwrap();
        assert_eq!(set.status(), 200);
        drop(server);

        let server = start_server(&db, &[]).await;
        let stock: Value = client
            .get(format!("{}/api/stocks/KEEP-1", server.address))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(stock["availableQty"], 42);
        // The token was signed with the shared secret, so it still verifies after the restart.
        let again = client
            .put(format!("{}/api/stocks/KEEP-1", server.address))
            .bearer_auth(&token)
            .json(&json!({"availableQty": 7}))
            .send().await.unwrap();
        assert_eq!(again.status(), 200);
    }
}

#[actix_web::test]
async fn every_start_with_the_mock_issuer_on_warns() {
    let Some(db) = TestDb::create(crate::helpers::Backend::Sqlite).await else {
        return;
    };
    let warning = "the mock token issuer is on";
    for _ in 0..2 {
        let server = start_server(&db, &[]).await;
        let log = std::fs::read_to_string(&server.log).unwrap();
        assert!(log.contains(warning), "{log}");
    }
    let server = start_server(&db, &[("ORDERSAGA_AUTH__MOCK_ISSUER", "false")]).await;
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains(warning), "{log}");
}

#[actix_web::test]
async fn tokens_in_the_query_string_are_not_logged() {
    let Some(db) = TestDb::create(crate::helpers::Backend::Sqlite).await else {
        return;
    };
    let secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJlLXZhbHVl";
    for format in ["text", "json"] {
        let server = start_server(&db, &[("RUST_LOG", "debug"), ("ORDERSAGA_LOG_FORMAT", format)]).await;
        let client = crate::helpers::test_client();
        for path in [
            format!("/api/sagas?access_token={secret}&page=0"),
            format!("/api/orders/not-an-id?token={secret}"),
            format!("/no/such/route?Access%5FToken={secret}"),
        ] {
            // A bad bearer token too, so that the request logs something inside its span.
            let response = client
                .get(format!("{}{path}", server.address))
                .bearer_auth("not-a-token")
                .send()
                .await
                .unwrap();
            assert!(response.status().is_client_error(), "{path}");
        }
        let log_path = server.log.clone();
        drop(server);
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.contains("rejected token"),
            "the requests logged inside their spans ({format}): {log}"
        );
        assert!(
            log.contains("[REDACTED]"),
            "the target is logged, redacted ({format}): {log}"
        );
        assert!(!log.contains(secret), "a token reached the log ({format}): {log}");
        assert!(
            !log.contains("c2VjcmV0LXBheWxvYWQ"),
            "part of a token reached the log ({format})"
        );
    }
}

/// The cores each thread of process `pid` may run on, by thread name ("0", "0-1", …).
#[cfg(target_os = "linux")]
fn cores_by_thread(pid: u32) -> Vec<(String, String)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm"))
            .unwrap()
            .trim()
            .to_owned();
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let cores = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        threads.push((name, cores));
    }
    threads
}

#[cfg(target_os = "linux")]
#[actix_web::test]
async fn on_sqlite_the_engine_and_its_connection_share_one_core_and_http_workers_use_all() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    if !all.contains(['-', ',']) {
        println!("skipped: the tests may run on one core only ({all})");
        return;
    }
    let Some(db) = TestDb::create(crate::helpers::Backend::Sqlite).await else {
        return;
    };

    let server = start_server(&db, &[]).await;
    let threads = cores_by_thread(server.pid());
    let cores_of = |prefix: &str| -> Vec<&str> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, cores)| cores.as_str())
            .collect()
    };
    let engine = cores_of("ordersaga");
    let connection = cores_of("sqlx-sqlite");
    let http = cores_of("actix-rt|system");
    assert_eq!(engine.len(), 1, "{threads:?}");
    assert!(!connection.is_empty() && !http.is_empty(), "{threads:?}");
    assert!(
        !engine[0].contains(['-', ',']),
        "the engine thread is on one core: {threads:?}"
    );
    assert!(connection.iter().all(|c| *c == engine[0]), "{threads:?}");
    assert!(
        http.iter().all(|c| *c == all),
        "HTTP workers use every core: {threads:?}"
    );
    drop(server);

    let server = start_server(&db, &[("ORDERSAGA_SQLITE_PIN_THREADS", "false")]).await;
    let threads = cores_by_thread(server.pid());
    assert!(
        threads.iter().all(|(_, cores)| *cores == all),
        "nothing pinned: {threads:?}"
    );
}
