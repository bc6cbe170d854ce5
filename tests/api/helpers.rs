//! Spawning the application for a test: its own database, port 0, a client.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use ordersaga::config::{Secret, Settings};
use ordersaga::startup::Application;
use ordersaga::state::AppState;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};

/// The token key of every test app, so tests can forge tokens against it.
pub const TEST_SECRET: &str = "ordersaga-test-secret-0123456789abcdef";

/// The databases a test can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// The admin URL of the server of this backend, if the tests have one.
    pub fn admin_url(self) -> Option<String> {
        std::env::var(self.admin_env()?).ok().filter(|u| !u.is_empty())
    }

    fn admin_env(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("ORDERSAGA_TEST_POSTGRES"),
            Backend::MySql => Some("ORDERSAGA_TEST_MYSQL"),
        }
    }
}

/// Whether a missing service fails the test (CI) rather than skipping it.
pub fn services_required() -> bool {
    std::env::var("ORDERSAGA_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A database of its own for one test, dropped (or deleted) when this value is dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    admin_url: Option<String>,
    name: String,
    file: Option<PathBuf>,
}

fn replace_database(url: &str, name: &str) -> String {
    // scheme://user@host:port/db?params → scheme://user@host:port/name?params
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

impl TestDb {
    /// Creates the database, or returns `None` (after saying why) when the backend is not configured
    /// and not required.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        let name = format!("ordersaga_test_{}", uuid::Uuid::new_v4().simple());
        let Some(env) = backend.admin_env() else {
            let file = std::env::temp_dir().join(format!("{name}.db"));
            let url = format!("sqlite://{}?mode=rwc", file.display());
            return Some(TestDb {
                backend,
                url,
                admin_url: None,
                name,
                file: Some(file),
            });
        };
        let admin_url = match std::env::var(env) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    !services_required(),
                    "{env} is not set but ORDERSAGA_REQUIRE_SERVICES=1"
                );
                eprintln!("skipped on {backend:?}: {env} is not set");
                return None;
            }
        };
        let admin = Database::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {env} ({admin_url}): {e}"));
        let create = match backend {
            Backend::Postgres => format!("CREATE DATABASE \"{name}\""),
            _ => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        };
        admin
            .execute_unprepared(&create)
            .await
            .unwrap_or_else(|e| panic!("{create}: {e}"));
        let _ = admin.close().await;
        let url = replace_database(&admin_url, &name);
        Some(TestDb {
            backend,
            url,
            admin_url: Some(admin_url),
            name,
            file: None,
        })
    }
}

thread_local! {
    /// Databases and vhosts whose test has finished, removed once the test's actix system is gone (or,
    /// for a test outside the macro, when its thread ends).
    static FINISHED: std::cell::RefCell<Vec<Leftover>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Removes what the test that ran on this thread left. The test macro calls it after the test's system
/// has stopped, so the app's connections are gone and nothing holds a lock.
pub fn drop_finished_databases() {
    let finished = FINISHED.with(|f| std::mem::take(&mut *f.borrow_mut()));
    drop(finished);
}

/// A test database or vhost to remove; removed when dropped.
enum Leftover {
    Database {
        backend: Backend,
        admin_url: Option<String>,
        name: String,
        file: Option<PathBuf>,
    },
    Vhost {
        api: String,
        vhost: String,
    },
}

fn leave(leftover: Leftover) {
    // During thread teardown the list may be gone: then remove it right away.
    if let Err(std::thread::AccessError { .. }) = FINISHED.try_with(|f| f.borrow_mut().push(leftover)) {}
}

impl Drop for Leftover {
    fn drop(&mut self) {
        match self {
            Leftover::Database {
                backend,
                admin_url,
                name,
                file,
            } => destroy_database(*backend, admin_url.take(), name, file.take()),
            Leftover::Vhost { api, vhost } => delete_vhost(api, vhost),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Inside a running test the app may still use the database: hand it to the thread's list.
        leave(Leftover::Database {
            backend: self.backend,
            admin_url: self.admin_url.take(),
            name: std::mem::take(&mut self.name),
            file: self.file.take(),
        });
    }
}

fn destroy_database(backend: Backend, admin_url: Option<String>, name: &str, file: Option<PathBuf>) {
    if let Some(file) = &file {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
        return;
    }
    let Some(admin_url) = admin_url else { return };
    let name = name.to_owned();
    let shown = name.clone();
    {
        // Dropping needs async I/O and Drop is not async: do it on a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let admin = Database::connect(&admin_url).await.ok()?;
                let sql = match backend {
                    Backend::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    _ => {
                        // The app may still hold a transaction there (its thread is the one waiting here):
                        // end its sessions so the drop does not wait for their locks.
                        // (The name is ours, `[a-z0-9_]` only, so it can be written into the query.)
                        let sessions = admin
                            .query_all_raw(Statement::from_string(
                                DbBackend::MySql,
                                format!("SELECT id FROM information_schema.processlist WHERE db = '{name}'"),
                            ))
                            .await
                            .unwrap_or_default();
                        for session in sessions {
                            if let Ok(id) = session.try_get_by_index::<u64>(0) {
                                let _ = admin.execute_unprepared(&format!("KILL {id}")).await;
                            }
                        }
                        format!("DROP DATABASE IF EXISTS `{name}`")
                    }
                };
                let result = admin.execute_unprepared(&sql).await;
                let _ = admin.close().await;
                result.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: test database {shown} was not dropped");
        }
    }
}

fn init_test_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = ordersaga::observability::init_tracing(&Settings::default());
        }
    });
}

