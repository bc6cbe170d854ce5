//! `GET /dashboard/dead-letters`: what the consumers gave up on, and why. Payloads are not shown (they
//! carry the caller's identity); the order id is taken out of them to link to the order's saga.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{Layout, Pager, format, link, paging_pairs, parse_refresh, render, respond};
use crate::error::ApiError;
use crate::routes::paging::parse_page;
use crate::state::AppState;
use actors::mailbox::dead_letters::DeadLetterStatus;
use actors::read;

/// Longest reason shown in the table before it is folded.
const REASON_SHOWN: usize = 160;

#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterQuery {
    pub status: Option<String>,
    pub consumer: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
    pub refresh: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatusCount {
    status: &'static str,
    class: String,
    count: String,
}

#[derive(Debug, Serialize)]
struct ConsumerCounts {
    consumer: String,
    dead: u64,
    replayed: u64,
    discarded: u64,
}

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    created_at: String,
    ago: String,
    consumer: String,
    routing_key: String,
    event_type: String,
    reason_short: String,
    reason: String,
    folded: bool,
    attempts: i32,
    status: String,
    status_class: String,
    order_id: Option<String>,
    trace_id: Option<String>,
    message_id: String,
}

#[derive(Debug, Serialize)]
struct Form {
    status: String,
    consumer: String,
    statuses: Vec<&'static str>,
    consumers: Vec<String>,
}

#[derive(Debug, Serialize)]
struct DeadLettersPage {
    layout: Layout,
    counts: Vec<StatusCount>,
    consumers: Vec<ConsumerCounts>,
    form: Form,
    rows: Vec<Row>,
    pager: Pager,
}

pub async fn page(state: web::Data<AppState>, query: web::Query<DeadLetterQuery>) -> HttpResponse {
    let outcome = build(&state, query.into_inner()).await;
    respond(&state, "dead-letters", outcome)
}

/// The `data.order_id` of an envelope stored as JSON.
fn order_of(payload: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let id = value.get("data")?.get("order_id")?.as_str()?;
    actors::ids::OrderId::parse(id)
        .ok()
        .map(actors::ids::OrderId::into_string)
}

fn status_class(status: &str) -> String {
    format!("d-{}", status.to_ascii_lowercase())
}

async fn build(state: &AppState, query: DeadLetterQuery) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let refresh = parse_refresh(&query.refresh)?;
    let request = parse_page(&query.page, &query.size)?;
    let status = query
        .status
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let wanted = Some(status.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<DeadLetterStatus>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("status: {e}")))?;
    let consumer = query
        .consumer
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    if consumer.len() > 255 {
        return Err(ApiError::BadRequest(
            "consumer must be at most 255 characters".to_owned(),
        ));
    }
    crate::routes::paging::without_nul("consumer", &consumer)?;

    let counts = read::dead_letters::counts(&state.reads).await?;
    let mut per_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut per_consumer: BTreeMap<String, ConsumerCounts> = BTreeMap::new();
    for (c, s, n) in &counts {
        *per_status.entry(s.as_str()).or_default() += n;
        let entry = per_consumer.entry(c.clone()).or_insert_with(|| ConsumerCounts {
            consumer: c.clone(),
            dead: 0,
            replayed: 0,
            discarded: 0,
        });
        match s.parse::<DeadLetterStatus>() {
            Ok(DeadLetterStatus::Dead) => entry.dead += n,
            Ok(DeadLetterStatus::Replayed) => entry.replayed += n,
            Ok(DeadLetterStatus::Discarded) => entry.discarded += n,
            Err(_) => {}
        }
    }
    let (rows, total) = read::dead_letters::page(
        &state.reads,
        Some(consumer.as_str()).filter(|c| !c.is_empty()),
        wanted,
        request.page,
        request.size,
    )
    .await?;
    let keep = |page: u64| {
        let mut pairs = vec![("status", status.clone()), ("consumer", consumer.clone())];
        pairs.extend(paging_pairs(page, request.size, refresh));
        link("/dashboard/dead-letters", &pairs)
    };
    let pager = Pager::new(request.page, request.size, total, rows.len(), keep);
    let page = DeadLettersPage {
        layout: Layout::new("Dead letters", "dead-letters", refresh, now),
        counts: DeadLetterStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .map(|s| StatusCount {
                status: s,
                class: status_class(s),
                count: format::count(per_status.get(s).copied().unwrap_or(0)),
            })
            .collect(),
        form: Form {
            status: status.clone(),
            consumer: consumer.clone(),
            statuses: DeadLetterStatus::ALL.iter().map(|s| s.as_str()).collect(),
            consumers: per_consumer.keys().cloned().collect(),
        },
        consumers: per_consumer.into_values().collect(),
        rows: rows
            .into_iter()
            .map(|d| {
                let folded = d.reason.chars().count() > REASON_SHOWN;
                Row {
                    reason_short: if folded {
                        d.reason
                            .chars()
                            .take(REASON_SHOWN)
                            .chain(std::iter::once('…'))
                            .collect()
                    } else {
                        d.reason.clone()
                    },
                    folded,
                    order_id: order_of(&d.payload),
                    created_at: format::utc(d.created_at),
                    ago: format::ago(d.created_at, now),
                    status_class: status_class(&d.status),
                    id: d.id,
                    consumer: d.consumer,
                    routing_key: d.routing_key,
                    event_type: d.event_type,
                    reason: d.reason,
                    attempts: d.attempts,
                    status: d.status,
                    trace_id: d.trace_id,
                    message_id: d.message_id,
                }
            })
            .collect(),
        pager,
    };
    Ok(render(state, "dead_letters.html", &page, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_id_is_read_from_the_envelope_only_when_it_is_a_uuid() {
        let id = "0b0d1c9e-9f6a-4e0b-8c8d-3c6a1e2f4b5a";
        assert_eq!(
            order_of(&format!(r#"{{"data":{{"order_id":"{id}"}}}}"#)).as_deref(),
            Some(id)
        );
        assert_eq!(order_of(r#"{"data":{"order_id":"<script>"}}"#), None);
        assert_eq!(order_of("garbage"), None);
    }
}
