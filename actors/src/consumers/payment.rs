//! The `PaymentActor`: a mock payment gateway behind the payment consumers, and the payment ledger
//! (`payment_records`, which only this module writes).
//!
//! Charging (`q.payment.inventory-reserved`): the gateway call happens in `Prepare`, outside any
//! transaction (it may be slow: `payment.latency_ms`), and may fail transiently
//! (`payment.transient_failure_rate`), which the middleware retries. Its answer is deterministic per
//! order: `SUCCESS` always succeeds, `FAIL` always fails, `HASHED` succeeds for about half of the order
//! ids, exactly those the seed system's gateway approves (see [`java_uuid_hash`]); the payment id is derived from the order id, so a repeated call is the same payment. `Apply`
//! records the payment and publishes its result in the middleware's transaction.
//!
//! Refunding (`q.payment.refund-requested`): the saga asks for a refund when a payment succeeded for an
//! order that will not confirm. The gateway's refund (same latency and transient failures) is keyed by
//! the payment, and `Apply` turns the record from `SUCCEEDED` into `REFUNDED` and publishes
//! `payment.refunded`; a request for a payment already refunded changes nothing, so a payment is
//! refunded exactly once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, Set};
use sha2::{Digest, Sha256};

use crate::config::{PaymentMode, PaymentSettings};
use crate::db;
use crate::envelope::{
    Envelope, Event, PaymentFailed, PaymentRefundRequested, PaymentRefunded, PaymentSucceeded,
};
use crate::mailbox::{
    Apply, ConsumeError, Consumer, Effects, FinishBatch, Kept, Prefetch, Prefetched, Prepare, Prepared,
};
use crate::topology::{Q_PAYMENT_INVENTORY_RESERVED, Q_PAYMENT_REFUND_REQUESTED};
use entities::{Money, orders, payment_records};

crate::text_codes! {
    /// Where a payment stands in the ledger.
    pub enum PaymentStatus {
        /// It went through.
        Succeeded = "SUCCEEDED",
        /// The gateway declined it.
        Failed = "FAILED",
        /// It had succeeded and was given back.
        Refunded = "REFUNDED",
    }
}
/// Reason of a declined payment.
pub const DECLINED: &str = "PAYMENT_DECLINED";

/// The gateway's answer for one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayResult {
    pub payment_id: String,
    pub approved: bool,
}

/// A UUID derived from `what` and the order id: the same for the same order, every time.
fn derived_id(what: &str, order_id: &str) -> String {
    let digest = Sha256::digest(format!("{what}:{order_id}").as_bytes());
    let bytes: [u8; 16] = digest.first_chunk().copied().unwrap_or_default();
    uuid::Builder::from_sha1_bytes(bytes).into_uuid().to_string()
}

/// The payment id of an order: a UUID derived from the order id.
pub fn payment_id(order_id: &str) -> String {
    derived_id("payment", order_id)
}

/// The refund id of an order's payment: a UUID derived from the order id, so the gateway sees one refund.
pub fn refund_id(order_id: &str) -> String {
    derived_id("refund", order_id)
}

/// Java's `java.util.UUID.hashCode()` of a UUID: the two 64-bit halves XORed, then the two 32-bit halves
/// of that XORed. `None` for a string that is not a UUID.
pub fn java_uuid_hash(text: &str) -> Option<i32> {
    let (msb, lsb) = uuid::Uuid::parse_str(text).ok()?.as_u64_pair();
    let hilo = msb ^ lsb;
    Some(((hilo >> 32) as u32 ^ hilo as u32) as i32)
}

/// Whether the gateway approves the order's payment in `mode`. `HASHED` decides as the seed system's
/// payment service does (`Math.floorMod(orderId.hashCode(), 2) == 0`: the Java hash of the order id is
/// even), so an order id gets the same outcome from both; an order id that is not a UUID (never one
/// ordersaga made) is declined.
pub fn approves(mode: PaymentMode, order_id: &str) -> bool {
    match mode {
        PaymentMode::Success => true,
        PaymentMode::Fail => false,
        PaymentMode::Hashed => java_uuid_hash(order_id).is_some_and(|h| h.rem_euclid(2) == 0),
    }
}

/// The mock gateway and the payment consumer.
pub struct PaymentActor {
    mode: PaymentMode,
    settings: PaymentSettings,
}

impl PaymentActor {
    pub fn new(mode: PaymentMode, settings: PaymentSettings) -> Self {
        Self { mode, settings }
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;
}

/// The gateway's answer to a refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRefund {
    pub refund_id: String,
}

