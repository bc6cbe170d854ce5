//! Events as the outbox keeps them.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use entities::outbox_events;

/// The events emitted for an order (from the outbox), in the order they were committed.
pub async fn of_order(db: &impl ConnectionTrait, order_id: &str) -> Result<Vec<outbox_events::Model>, DbErr> {
    outbox_events::Entity::find()
        .filter(outbox_events::Column::AggregateId.eq(order_id))
        .order_by_asc(outbox_events::Column::Id)
        .all(db)
        .await
}
