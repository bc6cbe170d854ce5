//! The outbox: events are written in the transaction that causes them, and the `OutboxRelay` publishes
//! what was committed.
//!
//! The relay claims unpublished rows in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL and MySQL, so
//! that several nodes never claim the same row), hands them to the transport, and marks a row published
//! only once the transport has taken responsibility for it: a broker confirm on RabbitMQ; on the
//! in-process bus, the moment every bound consumer has committed it (memory is not durable, so "sent"
//! must mean "consumed"). A row whose publication failed is released for the next round; a row claimed by
//! a node that died is claimed again by another node after the lease (`outbox.claim_lease_seconds`, well
//! below the payment deadline), and at once by the same node when it comes back: a node's identity
//! (`node_id`) is stable across restarts. The relay is woken on every commit that wrote rows
//! and polls as a fallback.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Set};
use tokio::sync::Notify;

use crate::db;
use crate::envelope::Envelope;
use entities::outbox_events;

pub mod relay;

pub use relay::{OutboxRelay, StopRelay};

/// Writes events to the outbox inside the caller's transaction.
pub async fn insert(txn: &impl ConnectionTrait, envelopes: &[Envelope]) -> Result<(), DbErr> {
    if envelopes.is_empty() {
        return Ok(());
    }
    insert_statement(envelopes)?.exec_without_returning(txn).await?;
    Ok(())
}

/// The insert of `envelopes` into the outbox (one statement), to run with other writes.
pub fn insert_statement(
    envelopes: &[Envelope],
) -> Result<sea_orm::InsertMany<outbox_events::ActiveModel>, DbErr> {
    let now = db::now();
    let mut rows = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        let payload = e.encode().map_err(|err| DbErr::Json(err.to_string()))?;
        rows.push(outbox_events::ActiveModel {
            event_id: Set(e.event_id.clone()),
            event_type: Set(e.event_type().to_owned()),
            routing_key: Set(e.routing_key().to_owned()),
            aggregate_id: Set(e.event.order_id().to_owned()),
            payload: Set(payload),
            created_at: Set(now),
            published_at: Set(None),
            claimed_by: Set(None),
            claimed_at: Set(None),
            attempts: Set(0),
            ..Default::default()
        });
    }
    Ok(outbox_events::Entity::insert_many(rows))
}

/// Wakes the relay: call after a commit that wrote outbox rows. Cheap and never blocks.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn wake(&self) {
        self.0.notify_one();
    }
    pub(crate) async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.0.notified()).await;
    }
}

/// Publishes again the events of sagas that wait on the inventory (`AWAITING_INVENTORY`,
/// `COMPENSATING`) and have not moved for `after`: their published rows older than `after` go back to
/// the relay. An event the broker lost on the way (RabbitMQ dead-letters a retry back to its queue
/// without confirms, so a retry expiring while its queue stops or recovers can vanish) is sent again;
/// the consumers that had applied it drop the copy (the inbox). The payment's wait has its own deadline,
/// which asks the payment ledger. At most `limit` sagas per call; answers the rows sent back.
pub async fn redeliver_stalled(
    db: &impl ConnectionTrait,
    after: std::time::Duration,
    limit: u64,
) -> Result<u64, DbErr> {
    use crate::mailbox::dead_letters::DeadLetterStatus;
    use crate::saga::machine::SagaState;
    use entities::{dead_letters, saga_instances};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let before = db::now() - chrono::Duration::from_std(after).unwrap_or_default();
    let stalled: Vec<String> = saga_instances::Entity::find()
        .select_only()
        .column(saga_instances::Column::OrderId)
        .filter(saga_instances::Column::State.is_in([
            SagaState::AwaitingInventory.as_str(),
            SagaState::Compensating.as_str(),
        ]))
        .filter(saga_instances::Column::UpdatedAt.lt(before))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if stalled.is_empty() {
        return Ok(0);
    }
    let sent_back = outbox_events::Entity::update_many()
        .col_expr(
            outbox_events::Column::PublishedAt,
            sea_orm::sea_query::Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(
            outbox_events::Column::ClaimedBy,
            sea_orm::sea_query::Expr::value(Option::<String>::None),
        )
        .col_expr(
            outbox_events::Column::ClaimedAt,
            sea_orm::sea_query::Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(outbox_events::Column::AggregateId.is_in(stalled))
        .filter(outbox_events::Column::PublishedAt.lt(before))
        // A message a consumer gave up on waits for an admin's replay or discard, not for this sweep.
        .filter(
            outbox_events::Column::EventId.not_in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(dead_letters::Column::MessageId)
                    .from(dead_letters::Entity)
                    .and_where(dead_letters::Column::Status.eq(DeadLetterStatus::Dead.as_str()))
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?
        .rows_affected;
    if sent_back > 0 {
        metrics::counter!("outbox_redelivered_total").increment(sent_back);
    }
    Ok(sent_back)
}
