//! Releases: a reservation's stock given back, once, with its audit row.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, Set, Statement,
};

use super::ReservationStatus;
use crate::db;
use crate::envelope::{InventoryReleased, SkuQuantity};
use crate::mailbox::ConsumeError;
use entities::{inventory_release_events, inventory_reservation_items, inventory_reservations, stocks};

/// Gives an order's reserved stock back and writes the release audit row, inside the caller's
/// transaction. `None` when the reservation was released before (nothing happens twice).
pub async fn release(
    txn: &impl ConnectionTrait,
    order_id: &str,
    reason: &str,
    trace_id: &str,
) -> Result<Option<InventoryReleased>, ConsumeError> {
    let now = db::now();
    let taken = match txn.get_database_backend() {
        DbBackend::Postgres => take_back_together(txn, order_id, now).await?,
        _ => take_back(txn, order_id, now).await?,
    };
    let (reservation_id, released_items) = match taken {
        TakenBack::Released {
            reservation_id,
            items,
        } => (reservation_id, items),
        TakenBack::Before => return Ok(None),
        TakenBack::NoReservation => {
            return Err(ConsumeError::Poison(format!(
                "no reservation for order {order_id}"
            )));
        }
    };
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
        reservation_id: Set(reservation_id.clone()),
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
        reservation_id,
        reason: reason.to_owned(),
        released_items,
    }))
}

/// What taking a reservation's stock back found.
enum TakenBack {
    /// The reservation is `RELEASED` now and its stock is back.
    Released {
        reservation_id: String,
        items: Vec<SkuQuantity>,
    },
    /// It had been released before.
    Before,
    /// The order has no reservation.
    NoReservation,
}

/// Flips the order's reservation to `RELEASED` and adds its lines back to the stock, statement by
/// statement.
async fn take_back(
    txn: &impl ConnectionTrait,
    order_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<TakenBack, ConsumeError> {
    let Some(reservation) = inventory_reservations::Entity::find()
        .filter(inventory_reservations::Column::OrderId.eq(order_id))
        .one(txn)
        .await?
    else {
        return Ok(TakenBack::NoReservation);
    };
    if reservation.status == ReservationStatus::Released.as_str() {
        return Ok(TakenBack::Before);
    }
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
        let quantity = i64::from(item.quantity);
        stocks::Entity::update_many()
            .col_expr(
                stocks::Column::AvailableQty,
                Expr::col(stocks::Column::AvailableQty).add(quantity),
            )
            .col_expr(
                stocks::Column::ReservedQty,
                Expr::col(stocks::Column::ReservedQty).sub(quantity),
            )
            .col_expr(stocks::Column::Version, Expr::col(stocks::Column::Version).add(1))
            .col_expr(stocks::Column::UpdatedAt, Expr::value(now))
            .filter(stocks::Column::SkuId.eq(item.sku_id.as_str()))
            .exec(txn)
            .await?;
    }
    Ok(TakenBack::Released {
        reservation_id: reservation.id,
        items: held
            .into_iter()
            .map(|i| SkuQuantity {
                sku_id: i.sku_id,
                quantity: i.quantity,
            })
            .collect(),
    })
}

/// [`take_back`] as one PostgreSQL statement: the flip, the stock updates joined to the reservation's
/// lines, and the lines answered. The release consumer is one worker on the hot stock rows, so the
/// statements it waits for are its throughput; this is two instead of five for a release. Nothing
/// flipped (released before, or no reservation) is told apart by one more read.
async fn take_back_together(
    txn: &impl ConnectionTrait,
    order_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<TakenBack, ConsumeError> {
    const SQL: &str = "WITH r AS (\
            UPDATE inventory_reservations SET status = $2, released_at = $3, updated_at = $3 \
            WHERE order_id = $1 AND status = $4 RETURNING id), \
        s AS (\
            UPDATE stocks SET available_qty = stocks.available_qty + i.quantity, \
                reserved_qty = stocks.reserved_qty - i.quantity, version = stocks.version + 1, \
                updated_at = $3 \
            FROM inventory_reservation_items i JOIN r ON i.reservation_id = r.id \
            WHERE stocks.sku_id = i.sku_id RETURNING stocks.sku_id, i.quantity) \
        SELECT r.id AS reservation_id, s.sku_id, s.quantity FROM r LEFT JOIN s ON true ORDER BY s.sku_id";
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            SQL,
            [
                order_id.into(),
                ReservationStatus::Released.as_str().into(),
                now.into(),
                ReservationStatus::Reserved.as_str().into(),
            ],
        ))
        .await?;
    let Some(first) = rows.first() else {
        let status = inventory_reservations::Entity::find()
            .filter(inventory_reservations::Column::OrderId.eq(order_id))
            .one(txn)
            .await?
            .map(|r| r.status);
        return Ok(match status {
            None => TakenBack::NoReservation,
            Some(s) if s == ReservationStatus::Released.as_str() => TakenBack::Before,
            Some(s) => {
                return Err(ConsumeError::Conflict(format!(
                    "the reservation of order {order_id} is {s}"
                )));
            }
        });
    };
    let reservation_id = first.try_get::<String>("", "reservation_id")?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(sku_id) = row.try_get::<Option<String>>("", "sku_id")? {
            items.push(SkuQuantity {
                sku_id,
                quantity: row.try_get::<i32>("", "quantity")?,
            });
        }
    }
    Ok(TakenBack::Released {
        reservation_id,
        items,
    })
}
