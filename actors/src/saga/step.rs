//! One step of a saga, persisted: the transaction that locks the saga row, lets the pure machine
//! ([`super::machine`]) decide, and writes the new state, a history row, the order's status and the
//! events the step causes — conditioned on the row's `version`, so that two writers (two nodes, an event
//! and a deadline) never both advance one saga. Events and deadlines both come through [`apply_input`],
//! called by the order's own actor ([`super::order_saga`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, NotSet,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::OrderStatus;
use super::SagaUpdate;
use super::machine::{self, Command, SagaInput, SagaState, Transition};
use crate::auth::Identity;
use crate::consumers::payment::{DECLINED, PaymentStatus};
use crate::db;
use crate::envelope::{Envelope, Event, InventoryReleaseRequested, PaymentRefundRequested};
use crate::mailbox::{ConsumeError, Kept};
use crate::read;
use entities::{orders, saga_history, saga_instances};

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
    let Some(record) = read::payments::of_order(txn, order_id).await? else {
        return Ok(SagaInput::PaymentTimedOut);
    };
    let status = record
        .status
        .parse::<PaymentStatus>()
        .map_err(ConsumeError::Poison)?;
    metrics::counter!("saga_deadline_found_payment_total", "status" => status.as_str()).increment(1);
    Ok(match status {
        PaymentStatus::Succeeded => SagaInput::PaymentSucceeded {
            payment_id: record.id,
        },
        PaymentStatus::Failed => SagaInput::PaymentFailed {
            payment_id: record.id,
            reason: record.reason.unwrap_or_else(|| DECLINED.to_owned()),
        },
        PaymentStatus::Refunded => SagaInput::PaymentTimedOut,
    })
}

/// The saga rows of a batch of events, read (and locked) in one statement before the first of them is
/// applied ([`crate::mailbox::Prefetch`]), and the steps' writes, kept for the batch's end
/// ([`SagaRows::write`]): the saga rows as one upsert, their history rows as one insert, the orders'
/// statuses as one update per status and reason. Each row is taken out by the step that uses it; a
/// second event of the batch for the same saga first writes what the batch kept, then reads the row as
/// the first step left it.
#[derive(Debug, Default)]
pub struct SagaRows {
    rows: Mutex<HashMap<String, saga_instances::Model>>,
    kept: Kept<StepWrites>,
}

/// What one step writes: the saga row as the step leaves it (its update conditioned on the version the
/// step read, one before the row's), the step's history row, and the order's new status if it has one.
#[derive(Debug)]
struct StepWrites {
    row: saga_instances::Model,
    history: saga_history::ActiveModel,
    order: Option<(OrderStatus, Option<String>)>,
}

/// Orders that end with one status, and their ids.
type Ending = (OrderStatus, Vec<String>);

/// The saga row's columns a step changes.
const STEP_COLUMNS: [saga_instances::Column; 8] = [
    saga_instances::Column::State,
    saga_instances::Column::Version,
    saga_instances::Column::UpdatedAt,
    saga_instances::Column::ReservationId,
    saga_instances::Column::PaymentId,
    saga_instances::Column::FailureReason,
    saga_instances::Column::CompletedAt,
    saga_instances::Column::DeadlineAt,
];

impl StepWrites {
    /// The step's writes alone, in one round trip; answers the rows they must change.
    fn push_alone(self, backend: DbBackend, writes: &mut db::Writes) -> u64 {
        let mut update = saga_instances::ActiveModel::from(self.row.clone()).reset_all();
        update.order_id = NotSet;
        update.user_id = NotSet;
        update.trace_id = NotSet;
        update.identity = NotSet;
        update.started_at = NotSet;
        writes.push(
            backend,
            &saga_instances::Entity::update_many()
                .set(update)
                .filter(saga_instances::Column::OrderId.eq(self.row.order_id.as_str()))
                .filter(saga_instances::Column::Version.eq(self.row.version - 1)),
        );
        writes.push(backend, &saga_history::Entity::insert(self.history));
        match self.order {
            Some((status, reason)) => {
                writes.push(
                    backend,
                    &order_update(&status, reason, self.row.updated_at, [self.row.order_id]),
                );
                3
            }
            None => 2,
        }
    }
}

fn order_update(
    status: &OrderStatus,
    reason: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
    ids: impl IntoIterator<Item = String>,
) -> sea_orm::UpdateMany<orders::Entity> {
    orders::Entity::update_many()
        .col_expr(orders::Column::Status, Expr::value(status.as_str()))
        .col_expr(orders::Column::FailureReason, Expr::value(reason))
        .col_expr(orders::Column::UpdatedAt, Expr::value(at))
        .filter(orders::Column::Id.is_in(ids))
}

impl SagaRows {
    /// Reads and locks the saga rows of `order_ids`, in key order (one locking order for every batch).
    pub async fn read<'a>(
        txn: &impl ConnectionTrait,
        order_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConsumeError> {
        let ids: BTreeSet<&str> = order_ids.into_iter().collect();
        let rows = saga_instances::Entity::find()
            .filter(saga_instances::Column::OrderId.is_in(ids))
            .order_by_asc(saga_instances::Column::OrderId)
            .lock_exclusive()
            .all(txn)
            .await?;
        Ok(SagaRows {
            rows: Mutex::new(rows.into_iter().map(|row| (row.order_id.clone(), row)).collect()),
            kept: Kept::default(),
        })
    }

