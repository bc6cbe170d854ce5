//! `kill -9` of a node with sagas in flight: after a restart every accepted order ends, nothing is lost
//! or done twice, and stock is conserved.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::config::start_server;
use crate::helpers::{TestDb, eventually, line};
use crate::on_every_backend;
use entities::{
    inventory_release_events, inventory_reservations, order_items, orders, payment_records, saga_instances,
    stocks,
};

const SKUS: [&str; 3] = ["CR-A", "CR-B", "CR-C"];
const STOCK: i64 = 12;
const ORDERS: usize = 40;

async fn token(client: &reqwest::Client, base: &str, user: &str, role: &str) -> String {
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

on_every_backend! {
    async fn a_node_killed_mid_flight_loses_nothing_and_doubles_nothing(backend) {
        let Some(db) = TestDb::create(backend).await else { return };
        let env = [("ORDERSAGA_PAYMENT_MODE", "HASHED"), ("ORDERSAGA_PAYMENT__LATENCY_MS", "150")];
        let client = crate::helpers::test_client();
        let server = start_server(&db, &env).await;
        let base = server.address.clone();
        let admin = token(&client, &base, "admin-1", "admin").await;
        for sku in SKUS {
            let r = client.post(format!("{base}/api/stocks")).bearer_auth(&admin)
                .json(&json!({"skuId": sku, "availableQty": STOCK})).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let buyer = token(&client, &base, "crash-buyer", "buyer").await;
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

        let conn = Database::connect(&db.url).await.unwrap();
        let mut confirmed_qty: HashMap<String, i64> = HashMap::new();
        for id in &placed {
            let order = orders::Entity::find_by_id(id.clone()).one(&conn).await.unwrap().unwrap();
            let saga = saga_instances::Entity::find_by_id(id.clone()).one(&conn).await.unwrap().unwrap();
            let reservations = inventory_reservations::Entity::find()
                .filter(inventory_reservations::Column::OrderId.eq(id.as_str())).all(&conn).await.unwrap();
            let releases = inventory_release_events::Entity::find()
                .filter(inventory_release_events::Column::OrderId.eq(id.as_str())).all(&conn).await.unwrap();
            let payments = payment_records::Entity::find()
                .filter(payment_records::Column::OrderId.eq(id.as_str())).all(&conn).await.unwrap();
            assert!(reservations.len() <= 1 && payments.len() <= 1, "order {id} reserved or charged twice");
            match saga.state.as_str() {
                "COMPLETED" => {
                    assert_eq!(order.status, "CONFIRMED");
                    assert_eq!(reservations[0].status, "RESERVED");
                    assert!(releases.is_empty());
                    for item in order_items::Entity::find().filter(order_items::Column::OrderId.eq(id.as_str())).all(&conn).await.unwrap() {
                        *confirmed_qty.entry(item.sku_id).or_default() += i64::from(item.quantity);
                    }
                }
                "COMPENSATED" => {
                    assert_eq!(order.status, "FAILED");
                    assert_eq!(reservations[0].status, "RELEASED");
                    assert_eq!(releases.len(), 1, "order {id} released exactly once");
                }
                "FAILED" => {
                    assert_eq!(order.status, "FAILED");
                    assert!(reservations.is_empty() && releases.is_empty());
                }
                other => panic!("order {id} ended in {other}"),
            }
        }
        for sku in SKUS {
            let stock = stocks::Entity::find_by_id(sku.to_owned()).one(&conn).await.unwrap().unwrap();
            let held = confirmed_qty.get(sku).copied().unwrap_or(0);
            assert!(stock.available_qty >= 0);
            assert_eq!(stock.available_qty + stock.reserved_qty, STOCK, "{sku} conserved");
            assert_eq!(stock.reserved_qty, held, "{sku}: confirmed orders hold exactly their reservations");
        }
        drop(server);
    }
}