/// Settings of a test app on `db`: port 0, the test secret, fast timings.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings {
        bind: "127.0.0.1:0".to_owned(),
        database_url: db.url.clone(),
        jwt_secret: Some(Secret::new(TEST_SECRET)),
        http_workers: Some(2),
        // Many nodes share the test process; pinning is tested on a child process (config.rs).
        sqlite_pin_threads: false,
        ..Settings::default()
    };
    if db.backend != Backend::Sqlite {
        settings.database.max_connections = Some(5);
    }
    // A loaded test machine is slower than a user's clients are patient: only the tests of the deadline
    // rely on it.
    settings.request_timeout_seconds = 30;
    // Tests mint their tokens with the mock issuer on every backend.
    settings.auth.mock_issuer = Some(true);
    settings.retry.initial_delay_ms = 20;
    settings.retry.max_delay_ms = 200;
    settings.outbox.poll_interval_ms = 100;
    settings
}

/// An HTTP client for tests. Idle connections are dropped before the server's keep-alive (5 s) would
/// close them, so a request never goes out on a connection the server is closing.
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<AppState>,
    /// Held so that the database is dropped with the app.
    #[allow(dead_code)]
    pub db: TestDb,
}

/// Spawns the app on `backend` with the test settings.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Spawns the app on `backend` with the test settings changed by `configure`.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    init_test_logging();
    let db = TestDb::create(backend).await?;
    let mut settings = test_settings(&db);
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    // On a server database the engine starts once the database answered.
    eventually(SAGA_WAIT, "the engine to start", || async {
        state.started().then_some(())
    })
    .await;
    Some(TestApp {
        address,
        client: test_client(),
        state,
        db,
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A token from the mock issuer.
    pub async fn token(&self, user_id: &str, roles: &[&str]) -> String {
        let response = self
            .client
            .post(self.url("/api/auth/token"))
            .json(&json!({"userId": user_id, "roles": roles}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the mock issuer answers");
        let body: Value = response.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token("admin-1", &["admin"]).await
    }

    pub async fn buyer_token(&self, user_id: &str) -> String {
        self.token(user_id, &["buyer"]).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.client.put(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Sets a SKU's stock as admin and checks it was accepted.
    pub async fn set_stock(&self, sku_id: &str, qty: i64) {
        let token = self.admin_token().await;
        let response = self
            .post(
                "/api/stocks",
                Some(&token),
                &json!({"skuId": sku_id, "availableQty": qty}),
            )
            .await;
        assert_eq!(response.status(), 200, "stock {sku_id} set");
    }
}

/// The response's `Content-Type`, or empty.
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts a response is a problem document with `status`, and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = content_type(&response);
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Declares tests that run once per backend: `mod name { fn sqlite, fn postgres, fn mysql }`.
/// The body receives the backend and spawns what it needs.
#[macro_export]
macro_rules! on_every_backend {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($backend: $crate::helpers::Backend) $body
            fn on(backend: $crate::helpers::Backend) {
                let outcome = std::panic::catch_unwind(|| ordersaga::runtime::block_on(run(backend)));
                $crate::helpers::drop_finished_databases();
                match outcome {
                    Ok(result) => result.unwrap(),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            #[test]
            fn sqlite() { on($crate::helpers::Backend::Sqlite) }
            #[test]
            fn postgres() { on($crate::helpers::Backend::Postgres) }
            #[test]
            fn mysql() { on($crate::helpers::Backend::MySql) }
        }
    )*};
}

/// How long a test waits for sagas to end before it fails.
pub const SAGA_WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it returns `Some`, or fails after `timeout` saying `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One order line for a request body.
pub fn line(sku_id: &str, quantity: i64, price: &str) -> Value {
    json!({"skuId": sku_id, "quantity": quantity, "price": serde_json::Number::from_string_unchecked(price.to_owned())})
}

impl TestApp {
    /// `POST /api/orders` as `user` with `key`.
    pub async fn place_order(
        &self,
        token: &str,
        user: &str,
        key: &str,
        items: Vec<Value>,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/api/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"userId": user, "items": items}))
            .send()
            .await
            .unwrap()
    }

    /// Places an order that must be accepted (`201`) and returns its body.
    pub async fn order(&self, user: &str, items: Vec<Value>) -> Value {
        let token = self.buyer_token(user).await;
        let response = self
            .place_order(&token, user, &uuid::Uuid::new_v4().to_string(), items)
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 201, "order accepted: {body}");
        body
    }

    /// Waits until the order's saga has ended and returns the order.
    pub async fn ended(&self, order_id: &str) -> Value {
        let token = self.admin_token().await;
        let path = format!("/api/orders/{order_id}");
        eventually(SAGA_WAIT, &format!("order {order_id} to end"), || async {
            let order: Value = self.get(&path, Some(&token)).await.json().await.ok()?;
            (order["status"] != "PENDING").then_some(order)
        })
        .await
    }

    /// The `order.created` event of an order, as the outbox holds it.
    pub async fn order_created(&self, order_id: &str) -> entities::outbox_events::Model {
        use entities::outbox_events::{Column, Entity};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        Entity::find()
            .filter(Column::AggregateId.eq(order_id))
            .filter(Column::RoutingKey.eq("order.created"))
            .one(&self.state.db)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no order.created event for order {order_id}"))
    }

    /// The saga of an order, as admin.
    pub async fn saga(&self, order_id: &str) -> Value {
        let token = self.admin_token().await;
        self.get(&format!("/api/orders/{order_id}/saga"), Some(&token))
            .await
            .json()
            .await
            .unwrap()
    }

    /// `(availableQty, reservedQty)` of a SKU.
    pub async fn stock(&self, sku_id: &str) -> (i64, i64) {
        let stock: Value = self
            .get(&format!("/api/stocks/{sku_id}"), None)
            .await
            .json()
            .await
            .unwrap();
        (
            stock["availableQty"].as_i64().unwrap(),
            stock["reservedQty"].as_i64().unwrap(),
        )
    }
}

/// An outbox row delivered to a queue as a first attempt, as the in-process bus delivers it.
pub fn first_delivery(row: &entities::outbox_events::Model) -> actors::mailbox::Delivery {
    actors::mailbox::Delivery {
        body: std::sync::Arc::from(row.payload.clone().into_bytes()),
        routing_key: row.routing_key.clone(),
        attempt: 1,
        message_id: Some(row.event_id.clone()),
        rejected: None,
    }
}

/// The consumer of `q.notification.order-created`, on the current thread, as the engine wires it.
pub fn notification_consumer() -> actors::mailbox::Consumer {
    use actix::Actor;
    let notifications = actors::consumers::notification::NotificationActor.start();
    actors::consumers::notification::consumer(&notifications, &actix::Arbiter::current())
}

/// A RabbitMQ vhost of its own for one test, deleted afterwards. Needs `ORDERSAGA_TEST_AMQP` (an AMQP
/// URL of the broker) and its management API (`ORDERSAGA_TEST_RABBITMQ_API`, default
/// `http://guest:guest@<host>:15672`).
pub struct TestBroker {
    pub vhost: String,
    /// The AMQP URL of the vhost.
    pub amqp_url: String,
    /// The management API, e.g. `http://guest:guest@127.0.0.1:15672`.
    pub api: String,
    pub client: reqwest::Client,
}

/// Splits `scheme://user:pass@host:port/…` into (user, pass, host).
fn credentials_and_host(url: &str) -> Option<(String, String, String)> {
    let rest = url.split_once("://")?.1;
    let (userinfo, hostpart) = rest.split_once('@')?;
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let host = hostpart.split(['/', ':', '?']).next()?.to_owned();
    Some((user.to_owned(), pass.to_owned(), host))
}

impl TestBroker {
    pub async fn create() -> Option<TestBroker> {
        let amqp = match std::env::var("ORDERSAGA_TEST_AMQP") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    !services_required(),
                    "ORDERSAGA_TEST_AMQP is not set but ORDERSAGA_REQUIRE_SERVICES=1"
                );
                eprintln!("skipped: ORDERSAGA_TEST_AMQP is not set");
                return None;
            }
        };
        let (user, pass, host) =
            credentials_and_host(&amqp).expect("ORDERSAGA_TEST_AMQP is amqp://user:pass@host:port/vhost");
        let api = std::env::var("ORDERSAGA_TEST_RABBITMQ_API")
            .unwrap_or_else(|_| format!("http://{user}:{pass}@{host}:15672"));
        let vhost = format!("ordersaga_test_{}", uuid::Uuid::new_v4().simple());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let created = client.put(format!("{api}/api/vhosts/{vhost}")).send().await.unwrap_or_else(|e| {
            panic!("the RabbitMQ management API at {api} does not answer ({e}); enable it with `rabbitmq-plugins enable rabbitmq_management`")
        });
        assert!(
            created.status().is_success(),
            "creating vhost {vhost}: {}",
            created.status()
        );
        let permitted = client
            .put(format!("{api}/api/permissions/{vhost}/{user}"))
            .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .unwrap();
        assert!(
            permitted.status().is_success(),
            "permissions on {vhost}: {}",
            permitted.status()
        );
        let amqp_url = format!("amqp://{user}:{pass}@{host}:5672/{vhost}");
        Some(TestBroker {
            vhost,
            amqp_url,
            api,
            client,
        })
    }

    /// `GET` on the management API under `/api/`, as JSON.
    pub async fn api_get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/api/{path}", self.api))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// `POST`/`PUT` on the management API.
    pub async fn api_send(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}/api/{path}", self.api))
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.unwrap_or(Value::Null)
    }

    /// A queue bound to the exchange with `#`: it sees every event.
    pub async fn tap(&self, name: &str) {
        self.api_send(
            reqwest::Method::PUT,
            &format!("queues/{}/{name}", self.vhost),
            &json!({"durable": false}),
        )
        .await;
        self.api_send(
            reqwest::Method::POST,
            &format!("bindings/{}/e/ecom.events/q/{name}", self.vhost),
            &json!({"routing_key": "#"}),
        )
        .await;
    }

    /// Takes up to `count` messages from a queue (they are removed).
    pub async fn take(&self, queue: &str, count: usize) -> Vec<Value> {
        let body = json!({"count": count, "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 1_000_000});
        match self
            .api_send(
                reqwest::Method::POST,
                &format!("queues/{}/{queue}/get", self.vhost),
                &body,
            )
            .await
        {
            Value::Array(messages) => messages,
            other => panic!("unexpected answer {other}"),
        }
    }

    /// Publishes a raw message to the exchange, as an outside client would.
    pub async fn publish(&self, routing_key: &str, payload: &str, headers: Value) -> bool {
        self.publish_via("ecom.events", routing_key, payload, headers)
            .await
    }

    /// Publishes a raw message straight to one queue (through the default exchange).
    pub async fn publish_to_queue(&self, queue: &str, payload: &str, headers: Value) -> bool {
        self.publish_via("amq.default", queue, payload, headers).await
    }

    /// Publishes through the management API; whether the exchange routed it anywhere.
    async fn publish_via(&self, exchange: &str, routing_key: &str, payload: &str, headers: Value) -> bool {
        let body = json!({
            "properties": {"headers": headers, "delivery_mode": 2},
            "routing_key": routing_key,
            "payload": payload,
            "payload_encoding": "string",
        });
        let answer = self
            .api_send(
                reqwest::Method::POST,
                &format!("exchanges/{}/{exchange}/publish", self.vhost),
                &body,
            )
            .await;
        answer["routed"] == true
    }

    /// How many messages a queue holds.
    pub async fn depth(&self, queue: &str) -> u64 {
        self.api_get(&format!("queues/{}/{queue}", self.vhost)).await["messages"]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        leave(Leftover::Vhost {
            api: self.api.clone(),
            vhost: std::mem::take(&mut self.vhost),
        });
    }
}

fn delete_vhost(api: &str, vhost: &str) {
    if vhost.is_empty() {
        return;
    }
    let (api, vhost) = (api.to_owned(), vhost.to_owned());
    let deleted = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .ok()?;
            client
                .delete(format!("{api}/api/vhosts/{vhost}"))
                .send()
                .await
                .ok()
        })
    })
    .join();
    if !matches!(&deleted, Ok(Some(r)) if r.status().is_success() || r.status() == 404) {
        eprintln!("warning: a test vhost was not deleted");
    }
}

