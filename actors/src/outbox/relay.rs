//! The `OutboxRelay`: claims committed outbox rows, hands them to the transport, and marks them
//! published once the transport has taken responsibility for them.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::{Notify, mpsc};

use super::OutboxSignal;
use crate::bus::{Confirm, OutboxMessage, Transport};
use crate::config::OutboxSettings;
use crate::db;
use crate::faults;
use entities::outbox_events;

/// Messages handed to the transport and not yet confirmed, above which the relay stops claiming. On the
/// in-process bus a publication is confirmed when its consumers settle it, so a slow consumer (a slow
/// payment gateway) keeps its messages in flight; its queue keeps them as outbox row ids beyond a few
/// thousand (about 100 bytes each), so the bound is high enough for a million sagas waiting on payments
/// without holding back the other queues.
pub const MAX_IN_FLIGHT: usize = 2_000_000;
/// Pause after a failed database round before the relay tries again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// Most confirmations written in one `UPDATE`.
const MARK_BATCH: usize = 1_000;
/// How long confirmations wait for more before they are written. A mark is bookkeeping (the message is
/// already on its way), so waiting costs no saga any time, and it turns one write transaction per
/// confirmed batch into one per few dozen; a crash meanwhile only re-sends rows already sent, which the
/// consumers' inboxes drop.
const MARK_LINGER: Duration = Duration::from_millis(25);

/// Publishes committed outbox rows.
pub struct OutboxRelay {
    db: DatabaseConnection,
    transport: Arc<dyn Transport>,
    signal: OutboxSignal,
    settings: OutboxSettings,
    node_id: String,
}

impl OutboxRelay {
    pub fn new(
        db: DatabaseConnection,
        transport: Arc<dyn Transport>,
        signal: OutboxSignal,
        settings: OutboxSettings,
        node_id: String,
    ) -> Self {
        Self {
            db,
            transport,
            signal,
            settings,
            node_id,
        }
    }
}

impl Actor for OutboxRelay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let capacity = Arc::new(Notify::new());
        let marker = mark_loop(
            self.db.clone(),
            rx,
            in_flight.clone(),
            capacity.clone(),
            self.signal.clone(),
        );
        ctx.spawn(marker.into_actor(self));
        let relay = Relay {
            db: self.db.clone(),
            transport: self.transport.clone(),
            signal: self.signal.clone(),
            settings: self.settings.clone(),
            node_id: self.node_id.clone(),
            confirms: tx,
            in_flight,
            capacity,
            last_expired_scan: std::sync::Mutex::new(None),
        };
        ctx.spawn(relay.run().into_actor(self));
    }
}

/// Stops the relay: it claims nothing more. Rows it had claimed and not yet seen confirmed are taken
/// back at the node's next start, or by another node after the claim lease.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRelay;

impl Handler<StopRelay> for OutboxRelay {
    type Result = ();

    fn handle(&mut self, _: StopRelay, ctx: &mut Self::Context) {
        // Rows written from now on wait unclaimed, for the next start or another node.
        self.signal.set_claimant(None);
        ctx.stop();
    }
}

