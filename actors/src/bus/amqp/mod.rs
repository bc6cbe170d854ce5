//! The RabbitMQ transport: the `BrokerBridge` actor owns the connection, declares the topology, consumes
//! the queues through the mailbox middleware and publishes the outbox with publisher confirms.
//!
//! Topology (declared idempotently at every (re)connection; names get `broker.name_prefix`):
//! - exchange `ecom.events` (topic, durable);
//! - per consumer queue `Q` (durable, bound to the exchange with its patterns), one retry queue per delay
//!   level `Q.retry.<ms>ms` (queue TTL `<ms>`, dead-lettering back into `Q`), and a `Q.dlq` queue. (`Q.retry`,
//!   the per-message-expiration queue of the first releases, is declared too, so that what they left
//!   there still comes back.)
//!
//! A retry is published to the level queue of its delay (the middleware's bounded exponential back-off)
//! through the default exchange, which routes by queue name, and dead-letters from there through the
//! default exchange again with routing key `Q`. It therefore comes back to the one queue that failed.
//! Dead-lettering it to `ecom.events` with its original routing key instead would deliver it again to
//! every queue bound to that key, and consumers that had already applied it would see it twice. Every
//! message of a level queue waits the same time, so none is held behind a longer one (RabbitMQ expires
//! messages at the head of a queue only); the attempt count travels in `x-retry-count`.
//!
//! Every envelope is signed (`x-signature`, HMAC-SHA256 of the body); a delivery without a valid
//! signature is dead-lettered with the reason and never applied. A delivery is acknowledged only after
//! the consumer's transaction committed (or after it was stored as a dead letter); RabbitMQ redelivers
//! anything unacknowledged, and the inbox makes a redelivery a no-op.
//!
//! When the connection is lost the bridge reports not ready, the relay stops publishing (rows stay in
//! the outbox, orders are still accepted), and the bridge reconnects with back-off, declares the topology
//! again and resumes consuming; the relay then drains the outbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Deserialize;

use super::{Confirm, OutboxMessage, Transport};

mod consume;
mod declare;

use crate::envelope;
use crate::mailbox::{Consumer, Mailbox};
use crate::stop::Stopper;
use crate::topology::EXCHANGE;
use consume::start_consumer;
pub use declare::declare;

/// First pause before reconnecting; doubled up to [`RECONNECT_MAX`].
pub const RECONNECT_INITIAL: Duration = Duration::from_millis(200);
/// Longest pause between two connection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often a live connection is checked.
const HEALTH_CHECK: Duration = Duration::from_millis(250);

/// Header: HMAC-SHA256 of the body.
pub const H_SIGNATURE: &str = "x-signature";
/// Header: retries so far (absent on a first delivery).
pub const H_RETRY_COUNT: &str = "x-retry-count";
/// Header: why a message was dead-lettered.
pub const H_DLQ_REASON: &str = "x-dlq-reason";
/// Header: the routing key the event was published with (kept on retries and dead letters, which travel
/// under the queue's name).
pub const H_ROUTING_KEY: &str = "x-routing-key";
pub const H_TRACE_ID: &str = "x-trace-id";
/// W3C trace context of the envelope's trace id, when it has a W3C form ([`crate::trace`]).
pub const H_TRACEPARENT: &str = "traceparent";
pub const H_EVENT_TYPE: &str = "x-event-type";
pub const H_EVENT_ID: &str = "x-event-id";

