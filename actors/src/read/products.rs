//! Products of the catalog.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use entities::products;

/// One product, if it exists.
pub async fn get(db: &impl ConnectionTrait, sku_id: &str) -> Result<Option<products::Model>, DbErr> {
    products::Entity::find_by_id(sku_id.to_owned()).one(db).await
}

/// The products of these SKUs that exist (one query).
pub async fn many(db: &impl ConnectionTrait, sku_ids: &[String]) -> Result<Vec<products::Model>, DbErr> {
    if sku_ids.is_empty() {
        return Ok(Vec::new());
    }
    products::Entity::find()
        .filter(products::Column::SkuId.is_in(sku_ids.iter().map(String::as_str)))
        .all(db)
        .await
}

/// A page of products ordered by SKU (only active or only inactive ones with `active`), and how many
/// match.
pub async fn page(
    db: &impl ConnectionTrait,
    active: Option<bool>,
    page: u64,
    size: u64,
) -> Result<(Vec<products::Model>, u64), DbErr> {
    let mut query = products::Entity::find();
    if let Some(active) = active {
        query = query.filter(products::Column::Active.eq(active));
    }
    let by_sku = |q: sea_orm::Select<products::Entity>| q.order_by_asc(products::Column::SkuId);
    super::page(db, query, by_sku, page, size).await
}
