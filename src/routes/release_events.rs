//! The release audit: `GET /api/stocks/release-events` (offset pages), `…/cursor` (keyset pages) and
//! `…/export` (CSV, streamed). Read-only and without a token, like reading stock: a release event holds
//! ids, SKUs and quantities, nothing personal.
//!
//! Every parameter is read as text and checked here, so that a `400` names the parameter at fault.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use futures::Stream;
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::error::ApiError;
use crate::routes::paging::{MAX_PAGE_SIZE, Page, given, parse_number, parse_page, quoted};
use crate::state::AppState;
use actors::read::releases::{self, Position, ReleaseFilter};
use entities::inventory_release_events;

/// Rows in an export when `limit` is not given.
pub const DEFAULT_EXPORT_LIMIT: u64 = 1_000;
/// Most rows in one export.
pub const MAX_EXPORT_LIMIT: u64 = 10_000;
/// Rows read from the database per query while an export streams.
pub const EXPORT_CHUNK: u64 = 500;
/// Rows per keyset page when `limit` is not given.
pub const DEFAULT_CURSOR_LIMIT: u64 = 20;
/// The file name of the export.
pub const EXPORT_FILE_NAME: &str = "inventory-release-events.csv";
/// The columns of the export by default, in order: the seed system's export.
pub const SEED_CSV_HEADER: [&str; 5] = ["release_id", "order_id", "reservation_id", "reason", "created_at"];
/// The columns of the export with `columns=all`, in order: ordersaga's export, with the released
/// lines and the trace id.
pub const CSV_HEADER: [&str; 7] = [
    "releaseId",
    "orderId",
    "reservationId",
    "reason",
    "releasedItems",
    "traceId",
    "createdAt",
];

// Registered before `/stocks/{skuId}` so that `release-events` is never taken for a SKU.
crate::routes! {
    pub fn configure, pub const ROUTES;
    get "/stocks/release-events" => list;
    get "/stocks/release-events/cursor" => cursor_page;
    get "/stocks/release-events/export" => export;
}

/// The paths of this module, for the document.
#[derive(OpenApi)]
#[openapi(
    paths(list, cursor_page, export),
    components(schemas(ReleasedItem, ReleaseEventView, CursorPage))
)]
pub struct Doc;

/// The query string of the three routes, every value as text.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseQuery {
    pub order_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub page: Option<String>,
    pub size: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
    /// The seed system's name of `cursor` (keyset pages).
    pub after: Option<String>,
    /// `all`: the export's every column (by default, the seed system's columns).
    pub columns: Option<String>,
}

/// Which columns an export has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvColumns {
    /// The seed system's: [`SEED_CSV_HEADER`], lines ending in LF as it writes them.
    Seed,
    /// ordersaga's: [`CSV_HEADER`], RFC 4180 (lines ending in CRLF).
    All,
}

impl CsvColumns {
    /// `columns`: absent, empty or `seed` → [`CsvColumns::Seed`]; `all` → [`CsvColumns::All`].
    pub fn parse(value: &Option<String>) -> Result<Self, ApiError> {
        match given(value) {
            None => Ok(CsvColumns::Seed),
            Some(v) if v.eq_ignore_ascii_case("seed") => Ok(CsvColumns::Seed),
            Some(v) if v.eq_ignore_ascii_case("all") => Ok(CsvColumns::All),
            Some(v) => Err(ApiError::BadRequest(format!(
                "columns must be `all` or `seed`, not `{}`",
                quoted(v)
            ))),
        }
    }
}

/// A parameter with two names (ordersaga's `name` and the seed system's `alias`): the name given and
/// its value (`name` when neither is given); both given with different values is a `400`.
fn either<'a>(
    name: &'static str,
    value: &'a Option<String>,
    alias: &'static str,
    alias_value: &'a Option<String>,
) -> Result<(&'static str, &'a Option<String>), ApiError> {
    match (given(value), given(alias_value)) {
        (Some(a), Some(b)) if a != b => Err(ApiError::BadRequest(format!(
            "{name} and {alias} are two names of one parameter; give one of them"
        ))),
        (None, Some(_)) => Ok((alias, alias_value)),
        _ => Ok((name, value)),
    }
}

