//! The placement batcher: group commit of orders. The requests that arrive while a batch is being
//! written go into the next one, so under load many orders share one commit, and alone an order waits
//! for nobody.

use sea_orm::DbErr;

use sea_orm::RuntimeErr;

use super::{CatalogCheck, PlaceOrder, PlaceResult, check_and_place};
use crate::db::Writer;
use crate::outbox::OutboxSignal;

/// Most orders written in one transaction by the [`PlacementBatcher`].
pub const MAX_PLACE_BATCH: usize = 64;

/// Places orders in batches (group commit).
pub struct PlacementBatcher {
    writer: Writer,
    catalog: CatalogCheck,
    outbox: OutboxSignal,
    pending: Vec<(PlaceOrder, tokio::sync::oneshot::Sender<PlaceResult>)>,
    busy: usize,
    writers: usize,
}

impl PlacementBatcher {
    /// `writers`: batches written at the same time (1 for SQLite, which has one writer anyway).
    /// Each batch is checked against the catalog (`catalog`) before it is written; the relay is handed
    /// the `order.created` events of each batch after its commit (`outbox`).
    pub fn new(writer: Writer, writers: usize, catalog: CatalogCheck, outbox: OutboxSignal) -> Self {
        Self {
            writer,
            catalog,
            outbox,
            pending: Vec::new(),
            busy: 0,
            writers: writers.max(1),
        }
    }

    fn flush(&mut self, ctx: &mut actix::Context<Self>) {
        use actix::{ActorFutureExt, AsyncContext, WrapFuture};
        while self.busy < self.writers && !self.pending.is_empty() {
            let take = self.pending.len().min(MAX_PLACE_BATCH);
            let (requests, replies): (Vec<_>, Vec<_>) = self.pending.drain(..take).unzip();
            self.busy += 1;
            let (writer, catalog, outbox) = (self.writer.clone(), self.catalog.clone(), self.outbox.clone());
            let write = async move {
                // A batch bounded like the rest of the engine's work: one that waits forever on a lost
                // connection would keep its writer busy for good.
                let n = requests.len();
                let placed = crate::db::bounded(async {
                    Ok::<_, DbErr>(check_and_place(&writer, &catalog, &outbox, requests).await)
                });
                match placed.await {
                    Ok(results) => results,
                    Err(e) => {
                        let message = e.to_string();
                        (0..n)
                            .map(|_| Err(DbErr::Conn(RuntimeErr::Internal(message.clone())).into()))
                            .collect()
                    }
                }
            }
            .into_actor(self)
            .map(move |results, desk, ctx| {
                desk.busy -= 1;
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
                desk.flush(ctx);
            });
            ctx.spawn(write);
        }
    }
}

impl actix::Actor for PlacementBatcher {
    type Context = actix::Context<Self>;
}

/// Place one order; answered once its batch has committed.
#[derive(actix::Message)]
#[rtype(result = "PlaceResult")]
pub struct Place(pub PlaceOrder);

impl actix::Handler<Place> for PlacementBatcher {
    type Result = actix::ResponseFuture<PlaceResult>;

    fn handle(&mut self, Place(request): Place, ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.pending.push((request, reply));
        self.flush(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(DbErr::Custom("the placement batcher stopped".into()).into()))
        })
    }
}
