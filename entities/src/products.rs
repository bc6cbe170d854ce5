//! Catalog entries; a product row exists for every SKU that has stock (the stock upsert creates it, named
//! after the SKU, active, without a price) and for every SKU the catalog was given.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Money;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "products")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sku_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The catalog price; `None` until the catalog sets one.
    pub price: Option<Money>,
    /// Whether the product is sold: orders for an inactive product are refused.
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