/// What the bridge needs.
#[derive(Clone)]
pub struct BrokerConfig {
    pub url: String,
    pub name_prefix: String,
    pub prefetch: u16,
    pub signing_key: Vec<u8>,
    pub quorum_queues: bool,
    /// The delays a retry can wait ([`crate::config::RetrySettings::delays`]): one retry queue each.
    pub retry_delays: Vec<Duration>,
    /// Heartbeat asked of the broker, in seconds, unless the URL asks its own.
    pub heartbeat: u16,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("name_prefix", &self.name_prefix)
            .field("prefetch", &self.prefetch)
            .field("quorum_queues", &self.quorum_queues)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl BrokerConfig {
    /// The exchange's name.
    pub fn exchange(&self) -> String {
        format!("{}{EXCHANGE}", self.name_prefix)
    }
    /// A consumer queue's name.
    pub fn queue(&self, queue: &str) -> String {
        format!("{}{queue}", self.name_prefix)
    }
    /// The retry queue of the first releases, whose messages carry their own expiration; still declared
    /// so that what such a node left there comes back to its queue.
    pub fn retry_queue(&self, queue: &str) -> String {
        format!("{}{queue}.retry", self.name_prefix)
    }
    /// The retry queue of one delay level: every message in it waits the same time (the queue's TTL),
    /// so none waits behind a longer one.
    pub fn retry_level_queue(&self, queue: &str, delay: Duration) -> String {
        format!("{}{queue}.retry.{}ms", self.name_prefix, delay.as_millis())
    }
    /// The level a retry after `delay` goes to: the shortest at least as long, else the longest.
    pub fn retry_level(&self, delay: Duration) -> Duration {
        self.retry_delays
            .iter()
            .copied()
            .find(|level| *level >= delay)
            .or_else(|| self.retry_delays.last().copied())
            .unwrap_or(delay)
    }
    pub fn dead_letter_queue(&self, queue: &str) -> String {
        format!("{}{queue}.dlq", self.name_prefix)
    }
}

/// The live connection.
struct Link {
    connection: Connection,
    publisher: Channel,
}

struct Shared {
    config: BrokerConfig,
    link: RwLock<Option<Arc<Link>>>,
    ready: AtomicBool,
    /// Stops the consumers when the node shuts down.
    stopper: Stopper,
}

impl Shared {
    fn link(&self) -> Option<Arc<Link>> {
        self.link.read().ok().and_then(|l| l.clone())
    }
    fn set_link(&self, link: Option<Arc<Link>>) {
        self.ready.store(link.is_some(), Ordering::Release);
        if let Ok(mut slot) = self.link.write() {
            *slot = link;
        }
    }
}

/// The transport's face: what the relay and the admin routes use.
pub struct BrokerTransport {
    shared: Arc<Shared>,
}

/// Owns the broker connection: connects, declares, consumes, and reconnects after a loss.
pub struct BrokerBridge {
    shared: Arc<Shared>,
    consumers: Vec<Consumer>,
    mailbox: Mailbox,
}

impl BrokerBridge {
    /// Starts the bridge actor and returns the transport. The first connection is made in the
    /// background: a node starts (and reports not ready) while the broker is away.
    pub fn start(config: BrokerConfig, consumers: Vec<Consumer>, mailbox: Mailbox) -> Arc<BrokerTransport> {
        let shared = Arc::new(Shared {
            config,
            link: RwLock::new(None),
            ready: AtomicBool::new(false),
            stopper: Stopper::new(),
        });
        let transport = Arc::new(BrokerTransport {
            shared: shared.clone(),
        });
        metrics::gauge!("broker_connected").set(0.0);
        Actor::start(BrokerBridge {
            shared,
            consumers,
            mailbox,
        });
        transport
    }
}

impl Actor for BrokerBridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let run = supervise(self.shared.clone(), self.consumers.clone(), self.mailbox.clone());
        ctx.spawn(run.into_actor(self));
    }
}

/// Connects, serves until the connection is lost, and starts over, with back-off.
async fn supervise(shared: Arc<Shared>, consumers: Vec<Consumer>, mailbox: Mailbox) {
    let mut pause = RECONNECT_INITIAL;
    while !shared.stopper.is_stopping() {
        match connect(&shared.config).await {
            Ok(link) => {
                let link = Arc::new(link);
                let mut tasks = Vec::new();
                let mut started = Ok(());
                for consumer in &consumers {
                    match start_consumer(&shared, &link, consumer.clone(), mailbox.clone()).await {
                        Ok(task) => tasks.push(task),
                        Err(e) => {
                            started = Err(e);
                            break;
                        }
                    }
                }
                match started {
                    Ok(()) => {
                        pause = RECONNECT_INITIAL;
                        shared.set_link(Some(link.clone()));
                        metrics::gauge!("broker_connected").set(1.0);
                        tracing::info!("broker: connected, topology declared, consuming");
                        while link.connection.status().connected() {
                            if shared.stopper.is_stopping() {
                                // `stop` closes the connection once the consumers have finished.
                                return;
                            }
                            tokio::time::sleep(HEALTH_CHECK).await;
                        }
                        tracing::warn!("broker: connection lost; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "broker: starting the consumers failed"),
                }
                shared.set_link(None);
                metrics::gauge!("broker_connected").set(0.0);
                for task in tasks {
                    task.abort();
                }
                let _ = link.connection.close(200, "reconnecting".into()).await;
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?pause, "broker: cannot connect"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// Opens the connection and the confirming publisher channel, and declares the topology, within the
/// connect timeout: a broker behind a cut network never answers, and the attempt is made again.
async fn connect(config: &BrokerConfig) -> Result<Link, String> {
    let mut uri: AMQPUri = config.url.parse()?;
    // Without a heartbeat of our own the broker's (60 s by default) decides, and a connection cut off
    // by the network is noticed after two of them.
    uri.query.heartbeat.get_or_insert(config.heartbeat);
    let timeout_ms = u64::try_from(config.connect_timeout.as_millis()).unwrap_or(u64::MAX);
    uri.query.connection_timeout.get_or_insert(timeout_ms);
    let properties = ConnectionProperties::default().with_connection_name("ordersaga".into());
    let attempt = async {
        let connection = Connection::connect_uri(uri, properties).await?;
        let publisher = connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        declare(&publisher, config).await?;
        Ok::<_, lapin::Error>(Link {
            connection,
            publisher,
        })
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(link) => link.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}s",
            config.connect_timeout.as_secs_f64()
        )),
    }
}

/// Publishes with `mandatory` and waits for the broker's confirm; a returned (unroutable) or nacked
/// message is an error.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    match confirm.await.map_err(|e| e.to_string())? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(format!(
            "unroutable: {} {}",
            returned.reply_code, returned.reply_text
        )),
        Confirmation::Nack(_) => Err("the broker refused the message".to_owned()),
    }
}

