//! The archive of old orders: terminal orders (`CONFIRMED`, `FAILED`) last updated before a cutoff move
//! from `orders`/`order_items` to `orders_archive`, in chunks of one transaction each, so locks stay
//! short and an interruption loses at most the chunk in progress, which rolls back whole. Each chunk
//! copies and deletes the same rows in one transaction, so a rerun archives what is left, nothing twice.
//!
//! Two callers: the `ArchiveActor` on a timer inside `serve` (`archive.*` settings), and the
//! `ordersaga archive` command ([`archive_old_orders`] with a progress report and a stop check).

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Select, Set,
};

use crate::config::ArchiveSettings;
use crate::db;
use crate::saga::OrderStatus;
use entities::{Money, order_items, orders, orders_archive};
use serde::{Deserialize, Serialize};

/// Archive rows per `INSERT` (twelve bound values each, far below every database's limit per statement).
const ROWS_PER_INSERT: usize = 500;

/// An archived order's line as kept in `orders_archive.items`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedLine {
    pub sku_id: String,
    pub quantity: i32,
    pub price: Money,
}

/// Moves old terminal orders on a timer.
pub struct ArchiveActor {
    db: DatabaseConnection,
    settings: ArchiveSettings,
}

impl ArchiveActor {
    pub fn new(db: DatabaseConnection, settings: ArchiveSettings) -> Self {
        Self { db, settings }
    }
}

impl Actor for ArchiveActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.settings.enabled {
            ctx.run_interval(Duration::from_secs(self.settings.interval_seconds), |_, ctx| {
                ctx.notify(RunArchive);
            });
        }
    }
}

/// Archives now; answers how many orders moved.
#[derive(Message)]
#[rtype(result = "Result<u64, DbErr>")]
pub struct RunArchive;

impl Handler<RunArchive> for ArchiveActor {
    type Result = ResponseFuture<Result<u64, DbErr>>;

    fn handle(&mut self, _: RunArchive, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        let settings = self.settings.clone();
        Box::pin(async move {
            let cutoff = cutoff(db::now(), settings.after_days);
            let outcome = archive_old_orders(&db, cutoff, settings.chunk_size, |_| {}, || false).await?;
            if outcome.archived > 0 {
                tracing::info!(
                    orders = outcome.archived,
                    chunks = outcome.chunks,
                    "archived terminal orders"
                );
            }
            Ok(outcome.archived)
        })
    }
}

