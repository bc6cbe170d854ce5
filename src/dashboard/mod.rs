//! The dashboards: server-rendered HTML pages (tera) for operators, readable without a token.
//!
//! - `/dashboard` (also `/dashboard/release-audit`, the seed system's path) — the release audit:
//!   filters, a paged table, charts and the CSV export.
//! - `/dashboard/sagas` — sagas per state, throughput and latency, a searchable list, stuck sagas.
//! - `/dashboard/sagas/{orderId}` — one saga's timeline.
//! - `/dashboard/dead-letters` — what is dead-lettered and why.
//!
//! The templates are compiled into the binary and parsed once at start ([`templates`]); the charts are
//! inline SVG drawn here ([`svg`]); a small script served by the binary refreshes the parts of a page
//! marked `data-live` every few seconds without reloading it. The pages show ids, states, reasons, SKUs
//! and times — no user data, no payloads, no secrets.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tera::Tera;

use crate::error::ApiError;
use crate::routes::paging::DEFAULT_PAGE_SIZE;
use crate::routes::paging::parse_number;
use crate::state::AppState;

pub mod dead_letters;
pub mod format;
pub mod release_audit;
pub mod sagas;
pub mod svg;

/// Refresh interval of the live parts of a page when the query does not say (`refresh=0` turns it off).
pub const DEFAULT_REFRESH_SECONDS: u64 = 5;
/// Longest refresh interval accepted.
pub const MAX_REFRESH_SECONDS: u64 = 300;

const CSS: &str = include_str!("../../templates/static/dashboard.css");
const JS: &str = include_str!("../../templates/static/dashboard.js");
const ICON: &str = include_str!("../../templates/static/icon.svg");

/// Every page says where its content may come from: only this server, no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Parses the dashboard templates (compiled into the binary, so it runs from any directory).
/// Autoescaping is on for every template: data reaches the HTML escaped unless a template marks an
/// SVG chart drawn by [`svg`] as `safe`.
pub fn templates() -> Result<Tera, tera::Error> {
    let mut tera = Tera::default();
    tera.add_raw_templates(vec![
        ("base.html", include_str!("../../templates/base.html")),
        ("macros.html", include_str!("../../templates/macros.html")),
        (
            "release_audit.html",
            include_str!("../../templates/release_audit.html"),
        ),
        ("sagas.html", include_str!("../../templates/sagas.html")),
        ("saga.html", include_str!("../../templates/saga.html")),
        (
            "dead_letters.html",
            include_str!("../../templates/dead_letters.html"),
        ),
        ("error.html", include_str!("../../templates/error.html")),
    ])?;
    tera.autoescape_on(vec![".html"]);
    // `& < > " '` are what HTML text and quoted attributes need escaped; tera's default also writes
    // `/` as `&#x2F;`, which only makes links unreadable in the page source.
    tera.set_escape_fn(svg::escape);
    Ok(tera)
}

/// Where the pages are.
pub const PREFIX: &str = "/dashboard";

/// Registers the pages and their assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope(PREFIX)
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "same-origin"))
                    .add((header::X_FRAME_OPTIONS, "DENY")),
            )
            // A query string the pages' reader refuses (a repeated parameter) is an error page too,
            // like the pages' own checks, not the API's problem document.
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .configure(pages)
            .default_service(web::to(not_found)),
    );
}

/// `400` as a page for a query string that does not read into the page's parameters.
fn query_error(err: actix_web::error::QueryPayloadError, req: &actix_web::HttpRequest) -> actix_web::Error {
    let refusal = ApiError::BadRequest(format!("bad query parameter: {err}"));
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return refusal.into();
    };
    let path = req.path();
    let nav = if path.starts_with("/dashboard/sagas") {
        "sagas"
    } else if path.starts_with("/dashboard/dead-letters") {
        "dead-letters"
    } else {
        "audit"
    };
    actix_web::error::InternalError::from_response(err, error_page(state, nav, &refusal)).into()
}

crate::routes! {
    fn pages, pub const ROUTES;
    get "" => audit_page;
    get "/" => audit_page_slash;
    // The seed system's path of the same page.
    get "/release-audit" => audit_page_seed;
    get "/sagas" => sagas_page;
    get "/sagas/{orderId}" => saga_page;
    get "/dead-letters" => dead_letters_page;
    get "/assets/dashboard.css" => css;
    get "/assets/dashboard.js" => js;
    get "/assets/icon.svg" => icon;
}

