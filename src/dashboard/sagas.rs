//! `GET /dashboard/sagas` (sagas per state, throughput and latency, a searchable list, stuck sagas) and
//! `GET /dashboard/sagas/{orderId}` (one saga's timeline: each step, its event, trace id and timing).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::release_audit::reason_class;
use super::svg::{self, Series, Step};
use super::{
    Layout, Pager, format, link, paging_pairs, parse_refresh, render, respond, state_class, unless_default,
};
use crate::error::ApiError;
use crate::routes::paging::{parse_number, parse_page};
use crate::routes::release_events::{ReleasedItem, parse_order_id, released_items};
use crate::state::AppState;
use actors::consumers::payment::PaymentStatus;
use actors::read::{self, sagas::SagaSearch};
use actors::saga::SagaState;
use entities::saga_instances;

/// Minutes of history in the throughput and latency charts unless `minutes` says otherwise.
pub const DEFAULT_WINDOW_MINUTES: u64 = 30;
/// Longest window (a day).
pub const MAX_WINDOW_MINUTES: u64 = 1_440;
/// Most buckets in the throughput and latency charts.
const WINDOW_BUCKETS: usize = 60;
/// Most ended sagas the charts look at.
const FINISHED_SAMPLE: u64 = 50_000;
/// Stuck sagas listed in the "stuck" panel.
const STUCK_SHOWN: u64 = 10;
/// Longest search text.
const MAX_SEARCH: usize = 100;