/// One released SKU line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedItem {
    pub sku_id: String,
    pub quantity: i64,
}

/// A release event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseEventView {
    pub release_id: String,
    pub order_id: String,
    pub reservation_id: String,
    pub reason: String,
    pub released_items: Vec<ReleasedItem>,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
}

/// The stored `released_items` text as lines (empty, with a warning, if it does not parse).
pub fn released_items(raw: &str) -> Vec<ReleasedItem> {
    serde_json::from_str(raw).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "unreadable released_items in the release audit");
        Vec::new()
    })
}

impl From<inventory_release_events::Model> for ReleaseEventView {
    fn from(m: inventory_release_events::Model) -> Self {
        ReleaseEventView {
            released_items: released_items(&m.released_items),
            release_id: m.id,
            order_id: m.order_id,
            reservation_id: m.reservation_id,
            reason: m.reason,
            trace_id: m.trace_id,
            created_at: m.created_at,
        }
    }
}

/// A value as given, or `None` when absent or blank (an empty form field).
/// `orderId`: an order id (a UUID), answered in its canonical lower-case form.
pub fn parse_order_id(value: &Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = given(value) else {
        return Ok(None);
    };
    actors::ids::OrderId::parse(value)
        .map(|id| Some(id.into_string()))
        .map_err(|e| ApiError::BadRequest(format!("orderId {e}")))
}

fn parse_instant_text(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return in_calendar(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return in_calendar(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| in_calendar(t.and_utc()))
}

/// An instant of the years 1–9999 in UTC, the ones every database compares with its rows and RFC 3339
/// writes; `None` for any other (`0000-01-01T00:00:00+01:00` is in the year -1, which cannot even be
/// sent to MariaDB).
fn in_calendar(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (1..=9999).contains(&t.year()).then_some(t)
}

/// `from` / `to`: an ISO-8601 date-time. With an offset (`2026-11-21T05:44:02Z`, `…+02:00`) it is
/// that instant; without one (`2026-11-21T05:44:02`, `2026-11-21T05:44`, what an HTML date-time field
/// sends) it is UTC; a date alone is midnight UTC at its start. An unencoded `+` of an offset arrives as
/// a space and is read as `+`.
pub fn parse_instant(name: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = given(value) else {
        return Ok(None);
    };
    let repaired = text
        .rfind(' ')
        .map(|i| format!("{}+{}", &text[..i], &text[i + 1..]));
    parse_instant_text(text)
        .or_else(|| repaired.as_deref().and_then(parse_instant_text))
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be an ISO-8601 date-time such as 2026-11-21T05:44:02Z, not `{}`",
                quoted(text)
            ))
        })
}

