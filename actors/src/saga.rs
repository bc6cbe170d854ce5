//! The saga: `SagaRegistry` supervises one `OrderSaga` actor per in-flight order.
//!
//! The database is the truth and the actors are its moving parts. A saga event from the bus is applied
//! by the registry (the consumer of `q.order.inventory-result` and `q.order.payment-result`) inside the
//! mailbox middleware's transaction: the saga row is locked, the pure machine ([`crate::machine`])
//! decides, and the new state, a history row, the order's status and any command (a release request) are
//! written together, with the row's `version` as the condition so that two nodes never both advance one
//! saga. Once that commits, the registry tells the order's `OrderSaga` actor, which keeps the state in
//! memory, arms the `AWAITING_PAYMENT` deadline (compensating with `PAYMENT_TIMEOUT` when it passes) and
//! stops when the saga ends. At start, every unfinished saga is resumed from the database; a periodic
//! sweep catches deadlines nobody in memory is watching (a node that died).

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::auth::Identity;
use crate::db;
use crate::envelope::{Envelope, Event, InventoryReleaseRequested, PaymentRefundRequested};
use crate::machine::{self, Command, SagaInput, SagaState, Transition};
use crate::mailbox::{Apply, ConsumeError, Effects};
use crate::outbox::{self, OutboxSignal};
use crate::payment;
use entities::{orders, saga_history, saga_instances};

/// How often the registry looks for overdue deadlines that no actor in memory watches.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Sagas loaded per query when resuming.
const RESUME_PAGE: u64 = 1_000;
/// Sagas in memory refreshed from the database per sweep.
const REFRESH_SLICE: usize = 500;
/// Pause before an actor tries a failed deadline transition again.
const DEADLINE_RETRY: Duration = Duration::from_secs(1);

/// Order statuses.
pub mod order_status {
    pub const PENDING: &str = "PENDING";
    pub const CONFIRMED: &str = "CONFIRMED";
    pub const FAILED: &str = "FAILED";
}

/// What changed in a saga, as the actors learn it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaUpdate {
    pub order_id: String,
    pub state: SagaState,
    pub version: i64,
    pub deadline_at: Option<DateTime<Utc>>,
}

impl SagaUpdate {
    fn from_row(row: &saga_instances::Model) -> Result<Self, String> {
        Ok(SagaUpdate {
            order_id: row.order_id.clone(),
            state: row.state.parse()?,
            version: row.version,
            deadline_at: row.deadline_at,
        })
    }
}

/// What caused a step.
pub enum Cause<'a> {
    /// An event from the bus.
    Event(&'a Envelope),
    /// The saga's own deadline.
    Deadline,
}

/// The outcome of applying one input.
pub struct Applied {
    pub transition: Transition,
    /// `None` when nothing was written (a deadline that had become moot).
    pub update: Option<SagaUpdate>,
    /// Events to publish, in the same transaction.
    pub publish: Vec<Envelope>,
}

/// The saga input an event stands for.
pub fn input_of(event: &Event) -> Result<SagaInput, ConsumeError> {
    Ok(match event {
        Event::InventoryReserved(e) => SagaInput::InventoryReserved {
            reservation_id: e.reservation_id.clone(),
        },
        Event::InventoryFailed(e) => SagaInput::InventoryFailed {
            reason: e.reason.clone(),
        },
        Event::PaymentSucceeded(e) => SagaInput::PaymentSucceeded {
            payment_id: e.payment_id.clone(),
        },
        Event::PaymentFailed(e) => SagaInput::PaymentFailed {
            payment_id: e.payment_id.clone(),
            reason: e.reason.clone(),
        },
        Event::InventoryReleased(e) => SagaInput::InventoryReleased {
            release_id: e.release_id.clone(),
            reason: e.reason.clone(),
        },
        Event::PaymentRefunded(e) => SagaInput::PaymentRefunded {
            payment_id: e.payment_id.clone(),
            refund_id: e.refund_id.clone(),
        },
        other => {
            return Err(ConsumeError::Poison(format!(
                "{} is not a saga event",
                other.event_type()
            )));
        }
    })
}

