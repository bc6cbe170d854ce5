//! One saga per order: the durable truth behind the in-memory `OrderSaga` actor.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "saga_instances")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub order_id: String,
    pub state: String,
    /// Incremented by every transition; an update names the version it read.
    pub version: i64,
    pub user_id: String,
    pub reservation_id: Option<String>,
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
    pub trace_id: String,
    /// The identity of the request that placed the order, as JSON `{"user_id","roles"}`.
    pub identity: String,
    pub started_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    pub deadline_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
