//! The read side: the queries behind the API and the dashboards, one file per aggregate. Nothing here
//! writes; each table's writes belong to the module that owns it (placement, the saga, the consumers,
//! the mailbox, the archive).
//!
//! Rows are always read in a total order (a time and an id as the tie-break), so paging is stable. Time
//! buckets (throughput per minute, releases over time) are computed in Rust from timestamps, not with
//! database date functions, so the same code runs on SQLite, PostgreSQL and MySQL.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, FromQueryResult, PaginatorTrait, QuerySelect, Select};

pub mod dead_letters;
pub mod events;
pub mod gauges;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod products;
pub mod releases;
pub mod sagas;
pub mod stock;

/// One page of `query` (offset paging) in the order `order` gives it, and how many rows match.
pub async fn page<E>(
    db: &impl ConnectionTrait,
    query: Select<E>,
    order: impl FnOnce(Select<E>) -> Select<E>,
    page: u64,
    size: u64,
) -> Result<(Vec<E::Model>, u64), DbErr>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    let total = query.clone().count(db).await?;
    let rows = order(query)
        .offset(page.saturating_mul(size))
        .limit(size)
        .all(db)
        .await?;
    Ok((rows, total))
}