/// An unfinished saga that has not moved for this long is stuck: twice the payment deadline (a
/// healthy saga moves on or compensates by then), and at least a minute.
pub fn default_stuck_seconds(payment_timeout_seconds: u64) -> u64 {
    payment_timeout_seconds.saturating_mul(2).max(60)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagasQuery {
    pub q: Option<String>,
    pub state: Option<String>,
    pub stuck: Option<String>,
    pub stuck_seconds: Option<String>,
    pub minutes: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
    pub refresh: Option<String>,
}

#[derive(Debug, Serialize)]
struct StateCount {
    state: &'static str,
    class: String,
    count: String,
    terminal: bool,
}

#[derive(Debug, Serialize)]
struct SagaRow {
    order_id: String,
    state: String,
    class: String,
    failure_reason: Option<String>,
    started_at: String,
    updated_ago: String,
    duration: String,
    trace_id: String,
    stuck: bool,
}

#[derive(Debug, Serialize)]
struct Throughput {
    chart: String,
    latency_chart: String,
    ended: String,
    per_minute: String,
    p50: String,
    p95: String,
    max: String,
    bucket: String,
}

#[derive(Debug, Serialize)]
struct SearchForm {
    q: String,
    state: String,
    stuck: bool,
    states: Vec<&'static str>,
}

#[derive(Debug, Serialize)]
struct SagasPage {
    layout: Layout,
    counts: Vec<StateCount>,
    total: String,
    in_flight: String,
    stuck_total: String,
    stuck_seconds: u64,
    stuck_after: String,
    stuck: Vec<SagaRow>,
    window_minutes: u64,
    throughput: Throughput,
    form: SearchForm,
    rows: Vec<SagaRow>,
    pager: Pager,
}

/// The saga overview.
pub async fn list_page(state: web::Data<AppState>, query: web::Query<SagasQuery>) -> HttpResponse {
    let outcome = list(&state, query.into_inner()).await;
    respond(&state, "sagas", outcome)
}

fn saga_row(row: saga_instances::Model, now: DateTime<Utc>, stuck_before: DateTime<Utc>) -> SagaRow {
    let terminal = row
        .state
        .parse::<SagaState>()
        .map(SagaState::is_terminal)
        .unwrap_or(false);
    let ran_until = row.completed_at.unwrap_or(now);
    SagaRow {
        class: state_class(&row.state),
        stuck: !terminal && row.updated_at < stuck_before,
        duration: format::duration_ms(format::millis(row.started_at, ran_until)),
        started_at: format::utc(row.started_at),
        updated_ago: format::ago(row.updated_at, now),
        order_id: row.order_id,
        state: row.state,
        failure_reason: row.failure_reason,
        trace_id: row.trace_id,
    }
}

async fn list(state: &AppState, query: SagasQuery) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let refresh = parse_refresh(&query.refresh)?;
    let minutes = parse_number(
        "minutes",
        &query.minutes,
        DEFAULT_WINDOW_MINUTES,
        5,
        MAX_WINDOW_MINUTES,
    )?;
    let default_stuck = default_stuck_seconds(state.settings.saga.payment_timeout_seconds);
    let stuck_seconds = parse_number("stuckSeconds", &query.stuck_seconds, default_stuck, 1, 7 * 86_400)?;
    let request = parse_page(&query.page, &query.size)?;
    let text = query.q.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if text.chars().count() > MAX_SEARCH {
        return Err(ApiError::BadRequest(format!(
            "q must be at most {MAX_SEARCH} characters"
        )));
    }
    crate::routes::paging::without_nul("q", &text)?;
    let wanted = match query.state.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<SagaState>().map_err(|_| {
            let known: Vec<&str> = SagaState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::BadRequest(format!("state must be one of {}", known.join(", ")))
        })?),
        None => None,
    };
    let stuck_only = matches!(query.stuck.as_deref(), Some("1" | "true" | "on"));
    let stuck_before = now - Duration::seconds(stuck_seconds as i64);

    let counts = read::sagas::counts(&state.reads).await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let in_flight: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let (stuck_rows, stuck_total) = read::sagas::stuck(&state.reads, stuck_before, STUCK_SHOWN).await?;
    let search = SagaSearch {
        text: Some(text.clone()).filter(|t| !t.is_empty()),
        state: wanted,
        stuck_before: stuck_only.then_some(stuck_before),
        ..SagaSearch::default()
    };
    let (rows, matching) = read::sagas::search(&state.reads, &search, request.page, request.size).await?;
    let throughput = throughput(state, now, minutes).await?;

    let keep = |page: u64| {
        let mut pairs = vec![
            ("q", text.clone()),
            ("state", wanted.map(|s| s.as_str().to_owned()).unwrap_or_default()),
            ("stuck", if stuck_only { "1".to_owned() } else { String::new() }),
            ("stuckSeconds", unless_default(stuck_seconds, default_stuck)),
            ("minutes", unless_default(minutes, DEFAULT_WINDOW_MINUTES)),
        ];
        pairs.extend(paging_pairs(page, request.size, refresh));
        link("/dashboard/sagas", &pairs)
    };
    let pager = Pager::new(request.page, request.size, matching, rows.len(), keep);
    let page = SagasPage {
        layout: Layout::new("Sagas", "sagas", refresh, now),
        counts: counts
            .iter()
            .map(|(s, n)| StateCount {
                state: s.as_str(),
                class: state_class(s.as_str()),
                count: format::count(*n),
                terminal: s.is_terminal(),
            })
            .collect(),
        total: format::count(total),
        in_flight: format::count(in_flight),
        stuck_total: format::count(stuck_total),
        stuck_seconds,
        stuck_after: format::span(stuck_seconds as i64),
        stuck: stuck_rows
            .into_iter()
            .map(|r| saga_row(r, now, stuck_before))
            .collect(),
        window_minutes: minutes,
        throughput,
        form: SearchForm {
            q: text,
            state: wanted.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            stuck: stuck_only,
            states: SagaState::ALL.iter().map(|s| s.as_str()).collect(),
        },
        rows: rows.into_iter().map(|r| saga_row(r, now, stuck_before)).collect(),
        pager,
    };
    Ok(render(state, "sagas.html", &page, StatusCode::OK))
}

