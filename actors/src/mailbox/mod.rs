//! The mailbox middleware: the one layer every consumer's messages pass through.
//!
//! For each delivery it
//! 1. decodes the envelope (an unreadable one, or one the transport rejected as unsigned or forged, is
//!    poison: dead-lettered at once);
//! 2. lets the consumer prepare outside any transaction (a gateway call, say), concurrently;
//! 3. opens one transaction, claims `(message_id, consumer)` in the inbox (`consumed_messages`) — a
//!    message already claimed is a duplicate and changes nothing — asks the consumer actor to apply the
//!    message inside that transaction, writes the events it produced to the outbox, and commits;
//! 4. after the commit, hands the relay the events it wrote and runs the consumer's after-commit hooks;
//! 5. answers what the transport should do: acknowledge, retry after a bounded exponential back-off, or
//!    dead-letter (after the last attempt, or at once for poison).
//!
//! Several deliveries of one queue share a transaction when they come together (one commit instead of
//! many); a consumer may read once, for all of them, the rows each would read alone ([`Prefetch`]), and
//! write at the end what they changed together ([`FinishBatch`]). If any of them fails, the batch is
//! rolled back and each is run alone, so one bad message never holds back the others. Optimistic-lock
//! conflicts are retried at once and do not count as attempts.
//!
//! Work that is not a message — a saga's payment deadline — goes through the same transaction path
//! ([`Mailbox::transact`]), and every committed change of the flow ends in the one after-commit path
//! ([`Mailbox::after_commit`]: the relay is woken, the writers' hooks run), placement included.
//!
//! [`inbox`] claims messages; [`dead_letters`] keeps what the consumers gave up on.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::join_all;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::config::RetrySettings;
use crate::db;
use crate::envelope::{DecodeError, Envelope};
use crate::faults;
use crate::outbox::{self, Handed, OutboxSignal};

pub mod dead_letters;
pub mod inbox;

use inbox::{claim, claim_many};

/// Conflicts (another writer changed a row this message read) retried at once before the message is
/// treated as failed.
pub const MAX_CONFLICT_RETRIES: u32 = 32;
/// Most deliveries of one queue applied in one transaction (every transport).
pub const MAX_BATCH: usize = 128;
/// Longest pause between two conflict retries.
const CONFLICT_PAUSE_MAX_MS: u64 = 5;

/// What a consumer computed before the transaction, handed back to it in [`Apply`].
pub type Prepared = Arc<dyn Any + Send + Sync>;

/// What a consumer read once for the messages of a batch ([`Prefetch`]), handed to it in every [`Apply`]
/// of the batch.
pub type Prefetched = Arc<dyn Any + Send + Sync>;

/// Rows a batch's messages leave for its end ([`FinishBatch`]), kept in delivery order.
#[derive(Debug)]
pub struct Kept<T>(std::sync::Mutex<Vec<T>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(std::sync::Mutex::new(Vec::new()))
    }
}

impl<T> Kept<T> {
    pub fn keep(&self, row: T) -> Result<(), ConsumeError> {
        self.0.lock().map_err(|_| Self::unusable())?.push(row);
        Ok(())
    }

    /// All that was kept, once.
    pub fn take(&self) -> Result<Vec<T>, ConsumeError> {
        Ok(std::mem::take(&mut *self.0.lock().map_err(|_| Self::unusable())?))
    }

    fn unusable() -> ConsumeError {
        ConsumeError::Transient("the batch's kept writes are unusable (a step panicked)".into())
    }
}

/// Apply one message inside the middleware's transaction. The consumer must not commit; it returns the
/// events to publish and the hooks to run once the transaction has committed.
#[derive(Message)]
#[rtype(result = "Result<Effects, ConsumeError>")]
pub struct Apply {
    pub txn: Arc<DatabaseTransaction>,
    pub envelope: Arc<Envelope>,
    pub queue: &'static str,
    pub prepared: Option<Prepared>,
    /// What the consumer's [`Prefetch`] read for the batch this message is applied in (`None` for a
    /// message applied alone).
    pub batch: Option<Prefetched>,
}

/// Read, inside a batch's transaction and before any of its messages is applied, the rows that applying
/// them would each read alone (optional per consumer): one statement for the batch instead of one per
/// message. The answer comes back in each message's [`Apply::batch`]. The consumer takes a row out of it
/// when a message uses it, so that a second message of the batch for the same row reads what the first
/// one wrote; a row not there is read as without a batch.
#[derive(Message)]
#[rtype(result = "Result<Option<Prefetched>, ConsumeError>")]
pub struct Prefetch {
    pub txn: Arc<DatabaseTransaction>,
    /// The messages of the batch claimed now, in their order.
    pub envelopes: Vec<Arc<Envelope>>,
    pub queue: &'static str,
}

