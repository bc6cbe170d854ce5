//! Sagas: one with its history, pages of them (the API's list and the dashboard's search), counts per
//! state, stuck ones, and the recently finished.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, LikeExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::saga::SagaState;
use entities::{saga_history, saga_instances};

/// A saga row and its history, for inspection.
pub async fn find(
    db: &impl ConnectionTrait,
    order_id: &str,
) -> Result<Option<(saga_instances::Model, Vec<saga_history::Model>)>, DbErr> {
    let Some(saga) = saga_instances::Entity::find_by_id(order_id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let history = saga_history::Entity::find()
        .filter(saga_history::Column::OrderId.eq(order_id))
        .order_by_asc(saga_history::Column::Seq)
        .all(db)
        .await?;
    Ok(Some((saga, history)))
}

/// How many sagas are in each state (every state listed, zeros included).
pub async fn counts(db: &impl ConnectionTrait) -> Result<Vec<(SagaState, u64)>, DbErr> {
    let rows: Vec<(String, i64)> = saga_instances::Entity::find()
        .select_only()
        .column(saga_instances::Column::State)
        .column_as(saga_instances::Column::OrderId.count(), "n")
        .group_by(saga_instances::Column::State)
        .into_tuple()
        .all(db)
        .await?;
    Ok(SagaState::ALL
        .into_iter()
        .map(|s| {
            let n = rows
                .iter()
                .find(|(state, _)| state == s.as_str())
                .map(|(_, n)| *n)
                .unwrap_or(0);
            (s, n.max(0) as u64)
        })
        .collect())
}

/// Which sagas to list (`GET /api/sagas`, the saga dashboard).
#[derive(Clone, Debug, Default)]
pub struct SagaSearch {
    /// A part of an order id or trace id, or of a failure reason.
    pub text: Option<String>,
    pub state: Option<SagaState>,
    /// Only sagas that have not moved since this instant.
    pub not_moved_since: Option<DateTime<Utc>>,
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
pub async fn search(
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
    if let Some(before) = search.not_moved_since {
        query = query.filter(Column::UpdatedAt.lt(before));
    }
    if let Some(before) = search.stuck_before {
        query = query
            .filter(Column::State.is_in(unfinished()))
            .filter(Column::UpdatedAt.lt(before));
    }
    let latest_first = |q: sea_orm::Select<saga_instances::Entity>| {
        q.order_by_desc(Column::UpdatedAt).order_by_desc(Column::OrderId)
    };
    super::page(db, query, latest_first, page, size).await
}

/// Unfinished sagas that have not moved since `before`, longest waiting first (at most `max`), and how
/// many there are.
pub async fn stuck(
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
