//! Admission control: new orders are refused while the engine's backlog is at `admission.max_backlog`.
//!
//! The backlog is the sagas whose next step is the engine's own — waiting for their stock
//! (`AWAITING_INVENTORY`) or for it to come back (`COMPENSATING`) — plus the placements in flight. A
//! placement is in flight from its admission until the saga registry has counted its saga (the registry
//! drops its [`Admitted`]), so that no order gets in between the two counts.
//!
//! On the in-process bus every event of this node's sagas comes to this node, so the saga registry
//! counts them exactly as they move. Over RabbitMQ any node's consumers may take a saga's next step and
//! a node's registry does not see the steps the others took, so its own count would only grow; there
//! the count is the database's, for all nodes together (they share the consumers), read every
//! [`POLL`]. Between two readings a node may place past the bound by what it accepts in one interval
//! (counting those placements until the next reading would refuse orders whose sagas had long ended).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};

use crate::saga::SagaState;
use entities::saga_instances;

/// How often the database's count is read (over RabbitMQ).
pub const POLL: Duration = Duration::from_millis(250);

/// The states in which a saga waits on the engine itself (not on a payment gateway).
pub const OWED: [SagaState; 2] = [SagaState::AwaitingInventory, SagaState::Compensating];

/// Decides whether a new order may be placed now.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    max: u64,
    /// The registry's count (in-process bus) or the database's last reading (RabbitMQ).
    counted: Arc<AtomicUsize>,
    /// Orders being placed now.
    placing: AtomicUsize,
}

/// A placement let in; counted as in flight until it is dropped.
pub struct Admitted {
    inner: Arc<Inner>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.inner.placing.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// The count kept by the saga registry of this node (in-process bus).
    pub fn counted_by_registry(max: u64, owed: Arc<AtomicUsize>) -> Self {
        Self::new(max, owed)
    }

    /// The count read from the database every [`POLL`] (RabbitMQ). Starts the reading on the current
    /// actix system; it stops when the last clone of this value is gone.
    pub fn counted_in_database(max: u64, db: DatabaseConnection) -> Self {
        let admission = Self::new(max, Arc::new(AtomicUsize::new(0)));
        if max > 0 {
            let inner = Arc::downgrade(&admission.inner);
            actix::spawn(poll(inner, db));
        }
        admission
    }

    fn new(max: u64, counted: Arc<AtomicUsize>) -> Self {
        Self {
            inner: Arc::new(Inner {
                max,
                counted,
                placing: AtomicUsize::new(0),
            }),
        }
    }

    /// Sagas that wait on the engine, and placements in flight.
    pub fn backlog(&self) -> u64 {
        let inner = &self.inner;
        let backlog = inner.counted.load(Ordering::Relaxed) + inner.placing.load(Ordering::Relaxed);
        u64::try_from(backlog).unwrap_or(u64::MAX)
    }

    /// Lets a placement in, or `None` while the backlog is at the bound (`0`: no bound).
    pub fn admit(&self) -> Option<Admitted> {
        if self.inner.max > 0 && self.backlog() >= self.inner.max {
            return None;
        }
        self.inner.placing.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            inner: self.inner.clone(),
        })
    }
}

async fn poll(inner: Weak<Inner>, db: DatabaseConnection) {
    let states: Vec<&str> = OWED.iter().map(|s| s.as_str()).collect();
    loop {
        tokio::time::sleep(POLL).await;
        let count = saga_instances::Entity::find()
            .select_only()
            .column_as(saga_instances::Column::OrderId.count(), "n")
            .filter(saga_instances::Column::State.is_in(states.clone()))
            .into_tuple::<i64>()
            .one(&db)
            .await;
        let Some(inner) = inner.upgrade() else { return };
        // With the database away the last reading stays (placements fail anyway meanwhile).
        if let Ok(Some(n)) = count {
            inner
                .counted
                .store(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_counts_while_in_flight_and_the_bound_refuses_the_next() {
        let owed = Arc::new(AtomicUsize::new(1));
        let admission = Admission::counted_by_registry(3, owed.clone());
        let first = admission.admit().expect("1 of 3");
        assert_eq!(admission.backlog(), 2);
        let second = admission.admit().expect("2 of 3");
        assert!(admission.admit().is_none(), "the bound is reached");
        drop(first);
        assert_eq!(admission.backlog(), 2);
        owed.store(0, Ordering::Relaxed);
        assert!(admission.admit().is_some(), "room again");
        drop(second);
        assert_eq!(admission.backlog(), 0);
    }

    #[test]
    fn no_bound_admits_everything() {
        let admission = Admission::counted_by_registry(0, Arc::new(AtomicUsize::new(1_000_000)));
        assert!(admission.admit().is_some());
    }
}
