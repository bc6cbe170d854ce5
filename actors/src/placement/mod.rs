//! Order placement: how an HTTP order becomes a saga.
//!
//! `POST /api/orders` → [`crate::Engine::place_order`] → the [`batcher::PlacementBatcher`] (group commit:
//! the orders that arrive while a batch is written go into the next one) → [`place_many`] → the rows of
//! each order (`NewOrderRows`: the order, its lines, the saga's first rows from [`crate::saga::start`],
//! `order.created` for the outbox) written in one transaction → after the commit the saga registry starts
//! the order's actor.
//!
//! Placing an order is one transaction: the order, its lines, the saga row (`AWAITING_INVENTORY`) with its
//! first history row, and the `order.created` event in the outbox. `(user_id, idempotency_key)` is unique,
//! so the insert decides idempotency: a second request with the same key finds the first order (a replay
//! when the body is the same, a refusal when it is not), and of two concurrent requests exactly one
//! creates the order.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use crate::auth::Identity;
use crate::db;
use crate::envelope::{Envelope, Event, OrderCreated, OrderLine};
use crate::ids::SkuId;
use crate::outbox::{Handed, OutboxRows, OutboxSignal};
use crate::read::orders::{OrderRecord, lines_of};
use crate::saga::{self, OrderStatus, SagaUpdate};
use entities::{Money, order_items, orders, saga_history, saga_instances};

/// Attempts at placing before a lost race on the idempotency key, or on locks, is reported as an error.
const PLACE_ATTEMPTS: usize = 3;

/// A line of a new order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrderLine {
    pub sku_id: SkuId,
    pub quantity: i32,
    pub price: Money,
}

/// A validated order request.
#[derive(Clone, Debug)]
pub struct PlaceOrder {
    pub identity: Identity,
    pub trace_id: String,
    pub idempotency_key: String,
    pub user_id: String,
    pub items: Vec<NewOrderLine>,
    /// When the request that asked for it must have answered: past it, the order is not committed.
    pub deadline: Option<std::time::Instant>,
}

impl PlaceOrder {
    fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| std::time::Instant::now() >= deadline)
    }
}

/// What placing came to.
#[derive(Clone, Debug)]
pub enum Placement {
    /// A new order; its saga has started.
    Created(OrderRecord, SagaUpdate),
    /// The key was used before with the same body: the original order.
    Replayed(OrderRecord),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("this Idempotency-Key was used with a different request body")]
    KeyReused,
    /// The request's deadline passed before the order was committed: it was not placed.
    #[error("the order could not be placed before the request's deadline; it was not placed")]
    Expired,
    /// The catalog refuses a line (an inactive product, a price not the catalog's): it was not placed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogRefusal),
    /// The node's backlog is full (admission control): it was not placed.
    #[error("the node has as much work as it takes; try again shortly with the same Idempotency-Key")]
    Overloaded,
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Σ quantity × price, exactly; `None` when it cannot be held exactly.
pub fn total(items: &[NewOrderLine]) -> Option<Money> {
    items.iter().try_fold(Money::ZERO, |sum, line| {
        sum.plus(line.price.times(i64::from(line.quantity))?)
    })
}

