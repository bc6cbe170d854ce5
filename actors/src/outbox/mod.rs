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
