//! The outbox: events are written in the transaction that causes them, and the `OutboxRelay` publishes
//! what was committed.
//!
//! Writers insert their rows already claimed in this node's name and hand them to the relay after the
//! commit ([`OutboxSignal::hand_over`]), while the relay runs and where the insert answers the rows' ids
//! (PostgreSQL, SQLite). Otherwise the relay claims unpublished rows in batches (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL and MySQL, so that several nodes never claim the same row). It hands them to the
//! transport, and marks a row published only once the transport has taken responsibility for it: a
//! broker confirm on RabbitMQ; on the in-process bus, the moment every bound consumer has committed it
//! (memory is not durable, so "sent" must mean "consumed"). A row whose publication failed is released for the next round; a row claimed by
//! a node that died is claimed again by another node after the lease (`outbox.claim_lease_seconds`, well
//! below the payment deadline), and at once by the same node when it comes back: a node's identity
//! (`node_id`) is stable across restarts. The relay reads the table when rows were written unclaimed
//! or released, and polls as a fallback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Set};
use tokio::sync::Notify;

use crate::bus::OutboxMessage;
use crate::db;
use crate::envelope::Envelope;
use crate::faults;
use entities::outbox_events;

pub mod relay;

pub use relay::{OutboxRelay, StopRelay};

/// Writes events to the outbox inside the caller's transaction. When the relay takes rows handed over
/// ([`OutboxSignal::claimant`]), they are written claimed in this node's name and answered, to be handed
/// to the relay after the commit ([`OutboxSignal::hand_over`]); otherwise the relay claims them.
pub async fn insert(
    txn: &impl ConnectionTrait,
    envelopes: &[Envelope],
    signal: &OutboxSignal,
) -> Result<Handed, DbErr> {
    if envelopes.is_empty() {
        return Ok(Handed::default());
    }
    let rows = OutboxRows::new(envelopes, signal.claimant(txn.get_database_backend()))?;
    if rows.claimed {
        let answer = txn
            .query_all_raw(rows.returning(txn.get_database_backend()))
            .await?;
        return rows.handed(&answer);
    }
    rows.insert.exec_without_returning(txn).await?;
    Ok(Handed::unclaimed())
}

/// The outbox rows of some events, with their insert.
pub(crate) struct OutboxRows {
    pub(crate) insert: sea_orm::InsertMany<outbox_events::ActiveModel>,
    /// Written claimed by this node, to be handed over.
    pub(crate) claimed: bool,
    /// `(event id, event type, routing key, body)` of each row, in insert order.
    messages: Vec<(String, String, String, Arc<[u8]>)>,
    claimant: Option<Arc<str>>,
}

impl OutboxRows {
    /// The rows of `envelopes`, claimed by `claimant` if there is one.
    pub(crate) fn new(envelopes: &[Envelope], claimant: Option<Arc<str>>) -> Result<Self, DbErr> {
        let now = db::now();
        let mut rows = Vec::with_capacity(envelopes.len());
        let mut messages = Vec::with_capacity(envelopes.len());
        for e in envelopes {
            let payload = e.encode().map_err(|err| DbErr::Json(err.to_string()))?;
            if claimant.is_some() {
                messages.push((
                    e.event_id.clone(),
                    e.event_type().to_owned(),
                    e.routing_key().to_owned(),
                    Arc::from(payload.as_bytes()),
                ));
            }
            rows.push(outbox_events::ActiveModel {
                event_id: Set(e.event_id.clone()),
                event_type: Set(e.event_type().to_owned()),
                routing_key: Set(e.routing_key().to_owned()),
                aggregate_id: Set(e.event.order_id().to_owned()),
                payload: Set(payload),
                created_at: Set(now),
                published_at: Set(None),
                claimed_by: Set(claimant.as_deref().map(str::to_owned)),
                claimed_at: Set(claimant.is_some().then_some(now)),
                attempts: Set(0),
                ..Default::default()
            });
        }
        Ok(Self {
            insert: outbox_events::Entity::insert_many(rows),
            claimed: claimant.is_some(),
            messages,
            claimant,
        })
    }