/// The paths of the pages, for the document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    audit_page,
    audit_page_slash,
    audit_page_seed,
    sagas_page,
    saga_page,
    dead_letters_page,
    css,
    js,
    icon
))]
pub struct Doc;

/// The release audit page.
#[utoipa::path(get, path = "/dashboard", tag = "dashboards",
    params(
        ("orderId" = Option<String>, Query, description = "Only this order's releases"),
        ("from" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("to" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("page" = Option<u64>, Query, maximum = 10000000), ("size" = Option<u64>, Query, minimum = 1, maximum = 100),
        ("refresh" = Option<u64>, Query, maximum = 300, description = "Seconds between live refreshes, 0 = off (default 5, at most 300)")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter, as a page", content_type = "text/html", body = String)))]
async fn audit_page(
    state: web::Data<AppState>,
    query: web::Query<release_audit::AuditQuery>,
) -> HttpResponse {
    release_audit::page(state, query).await
}

/// The release audit page (as `/dashboard`).
#[utoipa::path(get, path = "/dashboard/", tag = "dashboards",
    params(
        ("orderId" = Option<String>, Query, description = "Only this order's releases"),
        ("from" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("to" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("page" = Option<u64>, Query, maximum = 10000000), ("size" = Option<u64>, Query, minimum = 1, maximum = 100),
        ("refresh" = Option<u64>, Query, maximum = 300, description = "Seconds between live refreshes, 0 = off (default 5, at most 300)")),
    responses(
        (status = 200, description = "As `/dashboard`", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter, as a page", content_type = "text/html", body = String)))]
async fn audit_page_slash(
    state: web::Data<AppState>,
    query: web::Query<release_audit::AuditQuery>,
) -> HttpResponse {
    release_audit::page(state, query).await
}

/// The release audit page at the seed system's path (as `/dashboard`).
#[utoipa::path(get, path = "/dashboard/release-audit", tag = "dashboards",
    params(
        ("orderId" = Option<String>, Query, description = "Only this order's releases"),
        ("from" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("to" = Option<String>, Query, description = "ISO-8601, inclusive"),
        ("page" = Option<u64>, Query, maximum = 10000000), ("size" = Option<u64>, Query, minimum = 1, maximum = 100),
        ("refresh" = Option<u64>, Query, maximum = 300, description = "Seconds between live refreshes, 0 = off (default 5, at most 300)")),
    responses(
        (status = 200, description = "As `/dashboard`", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter, as a page", content_type = "text/html", body = String)))]
async fn audit_page_seed(
    state: web::Data<AppState>,
    query: web::Query<release_audit::AuditQuery>,
) -> HttpResponse {
    release_audit::page(state, query).await
}

/// Sagas per state, throughput and latency, stuck sagas, a searchable list.
#[utoipa::path(get, path = "/dashboard/sagas", tag = "dashboards",
    params(
        ("q" = Option<String>, Query, description = "A part of an order id or trace id, or a failure reason"),
        ("state" = Option<String>, Query), ("stuck" = Option<String>, Query, description = "`1`: only stuck sagas"),
        ("stuckSeconds" = Option<u64>, Query, minimum = 1, maximum = 604800), ("minutes" = Option<u64>, Query, minimum = 5, maximum = 1440, description = "Chart window, 5–1440"),
        ("page" = Option<u64>, Query, maximum = 10000000), ("size" = Option<u64>, Query, minimum = 1, maximum = 100), ("refresh" = Option<u64>, Query, maximum = 300)),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter, as a page", content_type = "text/html", body = String)))]
async fn sagas_page(state: web::Data<AppState>, query: web::Query<sagas::SagasQuery>) -> HttpResponse {
    sagas::list_page(state, query).await
}

/// One saga's story.
#[utoipa::path(get, path = "/dashboard/sagas/{orderId}", tag = "dashboards",
    params(("orderId" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "The order id (a UUID)"), ("refresh" = Option<u64>, Query, maximum = 300)),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "Not a UUID, as a page", content_type = "text/html", body = String),
        (status = 404, description = "Unknown saga, as a page", content_type = "text/html", body = String)))]
async fn saga_page(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<sagas::SagaPageQuery>,
) -> HttpResponse {
    sagas::saga_page(state, path, query).await
}

/// What the consumers gave up on.
#[utoipa::path(get, path = "/dashboard/dead-letters", tag = "dashboards",
    params(
        ("status" = Option<String>, Query, description = "`DEAD`, `REPLAYED` or `DISCARDED`"),
        ("consumer" = Option<String>, Query), ("page" = Option<u64>, Query, maximum = 10000000), ("size" = Option<u64>, Query, minimum = 1, maximum = 100),
        ("refresh" = Option<u64>, Query, maximum = 300)),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter, as a page", content_type = "text/html", body = String)))]
async fn dead_letters_page(
    state: web::Data<AppState>,
    query: web::Query<dead_letters::DeadLetterQuery>,
) -> HttpResponse {
    dead_letters::page(state, query).await
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body)
}

/// `405` as a page (with `Allow`) for a page asked with another method than `GET`, `404` as a page for
/// any other path under `/dashboard`.
async fn not_found(state: web::Data<AppState>, req: actix_web::HttpRequest) -> HttpResponse {
    match crate::routes::no_route(&req) {
        ApiError::MethodNotAllowed(detail, allow) => {
            let mut page = error_page(
                &state,
                "audit",
                &ApiError::MethodNotAllowed(detail, allow.clone()),
            );
            if let Ok(value) = HeaderValue::from_str(&allow) {
                page.headers_mut().insert(header::ALLOW, value);
            }
            page
        }
        _ => {
            let err = ApiError::NotFound(format!("there is no dashboard at {}", req.path()));
            error_page(&state, "audit", &err)
        }
    }
}

/// The pages' stylesheet.
#[utoipa::path(get, path = "/dashboard/assets/dashboard.css", tag = "dashboards",
    responses((status = 200, description = "The stylesheet", content_type = "text/css", body = String)))]
async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", CSS)
}

/// The pages' script (live refresh).
#[utoipa::path(get, path = "/dashboard/assets/dashboard.js", tag = "dashboards",
    responses((status = 200, description = "The script", content_type = "text/javascript", body = String)))]
