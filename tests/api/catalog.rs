//! The product catalog (`/api/catalog/products`), the check an order passes against it, and the read
//! cache in front of products and stock: in memory per node, or on the test Redis
//! (`ORDERSAGA_TEST_REDIS`) shared by nodes, each test under a key prefix of its own.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{Server, start_server};
use crate::helpers::{
    TestApp, TestDb, TestRedis, assert_problem, counter, eventually, line, metrics_of, mint_token, spawn_app,
    spawn_app_with, test_client,
};
use crate::on_every_backend;

const PRODUCTS: &str = "/api/catalog/products";

fn product(name: &str, price: &str, active: bool) -> Value {
    json!({"name": name, "description": format!("{name}, boxed"), "price": serde_json::Number::from_string_unchecked(price.to_owned()), "active": active})
}

impl TestApp {
    /// Sets a product as admin and checks it was accepted.
    async fn set_product(&self, sku_id: &str, body: &Value) -> Value {
        let admin = self.admin_token().await;
        let response = self
            .put(&format!("{PRODUCTS}/{sku_id}"), Some(&admin), body)
            .await;
        assert_eq!(response.status(), 200, "product {sku_id} set");
        response.json().await.unwrap()
    }
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

on_every_backend! {
    async fn products_are_upserted_read_and_listed_by_sku(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let created = app.set_product("CAT-B", &product("Kettle", "19.90", true)).await;
        assert_eq!(created["skuId"], "CAT-B");
        assert_eq!(created["name"], "Kettle");
        assert_eq!(created["description"], "Kettle, boxed");
        assert_eq!(created["price"].to_string(), "19.90", "money is written exactly");
        assert_eq!(created["active"], true);
        assert!(created["updatedAt"].is_string());

        let read: Value = app.get(&format!("{PRODUCTS}/CAT-B"), None).await.json().await.unwrap();
        assert_eq!(read, created, "reading needs no token and answers what was written");

        // Replaced as a whole; `active` defaults to true, the description to empty.
        let admin = app.admin_token().await;
        let replaced = app.put(&format!("{PRODUCTS}/CAT-B"), Some(&admin), &json!({"name": "Kettle 2", "price": "21"})).await;
        assert_eq!(replaced.status(), 200);
        let replaced: Value = replaced.json().await.unwrap();
        assert_eq!((replaced["name"].as_str(), replaced["description"].as_str(), replaced["active"].as_bool()), (Some("Kettle 2"), Some(""), Some(true)));
        assert_eq!(replaced["price"].to_string(), "21");
        let read: Value = app.get(&format!("{PRODUCTS}/CAT-B"), None).await.json().await.unwrap();
        assert_eq!(read["name"], "Kettle 2", "the new version is read, not the cached old one");

        app.set_product("CAT-A", &product("Apron", "5", false)).await;
        app.set_product("CAT-C", &product("Cup", "3.5", true)).await;
        // A SKU that got stock has a product already: named after it, active, not priced.
        app.set_stock("CAT-D", 4).await;
        let stocked: Value = app.get(&format!("{PRODUCTS}/CAT-D"), None).await.json().await.unwrap();
        assert_eq!((stocked["name"].as_str(), stocked["active"].as_bool()), (Some("CAT-D"), Some(true)));
        assert!(stocked["price"].is_null(), "{stocked}");

        let page: Value = app.get(&format!("{PRODUCTS}?size=2"), None).await.json().await.unwrap();
        let skus = |page: &Value| page["items"].as_array().unwrap().iter().map(|p| p["skuId"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(skus(&page), ["CAT-A", "CAT-B"]);
        assert_eq!((page["page"].as_u64(), page["size"].as_u64(), page["totalElements"].as_u64(), page["totalPages"].as_u64(), page["hasNext"].as_bool()), (Some(0), Some(2), Some(4), Some(2), Some(true)));
        let second: Value = app.get(&format!("{PRODUCTS}?size=2&page=1"), None).await.json().await.unwrap();
        assert_eq!(skus(&second), ["CAT-C", "CAT-D"]);
        assert_eq!(second["hasNext"], false);
        let active: Value = app.get(&format!("{PRODUCTS}?active=true"), None).await.json().await.unwrap();
        assert_eq!(skus(&active), ["CAT-B", "CAT-C", "CAT-D"]);
        let inactive: Value = app.get(&format!("{PRODUCTS}?active=false"), None).await.json().await.unwrap();
        assert_eq!(skus(&inactive), ["CAT-A"]);
        assert_eq!(inactive["totalElements"], 1);

        // The stock routes are unchanged by the catalog.
        let stock: Value = app.get("/api/stocks/CAT-D", None).await.json().await.unwrap();
        assert_eq!(stock["availableQty"], 4);
    }

    async fn catalog_writes_need_an_admin_and_a_valid_body(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let body = product("Kettle", "19.90", true);
        let url = format!("{PRODUCTS}/CAT-1");
        assert_problem(app.put(&url, None, &body).await, 401).await;
        assert_problem(app.put(&url, Some("not-a-token"), &body).await, 401).await;
        let buyer = app.buyer_token("u-1").await;
        assert_problem(app.put(&url, Some(&buyer), &body).await, 403).await;

        let admin = app.admin_token().await;
        for (bad, why) in [
            (json!({"name": "", "price": 1}), "name"),
            (json!({"name": "   ", "price": 1}), "name"),
            (json!({"name": "x".repeat(256), "price": 1}), "name"),
            (json!({"name": "Kettle"}), "price"),
            (json!({"name": "Kettle", "price": 0}), "price"),
            (json!({"name": "Kettle", "price": "-1"}), "price"),
            (json!({"name": "Kettle", "price": "abc"}), "price"),
            (json!({"name": "Kettle", "price": "1.00001"}), "price"),
            (json!({"name": "Kettle", "price": 1_000_000_001}), "price"),
            (json!({"name": "Kettle", "price": 1, "active": "yes"}), "boolean"),
            (json!({"name": "Kettle", "price": 1, "description": "d".repeat(4001)}), "description"),
            (json!({"price": 1}), "name"),
        ] {
            let problem = assert_problem(app.put(&url, Some(&admin), &bad).await, 400).await;
            assert!(problem["detail"].as_str().unwrap().contains(why), "{bad}: {problem}");
        }
        let bad_sku = assert_problem(app.put(&format!("{PRODUCTS}/bad%20sku"), Some(&admin), &body).await, 400).await;
        assert!(bad_sku["detail"].as_str().unwrap().contains("skuId"), "{bad_sku}");
        assert_problem(app.get(&format!("{PRODUCTS}/bad%20sku"), None).await, 400).await;
        assert_problem(app.get(&format!("{PRODUCTS}?active=maybe"), None).await, 400).await;
        assert_problem(app.get(&format!("{PRODUCTS}?size=0"), None).await, 400).await;
        assert_problem(app.get(&format!("{PRODUCTS}?page=-1"), None).await, 400).await;

        let unknown = assert_problem(app.get(&format!("{PRODUCTS}/NO-SUCH"), None).await, 404).await;
        assert_eq!(unknown["type"], "/problems/not-found");
        // Asked again (now from the cache, which remembers the absence), still 404; then created.
        assert_problem(app.get(&format!("{PRODUCTS}/NO-SUCH"), None).await, 404).await;
        app.set_product("NO-SUCH", &body).await;
        let found = app.get(&format!("{PRODUCTS}/NO-SUCH"), None).await;
        assert_eq!(found.status(), 200, "a product created after a 404 is found at once");
    }

    async fn an_order_for_an_inactive_product_is_refused_at_the_door(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("CAT-OFF", 10).await;
        app.set_product("CAT-OFF", &product("Old kettle", "10", false)).await;
        let buyer = app.buyer_token("u-1").await;

        let refused = app.place_order(&buyer, "u-1", "inactive-1", vec![line("CAT-ON", 1, "1"), line("CAT-OFF", 1, "10")]).await;
        let problem = assert_problem(refused, 400).await;
        assert_eq!(problem["type"], "/problems/product-inactive");
        assert!(problem["detail"].as_str().unwrap().contains("items[1]"), "{problem}");
        assert_eq!(app.stock("CAT-OFF").await, (10, 0), "nothing was reserved");

        // Active again: the same order is accepted and reserves.
        app.set_product("CAT-OFF", &product("Old kettle", "10", true)).await;
        let placed = app.place_order(&buyer, "u-1", "inactive-2", vec![line("CAT-OFF", 2, "10")]).await;
        assert_eq!(placed.status(), 201);
        let placed: Value = placed.json().await.unwrap();
        let order_id = placed["orderId"].as_str().unwrap();
        assert_eq!(app.ended(order_id).await["status"], "CONFIRMED");
        assert_eq!(app.stock("CAT-OFF").await, (8, 2), "the stock read after the reservation is fresh");

        // Deactivated after the order: its key still answers the original order.
        app.set_product("CAT-OFF", &product("Old kettle", "10", false)).await;
        let replayed = app.place_order(&buyer, "u-1", "inactive-2", vec![line("CAT-OFF", 2, "10")]).await;
        assert_eq!(replayed.status(), 200);
        assert_eq!(replayed.headers()["idempotent-replayed"], "true");

        // A SKU without a product row is the saga's business, as before.
        let unknown = app.order("u-1", vec![line("CAT-NONE", 1, "1")]).await;
        let ended = app.ended(unknown["orderId"].as_str().unwrap()).await;
        assert_eq!((ended["status"].as_str(), ended["failureReason"].as_str()), (Some("FAILED"), Some("UNKNOWN_SKU")));
    }

    async fn prices_are_checked_against_the_catalog_only_when_asked(backend) {
        let Some(checked) = spawn_app_with(backend, |s| s.catalog.check_prices = true).await else { return };
        checked.set_stock("CAT-P", 10).await;
        checked.set_product("CAT-P", &product("Kettle", "19.90", true)).await;
        checked.set_stock("CAT-UNPRICED", 10).await;
        let buyer = checked.buyer_token("u-1").await;
        let refused = checked.place_order(&buyer, "u-1", "price-1", vec![line("CAT-P", 1, "9.90")]).await;
        let problem = assert_problem(refused, 400).await;
        assert_eq!(problem["type"], "/problems/price-mismatch");
        assert!(problem["detail"].as_str().unwrap().contains("19.90"), "{problem}");
        assert_eq!(checked.stock("CAT-P").await, (10, 0));
        // The same price written otherwise is the same price; a product without a price is not checked.
        let same = checked.place_order(&buyer, "u-1", "price-2", vec![line("CAT-P", 1, "19.9")]).await;
        assert_eq!(same.status(), 201);
        let unpriced = checked.place_order(&buyer, "u-1", "price-3", vec![line("CAT-UNPRICED", 1, "0.01")]).await;
        assert_eq!(unpriced.status(), 201);
        // A new catalog price applies to the next order at once.
        checked.set_product("CAT-P", &product("Kettle", "9.90", true)).await;
        let repriced = checked.place_order(&buyer, "u-1", "price-4", vec![line("CAT-P", 1, "9.90")]).await;
        assert_eq!(repriced.status(), 201);

        let Some(unchecked) = spawn_app(backend).await else { return };
        unchecked.set_stock("CAT-P", 10).await;
        unchecked.set_product("CAT-P", &product("Kettle", "19.90", true)).await;
        let taken = unchecked.order("u-1", vec![line("CAT-P", 1, "9.90")]).await;
        assert_eq!(taken["totalAmount"].to_string(), "9.90", "off by default: the client's price is taken");
    }

    async fn a_redis_that_is_away_does_not_fail_requests(backend) {
        // Nothing listens on port 1: every Redis call fails.
        let Some(app) = spawn_app_with(backend, |s| s.redis_url = Some("redis://127.0.0.1:1".to_owned())).await else { return };
        app.set_stock("CAT-R", 5).await;
        app.set_product("CAT-R", &product("Kettle", "2", true)).await;
        for _ in 0..3 {
            assert_eq!(app.stock("CAT-R").await, (5, 0));
            let read: Value = app.get(&format!("{PRODUCTS}/CAT-R"), None).await.json().await.unwrap();
            assert_eq!(read["name"], "Kettle");
        }
        let order = app.order("u-1", vec![line("CAT-R", 2, "2")]).await;
        assert_eq!(app.ended(order["orderId"].as_str().unwrap()).await["status"], "CONFIRMED");
        assert_eq!(app.stock("CAT-R").await, (3, 2));
        let ready = app.get("/health/ready", None).await;
        assert_eq!(ready.status(), 200, "the cache does not decide readiness");
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["checks"]["cache"], json!({"backend": "redis", "status": "down"}));
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        assert!(counter(&metrics, "cache_requests_total", &[("cache", "stocks"), ("result", "error")]) >= 1.0, "{metrics}");
        assert!(counter(&metrics, "cache_errors_total", &[("cache", "stocks")]) >= 1.0, "{metrics}");
    }

    async fn cache_hits_and_misses_are_counted_per_cache(backend) {
        // A node process of its own, so that its counters are its own.
        for redis in [false, true] {
            let test_redis = if redis { match TestRedis::create() { Some(r) => Some(r), None => return } } else { None };
            let Some(db) = TestDb::create(backend).await else { return };
            let mut env = vec![("ORDERSAGA_CACHE__TTL_SECONDS", "300".to_owned())];
            if let Some(r) = &test_redis {
                env.push(("ORDERSAGA_REDIS_URL", r.url.clone()));
                env.push(("ORDERSAGA_CACHE__KEY_PREFIX", r.prefix.clone()));
            }
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let node = start_server(&db, &env).await;
            let client = test_client();
            let admin = mint_token(&client, &node.address, "admin-1", "admin").await;
            let stocked = client.post(format!("{}/api/stocks", node.address)).bearer_auth(&admin)
                .json(&json!({"skuId": "CAT-M", "availableQty": 3})).send().await.unwrap();
            assert_eq!(stocked.status(), 200);
            let before = metrics_of(&client, &node.address).await;
            for _ in 0..3 {
                assert_eq!(get_json(&client, format!("{}/api/stocks/CAT-M", node.address)).await["availableQty"], 3);
            }
            get_json(&client, format!("{}{PRODUCTS}/CAT-M", node.address)).await;
            let after = metrics_of(&client, &node.address).await;
            let moved = |cache: &str, result: &str| {
                let labels = [("cache", cache), ("result", result)];
                counter(&after, "cache_requests_total", &labels) - counter(&before, "cache_requests_total", &labels)
            };
            assert_eq!((moved("stocks", "miss"), moved("stocks", "hit"), moved("stocks", "error")), (1.0, 2.0, 0.0), "redis: {redis}\n{after}");
            assert_eq!((moved("products", "miss"), moved("products", "hit")), (1.0, 0.0), "redis: {redis}");
            let ready = get_json(&client, format!("{}/health/ready", node.address)).await;
            let backend_name = if redis { "redis" } else { "memory" };
            assert_eq!(ready["checks"]["cache"], json!({"backend": backend_name, "status": "up"}));
            if let Some(r) = &test_redis {
                assert!(r.keys().iter().any(|k| k == &format!("{}stocks:CAT-M", r.prefix)), "the entry is in Redis under the prefix: {:?}", r.keys());
            }
        }
    }

    async fn a_write_on_one_node_is_read_fresh_on_another_sharing_redis(backend) {
        let Some((_redis, _db, nodes)) = two_nodes_sharing_redis(backend).await else { return };
        let [a, b] = &nodes;
        let client = test_client();
        let admin = mint_token(&client, &a.address, "admin-1", "admin").await;
        let put = |node: &Server, body: Value| {
            let (client, admin) = (client.clone(), admin.clone());
            let url = format!("{}{PRODUCTS}/CAT-2N", node.address);
            async move {
                let r = client.put(url).bearer_auth(&admin).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        };
        put(a, product("First", "1", true)).await;
        let product_on_b = || get_json(&client, format!("{}{PRODUCTS}/CAT-2N", b.address));
        assert_eq!(product_on_b().await["name"], "First");
        assert_eq!(product_on_b().await["name"], "First", "now from the shared cache");
        // The entries live for 300 s: reading fresh at once on B is the invalidation, not the expiry.
        put(a, product("Second", "2", false)).await;
        assert_eq!(product_on_b().await["name"], "Second");

        // Stock changed by a reservation (on whichever node applies it) is read fresh on B.
        let stocked = client.post(format!("{}/api/stocks", a.address)).bearer_auth(&admin)
            .json(&json!({"skuId": "CAT-2S", "availableQty": 7})).send().await.unwrap();
        assert_eq!(stocked.status(), 200);
        let stock_on_b = || get_json(&client, format!("{}/api/stocks/CAT-2S", b.address));
        assert_eq!(stock_on_b().await["availableQty"], 7);
        assert_eq!(stock_on_b().await["availableQty"], 7);
        let buyer = mint_token(&client, &a.address, "u-1", "buyer").await;
        let placed = client.post(format!("{}/api/orders", a.address)).bearer_auth(&buyer)
            .header("Idempotency-Key", "two-nodes-1")
            .json(&json!({"userId": "u-1", "items": [line("CAT-2S", 3, "1")]})).send().await.unwrap();
        assert_eq!(placed.status(), 201);
        eventually(Duration::from_secs(30), "the reservation to show on node B", || async {
            let stock = stock_on_b().await;
            (stock["availableQty"] == 4 && stock["reservedQty"] == 3).then_some(())
        }).await;
        // An inactive product is refused on B too (its placement check reads the shared cache).
        let on_b = client.post(format!("{}/api/orders", b.address)).bearer_auth(&buyer)
            .header("Idempotency-Key", "two-nodes-2")
            .json(&json!({"userId": "u-1", "items": [line("CAT-2N", 1, "2")]})).send().await.unwrap();
        assert_problem(on_b, 400).await;
    }

    async fn without_redis_another_node_may_answer_its_cached_value_until_the_ttl(backend) {
        let Some(db) = TestDb::create(backend).await else { return };
        if backend == crate::helpers::Backend::Sqlite {
            eprintln!("skipped on Sqlite: nodes share a server database");
            return;
        }
        let env = [("ORDERSAGA_CACHE__TTL_SECONDS", "4")];
        let nodes = [start_server(&db, &env).await, start_server(&db, &env).await];
        let [a, b] = &nodes;
        let client = test_client();
        let admin = mint_token(&client, &a.address, "admin-1", "admin").await;
        let set = |name: &'static str| {
            let (client, admin) = (client.clone(), admin.clone());
            let url = format!("{}{PRODUCTS}/CAT-TTL", a.address);
            async move {
                let r = client.put(url).bearer_auth(&admin).json(&product(name, "1", true)).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        };
        set("First").await;
        let on_b = || get_json(&client, format!("{}{PRODUCTS}/CAT-TTL", b.address));
        assert_eq!(on_b().await["name"], "First");
        let written = std::time::Instant::now();
        set("Second").await;
        assert_eq!(get_json(&client, format!("{}{PRODUCTS}/CAT-TTL", a.address)).await["name"], "Second", "fresh on the node that wrote");
        assert_eq!(on_b().await["name"], "First", "B's own cache does not see A's invalidation");
        eventually(Duration::from_secs(10), "B to read the new product", || async {
            (on_b().await["name"] == "Second").then_some(())
        }).await;
        assert!(written.elapsed() <= Duration::from_secs(4 + 2), "within the TTL: {:?}", written.elapsed());
    }
}

/// Two node processes on one server database of their own, sharing the test Redis under a prefix of
/// their own, with entries that live 300 s; `None` on SQLite or without the services.
async fn two_nodes_sharing_redis(
    backend: crate::helpers::Backend,
) -> Option<(TestRedis, TestDb, [Server; 2])> {
    if backend == crate::helpers::Backend::Sqlite {
        eprintln!("skipped on Sqlite: nodes share a server database");
        return None;
    }
    let redis = TestRedis::create()?;
    let db = TestDb::create(backend).await?;
    let env = [
        ("ORDERSAGA_REDIS_URL", redis.url.as_str()),
        ("ORDERSAGA_CACHE__KEY_PREFIX", redis.prefix.as_str()),
        ("ORDERSAGA_CACHE__TTL_SECONDS", "300"),
    ];
    let nodes = [start_server(&db, &env).await, start_server(&db, &env).await];
    Some((redis, db, nodes))
}

/// What `/health/ready` says of the cache (it answers `200` whatever that is).
async fn cache_status(app: &TestApp) -> String {
    let response = app.get("/health/ready", None).await;
    assert_eq!(response.status(), 200, "the cache never decides readiness");
    let body: Value = response.json().await.unwrap();
    body["checks"]["cache"]["status"].as_str().unwrap().to_owned()
}

/// A key of the Redis on `port`, if it is there.
fn redis_get(port: u16, key: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
    redis::cmd("GET")
        .arg(key)
        .query::<Option<String>>(&mut connection)
        .ok()?
}

/// A `redis-server` of the test's own on a free port (so that stopping it touches no one else's),
/// stopped when dropped.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    /// `None` (after saying why) without a `redis-server` binary, unless services are required.
    async fn start(port: Option<u16>) -> Option<OwnRedis> {
        let port = port.unwrap_or_else(crate::config::free_port);
        let child = match std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                assert!(
                    !crate::helpers::services_required(),
                    "redis-server does not start ({e}) but ORDERSAGA_REQUIRE_SERVICES=1"
                );
                eprintln!("skipped: redis-server does not start: {e}");
                return None;
            }
        };
        let own = OwnRedis { child, port };
        let url = own.url();
        eventually(
            Duration::from_secs(10),
            "the test's redis-server to answer",
            || {
                let url = url.clone();
                async move {
                    let client = redis::Client::open(url.as_str()).ok()?;
                    let mut connection = client
                        .get_connection_with_timeout(Duration::from_millis(200))
                        .ok()?;
                    redis::cmd("PING").query::<String>(&mut connection).ok()
                }
            },
        )
        .await;
        Some(own)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

on_every_backend! {
    async fn a_redis_that_goes_away_and_comes_back_is_used_again(backend) {
        let Some(redis) = OwnRedis::start(None).await else { return };
        let (url, port) = (redis.url(), redis.port);
        let Some(app) = spawn_app_with(backend, |s| s.redis_url = Some(url)).await else { return };
        app.set_stock("CAT-BACK", 6).await;
        assert_eq!(app.stock("CAT-BACK").await, (6, 0));
        assert_eq!(cache_status(&app).await, "up");

        drop(redis);
        // Away: reads and orders are answered from the database, and stay right.
        assert_eq!(app.stock("CAT-BACK").await, (6, 0));
        let order = app.order("u-1", vec![line("CAT-BACK", 2, "1")]).await;
        assert_eq!(app.ended(order["orderId"].as_str().unwrap()).await["status"], "CONFIRMED");
        assert_eq!(app.stock("CAT-BACK").await, (4, 2));
        assert_eq!(cache_status(&app).await, "down");

        // Back (empty, on the same port): the node uses it again.
        let Some(_back) = OwnRedis::start(Some(port)).await else { return };
        eventually(Duration::from_secs(30), "the node to see Redis again", || async {
            (cache_status(&app).await == "up").then_some(())
        })
        .await;
        assert_eq!(app.stock("CAT-BACK").await, (4, 2));
        eventually(Duration::from_secs(10), "the stock entry to be written to the Redis that came back", || async {
            app.stock("CAT-BACK").await;
            let cached = redis_get(port, "ordersaga:stocks:CAT-BACK")?;
            cached.contains("\"available_qty\":4").then_some(())
        })
        .await;
    }
}
