//! The product catalog: what a SKU is called, what it costs and whether it is sold. It owns the writes
//! of `products`: the catalog's upsert (`PUT /api/catalog/products/{skuId}`) and the row the stock upsert
//! makes for a new SKU ([`ensure_row`]). Its reads go through the read cache (`crate::cache`), and so
//! does the check placing an order makes ([`check_order`]): with the cache warm, that check costs no
//! database query. The placement batcher makes it for a whole batch at once, so a batch costs one cache
//! lookup (one `MGET` on Redis) whatever its size.
//!
//! SKUs without a product row are not the catalog's business: an order for one is accepted and fails in
//! the saga (`UNKNOWN_SKU`), as before the catalog existed.

use std::collections::HashMap;

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

/// The products of these SKUs that exist, through the cache: one database query for the SKUs it does
/// not hold, none when it holds them all.
pub async fn products_of(
    cache: &Cache,
    db: &DatabaseConnection,
    skus: &[String],
) -> Result<HashMap<String, products::Model>, DbErr> {
    cache
        .get_many_or_load(CacheName::Products, skus, |missing| async move {
            let rows = read::products::many(db, &missing).await?;
            Ok::<_, DbErr>(rows.into_iter().map(|row| (row.sku_id.clone(), row)).collect())
        })
        .await
}

/// Why the catalog refuses an order's lines, if it does: a line whose product is inactive, or, with
/// `check_prices`, a line whose price is not its product's price (when the product has one). SKUs
/// without a product pass: the saga decides about them.
pub fn refusal(
    products: &HashMap<String, products::Model>,
    lines: &[NewOrderLine],
    check_prices: bool,
) -> Option<CatalogRefusal> {
    for (line, item) in lines.iter().enumerate() {
        let Some(product) = products.get(item.sku_id.as_str()) else {
            continue;
        };
        if !product.active {
            return Some(CatalogRefusal::Inactive {
                line,
                sku_id: product.sku_id.clone(),
            });
        }
        if check_prices
            && let Some(catalog) = product.price
            && catalog != item.price
        {
            return Some(CatalogRefusal::PriceMismatch {
                line,
                sku_id: product.sku_id.clone(),
                given: item.price,
                catalog,
            });
        }
    }
    None
}

/// Checks one order's lines against the catalog ([`products_of`], then [`refusal`]).
pub async fn check_order(
    cache: &Cache,
    db: &DatabaseConnection,
    lines: &[NewOrderLine],
    check_prices: bool,
) -> Result<Result<(), CatalogRefusal>, DbErr> {
    let skus: Vec<String> = lines.iter().map(|l| l.sku_id.as_str().to_owned()).collect();
    let products = products_of(cache, db, &skus).await?;
    Ok(match refusal(&products, lines, check_prices) {
        Some(refused) => Err(refused),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheSettings;

    fn line(sku: &str, price: &str) -> NewOrderLine {
        NewOrderLine {
            sku_id: SkuId::parse(sku).unwrap(),
            quantity: 1,
            price: price.parse().unwrap(),
        }
    }

    fn row(sku: &str, price: Option<&str>, active: bool) -> products::Model {
        let now = chrono::Utc::now();
        products::Model {
            sku_id: sku.to_owned(),
            name: sku.to_owned(),
            description: None,
            price: price.map(|p| p.parse().unwrap()),
            active,
            created_at: now,
            updated_at: now,
        }
    }

    /// A database without a `products` table: any query the check made would fail.
    async fn no_tables() -> DatabaseConnection {
        sea_orm::Database::connect("sqlite::memory:").await.unwrap()
    }

    async fn warm(cache: &Cache, rows: Vec<products::Model>, absent: &[&str]) {
        let mut keys: Vec<String> = rows.iter().map(|r| r.sku_id.clone()).collect();
        keys.extend(absent.iter().map(|s| (*s).to_owned()));
        let loaded: Vec<(String, products::Model)> =
            rows.into_iter().map(|r| (r.sku_id.clone(), r)).collect();
        cache
            .get_many_or_load(
                CacheName::Products,
                &keys,
                |_| async move { Ok::<_, DbErr>(loaded) },
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_warm_cache_answers_the_placement_check_without_the_database() {
        let cache = Cache::new(&CacheSettings::default(), None).unwrap();
        let db = no_tables().await;
        warm(
            &cache,
            vec![row("ON", Some("2.50"), true), row("OFF", None, false)],
            &["NONE"],
        )
        .await;
        let ok = check_order(&cache, &db, &[line("ON", "2.5"), line("NONE", "1")], true).await;
        assert_eq!(ok.unwrap(), Ok(()), "no query: the table does not even exist");
        let inactive = check_order(&cache, &db, &[line("NONE", "1"), line("OFF", "1")], false).await;
        assert!(matches!(
            inactive.unwrap(),
            Err(CatalogRefusal::Inactive { line: 1, .. })
        ));
        let price = check_order(&cache, &db, &[line("ON", "2.49")], true).await;
        assert!(matches!(
            price.unwrap(),
            Err(CatalogRefusal::PriceMismatch { line: 0, .. })
        ));
        assert_eq!(
            check_order(&cache, &db, &[line("ON", "2.49")], false)
                .await
                .unwrap(),
            Ok(())
        );
        // A cold key does go to the database (and here fails, having no table).
        assert!(
            check_order(&cache, &db, &[line("COLD", "1")], false)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_read_that_overlaps_a_write_does_not_put_the_old_row_back() {
        let cache = Cache::new(&CacheSettings::default(), None).unwrap();
        let keys = vec!["SKU-1".to_owned()];
        // The reader misses and reads the database; the write commits and invalidates meanwhile.
        let read = cache
            .get_many_or_load(CacheName::Products, &keys, |_| {
                let cache = cache.clone();
                async move {
                    let old = row("SKU-1", Some("1"), true);
                    cache.invalidate(CacheName::Products, vec!["SKU-1".to_owned()]);
                    Ok::<_, DbErr>(vec![("SKU-1".to_owned(), old)])
                }
            })
            .await
            .unwrap();
        assert_eq!(
            read.get("SKU-1").map(|r| r.active),
            Some(true),
            "the reader answers what it read"
        );
        // The next read does not find the old row: it reads the database again.
        let next = cache
            .get_many_or_load(CacheName::Products, &keys, |_| async {
                Ok::<_, DbErr>(vec![("SKU-1".to_owned(), row("SKU-1", Some("1"), false))])
            })
            .await
            .unwrap();
        assert_eq!(next.get("SKU-1").map(|r| r.active), Some(false));
        // Which is now cached.
        let cached = cache
            .get_many_or_load(CacheName::Products, &keys, |_| async {
                Err::<Vec<(String, products::Model)>, _>(DbErr::Custom("not asked".into()))
            })
            .await
            .unwrap();
        assert_eq!(cached.get("SKU-1").map(|r| r.active), Some(false));
    }
}