/// `orderId`, `from` and `to`, checked; `from` may not be after `to`.
pub fn parse_filter(
    order_id: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<ReleaseFilter, ApiError> {
    let filter = ReleaseFilter {
        order_id: parse_order_id(order_id)?,
        from: parse_instant("from", from)?,
        to: parse_instant("to", to)?,
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(ApiError::BadRequest("from must not be after to".to_owned()));
    }
    Ok(filter)
}

/// The cursor of a keyset page: base64url (no padding) of `v1|<createdAt>|<releaseId>`. Opaque to
/// clients; they pass back the `nextCursor` they got.
pub mod cursor {
    use super::*;

    const VERSION: &str = "v1";

    pub fn encode(position: &Position) -> String {
        let text = format!(
            "{VERSION}|{}|{}",
            position.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            position.id
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(cursor: &str) -> Option<Position> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '|');
        if parts.next()? != VERSION {
            return None;
        }
        let created_at = in_calendar(
            DateTime::parse_from_rfc3339(parts.next()?)
                .ok()?
                .with_timezone(&Utc),
        )?;
        let id = parts.next()?;
        if id.is_empty() || id.len() > 64 {
            return None;
        }
        Some(Position {
            created_at,
            id: id.to_owned(),
        })
    }
}

/// `GET /api/stocks/release-events`: a page of release events, newest first.
#[utoipa::path(get, path = "/api/stocks/release-events", tag = "release-audit",
    params(
        ("orderId" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "Only this order's releases (a UUID; empty: all)"),
        ("from" = Option<String>, Query, description = "ISO-8601 date-time or date, inclusive (no offset: UTC)"),
        ("to" = Option<String>, Query, description = "ISO-8601 date-time or date, inclusive"),
        ("page" = Option<u64>, Query, maximum = 10000000, description = "From 0 (default 0)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "1–100 (default 20)")),
    responses(
        (status = 200, description = "A page of release events, newest first", body = Page<ReleaseEventView>),
        (status = 400, description = "A bad parameter (the detail names it)")))]
async fn list(state: web::Data<AppState>, query: web::Query<ReleaseQuery>) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = parse_filter(&query.order_id, &query.from, &query.to)?;
    let request = parse_page(&query.page, &query.size)?;
    let (rows, total) = releases::page(&state.reads, &filter, request.page, request.size).await?;
    let items = rows.into_iter().map(ReleaseEventView::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, request, total)))
}

/// A keyset page. `limit` and `nextCursor` are ordersaga's; `size` (= `limit`) and `hasMore`
/// (= `nextCursor` is not null) the seed system's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CursorPage {
    pub items: Vec<ReleaseEventView>,
    /// Pass it as `cursor` (or `after`) to read the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub limit: u64,
    pub size: u64,
    pub has_more: bool,
}

/// `GET /api/stocks/release-events/cursor?limit=&cursor=` (or the seed system's `?size=&after=`): the
/// page after `cursor` (the first page without one). One more row than asked is read to learn whether
/// a next page exists.
#[utoipa::path(get, path = "/api/stocks/release-events/cursor", tag = "release-audit",
    params(
        ("orderId" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "Only this order's releases (a UUID; empty: all)"),
        ("from" = Option<String>, Query, description = "ISO-8601 date-time or date, inclusive (no offset: UTC)"),
        ("to" = Option<String>, Query, description = "ISO-8601 date-time or date, inclusive"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100, description = "Rows per page, 1–100 (default 20)"),
        ("size" = Option<u64>, Query, minimum = 1, maximum = 100, description = "The seed system's name of `limit`"),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page, unchanged"),
        ("after" = Option<String>, Query, description = "The seed system's name of `cursor`")),
    responses(
        (status = 200, description = "A keyset page, newest first", body = CursorPage),
        (status = 400, description = "A bad parameter (the detail names it)")))]
async fn cursor_page(
    state: web::Data<AppState>,
    query: web::Query<ReleaseQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = parse_filter(&query.order_id, &query.from, &query.to)?;
    let (limit_name, limit) = either("limit", &query.limit, "size", &query.size)?;
    let limit = parse_number(limit_name, limit, DEFAULT_CURSOR_LIMIT, 1, MAX_PAGE_SIZE)?;
    let (cursor_name, cursor) = either("cursor", &query.cursor, "after", &query.after)?;
    let after = match given(cursor) {
        Some(text) => Some(cursor::decode(text).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{cursor_name} is not valid: pass back the nextCursor of an earlier page unchanged"
            ))
        })?),
        None => None,
    };
    let mut rows = releases::releases_after(&state.reads, &filter, after.as_ref(), limit + 1).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| cursor::encode(&Position::from(row)))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(CursorPage {
        items: rows.into_iter().map(ReleaseEventView::from).collect(),
        has_more: next_cursor.is_some(),
        next_cursor,
        limit,
        size: limit,
    }))
}

