//! The in-process transport: one in-memory queue per consumer queue of the topology, routed like the
//! topic exchange, each drained by its consumer through the mailbox middleware.
//!
//! Memory is not durable, so a publication counts as done only when every queue it reached has settled
//! it (applied, or dead-lettered): until then its outbox row stays unpublished, and after a crash the
//! relay sends it again (the inbox makes the second delivery a no-op where the first had committed).
//!
//! A queue keeps at most `bus.in_memory_per_queue` deliveries in memory. Beyond that — a slow consumer, such as a
//! payment gateway that takes minutes — it keeps only the outbox row's id, and reads the event back from
//! the outbox when its consumer gets to it. A slow consumer therefore holds back its own queue only, and
//! a million deliveries waiting in it cost a few tens of bytes each.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::Notify;

use super::{Confirm, OutboxMessage, Transport};
use crate::mailbox::{Consumer, Delivery, Disposition, MAX_BATCH, Mailbox};
use crate::stop::{Stop, Stopper};
use crate::topology;
use entities::outbox_events;

/// Outbox rows read back at once when a queue refills from what it spilled.
const REFILL: usize = 1_000;

/// Answers the relay once every queue a publication reached has settled it.
struct Completion {
    remaining: AtomicUsize,
    confirm: Mutex<Option<Confirm>>,
}

impl Completion {
    fn settle_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(mut confirm) = self.confirm.lock()
            && let Some(confirm) = confirm.take()
        {
            confirm.ack();
        }
    }
}

struct Item {
    delivery: Delivery,
    completion: Option<Arc<Completion>>,
}

/// A delivery kept as its outbox row's id until its consumer gets to it.
struct Spilled {
    outbox_id: i64,
    completion: Arc<Completion>,
}

#[derive(Default)]
struct Queued {
    items: VecDeque<Item>,
    spilled: VecDeque<Spilled>,
    /// A worker is reading spilled rows back.
    refilling: bool,
}

/// One queue of the bus.
struct Queue {
    name: &'static str,
    /// Deliveries kept in memory at most; the rest wait as outbox row ids.
    in_memory: usize,
    queued: Mutex<Queued>,
    ready: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A delivery of a publication: in memory while there is room and nothing waits before it, else as
    /// its row id.
    fn offer(&self, message: &OutboxMessage, completion: &Arc<Completion>) {
        let mut queued = self.lock();
        if queued.items.len() < self.in_memory && queued.spilled.is_empty() && !queued.refilling {
            queued.items.push_back(Item {
                delivery: delivery_of(message),
                completion: Some(completion.clone()),
            });
        } else {
            queued.spilled.push_back(Spilled {
                outbox_id: message.id,
                completion: completion.clone(),
            });
            metrics::counter!("bus_spilled_total", "queue" => self.name).increment(1);
        }
        drop(queued);
        self.ready.notify_one();
    }

    /// A delivery that is not a publication (a retry, a replayed dead letter): always in memory.
    fn push(&self, item: Item) {
        self.lock().items.push_back(item);
        self.ready.notify_one();
    }

    /// Up to `max` deliveries, waiting for one; reads spilled rows back when memory has run dry.
    async fn take(&self, db: &DatabaseConnection, max: usize) -> Vec<Item> {
        loop {
            let refill = {
                let mut queued = self.lock();
                if !queued.items.is_empty() {
                    let n = queued.items.len().min(max);
                    let taken: Vec<Item> = queued.items.drain(..n).collect();
                    if !queued.items.is_empty() || !queued.spilled.is_empty() {
                        // Let another worker of the queue go on meanwhile.
                        self.ready.notify_one();
                    }
                    return taken;
                }
                if queued.spilled.is_empty() || queued.refilling {
                    None
                } else {
                    queued.refilling = true;
                    let n = queued.spilled.len().min(REFILL).min(self.in_memory);
                    Some(queued.spilled.drain(..n).collect::<Vec<_>>())
                }
            };
            match refill {
                Some(spilled) => self.refill(db, spilled).await,
                None => self.ready.notified().await,
            }
        }
    }