/// Write, inside a batch's transaction and after all its messages were applied, what the consumer's
/// steps left in the batch's [`Prefetch`] answer to write together (optional per consumer): the totals
/// of many changes to a few rows, say, in one statement each.
#[derive(Message)]
#[rtype(result = "Result<(), ConsumeError>")]
pub struct FinishBatch {
    pub txn: Arc<DatabaseTransaction>,
    pub batch: Prefetched,
    pub queue: &'static str,
}

/// Work before the transaction (optional per consumer): nothing here is durable until `Apply` commits.
#[derive(Message)]
#[rtype(result = "Result<Option<Prepared>, ConsumeError>")]
pub struct Prepare {
    pub envelope: Arc<Envelope>,
    pub queue: &'static str,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// A hook run after the transaction committed.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// What applying a message produced.
#[derive(Default)]
pub struct Effects {
    /// Events to write to the outbox, in the same transaction.
    pub publish: Vec<Envelope>,
    /// Run after the commit (e.g. tell the saga actor its new state).
    pub after_commit: Vec<AfterCommit>,
}

impl Effects {
    pub fn none() -> Self {
        Self::default()
    }
    pub fn publish(envelope: Envelope) -> Self {
        Effects {
            publish: vec![envelope],
            after_commit: vec![],
        }
    }
    pub fn and_then(mut self, hook: impl FnOnce() + Send + 'static) -> Self {
        self.after_commit.push(Box::new(hook));
        self
    }
}

impl fmt::Debug for Effects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Effects")
            .field("publish", &self.publish)
            .field("after_commit", &self.after_commit.len())
            .finish()
    }
}

/// Why a consumer could not apply a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumeError {
    /// Trying again later may work (a database or gateway hiccup).
    #[error("transient: {0}")]
    Transient(String),
    /// Another writer changed a row this message read (optimistic lock): try again at once.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The message can never be applied.
    #[error("poison: {0}")]
    Poison(String),
    /// The database cannot be reached (no connection, the server shutting down, no answer in time):
    /// the message waits for it, trying again at the longest back-off, and the tries do not count
    /// towards `retry.max_attempts`, since giving up would dead-letter a message for an outage.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<DbErr> for ConsumeError {
    /// Database errors are classified once, here: a database that cannot be reached is waited for; a
    /// constraint violation or a value that cannot be written or read can never apply, so the message is
    /// poison and dead-letters on its first attempt; everything else (a deadlock, a lock wait, a busy
    /// SQLite, what is not recognised) may pass, within the attempts.
    fn from(err: DbErr) -> Self {
        if db::is_unreachable(&err) {
            ConsumeError::Unavailable(format!("database: {err}"))
        } else if db::is_permanent(&err) {
            ConsumeError::Poison(format!("the database refused it: {err}"))
        } else {
            ConsumeError::Transient(format!("database: {err}"))
        }
    }
}

impl From<DecodeError> for ConsumeError {
    fn from(err: DecodeError) -> Self {
        ConsumeError::Poison(err.to_string())
    }
}

/// A consumer: its queue and the actor that applies (and optionally prepares) its messages.
#[derive(Clone)]
pub struct Consumer {
    pub queue: &'static str,
    pub apply: Recipient<Apply>,
    pub prepare: Option<Recipient<Prepare>>,
    /// Reads what a batch's messages need once for the batch (optional).
    pub prefetch: Option<Recipient<Prefetch>>,
    /// Writes what a batch's messages left to write together (optional; only with `prefetch`, and
    /// needed by a prefetch whose batch decides writes, as the stock batches do).
    pub finish: Option<Recipient<FinishBatch>>,
    /// The arbiter (thread) the consumer's actor lives on; its queue is drained there too, so the
    /// middleware and the actor share a thread.
    pub home: actix::ArbiterHandle,
    /// Its messages write rows that most messages of the queue share (the stock of a few SKUs): the
    /// in-process bus then drains the queue with one worker, since concurrent batches would only
    /// queue for those rows' locks. (On RabbitMQ the same queues are declared with one active consumer
    /// in the whole deployment: `topology::QueueSpec::single_active`.)
    pub serial: bool,
}

/// One message as a transport delivered it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub body: Arc<[u8]>,
    pub routing_key: String,
    /// 1 for the first delivery, 2 for the first retry, …
    pub attempt: u32,
    /// The transport's message id, when the body cannot tell it.
    pub message_id: Option<String>,
    /// Set by the transport when the message must not be applied (a missing or forged signature): it is
    /// dead-lettered with this reason.
    pub rejected: Option<String>,
}

