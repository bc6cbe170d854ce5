//! The dead-letter store: messages a consumer gave up on, with the reason, for an admin to read, replay
//! or discard.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
};

use crate::bus::Transport;
use crate::db;
use crate::envelope::Envelope;
use crate::mailbox::Delivery;
use entities::dead_letters;

crate::text_codes! {
    /// Where a dead letter stands.
    pub enum DeadLetterStatus {
        /// Waiting for an admin.
        Dead = "DEAD",
        /// Sent back to its queue by an admin.
        Replayed = "REPLAYED",
        /// Dropped by an admin.
        Discarded = "DISCARDED",
    }
}

/// Records a dead letter. `envelope` is the decoded delivery, when it could be decoded. A message
/// already waiting in the store for this consumer (the same message id, still `DEAD`) is not stored
/// twice: a node that died after storing it and before acknowledging it gets it again from the broker.
pub async fn store(
    db: &impl ConnectionTrait,
    queue: &str,
    delivery: &Delivery,
    envelope: Option<&Envelope>,
    reason: &str,
) -> Result<dead_letters::Model, DbErr> {
    let now = db::now();
    let message_id = envelope
        .map(|e| e.event_id.clone())
        .or_else(|| delivery.message_id.clone())
        .unwrap_or_else(|| format!("unknown-{}", db::new_id()));
    let message_id = truncate(&message_id, 255);
    if let Some(stored) = dead_letters::Entity::find()
        .filter(dead_letters::Column::MessageId.eq(message_id.as_str()))
        .filter(dead_letters::Column::Consumer.eq(queue))
        .filter(dead_letters::Column::Status.eq(DeadLetterStatus::Dead.as_str()))
        .one(db)
        .await?
    {
        return Ok(stored);
    }
    let row = dead_letters::ActiveModel {
        id: Set(db::new_id()),
        message_id: Set(message_id),
        consumer: Set(queue.to_owned()),
        routing_key: Set(truncate(&delivery.routing_key, 255)),
        event_type: Set(envelope.map(|e| e.event_type()).unwrap_or("unknown").to_owned()),
        payload: Set(String::from_utf8_lossy(&delivery.body).into_owned()),
        reason: Set(reason.to_owned()),
        attempts: Set(delivery.attempt as i32),
        trace_id: Set(envelope.map(|e| truncate(&e.trace_id, 64))),
        status: Set(DeadLetterStatus::Dead.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    row.insert(db).await
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// What an admin action on a dead letter can run into.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead letter `{0}`")]
    NotFound(String),
    #[error("dead letter `{id}` is {status}, not DEAD")]
    NotDead { id: String, status: String },
    #[error("the bus did not take the message: {0}")]
    Transport(String),
    #[error(transparent)]
    Database(#[from] DbErr),
}

async fn take_dead(db: &DatabaseConnection, id: &str) -> Result<dead_letters::Model, DeadLetterError> {
    let row = dead_letters::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| DeadLetterError::NotFound(id.to_owned()))?;
    if row.status != DeadLetterStatus::Dead.as_str() {
        return Err(DeadLetterError::NotDead {
            id: row.id,
            status: row.status,
        });
    }
    Ok(row)
}

async fn set_status(
    db: &DatabaseConnection,
    id: &str,
    status: DeadLetterStatus,
) -> Result<dead_letters::Model, DeadLetterError> {
    // Only a DEAD letter changes, so two admins acting at once cannot both succeed.
    let result = dead_letters::Entity::update_many()
        .col_expr(dead_letters::Column::Status, status.as_str().into())
        .col_expr(dead_letters::Column::UpdatedAt, db::now().into())
        .filter(dead_letters::Column::Id.eq(id))
        .filter(dead_letters::Column::Status.eq(DeadLetterStatus::Dead.as_str()))
        .exec(db)
        .await?;
    let row = dead_letters::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| DeadLetterError::NotFound(id.to_owned()))?;
    if result.rows_affected == 0 && row.status != status.as_str() {
        return Err(DeadLetterError::NotDead {
            id: row.id,
            status: row.status,
        });
    }
    Ok(row)
}

/// Sends a dead letter back to the queue that gave up on it (that queue only, as a first attempt).
pub async fn replay(
    db: &DatabaseConnection,
    transport: &dyn Transport,
    id: &str,
) -> Result<dead_letters::Model, DeadLetterError> {
    let row = take_dead(db, id).await?;
    let row = set_status(db, &row.id, DeadLetterStatus::Replayed).await?;
    if let Err(e) = transport
        .deliver_to(&row.consumer, &row.routing_key, row.payload.as_bytes().into())
        .await
    {
        // Put it back so it can be replayed later.
        let _ = dead_letters::ActiveModel {
            status: Set(DeadLetterStatus::Dead.as_str().to_owned()),
            ..dead_letters::ActiveModel::from(row)
        }
        .update(db)
        .await;
        return Err(DeadLetterError::Transport(e));
    }
    Ok(row)
}

/// Drops a dead letter for good.
pub async fn discard(db: &DatabaseConnection, id: &str) -> Result<dead_letters::Model, DeadLetterError> {
    let row = take_dead(db, id).await?;
    set_status(db, &row.id, DeadLetterStatus::Discarded).await
}
