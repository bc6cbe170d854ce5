//! Orders with their lines, live or archived.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::archive::ArchivedLine;
use entities::{order_items, orders, orders_archive};

/// An order with its lines.
#[derive(Clone, Debug)]
pub struct OrderRecord {
    pub order: orders::Model,
    pub items: Vec<order_items::Model>,
}

/// The lines of an order, in their order.
pub async fn lines_of(db: &impl ConnectionTrait, order_id: &str) -> Result<Vec<order_items::Model>, DbErr> {
    order_items::Entity::find()
        .filter(order_items::Column::OrderId.eq(order_id))
        .order_by_asc(order_items::Column::LineNo)
        .all(db)
        .await
}

/// An order by id, from the live table or the archive.
pub async fn find(db: &impl ConnectionTrait, order_id: &str) -> Result<Option<OrderRecord>, DbErr> {
    // The order and its lines in one statement (a join): an order is read far more often than placed
    // (its buyer polls it until it ends).
    let live = orders::Entity::find_by_id(order_id.to_owned())
        .find_with_related(order_items::Entity)
        .order_by_asc(order_items::Column::LineNo)
        .all(db)
        .await?;
    if let Some((order, items)) = live.into_iter().next() {
        return Ok(Some(OrderRecord { order, items }));
    }
    let Some(archived) = orders_archive::Entity::find_by_id(order_id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let lines: Vec<ArchivedLine> =
        serde_json::from_str(&archived.items).map_err(|e| DbErr::Json(format!("archived items: {e}")))?;
    let items = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| order_items::Model {
            id: 0,
            order_id: archived.id.clone(),
            line_no: i as i32 + 1,
            sku_id: l.sku_id,
            quantity: l.quantity,
            price: l.price,
        })
        .collect();
    let order = orders::Model {
        id: archived.id,
        user_id: archived.user_id,
        status: archived.status,
        total_amount: archived.total_amount,
        failure_reason: archived.failure_reason,
        idempotency_key: archived.idempotency_key,
        request_hash: archived.request_hash,
        trace_id: archived.trace_id,
        created_at: archived.created_at,
        updated_at: archived.updated_at,
    };
    Ok(Some(OrderRecord { order, items }))
}