/// The relay's loop state.
struct Relay {
    db: DatabaseConnection,
    transport: Arc<dyn Transport>,
    signal: OutboxSignal,
    settings: OutboxSettings,
    node_id: String,
    confirms: mpsc::UnboundedSender<(i64, bool)>,
    in_flight: Arc<AtomicUsize>,
    capacity: Arc<Notify>,
    last_expired_scan: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Relay {
    async fn run(self) {
        // Nothing is in flight yet, so claims in this node's name were left by an earlier run of it (one
        // that died between claiming and publishing): they are taken back at once instead of waiting
        // for the lease. On the in-process bus this node is the only publisher, so every claim is void.
        let mine = (!self.transport.single_node()).then_some(self.node_id.as_str());
        loop {
            match db::bounded(release_claims(&self.db, mine)).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(
                            rows = n,
                            node_id = %self.node_id,
                            "outbox: re-sending events an earlier run left unconfirmed"
                        );
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: could not release earlier claims; trying again");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
        // From now on writers claim their rows in this node's name and hand them over after their
        // commit: the relay publishes them without claiming them again.
        self.signal.set_claimant(Some(Arc::from(self.node_id.as_str())));
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut last_claim: Option<std::time::Instant> = None;
        loop {
            let (waited, handed) = self.signal.take_handed();
            if !handed.is_empty() {
                metrics::gauge!("outbox_lag_seconds").set(waited.as_secs_f64());
                self.publish(handed).await;
            }
            // The table is read when rows were written unclaimed or released, and at least every
            // `poll` (rows whose claim another node left, rows sent back by the stalled-saga sweep).
            let due = self.signal.take_unclaimed() || last_claim.is_none_or(|at| at.elapsed() >= poll);
            if due {
                last_claim = Some(std::time::Instant::now());
                self.drain().await;
            }
            self.signal.wait(poll).await;
        }
    }

    /// Claims and publishes until nothing is left to claim.
    async fn drain(&self) {
        loop {
            if !self.transport.is_ready() {
                // Rows wait in the outbox until the transport is back.
                return;
            }
            self.room_in_flight().await;
            let rows = match db::bounded(self.claim()).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: claiming failed");
                    tokio::time::sleep(ERROR_PAUSE).await;
                    return;
                }
            };
            if rows.is_empty() {
                return;
            }
            let oldest = rows.iter().map(|r| r.created_at).min();
            if let Some(oldest) = oldest {
                let lag = std::cmp::max((Utc::now() - oldest).num_milliseconds(), 0) as f64 / 1000.0;
                metrics::gauge!("outbox_lag_seconds").set(lag);
            }
            let messages = rows
                .into_iter()
                .map(|row| OutboxMessage {
                    id: row.id,
                    event_id: row.event_id,
                    event_type: row.event_type,
                    routing_key: row.routing_key,
                    body: Arc::from(row.payload.into_bytes()),
                })
                .collect();
            self.publish(messages).await;
        }
    }

    /// Waits while [`MAX_IN_FLIGHT`] publications are unconfirmed.
    async fn room_in_flight(&self) {
        while self.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.capacity.notified()).await;
        }
    }

    /// Hands rows claimed by this node to the transport. While the transport is down they are released
    /// instead, to be claimed again once it is back.
    async fn publish(&self, mut messages: Vec<OutboxMessage>) {
        if messages.is_empty() {
            return;
        }
        if let Some(key) = faults::armed("outbox-claimed")
            && messages.iter().any(|m| m.routing_key == key)
        {
            tracing::error!(routing_key = %key, "fault injection: dying between claim and publication");
            std::process::abort();
        }
        if let Some(key) = faults::armed("outbox-hold") {
            messages.retain(|m| m.routing_key != key);
        }
        self.room_in_flight().await;
        self.in_flight.fetch_add(messages.len(), Ordering::AcqRel);
        let ready = self.transport.is_ready();
        for message in messages {
            let confirm = Confirm::new(message.id, self.confirms.clone());
            if ready {
                self.transport.publish(message, confirm).await;
            } else {
                confirm.nack();
            }
        }
    }

    /// Claims the next batch for this node.
    async fn claim(&self) -> Result<Vec<outbox_events::Model>, DbErr> {
        use outbox_events::Column as C;
        let txn = db::begin_write(&self.db).await?;
        let now = db::now();
        // Unclaimed rows, oldest first: a seek in the (published_at, claimed_by, id) index, however many
        // rows this node has in flight.
        let mut rows = outbox_events::Entity::find()
            .filter(C::PublishedAt.is_null())
            .filter(C::ClaimedBy.is_null())
            .order_by_asc(C::Id)
            .limit(self.settings.batch_size)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(&txn)
            .await?;
        // Now and then, rows whose claim by another node has run out (that node died).
        let room = self.settings.batch_size.saturating_sub(rows.len() as u64);
        if room > 0 && !self.transport.single_node() && self.expired_scan_due() {
            let lease = chrono::Duration::seconds(self.settings.claim_lease_seconds as i64);
            let expired = outbox_events::Entity::find()
                .filter(C::PublishedAt.is_null())
                .filter(C::ClaimedBy.is_not_null())
                .filter(C::ClaimedBy.ne(self.node_id.as_str()))
                .filter(C::ClaimedAt.lt(now - lease))
                .order_by_asc(C::Id)
                .limit(room)
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .all(&txn)
                .await?;
            if !expired.is_empty() {
                tracing::info!(
                    rows = expired.len(),
                    "outbox: taking over claims another node left"
                );
            }
            rows.extend(expired);
        }
        if !rows.is_empty() {
            outbox_events::Entity::update_many()
                .col_expr(C::ClaimedBy, Expr::value(self.node_id.clone()))
                .col_expr(C::ClaimedAt, Expr::value(now))
                .filter(C::Id.is_in(rows.iter().map(|r| r.id)))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(rows)
    }

    /// Whether it is time to look for claims another node left: twice per lease.
    fn expired_scan_due(&self) -> bool {
        let every = Duration::from_secs(Ord::max(self.settings.claim_lease_seconds, 1)) / 2;
        let mut last = self
            .last_expired_scan
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *last {
            Some(at) if at.elapsed() < every => false,
            _ => {
                *last = Some(std::time::Instant::now());
                true
            }
        }
    }
}

