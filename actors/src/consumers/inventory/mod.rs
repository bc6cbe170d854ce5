//! The `InventoryActor`: stock per SKU, reservations and releases.
//!
//! Stock changes are relative and conditional: a reservation takes `available_qty - q` only where
//! `available_qty >= q` still holds when the row is written, and a release adds back what its
//! reservation holds. Concurrent reservations and releases of one SKU therefore never conflict unless the
//! stock really ran short between the read and the write (then the reservation runs again and is
//! refused), `available_qty` never goes below zero, and every unit is accounted for in `available_qty`
//! or in a `RESERVED` reservation. `stocks.version` still counts every change.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::cache::{Cache, CacheName};
use crate::db;
use crate::envelope::{Envelope, Event, InventoryFailed, InventoryReserved, SkuQuantity};
use crate::ids::{OrderId, SkuId};
use crate::mailbox::{
    Apply, ConsumeError, Consumer, Effects, FinishBatch, MAX_CONFLICT_RETRIES, Prefetch, Prefetched,
};
use crate::topology::{Q_INVENTORY_ORDER_CREATED, Q_INVENTORY_RELEASE_REQUESTED};
use entities::{inventory_reservation_items, inventory_reservations, stocks};

mod batch;
mod release;

pub use batch::StockBatch;
pub use release::{ReleaseBatch, release};

crate::text_codes! {
    /// Where a reservation stands.
    pub enum ReservationStatus {
        /// It holds its stock.
        Reserved = "RESERVED",
        /// It gave its stock back.
        Released = "RELEASED",
    }
}
/// Some SKU of the order has less available stock than asked for.
pub const INSUFFICIENT_STOCK: &str = "INSUFFICIENT_STOCK";
/// Some SKU of the order does not exist.
pub const UNKNOWN_SKU: &str = "UNKNOWN_SKU";

/// Largest stock quantity accepted for one SKU.
pub const MAX_QTY: i64 = 1_000_000_000_000;

/// What can go wrong changing stock.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("stock changed under the reservation too often; try again")]
    Contended,
    #[error("{0}")]
    Unavailable(String),
}

/// Owns stock: every write to `stocks` goes through this actor's messages, and invalidates the read
/// cache's entry of the SKUs it changed once it has committed.
pub struct InventoryActor {
    db: DatabaseConnection,
    cache: Cache,
}

impl InventoryActor {
    pub fn new(db: DatabaseConnection, cache: Cache) -> Self {
        Self { db, cache }
    }
}

impl Actor for InventoryActor {
    type Context = Context<Self>;
}

/// Sets the available quantity of a SKU, creating it if new (`POST /api/stocks`, `PUT /api/stocks/{sku}`).
#[derive(Message, Debug)]
#[rtype(result = "Result<stocks::Model, InventoryError>")]
pub struct SetStock {
    pub sku_id: SkuId,
    pub available_qty: i64,
}

impl Handler<SetStock> for InventoryActor {
    type Result = ResponseFuture<Result<stocks::Model, InventoryError>>;

    fn handle(&mut self, msg: SetStock, _: &mut Self::Context) -> Self::Result {
        let (db, cache) = (self.db.clone(), self.cache.clone());
        Box::pin(async move {
            if !(0..=MAX_QTY).contains(&msg.available_qty) {
                return Err(InventoryError::InvalidRequest(format!(
                    "availableQty must be between 0 and {MAX_QTY}"
                )));
            }
            let row = set_stock(&db, msg.sku_id.as_str(), msg.available_qty).await?;
            // A new SKU also got its product row.
            let skus = vec![row.sku_id.clone()];
            cache.invalidate_now(CacheName::Stocks, &skus).await;
            cache.invalidate_now(CacheName::Products, &skus).await;
            Ok(row)
        })
    }
}