    /// The insert, answering each row's id and event id (PostgreSQL and SQLite).
    pub(crate) fn returning(&self, backend: DbBackend) -> sea_orm::Statement {
        use sea_orm::QueryTrait;
        let mut insert = self.insert.as_query().to_owned();
        insert.returning(
            sea_orm::sea_query::Query::returning()
                .columns([outbox_events::Column::Id, outbox_events::Column::EventId]),
        );
        backend.build(&insert)
    }

    /// What the returning insert answered, as messages for the relay.
    pub(crate) fn handed(self, answer: &[sea_orm::QueryResult]) -> Result<Handed, DbErr> {
        let mut ids = std::collections::HashMap::with_capacity(answer.len());
        for row in answer {
            ids.insert(
                row.try_get::<String>("", "event_id")?,
                row.try_get::<i64>("", "id")?,
            );
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (event_id, event_type, routing_key, body) in self.messages {
            let id = ids
                .get(&event_id)
                .copied()
                .ok_or_else(|| DbErr::Custom(format!("the outbox insert did not answer event {event_id}")))?;
            messages.push(OutboxMessage {
                id,
                event_id,
                event_type,
                routing_key,
                body,
            });
        }
        Ok(Handed {
            messages,
            unclaimed: false,
            claimed_by: self.claimant,
        })
    }
}

/// What a transaction wrote to the outbox, for after its commit: rows claimed in this node's name, to
/// hand to the relay, or word that rows wait to be claimed.
#[derive(Default)]
#[must_use = "hand it to the relay after the commit"]
pub struct Handed {
    messages: Vec<OutboxMessage>,
    unclaimed: bool,
    /// The node the rows were written claimed by.
    claimed_by: Option<Arc<str>>,
}

impl Handed {
    pub(crate) fn unclaimed() -> Self {
        Self {
            unclaimed: true,
            ..Self::default()
        }
    }

    /// Adds what another write of the same transaction handed.
    pub fn extend(&mut self, other: Handed) {
        self.messages.extend(other.messages);
        self.unclaimed |= other.unclaimed;
        if self.claimed_by.is_none() {
            self.claimed_by = other.claimed_by;
        }
    }

    /// Whether a row written has the routing key the fault point `point` names.
    fn armed(&self, point: &str) -> bool {
        faults::armed(point).is_some_and(|key| self.messages.iter().any(|m| m.routing_key == key))
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && !self.unclaimed
    }
}

/// Tries to release the claims of a failed commit's rows, with pauses of 0.2, 0.4, … s between.
const RELEASE_ATTEMPTS: u32 = 6;

/// The writers' line to the relay: rows handed over after their commit, and a wake-up for rows that
/// wait to be claimed. Cheap and never blocks.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<SignalInner>);

#[derive(Default)]
struct SignalInner {
    wake: Notify,
    /// The node's id while the relay takes rows handed over: from the moment it has released what an
    /// earlier run of the node left claimed until it stops. Writers claim their rows in this name.
    claimant: std::sync::RwLock<Option<Arc<str>>>,
    /// Rows handed over and not yet taken by the relay, and when the oldest of them was.
    handed: std::sync::Mutex<(Option<std::time::Instant>, Vec<OutboxMessage>)>,
    /// Rows were written unclaimed (or released) since the relay last looked.
    unclaimed: AtomicBool,
}

impl OutboxSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the relay to claim rows written unclaimed.
    pub fn wake(&self) {
        self.0.unclaimed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }

    /// After a commit: gives the relay the rows the transaction wrote claimed, or wakes it for rows
    /// written unclaimed.
    pub fn hand_over(&self, handed: Handed) {
        if !handed.messages.is_empty() {
            let mut waiting = lock(&self.0.handed);
            waiting.0.get_or_insert_with(std::time::Instant::now);
            waiting.1.extend(handed.messages);
            drop(waiting);
            self.0.wake.notify_one();
        }
        if handed.unclaimed {
            self.wake();
        }
    }