/// The moment before which terminal orders are archived: `days` before `now` (the earliest time there
/// is, for an age beyond the calendar).
pub fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now.checked_sub_signed(chrono::Duration::days(i64::from(days)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The orders an archive run with `cutoff` moves: terminal, and not updated since.
fn archivable(cutoff: DateTime<Utc>) -> Select<orders::Entity> {
    orders::Entity::find()
        .filter(orders::Column::Status.is_in([OrderStatus::Confirmed.as_str(), OrderStatus::Failed.as_str()]))
        .filter(orders::Column::UpdatedAt.lt(cutoff))
}

/// How many orders a run with `cutoff` would archive now (a dry run; the progress total).
pub async fn count_archivable(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
    archivable(cutoff).count(db).await
}

/// Where a run stands after a committed chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveProgress {
    /// Chunks committed so far.
    pub chunks: u64,
    /// Orders archived so far (all committed).
    pub archived: u64,
    /// Orders in the chunk just committed.
    pub in_chunk: u64,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveOutcome {
    pub chunks: u64,
    pub archived: u64,
    /// Whether `stop` ended the run (archivable orders may be left).
    pub stopped: bool,
}

/// Archives every terminal order last updated before `cutoff`, `chunk_size` orders per transaction.
/// After each committed chunk `after_chunk` is told where the run stands; before each chunk `stop` is
/// asked whether to stop there instead. A chunk is never abandoned half-way: it commits or, if the
/// process dies meanwhile, the database rolls it back whole.
pub async fn archive_old_orders(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    chunk_size: u64,
    mut after_chunk: impl FnMut(&ArchiveProgress),
    stop: impl Fn() -> bool,
) -> Result<ArchiveOutcome, DbErr> {
    let chunk_size = chunk_size.max(1);
    let mut progress = ArchiveProgress::default();
    let mut stopped = false;
    loop {
        if stop() {
            stopped = true;
            break;
        }
        let moved = archive_chunk(db, cutoff, chunk_size).await?;
        if moved == 0 {
            break;
        }
        progress.chunks += 1;
        progress.archived += moved;
        progress.in_chunk = moved;
        after_chunk(&progress);
        if moved < chunk_size {
            break;
        }
        if let Some(pause) = fault_pause("archive-chunk-done") {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(ArchiveOutcome {
        chunks: progress.chunks,
        archived: progress.archived,
        stopped,
    })
}

/// How long the fault point `point` pauses, when it is set to `return(MS)`: `archive-in-chunk` inside
/// each chunk's transaction before its commit (announced in the log), `archive-chunk-done` after each
/// committed chunk; so that a test can interrupt a run in the middle of a chunk or between two.
fn fault_pause(point: &str) -> Option<Duration> {
    let ms = crate::faults::armed(point)?.trim().parse().ok()?;
    Some(Duration::from_millis(ms))
}

/// One chunk in one transaction: up to `chunk` of the oldest archivable orders (rows another run holds
/// are skipped) copied to `orders_archive` with their lines, and deleted from `orders`/`order_items`.
async fn archive_chunk(db: &DatabaseConnection, cutoff: DateTime<Utc>, chunk: u64) -> Result<u64, DbErr> {
    let txn = db::begin_write(db).await?;
    let old = archivable(cutoff)
        .order_by_asc(orders::Column::UpdatedAt)
        .limit(chunk)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if old.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    let ids: Vec<String> = old.iter().map(|o| o.id.clone()).collect();
    // The chunk's lines in one query, grouped by order, in their order.
    let mut lines: HashMap<String, Vec<ArchivedLine>> = HashMap::with_capacity(old.len());
    for line in order_items::Entity::find()
        .filter(order_items::Column::OrderId.is_in(ids.clone()))
        .order_by_asc(order_items::Column::OrderId)
        .order_by_asc(order_items::Column::LineNo)
        .all(&txn)
        .await?
    {
        lines.entry(line.order_id).or_default().push(ArchivedLine {
            sku_id: line.sku_id,
            quantity: line.quantity,
            price: line.price,
        });
    }
    let now = db::now();
    let mut rows = Vec::with_capacity(old.len());
    for order in old {
        let items = lines.remove(&order.id).unwrap_or_default();
        let items = serde_json::to_string(&items).map_err(|e| DbErr::Json(e.to_string()))?;
        rows.push(orders_archive::ActiveModel {
            id: Set(order.id),
            user_id: Set(order.user_id),
            status: Set(order.status),
            total_amount: Set(order.total_amount),
            failure_reason: Set(order.failure_reason),
            idempotency_key: Set(order.idempotency_key),
            request_hash: Set(order.request_hash),
            trace_id: Set(order.trace_id),
            items: Set(items),
            created_at: Set(order.created_at),
            updated_at: Set(order.updated_at),
            archived_at: Set(now),
        });
    }
    let moved = rows.len() as u64;
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(ROWS_PER_INSERT));
        orders_archive::Entity::insert_many(std::mem::replace(&mut rows, rest))
            .exec_without_returning(&txn)
            .await?;
    }
    order_items::Entity::delete_many()
        .filter(order_items::Column::OrderId.is_in(ids.clone()))
        .exec(&txn)
        .await?;
    orders::Entity::delete_many()
        .filter(orders::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    if let Some(pause) = fault_pause("archive-in-chunk") {
        tracing::warn!(
            orders = moved,
            ?pause,
            "fault point archive-in-chunk: pausing before the chunk commits"
        );
        tokio::time::sleep(pause).await;
    }
    txn.commit().await?;
    Ok(moved)
}