/// Upserts the stock row and its product in one transaction and returns the row as written.
async fn set_stock(
    db: &DatabaseConnection,
    sku_id: &str,
    available_qty: i64,
) -> Result<stocks::Model, DbErr> {
    let txn = db::begin_write(db).await?;
    let now = db::now();
    let stock = stocks::ActiveModel {
        sku_id: Set(sku_id.to_owned()),
        available_qty: Set(available_qty),
        reserved_qty: Set(0),
        version: Set(0),
        updated_at: Set(now),
    };
    stocks::Entity::insert(stock)
        .on_conflict(
            OnConflict::column(stocks::Column::SkuId)
                .update_columns([stocks::Column::AvailableQty, stocks::Column::UpdatedAt])
                .value(
                    stocks::Column::Version,
                    Expr::col((stocks::Entity, stocks::Column::Version)).add(1),
                )
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    crate::catalog::ensure_row(&txn, sku_id, now).await?;
    let row = stocks::Entity::find_by_id(sku_id.to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("stock {sku_id} after upsert")))?;
    txn.commit().await?;
    Ok(row)
}

/// The two stock queues' consumers, reservations and releases, applied by `inventory` on `home`. Both
/// read their batch once before its messages ([`Prefetch`]) and write what it decided when it ends
/// ([`FinishBatch`]): without the finish a batch's decisions would never be written.
pub fn consumers(inventory: &Addr<InventoryActor>, home: &actix::ArbiterHandle) -> [Consumer; 2] {
    [Q_INVENTORY_ORDER_CREATED, Q_INVENTORY_RELEASE_REQUESTED].map(|queue| Consumer {
        queue,
        apply: inventory.clone().recipient(),
        prepare: None,
        prefetch: Some(inventory.clone().recipient()),
        finish: Some(inventory.clone().recipient()),
        serial: true,
        home: home.clone(),
    })
}

/// What reserving came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Every line is held (now, or by an earlier reservation of the same order, made at `created_at`).
    Reserved {
        reservation_id: String,
        items: Vec<SkuQuantity>,
        created_at: chrono::DateTime<chrono::Utc>,
    },
    /// Nothing was held, because of the first SKU (in SKU order) that could not be reserved.
    Refused(Refusal),
}

/// Why a reservation held nothing: `reason` (`INSUFFICIENT_STOCK` or `UNKNOWN_SKU`) for `sku_id`, of
/// which `requested` units were asked and `available` were there (`None`: the SKU is unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub sku_id: String,
    pub requested: i32,
    pub available: Option<i64>,
}

impl Refusal {
    /// The refusal as the seed system's reservation resource says it:
    /// `INSUFFICIENT_STOCK:SKU-001 available=1 requested=2`, or `SKU_NOT_FOUND:SKU-001`.
    pub fn detail(&self) -> String {
        match self.available {
            Some(available) => format!(
                "{}:{} available={available} requested={}",
                self.reason, self.sku_id, self.requested
            ),
            None => format!("SKU_NOT_FOUND:{}", self.sku_id),
        }
    }

    fn unknown(item: &SkuQuantity) -> Reservation {
        Reservation::Refused(Refusal {
            reason: UNKNOWN_SKU,
            sku_id: item.sku_id.clone(),
            requested: item.quantity,
            available: None,
        })
    }
}

/// Quantities per SKU, merged and ordered by SKU (a stable locking order).
fn merge(items: &[SkuQuantity]) -> Vec<SkuQuantity> {
    let mut merged: BTreeMap<&str, i32> = BTreeMap::new();
    for item in items {
        *merged.entry(&item.sku_id).or_default() += item.quantity;
    }
    merged
        .into_iter()
        .map(|(sku_id, quantity)| SkuQuantity {
            sku_id: sku_id.to_owned(),
            quantity,
        })
        .collect()
}

/// The stock rows that match `condition`, locked in key order: the one order in which every batch locks
/// stock (reservations and releases alike), so that two batches on the same rows wait for each other
/// instead of deadlocking.
fn locked_in_key_order(condition: impl sea_orm::sea_query::IntoCondition) -> sea_orm::Select<stocks::Entity> {
    use sea_orm::QuerySelect;
    stocks::Entity::find()
        .filter(condition)
        .order_by_asc(stocks::Column::SkuId)
        .lock_exclusive()
}

