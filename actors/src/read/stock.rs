//! Stock per SKU.

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryOrder};

use crate::cache::{Cache, CacheName};
use entities::stocks;

/// One SKU's stock, if it exists.
pub async fn get(db: &impl ConnectionTrait, sku_id: &str) -> Result<Option<stocks::Model>, DbErr> {
    stocks::Entity::find_by_id(sku_id.to_owned()).one(db).await
}

/// One SKU's stock through the read cache (`GET /api/stocks/{skuId}`; never for stock arithmetic).
pub async fn get_cached(
    cache: &Cache,
    db: &impl ConnectionTrait,
    sku_id: &str,
) -> Result<Option<stocks::Model>, DbErr> {
    cache
        .get_or_load(CacheName::Stocks, sku_id, || get(db, sku_id))
        .await
}

/// A page of stocks ordered by SKU, and the total number of SKUs.
pub async fn page(
    db: &impl ConnectionTrait,
    page: u64,
    size: u64,
) -> Result<(Vec<stocks::Model>, u64), DbErr> {
    let by_sku = |q: sea_orm::Select<stocks::Entity>| q.order_by_asc(stocks::Column::SkuId);
    super::page(db, stocks::Entity::find(), by_sku, page, size).await
}
