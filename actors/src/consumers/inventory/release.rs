//! Releases: a reservation's stock given back, once, with its audit row; alone, or in batches.
//!
//! A batch of releases reads its reservations and their lines in one statement, then locks the stock
//! rows they give back to, in key order. Each release is decided against what it read, and the
//! batch writes once when it ends: the reservations flipped (on the condition that they still hold
//! their stock), one relative update per SKU, and the audit rows. A reservation that changed meanwhile
//! leaves the flip a row short, which fails the batch; it then runs one message at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{ReservationStatus, locked_in_key_order, move_to_reserved};
use crate::db;
use crate::envelope::{InventoryReleased, SkuQuantity};
use crate::mailbox::ConsumeError;
use entities::{inventory_release_events, inventory_reservation_items, inventory_reservations, stocks};

/// `(order id, reservation id, status, SKU, quantity)`: a reservation's line as a batch of releases
/// reads it (no SKU for a reservation without lines).
type HeldLine = (String, String, String, Option<String>, Option<i32>);

/// An order's reservation as a batch of releases read it.
#[derive(Debug)]
struct Held {
    reservation_id: String,
    released: bool,
    /// Its lines, in SKU order.
    items: Vec<SkuQuantity>,
}

/// What the batch's releases so far gave back, and the rows they are to write.
#[derive(Debug, Default)]
struct Giving {
    /// The reservation of each order of the batch that has one.
    held: HashMap<String, Held>,
    /// Units given back per SKU, and by how many releases.
    moved: BTreeMap<String, (i64, i64)>,
    /// The reservations to flip to released.
    flipped: Vec<String>,
    audit: Vec<inventory_release_events::ActiveModel>,
    /// The orders the batch decided.
    orders: BTreeSet<String>,
}

/// The reservations of a batch of release requests, read once after their stock rows are locked
/// ([`crate::mailbox::Prefetch`]), and what the batch gives back, written when it ends
/// ([`ReleaseBatch::write`]).
#[derive(Debug, Default)]
pub struct ReleaseBatch(Mutex<Giving>);

impl ReleaseBatch {
    /// Reads the reservations of `order_ids` with their lines, then locks the stock rows those still
    /// holding their stock give back to, in key order. The reservation batches lock their rows in the
    /// same order ([`locked_in_key_order`]), so a batch of releases and a batch of reservations of the
    /// same SKUs wait for each other instead of deadlocking (which PostgreSQL would find only after its
    /// `deadlock_timeout`, a second, and answer by failing one of the batches).
    pub async fn read(txn: &impl ConnectionTrait, order_ids: &[&str]) -> Result<Self, ConsumeError> {
        use inventory_reservation_items::Column as Item;
        use inventory_reservations::Column as R;
        let rows: Vec<HeldLine> = inventory_reservations::Entity::find()
            .select_only()
            .columns([R::OrderId, R::Id, R::Status])
            .column(Item::SkuId)
            .column(Item::Quantity)
            .join_rev(
                JoinType::LeftJoin,
                inventory_reservation_items::Entity::belongs_to(inventory_reservations::Entity)
                    .from(Item::ReservationId)
                    .to(R::Id)
                    .into(),
            )
            .filter(R::OrderId.is_in(order_ids.iter().copied()))
            .order_by_asc(R::OrderId)
            .order_by_asc(Item::SkuId)
            .into_tuple()
            .all(txn)
            .await?;
        let mut held: HashMap<String, Held> = HashMap::with_capacity(order_ids.len());
        for (order_id, reservation_id, status, sku_id, quantity) in rows {
            let entry = held.entry(order_id).or_insert_with(|| Held {
                reservation_id,
                released: status == ReservationStatus::Released.as_str(),
                items: Vec::new(),
            });
            if let (Some(sku_id), Some(quantity)) = (sku_id, quantity) {
                entry.items.push(SkuQuantity { sku_id, quantity });
            }
        }
        let giving_back: BTreeSet<&str> = held
            .values()
            .filter(|h| !h.released)
            .flat_map(|h| h.items.iter().map(|i| i.sku_id.as_str()))
            .collect();
        if !giving_back.is_empty() {
            locked_in_key_order(stocks::Column::SkuId.is_in(giving_back))
                .select_only()
                .column(stocks::Column::SkuId)
                .into_tuple::<String>()
                .all(txn)
                .await?;
        }
        Ok(ReleaseBatch(Mutex::new(Giving {
            held,
            ..Giving::default()
        })))
    }

    /// Gives an order's reserved stock back against what the batch read, as [`release`] would against
    /// the rows: `None` when its reservation was released before. The rows are written by
    /// [`ReleaseBatch::write`].
    pub fn release(
        &self,
        order_id: &str,
        reason: &str,
        trace_id: &str,
    ) -> Result<Option<InventoryReleased>, ConsumeError> {
        let mut giving = self
            .0
            .lock()
            .map_err(|_| ConsumeError::Transient("the batch's reservations are unusable".into()))?;
        if !giving.orders.insert(order_id.to_owned()) {
            // Two release requests for one order in one batch: run one at a time, the second finds
            // the reservation released.
            return Err(ConsumeError::Conflict(format!(
                "order {order_id} twice in one batch"
            )));
        }
        let Some(held) = giving.held.get(order_id) else {
            return Err(no_reservation(order_id));
        };
        if held.released {
            return Ok(None);
        }
        let reservation_id = held.reservation_id.clone();
        let released_items = held.items.clone();
        let now = db::now();
        for item in &released_items {
            let moved = giving.moved.entry(item.sku_id.clone()).or_default();
            moved.0 += i64::from(item.quantity);
            moved.1 += 1;
        }
        giving.flipped.push(reservation_id.clone());
        let release_id = db::new_id();
        giving.audit.push(audit_row(
            &release_id,
            order_id,
            &reservation_id,
            reason,
            &released_items,
            trace_id,
            now,
        )?);
        Ok(Some(InventoryReleased {
            release_id,
            order_id: order_id.to_owned(),
            reservation_id,
            reason: reason.to_owned(),
            released_items,
        }))
    }