    /// Reads spilled deliveries back from the outbox, in their order; those it could not read go back to
    /// the front to be read again.
    async fn refill(&self, db: &DatabaseConnection, spilled: Vec<Spilled>) {
        use outbox_events::Column as C;
        let ids: Vec<i64> = spilled.iter().map(|s| s.outbox_id).collect();
        let rows: Result<Vec<(i64, String, String, String)>, sea_orm::DbErr> = crate::db::bounded(
            outbox_events::Entity::find()
                .select_only()
                .column(C::Id)
                .column(C::EventId)
                .column(C::RoutingKey)
                .column(C::Payload)
                .filter(C::Id.is_in(ids))
                .into_tuple()
                .all(db),
        )
        .await;
        let mut queued = self.lock();
        queued.refilling = false;
        match rows {
            Ok(rows) => {
                let mut by_id: HashMap<i64, (String, String, String)> = rows
                    .into_iter()
                    .map(|(id, event_id, key, payload)| (id, (event_id, key, payload)))
                    .collect();
                for s in spilled {
                    match by_id.remove(&s.outbox_id) {
                        Some((event_id, routing_key, payload)) => queued.items.push_back(Item {
                            delivery: Delivery {
                                body: Arc::from(payload.into_bytes()),
                                routing_key,
                                attempt: 1,
                                message_id: Some(event_id),
                                rejected: None,
                            },
                            completion: Some(s.completion),
                        }),
                        // Published meanwhile (by an earlier run of this node, say): nothing to deliver.
                        None => s.completion.settle_one(),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(queue = self.name, error = %e, "bus: reading spilled deliveries failed; trying again");
                for s in spilled.into_iter().rev() {
                    queued.spilled.push_front(s);
                }
            }
        }
        drop(queued);
        self.ready.notify_one();
    }
}

fn delivery_of(message: &OutboxMessage) -> Delivery {
    Delivery {
        body: message.body.clone(),
        routing_key: message.routing_key.clone(),
        attempt: 1,
        message_id: Some(message.event_id.clone()),
        rejected: None,
    }
}

/// The in-process bus.
pub struct InProcessTransport {
    queues: HashMap<&'static str, Arc<Queue>>,
    stopper: Stopper,
}

impl InProcessTransport {
    /// Creates a queue per consumer and starts draining them on the consumer's arbiter, `workers` tasks
    /// per queue (one for a consumer whose messages share rows, [`Consumer::serial`]).
    pub fn start(consumers: Vec<Consumer>, mailbox: Mailbox, workers: usize, in_memory: usize) -> Arc<Self> {
        let mut queues = HashMap::new();
        let stopper = Stopper::new();
        for consumer in consumers {
            let queue = Arc::new(Queue {
                name: consumer.queue,
                in_memory: in_memory.max(1),
                queued: Mutex::new(Queued::default()),
                ready: Notify::new(),
            });
            let workers = if consumer.serial { 1 } else { workers.max(1) };
            for stop in (0..workers).filter_map(|_| stopper.worker()) {
                consumer
                    .home
                    .spawn(drain(consumer.clone(), mailbox.clone(), queue.clone(), stop));
            }
            queues.insert(consumer.queue, queue);
        }
        Arc::new(Self { queues, stopper })
    }
}

/// Applies the queue's deliveries batch by batch until the bus stops. What is still queued then stays
/// unpublished in the outbox and is delivered again at the next start.
async fn drain(consumer: Consumer, mailbox: Mailbox, queue: Arc<Queue>, mut stop: Stop) {
    let db = mailbox.db().clone();
    loop {
        let items = tokio::select! {
            biased;
            () = stop.stopping() => return,
            items = queue.take(&db, MAX_BATCH) => items,
        };
        let deliveries: Vec<Delivery> = items.iter().map(|i| i.delivery.clone()).collect();
        let dispositions = mailbox.handle(&consumer, &deliveries).await;
        for (item, disposition) in items.into_iter().zip(dispositions) {
            match disposition {
                Disposition::Ack | Disposition::DeadLettered { .. } => {
                    if let Some(completion) = &item.completion {
                        completion.settle_one();
                    }
                }
                Disposition::Retry {
                    attempt,
                    delay,
                    reason,
                } => {
                    tracing::debug!(queue = consumer.queue, attempt, ?delay, %reason, "retrying");
                    let queue = queue.clone();
                    let mut delivery = item.delivery;
                    delivery.attempt = attempt;
                    let completion = item.completion;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        queue.push(Item { delivery, completion });
                    });
                }
            }
        }
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn publish(&self, message: OutboxMessage, confirm: Confirm) {
        let targets: Vec<_> = topology::queues_for(&message.routing_key)
            .filter_map(|q| self.queues.get(q.name))
            .collect();
        if targets.is_empty() {
            // Nobody is bound to the key: nothing to wait for.
            confirm.ack();
            return;
        }
        let completion = Arc::new(Completion {
            remaining: AtomicUsize::new(targets.len()),
            confirm: Mutex::new(Some(confirm)),
        });
        for queue in targets {
            queue.offer(&message, &completion);
        }
    }

    async fn deliver_to(&self, queue: &str, routing_key: &str, body: Arc<[u8]>) -> Result<(), String> {
        let target = self
            .queues
            .get(queue)
            .ok_or_else(|| format!("no queue `{queue}`"))?;
        target.push(Item {
            delivery: Delivery {
                body,
                routing_key: routing_key.to_owned(),
                attempt: 1,
                message_id: None,
                rejected: None,
            },
            completion: None,
        });
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }

    async fn stop(&self) {
        self.stopper.stop().await;
    }

    fn single_node(&self) -> bool {
        true
    }
}
