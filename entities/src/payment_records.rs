//! One payment per order, from the mock gateway; a payment kept for an order that did not confirm is
//! refunded.

use sea_orm::entity::prelude::*;

use crate::Money;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub order_id: String,
    pub amount: Money,
    /// `SUCCEEDED`, `FAILED`, or `REFUNDED` (it had succeeded).
    pub status: String,
    pub reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub refund_id: Option<String>,
    /// Why it was refunded: the order's failure reason.
    pub refund_reason: Option<String>,
    pub refunded_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
