//! The `SagaRegistry`: supervises this node's `OrderSaga` actors and routes the saga's events to them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::SagaUpdate;
use super::machine::SagaState;
use super::order_saga::{Advance, Dormant, OrderSaga, Step};
use super::step::{Applied, SagaRows, input_of};
use crate::admission::Admitted;
use crate::db;
use crate::mailbox::{Apply, ConsumeError, Consumer, Effects, FinishBatch, Mailbox, Prefetch, Prefetched};
use crate::topology::{Q_ORDER_INVENTORY_RESULT, Q_ORDER_PAYMENT_RESULT};
use entities::saga_instances;

/// How often the registry looks for overdue deadlines that no actor in memory watches.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Sagas loaded per query when resuming.
const RESUME_PAGE: u64 = 1_000;
/// Deadlines due soon read per sweep, soonest first (a sweep every 5 s: 2,000 deadlines a second).
const DUE_PAGE: u64 = 10_000;
/// Sagas in memory refreshed from the database per sweep.
const REFRESH_SLICE: usize = 500;
/// A saga waiting for its payment keeps an actor (and a timer) only when its deadline is this close; the
/// others are woken by the sweep from the database's deadline index, or by their next event.
pub const WAKE_AHEAD: Duration = Duration::from_secs(15);
/// Stalled sagas whose events one sweep publishes again, at most.
const REDELIVER_PAGE: u64 = 500;

/// Whether a saga in `state` waits on the engine itself (not on a payment gateway): the engine's backlog.
fn owed(state: Option<SagaState>) -> bool {
    state.is_some_and(|s| crate::admission::OWED.contains(&s))
}

/// An actor in memory, and the state it was last told.
struct Held {
    addr: Addr<OrderSaga>,
    state: Option<SagaState>,
}

/// Supervises the `OrderSaga` actors of this node and consumes the saga's result queues.
pub struct SagaRegistry {
    mailbox: Mailbox,
    sagas: BTreeMap<String, Held>,
    /// How many of them wait on the engine itself ([`owed`]), for admission control.
    backlog: Arc<AtomicUsize>,
    /// Where the next refresh of in-memory sagas starts (they are refreshed a slice at a time).
    refresh_from: String,
    payment_timeout: Duration,
    /// Sagas waiting on the inventory this long have their events published again (`None`: never).
    redeliver_after: Option<Duration>,
}

impl SagaRegistry {
    pub fn new(mailbox: Mailbox, payment_timeout: Duration, backlog: Arc<AtomicUsize>) -> Self {
        Self {
            mailbox,
            sagas: BTreeMap::new(),
            backlog,
            refresh_from: String::new(),
            payment_timeout,
            redeliver_after: None,
        }
    }

    /// Sagas waiting on the inventory that long have their events published again (default: never;
    /// the engine sets it when a broker carries the events).
    pub fn redelivering_after(mut self, after: Option<Duration>) -> Self {
        self.redeliver_after = after;
        self
    }

    /// The actor of `order_id`, started if none is in memory (`known`: its state, when known).
    fn actor(
        &mut self,
        order_id: &str,
        known: Option<SagaUpdate>,
        ctx: &mut Context<Self>,
    ) -> Addr<OrderSaga> {
        if let Some(held) = self.sagas.get(order_id) {
            return held.addr.clone();
        }
        let registry = ctx.address();
        let mailbox = self.mailbox.clone();
        let payment_timeout = self.payment_timeout;
        let state = known.as_ref().map(|k| k.state);
        let id = order_id.to_owned();
        let addr = Supervisor::start(move |_| OrderSaga::new(id, known, registry, mailbox, payment_timeout));
        self.sagas.insert(
            order_id.to_owned(),
            Held {
                addr: addr.clone(),
                state: None,
            },
        );
        self.set_state(order_id, state);
        addr
    }

    /// Records the state an actor was told, keeping the backlog in step.
    fn set_state(&mut self, order_id: &str, state: Option<SagaState>) {
        if let Some(held) = self.sagas.get_mut(order_id) {
            match (owed(held.state), owed(state)) {
                (false, true) => {
                    self.backlog.fetch_add(1, Ordering::Relaxed);
                }
                (true, false) => {
                    self.backlog.fetch_sub(1, Ordering::Relaxed);
                }
                _ => {}
            }
            held.state = state;
        }
    }