    /// Writes what the batch gave back in one round trip: the reservations flipped (each only while it
    /// still holds its stock), one relative update per SKU and the audit rows. A reservation released
    /// meanwhile is a [`ConsumeError::Conflict`].
    pub async fn write(&self, txn: &impl ConnectionTrait) -> Result<(), ConsumeError> {
        let giving = match self.0.lock() {
            Ok(mut giving) => std::mem::take(&mut *giving),
            Err(_) => {
                return Err(ConsumeError::Transient(
                    "the batch's reservations are unusable".into(),
                ));
            }
        };
        if giving.flipped.is_empty() {
            return Ok(());
        }
        let now = db::now();
        let backend = txn.get_database_backend();
        let expected = (giving.flipped.len() + giving.moved.len() + giving.audit.len()) as u64;
        let mut writes = db::Writes::new();
        writes.push(backend, &flip(giving.flipped, now));
        for (sku_id, (quantity, changes)) in &giving.moved {
            writes.push(backend, &move_to_reserved(sku_id, -*quantity, *changes, now));
        }
        writes.push(
            backend,
            &inventory_release_events::Entity::insert_many(giving.audit),
        );
        if writes.execute(txn).await? != expected {
            return Err(ConsumeError::Conflict(
                "a reservation changed under a batch of releases".into(),
            ));
        }
        Ok(())
    }
}

fn no_reservation(order_id: &str) -> ConsumeError {
    ConsumeError::Poison(format!("no reservation for order {order_id}"))
}

/// Flips the reservations `ids` to released, each only while it still holds its stock.
fn flip(
    ids: Vec<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> sea_orm::UpdateMany<inventory_reservations::Entity> {
    inventory_reservations::Entity::update_many()
        .col_expr(
            inventory_reservations::Column::Status,
            Expr::value(ReservationStatus::Released.as_str()),
        )
        .col_expr(inventory_reservations::Column::ReleasedAt, Expr::value(now))
        .col_expr(inventory_reservations::Column::UpdatedAt, Expr::value(now))
        .filter(inventory_reservations::Column::Id.is_in(ids))
        .filter(inventory_reservations::Column::Status.eq(ReservationStatus::Reserved.as_str()))
}

/// The release audit row of a reservation.
fn audit_row(
    release_id: &str,
    order_id: &str,
    reservation_id: &str,
    reason: &str,
    released_items: &[SkuQuantity],
    trace_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<inventory_release_events::ActiveModel, ConsumeError> {
    let released_json = serde_json::to_string(
        &released_items
            .iter()
            .map(|i| serde_json::json!({"skuId": i.sku_id, "quantity": i.quantity}))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ConsumeError::Transient(e.to_string()))?;
    Ok(inventory_release_events::ActiveModel {
        id: Set(release_id.to_owned()),
        order_id: Set(order_id.to_owned()),
        reservation_id: Set(reservation_id.to_owned()),
        reason: Set(reason.to_owned()),
        released_items: Set(released_json),
        trace_id: Set(trace_id.to_owned()),
        created_at: Set(now),
    })
}

/// Gives an order's reserved stock back and writes the release audit row, inside the caller's
/// transaction. `None` when the reservation was released before (nothing happens twice).
pub async fn release(
    txn: &impl ConnectionTrait,
    order_id: &str,
    reason: &str,
    trace_id: &str,
) -> Result<Option<InventoryReleased>, ConsumeError> {
    let reservation = inventory_reservations::Entity::find()
        .filter(inventory_reservations::Column::OrderId.eq(order_id))
        .one(txn)
        .await?
        .ok_or_else(|| no_reservation(order_id))?;
    if reservation.status == ReservationStatus::Released.as_str() {
        return Ok(None);
    }
    let now = db::now();
    let flipped = flip(vec![reservation.id.clone()], now).exec(txn).await?;
    if flipped.rows_affected != 1 {
        return Err(ConsumeError::Conflict(format!(
            "reservation {} changed",
            reservation.id
        )));
    }
    let held = inventory_reservation_items::Entity::find()
        .filter(inventory_reservation_items::Column::ReservationId.eq(reservation.id.as_str()))
        .order_by_asc(inventory_reservation_items::Column::SkuId)
        .all(txn)
        .await?;
    for item in &held {
        move_to_reserved(&item.sku_id, -i64::from(item.quantity), 1, now)
            .exec(txn)
            .await?;
    }
    let released_items: Vec<SkuQuantity> = held
        .into_iter()
        .map(|i| SkuQuantity {
            sku_id: i.sku_id,
            quantity: i.quantity,
        })
        .collect();
    let release_id = db::new_id();
    inventory_release_events::Entity::insert(audit_row(
        &release_id,
        order_id,
        &reservation.id,
        reason,
        &released_items,
        trace_id,
        now,
    )?)
    .exec_without_returning(txn)
    .await?;
    Ok(Some(InventoryReleased {
        release_id,
        order_id: order_id.to_owned(),
        reservation_id: reservation.id,
        reason: reason.to_owned(),
        released_items,
    }))
}