/// The part of an envelope the headers need.
#[derive(Deserialize)]
struct EnvelopeHead {
    trace_id: String,
}

/// The AMQP properties of an envelope: persistent, `message_id` = `event_id`, `type` = `event_type`, and
/// the trace, type, id and signature headers.
pub fn properties(
    event_id: &str,
    event_type: &str,
    routing_key: &str,
    body: &[u8],
    signing_key: &[u8],
) -> BasicProperties {
    let trace_id = serde_json::from_slice::<EnvelopeHead>(body)
        .map(|h| h.trace_id)
        .unwrap_or_default();
    let mut headers = FieldTable::default();
    headers.insert(H_TRACE_ID.into(), AMQPValue::LongString(trace_id.as_str().into()));
    if let Some(parent) = crate::trace::traceparent(&trace_id) {
        headers.insert(
            H_TRACEPARENT.into(),
            AMQPValue::LongString(parent.as_str().into()),
        );
    }
    headers.insert(H_EVENT_TYPE.into(), AMQPValue::LongString(event_type.into()));
    headers.insert(H_EVENT_ID.into(), AMQPValue::LongString(event_id.into()));
    headers.insert(H_ROUTING_KEY.into(), AMQPValue::LongString(routing_key.into()));
    headers.insert(
        H_SIGNATURE.into(),
        AMQPValue::LongString(LongString::from(envelope::sign(signing_key, body))),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(event_id))
        .with_type(ShortString::from(event_type))
        .with_app_id("ordersaga".into())
        .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64)
        .with_headers(headers)
}

#[async_trait]
impl Transport for BrokerTransport {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, message: OutboxMessage, confirm: Confirm) {
        let Some(link) = self.shared.link() else {
            confirm.nack();
            return;
        };
        let config = &self.shared.config;
        let properties = properties(
            &message.event_id,
            &message.event_type,
            &message.routing_key,
            &message.body,
            &config.signing_key,
        );
        let published = link
            .publisher
            .basic_publish(
                config.exchange().as_str().into(),
                message.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await;
        let pending = match published {
            Ok(pending) => pending,
            Err(e) => {
                tracing::debug!(error = %e, "broker: publish failed");
                confirm.nack();
                return;
            }
        };
        // The confirm comes later; waiting for it here would publish one message per round trip.
        let routing_key = message.routing_key;
        tokio::spawn(async move {
            match pending.await {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => confirm.ack(),
                Ok(Confirmation::Ack(Some(returned))) => {
                    tracing::error!(%routing_key, reply = %returned.reply_text, "broker: event routed to no queue");
                    confirm.nack();
                }
                Ok(Confirmation::Nack(_)) | Err(_) => confirm.nack(),
            }
        });
    }

    async fn deliver_to(&self, queue: &str, routing_key: &str, body: Arc<[u8]>) -> Result<(), String> {
        let link = self
            .shared
            .link()
            .ok_or_else(|| "the broker is not connected".to_owned())?;
        let config = &self.shared.config;
        let head: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let field = |name: &str| head.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let event_id = field("event_id").unwrap_or_else(|| "replay".to_owned());
        let event_type = field("event_type").unwrap_or_else(|| "unknown".to_owned());
        let properties = properties(&event_id, &event_type, routing_key, &body, &config.signing_key);
        publish_confirmed(&link.publisher, "", &config.queue(queue), &body, properties).await
    }

    fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    async fn stop(&self) {
        self.shared.stopper.stop().await;
        if let Some(link) = self.shared.link() {
            self.shared.set_link(None);
            metrics::gauge!("broker_connected").set(0.0);
            let _ = link.connection.close(200, "shutting down".into()).await;
        }
    }

    fn single_node(&self) -> bool {
        false
    }
}