/// What the transport does with a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Applied (or a duplicate): acknowledge.
    Ack,
    /// Deliver again to the same queue after `delay`, as attempt `attempt`.
    Retry {
        attempt: u32,
        delay: Duration,
        reason: String,
    },
    /// Stored in the dead-letter store: acknowledge (and copy to the `.dlq` where there is one).
    DeadLettered { reason: String },
}

/// The middleware, shared by every consumer of a node.
#[derive(Clone)]
pub struct Mailbox {
    /// Begins the units of write work (grouped commits on SQLite: [`db::group`]); its database is the
    /// one the middleware writes to.
    writer: db::Writer,
    retry: RetrySettings,
    outbox: OutboxSignal,
}

/// A decoded delivery on its way through the pipeline.
struct Pending {
    /// Its place in the deliveries handled together.
    index: usize,
    attempt: u32,
    envelope: Arc<Envelope>,
    prepared: Option<Prepared>,
}

/// What became of each delivery of a batch, by its place in the batch.
struct Outcomes(Vec<Option<Result<(), ConsumeError>>>);

impl Outcomes {
    fn set(&mut self, index: usize, result: Result<(), ConsumeError>) {
        if let Some(slot) = self.0.get_mut(index) {
            *slot = Some(result);
        }
    }
}

impl Mailbox {
    pub fn new(db: DatabaseConnection, retry: RetrySettings, outbox: OutboxSignal) -> Self {
        Self {
            writer: db::Writer::new(db),
            retry,
            outbox,
        }
    }

    pub fn retry_settings(&self) -> &RetrySettings {
        &self.retry
    }

    /// Runs deliveries of one queue through the middleware; returns a disposition per delivery, in order.
    pub async fn handle(&self, consumer: &Consumer, deliveries: &[Delivery]) -> Vec<Disposition> {
        let mut outcome = Outcomes(vec![None; deliveries.len()]);
        let mut envelopes: Vec<Option<Arc<Envelope>>> = Vec::with_capacity(deliveries.len());

        // 1. decode
        let mut pending = Vec::with_capacity(deliveries.len());
        for (index, delivery) in deliveries.iter().enumerate() {
            if let Some(reason) = &delivery.rejected {
                outcome.set(index, Err(ConsumeError::Poison(reason.clone())));
                envelopes.push(None);
                continue;
            }
            match Envelope::decode(&delivery.body) {
                Ok(envelope) if faults::consume_fails(&envelope.event_id, delivery.attempt) => {
                    outcome.set(index, Err(ConsumeError::Transient("fault injection".into())));
                    envelopes.push(Some(Arc::new(envelope)));
                }
                Ok(envelope) => {
                    let envelope = Arc::new(envelope);
                    envelopes.push(Some(envelope.clone()));
                    pending.push(Pending {
                        index,
                        attempt: delivery.attempt,
                        envelope,
                        prepared: None,
                    });
                }
                Err(e) => {
                    outcome.set(index, Err(e.into()));
                    envelopes.push(None);
                }
            }
        }

        // 2. prepare, concurrently
        if let Some(prepare) = &consumer.prepare {
            let results = join_all(pending.iter().map(|p| {
                prepare.send(Prepare {
                    envelope: p.envelope.clone(),
                    queue: consumer.queue,
                    attempt: p.attempt,
                })
            }))
            .await;
            let mut ready = Vec::with_capacity(pending.len());
            for (mut p, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(Ok(prepared)) => {
                        p.prepared = prepared;
                        ready.push(p);
                    }
                    Ok(Err(e)) => outcome.set(p.index, Err(e)),
                    Err(e) => outcome.set(p.index, Err(ConsumeError::Transient(format!("consumer: {e}")))),
                }
            }
            pending = ready;
        }

        // 3. apply: together if possible, alone otherwise
        if pending.len() > 1 {
            match db::bounded(self.apply_together(consumer, &pending)).await {
                Ok(()) => {
                    for p in &pending {
                        outcome.set(p.index, Ok(()));
                    }
                    pending.clear();
                }
                Err(e) => {
                    metrics::counter!("message_batches_failed_total", "queue" => consumer.queue).increment(1);
                    tracing::debug!(queue = consumer.queue, error = %e, "batch failed; applying one by one")
                }
            }
        }
        for p in &pending {
            outcome.set(p.index, self.apply_alone(consumer, p).await);
        }

