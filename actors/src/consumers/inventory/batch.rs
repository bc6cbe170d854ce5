//! Reservations in batches: the stock rows of a batch of `order.created` events read and locked once,
//! each order decided against them in memory, and the stock written once per SKU when the batch ends,
//! with all its reservations and their lines.
//!
//! Deciding in memory is exact because the rows stay locked until the batch commits (`FOR UPDATE` on
//! PostgreSQL and MySQL, SQLite's one writer): nobody else changes them in between. The writes keep
//! their conditions anyway (`available_qty >= q`): a stock row that does not hold what the batch took
//! fails the batch, which then runs one message at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{INSUFFICIENT_STOCK, Refusal, Reservation, held, locked_in_key_order, merge, move_to_reserved};
use crate::db;
use crate::envelope::SkuQuantity;
use crate::mailbox::ConsumeError;
use entities::{inventory_reservation_items, inventory_reservations, stocks};

/// What the batch's reservations so far took, and the rows they are to write.
#[derive(Debug, Default)]
struct Taken {
    /// Available units per known SKU, as the batch's reservations so far left them.
    available: BTreeMap<String, i64>,
    /// Units moved to reserved per SKU, and by how many reservations.
    moved: BTreeMap<String, (i64, i64)>,
    reservations: Vec<inventory_reservations::ActiveModel>,
    items: Vec<inventory_reservation_items::ActiveModel>,
    /// The orders the batch decided.
    orders: BTreeSet<String>,
}

/// The stock of a batch of orders, read and locked in one statement before the first of them is
/// decided ([`crate::mailbox::Prefetch`]), and written when the batch ends ([`StockBatch::write`]).
#[derive(Debug, Default)]
pub struct StockBatch(Mutex<Taken>);

impl StockBatch {
    /// Reads and locks the stock rows of `skus`, in key order (one locking order for every batch).
    pub async fn read<'a>(
        txn: &impl ConnectionTrait,
        skus: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConsumeError> {
        let skus: BTreeSet<&str> = skus.into_iter().collect();
        let rows = locked_in_key_order(stocks::Column::SkuId.is_in(skus))
            .all(txn)
            .await?;
        Ok(StockBatch(Mutex::new(Taken {
            available: rows.into_iter().map(|r| (r.sku_id, r.available_qty)).collect(),
            ..Taken::default()
        })))
    }

    /// Reserves all lines of an order or none against the batch's stock, as
    /// [`super::reserve`] would against the rows: refused for the first SKU (in SKU order) that is
    /// unknown or short. The rows are written by [`StockBatch::write`].
    pub fn reserve(&self, order_id: &str, items: &[SkuQuantity]) -> Result<Reservation, ConsumeError> {
        let mut taken = self
            .0
            .lock()
            .map_err(|_| ConsumeError::Transient("the batch's stock is unusable".into()))?;
        if !taken.orders.insert(order_id.to_owned()) {
            // Two reservations for one order in one batch: run one at a time, the unique reservation per
            // order refuses the second.
            return Err(ConsumeError::Conflict(format!(
                "order {order_id} twice in one batch"
            )));
        }
        let wanted = merge(items);
        for item in &wanted {
            match taken.available.get(&item.sku_id) {
                None => return Ok(Refusal::unknown(item)),
                Some(&available) if available < i64::from(item.quantity) => {
                    return Ok(Reservation::Refused(Refusal {
                        reason: INSUFFICIENT_STOCK,
                        sku_id: item.sku_id.clone(),
                        requested: item.quantity,
                        available: Some(available),
                    }));
                }
                Some(_) => {}
            }
        }
        let now = db::now();
        let reservation_id = db::new_id();
        for item in &wanted {
            let quantity = i64::from(item.quantity);
            if let Some(available) = taken.available.get_mut(&item.sku_id) {
                *available -= quantity;
            }
            let moved = taken.moved.entry(item.sku_id.clone()).or_default();
            moved.0 += quantity;
            moved.1 += 1;
            taken.items.push(inventory_reservation_items::ActiveModel {
                reservation_id: Set(reservation_id.clone()),
                sku_id: Set(item.sku_id.clone()),
                quantity: Set(item.quantity),
                ..Default::default()
            });
        }
        taken.reservations.push(held(&reservation_id, order_id, now));
        metrics::counter!("inventory_reservations_total").increment(1);
        Ok(Reservation::Reserved {
            reservation_id,
            items: wanted,
            created_at: now,
        })
    }

    /// Writes what the batch took: one conditional update per SKU, the reservations and their lines, in
    /// one round trip. A stock row short of it is a [`ConsumeError::Conflict`].
    pub async fn write(&self, txn: &impl ConnectionTrait) -> Result<(), ConsumeError> {
        let taken = match self.0.lock() {
            Ok(mut taken) => std::mem::take(&mut *taken),
            Err(_) => return Err(ConsumeError::Transient("the batch's stock is unusable".into())),
        };
        if taken.reservations.is_empty() {
            return Ok(());
        }
        let now = db::now();
        let backend = txn.get_database_backend();
        let mut writes = db::Writes::new();
        for (sku_id, (quantity, changes)) in &taken.moved {
            writes.push(
                backend,
                &move_to_reserved(sku_id, *quantity, *changes, now)
                    .filter(stocks::Column::AvailableQty.gte(*quantity)),
            );
        }
        let expected = (taken.moved.len() + taken.reservations.len() + taken.items.len()) as u64;
        writes.push(
            backend,
            &inventory_reservations::Entity::insert_many(taken.reservations),
        );
        writes.push(
            backend,
            &inventory_reservation_items::Entity::insert_many(taken.items),
        );
        if writes.execute(txn).await? != expected {
            return Err(ConsumeError::Conflict(
                "stock ran short under a batch of reservations".into(),
            ));
        }
        Ok(())
    }
}
