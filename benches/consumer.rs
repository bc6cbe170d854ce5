//! One consumer transaction on SQLite, as the mailbox middleware runs it: `BEGIN IMMEDIATE`, the inbox
//! claim, the consumer's writes, the outbox row, `COMMIT`. Measured with `synchronous = FULL` (the
//! default: a commit waits for the disk) and `NORMAL` (a commit in WAL mode does not), on a temporary
//! file in the system's temp directory. Also the placement transaction of `POST /api/orders`, and the
//! fixed costs under all of them: one statement, an empty write transaction.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set};

use actors::auth::Identity;
use actors::envelope::{Envelope, Event, InventoryReserved, SkuQuantity};
use actors::placement::{NewOrderLine, PlaceOrder};
use entities::{Money, stocks};
use ordersaga::config::{Settings, SqliteSynchronous};

const SKU: &str = "BENCH-001";

/// A benchmark cannot do without its database: stop with the reason.
fn or_stop<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A migrated SQLite file with one SKU of practically endless stock; deleted when dropped.
struct TempDb {
    db: DatabaseConnection,
    file: PathBuf,
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.file.display()));
        }
    }
}

async fn temp_db(synchronous: SqliteSynchronous) -> TempDb {
    let file = std::env::temp_dir().join(format!("ordersaga-bench-{}.db", uuid::Uuid::new_v4().simple()));
    let settings = Settings {
        database_url: format!("sqlite://{}?mode=rwc", file.display()),
        sqlite_synchronous: synchronous,
        ..Settings::default()
    };
    let db = or_stop(ordersaga::database::connect(&settings).await, "connect");
    or_stop(ordersaga::database::migrate(&db).await, "migrate");
    or_stop(
        stocks::ActiveModel {
            sku_id: Set(SKU.to_owned()),
            available_qty: Set(1_000_000_000_000),
            reserved_qty: Set(0),
            version: Set(0),
            updated_at: Set(actors::db::now()),
        }
        .insert(&db)
        .await,
        "stock",
    );
    TempDb { db, file }
}

fn identity() -> Identity {
    Identity {
        user_id: "bench-user".to_owned(),
        roles: vec!["buyer".to_owned()],
    }
}

/// One statement outside a transaction: the round trip to the connection's worker thread and back.
async fn select_one(db: &DatabaseConnection) {
    or_stop(db.execute_unprepared("SELECT 1").await, "select");
}

/// An empty write transaction: `BEGIN IMMEDIATE` and `COMMIT`.
async fn empty_transaction(db: &DatabaseConnection) {
    let txn = or_stop(actors::db::begin_write(db).await, "begin");
    or_stop(txn.commit().await, "commit");
}

/// The smallest consumer transaction: inbox claim, one outbox row, commit.
async fn claim_and_publish(db: &DatabaseConnection) {
    let txn = or_stop(actors::db::begin_write(db).await, "begin");
    let message_id = actors::db::new_id();
    or_stop(
        actors::mailbox::inbox::claim(&txn, &message_id, "q.bench").await,
        "claim",
    );
    let event = Envelope::new(
        Event::InventoryReserved(InventoryReserved {
            order_id: actors::db::new_id(),
            reservation_id: actors::db::new_id(),
            reserved_items: vec![SkuQuantity {
                sku_id: SKU.to_owned(),
                quantity: 1,
            }],
        }),
        "bench-trace",
        identity(),
    );
    let unclaimed = actors::outbox::OutboxSignal::new();
    let _waits_for_the_relay = or_stop(actors::outbox::insert(&txn, &[event], &unclaimed).await, "outbox");
    or_stop(txn.commit().await, "commit");
}

/// Step 2 of the flow: inbox claim, stock reservation, outbox row, commit.
async fn reserve_step(db: &DatabaseConnection) {
    let txn = or_stop(actors::db::begin_write(db).await, "begin");
    let message_id = actors::db::new_id();
    or_stop(
        actors::mailbox::inbox::claim(&txn, &message_id, "q.inventory.order-created").await,
        "claim",
    );
    let order_id = actors::db::new_id();
    let items = [SkuQuantity {
        sku_id: SKU.to_owned(),
        quantity: 1,
    }];
    let reservation = match actors::consumers::inventory::reserve(&txn, &order_id, &items, false).await {
        Ok(actors::consumers::inventory::Reservation::Reserved { reservation_id, .. }) => reservation_id,
        Ok(refused) => panic!("reservation refused: {refused:?}"),
        Err(e) => panic!("reserve: {e}"),
    };
    let event = Envelope::new(
        Event::InventoryReserved(InventoryReserved {
            order_id,
            reservation_id: reservation,
            reserved_items: items.to_vec(),
        }),
        "bench-trace",
        identity(),
    );
    let unclaimed = actors::outbox::OutboxSignal::new();
    let _waits_for_the_relay = or_stop(actors::outbox::insert(&txn, &[event], &unclaimed).await, "outbox");
    or_stop(txn.commit().await, "commit");
}

/// Step 1: the placement transaction of `POST /api/orders` (order, line, saga, history, outbox).
async fn place(db: &DatabaseConnection) {
    let request = PlaceOrder {
        identity: identity(),
        trace_id: actors::db::new_id(),
        idempotency_key: actors::db::new_id(),
        user_id: "bench-user".to_owned(),
        items: vec![NewOrderLine {
            sku_id: or_stop(actors::ids::SkuId::parse(SKU), "sku"),
            quantity: 1,
            price: Money(rust_decimal::Decimal::new(1990, 2)),
        }],
        deadline: None,
    };
    or_stop(
        actors::placement::place(
            &actors::db::Writer::new(db.clone()),
            &actors::outbox::OutboxSignal::new(),
            &request,
        )
        .await,
        "place",
    );
}

fn consumer(c: &mut Criterion) {
    let runtime = or_stop(
        tokio::runtime::Builder::new_current_thread().enable_all().build(),
        "runtime",
    );
    let mut group = c.benchmark_group("sqlite transaction");
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    for (mode, synchronous) in [
        ("FULL", SqliteSynchronous::Full),
        ("NORMAL", SqliteSynchronous::Normal),
    ] {
        let temp = runtime.block_on(temp_db(synchronous));
        let db = &temp.db;
        group.bench_function(BenchmarkId::new("SELECT 1 (one statement)", mode), |b| {
            b.iter(|| runtime.block_on(select_one(db)))
        });
        group.bench_function(BenchmarkId::new("BEGIN IMMEDIATE + COMMIT", mode), |b| {
            b.iter(|| runtime.block_on(empty_transaction(db)))
        });
        group.bench_function(BenchmarkId::new("claim + outbox + commit", mode), |b| {
            b.iter(|| runtime.block_on(claim_and_publish(db)))
        });
        group.bench_function(BenchmarkId::new("claim + reserve + outbox + commit", mode), |b| {
            b.iter(|| runtime.block_on(reserve_step(db)))
        });
        group.bench_function(BenchmarkId::new("place order", mode), |b| {
            b.iter(|| runtime.block_on(place(db)))
        });
    }
    group.finish();
}

criterion_group!(benches, consumer);
criterion_main!(benches);