fn detail(
    input: &SagaInput,
    transition: &Transition,
    cause: &Cause<'_>,
    payment_timeout: Duration,
) -> String {
    let refund = transition
        .commands
        .iter()
        .any(|c| matches!(c, Command::RequestRefund { .. }));
    match input {
        SagaInput::InventoryReserved { reservation_id } => format!("reservation {reservation_id}"),
        SagaInput::InventoryFailed { reason } => reason.clone(),
        SagaInput::PaymentSucceeded { payment_id } if refund => {
            format!("payment {payment_id} succeeded after the order failed: refund requested")
        }
        SagaInput::PaymentSucceeded { payment_id } if matches!(cause, Cause::Deadline) => format!(
            "payment {payment_id} found in the payment ledger at the deadline (its event had not arrived)"
        ),
        SagaInput::PaymentSucceeded { payment_id } => format!("payment {payment_id}"),
        SagaInput::PaymentFailed { payment_id, reason } if matches!(cause, Cause::Deadline) => format!(
            "payment {payment_id}: {reason}, found in the payment ledger at the deadline (its event had not arrived)"
        ),
        SagaInput::PaymentFailed { payment_id, reason } => format!("payment {payment_id}: {reason}"),
        SagaInput::PaymentTimedOut => format!("no payment result within {}s", payment_timeout.as_secs()),
        SagaInput::InventoryReleased { release_id, reason } => format!("release {release_id} ({reason})"),
        SagaInput::PaymentRefunded {
            payment_id,
            refund_id,
        } => format!("payment {payment_id} refunded (refund {refund_id})"),
    }
}

/// What the payment ledger says when the payment deadline passes: a payment recorded whose result has not
/// reached the saga yet (its node died before publishing it, say) decides the step instead of the deadline.
async fn at_deadline(txn: &impl ConnectionTrait, order_id: &str) -> Result<SagaInput, ConsumeError> {
    let Some(record) = payment::find(txn, order_id).await? else {
        return Ok(SagaInput::PaymentTimedOut);
    };
    Ok(match record.status.as_str() {
        payment::SUCCEEDED => {
            metrics::counter!("saga_deadline_found_payment_total", "status" => payment::SUCCEEDED)
                .increment(1);
            SagaInput::PaymentSucceeded {
                payment_id: record.id,
            }
        }
        payment::FAILED => {
            metrics::counter!("saga_deadline_found_payment_total", "status" => payment::FAILED).increment(1);
            SagaInput::PaymentFailed {
                payment_id: record.id,
                reason: record.reason.unwrap_or_else(|| payment::DECLINED.to_owned()),
            }
        }
        _ => SagaInput::PaymentTimedOut,
    })
}

