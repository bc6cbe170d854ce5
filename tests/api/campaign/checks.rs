//! What a campaign checks once its load and faults are over: the drain (every saga ended, the outbox
//! published, every refund made, every poison message dead-lettered), then the guarantees, as a list of
//! violations.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

use super::load::{ANSWER_WITHIN, LoadReport};
use super::services::AmqpClient;
use entities::{dead_letters, orders, outbox_events, payment_records, saga_history, saga_instances};

const TERMINAL: [&str; 3] = ["COMPLETED", "FAILED", "COMPENSATED"];

/// A poison message the campaign sent: the queue it was published to and its message id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Poison {
    pub queue: String,
    pub message_id: String,
}

/// What is still under way, or `None` once the run has drained.
pub async fn under_way(conn: &DatabaseConnection, poisons: usize) -> Option<String> {
    let open = saga_instances::Entity::find()
        .filter(saga_instances::Column::State.is_not_in(TERMINAL))
        .count(conn)
        .await
        .ok()?;
    let unpublished = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(conn)
        .await
        .ok()?;
    let confirmed = orders::Entity::find()
        .filter(orders::Column::Status.eq("CONFIRMED"))
        .count(conn)
        .await
        .ok()?;
    let charged = payment_records::Entity::find()
        .filter(payment_records::Column::Status.eq("SUCCEEDED"))
        .count(conn)
        .await
        .ok()?;
    let dead = dead_letters::Entity::find().count(conn).await.ok()?;
    let drained = open == 0 && unpublished == 0 && charged <= confirmed && dead as usize >= poisons;
    (!drained).then(|| {
        format!(
            "{open} sagas open, {unpublished} outbox rows unpublished, {charged} payments kept for {confirmed} confirmed orders, {dead} of {poisons} poison messages dead-lettered"
        )
    })
}