impl PaymentActor {
    /// The simulated gateway round trip: its latency, and now and then a transient failure.
    async fn call_gateway(latency: Duration, failure_rate: f64) -> Result<(), ConsumeError> {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if failure_rate > 0.0 && rand::random::<f64>() < failure_rate {
            metrics::counter!("payment_gateway_transient_failures_total").increment(1);
            return Err(ConsumeError::Transient(
                "payment gateway unavailable (simulated)".into(),
            ));
        }
        Ok(())
    }
}

fn not_for_payments(envelope: &Envelope) -> ConsumeError {
    ConsumeError::Poison(format!("{} is not for payments", envelope.event_type()))
}

impl Handler<Prepare> for PaymentActor {
    type Result = ResponseFuture<Result<Option<Prepared>, ConsumeError>>;

    fn handle(&mut self, msg: Prepare, _: &mut Self::Context) -> Self::Result {
        let mode = self.mode;
        let latency = Duration::from_millis(self.settings.latency_ms);
        let failure_rate = self.settings.transient_failure_rate;
        Box::pin(async move {
            let prepared: Prepared = match &msg.envelope.event {
                Event::InventoryReserved(reserved) => {
                    Self::call_gateway(latency, failure_rate).await?;
                    Arc::new(GatewayResult {
                        payment_id: payment_id(&reserved.order_id),
                        approved: approves(mode, &reserved.order_id),
                    })
                }
                Event::PaymentRefundRequested(request) => {
                    Self::call_gateway(latency, failure_rate).await?;
                    Arc::new(GatewayRefund {
                        refund_id: refund_id(&request.order_id),
                    })
                }
                _ => return Err(not_for_payments(&msg.envelope)),
            };
            Ok(Some(prepared))
        })
    }
}

impl Handler<Apply> for PaymentActor {
    type Result = ResponseFuture<Result<Effects, ConsumeError>>;

    fn handle(&mut self, msg: Apply, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            let reserved = match &msg.envelope.event {
                Event::InventoryReserved(reserved) => reserved,
                Event::PaymentRefundRequested(request) => return refund(&msg, request).await,
                _ => return Err(not_for_payments(&msg.envelope)),
            };
            let result = msg
                .prepared
                .as_ref()
                .and_then(|p| p.downcast_ref::<GatewayResult>())
                .ok_or_else(|| ConsumeError::Transient("no gateway answer".into()))?;
            let txn = msg.txn.as_ref();
            let order_id = reserved.order_id.as_str();
            use payment_records::Column as P;
            let status = if result.approved {
                PaymentStatus::Succeeded
            } else {
                PaymentStatus::Failed
            };
            let reason = (!result.approved).then(|| DECLINED.to_owned());
            let event = if result.approved {
                Event::PaymentSucceeded(PaymentSucceeded {
                    order_id: order_id.to_owned(),
                    payment_id: result.payment_id.clone(),
                })
            } else {
                Event::PaymentFailed(PaymentFailed {
                    order_id: order_id.to_owned(),
                    payment_id: result.payment_id.clone(),
                    reason: DECLINED.to_owned(),
                })
            };
            let counted = || {
                metrics::counter!("payments_total", "approved" => result.approved.to_string()).increment(1)
            };
            // In a batch the amount is the order's total as the batch read it, and the record is
            // written with the batch's others when it ends.
            if let Some(charges) = msg.batch.as_ref().and_then(|b| b.downcast_ref::<Charges>()) {
                charges.kept.keep(payment_records::ActiveModel {
                    id: Set(result.payment_id.clone()),
                    order_id: Set(order_id.to_owned()),
                    amount: Set(charges.total_of(order_id)?),
                    status: Set(status.as_str().to_owned()),
                    reason: Set(reason),
                    created_at: Set(db::now()),
                    ..Default::default()
                })?;
                counted();
                return Ok(Effects::publish(msg.envelope.caused(event)));
            }
            // Alone, the amount is the order's total, copied in the same statement.
            let charge = Query::insert()
                .into_table(payment_records::Entity)
                .columns([P::Id, P::OrderId, P::Amount, P::Status, P::Reason, P::CreatedAt])
                .select_from(
                    Query::select()
                        .expr(Expr::val(result.payment_id.clone()))
                        .column(orders::Column::Id)
                        .column(orders::Column::TotalAmount)
                        .expr(Expr::val(status.as_str()))
                        .expr(Expr::val(reason))
                        .expr(Expr::val(db::now()))
                        .from(orders::Entity)
                        .and_where(Expr::col(orders::Column::Id).eq(order_id))
                        .to_owned(),
                )
                .map_err(|e| ConsumeError::Transient(format!("building the payment insert: {e}")))?
                .to_owned();
            if txn.execute(&charge).await?.rows_affected() != 1 {
                return Err(ConsumeError::Poison(format!("no order {order_id} to charge")));
            }
            counted();
            Ok(Effects::publish(msg.envelope.caused(event)))
        })
    }
}

