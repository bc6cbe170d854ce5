//! Consuming one queue: deliveries through the mailbox middleware, then acknowledged, retried through
//! the queue's `.retry` companion, or dead-lettered to its `.dlq` — always after the commit.

use std::sync::Arc;

use futures::StreamExt;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};

use super::{H_DLQ_REASON, H_RETRY_COUNT, H_ROUTING_KEY, H_SIGNATURE, Link, Shared, publish_confirmed};
use crate::envelope;
use crate::mailbox::{Consumer, Delivery, Disposition, MAX_BATCH, Mailbox};
use crate::stop::Stop;

/// Starts consuming one queue on its own channel.
pub(super) async fn start_consumer(
    shared: &Arc<Shared>,
    link: &Arc<Link>,
    consumer: Consumer,
    mailbox: Mailbox,
) -> lapin::Result<futures::future::AbortHandle> {
    let Some(stop) = shared.stopper.worker() else {
        return Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
            lapin::ConnectionState::Closing,
        )));
    };
    let channel = link.connection.create_channel().await?;
    channel
        .basic_qos(shared.config.prefetch, BasicQosOptions::default())
        .await?;
    let stream = channel
        .basic_consume(
            shared.config.queue(consumer.queue).as_str().into(),
            format!("ordersaga-{}", consumer.queue).as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let shared = shared.clone();
    let link = link.clone();
    let home = consumer.home.clone();
    let (task, abort) =
        futures::future::abortable(consume(shared, link, channel, stream, consumer, mailbox, stop));
    home.spawn(async move {
        let _ = task.await;
    });
    Ok(abort)
}

fn header<'a>(headers: &'a Option<FieldTable>, name: &str) -> Option<&'a AMQPValue> {
    headers.as_ref().and_then(|h| h.inner().get(name))
}

