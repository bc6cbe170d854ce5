//! Data for the audit and dashboard tests that the API cannot make on demand: release events, sagas and
//! dead letters written straight into the test's database, when a test needs exact timestamps, many
//! rows, a dead letter or a saga that stopped moving. (Orders go through the API: `TestApp::order`.)

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use entities::{dead_letters, inventory_release_events, saga_instances};

/// A release event row to write directly.
pub fn release_row(
    created_at: DateTime<Utc>,
    order_id: &str,
    reason: &str,
) -> inventory_release_events::Model {
    inventory_release_events::Model {
        id: uuid::Uuid::new_v4().to_string(),
        order_id: order_id.to_owned(),
        reservation_id: uuid::Uuid::new_v4().to_string(),
        reason: reason.to_owned(),
        released_items: r#"[{"skuId":"SKU-1","quantity":2},{"skuId":"SKU-2","quantity":1}]"#.to_owned(),
        trace_id: uuid::Uuid::new_v4().to_string(),
        created_at,
    }
}

/// Writes release events straight into the database.
pub async fn insert_releases(app: &TestApp, rows: &[inventory_release_events::Model]) {
    for chunk in rows.chunks(200) {
        let models = chunk
            .iter()
            .cloned()
            .map(|m| inventory_release_events::ActiveModel {
                id: Set(m.id),
                order_id: Set(m.order_id),
                reservation_id: Set(m.reservation_id),
                reason: Set(m.reason),
                released_items: Set(m.released_items),
                trace_id: Set(m.trace_id),
                created_at: Set(m.created_at),
            });
        inventory_release_events::Entity::insert_many(models)
            .exec_without_returning(&app.state.db)
            .await
            .unwrap();
    }
}

/// `n` release events of random orders, one second apart going back from `newest`, where every third
/// event shares the timestamp of the one before it (so that the id has to break ties). Returned in the
/// order the API must answer them: newest first, then id descending.
pub async fn seed_releases(
    app: &TestApp,
    n: usize,
    newest: DateTime<Utc>,
) -> Vec<inventory_release_events::Model> {
    let mut rows = Vec::with_capacity(n);
    let mut at = newest;
    for i in 0..n {
        if i % 3 != 2 {
            at -= chrono::Duration::seconds(1);
        }
        let reason = if i % 4 == 0 {
            "PAYMENT_TIMEOUT"
        } else {
            "PAYMENT_FAILED"
        };
        rows.push(release_row(at, &uuid::Uuid::new_v4().to_string(), reason));
    }
    insert_releases(app, &rows).await;
    newest_first(rows)
}

/// Sorts rows as the API orders them.
pub fn newest_first(mut rows: Vec<inventory_release_events::Model>) -> Vec<inventory_release_events::Model> {
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    rows
}

/// The ids of the `items` of a page.
pub fn ids(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page with items: {page}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

/// Writes a dead letter for `order_id` straight into the database and returns its id.
pub async fn insert_dead_letter(app: &TestApp, order_id: &str, trace_id: &str, reason: &str) -> String {
    let now = Utc::now();
    let id = uuid::Uuid::new_v4().to_string();
    let payload = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": "InventoryReserved",
        "occurred_at": now,
        "trace_id": trace_id,
        "identity": {"user_id": "u-1", "roles": ["buyer"]},
        "data": {"order_id": order_id, "reservation_id": "r-1", "reserved_items": []},
        "version": 1
    });
    dead_letters::Entity::insert(dead_letters::ActiveModel {
        id: Set(id.clone()),
        message_id: Set(uuid::Uuid::new_v4().to_string()),
        consumer: Set("q.payment.inventory-reserved".to_owned()),
        routing_key: Set("inventory.reserved".to_owned()),
        event_type: Set("InventoryReserved".to_owned()),
        payload: Set(payload.to_string()),
        reason: Set(reason.to_owned()),
        attempts: Set(5),
        trace_id: Set(Some(trace_id.to_owned())),
        status: Set("DEAD".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&app.state.db)
    .await
    .unwrap();
    id
}

/// Writes a saga that has waited in `state` since `since` without an engine actor watching it (no
/// deadline, so the engine's sweep leaves it alone), and returns its order id.
pub async fn insert_waiting_saga(app: &TestApp, state: &str, since: DateTime<Utc>) -> String {
    let order_id = uuid::Uuid::new_v4().to_string();
    saga_instances::Entity::insert(saga_instances::ActiveModel {
        order_id: Set(order_id.clone()),
        state: Set(state.to_owned()),
        version: Set(1),
        user_id: Set("u-stuck".to_owned()),
        reservation_id: Set(None),
        payment_id: Set(None),
        failure_reason: Set(None),
        trace_id: Set(uuid::Uuid::new_v4().to_string()),
        identity: Set(r#"{"user_id":"u-stuck","roles":["buyer"]}"#.to_owned()),
        started_at: Set(since),
        updated_at: Set(since),
        completed_at: Set(None),
        deadline_at: Set(None),
    })
    .exec_without_returning(&app.state.db)
    .await
    .unwrap();
    order_id
}