/// The charges of a batch of `inventory.reserved` events: the orders' totals, read in one statement
/// before the first of them is applied ([`Prefetch`]), and the payment records, written in one insert
/// when the batch ends ([`FinishBatch`]).
#[derive(Debug, Default)]
pub struct Charges {
    totals: HashMap<String, Money>,
    kept: Kept<payment_records::ActiveModel>,
}

impl Charges {
    async fn read(txn: &impl ConnectionTrait, envelopes: &[Arc<Envelope>]) -> Result<Self, ConsumeError> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
        let ids: BTreeSet<&str> = envelopes.iter().map(|e| e.event.order_id()).collect();
        let totals: Vec<(String, Money)> = orders::Entity::find()
            .select_only()
            .column(orders::Column::Id)
            .column(orders::Column::TotalAmount)
            .filter(orders::Column::Id.is_in(ids))
            .into_tuple()
            .all(txn)
            .await?;
        Ok(Charges {
            totals: totals.into_iter().collect(),
            kept: Kept::default(),
        })
    }

    fn total_of(&self, order_id: &str) -> Result<Money, ConsumeError> {
        self.totals
            .get(order_id)
            .cloned()
            .ok_or_else(|| ConsumeError::Poison(format!("no order {order_id} to charge")))
    }

    /// Writes the batch's payment records in one insert (a payment recorded already for one of its
    /// orders fails the batch, which then runs one message at a time).
    async fn write(&self, txn: &impl ConnectionTrait) -> Result<(), ConsumeError> {
        use sea_orm::EntityTrait;
        let kept = self.kept.take()?;
        if kept.is_empty() {
            return Ok(());
        }
        payment_records::Entity::insert_many(kept)
            .exec_without_returning(txn)
            .await?;
        Ok(())
    }
}

impl Handler<Prefetch> for PaymentActor {
    type Result = ResponseFuture<Result<Option<Prefetched>, ConsumeError>>;

    /// The totals of a batch's orders to charge (refunds read their records one by one).
    fn handle(&mut self, msg: Prefetch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            if msg.queue != Q_PAYMENT_INVENTORY_RESERVED {
                return Ok(None);
            }
            let charges = Charges::read(msg.txn.as_ref(), &msg.envelopes).await?;
            Ok(Some(Arc::new(charges) as Prefetched))
        })
    }
}

impl Handler<FinishBatch> for PaymentActor {
    type Result = ResponseFuture<Result<(), ConsumeError>>;

    /// The batch's payment records, written together.
    fn handle(&mut self, msg: FinishBatch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            match msg.batch.downcast_ref::<Charges>() {
                Some(charges) => charges.write(msg.txn.as_ref()).await,
                None => Ok(()),
            }
        })
    }
}

/// The two payment queues' consumers, charges and refunds, applied by `payment` on `home`, each after
/// its gateway call ([`Prepare`]). A batch of charges reads its orders' totals once ([`Prefetch`]) and
/// writes its payment records when it ends ([`FinishBatch`]): without the finish they would never be
/// written.
pub fn consumers(payment: &Addr<PaymentActor>, home: &actix::ArbiterHandle) -> [Consumer; 2] {
    [Q_PAYMENT_INVENTORY_RESERVED, Q_PAYMENT_REFUND_REQUESTED].map(|queue| Consumer {
        queue,
        apply: payment.clone().recipient(),
        prepare: Some(payment.clone().recipient()),
        prefetch: Some(payment.clone().recipient()),
        finish: Some(payment.clone().recipient()),
        serial: false,
        home: home.clone(),
    })
}

