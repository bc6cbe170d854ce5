//! Notifications: one per `order.created` event, newest first (`created_at` descending, `id` descending
//! as the tie-break), for one order, one user, or everyone.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Select};

use entities::notifications;

/// Which notifications to read; both filters together narrow to their intersection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    pub order_id: Option<String>,
    pub user_id: Option<String>,
}

fn filtered(filter: &NotificationFilter) -> Select<notifications::Entity> {
    use notifications::Column;
    let mut query = notifications::Entity::find();
    if let Some(order_id) = &filter.order_id {
        query = query.filter(Column::OrderId.eq(order_id.as_str()));
    }
    if let Some(user_id) = &filter.user_id {
        query = query.filter(Column::UserId.eq(user_id.as_str()));
    }
    query
}

fn newest_first(query: Select<notifications::Entity>) -> Select<notifications::Entity> {
    query
        .order_by_desc(notifications::Column::CreatedAt)
        .order_by_desc(notifications::Column::Id)
}

/// One page of notifications (offset paging), newest first, and how many match the filter.
pub async fn page(
    db: &impl ConnectionTrait,
    filter: &NotificationFilter,
    page: u64,
    size: u64,
) -> Result<(Vec<notifications::Model>, u64), DbErr> {
    super::page(db, filtered(filter), newest_first, page, size).await
}
