//! The `InventoryActor`: stock per SKU, reservations and releases.
//!
//! Stock rows are optimistically locked on `stocks.version`: every change names the version it read and
//! retries when another writer got there first, so `available_qty` never goes below zero and every unit
//! is accounted for in `available_qty` or in a `RESERVED` reservation.

use actix::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryOrder, QuerySelect, Set,
};

use crate::db;
use entities::{products, stocks};

/// Largest stock quantity accepted for one SKU.
pub const MAX_QTY: i64 = 1_000_000_000_000;

/// Whether `sku_id` has the accepted form: 1-64 characters, letters, digits, `-`, `_`, `.`, starting
/// with a letter or digit.
pub fn valid_sku_id(sku_id: &str) -> bool {
    let mut chars = sku_id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && sku_id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// What can go wrong changing stock.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Owns stock: every write to `stocks` goes through this actor's messages.
pub struct InventoryActor {
    db: DatabaseConnection,
}

impl InventoryActor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl Actor for InventoryActor {
    type Context = Context<Self>;
}

/// Sets the available quantity of a SKU, creating it if new (`POST /api/stocks`, `PUT /api/stocks/{sku}`).
#[derive(Message, Debug)]
#[rtype(result = "Result<stocks::Model, InventoryError>")]
pub struct SetStock {
    pub sku_id: String,
    pub available_qty: i64,
}

impl Handler<SetStock> for InventoryActor {
    type Result = ResponseFuture<Result<stocks::Model, InventoryError>>;

    fn handle(&mut self, msg: SetStock, _: &mut Self::Context) -> Self::Result {
        let db = self.db.clone();
        Box::pin(async move {
            if !valid_sku_id(&msg.sku_id) {
                return Err(InventoryError::InvalidRequest(
                    "skuId must be 1-64 characters of letters, digits and -_. starting with a letter or digit"
                        .into(),
                ));
            }
            if !(0..=MAX_QTY).contains(&msg.available_qty) {
                return Err(InventoryError::InvalidRequest(format!(
                    "availableQty must be between 0 and {MAX_QTY}"
                )));
            }
            Ok(set_stock(&db, &msg.sku_id, msg.available_qty).await?)
        })
    }
}

/// Upserts the stock row and its product in one transaction and returns the row as written.
async fn set_stock(
    db: &DatabaseConnection,
    sku_id: &str,
    available_qty: i64,
) -> Result<stocks::Model, DbErr> {
    let txn = db::begin_write(db).await?;
    let now = db::now();
    let stock = stocks::ActiveModel {
        sku_id: Set(sku_id.to_owned()),
        available_qty: Set(available_qty),
        reserved_qty: Set(0),
        version: Set(0),
        updated_at: Set(now),
    };
    stocks::Entity::insert(stock)
        .on_conflict(
            OnConflict::column(stocks::Column::SkuId)
                .update_columns([stocks::Column::AvailableQty, stocks::Column::UpdatedAt])
                .value(
                    stocks::Column::Version,
                    Expr::col((stocks::Entity, stocks::Column::Version)).add(1),
                )
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    let product = products::ActiveModel {
        sku_id: Set(sku_id.to_owned()),
        name: Set(sku_id.to_owned()),
        created_at: Set(now),
    };
    products::Entity::insert(product)
        .on_conflict_do_nothing_on([products::Column::SkuId])
        .exec_without_returning(&txn)
        .await?;
    let row = stocks::Entity::find_by_id(sku_id.to_owned())
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("stock {sku_id} after upsert")))?;
    txn.commit().await?;
    Ok(row)
}

/// One SKU's stock, if it exists.
pub async fn get_stock(db: &impl ConnectionTrait, sku_id: &str) -> Result<Option<stocks::Model>, DbErr> {
    stocks::Entity::find_by_id(sku_id.to_owned()).one(db).await
}

/// A page of stocks ordered by SKU, and the total number of SKUs.
pub async fn list_stocks(
    db: &impl ConnectionTrait,
    page: u64,
    size: u64,
) -> Result<(Vec<stocks::Model>, u64), DbErr> {
    let total = stocks::Entity::find().count(db).await?;
    let items = stocks::Entity::find()
        .order_by_asc(stocks::Column::SkuId)
        .offset(page.saturating_mul(size))
        .limit(size)
        .all(db)
        .await?;
    Ok((items, total))
}

#[cfg(test)]
mod tests {
    use super::valid_sku_id;

    #[test]
    fn sku_ids() {
        assert!(valid_sku_id("SKU-001"));
        assert!(valid_sku_id("a.b_c-9"));
        assert!(!valid_sku_id(""));
        assert!(!valid_sku_id("-SKU"));
        assert!(!valid_sku_id("SKU 1"));
        assert!(!valid_sku_id("SKÜ"));
        assert!(!valid_sku_id(&"x".repeat(65)));
    }
}
