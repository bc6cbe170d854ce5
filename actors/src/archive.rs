//! The `ArchiveActor`: moves terminal orders older than `archive.after_days` to `orders_archive`, in
//! chunks (one transaction each, so locks stay short), on a timer.

use std::time::Duration;

use actix::prelude::*;
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::config::ArchiveSettings;
use crate::db;
use crate::saga::OrderStatus;
use entities::{Money, order_items, orders, orders_archive};
use serde::{Deserialize, Serialize};

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
            let cutoff = db::now() - chrono::Duration::days(i64::from(settings.after_days));
            let mut moved = 0;
            loop {
                let n = archive_chunk(&db, cutoff, settings.chunk_size).await?;
                moved += n;
                if n < settings.chunk_size {
                    break;
                }
            }
            if moved > 0 {
                tracing::info!(orders = moved, "archived terminal orders");
            }
            Ok(moved)
        })
    }
}

async fn archive_chunk(
    db: &DatabaseConnection,
    cutoff: chrono::DateTime<chrono::Utc>,
    chunk: u64,
) -> Result<u64, DbErr> {
    let txn = db::begin_write(db).await?;
    let old = orders::Entity::find()
        .filter(orders::Column::Status.is_in([OrderStatus::Confirmed.as_str(), OrderStatus::Failed.as_str()]))
        .filter(orders::Column::UpdatedAt.lt(cutoff))
        .order_by_asc(orders::Column::UpdatedAt)
        .limit(chunk)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    let now = db::now();
    for order in &old {
        let lines = order_items::Entity::find()
            .filter(order_items::Column::OrderId.eq(order.id.as_str()))
            .order_by_asc(order_items::Column::LineNo)
            .all(&txn)
            .await?;
        let items: Vec<ArchivedLine> = lines
            .into_iter()
            .map(|l| ArchivedLine {
                sku_id: l.sku_id,
                quantity: l.quantity,
                price: l.price,
            })
            .collect();
        let items = serde_json::to_string(&items).map_err(|e| DbErr::Json(e.to_string()))?;
        orders_archive::Entity::insert(orders_archive::ActiveModel {
            id: Set(order.id.clone()),
            user_id: Set(order.user_id.clone()),
            status: Set(order.status.clone()),
            total_amount: Set(order.total_amount),
            failure_reason: Set(order.failure_reason.clone()),
            idempotency_key: Set(order.idempotency_key.clone()),
            request_hash: Set(order.request_hash.clone()),
            trace_id: Set(order.trace_id.clone()),
            items: Set(items),
            created_at: Set(order.created_at),
            updated_at: Set(order.updated_at),
            archived_at: Set(now),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    let ids: Vec<String> = old.iter().map(|o| o.id.clone()).collect();
    if !ids.is_empty() {
        order_items::Entity::delete_many()
            .filter(order_items::Column::OrderId.is_in(ids.clone()))
            .exec(&txn)
            .await?;
        orders::Entity::delete_many()
            .filter(orders::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(old.len() as u64)
}
