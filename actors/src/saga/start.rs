//! The birth of a saga: its row in `AWAITING_INVENTORY` (version 1) and its first history row
//! (`OrderPlaced`), written by order placement in the order's own transaction. Only the saga module
//! creates and advances saga rows.

use chrono::{DateTime, Utc};
use sea_orm::{DbErr, Set};

use super::SagaUpdate;
use super::machine::SagaState;
use crate::auth::Identity;
use crate::envelope::Envelope;
use entities::{saga_history, saga_instances};

/// The rows that start one order's saga, and what its actor is told once they are committed.
pub struct SagaStart {
    pub saga: saga_instances::ActiveModel,
    pub history: saga_history::ActiveModel,
    pub update: SagaUpdate,
}

/// A saga for `order_id` of `user_id`, placed at `now` by `identity` in trace `trace_id`; `created` is the
/// `order.created` event of the placement, `detail` what the first history row says of the order.
pub fn start(
    order_id: &str,
    user_id: &str,
    identity: &Identity,
    trace_id: &str,
    now: DateTime<Utc>,
    created: &Envelope,
    detail: String,
) -> Result<SagaStart, DbErr> {
    let first = SagaState::AwaitingInventory;
    let identity_json = serde_json::to_string(identity).map_err(|e| DbErr::Json(e.to_string()))?;
    let saga = saga_instances::ActiveModel {
        order_id: Set(order_id.to_owned()),
        state: Set(first.as_str().to_owned()),
        version: Set(1),
        user_id: Set(user_id.to_owned()),
        reservation_id: Set(None),
        payment_id: Set(None),
        failure_reason: Set(None),
        trace_id: Set(trace_id.to_owned()),
        identity: Set(identity_json),
        started_at: Set(now),
        updated_at: Set(now),
        completed_at: Set(None),
        deadline_at: Set(None),
    };
    let history = saga_history::ActiveModel {
        order_id: Set(order_id.to_owned()),
        seq: Set(1),
        at: Set(now),
        event_type: Set("OrderPlaced".to_owned()),
        event_id: Set(Some(created.event_id.clone())),
        routing_key: Set(Some(created.routing_key().to_owned())),
        from_state: Set(None),
        to_state: Set(first.as_str().to_owned()),
        detail: Set(Some(detail)),
        ..Default::default()
    };
    let update = SagaUpdate {
        order_id: order_id.to_owned(),
        state: first,
        version: 1,
        deadline_at: None,
    };
    Ok(SagaStart {
        saga,
        history,
        update,
    })
}