    /// The row of `order_id` as read, once.
    fn take(&self, order_id: &str) -> Option<saga_instances::Model> {
        self.rows.lock().ok()?.remove(order_id)
    }

    /// Writes what the batch's steps kept, in one round trip. A saga row that moved past the version a
    /// step read is a [`ConsumeError::Conflict`] for the whole batch.
    pub async fn write(&self, txn: &impl ConnectionTrait) -> Result<(), ConsumeError> {
        let kept = self.kept.take()?;
        if kept.is_empty() {
            return Ok(());
        }
        let backend = txn.get_database_backend();
        let mut expected = 2 * kept.len() as u64;
        // The orders that end alike, by status and reason: one update each, at the batch's last step.
        let mut ending: BTreeMap<(&'static str, Option<String>), Ending> = BTreeMap::new();
        let at = kept
            .iter()
            .map(|step| step.row.updated_at)
            .max()
            .unwrap_or_else(db::now);
        let mut rows = Vec::with_capacity(kept.len());
        let mut history = Vec::with_capacity(kept.len());
        for step in kept {
            if let Some((status, reason)) = step.order {
                expected += 1;
                ending
                    .entry((status.as_str(), reason))
                    .or_insert_with(|| (status, vec![]))
                    .1
                    .push(step.row.order_id.clone());
            }
            rows.push(step.row.into_active_model().reset_all());
            history.push(step.history);
        }
        let mut writes = db::Writes::new();
        // Every row exists (this transaction read and locked it), so each conflicts and is updated,
        // only while it is still at the version its step read.
        writes.push(
            backend,
            &saga_instances::Entity::insert_many(rows).on_conflict(
                OnConflict::column(saga_instances::Column::OrderId)
                    .update_columns(STEP_COLUMNS)
                    .action_and_where(Expr::cust("saga_instances.version = excluded.version - 1"))
                    .to_owned(),
            ),
        );
        writes.push(backend, &saga_history::Entity::insert_many(history));
        for ((_, reason), (status, ids)) in ending {
            writes.push(backend, &order_update(&status, reason, at, ids));
        }
        if writes.execute(txn).await? != expected {
            return Err(ConsumeError::Conflict(
                "a saga of the batch moved past the version its step read".into(),
            ));
        }
        Ok(())
    }
}

/// Applies one input to the saga of `order_id` inside `txn`: lock, decide, write state + history +
/// order status + commands, conditioned on the version read. `batch` holds the saga rows this
/// transaction has read and locked already, and keeps the step's writes for the batch's end
/// ([`SagaRows`]); a row not there is read (after what the batch kept is written) and written here.
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
    batch: Option<&SagaRows>,
) -> Result<Applied, ConsumeError> {
    let backend = txn.get_database_backend();
    let (row, keep) = match batch.map(|rows| (rows.take(order_id), rows)) {
        // MySQL counts an upsert's update twice: its steps write alone.
        Some((Some(row), rows)) => (row, (backend != DbBackend::MySql).then_some(rows)),
        other => {
            if let Some((_, rows)) = other {
                rows.write(txn).await?;
            }
            let row = saga_instances::Entity::find_by_id(order_id.to_owned())
                .lock_exclusive()
                .one(txn)
                .await?
                .ok_or_else(|| ConsumeError::Poison(format!("no saga for order {order_id}")))?;
            (row, None)
        }
    };
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
    // The row as the step leaves it.
    let mut next = saga_instances::Model {
        state: transition.to.as_str().to_owned(),
        version,
        updated_at: now,
        ..row.clone()
    };
    let mut deadline_at = row.deadline_at;
    let mut publish = Vec::new();
    let mut order_change: Option<(OrderStatus, Option<String>)> = None;
    if transition.applied() {
        match input {
            SagaInput::InventoryReserved { reservation_id } => {
                next.reservation_id = Some(reservation_id.clone())
            }
            SagaInput::PaymentSucceeded { payment_id } | SagaInput::PaymentFailed { payment_id, .. } => {
                next.payment_id = Some(payment_id.clone())
            }
            _ => {}
        }
        if transition.to.is_terminal() && !transition.from.is_terminal() {
            next.completed_at = Some(now);
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
                Command::ConfirmOrder => order_change = Some((OrderStatus::Confirmed, None)),
                Command::FailOrder { reason } => {
                    next.failure_reason = Some(reason.clone());
                    order_change = Some((OrderStatus::Failed, Some(reason.clone())));
                }
                Command::RequestRelease { reason } => {
                    next.failure_reason = Some(reason.clone());
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
        next.deadline_at = deadline_at;
    }

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
    let step = StepWrites {
        row: next,
        history: saga_history::ActiveModel {
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
        },
        order: order_change,
    };
    // The saga row (conditioned on the version read), its history row and the order's status go to the
    // database together, with the batch's or alone; a saga row that moved on shows as one row short.
    match keep {
        Some(rows) => rows.kept.keep(step)?,
        None => {
            let mut writes = db::Writes::new();
            let expected = step.push_alone(backend, &mut writes);
            if writes.execute(txn).await? != expected {
                return Err(ConsumeError::Conflict(format!(
                    "saga {order_id} moved past version {}",
                    row.version
                )));
            }
        }
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
