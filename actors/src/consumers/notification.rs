//! The `NotificationActor`: one notification per `order.created` event (`notifications.event_id` is
//! unique, and the inbox already keeps a redelivered event from getting here twice). A batch's
//! notifications go to the database in one insert when it ends.

use std::sync::Arc;

use actix::prelude::*;
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use crate::db;
use crate::envelope::Event;
use crate::mailbox::{Apply, ConsumeError, Consumer, Effects, FinishBatch, Kept, Prefetch, Prefetched};
use crate::topology::Q_NOTIFICATION_ORDER_CREATED;
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
            match msg.batch.as_ref().and_then(|b| b.downcast_ref::<Notices>()) {
                Some(notices) => notices.0.keep(row)?,
                None => {
                    notifications::Entity::insert(row)
                        .on_conflict_do_nothing_on([notifications::Column::EventId])
                        .exec_without_returning(msg.txn.as_ref())
                        .await?;
                }
            }
            Ok(Effects::none())
        })
    }
}

/// The notifications of a batch, written in one insert when it ends ([`FinishBatch`]).
#[derive(Debug, Default)]
pub struct Notices(Kept<notifications::ActiveModel>);

impl Notices {
    async fn write(&self, txn: &impl ConnectionTrait) -> Result<(), ConsumeError> {
        let kept = self.0.take()?;
        if kept.is_empty() {
            return Ok(());
        }
        notifications::Entity::insert_many(kept)
            .on_conflict_do_nothing_on([notifications::Column::EventId])
            .exec_without_returning(txn)
            .await?;
        Ok(())
    }
}

impl Handler<Prefetch> for NotificationActor {
    type Result = ResponseFuture<Result<Option<Prefetched>, ConsumeError>>;

    /// Nothing to read: a place for the batch's notifications.
    fn handle(&mut self, _: Prefetch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async { Ok(Some(Arc::new(Notices::default()) as Prefetched)) })
    }
}

impl Handler<FinishBatch> for NotificationActor {
    type Result = ResponseFuture<Result<(), ConsumeError>>;

    fn handle(&mut self, msg: FinishBatch, _: &mut Self::Context) -> Self::Result {
        Box::pin(async move {
            match msg.batch.downcast_ref::<Notices>() {
                Some(notices) => notices.write(msg.txn.as_ref()).await,
                None => Ok(()),
            }
        })
    }
}

/// The consumer of `q.notification.order-created`, applied by `notifications` on `home`. A batch's
/// notifications are written in one insert when it ends ([`FinishBatch`]): without the finish they
/// would never be written.
pub fn consumer(notifications: &Addr<NotificationActor>, home: &actix::ArbiterHandle) -> Consumer {
    Consumer {
        queue: Q_NOTIFICATION_ORDER_CREATED,
        apply: notifications.clone().recipient(),
        prepare: None,
        prefetch: Some(notifications.clone().recipient()),
        finish: Some(notifications.clone().recipient()),
        serial: false,
        home: home.clone(),
    }
}
