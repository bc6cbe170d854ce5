//! `OrderSaga`: one order's saga in memory — it decides the order's steps and watches its deadline.
//!
//! The registry routes each saga event to the order's actor with the middleware's open transaction
//! ([`Step`]); the actor runs the step there ([`super::step::apply_input`]). When the
//! `AWAITING_PAYMENT` deadline passes, the actor runs the same step through the same middleware path
//! ([`Mailbox::transact`]: a transaction, the step, its events into the outbox, the commit and the
//! after-commit hooks, conflicts retried). Either way the registry learns the committed state and passes
//! it back ([`Advance`]); the actor keeps it, arms or clears its timer, and lets go once the saga ends.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, EntityTrait};

use super::SagaUpdate;
use super::machine::{SagaInput, SagaState};
use super::registry::{Finished, SagaRegistry, effects_of};
use super::step::{Applied, Cause, SagaRows, apply_input};
use crate::envelope::Envelope;
use crate::mailbox::{ConsumeError, Mailbox, Prefetched};
use entities::saga_instances;

/// Pause before an actor that failed reads its saga again.
const RELOAD_PAUSE: Duration = Duration::from_secs(1);
/// The name the deadline's transactions go by in the middleware's logs and metrics.
const DEADLINE: &str = "saga.deadline";

/// One order's saga in memory: its state, and the deadline of `AWAITING_PAYMENT`.
pub struct OrderSaga {
    order_id: String,
    /// `None` until the actor has learnt the state (started for an event, before its step committed).
    state: Option<SagaState>,
    version: i64,
    deadline_at: Option<DateTime<Utc>>,
    timer: Option<SpawnHandle>,
    registry: Addr<SagaRegistry>,
    mailbox: Mailbox,
    payment_timeout: Duration,
}

impl OrderSaga {
    pub(crate) fn new(
        order_id: String,
        known: Option<SagaUpdate>,
        registry: Addr<SagaRegistry>,
        mailbox: Mailbox,
        payment_timeout: Duration,
    ) -> Self {
        Self {
            order_id,
            state: known.as_ref().map(|k| k.state),
            version: known.as_ref().map_or(0, |k| k.version),
            deadline_at: known.and_then(|k| k.deadline_at),
            timer: None,
            registry,
            mailbox,
            payment_timeout,
        }
    }

    /// Arms (or clears) the timer for the current deadline.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        if self.state != Some(SagaState::AwaitingPayment) {
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
        let db = self.mailbox.db().clone();
        let order_id = self.order_id.clone();
        let reload = async move { saga_instances::Entity::find_by_id(order_id).one(&db).await }
            .into_actor(self)
            .map(
                |result, act, ctx| match result.map(|row| row.map(|r| SagaUpdate::from_row(&r))) {
                    Ok(Some(Ok(update))) => ctx.notify(Advance(update)),
                    other => {
                        tracing::warn!(order_id = %act.order_id, ?other, "saga reload failed; trying again");
                        ctx.run_later(RELOAD_PAUSE, |_, ctx| ctx.stop());
                    }
                },
            );
        // Not `wait`: the actor keeps taking steps meanwhile (on SQLite the reload needs the connection
        // that the transaction of a waiting step holds).
        ctx.spawn(reload);
    }
}

/// Run the step an event asks for, inside the middleware's transaction (the event's inbox claim is in
/// it already); the caller commits.
#[derive(Message)]
#[rtype(result = "Result<Applied, ConsumeError>")]
pub struct Step {
    pub txn: Arc<DatabaseTransaction>,
    pub input: SagaInput,
    pub envelope: Arc<Envelope>,
    /// The batch's saga rows, when the transaction read them already ([`super::step::SagaRows`]).
    pub batch: Option<Prefetched>,
}

/// The saga moved on (committed by someone).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Advance(pub SagaUpdate);

/// The deadline of `AWAITING_PAYMENT` passed.
#[derive(Message, Debug)]
#[rtype(result = "()")]
struct DeadlinePassed;

/// The saga waits far from its deadline: the registry let go of the actor, which stops (its timer with it).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Dormant;

impl Handler<Dormant> for OrderSaga {
    type Result = ();

    fn handle(&mut self, _: Dormant, ctx: &mut Self::Context) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        ctx.stop();
    }
}

impl Handler<Step> for OrderSaga {
    type Result = ResponseFuture<Result<Applied, ConsumeError>>;

    fn handle(&mut self, step: Step, _: &mut Self::Context) -> Self::Result {
        let order_id = self.order_id.clone();
        let payment_timeout = self.payment_timeout;
        // Bounded like the middleware's transaction it runs in: a step that waits past it on a lost
        // connection lets go of the transaction.
        Box::pin(crate::db::bounded(async move {
            apply_input(
                step.txn.as_ref(),
                &order_id,
                &step.input,
                Cause::Event(&step.envelope),
                payment_timeout,
                step.batch
                    .as_ref()
                    .and_then(|batch| batch.downcast_ref::<SagaRows>()),
            )
            .await
        }))
    }
}

impl Handler<Advance> for OrderSaga {
    type Result = ();

    fn handle(&mut self, Advance(update): Advance, ctx: &mut Self::Context) {
        if self.state.is_some() && update.version < self.version {
            return; // older news
        }
        self.state = Some(update.state);
        self.version = update.version;
        self.deadline_at = update.deadline_at;
        self.arm(ctx);
        if update.state.is_terminal() {
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
        let order_id = self.order_id.clone();
        let payment_timeout = self.payment_timeout;
        let registry = self.registry.clone();
        let mailbox = self.mailbox.clone();
        let work = async move {
            mailbox
                .transact(DEADLINE, |txn| {
                    let (order_id, registry) = (order_id.clone(), registry.clone());
                    async move {
                        let applied = apply_input(
                            txn.as_ref(),
                            &order_id,
                            &SagaInput::PaymentTimedOut,
                            Cause::Deadline,
                            payment_timeout,
                            None,
                        )
                        .await?;
                        Ok(Some(effects_of(applied, registry)))
                    }
                })
                .await
        }
        .into_actor(self)
        .map(|result, act, ctx| {
            if let Err(e) = result {
                // The database is away, say: read the saga again and re-arm.
                tracing::debug!(order_id = %act.order_id, error = %e, "deadline step failed; reloading");
                ctx.run_later(RELOAD_PAUSE, |_, ctx| ctx.stop());
            }
        });
        // Not `wait`: steps of events keep coming through while the deadline's transaction waits (on
        // SQLite for the one connection, which such a step's transaction may hold). The row lock and the
        // version check order the two.
        ctx.spawn(work);
    }
}
