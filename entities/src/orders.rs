//! Orders; `(user_id, idempotency_key)` is unique, so the insert decides idempotency.

use sea_orm::entity::prelude::*;

use crate::Money;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    /// `PENDING`, `CONFIRMED` or `FAILED`.
    pub status: String,
    pub total_amount: Money,
    pub failure_reason: Option<String>,
    pub idempotency_key: String,
    /// SHA-256 of the canonical request body, to tell a replay from a different body under one key.
    pub request_hash: String,
    pub trace_id: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The order's lines, read with it in one statement.
    #[sea_orm(has_many = "super::order_items::Entity")]
    Items,
}

impl Related<super::order_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Items.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
