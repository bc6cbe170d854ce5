//! The saga: one supervised [`OrderSaga`] actor per in-flight order decides that order's steps.
//!
//! The database is the truth and the actors are its moving parts. A saga event from the bus reaches the
//! [`SagaRegistry`] (the consumer of `q.order.inventory-result` and `q.order.payment-result`) inside the
//! mailbox middleware's transaction; the registry routes it to the order's actor (starting one if none is
//! in memory), which runs the step ([`step::apply_input`]) in that transaction. When the payment
//! deadline passes, the same actor runs the same step in a transaction of its own, through the same
//! middleware path ([`crate::mailbox::Mailbox::transact`]). Once a step commits, the actor learns the new
//! state; it arms the `AWAITING_PAYMENT` deadline and lets go when the saga ends. At start every
//! unfinished saga is resumed from the database; a periodic sweep catches deadlines nobody in memory is
//! watching (a node that died).
//!
//! | file | what |
//! | --- | --- |
//! | [`machine`] | the pure state machine `(state, input) -> (state, commands)` |
//! | [`step`] | one step persisted: lock, decide, write state + history + order status + events |
//! | [`registry`] | the supervisor of the per-order actors: routing, resume, sweep |
//! | [`order_saga`] | the per-order actor: its steps, its deadline |
//! | [`start`] | the saga row and first history row of a new order |

use chrono::{DateTime, Utc};

use entities::saga_instances;

pub mod machine;
pub mod order_saga;
pub mod registry;
pub mod start;
pub mod step;

pub use machine::SagaState;
pub use order_saga::OrderSaga;
pub use registry::{InMemory, Placed, Resume, SagaRegistry, Track, consumers};

crate::text_codes! {
    /// An order's status: `PENDING` while its saga runs, then as the saga ended. The saga sets it.
    pub enum OrderStatus {
        Pending = "PENDING",
        Confirmed = "CONFIRMED",
        Failed = "FAILED",
    }
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