        // 4. dispositions, dead letters stored
        let mut dispositions = Vec::with_capacity(deliveries.len());
        for ((delivery, result), envelope) in deliveries.iter().zip(outcome.0).zip(envelopes) {
            let disposition =
                match result.unwrap_or_else(|| Err(ConsumeError::Transient("not processed".into()))) {
                    Ok(()) => {
                        metrics::counter!("messages_consumed_total", "queue" => consumer.queue).increment(1);
                        Disposition::Ack
                    }
                    Err(ConsumeError::Poison(reason)) => Disposition::DeadLettered { reason },
                    Err(ConsumeError::Unavailable(reason)) => {
                        metrics::counter!("message_retries_total", "queue" => consumer.queue).increment(1);
                        Disposition::Retry {
                            attempt: delivery.attempt,
                            delay: self.retry.longest_delay(),
                            reason,
                        }
                    }
                    Err(e) if delivery.attempt >= self.retry.max_attempts => Disposition::DeadLettered {
                        reason: format!("gave up after {} attempts: {e}", delivery.attempt),
                    },
                    Err(e) => {
                        metrics::counter!("message_retries_total", "queue" => consumer.queue).increment(1);
                        Disposition::Retry {
                            attempt: delivery.attempt + 1,
                            delay: self.retry.delay_after(delivery.attempt),
                            reason: e.to_string(),
                        }
                    }
                };
            if let Disposition::DeadLettered { reason } = &disposition {
                let stored = dead_letters::store(
                    self.writer.db(),
                    consumer.queue,
                    delivery,
                    envelope.as_deref(),
                    reason,
                )
                .await;
                if let Err(e) = stored {
                    // Not stored: keep the message alive rather than lose it.
                    tracing::error!(queue = consumer.queue, error = %e, "could not store a dead letter; retrying");
                    dispositions.push(Disposition::Retry {
                        attempt: delivery.attempt,
                        delay: self.retry.delay_after(delivery.attempt),
                        reason: format!("dead-letter store unavailable: {e}"),
                    });
                    continue;
                }
                metrics::counter!("dead_letters_total", "queue" => consumer.queue).increment(1);
                match envelope.as_deref() {
                    Some(e) => tracing::warn!(
                        queue = consumer.queue,
                        order_id = e.event.order_id(),
                        trace_id = %e.trace_id,
                        event_id = %e.event_id,
                        %reason,
                        "message dead-lettered"
                    ),
                    None => tracing::warn!(queue = consumer.queue, %reason, "message dead-lettered"),
                }
            }
            dispositions.push(disposition);
        }
        dispositions
    }

    /// All pending messages in one transaction; any failure rolls back all of them. The inbox claims are
    /// one statement for the batch, and so are the outbox rows, the consumer's prefetch and its finish.
    async fn apply_together(&self, consumer: &Consumer, pending: &[Pending]) -> Result<(), ConsumeError> {
        let write = self.writer.begin().await?;
        let txn = write.txn().clone();
        let ids: Vec<&str> = pending.iter().map(|p| p.envelope.event_id.as_str()).collect();
        let mut claimed = claim_many(txn.as_ref(), &ids, consumer.queue).await?;
        // A message claimed now is applied once, even if the batch holds it twice.
        let mut fresh = Vec::with_capacity(pending.len());
        for p in pending {
            if claimed.remove(p.envelope.event_id.as_str()) {
                fresh.push(p);
            } else {
                self.duplicate(consumer, p);
            }
        }
        let batch = match &consumer.prefetch {
            Some(prefetch) if fresh.len() > 1 => prefetch
                .send(Prefetch {
                    txn: txn.clone(),
                    envelopes: fresh.iter().map(|p| p.envelope.clone()).collect(),
                    queue: consumer.queue,
                })
                .await
                .map_err(|e| ConsumeError::Transient(format!("consumer: {e}")))??,
            _ => None,
        };
        let mut hooks = Vec::new();
        let mut publish = Vec::new();
        for p in fresh {
            let effects = self.apply_claimed(&txn, consumer, p, batch.clone()).await?;
            hooks.extend(effects.after_commit);
            publish.extend(effects.publish);
        }
        if let (Some(finish), Some(batch)) = (&consumer.finish, batch) {
            finish
                .send(FinishBatch {
                    txn: txn.clone(),
                    batch,
                    queue: consumer.queue,
                })
                .await
                .map_err(|e| ConsumeError::Transient(format!("consumer: {e}")))??;
        }
        let handed = outbox::insert(txn.as_ref(), &publish, &self.outbox).await?;
        drop(txn);
        self.commit(write, hooks, handed).await
    }

    /// One message in its own transaction, conflicts retried at once.
    async fn apply_alone(&self, consumer: &Consumer, p: &Pending) -> Result<(), ConsumeError> {
        self.transact(consumer.queue, |txn| async move {
            self.apply_in(&txn, consumer, p).await
        })
        .await
    }

    /// Runs `work` in a transaction of its own: the events of the effects it answers go into the outbox,
    /// the transaction commits, and the after-commit path runs; `None` commits nothing of note (a
    /// duplicate, a step that had become moot). An optimistic-lock conflict runs `work` again at once,
    /// up to [`MAX_CONFLICT_RETRIES`] times; `label` names the work in logs and metrics (a queue).
    pub async fn transact<F, Fut>(&self, label: &'static str, mut work: F) -> Result<(), ConsumeError>
    where
        F: FnMut(Arc<DatabaseTransaction>) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Effects>, ConsumeError>>,
    {
        let mut conflicts = 0;
        loop {
            let result = db::bounded(async {
                let write = self.writer.begin().await?;
                let txn = write.txn().clone();
                let (hooks, handed) = match work(txn.clone()).await? {
                    Some(effects) => {
                        let handed = outbox::insert(txn.as_ref(), &effects.publish, &self.outbox).await?;
                        (effects.after_commit, handed)
                    }
                    None => (vec![], Handed::default()),
                };
                drop(txn);
                self.commit(write, hooks, handed).await
            })
            .await;
            match result {
                Err(ConsumeError::Conflict(reason)) if conflicts < MAX_CONFLICT_RETRIES => {
                    conflicts += 1;
                    metrics::counter!("message_conflicts_total", "queue" => label).increment(1);
                    tracing::debug!(queue = label, %reason, conflicts, "conflict; trying again");
                    let pause = rand::random_range(0..=CONFLICT_PAUSE_MAX_MS.min(conflicts as u64));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => return other,
            }
        }
    }

    /// Inbox claim and the consumer's work. `None` for a duplicate.
    async fn apply_in(
        &self,
        txn: &Arc<DatabaseTransaction>,
        consumer: &Consumer,
        p: &Pending,
    ) -> Result<Option<Effects>, ConsumeError> {
        if !claim(txn.as_ref(), &p.envelope.event_id, consumer.queue).await? {
            self.duplicate(consumer, p);
            return Ok(None);
        }
        Ok(Some(self.apply_claimed(txn, consumer, p, None).await?))
    }

    /// The consumer's work for a message whose inbox row is written.
    async fn apply_claimed(
        &self,
        txn: &Arc<DatabaseTransaction>,
        consumer: &Consumer,
        p: &Pending,
        batch: Option<Prefetched>,
    ) -> Result<Effects, ConsumeError> {
        consumer
            .apply
            .send(Apply {
                txn: txn.clone(),
                envelope: p.envelope.clone(),
                queue: consumer.queue,
                prepared: p.prepared.clone(),
                batch,
            })
            .await
            .map_err(|e| ConsumeError::Transient(format!("consumer: {e}")))?
    }

    fn duplicate(&self, consumer: &Consumer, p: &Pending) {
        metrics::counter!("messages_duplicate_total", "queue" => consumer.queue).increment(1);
        tracing::debug!(queue = consumer.queue, event_id = %p.envelope.event_id, "duplicate ignored");
    }

    /// Commits the unit (returns once it is durable), then hands the relay what it wrote and runs the
    /// hooks, the three together even if this unit's delivery is given up meanwhile
    /// ([`OutboxSignal::commit`]).
    async fn commit(
        &self,
        write: db::Write,
        hooks: Vec<AfterCommit>,
        handed: Handed,
    ) -> Result<(), ConsumeError> {
        if hooks.is_empty() && handed.is_empty() {
            return Ok(write.commit().await?);
        }
        let then = move || {
            for hook in hooks {
                hook();
            }
        };
        Ok(self.outbox.commit(self.writer.db(), write, handed, then).await?)
    }

    /// What follows every commit that changed the flow, once the relay has what the transaction wrote
    /// to the outbox: the writers' hooks run (the saga registry learns new states).
    pub fn after_commit(&self, hooks: Vec<AfterCommit>) {
        for hook in hooks {
            hook();
        }
    }

    /// The database the middleware writes to.
    pub fn db(&self) -> &DatabaseConnection {
        self.writer.db()
    }

    /// What begins the units of write work of this node (shared with placement, so that they group
    /// with the consumers' on SQLite).
    pub fn writer(&self) -> &db::Writer {
        &self.writer
    }
}