/// Applies one input to the saga of `order_id` inside `txn`: lock, decide, write state + history +
/// order status + commands, conditioned on the version read.
///
/// A deadline first asks the payment ledger: a payment recorded but not yet delivered to the saga
/// confirms (or fails) the order as its event would have; only when there is none does the deadline
/// compensate with `PAYMENT_TIMEOUT`. A payment that succeeds after that is refunded.
pub async fn apply_input(
    txn: &impl ConnectionTrait,
    order_id: &str,
    input: &SagaInput,
    cause: Cause<'_>,
    payment_timeout: Duration,
) -> Result<Applied, ConsumeError> {
    let row = saga_instances::Entity::find_by_id(order_id.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ConsumeError::Poison(format!("no saga for order {order_id}")))?;
    let state: SagaState = row.state.parse().map_err(ConsumeError::Poison)?;
    let ledger;
    let input = match input {
        SagaInput::PaymentTimedOut if state == SagaState::AwaitingPayment => {
            ledger = at_deadline(txn, order_id).await?;
            &ledger
        }
        other => other,
    };
    let transition = machine::step(state, input);
    if !transition.applied() && matches!(input, SagaInput::PaymentTimedOut) {
        return Ok(Applied {
            transition,
            update: None,
            publish: vec![],
        });
    }

    let now = db::now();
    let version = row.version + 1;
    let mut update = saga_instances::ActiveModel {
        state: Set(transition.to.as_str().to_owned()),
        version: Set(version),
        updated_at: Set(now),
        ..Default::default()
    };
    let mut deadline_at = row.deadline_at;
    let mut publish = Vec::new();
    let mut order_change: Option<(&str, Option<String>)> = None;
    if transition.applied() {
        match input {
            SagaInput::InventoryReserved { reservation_id } => {
                update.reservation_id = Set(Some(reservation_id.clone()))
            }
            SagaInput::PaymentSucceeded { payment_id } | SagaInput::PaymentFailed { payment_id, .. } => {
                update.payment_id = Set(Some(payment_id.clone()))
            }
            _ => {}
        }
        if transition.to.is_terminal() && !transition.from.is_terminal() {
            update.completed_at = Set(Some(now));
        }
        // Events this step causes keep the trace and identity of what caused it.
        let emit = |event: Event| match &cause {
            Cause::Event(envelope) => envelope.caused(event),
            Cause::Deadline => {
                let identity: Identity = serde_json::from_str(&row.identity).unwrap_or(Identity {
                    user_id: row.user_id.clone(),
                    roles: vec![],
                });
                Envelope::new(event, row.trace_id.clone(), identity)
            }
        };
        for command in &transition.commands {
            match command {
                Command::ArmPaymentDeadline => {
                    let timeout =
                        chrono::Duration::from_std(payment_timeout).unwrap_or(chrono::Duration::MAX);
                    deadline_at = Some(now + timeout);
                }
                Command::ClearDeadline => deadline_at = None,
                Command::ConfirmOrder => order_change = Some((order_status::CONFIRMED, None)),
                Command::FailOrder { reason } => {
                    update.failure_reason = Set(Some(reason.clone()));
                    order_change = Some((order_status::FAILED, Some(reason.clone())));
                }
                Command::RequestRelease { reason } => {
                    update.failure_reason = Set(Some(reason.clone()));
                    publish.push(emit(Event::InventoryReleaseRequested(
                        InventoryReleaseRequested {
                            order_id: order_id.to_owned(),
                            reason: reason.clone(),
                        },
                    )));
                }
                Command::RequestRefund { payment_id } => {
                    metrics::counter!("saga_refunds_requested_total").increment(1);
                    tracing::warn!(
                        order_id,
                        payment_id = %payment_id,
                        state = %transition.from,
                        "a payment succeeded for an order that will not confirm; refunding it"
                    );
                    publish.push(emit(Event::PaymentRefundRequested(PaymentRefundRequested {
                        order_id: order_id.to_owned(),
                        payment_id: payment_id.clone(),
                        reason: row
                            .failure_reason
                            .clone()
                            .unwrap_or_else(|| machine::ORDER_NOT_CONFIRMED.to_owned()),
                    })));
                }
            }
        }
        update.deadline_at = Set(deadline_at);
    }

    // The saga row (conditioned on the version read), its history row and the order's status go to the
    // database together; a saga row that moved on shows as one row short.
    let backend = txn.get_database_backend();
    let mut writes = db::Writes::new();
    writes.push(
        backend,
        &saga_instances::Entity::update_many()
            .set(update)
            .filter(saga_instances::Column::OrderId.eq(order_id))
            .filter(saga_instances::Column::Version.eq(row.version)),
    );
    let (event_id, routing_key) = match &cause {
        Cause::Event(envelope) => (
            Some(envelope.event_id.clone()),
            Some(envelope.routing_key().to_owned()),
        ),
        Cause::Deadline => (None, None),
    };
    let detail = match &transition.ignored {
        None => detail(input, &transition, &cause, payment_timeout),
        Some(why) => format!("{why}: late or out of order, recorded and ignored"),
    };
    writes.push(
        backend,
        &saga_history::Entity::insert(saga_history::ActiveModel {
            order_id: Set(order_id.to_owned()),
            seq: Set(version as i32),
            at: Set(now),
            event_type: Set(input.name().to_owned()),
            event_id: Set(event_id),
            routing_key: Set(routing_key),
            from_state: Set(Some(transition.from.as_str().to_owned())),
            to_state: Set(transition.to.as_str().to_owned()),
            detail: Set(Some(detail)),
            ..Default::default()
        }),
    );
    let mut expected = 2;
    if let Some((status, reason)) = order_change {
        writes.push(
            backend,
            &orders::Entity::update_many()
                .col_expr(orders::Column::Status, Expr::value(status))
                .col_expr(orders::Column::FailureReason, Expr::value(reason))
                .col_expr(orders::Column::UpdatedAt, Expr::value(now))
                .filter(orders::Column::Id.eq(order_id)),
        );
        expected += 1;
    }
    if writes.execute(txn).await? != expected {
        return Err(ConsumeError::Conflict(format!(
            "saga {order_id} moved past version {}",
            row.version
        )));
    }

    if transition.applied() {
        metrics::counter!(
            "saga_transitions_total",
            "from" => transition.from.as_str(),
            "to" => transition.to.as_str()
        )
        .increment(1);
        if transition.to.is_terminal() && !transition.from.is_terminal() {
            let seconds = (now - row.started_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("saga_duration_seconds", "state" => transition.to.as_str()).record(seconds);
        }
    } else {
        metrics::counter!("saga_late_events_total").increment(1);
    }
    let update = SagaUpdate {
        order_id: order_id.to_owned(),
        state: transition.to,
        version,
        deadline_at,
    };
    Ok(Applied {
        transition,
        update: Some(update),
        publish,
    })
}

/// Supervises the `OrderSaga` actors of this node and consumes the saga's result queues.
pub struct SagaRegistry {
    db: DatabaseConnection,
    sagas: BTreeMap<String, Addr<OrderSaga>>,
    /// Where the next refresh of in-memory sagas starts (they are refreshed a slice at a time).
    refresh_from: String,
    payment_timeout: Duration,
    outbox: OutboxSignal,
}

impl SagaRegistry {
    pub fn new(db: DatabaseConnection, payment_timeout: Duration, outbox: OutboxSignal) -> Self {
        Self {
            db,
            sagas: BTreeMap::new(),
            refresh_from: String::new(),
            payment_timeout,
            outbox,
        }
    }
}

impl Actor for SagaRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SWEEP_INTERVAL, |_, ctx| ctx.notify(Sweep));
    }
}

