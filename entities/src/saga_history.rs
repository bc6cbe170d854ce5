//! Every step of a saga, including late events that changed nothing.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "saga_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub order_id: String,
    pub seq: i32,
    pub at: DateTimeUtc,
    pub event_type: String,
    pub event_id: Option<String>,
    pub routing_key: Option<String>,
    pub from_state: Option<String>,
    pub to_state: String,
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