/// Moves `quantity` units of a SKU from available to reserved (a negative quantity moves them back),
/// counting `changes` changes in `version`. Relative, so concurrent moves of one SKU never overwrite each
/// other.
fn move_to_reserved(
    sku_id: &str,
    quantity: i64,
    changes: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> sea_orm::UpdateMany<stocks::Entity> {
    stocks::Entity::update_many()
        .col_expr(
            stocks::Column::AvailableQty,
            Expr::col(stocks::Column::AvailableQty).sub(quantity),
        )
        .col_expr(
            stocks::Column::ReservedQty,
            Expr::col(stocks::Column::ReservedQty).add(quantity),
        )
        .col_expr(
            stocks::Column::Version,
            Expr::col(stocks::Column::Version).add(changes),
        )
        .col_expr(stocks::Column::UpdatedAt, Expr::value(now))
        .filter(stocks::Column::SkuId.eq(sku_id))
}

/// A new reservation row that holds its stock.
fn held(
    reservation_id: &str,
    order_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> inventory_reservations::ActiveModel {
    inventory_reservations::ActiveModel {
        id: Set(reservation_id.to_owned()),
        order_id: Set(order_id.to_owned()),
        status: Set(ReservationStatus::Reserved.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        released_at: Set(None),
    }
}

/// Reserves all lines of an order or none, inside the caller's transaction. Stock rows are read and
/// checked, then each is decremented on the condition that it still holds the quantity; when one no
/// longer does (another writer took the stock meanwhile) the answer is a [`ConsumeError::Conflict`] and
/// the caller runs the whole reservation again, which then refuses it.
///
/// With `idempotent`, an order that already has a reservation gets that one back (the direct reservation
/// API). The consumer of `order.created` passes `false`: its inbox already guarantees one reservation per
/// event, and the unique reservation per order refuses a second one.
pub async fn reserve(
    txn: &impl ConnectionTrait,
    order_id: &str,
    items: &[SkuQuantity],
    idempotent: bool,
) -> Result<Reservation, ConsumeError> {
    if idempotent
        && let Some(existing) = inventory_reservations::Entity::find()
            .filter(inventory_reservations::Column::OrderId.eq(order_id))
            .one(txn)
            .await?
    {
        let held = inventory_reservation_items::Entity::find()
            .filter(inventory_reservation_items::Column::ReservationId.eq(existing.id.as_str()))
            .order_by_asc(inventory_reservation_items::Column::SkuId)
            .all(txn)
            .await?;
        let items = held
            .into_iter()
            .map(|i| SkuQuantity {
                sku_id: i.sku_id,
                quantity: i.quantity,
            })
            .collect();
        return Ok(Reservation::Reserved {
            reservation_id: existing.id,
            items,
            created_at: existing.created_at,
        });
    }
    let wanted = merge(items);
    let rows = stocks::Entity::find()
        .filter(stocks::Column::SkuId.is_in(wanted.iter().map(|i| i.sku_id.as_str())))
        .all(txn)
        .await?;
    let by_sku: BTreeMap<&str, &stocks::Model> = rows.iter().map(|r| (r.sku_id.as_str(), r)).collect();
    for item in &wanted {
        match by_sku.get(item.sku_id.as_str()) {
            None => return Ok(Refusal::unknown(item)),
            Some(row) if row.available_qty < i64::from(item.quantity) => {
                return Ok(Reservation::Refused(Refusal {
                    reason: INSUFFICIENT_STOCK,
                    sku_id: item.sku_id.clone(),
                    requested: item.quantity,
                    available: Some(row.available_qty),
                }));
            }
            Some(_) => {}
        }
    }
    // The stock rows (each conditioned on still holding the quantity), the reservation and its lines go
    // to the database together; a stock row that ran short meanwhile shows as one row short.
    let now = db::now();
    let backend = txn.get_database_backend();
    let mut writes = db::Writes::new();
    for item in &wanted {
        let Some(row) = by_sku.get(item.sku_id.as_str()) else {
            return Ok(Refusal::unknown(item));
        };
        let quantity = i64::from(item.quantity);
        writes.push(
            backend,
            &move_to_reserved(&row.sku_id, quantity, 1, now)
                .filter(stocks::Column::AvailableQty.gte(quantity)),
        );
    }
    let reservation_id = db::new_id();
    writes.push(
        backend,
        &inventory_reservations::Entity::insert(held(&reservation_id, order_id, now)),
    );
    writes.push(
        backend,
        &inventory_reservation_items::Entity::insert_many(wanted.iter().map(|item| {
            inventory_reservation_items::ActiveModel {
                reservation_id: Set(reservation_id.clone()),
                sku_id: Set(item.sku_id.clone()),
                quantity: Set(item.quantity),
                ..Default::default()
            }
        })),
    );
    let expected = 2 * wanted.len() as u64 + 1;
    let written = writes
        .execute(txn)
        .await
        .map_err(|e| match db::is_unique_violation(&e) {
            // Another request reserved for the order at the same time: the next attempt finds its
            // reservation and answers it.
            true if idempotent => ConsumeError::Conflict(format!("order {order_id} was reserved meanwhile")),
            _ => ConsumeError::from(e),
        })?;
    if written != expected {
        return Err(ConsumeError::Conflict(format!(
            "stock of order {order_id} ran short while it was reserved"
        )));
    }
    metrics::counter!("inventory_reservations_total").increment(1);
    Ok(Reservation::Reserved {
        reservation_id,
        items: wanted,
        created_at: now,
    })
}

impl Handler<Apply> for InventoryActor {
    type Result = ResponseFuture<Result<Effects, ConsumeError>>;

    fn handle(&mut self, msg: Apply, _: &mut Self::Context) -> Self::Result {
        let cache = self.cache.clone();
        // After the commit, the stock these SKUs show is no longer what the cache may hold.
        let invalidate = move |skus: Vec<String>| move || cache.invalidate(CacheName::Stocks, skus);
        Box::pin(async move {
            let envelope: &Envelope = &msg.envelope;
            let txn = msg.txn.as_ref();
            match &envelope.event {
                Event::OrderCreated(order) => {
                    let lines: Vec<SkuQuantity> = order
                        .items
                        .iter()
                        .map(|l| SkuQuantity {
                            sku_id: l.sku_id.clone(),
                            quantity: l.quantity,
                        })
                        .collect();
                    if lines.is_empty() || lines.iter().any(|l| l.quantity < 1) {
                        return Err(ConsumeError::Poison(
                            "an order needs lines with quantity ≥ 1".into(),
                        ));
                    }
                    let in_batch = msg.batch.as_ref().and_then(|b| b.downcast_ref::<StockBatch>());
                    let reservation = match in_batch {
                        Some(batch) => batch.reserve(&order.order_id, &lines)?,
                        None => reserve(txn, &order.order_id, &lines, false).await?,
                    };
                    match reservation {
                        Reservation::Reserved {
                            reservation_id,
                            items,
                            ..
                        } => {
                            let skus = items.iter().map(|i| i.sku_id.clone()).collect();
                            let event = Event::InventoryReserved(InventoryReserved {
                                order_id: order.order_id.clone(),
                                reservation_id,
                                reserved_items: items,
                            });
                            Ok(Effects::publish(envelope.caused(event)).and_then(invalidate(skus)))
                        }
                        Reservation::Refused(refusal) => {
                            let event = Event::InventoryFailed(InventoryFailed {
                                order_id: order.order_id.clone(),
                                reservation_id: None,
                                reason: refusal.reason.to_owned(),
                            });
                            Ok(Effects::publish(envelope.caused(event)))
                        }
                    }
                }
                Event::InventoryReleaseRequested(request) => {
                    let in_batch = msg.batch.as_ref().and_then(|b| b.downcast_ref::<ReleaseBatch>());
                    let released = match in_batch {
                        Some(batch) => {
                            batch.release(&request.order_id, &request.reason, &envelope.trace_id)?
                        }
                        None => release(txn, &request.order_id, &request.reason, &envelope.trace_id).await?,
                    };
                    match released {
                        Some(released) => {
                            let skus = released.released_items.iter().map(|i| i.sku_id.clone()).collect();
                            // Counted once committed: a batch that fails and runs again message by
                            // message counts each release once.
                            let reason = released.reason.clone();
                            let counted = move || {
                                metrics::counter!("inventory_releases_total", "reason" => reason).increment(1)
                            };
                            Ok(
                                Effects::publish(envelope.caused(Event::InventoryReleased(released)))
                                    .and_then(invalidate(skus))
                                    .and_then(counted),
                            )
                        }
                        None => Ok(Effects::none()),
                    }
                }
                other => Err(ConsumeError::Poison(format!(
                    "{} is not for the inventory",
                    other.event_type()
                ))),
            }
        })
    }
}

impl Handler<Prefetch> for InventoryActor {
    type Result = ResponseFuture<Result<Option<Prefetched>, ConsumeError>>;

    /// For a batch of `order.created` events, the stock rows of all their lines, read and locked once;
    /// for a batch of releases, the stock rows they give back to, locked in the same order, and their
    /// reservations read once.
    fn handle(&mut self, msg: Prefetch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            let releasing: Vec<&str> = msg
                .envelopes
                .iter()
                .filter_map(|e| match &e.event {
                    Event::InventoryReleaseRequested(request) => Some(request.order_id.as_str()),
                    _ => None,
                })
                .collect();
            if !releasing.is_empty() {
                // A batch is one queue's: releases only.
                let batch = ReleaseBatch::read(msg.txn.as_ref(), &releasing).await?;
                return Ok(Some(Arc::new(batch) as Prefetched));
            }
            let skus = msg.envelopes.iter().flat_map(|e| match &e.event {
                Event::OrderCreated(order) => order.items.iter().map(|l| l.sku_id.as_str()).collect(),
                _ => Vec::new(),
            });
            let batch = StockBatch::read(msg.txn.as_ref(), skus).await?;
            Ok(Some(Arc::new(batch) as Prefetched))
        })
    }
}

impl Handler<FinishBatch> for InventoryActor {
    type Result = ResponseFuture<Result<(), ConsumeError>>;

    /// The batch's stock changes, reservations and lines (or releases and their audit rows), written
    /// together.
    fn handle(&mut self, msg: FinishBatch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            if let Some(batch) = msg.batch.downcast_ref::<StockBatch>() {
                return batch.write(msg.txn.as_ref()).await;
            }
            match msg.batch.downcast_ref::<ReleaseBatch>() {
                Some(batch) => batch.write(msg.txn.as_ref()).await,
                None => Ok(()),
            }
        })
    }
}

