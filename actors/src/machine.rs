//! The saga's pure core: `(state, input) -> (state, commands)`, no I/O.
//!
//! ```text
//! AWAITING_INVENTORY --InventoryReserved--> AWAITING_PAYMENT --PaymentSucceeded--> COMPLETED
//!        |                                        |--PaymentFailed / PaymentTimedOut--> COMPENSATING
//!        |--InventoryFailed--> FAILED                                                        |
//!                                                          COMPENSATED <--InventoryReleased--'
//! ```
//!
//! A payment result can overtake the reservation it follows (the payment consumer and the saga both
//! consume `inventory.reserved`, in parallel). A payment result is only ever produced for a reserved
//! order, so in `AWAITING_INVENTORY` it is taken as proof of the reservation: success completes the saga,
//! failure compensates. Everything else that does not fit the current state is a late or duplicate input:
//! it is ignored (and recorded by the caller), never applied.

use std::fmt;
use std::str::FromStr;

/// Where a saga is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SagaState {
    AwaitingInventory,
    AwaitingPayment,
    Compensating,
    Completed,
    Failed,
    Compensated,
}

impl SagaState {
    pub const ALL: [SagaState; 6] = [
        SagaState::AwaitingInventory,
        SagaState::AwaitingPayment,
        SagaState::Compensating,
        SagaState::Completed,
        SagaState::Failed,
        SagaState::Compensated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::AwaitingInventory => "AWAITING_INVENTORY",
            SagaState::AwaitingPayment => "AWAITING_PAYMENT",
            SagaState::Compensating => "COMPENSATING",
            SagaState::Completed => "COMPLETED",
            SagaState::Failed => "FAILED",
            SagaState::Compensated => "COMPENSATED",
        }
    }

    /// Whether the saga has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SagaState::Completed | SagaState::Failed | SagaState::Compensated
        )
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SagaState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SagaState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown saga state `{s}`"))
    }
}

/// Reason of a release requested because the payment failed.
pub const PAYMENT_FAILED: &str = "PAYMENT_FAILED";
/// Reason of a release requested because no payment result came in time.
pub const PAYMENT_TIMEOUT: &str = "PAYMENT_TIMEOUT";

/// What can happen to a saga.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SagaInput {
    InventoryReserved {
        reservation_id: String,
    },
    InventoryFailed {
        reason: String,
    },
    PaymentSucceeded {
        payment_id: String,
    },
    PaymentFailed {
        payment_id: String,
        reason: String,
    },
    /// The deadline of `AWAITING_PAYMENT` passed.
    PaymentTimedOut,
    InventoryReleased {
        release_id: String,
        reason: String,
    },
}

impl SagaInput {
    /// The name recorded in the saga history.
    pub fn name(&self) -> &'static str {
        match self {
            SagaInput::InventoryReserved { .. } => "InventoryReserved",
            SagaInput::InventoryFailed { .. } => "InventoryFailed",
            SagaInput::PaymentSucceeded { .. } => "PaymentSucceeded",
            SagaInput::PaymentFailed { .. } => "PaymentFailed",
            SagaInput::PaymentTimedOut => "PaymentTimedOut",
            SagaInput::InventoryReleased { .. } => "InventoryReleased",
        }
    }
}

/// An effect the actor around the machine carries out, in the same transaction as the transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Set the deadline of `AWAITING_PAYMENT`.
    ArmPaymentDeadline,
    /// Clear the deadline.
    ClearDeadline,
    /// Publish `inventory.release.requested` with this reason.
    RequestRelease { reason: String },
    /// The order is `CONFIRMED`.
    ConfirmOrder,
    /// The order is `FAILED` with this reason.
    FailOrder { reason: String },
}

/// The result of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: SagaState,
    pub to: SagaState,
    pub commands: Vec<Command>,
    /// `None` when the input was applied; otherwise why it was ignored.
    pub ignored: Option<String>,
}

impl Transition {
    pub fn applied(&self) -> bool {
        self.ignored.is_none()
    }
}

fn go(from: SagaState, to: SagaState, commands: Vec<Command>) -> Transition {
    Transition {
        from,
        to,
        commands,
        ignored: None,
    }
}

