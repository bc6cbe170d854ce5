//! The product catalog: what a SKU is called, what it costs and whether it is sold. It owns the writes
//! of `products`: the catalog's upsert (`PUT /api/catalog/products/{skuId}`) and the row the stock upsert
//! makes for a new SKU ([`ensure_row`]). Its reads go through the read cache (`crate::cache`), and so
//! does the check placing an order makes ([`check_order`]): with the cache warm, that check costs no
//! database query.
//!
//! SKUs without a product row are not the catalog's business: an order for one is accepted and fails in
//! the saga (`UNKNOWN_SKU`), as before the catalog existed.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Set};

use crate::cache::{Cache, CacheName};
use crate::db;
use crate::ids::SkuId;
use crate::placement::NewOrderLine;
use crate::read;
use entities::{Money, products};

/// A product as the catalog's upsert sets it.
#[derive(Clone, Debug)]
pub struct ProductUpsert {
    pub sku_id: SkuId,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub active: bool,
}

/// Why an order is refused by the catalog (a `400`: the request, not the saga, is wrong).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogRefusal {
    #[error("items[{line}].skuId `{sku_id}` is not sold: its product is inactive")]
    Inactive { line: usize, sku_id: String },
    #[error("items[{line}].price {given} is not the catalog price {catalog} of `{sku_id}`")]
    PriceMismatch {
        line: usize,
        sku_id: String,
        given: Money,
        catalog: Money,
    },
}

/// Creates or replaces a product (its creation time stays) and returns it as written.
pub async fn upsert(db: &DatabaseConnection, product: &ProductUpsert) -> Result<products::Model, DbErr> {
    let txn = db::begin_write(db).await?;
    let now = db::now();
    let row = products::ActiveModel {
        sku_id: Set(product.sku_id.as_str().to_owned()),
        name: Set(product.name.clone()),
        description: Set(product.description.clone()),
        price: Set(Some(product.price)),
        active: Set(product.active),
        created_at: Set(now),
        updated_at: Set(now),
    };
    products::Entity::insert(row)
        .on_conflict(
            OnConflict::column(products::Column::SkuId)
                .update_columns([
                    products::Column::Name,
                    products::Column::Description,
                    products::Column::Price,
                    products::Column::Active,
                    products::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let written = products::Entity::find_by_id(product.sku_id.as_str().to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("product {} after upsert", product.sku_id)))?;
    txn.commit().await?;
    Ok(written)
}

/// The product row of a SKU that gets stock, if it has none yet: named after the SKU, active, no price.
pub async fn ensure_row(
    txn: &impl ConnectionTrait,
    sku_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let product = products::ActiveModel {
        sku_id: Set(sku_id.to_owned()),
        name: Set(sku_id.to_owned()),
        description: Set(None),
        price: Set(None),
        active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    };
    products::Entity::insert(product)
        .on_conflict_do_nothing_on([products::Column::SkuId])
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// One product, through the cache.
pub async fn product(
    cache: &Cache,
    db: &DatabaseConnection,
    sku_id: &str,
) -> Result<Option<products::Model>, DbErr> {
    cache
        .get_or_load(CacheName::Products, sku_id, || read::products::get(db, sku_id))
        .await
}

/// Checks an order's lines against the catalog, through the cache (one database query for the SKUs
/// it does not hold, none when it holds them all): a line whose product is inactive is refused, and,
/// with `check_prices`, a line whose price is not its product's price (when the product has one).
/// SKUs without a product pass: the saga decides about them.
pub async fn check_order(
    cache: &Cache,
    db: &DatabaseConnection,
    lines: &[NewOrderLine],
    check_prices: bool,
) -> Result<Result<(), CatalogRefusal>, DbErr> {
    let skus: Vec<String> = lines.iter().map(|l| l.sku_id.as_str().to_owned()).collect();
    let products = cache
        .get_many_or_load(CacheName::Products, &skus, |missing| async move {
            let rows = read::products::many(db, &missing).await?;
            Ok::<_, DbErr>(rows.into_iter().map(|row| (row.sku_id.clone(), row)).collect())
        })
        .await?;
    for (line, item) in lines.iter().enumerate() {
        let Some(product) = products.get(item.sku_id.as_str()) else {
            continue;
        };
        if !product.active {
            return Ok(Err(CatalogRefusal::Inactive {
                line,
                sku_id: product.sku_id.clone(),
            }));
        }
        if check_prices
            && let Some(catalog) = product.price
            && catalog != item.price
        {
            return Ok(Err(CatalogRefusal::PriceMismatch {
                line,
                sku_id: product.sku_id.clone(),
                given: item.price,
                catalog,
            }));
        }
    }
    Ok(Ok(()))
}
