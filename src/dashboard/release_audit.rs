//! `GET /dashboard`: the release audit — when stock came back, for which order and why.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};

use super::svg::{self, Series};
use super::{Layout, Pager, format, link, paging_pairs, parse_refresh, render, respond};
use crate::error::ApiError;
use crate::routes::paging::{DEFAULT_PAGE_SIZE, parse_page};
use crate::routes::release_events::{
    MAX_EXPORT_LIMIT, ReleasedItem, parse_filter, parse_instant, released_items,
};
use crate::state::AppState;
use actors::read::releases::{self, ReleaseFilter};

/// Most release events the charts look at (the newest that match the filters).
pub const CHART_SAMPLE: u64 = 10_000;
/// Most bars in the "releases over time" chart.
const TIME_BUCKETS: usize = 24;
/// Fewest bars in it when no `from` is given: the range then reaches back far enough to show the
/// releases against the quiet before them.
const MIN_TIME_BUCKETS: i32 = 12;
/// SKUs shown in the "units released per SKU" chart.
const TOP_SKUS: usize = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    pub order_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
    pub refresh: Option<String>,
}

/// The filter form as shown: what was asked for (normalised when it parsed).
#[derive(Debug, Default, Serialize)]
struct FilterForm {
    order_id: String,
    from: String,
    to: String,
    size: u64,
    active: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    release_id: String,
    order_id: String,
    reservation_id: String,
    reason: String,
    reason_class: String,
    items: Vec<ReleasedItem>,
    trace_id: String,
    created_at: String,
    created_iso: String,
    ago: String,
}

