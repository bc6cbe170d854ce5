//! The invariants a run must leave true, checked against what the node says after the run.
//!
//! [`collect`] reads the node (orders, sagas, stock, release events) into a [`Snapshot`]; [`check`] is a
//! pure function of that snapshot and the [`Plan`] (what the harness did), so it can be tested on
//! inconsistent data without a node.
//!
//! The invariants:
//! - every accepted order is known to the node and has ended (`CONFIRMED` or `FAILED`), its lines as
//!   placed, and its saga agrees (`COMPLETED` for a confirmed order, `FAILED` or `COMPENSATED` for a
//!   failed one);
//! - per SKU, `availableQty ≥ 0`, `reservedQty ≥ 0` and the initial stock equals
//!   `availableQty + reservedQty` (nothing created or lost);
//! - per SKU, `reservedQty` is the sum of that SKU over the confirmed orders (confirmed orders hold exactly
//!   their reservations, failed ones hold nothing); orders that have not ended may or may not hold theirs;
//! - an order whose saga ended `COMPENSATED` has exactly one release event, releasing its lines; no other
//!   order has any.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use serde::Serialize;

use super::LoadtestError;
use super::client::{Api, Found, OrderView, SagaView};

/// Reads run per order at the same time while collecting.
pub const READ_CONCURRENCY: usize = 16;

/// Order statuses of the API.
pub const PENDING: &str = "PENDING";
pub const CONFIRMED: &str = "CONFIRMED";
pub const FAILED: &str = "FAILED";
/// Saga states of the API that matter here.
pub const SAGA_COMPLETED: &str = "COMPLETED";
pub const SAGA_FAILED: &str = "FAILED";
pub const SAGA_COMPENSATED: &str = "COMPENSATED";

/// Lines of an order: quantity per SKU.
pub type Lines = BTreeMap<String, i64>;

/// What the harness did: the stock it set and the orders the node accepted.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Stock set per SKU before the first order.
    pub initial_stock: BTreeMap<String, i64>,
    /// Every accepted order and its lines.
    pub orders: BTreeMap<String, Lines>,
}

/// An order as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderState {
    pub status: String,
    pub lines: Lines,
}

/// A saga as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaState {
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A SKU's stock as the node reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stock {
    pub available: i64,
    pub reserved: i64,
}

/// A release event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub release_id: String,
    pub lines: Lines,
}

/// What the node says after the run.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per accepted order: its state, or `None` when the node does not know it (`404`).
    pub orders: BTreeMap<String, Option<OrderState>>,
    /// Per accepted order whose saga the node showed.
    pub sagas: BTreeMap<String, SagaState>,
    /// Per SKU of the plan: its stock, or `None` when the node does not know it.
    pub stocks: BTreeMap<String, Option<Stock>>,
    /// Release events per order of the plan; `None` when the node cannot list them (the check is skipped).
    pub releases: Option<BTreeMap<String, Vec<Release>>>,
}

/// The kind of a broken invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ViolationKind {
    /// An accepted order the node does not know.
    LostOrder,
    /// An accepted order still `PENDING` when the harness stopped waiting.
    OrderNotEnded,
    /// An order status the API does not define.
    UnknownOrderStatus,
    /// The order's lines are not the lines placed.
    OrderLinesDiffer,
    /// The node shows no saga for an accepted order.
    SagaMissing,
    /// The saga's state contradicts the order's status.
    SagaDisagrees,
    /// A SKU of the run the node does not know.
    StockMissing,
    /// `availableQty` or `reservedQty` below zero.
    NegativeStock,
    /// `availableQty + reservedQty` differs from the stock set.
    StockNotConserved,
    /// `reservedQty` differs from what the confirmed orders hold.
    ReservationsDiffer,
    /// A compensated order without a release event.
    ReleaseMissing,
    /// A compensated order released more than once.
    ReleaseRepeated,
    /// A release event for an order that was not compensated.
    UnexpectedRelease,
    /// A release that gave back other quantities than the order's lines.
    ReleaseLinesDiffer,
}

/// One broken invariant, with the order or SKU it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub kind: ViolationKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku_id: Option<String>,
    pub message: String,
}