/// Serializes tests that stop the broker against those that only use it: they take this lock for
/// writing, the others for reading.
pub static BROKER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Runs `rabbitmqctl` quietly.
pub fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

/// The broker stopped (`rabbitmqctl stop_app`: the broker goes away, its node stays up). It starts again
/// when this is dropped, even if the test fails, so other tests find it running.
pub struct BrokerOutage {
    running: bool,
}

impl BrokerOutage {
    pub fn begin() -> BrokerOutage {
        rabbitmqctl(&["stop_app"]);
        BrokerOutage { running: false }
    }

    /// Starts the broker again and waits until it accepts connections.
    pub fn end(mut self) {
        self.restart();
    }

    fn restart(&mut self) {
        if !self.running {
            self.running = true;
            rabbitmqctl(&["start_app"]);
            rabbitmqctl(&["await_startup"]);
        }
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        self.restart();
    }
}

impl TestApp {
    /// Waits until `/health/ready` answers 200 (the bus is connected).
    pub async fn ready(&self) {
        eventually(SAGA_WAIT, "the node to be ready", || async {
            (self.get("/health/ready", None).await.status() == 200).then_some(())
        })
        .await;
    }
}

/// The value of a counter in Prometheus text with these labels (0 when absent).
pub fn counter(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The node's `/metrics` text.
pub async fn metrics_of(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sets each SKU's available stock to `qty` through a node (a child process), as an admin.
pub async fn set_stocks(client: &reqwest::Client, base: &str, admin: &str, skus: &[&str], qty: i64) {
    for sku in skus {
        let r = client
            .post(format!("{base}/api/stocks"))
            .bearer_auth(admin)
            .json(&json!({"skuId": sku, "availableQty": qty}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "stock of {sku}");
    }
}

/// A token from a node's mock issuer (a node in a child process).
pub async fn mint_token(client: &reqwest::Client, base: &str, user: &str, role: &str) -> String {
    let body: Value = client
        .post(format!("{base}/api/auth/token"))
        .json(&json!({"userId": user, "roles": [role]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["accessToken"].as_str().unwrap().to_owned()
}

/// A key prefix of its own on the test Redis (`ORDERSAGA_TEST_REDIS`) for one test; its keys are
/// deleted when this is dropped.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    /// `None` (after saying why) when `ORDERSAGA_TEST_REDIS` is not set and services are not required.
    pub fn create() -> Option<TestRedis> {
        let url = match std::env::var("ORDERSAGA_TEST_REDIS") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                assert!(
                    !services_required(),
                    "ORDERSAGA_TEST_REDIS is not set but ORDERSAGA_REQUIRE_SERVICES=1"
                );
                eprintln!("skipped: ORDERSAGA_TEST_REDIS is not set");
                return None;
            }
        };
        let mut connection = redis::Client::open(url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("the test Redis at {url} does not answer: {e}"));
        let pong: String = redis::cmd("PING").query(&mut connection).unwrap();
        assert_eq!(pong, "PONG");
        Some(TestRedis {
            url,
            prefix: format!("ordersaga_test_{}:", uuid::Uuid::new_v4().simple()),
        })
    }

    /// The keys under this test's prefix.
    pub fn keys(&self) -> Vec<String> {
        let Ok(mut connection) = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
        else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = match redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)
            {
                Ok(answer) => answer,
                Err(_) => return keys,
            };
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let deleted = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
            .and_then(|mut connection| redis::cmd("DEL").arg(&keys).query::<u64>(&mut connection));
        if deleted.is_err() {
            eprintln!("warning: test keys under {} were not deleted", self.prefix);
        }
    }
}

/// Serves the routes `configure` adds on a free loopback port until the test ends — a stand-in for a
/// service outside the node (an identity provider's JWKS, a trace collector). Answers its base URL.
pub fn serve_on_loopback(
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Clone + 'static,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    actix_web::rt::spawn(server);
    format!("http://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            replace_database("postgres://p@h:5432/test", "x"),
            "postgres://p@h:5432/x"
        );
        assert_eq!(
            replace_database("mysql://root@h:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(
            replace_database("postgres://p@h:5432", "x"),
            "postgres://p@h:5432/x"
        );
    }
}
