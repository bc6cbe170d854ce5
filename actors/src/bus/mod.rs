//! The bus: routes envelopes by routing key to the consumer queues of the topology. Two transports
//! implement it: the in-process one (the default) and the RabbitMQ bridge.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub mod amqp;
pub mod memory;

/// A committed outbox row on its way out.
#[derive(Clone, Debug)]
pub struct OutboxMessage {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub routing_key: String,
    /// The envelope's JSON text.
    pub body: Arc<[u8]>,
}

/// Tells the relay what became of one published row. Dropped without an answer, it reports failure, so a
/// row is never left claimed by a publication that was lost.
pub struct Confirm {
    id: i64,
    tx: Option<mpsc::UnboundedSender<(i64, bool)>>,
}

impl Confirm {
    pub fn new(id: i64, tx: mpsc::UnboundedSender<(i64, bool)>) -> Self {
        Self { id, tx: Some(tx) }
    }

    /// The transport has taken responsibility: the row is published.
    pub fn ack(mut self) {
        self.send(true);
    }

    /// Publication failed: the row is released for another round.
    pub fn nack(mut self) {
        self.send(false);
    }

    fn send(&mut self, ok: bool) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.id, ok));
        }
    }
}

impl Drop for Confirm {
    fn drop(&mut self) {
        self.send(false);
    }
}

impl std::fmt::Debug for Confirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirm").field("id", &self.id).finish()
    }
}

/// A way of carrying envelopes from the outbox to the consumer queues.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// `in-process` or `rabbitmq`.
    fn name(&self) -> &'static str;

    /// Publishes one outbox row; `confirm` is answered once the transport has taken responsibility.
    /// May wait for capacity, never for the consumers.
    async fn publish(&self, message: OutboxMessage, confirm: Confirm);

    /// Delivers a message to one queue only, as a first attempt (replay of a dead letter).
    async fn deliver_to(&self, queue: &str, routing_key: &str, body: Arc<[u8]>) -> Result<(), String>;

    /// Whether the transport can publish now (readiness).
    fn is_ready(&self) -> bool;

    /// Stops the consumers: each finishes the batch it is applying (its transaction commits or rolls
    /// back whole) and takes no other. Returns once they have all stopped; bound it with a timeout.
    async fn stop(&self);

    /// Whether this node is the only publisher (the in-process bus), so claims of an earlier run of the
    /// node can be released at start.
    fn single_node(&self) -> bool;
}