/// A saga changed (or was created): keep its actor in step, start one if needed, let it go if it ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Track(pub SagaUpdate);

/// An `OrderSaga` actor has stopped.
#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    order_id: String,
}

/// Loads every unfinished saga from the database and starts its actor (at start).
#[derive(Message)]
#[rtype(result = "Result<usize, DbErr>")]
pub struct Resume;

/// Looks for overdue deadlines that no actor here watches.
#[derive(Message)]
#[rtype(result = "()")]
struct Sweep;

/// How many saga actors are in memory.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct InMemory;

impl Handler<Track> for SagaRegistry {
    type Result = ();

    fn handle(&mut self, Track(update): Track, ctx: &mut Self::Context) {
        if update.state.is_terminal() {
            if let Some(saga) = self.sagas.remove(&update.order_id) {
                saga.do_send(Advance(update));
            }
            return;
        }
        let saga = self.sagas.entry(update.order_id.clone()).or_insert_with(|| {
            let registry = ctx.address();
            let db = self.db.clone();
            let outbox = self.outbox.clone();
            let payment_timeout = self.payment_timeout;
            let first = update.clone();
            Supervisor::start(move |_| OrderSaga::new(first, db, registry, outbox, payment_timeout))
        });
        saga.do_send(Advance(update));
    }
}

impl Handler<Finished> for SagaRegistry {
    type Result = ();

    fn handle(&mut self, msg: Finished, _: &mut Self::Context) {
        self.sagas.remove(&msg.order_id);
    }
}

impl Handler<InMemory> for SagaRegistry {
    type Result = usize;

    fn handle(&mut self, _: InMemory, _: &mut Self::Context) -> usize {
        metrics::gauge!("saga_actors_in_memory").set(self.sagas.len() as f64);
        self.sagas.len()
    }
}

impl Handler<Resume> for SagaRegistry {
    type Result = ResponseFuture<Result<usize, DbErr>>;

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let me = ctx.address();
        Box::pin(async move {
            let unfinished: Vec<&str> = SagaState::ALL
                .iter()
                .filter(|s| !s.is_terminal())
                .map(|s| s.as_str())
                .collect();
            let mut after = String::new();
            let mut resumed = 0;
            loop {
                let rows = saga_instances::Entity::find()
                    .filter(saga_instances::Column::State.is_in(unfinished.clone()))
                    .filter(saga_instances::Column::OrderId.gt(after.as_str()))
                    .order_by_asc(saga_instances::Column::OrderId)
                    .limit(RESUME_PAGE)
                    .all(&db)
                    .await?;
                let Some(last) = rows.last() else { break };
                after = last.order_id.clone();
                for row in &rows {
                    match SagaUpdate::from_row(row) {
                        Ok(update) => {
                            me.do_send(Track(update));
                            resumed += 1;
                        }
                        Err(e) => tracing::error!(order_id = %row.order_id, error = %e, "cannot resume saga"),
                    }
                }
            }
            if resumed > 0 {
                tracing::info!(sagas = resumed, "resumed unfinished sagas");
            }
            Ok(resumed)
        })
    }
}

