//! Terminal orders moved out of `orders` by the archiver, with their items as JSON.

use sea_orm::entity::prelude::*;

use crate::Money;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders_archive")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub status: String,
    pub total_amount: Money,
    pub failure_reason: Option<String>,
    pub idempotency_key: String,
    pub request_hash: String,
    pub trace_id: String,
    /// `[{"skuId","quantity","price"}]`
    pub items: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub archived_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
