//! The topology on the broker, declared at every (re)connection: the exchange, and per consumer queue
//! the queue with its bindings, its `.retry` companion (TTL, dead-lettered back to the queue) and its
//! `.dlq`.

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
        channel
            .queue_declare(queue.as_str().into(), durable_queue(), args.clone())
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
                retry_args,
            )
            .await?;
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