/// Refunds an order's payment inside the middleware's transaction: `SUCCEEDED` becomes `REFUNDED` and
/// `payment.refunded` is published; a payment already refunded (a repeated request) changes nothing.
async fn refund(msg: &Apply, request: &PaymentRefundRequested) -> Result<Effects, ConsumeError> {
    use payment_records::Column as P;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let gateway = msg
        .prepared
        .as_ref()
        .and_then(|p| p.downcast_ref::<GatewayRefund>())
        .ok_or_else(|| ConsumeError::Transient("no gateway answer".into()))?;
    let txn = msg.txn.as_ref();
    let order_id = request.order_id.as_str();
    let record = payment_records::Entity::find()
        .filter(P::OrderId.eq(order_id))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| ConsumeError::Poison(format!("order {order_id} has no payment to refund")))?;
    if record.id != request.payment_id {
        return Err(ConsumeError::Poison(format!(
            "order {order_id} was paid with {}, not {}",
            record.id, request.payment_id
        )));
    }
    match record
        .status
        .parse::<PaymentStatus>()
        .map_err(ConsumeError::Poison)?
    {
        PaymentStatus::Succeeded => {}
        PaymentStatus::Refunded => {
            tracing::debug!(order_id, "payment already refunded");
            return Ok(Effects::none());
        }
        PaymentStatus::Failed => {
            tracing::warn!(order_id, "refund requested for a payment that took no money");
            return Ok(Effects::none());
        }
    }
    let changed = payment_records::Entity::update_many()
        .col_expr(P::Status, Expr::value(PaymentStatus::Refunded.as_str()))
        .col_expr(P::RefundId, Expr::value(gateway.refund_id.clone()))
        .col_expr(P::RefundReason, Expr::value(request.reason.clone()))
        .col_expr(P::RefundedAt, Expr::value(db::now()))
        .filter(P::OrderId.eq(order_id))
        .filter(P::Status.eq(PaymentStatus::Succeeded.as_str()))
        .exec(txn)
        .await?
        .rows_affected;
    if changed != 1 {
        return Err(ConsumeError::Conflict(format!(
            "the payment of order {order_id} changed during its refund"
        )));
    }
    metrics::counter!("payment_refunds_total").increment(1);
    tracing::info!(order_id, payment_id = %record.id, amount = %record.amount, reason = %request.reason, "payment refunded");
    Ok(Effects::publish(msg.envelope.caused(Event::PaymentRefunded(
        PaymentRefunded {
            order_id: order_id.to_owned(),
            payment_id: record.id,
            refund_id: gateway.refund_id.clone(),
            amount: record.amount,
            reason: request.reason.clone(),
        },
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_and_refund_ids_are_stable_uuids() {
        assert_eq!(payment_id("o-1"), payment_id("o-1"));
        assert_ne!(payment_id("o-1"), payment_id("o-2"));
        assert!(uuid::Uuid::parse_str(&payment_id("o-1")).is_ok());
        assert_eq!(refund_id("o-1"), refund_id("o-1"));
        assert_ne!(refund_id("o-1"), payment_id("o-1"));
        assert!(uuid::Uuid::parse_str(&refund_id("o-1")).is_ok());
    }

    /// `UUID.fromString(id).hashCode()` and `Math.floorMod(hash, 2) == 0` as Java 17 computes them.
    const JAVA: &[(&str, i32, bool)] = &[
        ("00000000-0000-0000-0000-000000000000", 0, true),
        ("00000000-0000-0000-0000-000000000001", 1, false),
        ("00000000-0000-0001-0000-000000000000", 1, false),
        ("00000000-0000-0001-0000-000000000001", 0, true),
        ("ae7ba57f-7ee9-4243-8aba-86b3028069de", 1487407185, false),
        ("b4945085-1c2d-4e5f-8a9b-0c1d2e3f4a5b", 203249820, true),
        ("01ef1549-9b8a-4c7d-9e6f-5a4b3c2d1e0f", 942087536, true),
        ("4d8e1012-e736-4d43-b955-ed169d37efda", -1898291299, false),
        ("a32ee3e5-0f81-4a88-a361-f1f2158dfdbf", 440640800, true),
        ("0fbdc2e2-7c24-4da1-ae4e-6a5b8ce4d7a2", 1362309818, true),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", 0, true),
        ("123e4567-e89b-12d3-a456-426614174000", 1256478162, true),
        ("f47ac10b-58cc-4372-a567-0e02b2c3d479", -1156425726, true),
        ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", 963287497, false),
        ("c9bf9e57-1685-4c89-bafb-ff5af830be8a", -1645112562, true),
        ("0b0d1c9e-9f6a-4e0b-8c8d-3c6a1e2f4b5a", 113583525, false),
    ];

    #[test]
    fn hashed_mode_decides_as_the_seed_systems_java_gateway() {
        for &(id, hash, approved) in JAVA {
            assert_eq!(java_uuid_hash(id), Some(hash), "{id}");
            assert_eq!(approves(PaymentMode::Hashed, id), approved, "{id}");
            assert_eq!(
                approves(PaymentMode::Hashed, &id.to_ascii_uppercase()),
                approved,
                "{id} in upper case"
            );
        }
        assert!(!approves(PaymentMode::Hashed, "not-a-uuid"));
    }

    #[test]
    fn hashed_mode_approves_about_half() {
        let approved = (0..1000)
            .filter(|_| approves(PaymentMode::Hashed, &uuid::Uuid::new_v4().to_string()))
            .count();
        assert!((400..600).contains(&approved), "{approved}");
        assert!(approves(PaymentMode::Success, "x"));
        assert!(!approves(PaymentMode::Fail, "x"));
    }
}