async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", JS)
}

/// The pages' icon.
#[utoipa::path(get, path = "/dashboard/assets/icon.svg", tag = "dashboards",
    responses((status = 200, description = "The icon", content_type = "image/svg+xml", body = String)))]
async fn icon() -> HttpResponse {
    asset("image/svg+xml", ICON)
}

/// What every page's layout needs.
#[derive(Debug, Serialize)]
pub struct Layout {
    pub title: String,
    /// Which nav entry is current: `audit`, `sagas` or `dead-letters`.
    pub nav: &'static str,
    /// Milliseconds between live refreshes; 0 = off.
    pub refresh_ms: u64,
    pub generated_at: String,
    pub generated_iso: String,
}

impl Layout {
    pub fn new(
        title: impl Into<String>,
        nav: &'static str,
        refresh_seconds: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Layout {
            title: title.into(),
            nav,
            refresh_ms: refresh_seconds * 1_000,
            generated_at: now.format("%H:%M:%S UTC").to_string(),
            generated_iso: format::iso(now),
        }
    }
}

/// Renders `template` with `context` as an HTML answer with `status`.
pub fn render(
    state: &AppState,
    template: &str,
    context: &impl Serialize,
    status: StatusCode,
) -> HttpResponse {
    let html = tera::Context::from_serialize(context).and_then(|ctx| state.templates.render(template, &ctx));
    match html {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .body(html),
        Err(e) => {
            tracing::error!(
                template,
                error = format!("{e:?}"),
                "cannot render a dashboard page"
            );
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("the page could not be rendered; the error has been logged")
        }
    }
}

#[derive(Debug, Serialize)]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: String,
    detail: String,
}

/// An error as an HTML page with the status of the error (the problem document's title and detail).
pub fn error_page(state: &AppState, nav: &'static str, err: &ApiError) -> HttpResponse {
    use actix_web::ResponseError;
    if let ApiError::Internal(e) = err {
        tracing::error!(error = format!("{e:#}"), "dashboard request failed");
    }
    let problem = err.problem();
    let page = ErrorPage {
        layout: Layout::new(problem.title.clone(), nav, 0, Utc::now()),
        status: problem.status,
        title: problem.title,
        detail: problem.detail,
    };
    render(state, "error.html", &page, err.status_code())
}

/// Turns a page's outcome into the answer: the page, or the error page.
pub fn respond(state: &AppState, nav: &'static str, outcome: Result<HttpResponse, ApiError>) -> HttpResponse {
    outcome.unwrap_or_else(|err| error_page(state, nav, &err))
}

