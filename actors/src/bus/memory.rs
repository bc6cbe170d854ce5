//! The in-process transport: one in-memory queue per consumer queue of the topology, routed like the
//! topic exchange, each drained by its consumer through the mailbox middleware.
//!
//! Memory is not durable, so a publication counts as done only when every queue it reached has settled
//! it (applied, or dead-lettered): until then its outbox row stays unpublished, and after a crash the
//! relay sends it again (the inbox makes the second delivery a no-op where the first had committed).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Confirm, OutboxMessage, Transport};
use crate::mailbox::{Consumer, Delivery, Disposition, Mailbox};
use crate::topology;

/// Most deliveries a queue applies in one transaction.
pub const MAX_BATCH: usize = 128;

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

/// The in-process bus.
pub struct InProcessTransport {
    queues: HashMap<&'static str, mpsc::UnboundedSender<Item>>,
}

impl InProcessTransport {
    /// Creates a queue per consumer and starts draining them on the consumer's arbiter, `workers` tasks
    /// per queue (one for a consumer whose messages share rows, [`Consumer::serial`]).
    pub fn start(consumers: Vec<Consumer>, mailbox: Mailbox, workers: usize) -> Arc<Self> {
        let mut queues = HashMap::new();
        for consumer in consumers {
            let (tx, rx) = mpsc::unbounded_channel();
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            let workers = if consumer.serial { 1 } else { workers.max(1) };
            for _ in 0..workers {
                consumer
                    .home
                    .spawn(drain(consumer.clone(), mailbox.clone(), rx.clone(), tx.clone()));
            }
            queues.insert(consumer.queue, tx);
        }
        Arc::new(Self { queues })
    }
}

async fn drain(
    consumer: Consumer,
    mailbox: Mailbox,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Item>>>,
    tx: mpsc::UnboundedSender<Item>,
) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    loop {
        items.clear();
        if rx.lock().await.recv_many(&mut items, MAX_BATCH).await == 0 {
            return;
        }
        let deliveries: Vec<Delivery> = items.iter().map(|i| i.delivery.clone()).collect();
        let dispositions = mailbox.handle(&consumer, &deliveries).await;
        for (item, disposition) in items.drain(..).zip(dispositions) {
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
                    let tx = tx.clone();
                    let mut delivery = item.delivery;
                    delivery.attempt = attempt;
                    let completion = item.completion;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx.send(Item { delivery, completion });
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
        for tx in targets {
            let delivery = Delivery {
                body: message.body.clone(),
                routing_key: message.routing_key.clone(),
                attempt: 1,
                message_id: Some(message.event_id.clone()),
                rejected: None,
            };
            if tx
                .send(Item {
                    delivery,
                    completion: Some(completion.clone()),
                })
                .is_err()
            {
                // The queue is gone (shutting down): leave the row for the next run.
                return;
            }
        }
    }

    async fn deliver_to(&self, queue: &str, routing_key: &str, body: Arc<[u8]>) -> Result<(), String> {
        let tx = self
            .queues
            .get(queue)
            .ok_or_else(|| format!("no queue `{queue}`"))?;
        let delivery = Delivery {
            body,
            routing_key: routing_key.to_owned(),
            attempt: 1,
            message_id: None,
            rejected: None,
        };
        tx.send(Item {
            delivery,
            completion: None,
        })
        .map_err(|_| format!("queue `{queue}` is closed"))
    }

    fn is_ready(&self) -> bool {
        true
    }

    fn single_node(&self) -> bool {
        true
    }
}