    /// Lets go of an actor; answers its address, if one was held.
    fn release(&mut self, order_id: &str) -> Option<Addr<OrderSaga>> {
        self.set_state(order_id, None);
        self.sagas.remove(order_id).map(|held| held.addr)
    }
}

/// Whether a saga in `update` can wait without an actor: it waits for a payment whose deadline is
/// further away than [`WAKE_AHEAD`].
fn dormant(update: &SagaUpdate) -> bool {
    update.state == SagaState::AwaitingPayment
        && update.deadline_at.is_some_and(|at| {
            at - chrono::Utc::now() > chrono::Duration::from_std(WAKE_AHEAD).unwrap_or_default()
        })
}

/// The effects of a committed step: its events, and the registry told of the new state afterwards.
/// The two saga queues' consumers, applied by `sagas` on `home`. Both read their batch's saga rows once
/// before its events ([`Prefetch`]) and write the steps together when it ends ([`FinishBatch`]):
/// without the finish a batch's steps would never be written.
pub fn consumers(sagas: &Addr<SagaRegistry>, home: &actix::ArbiterHandle) -> [Consumer; 2] {
    [Q_ORDER_INVENTORY_RESULT, Q_ORDER_PAYMENT_RESULT].map(|queue| Consumer {
        queue,
        apply: sagas.clone().recipient(),
        prepare: None,
        prefetch: Some(sagas.clone().recipient()),
        finish: Some(sagas.clone().recipient()),
        serial: false,
        home: home.clone(),
    })
}

pub(crate) fn effects_of(applied: Applied, registry: Addr<SagaRegistry>) -> Effects {
    let effects = Effects {
        publish: applied.publish,
        after_commit: vec![],
    };
    match applied.update {
        Some(update) => effects.and_then(move || registry.do_send(Track(update))),
        None => effects,
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

/// A new order's saga, with its admission ([`crate::admission`]): the placement counts as in flight
/// until the registry counts the saga itself, so that no order is let in between the two.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Placed(pub SagaUpdate, pub Admitted);

/// An `OrderSaga` actor's saga has ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Finished {
    pub order_id: String,
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
            if let Some(saga) = self.release(&update.order_id) {
                saga.do_send(Advance(update));
            }
            return;
        }
        if dormant(&update) {
            // Nothing to do for a while: no actor, no timer; the sweep wakes it before its deadline.
            if let Some(saga) = self.release(&update.order_id) {
                saga.do_send(Dormant);
            }
            return;
        }
        let saga = self.actor(&update.order_id.clone(), Some(update.clone()), ctx);
        self.set_state(&update.order_id, Some(update.state));
        saga.do_send(Advance(update));
    }
}

impl Handler<Placed> for SagaRegistry {
    type Result = ();

    fn handle(&mut self, Placed(update, admitted): Placed, ctx: &mut Self::Context) {
        <Self as Handler<Track>>::handle(self, Track(update), ctx);
        drop(admitted);
    }
}

impl Handler<Finished> for SagaRegistry {
    type Result = ();