/// Reserves stock for an order directly (`POST /api/stocks/reserve`, `POST /api/stocks/reservations`),
/// all or nothing, idempotent per order.
#[derive(Message, Debug)]
#[rtype(result = "Result<Reservation, InventoryError>")]
pub struct Reserve {
    pub order_id: OrderId,
    pub items: Vec<SkuQuantity>,
}

impl Handler<Reserve> for InventoryActor {
    type Result = ResponseFuture<Result<Reservation, InventoryError>>;

    fn handle(&mut self, msg: Reserve, _: &mut Self::Context) -> Self::Result {
        let (db, cache) = (self.db.clone(), self.cache.clone());
        Box::pin(db::bounded(async move {
            for _ in 0..MAX_CONFLICT_RETRIES {
                let txn = db::begin_write(&db).await?;
                match reserve(&txn, msg.order_id.as_str(), &msg.items, true).await {
                    Ok(reservation) => {
                        txn.commit().await?;
                        if let Reservation::Reserved { items, .. } = &reservation {
                            let skus: Vec<String> = items.iter().map(|i| i.sku_id.clone()).collect();
                            cache.invalidate_now(CacheName::Stocks, &skus).await;
                        }
                        return Ok(reservation);
                    }
                    Err(ConsumeError::Conflict(_)) => continue,
                    Err(ConsumeError::Transient(e) | ConsumeError::Unavailable(e)) => {
                        return Err(InventoryError::Unavailable(e));
                    }
                    Err(ConsumeError::Poison(e)) => return Err(InventoryError::InvalidRequest(e)),
                }
            }
            Err(InventoryError::Contended)
        }))
    }
}
