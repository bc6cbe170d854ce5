//! Graceful shutdown: on SIGTERM readiness turns `503` and new requests are refused, the work in flight
//! finishes, the node exits `0` within `shutdown_timeout_seconds`, and after a restart every accepted
//! order ends exactly once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{Database, EntityTrait};
use serde_json::{Value, json};

use crate::config::start_server;
use crate::crash::{assert_ended_once, get_json};
use crate::helpers::{TestBroker, TestDb, eventually, line, mint_token, spawn_app};
use crate::on_every_backend;
use entities::orders;

const SKUS: [&str; 2] = ["SD-A", "SD-B"];
const STOCK: i64 = 100_000;
/// Buyers placing orders one after another while the node is told to stop.
const BUYERS: usize = 8;
/// The bound the node is started with.
const SHUTDOWN_SECONDS: u64 = 10;

on_every_backend! {
    async fn a_draining_node_is_not_ready_and_refuses_new_requests(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let buyer = app.token("drain-buyer", &["buyer"]).await;
        app.state.draining.store(true, Ordering::Relaxed);

        let ready = app.client.get(format!("{}/health/ready", app.address)).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        assert!(ready.headers().contains_key("retry-after"));
        assert_eq!(ready.json::<Value>().await.unwrap()["status"], "draining");
        let actuator = app.client.get(format!("{}/actuator/health/readiness", app.address)).send().await.unwrap();
        assert_eq!(actuator.status(), 503);
        assert_eq!(actuator.json::<Value>().await.unwrap()["status"], "OUT_OF_SERVICE");
        let live = app.client.get(format!("{}/health/live", app.address)).send().await.unwrap();
        assert_eq!(live.status(), 200, "the process still lives while it drains");

        let order = app.client.post(format!("{}/api/orders", app.address))
            .bearer_auth(&buyer)
            .header("Idempotency-Key", "drain-1")
            .json(&json!({"userId": "drain-buyer", "items": [line("SD-A", 1, "1.00")]}))
            .send().await.unwrap();
        assert_eq!(order.status(), 503);
        assert!(order.headers().contains_key("retry-after"), "the client is told to come back");
        let problem: Value = order.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/shutting-down");
    }

    async fn sigterm_under_load_exits_0_and_every_accepted_order_ends_once(backend) {
        let Some(db) = TestDb::create(backend).await else { return };
        sigterm_under_load(&db, &[]).await;
    }

    async fn sigterm_under_load_over_rabbitmq_exits_0_and_every_accepted_order_ends_once(backend) {
        if backend == crate::helpers::Backend::Sqlite {
            eprintln!("skipped on Sqlite: RabbitMQ nodes use a server database");
            return;
        }
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        sigterm_under_load(&db, &[("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str())]).await;
    }
}

/// Buyers place orders until the node refuses them; SIGTERM comes while sagas are in flight. The node
/// must exit `0` within its bound, and after a restart every order it accepted ends once.
async fn sigterm_under_load(db: &TestDb, extra: &[(&str, &str)]) {
    let bound = SHUTDOWN_SECONDS.to_string();
    let mut env = vec![
        ("ORDERSAGA_PAYMENT_MODE", "HASHED"),
        ("ORDERSAGA_PAYMENT__LATENCY_MS", "50"),
        ("ORDERSAGA_SHUTDOWN_TIMEOUT_SECONDS", bound.as_str()),
    ];
    env.extend_from_slice(extra);
    let client = crate::helpers::test_client();
    let mut server = start_server(db, &env).await;
    let base = server.address.clone();
    let admin = mint_token(&client, &base, "admin-1", "admin").await;
    crate::helpers::set_stocks(&client, &base, &admin, &SKUS, STOCK).await;
    let buyer = mint_token(&client, &base, "sd-buyer", "buyer").await;
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<u16>::new()));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|b| {
            let (client, base, buyer) = (client.clone(), base.clone(), buyer.clone());
            let (accepted, refused) = (accepted.clone(), refused.clone());
            actix_web::rt::spawn(async move {
                for i in 0.. {
                    let items = vec![line(SKUS[i % 2], 1, "3.00")];
                    let sent = client
                        .post(format!("{base}/api/orders"))
                        .bearer_auth(&buyer)
                        .header("Idempotency-Key", format!("sd-{b}-{i}"))
                        .json(&json!({"userId": "sd-buyer", "items": items}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => {
                            let order: Value = r.json().await.unwrap();
                            accepted
                                .lock()
                                .unwrap()
                                .push(order["orderId"].as_str().unwrap().to_owned());
                        }
                        // Refused while draining (503), or the listener has gone: this buyer stops.
                        Ok(r) => {
                            refused.lock().unwrap().push(r.status().as_u16());
                            return;
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        "orders to be accepted under load",
        || async { (accepted.lock().unwrap().len() >= 100).then_some(()) },
    )
    .await;

    server.terminate();
    let status = server
        .exit_status(Duration::from_secs(SHUTDOWN_SECONDS + 5))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the node still runs {SHUTDOWN_SECONDS} s after SIGTERM; log in {}",
                server.log.display()
            )
        });
    assert!(
        status.success(),
        "the node exits 0 on SIGTERM, not {status}; log in {}",
        server.log.display()
    );
    for buyer in buyers {
        buyer.await.unwrap();
    }
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "the shutdown is logged:\n{log}"
    );
    for status in refused.lock().unwrap().iter() {
        assert_eq!(*status, 503, "a request refused during the shutdown is a 503");
    }
    drop(server);

    let server = start_server(db, &env).await;
    let base = server.address.clone();
    let accepted = accepted.lock().unwrap().clone();
    let conn = Database::connect(&db.url).await.unwrap();
    eventually(
        Duration::from_secs(60),
        "every order to end after the restart",
        || async {
            let pending = orders::Entity::find()
                .all(&conn)
                .await
                .unwrap()
                .into_iter()
                .filter(|o| o.status == "PENDING")
                .count();
            (pending == 0).then_some(())
        },
    )
    .await;
    // Orders whose answer the shutdown cut off may exist too: they are held to the same rules.
    let every: Vec<String> = orders::Entity::find()
        .all(&conn)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    for id in &accepted {
        assert!(every.contains(id), "accepted order {id} was lost");
        let order = get_json(&client, &base, &admin, &format!("/api/orders/{id}")).await;
        assert_ne!(order["status"], "PENDING");
    }
    assert_ended_once(&db.url, &every, &SKUS, STOCK).await;
    drop(server);
}