/// Sagas ended per bucket and outcome, and completion latency (start to end) per bucket, over the
/// last `minutes`.
async fn throughput(state: &AppState, now: DateTime<Utc>, minutes: u64) -> Result<Throughput, ApiError> {
    let span = Duration::minutes(minutes as i64);
    let width = format::bucket_width(span, WINDOW_BUCKETS, Duration::minutes(1));
    let starts = format::buckets(now - span + width, now, width);
    let since = starts.first().copied().unwrap_or(now - span);
    let finished = read::sagas::finished_since(&state.reads, since, FINISHED_SAMPLE).await?;
    let outcomes = [
        ("COMPLETED", "completed"),
        ("FAILED", "failed"),
        ("COMPENSATED", "compensated"),
    ];
    let mut per_outcome: Vec<Vec<Option<f64>>> = vec![vec![Some(0.0); starts.len()]; outcomes.len()];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); starts.len()];
    let mut all: Vec<f64> = Vec::with_capacity(finished.len());
    for saga in &finished {
        let Some(i) = format::bucket_index(&starts, width, saga.completed_at) else {
            continue;
        };
        if let Some(k) = outcomes.iter().position(|(s, _)| *s == saga.state)
            && let Some(Some(n)) = per_outcome.get_mut(k).and_then(|series| series.get_mut(i))
        {
            *n += 1.0;
        }
        let ms = format::millis(saga.started_at, saga.completed_at);
        if let Some(bucket) = latencies.get_mut(i) {
            bucket.push(ms);
        }
        all.push(ms);
    }
    let labels: Vec<String> = starts.iter().map(|t| format::bucket_label(*t, width)).collect();
    let series: Vec<Series> = outcomes
        .iter()
        .zip(per_outcome)
        .map(|((name, class), values)| Series::new(name, class, values))
        .collect();
    let whole = |v: f64| format!("{v:.0}");
    let chart = svg::columns(svg::NARROW, "Sagas ended per bucket", &labels, &series, &whole);
    for bucket in &mut latencies {
        bucket.sort_by(f64::total_cmp);
    }
    let stat = |p: f64| -> Vec<Option<f64>> { latencies.iter().map(|b| format::percentile(b, p)).collect() };
    let latency_chart = svg::lines(
        svg::NARROW,
        "Completion latency",
        &labels,
        &[
            Series::new("p50", "p50", stat(50.0)),
            Series::new("p95", "p95", stat(95.0)),
            Series::new("max", "max", stat(100.0)),
        ],
        &format::duration_ms,
    );
    all.sort_by(f64::total_cmp);
    let shown = |v: Option<f64>| v.map(format::duration_ms).unwrap_or_else(|| "–".to_owned());
    let window_minutes = (width.num_minutes().max(1) as usize * starts.len()).max(1) as f64;
    Ok(Throughput {
        chart,
        latency_chart,
        ended: format::count(all.len() as u64),
        per_minute: format!("{:.1}", all.len() as f64 / window_minutes),
        p50: shown(format::percentile(&all, 50.0)),
        p95: shown(format::percentile(&all, 95.0)),
        max: shown(all.last().copied()),
        bucket: format::span(width.num_seconds()),
    })
}

#[derive(Debug, Deserialize)]
pub struct SagaPageQuery {
    pub refresh: Option<String>,
}

