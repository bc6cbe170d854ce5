//! Gauges read from the database every [`INTERVAL`], for dashboards and alerts: the sagas in flight by
//! state (`sagas_in_flight{state}`), and the outbox's unpublished rows and the age of the oldest
//! (`outbox_backlog`, `outbox_oldest_age_seconds`, `0` when nothing waits). They count what every node
//! sees in the shared database, so over several nodes any one node's figures are the deployment's.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::saga::SagaState;
use entities::{outbox_events, saga_instances};

/// How often the gauges are read.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Reads the gauges every [`INTERVAL`] for as long as the actix system runs.
pub async fn run(db: DatabaseConnection) {
    loop {
        if let Err(e) = crate::db::bounded(sample(&db)).await {
            tracing::debug!(error = %e, "gauges: the database did not answer");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// Reads the gauges once.
pub async fn sample(db: &DatabaseConnection) -> Result<(), DbErr> {
    let in_flight: Vec<SagaState> = SagaState::ALL.into_iter().filter(|s| !s.is_terminal()).collect();
    let counts: Vec<(String, i64)> = saga_instances::Entity::find()
        .select_only()
        .column(saga_instances::Column::State)
        .column_as(saga_instances::Column::OrderId.count(), "n")
        .filter(saga_instances::Column::State.is_in(in_flight.iter().map(|s| s.as_str())))
        .group_by(saga_instances::Column::State)
        .into_tuple()
        .all(db)
        .await?;
    for state in in_flight {
        let n = counts
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("sagas_in_flight", "state" => state.as_str()).set(n as f64);
    }

    use outbox_events::Column as C;
    let (waiting, oldest): (i64, Option<i64>) = outbox_events::Entity::find()
        .select_only()
        .column_as(C::Id.count(), "n")
        .column_as(C::Id.min(), "oldest")
        .filter(C::PublishedAt.is_null())
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, None));
    let age = match oldest {
        Some(id) => outbox_events::Entity::find_by_id(id)
            .select_only()
            .column(C::CreatedAt)
            .into_tuple::<chrono::DateTime<Utc>>()
            .one(db)
            .await?
            .map_or(0.0, |at| {
                (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
            }),
        None => 0.0,
    };
    metrics::gauge!("outbox_backlog").set(waiting as f64);
    metrics::gauge!("outbox_oldest_age_seconds").set(age);
    Ok(())
}
