//! One step of a saga, persisted: the transaction that locks the saga row, lets the pure machine
//! ([`super::machine`]) decide, and writes the new state, a history row, the order's status and the
//! events the step causes — conditioned on the row's `version`, so that two writers (two nodes, an event
//! and a deadline) never both advance one saga. Events and deadlines both come through [`apply_input`],
//! called by the order's own actor ([`super::order_saga`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::OrderStatus;
use super::SagaUpdate;
use super::machine::{self, Command, SagaInput, SagaState, Transition};
use crate::auth::Identity;
use crate::consumers::payment::{DECLINED, PaymentStatus};
use crate::db;
use crate::envelope::{Envelope, Event, InventoryReleaseRequested, PaymentRefundRequested};
use crate::mailbox::ConsumeError;
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
/// applied ([`crate::mailbox::Prefetch`]). Each row is taken out by the step that uses it, so a second
/// event of the batch for the same saga reads the row as the first step left it.
#[derive(Debug, Default)]
pub struct SagaRows(Mutex<HashMap<String, saga_instances::Model>>);

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
        Ok(SagaRows(Mutex::new(
            rows.into_iter().map(|row| (row.order_id.clone(), row)).collect(),
        )))
    }

    /// The row of `order_id` as read, once.
    pub fn take(&self, order_id: &str) -> Option<saga_instances::Model> {
        self.0.lock().ok()?.remove(order_id)
    }
}

/// Applies one input to the saga of `order_id` inside `txn`: lock, decide, write state + history +
/// order status + commands, conditioned on the version read. `known` is the saga row when this
/// transaction has read and locked it already ([`SagaRows`]); without it the row is read here.
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
    known: Option<saga_instances::Model>,
) -> Result<Applied, ConsumeError> {
    let row = match known {
        Some(row) => row,
        None => saga_instances::Entity::find_by_id(order_id.to_owned())
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or_else(|| ConsumeError::Poison(format!("no saga for order {order_id}")))?,
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
    let mut update = saga_instances::ActiveModel {
        state: Set(transition.to.as_str().to_owned()),
        version: Set(version),
        updated_at: Set(now),
        ..Default::default()
    };
    let mut deadline_at = row.deadline_at;
    let mut publish = Vec::new();
    let mut order_change: Option<(OrderStatus, Option<String>)> = None;
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
                Command::ConfirmOrder => order_change = Some((OrderStatus::Confirmed, None)),
                Command::FailOrder { reason } => {
                    update.failure_reason = Set(Some(reason.clone()));
                    order_change = Some((OrderStatus::Failed, Some(reason.clone())));
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
                .col_expr(orders::Column::Status, Expr::value(status.as_str()))
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