    /// Commits `write` and then hands the relay the rows it wrote claimed (see [`hand_over`](Self::hand_over))
    /// and runs `then`; answers once all that is done. The three go together whatever becomes of the
    /// caller: they run on a task of their own, so a caller given up meanwhile (its deadline passed, its
    /// broker consumer stopped with the connection) does not leave the rows of a unit that committed
    /// claimed in this node's name and never published — this node's relay does not take its own claims
    /// back until it starts again. A commit that fails (or whose answer was lost: the commit may have
    /// gone through) releases the rows' claims for the relay to take as rows written unclaimed; a copy
    /// sent twice is dropped by the consumers' inbox.
    pub async fn commit(
        &self,
        db: &DatabaseConnection,
        write: db::Write,
        handed: Handed,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<(), DbErr> {
        let signal = self.clone();
        let db = db.clone();
        let unit = async move {
            let mut committed = write.commit().await;
            if committed.is_ok() && handed.armed("commit-unanswered") {
                committed = Err(DbErr::Conn(sea_orm::RuntimeErr::Internal(
                    "the commit's answer was lost (fault point commit-unanswered)".into(),
                )));
            }
            match committed {
                Ok(()) => {
                    if handed.armed("commit-outlived") {
                        tokio::time::sleep(db::work_timeout() + Duration::from_secs(1)).await;
                    }
                    signal.hand_over(handed);
                    then();
                    Ok(())
                }
                Err(e) => {
                    signal.release(&db, handed).await;
                    Err(e)
                }
            }
        };
        tokio::spawn(unit)
            .await
            .map_err(|e| DbErr::Custom(format!("the commit's task failed: {e}")))?
    }

    /// Releases the claims of rows handed over by a unit whose commit failed, so that the relay claims
    /// them (if they were committed after all) as rows written unclaimed.
    async fn release(&self, db: &DatabaseConnection, handed: Handed) {
        use outbox_events::Column as C;
        use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
        let (Some(node), false) = (handed.claimed_by.as_deref(), handed.messages.is_empty()) else {
            return;
        };
        let ids: Vec<i64> = handed.messages.iter().map(|m| m.id).collect();
        let mut pause = Duration::from_millis(200);
        for attempt in 1..=RELEASE_ATTEMPTS {
            let released = outbox_events::Entity::update_many()
                .col_expr(C::ClaimedBy, Expr::value(Option::<String>::None))
                .col_expr(
                    C::ClaimedAt,
                    Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
                )
                .filter(C::Id.is_in(ids.iter().copied()))
                .filter(C::ClaimedBy.eq(node))
                .filter(C::PublishedAt.is_null())
                .exec(db);
            match db::bounded(released).await {
                Ok(done) => {
                    tracing::debug!(
                        rows = done.rows_affected,
                        "outbox: a unit's commit failed; the claims of the rows it wrote are released"
                    );
                    self.wake();
                    return;
                }
                Err(e) if attempt < RELEASE_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "outbox: releasing the claims of a failed commit failed");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    rows = ids.len(),
                    "outbox: the claims of rows a failed commit may have written could not be released; \
                     the node releases them when it starts again, another node after the claim lease"
                ),
            }
        }
    }

    /// The name to claim new rows in, if the relay takes rows handed over. MySQL answers no ids from
    /// an insert, so there the relay claims every row itself.
    pub fn claimant(&self, backend: DbBackend) -> Option<Arc<str>> {
        if backend == DbBackend::MySql {
            return None;
        }
        self.0
            .claimant
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set_claimant(&self, node_id: Option<Arc<str>>) {
        *self
            .0
            .claimant
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = node_id;
    }

    /// The rows handed over since the last call, and how long the oldest of them has waited.
    pub(crate) fn take_handed(&self) -> (Duration, Vec<OutboxMessage>) {
        let (since, messages) = std::mem::take(&mut *lock(&self.0.handed));
        (since.map(|at| at.elapsed()).unwrap_or_default(), messages)
    }

    /// Whether rows were written unclaimed since the last call.
    pub(crate) fn take_unclaimed(&self) -> bool {
        self.0.unclaimed.swap(false, Ordering::AcqRel)
    }

    pub(crate) async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.0.wake.notified()).await;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