/// The CSV lines of a header row and/or some release events: fields quoted when they need it, quotes
/// doubled; lines end in CRLF (RFC 4180) with every column, in LF with the seed system's columns (as
/// the seed system writes them).
pub fn csv_lines(
    columns: CsvColumns,
    header: bool,
    rows: &[inventory_release_events::Model],
) -> Result<Vec<u8>, ApiError> {
    let terminator = match columns {
        CsvColumns::Seed => csv::Terminator::Any(b'\n'),
        CsvColumns::All => csv::Terminator::CRLF,
    };
    let mut writer = csv::WriterBuilder::new()
        .terminator(terminator)
        .from_writer(Vec::with_capacity(256 * (rows.len() + 1)));
    let internal = |e: csv::Error| ApiError::Internal(anyhow::Error::new(e).context("writing CSV"));
    if header {
        match columns {
            CsvColumns::Seed => writer.write_record(SEED_CSV_HEADER),
            CsvColumns::All => writer.write_record(CSV_HEADER),
        }
        .map_err(internal)?;
    }
    for row in rows {
        let created_at = row.created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        // The seed's columns, with the released lines and the trace id before `created_at` for `all`.
        let items = match columns {
            CsvColumns::Seed => None,
            CsvColumns::All => Some(
                serde_json::to_string(&released_items(&row.released_items))
                    .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?,
            ),
        };
        let mut record = vec![
            row.id.as_str(),
            row.order_id.as_str(),
            row.reservation_id.as_str(),
            row.reason.as_str(),
        ];
        if let Some(items) = &items {
            record.extend([items.as_str(), row.trace_id.as_str()]);
        }
        record.push(created_at.as_str());
        writer.write_record(record).map_err(internal)?;
    }
    writer
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("writing CSV: {e}")))
}

/// Where a streaming export is.
struct ExportCursor {
    db: DatabaseConnection,
    filter: ReleaseFilter,
    columns: CsvColumns,
    /// Rows not yet read.
    remaining: u64,
    /// Rows read and not yet written.
    pending: Option<Vec<inventory_release_events::Model>>,
    after: Option<Position>,
}