fn header_string(headers: &Option<FieldTable>, name: &str) -> Option<String> {
    match header(headers, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header_count(headers: &Option<FieldTable>, name: &str) -> u32 {
    match header(headers, name) {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    }
}

/// Reads deliveries in batches of up to [`MAX_BATCH`], runs them through the middleware, and settles
/// each. A prefetch above the batch keeps the next batch arriving while one is applied, so the
/// consumer does not wait a round trip to the broker between its transactions.
async fn consume(
    shared: Arc<Shared>,
    link: Arc<Link>,
    channel: Channel,
    stream: lapin::Consumer,
    consumer: Consumer,
    mailbox: Mailbox,
    mut stop: Stop,
) {
    let mut batches = stream.ready_chunks(usize::from(shared.config.prefetch).clamp(1, MAX_BATCH));
    loop {
        let batch = tokio::select! {
            biased;
            () = stop.stopping() => {
                // Deliveries prefetched but not applied go back to the queue with the channel.
                let _ = channel.close(200, "shutting down".into()).await;
                return;
            }
            batch = batches.next() => match batch {
                Some(batch) => batch,
                None => return,
            },
        };
        let mut received = Vec::with_capacity(batch.len());
        for item in batch {
            match item {
                Ok(delivery) => received.push(delivery),
                Err(e) => {
                    tracing::warn!(queue = consumer.queue, error = %e, "broker: consumer stopped");
                    return;
                }
            }
        }
        let deliveries: Vec<Delivery> = received
            .iter()
            .map(|d| {
                let headers = d.properties.headers();
                let rejected = match header_string(headers, H_SIGNATURE) {
                    None => Some("unsigned message: no x-signature header".to_owned()),
                    Some(sig) if !envelope::verify_signature(&shared.config.signing_key, &d.data, &sig) => {
                        Some("forged message: x-signature does not match".to_owned())
                    }
                    Some(_) => None,
                };
                Delivery {
                    body: Arc::from(d.data.as_slice()),
                    routing_key: header_string(headers, H_ROUTING_KEY)
                        .unwrap_or_else(|| d.routing_key.to_string()),
                    attempt: header_count(headers, H_RETRY_COUNT) + 1,
                    message_id: d.properties.message_id().as_ref().map(|m| m.to_string()),
                    rejected,
                }
            })
            .collect();
        let dispositions = mailbox.handle(&consumer, &deliveries).await;
        // The deliveries to retry or dead-letter are settled one by one first; then one acknowledgement
        // with `multiple` takes the rest: every delivery of this channel up to the batch's last acked
        // tag that is still unsettled, which is exactly the batch's acked ones (the batches before it
        // are settled, the ones after it have higher tags).
        let mut last_acked = None;
        for ((amqp, delivery), disposition) in received.iter().zip(&deliveries).zip(dispositions) {
            match disposition {
                Disposition::Ack => last_acked = Some(amqp.delivery_tag),
                other => settle(&shared, &link, &channel, &consumer, amqp, delivery, other).await,
            }
        }
        if let Some(tag) = last_acked {
            let acked = channel.basic_ack(tag, BasicAckOptions { multiple: true }).await;
            if let Err(e) = acked {
                // The channel is gone: the broker will redeliver, and the inbox makes that harmless.
                tracing::debug!(queue = consumer.queue, error = %e, "broker: acknowledging a batch failed");
            }
        }
    }
}

/// Acknowledges, retries through the retry queue of the delay's level, or copies to `Q.dlq` and
/// acknowledges, one delivery.
async fn settle(
    shared: &Shared,
    link: &Link,
    channel: &Channel,
    consumer: &Consumer,
    amqp: &lapin::message::Delivery,
    delivery: &Delivery,
    disposition: Disposition,
) {
    let config = &shared.config;
    let mut headers = amqp.properties.headers().clone().unwrap_or_default();
    headers.insert(
        H_ROUTING_KEY.into(),
        AMQPValue::LongString(delivery.routing_key.as_str().into()),
    );
    let result = match disposition {
        Disposition::Ack => Ok(()),
        Disposition::Retry { attempt, delay, .. } => {
            headers.insert(
                H_RETRY_COUNT.into(),
                AMQPValue::LongLongInt(i64::from(attempt.saturating_sub(1))),
            );
            // The queue of the delay's level holds it for exactly that long: a short retry never waits
            // behind a long one, as it would in one queue of per-message expirations.
            let properties = amqp.properties.clone().with_headers(headers);
            publish_confirmed(
                &link.publisher,
                "",
                &config.retry_level_queue(consumer.queue, config.retry_level(delay)),
                &amqp.data,
                properties,
            )
            .await
        }
        Disposition::DeadLettered { reason } => {
            headers.insert(
                H_DLQ_REASON.into(),
                AMQPValue::LongString(truncate(&reason, 4096).into()),
            );
            headers.insert(
                H_RETRY_COUNT.into(),
                AMQPValue::LongLongInt(i64::from(delivery.attempt.saturating_sub(1))),
            );
            let properties = amqp.properties.clone().with_headers(headers);
            let copied = publish_confirmed(
                &link.publisher,
                "",
                &config.dead_letter_queue(consumer.queue),
                &amqp.data,
                properties,
            )
            .await;
            if let Err(e) = copied {
                // The dead letter is in the database already; the .dlq copy is for operators' tools.
                tracing::warn!(queue = consumer.queue, error = %e, "broker: copying a dead letter to its .dlq failed");
            }
            Ok(())
        }
    };
    let acked = match result {
        Ok(()) => {
            channel
                .basic_ack(amqp.delivery_tag, BasicAckOptions::default())
                .await
        }
        Err(e) => {
            tracing::warn!(queue = consumer.queue, error = %e, "broker: retry not stored; returning the message");
            channel
                .basic_nack(
                    amqp.delivery_tag,
                    BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    },
                )
                .await
        }
    };
    if let Err(e) = acked {
        // The channel is gone: the broker will redeliver, and the inbox makes that harmless.
        tracing::debug!(queue = consumer.queue, error = %e, "broker: settling a delivery failed");
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