#[derive(Debug, Default, Serialize)]
struct Stats {
    releases: String,
    units: String,
    skus: String,
    latest: Option<String>,
    latest_ago: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Charts {
    over_time: String,
    by_reason: String,
    by_sku: String,
    bucket: String,
    sample_note: Option<String>,
}

#[derive(Debug, Serialize)]
struct AuditPage {
    layout: Layout,
    form: FilterForm,
    error: Option<String>,
    stats: Stats,
    charts: Charts,
    rows: Vec<Row>,
    pager: Option<Pager>,
    export_url: String,
    api_url: String,
}

/// The dashboard page; a bad filter shows the form with the problem (`400`).
pub async fn page(state: web::Data<AppState>, query: web::Query<AuditQuery>) -> HttpResponse {
    let query = query.into_inner();
    let refresh = match parse_refresh(&query.refresh) {
        Ok(r) => r,
        Err(e) => return super::error_page(&state, "audit", &e),
    };
    let parsed = parse_filter(&query.order_id, &query.from, &query.to)
        .and_then(|filter| Ok((filter, parse_page(&query.page, &query.size)?)));
    let (filter, request) = match parsed {
        Ok(parsed) => parsed,
        Err(ApiError::BadRequest(message)) => {
            let page = AuditPage {
                layout: Layout::new("Release audit", "audit", 0, Utc::now()),
                form: FilterForm {
                    order_id: query.order_id.unwrap_or_default(),
                    // A date-time field can only show a valid value.
                    from: shown_instant("from", &query.from),
                    to: shown_instant("to", &query.to),
                    size: DEFAULT_PAGE_SIZE,
                    active: true,
                },
                error: Some(message),
                stats: Stats::default(),
                charts: Charts::default(),
                rows: Vec::new(),
                pager: None,
                export_url: String::new(),
                api_url: String::new(),
            };
            return render(&state, "release_audit.html", &page, StatusCode::BAD_REQUEST);
        }
        Err(other) => return super::error_page(&state, "audit", &other),
    };
    let outcome = build(&state, filter, request, refresh).await;
    respond(&state, "audit", outcome)
}

fn filter_pairs(filter: &ReleaseFilter) -> Vec<(&'static str, String)> {
    vec![
        ("orderId", filter.order_id.clone().unwrap_or_default()),
        ("from", filter.from.map(format::iso).unwrap_or_default()),
        ("to", filter.to.map(format::iso).unwrap_or_default()),
    ]
}

async fn build(
    state: &AppState,
    filter: ReleaseFilter,
    request: crate::routes::paging::PageRequest,
    refresh: u64,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let (rows, total) = releases::page(&state.reads, &filter, request.page, request.size).await?;
    let by_reason = releases::counts_by_reason(&state.reads, &filter).await?;
    let samples = releases::samples(&state.reads, &filter, CHART_SAMPLE).await?;

    // Releases over time, from the oldest release shown (or `from`) to `to` (or now).
    let start = filter
        .from
        .or_else(|| samples.last().map(|s| s.created_at))
        .unwrap_or(now - Duration::hours(1));
    let end = filter.to.unwrap_or(now).max(start);
    let width = format::bucket_width(end - start, TIME_BUCKETS, Duration::seconds(1));
    let start = match filter.from {
        Some(from) => from,
        None => start.min(end - width * (MIN_TIME_BUCKETS - 1)),
    };
    let starts = format::buckets(start, end, width);
    let mut per_reason: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let mut units: BTreeMap<String, i64> = BTreeMap::new();
    let mut total_units: i64 = 0;
    for sample in &samples {
        if let Some(i) = format::bucket_index(&starts, width, sample.created_at) {
            let column = per_reason
                .entry(sample.reason.as_str())
                .or_insert_with(|| vec![Some(0.0); starts.len()]);
            if let Some(Some(n)) = column.get_mut(i) {
                *n += 1.0;
            }
        }
        for item in released_items(&sample.released_items) {
            total_units += item.quantity;
            *units.entry(item.sku_id).or_default() += item.quantity;
        }
    }
    let labels: Vec<String> = starts.iter().map(|t| format::bucket_label(*t, width)).collect();
    let series: Vec<Series> = per_reason
        .into_iter()
        .map(|(reason, values)| Series::new(reason, &reason_class(reason), values))
        .collect();
    let whole = |v: f64| format!("{v:.0}");
    let over_time = svg::columns(svg::WIDE, "Releases over time", &labels, &series, &whole);
    let reason_rows: Vec<(String, f64)> = by_reason.iter().map(|(r, n)| (r.clone(), *n as f64)).collect();
    let by_reason_svg = svg::bars(svg::NARROW, "Releases by reason", &reason_rows, "reason", &whole);
    let mut sku_rows: Vec<(String, f64)> = units.iter().map(|(s, n)| (s.clone(), *n as f64)).collect();
    sku_rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let sku_count = sku_rows.len();
    sku_rows.truncate(TOP_SKUS);
    let by_sku = svg::bars(svg::NARROW, "Units released per SKU", &sku_rows, "sku", &whole);

    let latest = samples.first().map(|s| s.created_at);
    let pairs = filter_pairs(&filter);
    let size = request.size;
    let page_url = |page: u64| {
        let mut p = pairs.clone();
        p.extend(paging_pairs(page, size, refresh));
        link("/dashboard", &p)
    };
    let pager = Pager::new(request.page, size, total, rows.len(), page_url);
    let mut export = pairs.clone();
    export.push(("limit", MAX_EXPORT_LIMIT.to_string()));
    // The operators' export: every column (by default the export has the seed system's).
    export.push(("columns", "all".to_owned()));
    let page = AuditPage {
        layout: Layout::new("Release audit", "audit", refresh, now),
        form: FilterForm {
            order_id: filter.order_id.clone().unwrap_or_default(),
            from: filter.from.map(format::input_value).unwrap_or_default(),
            to: filter.to.map(format::input_value).unwrap_or_default(),
            size,
            active: filter != ReleaseFilter::default(),
        },
        error: None,
        stats: Stats {
            releases: format::count(total),
            units: format::count(total_units.max(0) as u64),
            skus: format::count(sku_count as u64),
            latest: latest.map(format::utc),
            latest_ago: latest.map(|t| format::ago(t, now)),
        },
        charts: Charts {
            over_time,
            by_reason: by_reason_svg,
            by_sku,
            bucket: format::span(width.num_seconds()),
            sample_note: (total > CHART_SAMPLE).then(|| {
                format!(
                    "Time and SKU charts show the newest {} of {} matching releases.",
                    format::count(CHART_SAMPLE),
                    format::count(total)
                )
            }),
        },
        rows: rows
            .into_iter()
            .map(|r| Row {
                items: released_items(&r.released_items),
                created_at: format::utc(r.created_at),
                created_iso: format::iso(r.created_at),
                ago: format::ago(r.created_at, now),
                reason_class: reason_class(&r.reason),
                release_id: r.id,
                order_id: r.order_id,
                reservation_id: r.reservation_id,
                reason: r.reason,
                trace_id: r.trace_id,
            })
            .collect(),
        pager: Some(pager),
        export_url: link("/api/stocks/release-events/export", &export),
        api_url: link("/api/stocks/release-events", &pairs),
    };
    Ok(render(state, "release_audit.html", &page, StatusCode::OK))
}

fn shown_instant(name: &str, value: &Option<String>) -> String {
    parse_instant(name, value)
        .ok()
        .flatten()
        .map(format::input_value)
        .unwrap_or_default()
}

/// The CSS class of a release reason.
pub fn reason_class(reason: &str) -> String {
    match reason {
        "PAYMENT_FAILED" => "r-payment-failed".to_owned(),
        "PAYMENT_TIMEOUT" => "r-payment-timeout".to_owned(),
        _ => "r-other".to_owned(),
    }
}
