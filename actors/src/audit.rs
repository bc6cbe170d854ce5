//! The read side of the release audit and of the dashboards: queries only, nothing here writes.
//!
//! Release events are read newest first, `created_at` descending with `id` descending as the tie-break,
//! so that every ordering is total and paging is stable. Keyset reads ([`releases_after`]) walk the
//! `(created_at, id)` index from a position instead of skipping rows, so a deep page costs what the first
//! one does. Time buckets (throughput per minute, releases over time) are computed in Rust from
//! timestamps, not with database date functions, so the same code runs on SQLite, PostgreSQL and MySQL.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select,
};

use crate::machine::SagaState;
use entities::{dead_letters, inventory_release_events, outbox_events, saga_instances};

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
pub async fn page_releases(
    db: &impl ConnectionTrait,
    filter: &ReleaseFilter,
    page: u64,
    size: u64,
) -> Result<(Vec<inventory_release_events::Model>, u64), DbErr> {
    let total = filtered(filter).count(db).await?;
    let rows = newest_first(filtered(filter))
        .offset(page.saturating_mul(size))
        .limit(size)
        .all(db)
        .await?;
    Ok((rows, total))
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
pub async fn release_counts_by_reason(
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
pub async fn release_samples(
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
pub async fn releases_of_order(
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

/// Which sagas to list on the saga dashboard.
#[derive(Clone, Debug, Default)]
pub struct SagaSearch {
    /// A part of an order id or trace id, or of a failure reason.
    pub text: Option<String>,
    pub state: Option<SagaState>,
    /// Only unfinished sagas that have not moved since this instant.
    pub stuck_before: Option<DateTime<Utc>>,
}

/// `%text%` for `LIKE`, with the wildcards of `text` escaped.
fn contains_pattern(text: &str) -> LikeExpr {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    LikeExpr::new(escaped).escape('\\')
}

fn unfinished() -> Vec<&'static str> {
    SagaState::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .map(SagaState::as_str)
        .collect()
}

/// A page of sagas, most recently moved first, and how many match.
///
/// Ids are lower-case and reasons upper-case, so `text` is compared in those cases: the search reads
/// the same on every database whatever its collation.
pub async fn search_sagas(
    db: &impl ConnectionTrait,
    search: &SagaSearch,
    page: u64,
    size: u64,
) -> Result<(Vec<saga_instances::Model>, u64), DbErr> {
    use saga_instances::Column;
    let mut query = saga_instances::Entity::find();
    if let Some(text) = search.text.as_deref().filter(|t| !t.is_empty()) {
        query = query.filter(
            Condition::any()
                .add(Column::OrderId.like(contains_pattern(&text.to_ascii_lowercase())))
                .add(Column::TraceId.like(contains_pattern(text)))
                .add(Column::FailureReason.like(contains_pattern(&text.to_ascii_uppercase()))),
        );
    }
    if let Some(state) = search.state {
        query = query.filter(Column::State.eq(state.as_str()));
    }
    if let Some(before) = search.stuck_before {
        query = query
            .filter(Column::State.is_in(unfinished()))
            .filter(Column::UpdatedAt.lt(before));
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_desc(Column::UpdatedAt)
        .order_by_desc(Column::OrderId)
        .offset(page.saturating_mul(size))
        .limit(size)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Unfinished sagas that have not moved since `before`, longest waiting first (at most `max`), and how
/// many there are.
pub async fn stuck_sagas(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    max: u64,
) -> Result<(Vec<saga_instances::Model>, u64), DbErr> {
    use saga_instances::Column;
    let query = saga_instances::Entity::find()
        .filter(Column::State.is_in(unfinished()))
        .filter(Column::UpdatedAt.lt(before));
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_asc(Column::UpdatedAt)
        .order_by_asc(Column::OrderId)
        .limit(max)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// A saga that ended: its outcome and how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedSaga {
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

/// Sagas that ended at or after `since` (at most `max`, the latest). A saga's `updated_at` is never
/// before its `completed_at`, so the indexed `updated_at` bound narrows the scan without losing rows.
pub async fn finished_since(
    db: &impl ConnectionTrait,
    since: DateTime<Utc>,
    max: u64,
) -> Result<Vec<FinishedSaga>, DbErr> {
    use saga_instances::Column;
    let rows: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = saga_instances::Entity::find()
        .select_only()
        .column(Column::State)
        .column(Column::StartedAt)
        .column(Column::CompletedAt)
        .filter(Column::UpdatedAt.gte(since))
        .filter(Column::CompletedAt.gte(since))
        .order_by_desc(Column::CompletedAt)
        .limit(max)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(state, started_at, completed_at)| {
            completed_at.map(|completed_at| FinishedSaga {
                state,
                started_at,
                completed_at,
            })
        })
        .collect())
}

/// The events emitted for an order (from the outbox), in the order they were committed.
pub async fn events_of_order(
    db: &impl ConnectionTrait,
    order_id: &str,
) -> Result<Vec<outbox_events::Model>, DbErr> {
    outbox_events::Entity::find()
        .filter(outbox_events::Column::AggregateId.eq(order_id))
        .order_by_asc(outbox_events::Column::Id)
        .all(db)
        .await
}

/// Dead letters of a trace (the messages one request caused), newest first.
pub async fn dead_letters_of_trace(
    db: &impl ConnectionTrait,
    trace_id: &str,
) -> Result<Vec<dead_letters::Model>, DbErr> {
    dead_letters::Entity::find()
        .filter(dead_letters::Column::TraceId.eq(trace_id))
        .order_by_desc(dead_letters::Column::CreatedAt)
        .order_by_desc(dead_letters::Column::Id)
        .all(db)
        .await
}

/// How many dead letters there are per consumer and status.
pub async fn dead_letter_counts(db: &impl ConnectionTrait) -> Result<Vec<(String, String, u64)>, DbErr> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_search_text_are_escaped() {
        let pattern = contains_pattern("50%_a\\b");
        let expected = LikeExpr::new("%50\\%\\_a\\\\b%").escape('\\');
        assert_eq!(format!("{pattern:?}"), format!("{expected:?}"));
    }

    #[test]
    fn only_unfinished_states_can_be_stuck() {
        let states = unfinished();
        assert_eq!(states, ["AWAITING_INVENTORY", "AWAITING_PAYMENT", "COMPENSATING"]);
    }
}