impl Handler<Sweep> for SagaRegistry {
    type Result = ();

    /// Two chores: start actors for overdue deadlines nobody here watches (their node died), and refresh
    /// a slice of the sagas in memory from the database. With several nodes, a saga's events land on any
    /// node, so a node may hold an actor for a saga another node has since finished; the refresh lets
    /// such actors go.
    fn handle(&mut self, _: Sweep, ctx: &mut Self::Context) {
        metrics::gauge!("saga_actors_in_memory").set(self.sagas.len() as f64);
        let db = self.db.clone();
        let me = ctx.address();
        let mut slice: Vec<String> = self
            .sagas
            .range(self.refresh_from.clone()..)
            .take(REFRESH_SLICE)
            .map(|(id, _)| id.clone())
            .collect();
        if slice.len() < REFRESH_SLICE {
            // Wrap around.
            let more = REFRESH_SLICE - slice.len();
            slice.extend(
                self.sagas
                    .keys()
                    .take(more)
                    .filter(|id| **id < self.refresh_from)
                    .cloned(),
            );
        }
        self.refresh_from = slice.last().map(|id| format!("{id}\u{0}")).unwrap_or_default();
        let fut = async move {
            let overdue = saga_instances::Entity::find()
                .filter(saga_instances::Column::State.eq(SagaState::AwaitingPayment.as_str()))
                .filter(saga_instances::Column::DeadlineAt.lt(db::now() - chrono::Duration::seconds(1)))
                .limit(RESUME_PAGE)
                .all(&db)
                .await;
            let refreshed = if slice.is_empty() {
                Ok(vec![])
            } else {
                saga_instances::Entity::find()
                    .filter(saga_instances::Column::OrderId.is_in(slice))
                    .all(&db)
                    .await
            };
            match (overdue, refreshed) {
                (Ok(overdue), Ok(refreshed)) => (overdue, refreshed),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "saga sweep failed");
                    (vec![], vec![])
                }
            }
        }
        .into_actor(self)
        .map(move |(overdue, refreshed), act, _| {
            for row in overdue {
                if !act.sagas.contains_key(&row.order_id)
                    && let Ok(update) = SagaUpdate::from_row(&row)
                {
                    me.do_send(Track(update));
                }
            }
            // Actors ignore what they knew already; a finished saga's actor is let go.
            for row in refreshed {
                if let Ok(update) = SagaUpdate::from_row(&row) {
                    me.do_send(Track(update));
                }
            }
        });
        ctx.spawn(fut);
    }
}

impl Handler<Apply> for SagaRegistry {
    type Result = ResponseFuture<Result<Effects, ConsumeError>>;

    fn handle(&mut self, msg: Apply, ctx: &mut Self::Context) -> Self::Result {
        let me = ctx.address();
        let payment_timeout = self.payment_timeout;
        Box::pin(async move {
            let input = input_of(&msg.envelope.event)?;
            let order_id = msg.envelope.event.order_id().to_owned();
            let applied = apply_input(
                msg.txn.as_ref(),
                &order_id,
                &input,
                Cause::Event(&msg.envelope),
                payment_timeout,
            )
            .await?;
            let mut effects = Effects {
                publish: applied.publish,
                after_commit: vec![],
            };
            if let Some(update) = applied.update {
                effects = effects.and_then(move || me.do_send(Track(update)));
            }
            Ok(effects)
        })
    }
}

/// One order's saga in memory: its state, and the deadline of `AWAITING_PAYMENT`.
pub struct OrderSaga {
    order_id: String,
    state: SagaState,
    version: i64,
    deadline_at: Option<DateTime<Utc>>,
    timer: Option<SpawnHandle>,
    db: DatabaseConnection,
    registry: Addr<SagaRegistry>,
    outbox: OutboxSignal,
    payment_timeout: Duration,
}

impl OrderSaga {
    fn new(
        first: SagaUpdate,
        db: DatabaseConnection,
        registry: Addr<SagaRegistry>,
        outbox: OutboxSignal,
        payment_timeout: Duration,
    ) -> Self {
        Self {
            order_id: first.order_id,
            state: first.state,
            version: first.version,
            deadline_at: first.deadline_at,
            timer: None,
            db,
            registry,
            outbox,
            payment_timeout,
        }
    }