/// One step of the machine.
pub fn step(state: SagaState, input: &SagaInput) -> Transition {
    use Command::*;
    use SagaInput as I;
    use SagaState as S;
    match (state, input) {
        (S::AwaitingInventory, I::InventoryReserved { .. }) => {
            go(state, S::AwaitingPayment, vec![ArmPaymentDeadline])
        }
        (S::AwaitingInventory, I::InventoryFailed { reason }) => go(
            state,
            S::Failed,
            vec![FailOrder {
                reason: reason.clone(),
            }],
        ),
        // A payment result overtook the reservation it follows (see the module docs).
        (S::AwaitingInventory | S::AwaitingPayment, I::PaymentSucceeded { .. }) => {
            go(state, S::Completed, vec![ClearDeadline, ConfirmOrder])
        }
        (S::AwaitingInventory | S::AwaitingPayment, I::PaymentFailed { .. }) => go(
            state,
            S::Compensating,
            vec![
                ClearDeadline,
                RequestRelease {
                    reason: PAYMENT_FAILED.to_owned(),
                },
            ],
        ),
        (S::AwaitingPayment, I::PaymentTimedOut) => go(
            state,
            S::Compensating,
            vec![
                ClearDeadline,
                RequestRelease {
                    reason: PAYMENT_TIMEOUT.to_owned(),
                },
            ],
        ),
        (S::Compensating, I::InventoryReleased { reason, .. }) => go(
            state,
            S::Compensated,
            vec![FailOrder {
                reason: reason.clone(),
            }],
        ),
        (state, input) => Transition {
            from: state,
            to: state,
            commands: vec![],
            ignored: Some(format!("{} ignored in {state}", input.name())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn inputs() -> Vec<SagaInput> {
        vec![
            SagaInput::InventoryReserved {
                reservation_id: "r".into(),
            },
            SagaInput::InventoryFailed {
                reason: "INSUFFICIENT_STOCK".into(),
            },
            SagaInput::PaymentSucceeded {
                payment_id: "p".into(),
            },
            SagaInput::PaymentFailed {
                payment_id: "p".into(),
                reason: "DECLINED".into(),
            },
            SagaInput::PaymentTimedOut,
            SagaInput::InventoryReleased {
                release_id: "x".into(),
                reason: PAYMENT_FAILED.into(),
            },
        ]
    }

    /// Every state × every input, against the table of the design.
    #[test]
    fn every_state_and_input() {
        use SagaState as S;
        // Rows: states in `SagaState::ALL` order; columns: `inputs()` order. `None` = ignored.
        let table: [[Option<S>; 6]; 6] = [
            [
                Some(S::AwaitingPayment),
                Some(S::Failed),
                Some(S::Completed),
                Some(S::Compensating),
                None,
                None,
            ],
            [
                None,
                None,
                Some(S::Completed),
                Some(S::Compensating),
                Some(S::Compensating),
                None,
            ],
            [None, None, None, None, None, Some(S::Compensated)],
            [None; 6],
            [None; 6],
            [None; 6],
        ];
        for (state, row) in SagaState::ALL.into_iter().zip(table) {
            for (input, expected) in inputs().iter().zip(row) {
                let t = step(state, input);
                assert_eq!(t.from, state);
                match expected {
                    Some(to) => {
                        assert!(t.applied(), "{state} + {input:?}");
                        assert_eq!(t.to, to, "{state} + {input:?}");
                        assert_ne!(t.to, state, "an applied step moves");
                    }
                    None => {
                        assert!(!t.applied(), "{state} + {input:?} should be ignored");
                        assert_eq!(t.to, state);
                        assert!(t.commands.is_empty());
                    }
                }
            }
        }
    }

    #[test]
    fn states_parse_back() {
        for s in SagaState::ALL {
            assert_eq!(s.as_str().parse::<SagaState>(), Ok(s));
        }
        assert!("NOPE".parse::<SagaState>().is_err());
    }

    fn input_strategy() -> impl Strategy<Value = SagaInput> {
        (0..6usize).prop_map(|i| inputs()[i].clone())
    }

    proptest! {
        /// Whatever arrives, in whatever order and how often: at most one terminal state, reached once;
        /// a release is requested at most once and only for a reserved order; an order is confirmed or
        /// failed, not both.
        #[test]
        fn no_sequence_breaks_the_invariants(seq in proptest::collection::vec(input_strategy(), 0..24)) {
            let mut state = SagaState::AwaitingInventory;
            let mut reservation_proven = false;
            let mut inventory_failed = false;
            let (mut releases, mut terminal_entries, mut confirms, mut fails) = (0, 0, 0, 0);
            for input in &seq {
                let before = state;
                let t = step(state, input);
                if t.applied() {
                    match input {
                        SagaInput::InventoryReserved { .. }
                        | SagaInput::PaymentSucceeded { .. }
                        | SagaInput::PaymentFailed { .. } => reservation_proven = true,
                        SagaInput::InventoryFailed { .. } => inventory_failed = true,
                        _ => {}
                    }
                }
                if before.is_terminal() {
                    prop_assert_eq!(t.to, before, "terminal states are final");
                }
                if t.to.is_terminal() && !before.is_terminal() {
                    terminal_entries += 1;
                }
                for c in &t.commands {
                    match c {
                        Command::RequestRelease { .. } => {
                            releases += 1;
                            prop_assert!(reservation_proven, "release without a reservation");
                            prop_assert!(!inventory_failed, "release after a failed reservation");
                        }
                        Command::ConfirmOrder => confirms += 1,
                        Command::FailOrder { .. } => fails += 1,
                        _ => {}
                    }
                }
                state = t.to;
            }
            prop_assert!(terminal_entries <= 1);
            prop_assert!(releases <= 1);
            prop_assert!(confirms + fails <= 1);
            prop_assert_eq!(confirms + fails, terminal_entries);
        }
    }
}