/// Waits until the run has drained; answers how long it took, or what was still under way once nothing
/// had moved for `stall` (a violation: something hangs). A slow machine drains slowly but steadily, so
/// only a drain that stops counts; one that moves for over ten times `stall` counts too.
pub async fn drain(url: &str, poisons: usize, stall: Duration) -> Result<Duration, String> {
    let conn = sea_orm::Database::connect(url).await.unwrap();
    let started = Instant::now();
    let mut last = String::new();
    let mut moved = Instant::now();
    let result = loop {
        match under_way(&conn, poisons).await {
            None => break Ok(started.elapsed()),
            Some(state) if state != last => {
                last = state;
                moved = Instant::now();
            }
            Some(_) => {}
        }
        if moved.elapsed() > stall {
            break Err(format!("not drained, nothing moved for {stall:?}: {last}"));
        }
        if started.elapsed() > stall * 10 {
            break Err(format!("not drained after {:?}: {last}", stall * 10));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = conn.close().await;
    result
}

/// The end of a run: waits for the drain ([`drain`], `poisons.len()` dead letters expected), then checks
/// the guarantees ([`violations`]), on the broker too when `amqp_url` names one.
pub async fn settle(
    url: &str,
    load: &LoadReport,
    stocks: &[(&str, i64)],
    poisons: &[Poison],
    amqp_url: Option<&str>,
    stall: Duration,
) -> (Result<Duration, String>, Vec<String>) {
    let drained = drain(url, poisons.len(), stall).await;
    let broker = match amqp_url {
        Some(amqp_url) => Some(AmqpClient::connect(amqp_url).await),
        None => None,
    };
    let found = violations(url, load, stocks, poisons, broker.as_ref()).await;
    if let Some(broker) = broker {
        broker.close().await;
    }
    (drained, found)
}

/// Every guarantee of the run, checked on the database (and on the broker when there is one): what the
/// clients were told matches what the database holds, every order ended once
/// ([`crate::crash::ended_once_violations`]), no saga step was applied twice, the outbox is empty of
/// unpublished rows, and the dead letters are exactly the poison messages, each once.
pub async fn violations(
    url: &str,
    load: &LoadReport,
    stocks: &[(&str, i64)],
    poisons: &[Poison],
    broker: Option<&AmqpClient>,
) -> Vec<String> {
    let conn = sea_orm::Database::connect(url).await.unwrap();
    let mut found = Vec::new();
    for key in &load.conflicting {
        found.push(format!("key {key} answered with two order ids"));
    }
    for (key, status, body) in &load.refused {
        found.push(format!("key {key} refused with {status}: {body}"));
    }
    for key in &load.unanswered {
        found.push(format!("key {key} unanswered for {ANSWER_WITHIN:?}"));
    }

    // What the clients were told is what the database holds: one order per key, the one answered.
    let stored = orders::Entity::find().all(&conn).await.unwrap();
    let mut ids = Vec::with_capacity(stored.len());
    let mut keys = HashSet::new();
    for order in &stored {
        if !keys.insert(order.idempotency_key.clone()) {
            found.push(format!("key {} placed twice", order.idempotency_key));
        }
        match load.accepted.get(&order.idempotency_key) {
            Some(id) if *id == order.id => {}
            Some(id) => found.push(format!(
                "key {}: the client was told {id}, the database holds {}",
                order.idempotency_key, order.id
            )),
            None if load.unanswered.contains(&order.idempotency_key) => {}
            None => found.push(format!(
                "order {} (key {}) was never acknowledged",
                order.id, order.idempotency_key
            )),
        }
        ids.push(order.id.clone());
    }
    let stored_ids: HashSet<&String> = ids.iter().collect();
    for (key, id) in &load.accepted {
        if !stored_ids.contains(id) {
            found.push(format!("order {id} (key {key}) was accepted and is not stored"));
        }
    }
    let ended = crate::crash::ended_once_violations(url, &ids, stocks).await;
    if !ended.is_empty() {
        for open in saga_instances::Entity::find()
            .filter(saga_instances::Column::State.is_not_in(TERMINAL))
            .all(&conn)
            .await
            .unwrap()
        {
            found.push(diagnosis(&conn, &open.order_id).await);
        }
    }
    found.extend(ended);

    // No step applied twice.
    let mut applied: HashMap<String, HashSet<String>> = HashMap::new();
    for step in saga_history::Entity::find().all(&conn).await.unwrap() {
        if step.from_state.as_deref() == Some(step.to_state.as_str()) {
            continue;
        }
        if !applied
            .entry(step.order_id.clone())
            .or_default()
            .insert(step.event_type.clone())
        {
            found.push(format!(
                "order {}: {} applied twice",
                step.order_id, step.event_type
            ));
        }
    }

    let unpublished = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(&conn)
        .await
        .unwrap();
    if unpublished > 0 {
        found.push(format!("{unpublished} outbox rows never published"));
    }

    // The dead letters are the poison messages, each once, in the queue it was sent to.
    let expected: HashSet<&Poison> = poisons.iter().collect();
    let mut seen = HashSet::new();
    for dead in dead_letters::Entity::find().all(&conn).await.unwrap() {
        let poison = Poison {
            queue: dead.consumer.clone(),
            message_id: dead.message_id.clone(),
        };
        if !expected.contains(&poison) {
            found.push(format!(
                "dead letter {} in {} ({}): {}",
                dead.message_id, dead.consumer, dead.event_type, dead.reason
            ));
        } else if !seen.insert(poison) {
            found.push(format!(
                "poison {} dead-lettered twice in {}",
                dead.message_id, dead.consumer
            ));
        }
    }
    for poison in &expected {
        if !seen.contains(*poison) {
            found.push(format!(
                "poison {} in {} not dead-lettered",
                poison.message_id, poison.queue
            ));
        }
    }
    if let Some(broker) = broker {
        let mut per_queue: HashMap<&str, u32> = HashMap::new();
        for poison in poisons {
            *per_queue.entry(poison.queue.as_str()).or_default() += 1;
        }
        for spec in actors::topology::QUEUES {
            let left = broker.depth(spec.name).await;
            if left > 0 {
                found.push(format!("{left} messages left on {}", spec.name));
            }
            let dlq = broker.depth(&format!("{}.dlq", spec.name)).await;
            let sent = per_queue.get(spec.name).copied().unwrap_or(0);
            // The copy for operators' tools is made at least once (a node that dies after the copy and
            // before its acknowledgement copies the redelivery again).
            if dlq < sent {
                found.push(format!(
                    "{}.dlq holds {dlq} messages, {sent} poison sent",
                    spec.name
                ));
            }
        }
    }
    let _ = conn.close().await;
    found
}

/// What the database knows of an order that did not end: its saga's steps, its events in the outbox
/// and which consumers applied them.
async fn diagnosis(conn: &DatabaseConnection, order_id: &str) -> String {
    let mut text = format!("order {order_id} did not end:");
    for step in saga_history::Entity::find()
        .filter(saga_history::Column::OrderId.eq(order_id))
        .all(conn)
        .await
        .unwrap()
    {
        text.push_str(&format!(
            "\n  step {} {:?} -> {} ({:?}) at {}",
            step.event_type, step.from_state, step.to_state, step.detail, step.at
        ));
    }
    for event in outbox_events::Entity::find()
        .filter(outbox_events::Column::AggregateId.eq(order_id))
        .all(conn)
        .await
        .unwrap()
    {
        let consumed: Vec<String> = entities::consumed_messages::Entity::find()
            .filter(entities::consumed_messages::Column::MessageId.eq(event.event_id.as_str()))
            .all(conn)
            .await
            .unwrap()
            .into_iter()
            .map(|c| format!("{} at {}", c.consumer, c.consumed_at))
            .collect();
        text.push_str(&format!(
            "\n  event {} {} created {} published {:?} by {:?} (attempts {}); consumed by {consumed:?}",
            event.routing_key,
            event.event_id,
            event.created_at,
            event.published_at,
            event.claimed_by,
            event.attempts
        ));
    }
    text
}
