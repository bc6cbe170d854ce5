//! Dead letters: what the consumers gave up on.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::mailbox::dead_letters::DeadLetterStatus;
use entities::dead_letters;

/// A page of dead letters, newest first, optionally of one consumer and status.
pub async fn page(
    db: &impl ConnectionTrait,
    consumer: Option<&str>,
    status: Option<DeadLetterStatus>,
    page: u64,
    size: u64,
) -> Result<(Vec<dead_letters::Model>, u64), DbErr> {
    let mut query = dead_letters::Entity::find();
    if let Some(consumer) = consumer {
        query = query.filter(dead_letters::Column::Consumer.eq(consumer));
    }
    if let Some(status) = status {
        query = query.filter(dead_letters::Column::Status.eq(status.as_str()));
    }
    let newest_first = |q: sea_orm::Select<dead_letters::Entity>| {
        q.order_by_desc(dead_letters::Column::CreatedAt)
            .order_by_desc(dead_letters::Column::Id)
    };
    super::page(db, query, newest_first, page, size).await
}

/// Dead letters of a trace (the messages one request caused), newest first.
pub async fn of_trace(db: &impl ConnectionTrait, trace_id: &str) -> Result<Vec<dead_letters::Model>, DbErr> {
    dead_letters::Entity::find()
        .filter(dead_letters::Column::TraceId.eq(trace_id))
        .order_by_desc(dead_letters::Column::CreatedAt)
        .order_by_desc(dead_letters::Column::Id)
        .all(db)
        .await
}

/// How many dead letters there are per consumer and status.
pub async fn counts(db: &impl ConnectionTrait) -> Result<Vec<(String, String, u64)>, DbErr> {
    use dead_letters::Column;
    let mut rows: Vec<(String, String, i64)> = dead_letters::Entity::find()
        .select_only()
        .column(Column::Consumer)
        .column(Column::Status)
        .column_as(Column::Id.count(), "n")
        .group_by(Column::Consumer)
        .group_by(Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    rows.sort();
    Ok(rows
        .into_iter()
        .map(|(consumer, status, n)| (consumer, status, n.max(0) as u64))
        .collect())
}
