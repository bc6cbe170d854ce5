//! The `NotificationActor`: one notification per `order.created` event (`notifications.event_id` is
//! unique, and the inbox already keeps a redelivered event from getting here twice).

use actix::prelude::*;
use sea_orm::EntityTrait;
use sea_orm::Set;

use crate::db;
use crate::envelope::Event;
use crate::mailbox::{Apply, ConsumeError, Effects};
use entities::notifications;

/// Writes notifications.
#[derive(Default)]
pub struct NotificationActor;

impl Actor for NotificationActor {
    type Context = Context<Self>;
}

impl Handler<Apply> for NotificationActor {
    type Result = ResponseFuture<Result<Effects, ConsumeError>>;

    fn handle(&mut self, msg: Apply, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            let Event::OrderCreated(order) = &msg.envelope.event else {
                return Err(ConsumeError::Poison(format!(
                    "{} is not for notifications",
                    msg.envelope.event_type()
                )));
            };
            let row = notifications::ActiveModel {
                event_id: Set(msg.envelope.event_id.clone()),
                order_id: Set(order.order_id.clone()),
                user_id: Set(order.user_id.clone()),
                kind: Set("ORDER_PLACED".to_owned()),
                message: Set(format!(
                    "Order {} placed: {} line(s), total {}",
                    order.order_id,
                    order.items.len(),
                    order.total_amount
                )),
                created_at: Set(db::now()),
                ..Default::default()
            };
            notifications::Entity::insert(row)
                .on_conflict_do_nothing_on([notifications::Column::EventId])
                .exec_without_returning(msg.txn.as_ref())
                .await?;
            Ok(Effects::none())
        })
    }
}