    /// Arms (or clears) the timer for the current deadline.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if self.state != SagaState::AwaitingPayment {
            return;
        }
        if let Some(deadline) = self.deadline_at {
            let delay = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            self.timer = Some(ctx.notify_later(DeadlinePassed, delay));
        }
    }
}

impl Actor for OrderSaga {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.arm(ctx);
    }
}

impl Supervised for OrderSaga {
    /// After a failure, the actor forgets what it knew and reads the saga again.
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let order_id = self.order_id.clone();
        let reload = async move { saga_instances::Entity::find_by_id(order_id).one(&db).await }
            .into_actor(self)
            .map(
                |result, act, ctx| match result.map(|row| row.map(|r| SagaUpdate::from_row(&r))) {
                    Ok(Some(Ok(update))) => ctx.notify(Advance(update)),
                    other => {
                        tracing::warn!(order_id = %act.order_id, ?other, "saga reload failed; trying again");
                        ctx.run_later(DEADLINE_RETRY, |_, ctx| ctx.stop());
                    }
                },
            );
        ctx.wait(reload);
    }
}

/// The saga moved on (committed by someone).
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct Advance(SagaUpdate);

/// The deadline of `AWAITING_PAYMENT` passed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct DeadlinePassed;

impl Handler<Advance> for OrderSaga {
    type Result = ();

    fn handle(&mut self, Advance(update): Advance, ctx: &mut Self::Context) {
        if update.version < self.version {
            return; // older news
        }
        self.state = update.state;
        self.version = update.version;
        self.deadline_at = update.deadline_at;
        self.arm(ctx);
        if self.state.is_terminal() {
            // The registry lets go of the address; with none left, the actor stops by itself.
            self.registry.do_send(Finished {
                order_id: self.order_id.clone(),
            });
        }
    }
}

impl Handler<DeadlinePassed> for OrderSaga {
    type Result = ();

    fn handle(&mut self, _: DeadlinePassed, ctx: &mut Self::Context) {
        self.timer = None;
        let db = self.db.clone();
        let order_id = self.order_id.clone();
        let payment_timeout = self.payment_timeout;
        let outbox = self.outbox.clone();
        let work = async move {
            let txn = db::begin_write(&db).await?;
            let applied = apply_input(
                &txn,
                &order_id,
                &SagaInput::PaymentTimedOut,
                Cause::Deadline,
                payment_timeout,
            )
            .await?;
            outbox::insert(&txn, &applied.publish).await?;
            txn.commit().await?;
            if !applied.publish.is_empty() {
                outbox.wake();
            }
            Ok::<_, ConsumeError>(applied.update)
        }
        .into_actor(self)
        .map(|result, act, ctx| match result {
            Ok(Some(update)) => {
                tracing::info!(order_id = %act.order_id, "payment deadline passed; compensating");
                ctx.notify(Advance(update));
            }
            Ok(None) => {}
            Err(e) => {
                // Someone else moved the saga, or the database is away: read it again and re-arm.
                tracing::debug!(order_id = %act.order_id, error = %e, "deadline step failed; reloading");
                ctx.run_later(DEADLINE_RETRY, |_, ctx| ctx.stop());
            }
        });
        ctx.wait(work);
    }
}

/// A saga row and its history, for inspection.
pub async fn find(
    db: &DatabaseConnection,
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

/// A page of sagas, most recently updated first: optionally in one state, optionally not updated for
/// `older_than` (stuck). Also the total matching.
pub async fn list(
    db: &DatabaseConnection,
    state: Option<SagaState>,
    older_than: Option<Duration>,
    page: u64,
    size: u64,
) -> Result<(Vec<saga_instances::Model>, u64), DbErr> {
    use sea_orm::PaginatorTrait;
    let mut query = saga_instances::Entity::find();
    if let Some(state) = state {
        query = query.filter(saga_instances::Column::State.eq(state.as_str()));
    }
    if let Some(older_than) = older_than {
        let age = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let cutoff = db::now()
            .checked_sub_signed(age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        query = query.filter(saga_instances::Column::UpdatedAt.lt(cutoff));
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .order_by_desc(saga_instances::Column::UpdatedAt)
        .order_by_desc(saga_instances::Column::OrderId)
        .offset(page.saturating_mul(size))
        .limit(size)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// How many sagas are in each state (every state listed, zeros included).
pub async fn counts(db: &DatabaseConnection) -> Result<Vec<(SagaState, u64)>, DbErr> {
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
