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
//! failure compensates.
//!
//! Money is never kept for an order that does not confirm: a payment that succeeds once the saga has
//! decided to fail (its deadline passed first, say) is answered with a refund request. The saga stays where
//! it is (`COMPENSATING` goes on to `COMPENSATED`, a terminal state stays terminal), and the refund's
//! confirmation is recorded when it comes. Everything else that does not fit the current state is a late or
//! duplicate input: it is ignored (and recorded by the caller), never applied.

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
/// Reason of a refund when the saga recorded no failure reason of its own.
pub const ORDER_NOT_CONFIRMED: &str = "ORDER_NOT_CONFIRMED";

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
    /// A payment the saga asked to refund was refunded.
    PaymentRefunded {
        payment_id: String,
        refund_id: String,
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
            SagaInput::PaymentRefunded { .. } => "PaymentRefunded",
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
    /// Publish `payment.refund.requested`: the payment succeeded for an order that will not confirm.
    RequestRefund { payment_id: String },
}

/// The result of one step. An applied step usually moves to another state; the compensating steps of a
/// saga that has already failed (a refund requested, a refund recorded) keep it where it is.
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
        // The saga decided to fail before the payment's success reached it: give the money back.
        (S::Compensating | S::Compensated | S::Failed, I::PaymentSucceeded { payment_id }) => go(
            state,
            state,
            vec![RequestRefund {
                payment_id: payment_id.clone(),
            }],
        ),
        (S::Compensating | S::Compensated | S::Failed, I::PaymentRefunded { .. }) => go(state, state, vec![]),
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
            SagaInput::PaymentRefunded {
                payment_id: "p".into(),
                refund_id: "f".into(),
            },
        ]
    }

    /// What a step should do: move to a state, stay with a compensating effect, or ignore the input.
    #[derive(Clone, Copy, Debug)]
    enum Expect {
        To(SagaState),
        /// Applied, the state kept: a refund is requested.
        Refund,
        /// Applied, the state kept, nothing to do but record it.
        Record,
        Ignored,
    }

    /// Every state × every input, against the table of the design.
    #[test]
    fn every_state_and_input() {
        use Expect::*;
        use SagaState as S;
        // Rows: states in `SagaState::ALL` order; columns: `inputs()` order.
        let table: [[Expect; 7]; 6] = [
            // AWAITING_INVENTORY
            [
                To(S::AwaitingPayment),
                To(S::Failed),
                To(S::Completed),
                To(S::Compensating),
                Ignored,
                Ignored,
                Ignored,
            ],
            // AWAITING_PAYMENT
            [
                Ignored,
                Ignored,
                To(S::Completed),
                To(S::Compensating),
                To(S::Compensating),
                Ignored,
                Ignored,
            ],
            // COMPENSATING
            [
                Ignored,
                Ignored,
                Refund,
                Ignored,
                Ignored,
                To(S::Compensated),
                Record,
            ],
            // COMPLETED
            [Ignored; 7],
            // FAILED
            [Ignored, Ignored, Refund, Ignored, Ignored, Ignored, Record],
            // COMPENSATED
            [Ignored, Ignored, Refund, Ignored, Ignored, Ignored, Record],
        ];
        for (state, row) in SagaState::ALL.into_iter().zip(table) {
            for (input, expected) in inputs().iter().zip(row) {
                let t = step(state, input);
                assert_eq!(t.from, state);
                match expected {
                    To(to) => {
                        assert!(t.applied(), "{state} + {input:?}");
                        assert_eq!(t.to, to, "{state} + {input:?}");
                        assert_ne!(t.to, state, "{state} + {input:?} moves");
                    }
                    Refund => {
                        assert!(t.applied(), "{state} + {input:?}");
                        assert_eq!(t.to, state, "a refund keeps the state");
                        assert_eq!(
                            t.commands,
                            vec![Command::RequestRefund {
                                payment_id: "p".into()
                            }]
                        );
                    }
                    Record => {
                        assert!(t.applied(), "{state} + {input:?}");
                        assert_eq!(t.to, state);
                        assert!(t.commands.is_empty());
                    }
                    Ignored => {
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
        (0..7usize).prop_map(|i| inputs()[i].clone())
    }

    proptest! {
        /// Whatever arrives, in whatever order and how often: at most one terminal state, reached once;
        /// a release is requested at most once and only for a reserved order; an order is confirmed or
        /// failed, not both; and a payment that succeeded is never kept for an order that did not
        /// confirm: it confirmed the order, or a refund was requested for it.
        #[test]
        fn no_sequence_breaks_the_invariants(seq in proptest::collection::vec(input_strategy(), 0..24)) {
            let mut state = SagaState::AwaitingInventory;
            let mut reservation_proven = false;
            let mut inventory_failed = false;
            let mut charged = false;
            let (mut releases, mut terminal_entries, mut confirms, mut fails, mut refunds) = (0, 0, 0, 0, 0);
            for input in &seq {
                let before = state;
                let t = step(state, input);
                if matches!(input, SagaInput::PaymentSucceeded { .. }) {
                    charged = true;
                }
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
                        Command::RequestRefund { .. } => refunds += 1,
                        _ => {}
                    }
                }
                state = t.to;
            }
            prop_assert!(terminal_entries <= 1);
            prop_assert!(releases <= 1);
            prop_assert!(confirms + fails <= 1);
            prop_assert_eq!(confirms + fails, terminal_entries);
            prop_assert!(confirms == 0 || refunds == 0, "a confirmed order is never refunded");
            if charged {
                prop_assert!(confirms == 1 || refunds >= 1, "charged and failed: {:?}", seq);
            }
        }
    }
}