    fn handle(&mut self, msg: Finished, _: &mut Self::Context) {
        self.release(&msg.order_id);
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
        let db = self.mailbox.db().clone();
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
                let rows = db::bounded(
                    saga_instances::Entity::find()
                        .filter(saga_instances::Column::State.is_in(unfinished.clone()))
                        .filter(saga_instances::Column::OrderId.gt(after.as_str()))
                        .order_by_asc(saga_instances::Column::OrderId)
                        .limit(RESUME_PAGE)
                        .all(&db),
                )
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

    /// Two chores: start actors for deadlines due within [`WAKE_AHEAD`] that nobody here watches (sagas
    /// that waited without an actor, or whose node died), and refresh
    /// a slice of the sagas in memory from the database. With several nodes, a saga's events land on any
    /// node, so a node may hold an actor for a saga another node has since finished; the refresh lets
    /// such actors go, and those of sagas that do not exist.
    fn handle(&mut self, _: Sweep, ctx: &mut Self::Context) {
        metrics::gauge!("saga_actors_in_memory").set(self.sagas.len() as f64);
        let db = self.mailbox.db().clone();
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
        let redeliver_after = self.redeliver_after;
        let fut = async move {
            let redelivered = match redeliver_after {
                Some(after) => {
                    db::bounded(crate::outbox::redeliver_stalled(&db, after, REDELIVER_PAGE)).await
                }
                None => Ok(0),
            };
            match redelivered {
                Ok(0) => {}
                Ok(rows) => tracing::warn!(
                    rows,
                    after = ?redeliver_after,
                    "outbox: publishing again the events of sagas that waited on the inventory too long"
                ),
                Err(e) => tracing::warn!(error = %e, "outbox: redelivery of stalled sagas failed"),
            }
            let horizon = db::now() + chrono::Duration::from_std(WAKE_AHEAD).unwrap_or_default();
            let overdue = db::bounded(
                saga_instances::Entity::find()
                    .filter(saga_instances::Column::State.eq(SagaState::AwaitingPayment.as_str()))
                    .filter(saga_instances::Column::DeadlineAt.lt(horizon))
                    .order_by_asc(saga_instances::Column::DeadlineAt)
                    .limit(DUE_PAGE)
                    .all(&db),
            )
            .await;
            let refreshed = if slice.is_empty() {
                Ok(vec![])
            } else {
                db::bounded(
                    saga_instances::Entity::find()
                        .filter(saga_instances::Column::OrderId.is_in(slice.clone()))
                        .all(&db),
                )
                .await
            };
            match (overdue, refreshed) {
                (Ok(overdue), Ok(refreshed)) => Some((overdue, refreshed, slice)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "saga sweep failed");
                    None
                }
            }
        }
        .into_actor(self)
        .map(move |swept, act, _| {
            let Some((overdue, refreshed, slice)) = swept else {
                return;
            };
            for row in overdue {
                if !act.sagas.contains_key(&row.order_id)
                    && let Ok(update) = SagaUpdate::from_row(&row)
                {
                    me.do_send(Track(update));
                }
            }
            // An actor started for a saga that does not exist (a poison event) has nothing to watch.
            for id in &slice {
                if !refreshed.iter().any(|row| &row.order_id == id) {
                    act.release(id);
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

    /// Routes a saga event to its order's actor, which runs the step in the middleware's transaction.
    fn handle(&mut self, msg: Apply, ctx: &mut Self::Context) -> Self::Result {
        let input = match input_of(&msg.envelope.event) {
            Ok(input) => input,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let order_id = msg.envelope.event.order_id();
        let saga = self.actor(order_id, None, ctx);
        let registry = ctx.address();
        Box::pin(async move {
            let step = Step {
                txn: msg.txn,
                input,
                envelope: msg.envelope,
                batch: msg.batch,
            };
            let applied = saga
                .send(step)
                .await
                .map_err(|e| ConsumeError::Transient(format!("saga actor: {e}")))??;
            Ok(effects_of(applied, registry))
        })
    }
}

impl Handler<Prefetch> for SagaRegistry {
    type Result = ResponseFuture<Result<Option<Prefetched>, ConsumeError>>;

    /// The saga rows of a batch's events, read and locked in one statement.
    fn handle(&mut self, msg: Prefetch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            let order_ids = msg.envelopes.iter().map(|e| e.event.order_id());
            let rows = SagaRows::read(msg.txn.as_ref(), order_ids).await?;
            Ok(Some(Arc::new(rows) as Prefetched))
        })
    }
}

impl Handler<FinishBatch> for SagaRegistry {
    type Result = ResponseFuture<Result<(), ConsumeError>>;

    /// The batch's steps, written together.
    fn handle(&mut self, msg: FinishBatch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            match msg.batch.downcast_ref::<SagaRows>() {
                Some(rows) => rows.write(msg.txn.as_ref()).await,
                None => Ok(()),
            }
        })
    }
}
