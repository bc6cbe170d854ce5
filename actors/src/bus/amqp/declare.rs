//! The topology on the broker, declared at every (re)connection: the exchange, and per consumer queue
//! the queue with its bindings, one retry queue per delay level (`Q.retry.<ms>ms`: every message waits
//! the queue's TTL, then is dead-lettered back to `Q`), the `.retry` queue of the first releases (per
//! message expiration, kept for what they left there), and its `.dlq`.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::BrokerConfig;
use crate::topology;

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the exchange, the consumer queues with their `.retry` and `.dlq` companions, and the bindings.
/// Declaring what exists with the same arguments changes nothing.
pub async fn declare(channel: &Channel, config: &BrokerConfig) -> lapin::Result<()> {
    let exchange = config.exchange();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    for spec in topology::QUEUES {
        let queue = config.queue(spec.name);
        let mut args = FieldTable::default();
        if config.quorum_queues {
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        }
        let mut queue_args = args.clone();
        if spec.single_active {
            queue_args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        channel
            .queue_declare(queue.as_str().into(), durable_queue(), queue_args)
            .await?;
        let mut retry_args = args.clone();
        retry_args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        retry_args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.as_str().into()),
        );
        channel
            .queue_declare(
                config.retry_queue(spec.name).as_str().into(),
                durable_queue(),
                retry_args.clone(),
            )
            .await?;
        for delay in &config.retry_delays {
            let mut level_args = retry_args.clone();
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            level_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            channel
                .queue_declare(
                    config.retry_level_queue(spec.name, *delay).as_str().into(),
                    durable_queue(),
                    level_args,
                )
                .await?;
        }
        channel
            .queue_declare(
                config.dead_letter_queue(spec.name).as_str().into(),
                durable_queue(),
                args,
            )
            .await?;
        for pattern in spec.bindings {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    (*pattern).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}
