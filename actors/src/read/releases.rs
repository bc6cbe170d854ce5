//! Release events (the release audit): newest first, `created_at` descending with `id` descending as the
//! tie-break. Keyset reads ([`releases_after`]) walk the `(created_at, id)` index from a position instead
//! of skipping rows, so a deep page costs what the first one does.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};

use entities::inventory_release_events;

/// Which release events to read. Both time bounds are inclusive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseFilter {
    pub order_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A place in the newest-first order of release events: the `(created_at, id)` of the last row read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: String,
}

impl From<&inventory_release_events::Model> for Position {
    fn from(row: &inventory_release_events::Model) -> Self {
        Position {
            created_at: row.created_at,
            id: row.id.clone(),
        }
    }
}

fn filtered(filter: &ReleaseFilter) -> Select<inventory_release_events::Entity> {
    use inventory_release_events::Column;
    let mut query = inventory_release_events::Entity::find();
    if let Some(order_id) = &filter.order_id {
        query = query.filter(Column::OrderId.eq(order_id.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(Column::CreatedAt.lte(to));
    }
    query
}

fn newest_first(query: Select<inventory_release_events::Entity>) -> Select<inventory_release_events::Entity> {
    query
        .order_by_desc(inventory_release_events::Column::CreatedAt)
        .order_by_desc(inventory_release_events::Column::Id)
}

/// One page of release events (offset paging), newest first, and how many match the filter.
pub async fn page(
    db: &impl ConnectionTrait,
    filter: &ReleaseFilter,
    page: u64,
    size: u64,
) -> Result<(Vec<inventory_release_events::Model>, u64), DbErr> {
    super::page(db, filtered(filter), newest_first, page, size).await
}

/// Up to `limit` release events that come after `after` in newest-first order (from the newest when
/// `after` is `None`). The condition `created_at <= c AND (created_at < c OR id < i)` lets every
/// database walk its `(created_at, id)` index backwards from the position.
pub async fn releases_after(
    db: &impl ConnectionTrait,
    filter: &ReleaseFilter,
    after: Option<&Position>,
    limit: u64,
) -> Result<Vec<inventory_release_events::Model>, DbErr> {
    use inventory_release_events::Column;
    let mut query = filtered(filter);
    if let Some(after) = after {
        query = query.filter(Column::CreatedAt.lte(after.created_at)).filter(
            Condition::any()
                .add(Column::CreatedAt.lt(after.created_at))
                .add(Column::Id.lt(after.id.as_str())),
        );
    }
    newest_first(query).limit(limit).all(db).await
}

/// How many release events match the filter, per reason, most frequent first.
pub async fn counts_by_reason(
    db: &impl ConnectionTrait,
    filter: &ReleaseFilter,
) -> Result<Vec<(String, u64)>, DbErr> {
    use inventory_release_events::Column;
    let mut rows: Vec<(String, i64)> = filtered(filter)
        .select_only()
        .column(Column::Reason)
        .column_as(Column::Id.count(), "n")
        .group_by(Column::Reason)
        .into_tuple()
        .all(db)
        .await?;
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(rows.into_iter().map(|(r, n)| (r, n.max(0) as u64)).collect())
}

/// What the release charts need of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseSample {
    pub created_at: DateTime<Utc>,
    pub reason: String,
    /// `[{"skuId","quantity"}]` as stored.
    pub released_items: String,
}

/// The newest `max` release events matching the filter, with only the columns the charts need.
pub async fn samples(
    db: &impl ConnectionTrait,
    filter: &ReleaseFilter,
    max: u64,
) -> Result<Vec<ReleaseSample>, DbErr> {
    use inventory_release_events::Column;
    let rows: Vec<(DateTime<Utc>, String, String)> = newest_first(filtered(filter))
        .select_only()
        .column(Column::CreatedAt)
        .column(Column::Reason)
        .column(Column::ReleasedItems)
        .limit(max)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(created_at, reason, released_items)| ReleaseSample {
            created_at,
            reason,
            released_items,
        })
        .collect())
}

/// The release events of one order, oldest first.
pub async fn of_order(
    db: &impl ConnectionTrait,
    order_id: &str,
) -> Result<Vec<inventory_release_events::Model>, DbErr> {
    inventory_release_events::Entity::find()
        .filter(inventory_release_events::Column::OrderId.eq(order_id))
        .order_by_asc(inventory_release_events::Column::CreatedAt)
        .order_by_asc(inventory_release_events::Column::Id)
        .all(db)
        .await
}