/// Releases the claims on unpublished rows: those of node `of`, or every claim.
async fn release_claims(db: &DatabaseConnection, of: Option<&str>) -> Result<u64, DbErr> {
    use outbox_events::Column as C;
    let mut update = outbox_events::Entity::update_many()
        .col_expr(C::ClaimedBy, Expr::value(Option::<String>::None))
        .col_expr(C::ClaimedAt, Expr::value(Option::<chrono::DateTime<Utc>>::None))
        .filter(C::PublishedAt.is_null())
        .filter(C::ClaimedBy.is_not_null());
    if let Some(node) = of {
        update = update.filter(C::ClaimedBy.eq(node));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// Writes confirmations in batches: confirmed rows are published, failed ones are released.
async fn mark_loop(
    db: DatabaseConnection,
    mut rx: mpsc::UnboundedReceiver<(i64, bool)>,
    in_flight: Arc<AtomicUsize>,
    capacity: Arc<Notify>,
    signal: OutboxSignal,
) {
    use outbox_events::Column as C;
    let mut buffer = Vec::with_capacity(MARK_BATCH);
    let mut published: HashSet<i64> = HashSet::new();
    let mut failed: HashSet<i64> = HashSet::new();
    let mut closed = false;
    loop {
        if published.is_empty() && failed.is_empty() {
            if closed {
                return;
            }
            buffer.clear();
            if rx.recv_many(&mut buffer, MARK_BATCH).await == 0 {
                return;
            }
            // More confirmations for the same write, for a moment (a failure is released at once).
            let until = tokio::time::Instant::now() + MARK_LINGER;
            while buffer.len() < MARK_BATCH && buffer.iter().all(|(_, ok)| *ok) {
                let room = MARK_BATCH - buffer.len();
                match tokio::time::timeout_at(until, rx.recv_many(&mut buffer, room)).await {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            for (id, ok) in buffer.drain(..) {
                if ok {
                    published.insert(id)
                } else {
                    failed.insert(id)
                };
            }
        }
        let result: Result<(), DbErr> = db::bounded(async {
            if !published.is_empty() {
                outbox_events::Entity::update_many()
                    .col_expr(C::PublishedAt, Expr::value(db::now()))
                    .filter(C::Id.is_in(published.iter().copied()))
                    .exec(&db)
                    .await?;
            }
            if !failed.is_empty() {
                outbox_events::Entity::update_many()
                    .col_expr(C::ClaimedBy, Expr::value(Option::<String>::None))
                    .col_expr(C::ClaimedAt, Expr::value(Option::<chrono::DateTime<Utc>>::None))
                    .col_expr(C::Attempts, Expr::col(C::Attempts).add(1))
                    .filter(C::Id.is_in(failed.iter().copied()))
                    .exec(&db)
                    .await?;
            }
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                let done = published.len() + failed.len();
                metrics::counter!("outbox_published_total").increment(published.len() as u64);
                let retry_soon = !failed.is_empty();
                published.clear();
                failed.clear();
                in_flight.fetch_sub(done, Ordering::AcqRel);
                capacity.notify_waiters();
                if retry_soon {
                    signal.wake();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox: recording confirmations failed; trying again");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}
