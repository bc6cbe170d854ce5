//! Messages a consumer gave up on, with the reason; an admin may replay or discard them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub message_id: String,
    pub consumer: String,
    pub routing_key: String,
    pub event_type: String,
    /// The envelope as received (JSON, or the raw text when it did not parse).
    pub payload: String,
    pub reason: String,
    pub attempts: i32,
    pub trace_id: Option<String>,
    /// `DEAD`, `REPLAYED` or `DISCARDED`.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