impl Violation {
    fn order(kind: ViolationKind, order_id: &str, message: String) -> Self {
        Violation {
            kind,
            order_id: Some(order_id.to_owned()),
            sku_id: None,
            message,
        }
    }

    fn sku(kind: ViolationKind, sku_id: &str, message: String) -> Self {
        Violation {
            kind,
            order_id: None,
            sku_id: Some(sku_id.to_owned()),
            message,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn show(lines: &Lines) -> String {
    let parts: Vec<String> = lines.iter().map(|(sku, q)| format!("{sku}×{q}")).collect();
    format!("[{}]", parts.join(", "))
}

/// Every broken invariant, orders first (in id order), then SKUs, then releases.
pub fn check(snapshot: &Snapshot, plan: &Plan) -> Vec<Violation> {
    use ViolationKind as K;
    let mut violations = Vec::new();

    // Orders and their sagas.
    let mut confirmed_lines: Vec<&Lines> = Vec::new();
    let mut unsettled_lines: Vec<&Lines> = Vec::new();
    for (order_id, placed) in &plan.orders {
        let Some(Some(order)) = snapshot.orders.get(order_id) else {
            violations.push(Violation::order(
                K::LostOrder,
                order_id,
                format!("order {order_id} was accepted but the node does not know it (lost)"),
            ));
            continue;
        };
        match order.status.as_str() {
            CONFIRMED => confirmed_lines.push(placed),
            FAILED => {}
            PENDING => {
                unsettled_lines.push(placed);
                violations.push(Violation::order(
                    K::OrderNotEnded,
                    order_id,
                    format!("order {order_id} is still PENDING: its saga did not end in time"),
                ));
            }
            other => {
                unsettled_lines.push(placed);
                violations.push(Violation::order(
                    K::UnknownOrderStatus,
                    order_id,
                    format!("order {order_id} has status `{other}`, not CONFIRMED, FAILED or PENDING"),
                ));
            }
        }
        if &order.lines != placed {
            violations.push(Violation::order(
                K::OrderLinesDiffer,
                order_id,
                format!(
                    "order {order_id} has lines {} but was placed with {}",
                    show(&order.lines),
                    show(placed)
                ),
            ));
        }
        if order.status == PENDING {
            continue;
        }
        match snapshot.sagas.get(order_id) {
            None => violations.push(Violation::order(
                K::SagaMissing,
                order_id,
                format!(
                    "order {order_id} is {} but the node shows no saga for it",
                    order.status
                ),
            )),
            Some(saga) => {
                let agrees = match order.status.as_str() {
                    CONFIRMED => saga.state == SAGA_COMPLETED,
                    FAILED => saga.state == SAGA_FAILED || saga.state == SAGA_COMPENSATED,
                    _ => true,
                };
                if !agrees {
                    violations.push(Violation::order(
                        K::SagaDisagrees,
                        order_id,
                        format!(
                            "order {order_id} is {} but its saga is {}",
                            order.status, saga.state
                        ),
                    ));
                }
            }
        }
    }

    // Stock per SKU.
    for (sku_id, &initial) in &plan.initial_stock {
        let Some(Some(stock)) = snapshot.stocks.get(sku_id) else {
            violations.push(Violation::sku(
                K::StockMissing,
                sku_id,
                format!("SKU {sku_id} was stocked with {initial} but the node does not know it"),
            ));
            continue;
        };
        if stock.available < 0 || stock.reserved < 0 {
            violations.push(Violation::sku(
                K::NegativeStock,
                sku_id,
                format!(
                    "SKU {sku_id} has availableQty {} and reservedQty {}: stock went negative",
                    stock.available, stock.reserved
                ),
            ));
        }
        let total = stock.available.saturating_add(stock.reserved);
        if total != initial {
            violations.push(Violation::sku(
                K::StockNotConserved,
                sku_id,
                format!(
                    "SKU {sku_id}: availableQty {} + reservedQty {} = {total}, but {initial} were stocked ({:+})",
                    stock.available,
                    stock.reserved,
                    total - initial
                ),
            ));
        }
        let held = |orders: &[&Lines]| -> i64 { orders.iter().filter_map(|l| l.get(sku_id)).sum() };
        let confirmed = held(&confirmed_lines);
        let unsettled = held(&unsettled_lines);
        if stock.reserved < confirmed || stock.reserved > confirmed + unsettled {
            let expected = if unsettled == 0 {
                format!("{confirmed}")
            } else {
                format!("between {confirmed} and {}", confirmed + unsettled)
            };
            violations.push(Violation::sku(
                K::ReservationsDiffer,
                sku_id,
                format!(
                    "SKU {sku_id} has reservedQty {} but the confirmed orders hold {expected}",
                    stock.reserved
                ),
            ));
        }
    }

    // Releases.
    if let Some(releases) = &snapshot.releases {
        let none = Vec::new();
        for (order_id, placed) in &plan.orders {
            let found = releases.get(order_id).unwrap_or(&none);
            let compensated = snapshot
                .sagas
                .get(order_id)
                .is_some_and(|s| s.state == SAGA_COMPENSATED);
            if compensated {
                match found.len() {
                    0 => violations.push(Violation::order(
                        K::ReleaseMissing,
                        order_id,
                        format!("order {order_id} was compensated but its stock was never released"),
                    )),
                    1 => {}
                    n => {
                        let ids: Vec<&str> = found.iter().map(|r| r.release_id.as_str()).collect();
                        violations.push(Violation::order(
                            K::ReleaseRepeated,
                            order_id,
                            format!(
                                "order {order_id} was released {n} times (release events {})",
                                ids.join(", ")
                            ),
                        ));
                    }
                }
                for release in found {
                    if &release.lines != placed {
                        violations.push(Violation::order(
                            K::ReleaseLinesDiffer,
                            order_id,
                            format!(
                                "release {} of order {order_id} gave back {} but the order holds {}",
                                release.release_id,
                                show(&release.lines),
                                show(placed)
                            ),
                        ));
                    }
                }
            } else if !found.is_empty() {
                let state = snapshot
                    .sagas
                    .get(order_id)
                    .map(|s| s.state.as_str())
                    .unwrap_or("unknown");
                violations.push(Violation::order(
                    K::UnexpectedRelease,
                    order_id,
                    format!(
                        "order {order_id} (saga {state}) has {} release event(s) but was not compensated",
                        found.len()
                    ),
                ));
            }
        }
    }
    violations
}

fn lines_of(items: &[super::client::LineView]) -> Lines {
    let mut lines = Lines::new();
    for item in items {
        *lines.entry(item.sku_id.clone()).or_default() += item.quantity;
    }
    lines
}

impl From<&OrderView> for OrderState {
    fn from(view: &OrderView) -> Self {
        OrderState {
            status: view.status.clone(),
            lines: lines_of(&view.items),
        }
    }
}

impl From<&SagaView> for SagaState {
    fn from(view: &SagaView) -> Self {
        SagaState {
            state: view.state.clone(),
            started_at: view.started_at,
            completed_at: view.completed_at,
        }
    }
}

/// What collecting found besides the snapshot.
pub struct Collected {
    pub snapshot: Snapshot,
    /// Why a check could not be made (it is then skipped, not failed).
    pub skipped: Vec<String>,
}

/// Reads the node after a run. `orders` are the order views already read while waiting (the others are
/// read now); `since` bounds the sagas and release events to look at (server time, with a margin).
pub async fn collect(
    api: &Api,
    admin: &str,
    plan: &Plan,
    mut orders: BTreeMap<String, Option<OrderState>>,
    since: DateTime<Utc>,
) -> Result<Collected, LoadtestError> {
    // Orders not read yet.
    let unread: Vec<&String> = plan
        .orders
        .keys()
        .filter(|id| !orders.contains_key(*id))
        .collect();
    let read: Vec<Result<(String, Option<OrderState>), LoadtestError>> = stream::iter(unread)
        .map(|id| async move {
            let state = match api.order(admin, id).await? {
                Found::Yes(view) => Some(OrderState::from(&view)),
                Found::No => None,
            };
            Ok((id.clone(), state))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    for result in read {
        let (id, state) = result?;
        orders.insert(id, state);
    }

    let sagas = collect_sagas(api, admin, plan, since).await?;

    let read: Vec<Result<(String, Option<Stock>), LoadtestError>> = stream::iter(plan.initial_stock.keys())
        .map(|sku_id| async move {
            let stock = match api.stock(sku_id).await? {
                Found::Yes(view) => Some(Stock {
                    available: view.available_qty,
                    reserved: view.reserved_qty,
                }),
                Found::No => None,
            };
            Ok((sku_id.clone(), stock))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut stocks = BTreeMap::new();
    for result in read {
        let (sku_id, stock) = result?;
        stocks.insert(sku_id, stock);
    }

    let mut skipped = Vec::new();
    let releases = match api.release_events(admin, since).await? {
        Some(events) => {
            let mut by_order: BTreeMap<String, Vec<Release>> = BTreeMap::new();
            let mut seen = BTreeSet::new();
            for event in events {
                // Pages can overlap when other releases happen meanwhile: count each event once.
                if !plan.orders.contains_key(&event.order_id) || !seen.insert(event.release_id.clone()) {
                    continue;
                }
                by_order.entry(event.order_id.clone()).or_default().push(Release {
                    release_id: event.release_id,
                    lines: lines_of(&event.released_items),
                });
            }
            Some(by_order)
        }
        None => {
            skipped.push(
                "released once per compensated order: GET /api/stocks/release-events answered 404 \
                 (this node has no release audit)"
                    .to_owned(),
            );
            None
        }
    };

    Ok(Collected {
        snapshot: Snapshot {
            orders,
            sagas,
            stocks,
            releases,
        },
        skipped,
    })
}

/// The sagas of the plan's orders: pages of `GET /api/sagas` (newest first) until every order is found or
/// the pages are older than `since`, then `GET /api/orders/{id}/saga` for any not found that way.
async fn collect_sagas(
    api: &Api,
    admin: &str,
    plan: &Plan,
    since: DateTime<Utc>,
) -> Result<BTreeMap<String, SagaState>, LoadtestError> {
    let mut sagas = BTreeMap::new();
    let mut page = 0;
    while sagas.len() < plan.orders.len() {
        let result = api.sagas(admin, page, super::client::PAGE_SIZE).await?;
        let older = result.items.last().is_none_or(|s| s.updated_at < since);
        for saga in &result.items {
            if plan.orders.contains_key(&saga.order_id) {
                sagas.insert(saga.order_id.clone(), SagaState::from(saga));
            }
        }
        if older || !result.has_next {
            break;
        }
        page += 1;
    }
    let missing: Vec<&String> = plan.orders.keys().filter(|id| !sagas.contains_key(*id)).collect();
    let read: Vec<Result<Option<SagaView>, LoadtestError>> = stream::iter(missing)
        .map(|id| async move {
            Ok(match api.saga(admin, id).await? {
                Found::Yes(view) => Some(view),
                Found::No => None,
            })
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    for view in read {
        if let Some(view) = view? {
            sagas.insert(view.order_id.clone(), SagaState::from(&view));
        }
    }
    Ok(sagas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(items: &[(&str, i64)]) -> Lines {
        items.iter().map(|(s, q)| ((*s).to_owned(), *q)).collect()
    }

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
    }

    /// Three orders on two SKUs of 10: o-1 confirmed (A×2, B×1), o-2 compensated (A×3), o-3 failed for
    /// lack of stock (B×20). A consistent snapshot of that.
    fn consistent() -> (Snapshot, Plan) {
        let plan = Plan {
            initial_stock: [("A".to_owned(), 10), ("B".to_owned(), 10)].into(),
            orders: [
                ("o-1".to_owned(), lines(&[("A", 2), ("B", 1)])),
                ("o-2".to_owned(), lines(&[("A", 3)])),
                ("o-3".to_owned(), lines(&[("B", 20)])),
            ]
            .into(),
        };
        let order = |status: &str, l: &Lines| {
            Some(OrderState {
                status: status.to_owned(),
                lines: l.clone(),
            })
        };
        let saga = |state: &str| SagaState {
            state: state.to_owned(),
            started_at: at(0),
            completed_at: Some(at(1)),
        };
        let snapshot = Snapshot {
            orders: [
                ("o-1".to_owned(), order(CONFIRMED, &plan.orders["o-1"])),
                ("o-2".to_owned(), order(FAILED, &plan.orders["o-2"])),
                ("o-3".to_owned(), order(FAILED, &plan.orders["o-3"])),
            ]
            .into(),
            sagas: [
                ("o-1".to_owned(), saga(SAGA_COMPLETED)),
                ("o-2".to_owned(), saga(SAGA_COMPENSATED)),
                ("o-3".to_owned(), saga(SAGA_FAILED)),
            ]
            .into(),
            stocks: [
                (
                    "A".to_owned(),
                    Some(Stock {
                        available: 8,
                        reserved: 2,
                    }),
                ),
                (
                    "B".to_owned(),
                    Some(Stock {
                        available: 9,
                        reserved: 1,
                    }),
                ),
            ]
            .into(),
            releases: Some(
                [(
                    "o-2".to_owned(),
                    vec![Release {
                        release_id: "r-1".to_owned(),
                        lines: lines(&[("A", 3)]),
                    }],
                )]
                .into(),
            ),
        };
        (snapshot, plan)
    }

    fn kinds(violations: &[Violation]) -> Vec<ViolationKind> {
        violations.iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_consistent_run_has_no_violations() {
        let (snapshot, plan) = consistent();
        assert_eq!(check(&snapshot, &plan), vec![]);
    }

    #[test]
    fn a_lost_order_is_reported() {
        let (mut snapshot, plan) = consistent();
        snapshot.orders.insert("o-3".to_owned(), None);
        snapshot.sagas.remove("o-3");
        let violations = check(&snapshot, &plan);
        assert_eq!(kinds(&violations), [ViolationKind::LostOrder]);
        assert_eq!(violations[0].order_id.as_deref(), Some("o-3"));
        assert!(violations[0].message.contains("lost"), "{}", violations[0]);

        // Missing from the snapshot altogether counts the same.
        snapshot.orders.remove("o-3");
        assert_eq!(kinds(&check(&snapshot, &plan)), [ViolationKind::LostOrder]);
    }

    #[test]
    fn an_order_that_never_ended_is_reported_and_may_hold_stock() {
        let (mut snapshot, plan) = consistent();
        // o-2 stuck before payment: its reservation of A×3 is still held.
        if let Some(Some(order)) = snapshot.orders.get_mut("o-2") {
            order.status = PENDING.to_owned();
        }
        snapshot.sagas.insert(
            "o-2".to_owned(),
            SagaState {
                state: "AWAITING_PAYMENT".to_owned(),
                started_at: at(0),
                completed_at: None,
            },
        );
        snapshot.stocks.insert(
            "A".to_owned(),
            Some(Stock {
                available: 5,
                reserved: 5,
            }),
        );
        snapshot.releases = Some(BTreeMap::new());
        let violations = check(&snapshot, &plan);
        assert_eq!(kinds(&violations), [ViolationKind::OrderNotEnded]);
        assert!(violations[0].message.contains("PENDING"), "{}", violations[0]);
    }

    #[test]
    fn a_doubled_release_is_reported() {
        let (mut snapshot, plan) = consistent();
        if let Some(releases) = snapshot.releases.as_mut() {
            releases.entry("o-2".to_owned()).or_default().push(Release {
                release_id: "r-2".to_owned(),
                lines: lines(&[("A", 3)]),
            });
        }
        // The second release also gave the stock back twice.
        snapshot.stocks.insert(
            "A".to_owned(),
            Some(Stock {
                available: 11,
                reserved: 2,
            }),
        );
        let violations = check(&snapshot, &plan);
        assert_eq!(
            kinds(&violations),
            [ViolationKind::StockNotConserved, ViolationKind::ReleaseRepeated]
        );
        assert!(violations[0].message.contains("+3"), "{}", violations[0]);
        assert!(
            violations[1].message.contains("released 2 times") && violations[1].message.contains("r-2"),
            "{}",
            violations[1]
        );
    }

    #[test]
    fn a_stock_that_does_not_add_up_is_reported() {
        let (mut snapshot, plan) = consistent();
        snapshot.stocks.insert(
            "B".to_owned(),
            Some(Stock {
                available: 7,
                reserved: 1,
            }),
        );
        let violations = check(&snapshot, &plan);
        assert_eq!(kinds(&violations), [ViolationKind::StockNotConserved]);
        assert_eq!(violations[0].sku_id.as_deref(), Some("B"));
        assert!(
            violations[0].message.contains("7 + reservedQty 1 = 8")
                && violations[0].message.contains("10 were stocked"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn negative_stock_is_reported() {
        let (mut snapshot, plan) = consistent();
        snapshot.stocks.insert(
            "A".to_owned(),
            Some(Stock {
                available: -1,
                reserved: 11,
            }),
        );
        let violations = check(&snapshot, &plan);
        assert_eq!(
            kinds(&violations),
            [ViolationKind::NegativeStock, ViolationKind::ReservationsDiffer]
        );
        assert!(violations[0].message.contains("negative"), "{}", violations[0]);
    }

    #[test]
    fn a_failed_order_that_keeps_its_reservation_is_reported() {
        let (mut snapshot, plan) = consistent();
        // o-2 compensated, but A×3 was never given back (and no release event either).
        snapshot.stocks.insert(
            "A".to_owned(),
            Some(Stock {
                available: 5,
                reserved: 5,
            }),
        );
        snapshot.releases = Some(BTreeMap::new());
        let violations = check(&snapshot, &plan);
        assert_eq!(
            kinds(&violations),
            [ViolationKind::ReservationsDiffer, ViolationKind::ReleaseMissing]
        );
        assert!(
            violations[0].message.contains("reservedQty 5") && violations[0].message.contains("hold 2"),
            "{}",
            violations[0]
        );
    }

    #[test]
    fn a_release_of_an_order_that_was_not_compensated_is_reported() {
        let (mut snapshot, plan) = consistent();
        if let Some(releases) = snapshot.releases.as_mut() {
            releases.insert(
                "o-1".to_owned(),
                vec![Release {
                    release_id: "r-9".to_owned(),
                    lines: lines(&[("A", 2), ("B", 1)]),
                }],
            );
        }
        let violations = check(&snapshot, &plan);
        assert_eq!(kinds(&violations), [ViolationKind::UnexpectedRelease]);
        assert!(violations[0].message.contains("COMPLETED"), "{}", violations[0]);
    }

    #[test]
    fn a_saga_that_contradicts_its_order_is_reported() {
        let (mut snapshot, plan) = consistent();
        if let Some(saga) = snapshot.sagas.get_mut("o-3") {
            saga.state = SAGA_COMPLETED.to_owned();
        }
        snapshot.sagas.remove("o-1");
        let violations = check(&snapshot, &plan);
        assert_eq!(
            kinds(&violations),
            [ViolationKind::SagaMissing, ViolationKind::SagaDisagrees]
        );
    }

    #[test]
    fn wrong_lines_and_a_missing_sku_are_reported() {
        let (mut snapshot, plan) = consistent();
        if let Some(Some(order)) = snapshot.orders.get_mut("o-1") {
            order.lines = lines(&[("A", 1), ("B", 1)]);
        }
        snapshot.stocks.insert("B".to_owned(), None);
        let violations = check(&snapshot, &plan);
        assert_eq!(
            kinds(&violations),
            [ViolationKind::OrderLinesDiffer, ViolationKind::StockMissing]
        );
    }

    #[test]
    fn without_release_events_that_check_is_left_out() {
        let (mut snapshot, plan) = consistent();
        snapshot.releases = None;
        assert_eq!(check(&snapshot, &plan), vec![]);
    }

    #[test]
    fn violations_serialize_with_their_subject() {
        let v = Violation::order(ViolationKind::LostOrder, "o-1", "lost".to_owned());
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({"kind": "LOST_ORDER", "orderId": "o-1", "message": "lost"})
        );
    }
}