/// The body of an export: the header with the first chunk, then one chunk of rows per query, each
/// query starting where the previous one ended (keyset), so memory stays at one chunk whatever the
/// limit. A database error mid-way aborts the response rather than ending it early as if complete.
fn export_stream(start: ExportCursor) -> impl Stream<Item = Result<Bytes, ApiError>> {
    futures::stream::unfold(Some((start, true)), |state| async move {
        let (mut at, header) = state?;
        let rows = match at.pending.take() {
            Some(rows) => rows,
            None if at.remaining == 0 => return None,
            None => {
                let chunk = at.remaining.min(EXPORT_CHUNK);
                match releases::releases_after(&at.db, &at.filter, at.after.as_ref(), chunk).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::error!(error = %e, "release export failed mid-way");
                        return Some((Err(ApiError::database(e)), None));
                    }
                }
            }
        };
        if rows.is_empty() && !header {
            return None;
        }
        let chunk_size = at.remaining.min(EXPORT_CHUNK);
        at.remaining = at.remaining.saturating_sub(rows.len() as u64);
        if (rows.len() as u64) < chunk_size {
            at.remaining = 0;
        }
        at.after = rows.last().map(Position::from).or(at.after);
        match csv_lines(at.columns, header, &rows) {
            Ok(bytes) => Some((Ok(Bytes::from(bytes)), Some((at, false)))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// `GET /api/stocks/release-events/export`: the matching release events as a CSV attachment, newest
/// first, at most `limit` rows; the seed system's columns, or every column with `columns=all`. The first chunk is read before answering, so an unreachable database
/// is a `503` rather than a broken download.
#[utoipa::path(get, path = "/api/stocks/release-events/export", tag = "release-audit",
    params(
        ("orderId" = Option<String>, Query, pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$", description = "Only this order's releases (a UUID; empty: all)"),
        ("from" = Option<String>, Query, description = "ISO-8601 date-time or date, inclusive (no offset: UTC)"),
        ("to" = Option<String>, Query, description = "ISO-8601 date-time or date, inclusive"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 10000, description = "Rows, 1–10000 (default 1000)"),
        ("columns" = Option<String>, Query, description = "`all`: every column; absent or `seed`: the seed system's five")),
    responses(
        (status = 200, description = "`inventory-release-events.csv` (attachment), streamed", content_type = "text/csv", body = String,
            headers(("Content-Disposition" = String))),
        (status = 400, description = "A bad parameter (the detail names it)")))]
async fn export(
    state: web::Data<AppState>,
    query: web::Query<ReleaseQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = parse_filter(&query.order_id, &query.from, &query.to)?;
    let limit = parse_number("limit", &query.limit, DEFAULT_EXPORT_LIMIT, 1, MAX_EXPORT_LIMIT)?;
    let columns = CsvColumns::parse(&query.columns)?;
    let first = releases::releases_after(&state.reads, &filter, None, limit.min(EXPORT_CHUNK)).await?;
    let body = export_stream(ExportCursor {
        db: state.reads.clone(),
        filter,
        columns,
        remaining: limit,
        pending: Some(first),
        after: None,
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{EXPORT_FILE_NAME}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn instants_in_the_accepted_forms() {
        let t = |s: &str| {
            parse_instant("from", &some(s))
                .ok()
                .flatten()
                .map(|t| t.to_rfc3339())
        };
        assert_eq!(
            t("2026-11-21T05:44:02Z").as_deref(),
            Some("2026-11-21T05:44:02+00:00")
        );
        assert_eq!(
            t("2026-11-21T07:44:02+02:00").as_deref(),
            Some("2026-11-21T05:44:02+00:00")
        );
        assert_eq!(
            t("2026-11-21T07:44:02 02:00").as_deref(),
            Some("2026-11-21T05:44:02+00:00")
        );
        assert_eq!(
            t("2026-11-21T05:44:02.5Z").as_deref(),
            Some("2026-11-21T05:44:02.500+00:00")
        );
        assert_eq!(
            t("2026-11-21T05:44:02").as_deref(),
            Some("2026-11-21T05:44:02+00:00")
        );
        assert_eq!(
            t("2026-11-21T05:44").as_deref(),
            Some("2026-11-21T05:44:00+00:00")
        );
        assert_eq!(
            t("2026-11-21 05:44:02").as_deref(),
            Some("2026-11-21T05:44:02+00:00")
        );
        assert_eq!(t("2026-11-21").as_deref(), Some("2026-11-21T00:00:00+00:00"));
        assert_eq!(parse_instant("from", &None).ok(), Some(None));
        assert_eq!(parse_instant("from", &some("  ")).ok(), Some(None));
    }

    #[test]
    fn bad_instants_name_the_parameter() {
        for bad in ["yesterday", "2026-13-01", "2026-11-21T25:00:00Z", "1700000000"] {
            match parse_instant("to", &some(bad)) {
                Err(ApiError::BadRequest(m)) => assert!(m.starts_with("to must be"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn from_after_to_is_refused() {
        let err = parse_filter(&None, &some("2026-11-22"), &some("2026-11-21")).err();
        assert!(matches!(err, Some(ApiError::BadRequest(m)) if m.contains("from") && m.contains("to")));
        assert!(parse_filter(&None, &some("2026-11-21"), &some("2026-11-21")).is_ok());
    }

    #[test]
    fn order_ids_are_uuids_in_canonical_form() {
        assert_eq!(
            parse_order_id(&some("0B0D1C9E-9F6A-4E0B-8C8D-3C6A1E2F4B5A"))
                .ok()
                .flatten()
                .as_deref(),
            Some("0b0d1c9e-9f6a-4e0b-8c8d-3c6a1e2f4b5a")
        );
        assert!(
            matches!(parse_order_id(&some("nope")), Err(ApiError::BadRequest(m)) if m.starts_with("orderId"))
        );
        assert_eq!(parse_order_id(&some("")).ok(), Some(None));
    }

    #[test]
    fn numbers_are_bounded_and_named() {
        assert_eq!(parse_number("limit", &None, 7, 1, 10).ok(), Some(7));
        assert_eq!(parse_number("limit", &some("10"), 7, 1, 10).ok(), Some(10));
        for bad in ["0", "11", "-1", "1.5", "x"] {
            assert!(
                matches!(parse_number("limit", &some(bad), 7, 1, 10), Err(ApiError::BadRequest(m)) if m.starts_with("limit"))
            );
        }
    }

    #[test]
    fn columns_are_the_seeds_unless_all_is_asked_for() {
        assert_eq!(CsvColumns::parse(&None).ok(), Some(CsvColumns::Seed));
        assert_eq!(CsvColumns::parse(&some("")).ok(), Some(CsvColumns::Seed));
        assert_eq!(CsvColumns::parse(&some("seed")).ok(), Some(CsvColumns::Seed));
        assert_eq!(CsvColumns::parse(&some("ALL")).ok(), Some(CsvColumns::All));
        assert!(
            matches!(CsvColumns::parse(&some("some")), Err(ApiError::BadRequest(m)) if m.starts_with("columns"))
        );
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let position = Position {
            created_at: DateTime::parse_from_rfc3339("2026-11-21T05:44:02.000123Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            id: "0b0d1c9e-9f6a-4e0b-8c8d-3c6a1e2f4b5a".to_owned(),
        };
        let text = cursor::encode(&position);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(cursor::decode(&text), Some(position));
        for bad in [
            "",
            "!!!",
            "djF8eHx5",
            &URL_SAFE_NO_PAD.encode("v2|2026-11-21T05:44:02Z|x"),
            &URL_SAFE_NO_PAD.encode("v1|2026-11-21T05:44:02Z|"),
        ] {
            assert_eq!(cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let row = inventory_release_events::Model {
            id: "r-1".to_owned(),
            order_id: "o-1".to_owned(),
            reservation_id: "res-1".to_owned(),
            reason: "PAYMENT_FAILED".to_owned(),
            released_items: r#"[{"skuId":"SKU-1","quantity":2}]"#.to_owned(),
            trace_id: "t-1".to_owned(),
            created_at: DateTime::parse_from_rfc3339("2026-11-21T05:44:02.5Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
        };
        let text = |columns| {
            String::from_utf8(csv_lines(columns, true, std::slice::from_ref(&row)).unwrap_or_default())
                .unwrap_or_default()
        };
        assert_eq!(
            text(CsvColumns::All),
            "releaseId,orderId,reservationId,reason,releasedItems,traceId,createdAt\r\n\
             r-1,o-1,res-1,PAYMENT_FAILED,\"[{\"\"skuId\"\":\"\"SKU-1\"\",\"\"quantity\"\":2}]\",t-1,2026-11-21T05:44:02.500Z\r\n"
        );
        assert_eq!(
            text(CsvColumns::Seed),
            "release_id,order_id,reservation_id,reason,created_at\n\
             r-1,o-1,res-1,PAYMENT_FAILED,2026-11-21T05:44:02.500Z\n"
        );
        let hard = inventory_release_events::Model {
            reason: "PAYMENT_FAILED,reason=\"hard\"".to_owned(),
            ..row
        };
        let seed = String::from_utf8(csv_lines(CsvColumns::Seed, false, &[hard]).unwrap_or_default())
            .unwrap_or_default();
        assert!(
            seed.contains(",\"PAYMENT_FAILED,reason=\"\"hard\"\"\","),
            "{seed}"
        );
    }
}
