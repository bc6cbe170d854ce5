//! Releases: a reservation's stock given back, once, with its audit row.

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::{ReservationStatus, locked_in_key_order, move_to_reserved};
use crate::db;
use crate::envelope::{InventoryReleased, SkuQuantity};
use crate::mailbox::ConsumeError;
use entities::{inventory_release_events, inventory_reservation_items, inventory_reservations, stocks};

/// Locks, in key order, the stock rows the reservations of `order_ids` hold, before a batch of their
/// releases gives the units back one order at a time. The reservation batches lock their rows in the same
/// order ([`locked_in_key_order`]), so a batch of releases and a batch of reservations of the
/// same SKUs wait for each other instead of deadlocking (which PostgreSQL would find only after its
/// `deadlock_timeout`, a second, and answer by failing one of the batches).
pub async fn lock_stock(txn: &impl ConnectionTrait, order_ids: &[&str]) -> Result<(), ConsumeError> {
    use inventory_reservation_items::Column as Item;
    use inventory_reservations::Column as Held;
    if order_ids.is_empty() {
        return Ok(());
    }
    let held_skus = Query::select()
        .column((inventory_reservation_items::Entity, Item::SkuId))
        .from(inventory_reservation_items::Entity)
        .inner_join(
            inventory_reservations::Entity,
            Expr::col((inventory_reservations::Entity, Held::Id))
                .equals((inventory_reservation_items::Entity, Item::ReservationId)),
        )
        .and_where(
            Expr::col((inventory_reservations::Entity, Held::OrderId)).is_in(order_ids.iter().copied()),
        )
        .to_owned();
    locked_in_key_order(stocks::Column::SkuId.in_subquery(held_skus))
        .select_only()
        .column(stocks::Column::SkuId)
        .into_tuple::<String>()
        .all(txn)
        .await?;
    Ok(())
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
        .ok_or_else(|| ConsumeError::Poison(format!("no reservation for order {order_id}")))?;
    if reservation.status == ReservationStatus::Released.as_str() {
        return Ok(None);
    }
    let now = db::now();
    let flipped = inventory_reservations::Entity::update_many()
        .col_expr(
            inventory_reservations::Column::Status,
            Expr::value(ReservationStatus::Released.as_str()),
        )
        .col_expr(inventory_reservations::Column::ReleasedAt, Expr::value(now))
        .col_expr(inventory_reservations::Column::UpdatedAt, Expr::value(now))
        .filter(inventory_reservations::Column::Id.eq(reservation.id.as_str()))
        .filter(inventory_reservations::Column::Status.eq(ReservationStatus::Reserved.as_str()))
        .exec(txn)
        .await?;
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
    let released_json = serde_json::to_string(
        &released_items
            .iter()
            .map(|i| serde_json::json!({"skuId": i.sku_id, "quantity": i.quantity}))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ConsumeError::Transient(e.to_string()))?;
    inventory_release_events::Entity::insert(inventory_release_events::ActiveModel {
        id: Set(release_id.clone()),
        order_id: Set(order_id.to_owned()),
        reservation_id: Set(reservation.id.clone()),
        reason: Set(reason.to_owned()),
        released_items: Set(released_json),
        trace_id: Set(trace_id.to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    metrics::counter!("inventory_releases_total", "reason" => reason.to_owned()).increment(1);
    Ok(Some(InventoryReleased {
        release_id,
        order_id: order_id.to_owned(),
        reservation_id: reservation.id,
        reason: reason.to_owned(),
        released_items,
    }))
}
