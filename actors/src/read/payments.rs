//! The payment ledger.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use entities::payment_records;

/// The payment record of an order, if it was charged (or declined, or refunded).
pub async fn of_order(
    db: &impl ConnectionTrait,
    order_id: &str,
) -> Result<Option<payment_records::Model>, DbErr> {
    payment_records::Entity::find()
        .filter(payment_records::Column::OrderId.eq(order_id))
        .one(db)
        .await
}