/// SHA-256 of the request's meaning: the user and each line with its price normalized (`19.9` = `19.90`).
pub fn request_hash(user_id: &str, items: &[NewOrderLine]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(user_id.as_bytes());
    for line in items {
        hasher.update(format!("\n{}|{}|{}", line.sku_id, line.quantity, line.price.normalized()).as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

async fn find_by_key(
    db: &impl ConnectionTrait,
    user_id: &str,
    key: &str,
) -> Result<Option<orders::Model>, DbErr> {
    orders::Entity::find()
        .filter(orders::Column::UserId.eq(user_id))
        .filter(orders::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

/// Whether this user's `key` placed an order already (a refused request answers its replay instead).
pub async fn key_used(db: &impl ConnectionTrait, user_id: &str, key: &str) -> Result<bool, DbErr> {
    Ok(find_by_key(db, user_id, key).await?.is_some())
}

/// What became of one request of a batch.
pub type PlaceResult = Result<Placement, PlaceError>;

/// What placing checks against the product catalog: the read cache it looks products up in, and whether
/// prices must be the catalog's (`catalog.check_prices`).
#[derive(Clone)]
pub struct CatalogCheck {
    pub cache: crate::cache::Cache,
    pub check_prices: bool,
}

/// Checks a batch of orders against the catalog — one cache lookup for all their SKUs, a database query
/// only for those the cache does not hold — then places the orders that pass ([`place_many`]). A refused
/// order whose key placed an order before is placed as usual, which answers the original order.
/// Results are in request order.
pub async fn check_and_place(
    writer: &db::Writer,
    catalog: &CatalogCheck,
    outbox: &OutboxSignal,
    requests: Vec<PlaceOrder>,
) -> Vec<PlaceResult> {
    let mut skus: Vec<String> = requests
        .iter()
        .flat_map(|r| r.items.iter().map(|l| l.sku_id.as_str().to_owned()))
        .collect();
    skus.sort_unstable();
    skus.dedup();
    let db = writer.db();
    let products = match crate::catalog::products_of(&catalog.cache, db, &skus).await {
        Ok(products) => products,
        Err(e) => {
            // One lookup failed for every request; each gets the error, as transient as it was.
            let message = e.to_string();
            let transient = db::is_transient(&e);
            return requests
                .iter()
                .map(|_| {
                    Err(PlaceError::Database(if transient {
                        DbErr::Conn(sea_orm::RuntimeErr::Internal(message.clone()))
                    } else {
                        DbErr::Custom(message.clone())
                    }))
                })
                .collect();
        }
    };
    let mut results: Vec<Option<PlaceResult>> = Vec::with_capacity(requests.len());
    let mut passed = Vec::with_capacity(requests.len());
    for request in requests {
        let refused = crate::catalog::refusal(&products, &request.items, catalog.check_prices);
        match refused {
            Some(refusal) => match key_used(db, &request.user_id, &request.idempotency_key).await {
                Ok(true) => {
                    results.push(None);
                    passed.push(request);
                }
                Ok(false) => results.push(Some(Err(PlaceError::Catalog(refusal)))),
                Err(e) => results.push(Some(Err(e.into()))),
            },
            None => {
                results.push(None);
                passed.push(request);
            }
        }
    }
    let mut placed = place_many(writer, outbox, &passed).await.into_iter();
    results
        .into_iter()
        .map(|result| match result {
            Some(result) => result,
            None => placed.next().unwrap_or_else(|| {
                Err(DbErr::Custom("a placement went missing from its batch".into()).into())
            }),
        })
        .collect()
}

/// Places a batch of orders. They share one transaction (one commit) when none of them runs into an
/// error; otherwise each is placed alone, so one request never fails another. Results are in request
/// order.
///
/// A request whose deadline has passed is not written; one whose deadline passes while its batch is
/// written is rolled back before the commit (the batch is then placed one by one, without it).
pub async fn place_many(
    writer: &db::Writer,
    outbox: &OutboxSignal,
    requests: &[PlaceOrder],
) -> Vec<PlaceResult> {
    if requests.len() > 1 && !requests.iter().any(PlaceOrder::expired) {
        match place_together(writer, outbox, requests).await {
            Ok(results) => return results,
            Err(e) => tracing::debug!(error = %e, "placing together failed; placing one by one"),
        }
    }
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        results.push(place(writer, outbox, request).await);
    }
    results
}

/// Counts an order given up at its deadline.
fn abandoned() -> PlaceError {
    metrics::counter!("orders_abandoned_total").increment(1);
    tracing::info!("an order was not placed: its request's deadline passed first");
    PlaceError::Expired
}

/// Every request in one transaction, each table written with one statement for the whole batch. A key
/// used before (or twice in the batch) fails the batch, and the requests are then placed one by one,
/// which answers such a key with its original order.
async fn place_together(
    writer: &db::Writer,
    outbox: &OutboxSignal,
    requests: &[PlaceOrder],
) -> Result<Vec<PlaceResult>, DbErr> {
    let orders: Vec<NewOrderRows> = requests.iter().map(NewOrderRows::new).collect::<Result<_, _>>()?;
    let txn = writer.begin().await?;
    let handed = insert_rows(txn.txn().as_ref(), &orders, outbox).await?;
    if requests.iter().any(PlaceOrder::expired) {
        txn.rollback().await?;
        return Err(DbErr::Custom("a request's deadline passed".into()));
    }
    outbox.commit(writer.db(), txn, handed, || ()).await?;
    metrics::counter!("orders_placed_total").increment(orders.len() as u64);
    Ok(orders
        .into_iter()
        .map(|o| Ok(Placement::Created(o.record, o.saga.update)))
        .collect())
}

/// The answer for a key that was used before: the original order, or a refusal for another body.
async fn replay(
    db: &impl ConnectionTrait,
    existing: orders::Model,
    hash: &str,
) -> Result<PlaceResult, DbErr> {
    if existing.request_hash != hash {
        return Ok(Err(PlaceError::KeyReused));
    }
    let items = lines_of(db, &existing.id).await?;
    Ok(Ok(Placement::Replayed(OrderRecord {
        order: existing,
        items,
    })))
}

/// Places one order (or finds the one its idempotency key already placed). The insert comes first: in
/// the common case the key is new and nothing needs reading; a unique-key violation means the key was
/// used, and the next round reads the order that used it.
pub async fn place(writer: &db::Writer, outbox: &OutboxSignal, request: &PlaceOrder) -> PlaceResult {
    let hash = request_hash(&request.user_id, &request.items);
    let mut last_error = None;
    for _ in 0..PLACE_ATTEMPTS {
        if request.expired() {
            return Err(abandoned());
        }
        let rows = NewOrderRows::new(request)?;
        let txn = writer.begin().await?;
        match insert_rows(txn.txn().as_ref(), std::slice::from_ref(&rows), outbox).await {
            Ok(_) if request.expired() => {
                txn.rollback().await?;
                return Err(abandoned());
            }
            Ok(handed) => {
                outbox.commit(writer.db(), txn, handed, || ()).await?;
                metrics::counter!("orders_placed_total").increment(1);
                return Ok(Placement::Created(rows.record, rows.saga.update));
            }
            Err(e) if db::is_unique_violation(&e) => {
                txn.rollback().await?;
                last_error = Some(e);
            }
            // A deadlock or a lock wait against another writer rolled the placement back whole (on
            // MySQL concurrent inserts can deadlock on an index's gap locks): place it again.
            Err(e) if db::is_conflict(&e) => {
                txn.rollback().await?;
                metrics::counter!("orders_placement_conflicts_total").increment(1);
                tracing::debug!(error = %e, "placing an order met a lock conflict; placing it again");
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        // The key is taken (or was, by a transaction that has since rolled back): read it.
        let txn = writer.begin().await?;
        if let Some(existing) =
            find_by_key(txn.txn().as_ref(), &request.user_id, &request.idempotency_key).await?
        {
            let answer = replay(txn.txn().as_ref(), existing, &hash).await?;
            txn.commit().await?;
            return answer;
        }
        txn.rollback().await?;
    }
    Err(last_error
        .unwrap_or_else(|| DbErr::Custom("placing the order failed".into()))
        .into())
}

/// The rows one new order writes: the order, its lines, the saga row with its first history row, and
/// `order.created` for the outbox.
struct NewOrderRows {
    record: OrderRecord,
    saga: saga::start::SagaStart,
    created: Envelope,
}

impl NewOrderRows {
    fn new(request: &PlaceOrder) -> Result<Self, DbErr> {
        let hash = request_hash(&request.user_id, &request.items);
        let now = db::now();
        let order_id = db::new_id();
        let total = total(&request.items)
            .ok_or_else(|| DbErr::Custom("the order's total cannot be held exactly".into()))?;
        let order = orders::Model {
            id: order_id.clone(),
            user_id: request.user_id.clone(),
            status: OrderStatus::Pending.as_str().to_owned(),
            total_amount: total,
            failure_reason: None,
            idempotency_key: request.idempotency_key.clone(),
            request_hash: hash,
            trace_id: request.trace_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let items: Vec<order_items::Model> = request
            .items
            .iter()
            .enumerate()
            .map(|(i, line)| order_items::Model {
                id: 0,
                order_id: order_id.clone(),
                line_no: i as i32 + 1,
                sku_id: line.sku_id.as_str().to_owned(),
                quantity: line.quantity,
                price: line.price,
            })
            .collect();
        let created = Envelope::new(
            Event::OrderCreated(OrderCreated {
                order_id: order_id.clone(),
                user_id: request.user_id.clone(),
                items: request
                    .items
                    .iter()
                    .map(|l| OrderLine {
                        sku_id: l.sku_id.as_str().to_owned(),
                        quantity: l.quantity,
                        price: l.price,
                    })
                    .collect(),
                total_amount: total,
            }),
            request.trace_id.clone(),
            request.identity.clone(),
        );
        let saga = saga::start::start(
            &order_id,
            &request.user_id,
            &request.identity,
            &request.trace_id,
            now,
            &created,
            format!("{} line(s), total {total}", request.items.len()),
        )?;
        Ok(NewOrderRows {
            record: OrderRecord { order, items },
            saga,
            created,
        })
    }
}

/// Writes new orders: one statement per table, whatever their number, in one round trip where the
/// database allows it. Only the outbox rows' ids are read back, when they are handed to the relay.
async fn insert_rows(
    txn: &impl ConnectionTrait,
    orders: &[NewOrderRows],
    outbox: &OutboxSignal,
) -> Result<Handed, DbErr> {
    let backend = txn.get_database_backend();
    let mut writes = db::Writes::new();
    writes.push(
        backend,
        &orders::Entity::insert_many(
            orders
                .iter()
                .map(|o| orders::ActiveModel::from(o.record.order.clone())),
        ),
    );
    writes.push(
        backend,
        &order_items::Entity::insert_many(orders.iter().flat_map(|o| &o.record.items).map(|item| {
            order_items::ActiveModel {
                order_id: Set(item.order_id.clone()),
                line_no: Set(item.line_no),
                sku_id: Set(item.sku_id.clone()),
                quantity: Set(item.quantity),
                price: Set(item.price),
                ..Default::default()
            }
        })),
    );
    writes.push(
        backend,
        &saga_instances::Entity::insert_many(orders.iter().map(|o| o.saga.saga.clone())),
    );
    writes.push(
        backend,
        &saga_history::Entity::insert_many(orders.iter().map(|o| o.saga.history.clone())),
    );
    let created: Vec<Envelope> = orders.iter().map(|o| o.created.clone()).collect();
    let rows = OutboxRows::new(&created, outbox.claimant(backend))?;
    if rows.claimed {
        let answer = writes.execute_returning(txn, rows.returning(backend)).await?;
        return rows.handed(&answer);
    }
    writes.push(backend, &rows.insert);
    writes.execute(txn).await?;
    Ok(Handed::unclaimed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, qty: i32, price: &str) -> NewOrderLine {
        NewOrderLine {
            sku_id: SkuId::parse(sku).unwrap(),
            quantity: qty,
            price: price.parse().unwrap(),
        }
    }

    #[test]
    fn totals_are_exact() {
        let items = [line("A", 3, "0.10"), line("B", 1, "19.90")];
        assert_eq!(total(&items).map(|t| t.to_string()), Some("20.20".to_owned()));
    }

    #[test]
    fn the_hash_ignores_trailing_zeros_but_not_content() {
        let a = request_hash("u", &[line("A", 1, "19.9")]);
        assert_eq!(a, request_hash("u", &[line("A", 1, "19.90")]));
        assert_ne!(a, request_hash("u", &[line("A", 2, "19.9")]));
        assert_ne!(a, request_hash("v", &[line("A", 1, "19.9")]));
    }
}

pub mod batcher;