#[derive(Debug, Serialize)]
struct SagaSummary {
    order_id: String,
    state: String,
    class: String,
    terminal: bool,
    version: i64,
    started_at: String,
    updated_at: String,
    completed_at: Option<String>,
    deadline_at: Option<String>,
    duration: String,
    trace_id: String,
    reservation_id: Option<String>,
    payment_id: Option<String>,
    /// `SUCCEEDED`, `FAILED` or `REFUNDED`, once the gateway answered.
    payment_status: Option<String>,
    failure_reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct OrderSummary {
    status: String,
    total_amount: String,
    items: Vec<ReleasedItem>,
}

#[derive(Debug, Serialize)]
struct StepRow {
    seq: i32,
    at: String,
    at_iso: String,
    offset: String,
    gap: String,
    event_type: String,
    routing_key: Option<String>,
    event_id: Option<String>,
    trace_id: Option<String>,
    from_state: Option<String>,
    to_state: String,
    to_class: String,
    detail: Option<String>,
    /// How long the event waited between being committed and being applied.
    delivery: Option<String>,
    ignored: bool,
}

#[derive(Debug, Serialize)]
struct EventRow {
    event_type: String,
    routing_key: String,
    event_id: String,
    trace_id: Option<String>,
    created_at: String,
    published: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReleaseRow {
    release_id: String,
    reason: String,
    reason_class: String,
    items: Vec<ReleasedItem>,
    created_at: String,
    after_start: String,
}

#[derive(Debug, Serialize)]
struct DeadLetterRow {
    id: String,
    consumer: String,
    event_type: String,
    reason: String,
    attempts: i32,
    status: String,
    created_at: String,
}

#[derive(Debug, Serialize)]
struct SagaPage {
    layout: Layout,
    saga: SagaSummary,
    order: Option<OrderSummary>,
    story: Vec<String>,
    waterfall: String,
    steps: Vec<StepRow>,
    events: Vec<EventRow>,
    releases: Vec<ReleaseRow>,
    dead_letters: Vec<DeadLetterRow>,
    export_url: String,
    audit_url: String,
}

/// One saga's page; `400` for an id that is not a UUID, `404` for an unknown one.
pub async fn saga_page(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<SagaPageQuery>,
) -> HttpResponse {
    let outcome = saga_detail(&state, &path, query.into_inner()).await;
    respond(&state, "sagas", outcome)
}

/// The `trace_id` of an envelope stored as JSON.
fn trace_of(payload: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()?
        .get("trace_id")?
        .as_str()
        .map(str::to_owned)
}

async fn saga_detail(state: &AppState, raw_id: &str, query: SagaPageQuery) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let refresh = parse_refresh(&query.refresh)?;
    let order_id = parse_order_id(&Some(raw_id.to_owned()))?
        .ok_or_else(|| ApiError::BadRequest("orderId must be an order id (a UUID)".to_owned()))?;
    let (saga, history) = read::sagas::find(&state.reads, &order_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no saga for order {order_id}")))?;
    let order = read::orders::find(&state.reads, &order_id).await?;
    let events = read::events::of_order(&state.reads, &order_id).await?;
    let releases = read::releases::of_order(&state.reads, &order_id).await?;
    let dead = read::dead_letters::of_trace(&state.reads, &saga.trace_id).await?;
    let payment = read::payments::of_order(&state.reads, &order_id).await?;

    let start = saga.started_at;
    let by_event: HashMap<&str, &entities::outbox_events::Model> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut steps = Vec::with_capacity(history.len() + 1);
    let mut marks = Vec::with_capacity(history.len() + 1);
    let mut previous = start;
    for h in &history {
        let event = h.event_id.as_deref().and_then(|id| by_event.get(id));
        let ignored = h.from_state.as_deref() == Some(h.to_state.as_str())
            && h.detail.as_deref().is_some_and(|d| d.contains("ignored"));
        let at_ms = format::millis(start, h.at);
        marks.push(Step {
            name: h.event_type.clone(),
            class: state_class(&h.to_state),
            at_ms,
        });
        steps.push(StepRow {
            seq: h.seq,
            at: format::clock_ms(h.at),
            at_iso: format::iso(h.at),
            offset: format!("+{}", format::duration_ms(at_ms)),
            gap: format!("+{}", format::duration_ms(format::millis(previous, h.at))),
            event_type: h.event_type.clone(),
            routing_key: h.routing_key.clone(),
            event_id: h.event_id.clone(),
            trace_id: match (event, &h.event_id) {
                (Some(e), _) => trace_of(&e.payload),
                (None, Some(_)) => Some(saga.trace_id.clone()),
                (None, None) => None,
            },
            from_state: h.from_state.clone(),
            to_class: state_class(&h.to_state),
            to_state: h.to_state.clone(),
            detail: h.detail.clone(),
            delivery: event.map(|e| format::duration_ms(format::millis(e.created_at, h.at))),
            ignored,
        });
        previous = h.at;
    }
    let waterfall = svg::waterfall(
        svg::WIDE,
        "Time from order to each step",
        &marks,
        &format::duration_ms,
    );

    let mut story = Vec::new();
    story.push(format!("Order placed at {} UTC.", format::utc(start)));
    match (saga.state.as_str(), &saga.failure_reason) {
        ("COMPLETED", _) => {
            story.push("Stock was reserved and the payment succeeded: the order is confirmed.".to_owned())
        }
        (_, Some(reason)) => {
            let why = history
                .iter()
                .rev()
                .find(|h| {
                    h.event_type == "PaymentFailed"
                        || h.event_type == "InventoryFailed"
                        || h.event_type == "PaymentTimedOut"
                })
                .and_then(|h| h.detail.clone());
            story.push(match why {
                Some(why) if why != *reason => format!("It failed with {reason} ({why})."),
                _ => format!("It failed with {reason}."),
            });
        }
        (s, None) => story.push(format!("The saga is {s}.")),
    }
    for r in &releases {
        let units: i64 = released_items(&r.released_items).iter().map(|i| i.quantity).sum();
        story.push(format!(
            "{units} unit(s) of stock came back at {} UTC, {} after the order ({}).",
            format::utc(r.created_at),
            format::duration_ms(format::millis(start, r.created_at)),
            r.reason
        ));
    }
    if let Some(p) = &payment
        && saga.state != "COMPLETED"
    {
        match (p.status.parse::<PaymentStatus>(), p.refunded_at) {
            (Ok(PaymentStatus::Refunded), Some(at)) => story.push(format!(
                "Its payment of {} had succeeded after the order failed; it was refunded at {} UTC ({}).",
                p.amount,
                format::utc(at),
                p.refund_reason.as_deref().unwrap_or("no reason recorded")
            )),
            (Ok(PaymentStatus::Succeeded), _) => story.push(format!(
                "Its payment of {} succeeded after the order failed; the refund has been requested and not yet recorded.",
                p.amount
            )),
            _ => {}
        }
    }
    if saga.state == "COMPENSATING" && releases.is_empty() {
        story.push("The stock release has been requested and not yet recorded.".to_owned());
    }
    if !dead.is_empty() {
        story.push(format!(
            "{} message(s) of this order were dead-lettered.",
            dead.len()
        ));
    }

    let terminal = saga
        .state
        .parse::<SagaState>()
        .map(SagaState::is_terminal)
        .unwrap_or(false);
    let page = SagaPage {
        layout: Layout::new(
            format!("Saga {order_id}"),
            "sagas",
            if terminal { 0 } else { refresh },
            now,
        ),
        saga: SagaSummary {
            class: state_class(&saga.state),
            terminal,
            version: saga.version,
            started_at: format::utc(saga.started_at),
            updated_at: format::utc(saga.updated_at),
            completed_at: saga.completed_at.map(format::utc),
            deadline_at: saga.deadline_at.map(format::utc),
            duration: format::duration_ms(format::millis(saga.started_at, saga.completed_at.unwrap_or(now))),
            order_id: saga.order_id.clone(),
            state: saga.state.clone(),
            trace_id: saga.trace_id.clone(),
            reservation_id: saga.reservation_id.clone(),
            payment_id: saga.payment_id.clone(),
            payment_status: payment.as_ref().map(|p| p.status.clone()),
            failure_reason: saga.failure_reason.clone(),
        },
        order: order.map(|o| OrderSummary {
            status: o.order.status,
            total_amount: o.order.total_amount.to_string(),
            items: o
                .items
                .into_iter()
                .map(|i| ReleasedItem {
                    sku_id: i.sku_id,
                    quantity: i64::from(i.quantity),
                })
                .collect(),
        }),
        story,
        waterfall,
        steps,
        events: events
            .iter()
            .map(|e| EventRow {
                event_type: e.event_type.clone(),
                routing_key: e.routing_key.clone(),
                event_id: e.event_id.clone(),
                trace_id: trace_of(&e.payload),
                created_at: format::clock_ms(e.created_at),
                published: e.published_at.map(|p| {
                    format!(
                        "{} (+{})",
                        format::clock_ms(p),
                        format::duration_ms(format::millis(e.created_at, p))
                    )
                }),
            })
            .collect(),
        releases: releases
            .iter()
            .map(|r| ReleaseRow {
                release_id: r.id.clone(),
                reason_class: reason_class(&r.reason),
                reason: r.reason.clone(),
                items: released_items(&r.released_items),
                created_at: format::utc(r.created_at),
                after_start: format::duration_ms(format::millis(start, r.created_at)),
            })
            .collect(),
        dead_letters: dead
            .into_iter()
            .map(|d| DeadLetterRow {
                id: d.id,
                consumer: d.consumer,
                event_type: d.event_type,
                reason: d.reason,
                attempts: d.attempts,
                status: d.status,
                created_at: format::utc(d.created_at),
            })
            .collect(),
        export_url: link(
            "/api/stocks/release-events/export",
            // The operators' export: every column (by default the export has the seed system's).
            &[("orderId", order_id.clone()), ("columns", "all".to_owned())],
        ),
        audit_url: link("/dashboard", &[("orderId", order_id.clone())]),
    };
    Ok(render(state, "saga.html", &page, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_means_twice_the_payment_deadline_and_at_least_a_minute() {
        assert_eq!(default_stuck_seconds(30), 60);
        assert_eq!(default_stuck_seconds(5), 60);
        assert_eq!(default_stuck_seconds(120), 240);
    }

    #[test]
    fn trace_ids_come_from_the_envelope() {
        assert_eq!(
            trace_of(r#"{"trace_id":"t-1","data":{}}"#).as_deref(),
            Some("t-1")
        );
        assert_eq!(trace_of("not json"), None);
    }
}