/// A query string of the non-empty pairs, for links that keep the page's filters.
pub fn query_string(pairs: &[(&str, String)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// The `refresh` parameter of a dashboard page: seconds between live updates, 0 for none.
pub fn parse_refresh(raw: &Option<String>) -> Result<u64, ApiError> {
    parse_number("refresh", raw, DEFAULT_REFRESH_SECONDS, 0, MAX_REFRESH_SECONDS)
}

/// A link parameter's value, or empty (so [`link`] leaves it out) when it is the default.
pub fn unless_default<T: PartialEq + ToString>(value: T, default: T) -> String {
    if value == default {
        String::new()
    } else {
        value.to_string()
    }
}

/// The paging and refresh parameters every dashboard's links carry, each left out at its default.
pub fn paging_pairs(page: u64, size: u64, refresh: u64) -> [(&'static str, String); 3] {
    [
        ("page", unless_default(page, 0)),
        ("size", unless_default(size, DEFAULT_PAGE_SIZE)),
        ("refresh", unless_default(refresh, DEFAULT_REFRESH_SECONDS)),
    ]
}

/// `path?query`, or `path` when the query is empty.
pub fn link(path: &str, pairs: &[(&str, String)]) -> String {
    let query = query_string(pairs);
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Where a paged table is, and the links around it.
#[derive(Debug, Serialize)]
pub struct Pager {
    pub page: u64,
    pub total_pages: u64,
    pub total: String,
    /// 1-based number of the first and last row shown (0 and 0 when none).
    pub first_row: u64,
    pub last_row: u64,
    pub first_url: Option<String>,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
    pub last_url: Option<String>,
}

impl Pager {
    /// The pager of `page` (0-based) of `size` rows out of `total`, with links built by `url(page)`.
    pub fn new(page: u64, size: u64, total: u64, shown: usize, url: impl Fn(u64) -> String) -> Self {
        let total_pages = total.div_ceil(size.max(1));
        let first_row = if shown == 0 { 0 } else { page * size + 1 };
        let last_row = if shown == 0 { 0 } else { page * size + shown as u64 };
        Pager {
            page,
            total_pages,
            total: format::count(total),
            first_row,
            last_row,
            first_url: (page > 0).then(|| url(0)),
            prev_url: (page > 0).then(|| url(page.min(total_pages).saturating_sub(1))),
            next_url: (page + 1 < total_pages).then(|| url(page + 1)),
            last_url: (page + 1 < total_pages).then(|| url(total_pages - 1)),
        }
    }
}

/// The CSS class of a saga state: `s-awaiting-payment`, `s-completed`, …
pub fn state_class(state: &str) -> String {
    format!("s-{}", state.to_ascii_lowercase().replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse() {
        assert!(templates().is_ok(), "{:?}", templates().err());
    }

    #[test]
    fn paging_parameters_are_left_out_at_their_defaults() {
        let defaults = paging_pairs(0, DEFAULT_PAGE_SIZE, DEFAULT_REFRESH_SECONDS);
        assert_eq!(link("/dashboard", &defaults), "/dashboard");
        assert_eq!(
            link("/dashboard", &paging_pairs(2, 50, 0)),
            "/dashboard?page=2&size=50&refresh=0"
        );
    }

    #[test]
    fn links_keep_non_empty_filters_encoded() {
        let url = link(
            "/dashboard",
            &[
                ("orderId", String::new()),
                ("from", "2026-11-21T05:44:02+02:00".to_owned()),
                ("page", "2".to_owned()),
            ],
        );
        assert_eq!(url, "/dashboard?from=2026-11-21T05%3A44%3A02%2B02%3A00&page=2");
        assert_eq!(link("/dashboard", &[]), "/dashboard");
    }

    #[test]
    fn pager_edges() {
        let url = |p: u64| format!("?page={p}");
        let empty = Pager::new(0, 20, 0, 0, url);
        assert_eq!((empty.total_pages, empty.first_row, empty.last_row), (0, 0, 0));
        assert!(empty.prev_url.is_none() && empty.next_url.is_none());
        let middle = Pager::new(1, 20, 45, 20, url);
        assert_eq!((middle.first_row, middle.last_row), (21, 40));
        assert_eq!(middle.prev_url.as_deref(), Some("?page=0"));
        assert_eq!(middle.next_url.as_deref(), Some("?page=2"));
        let last = Pager::new(2, 20, 45, 5, url);
        assert_eq!((last.first_row, last.last_row), (41, 45));
        assert!(last.next_url.is_none() && last.last_url.is_none());
        let beyond = Pager::new(9, 20, 45, 0, url);
        assert_eq!(beyond.prev_url.as_deref(), Some("?page=2"));
    }

    #[test]
    fn state_classes() {
        assert_eq!(state_class("AWAITING_PAYMENT"), "s-awaiting-payment");
    }
}
