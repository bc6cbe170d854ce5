//! The release audit: `GET /api/stocks/release-events` (offset pages), `…/cursor` (keyset pages) and
//! `…/export` (CSV), with their filters, validation and paging edges.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::fixtures::{ids, insert_releases, newest_first, release_row, seed_releases};
use crate::helpers::{TestApp, assert_problem, line, spawn_app, spawn_app_with};
use crate::on_every_backend;
use ordersaga::config::PaymentMode;

const LIST: &str = "/api/stocks/release-events";
const CURSOR: &str = "/api/stocks/release-events/cursor";
const EXPORT: &str = "/api/stocks/release-events/export";
/// The export's header by default: the seed system's columns.
const SEED_CSV_HEADER: &str = "release_id,order_id,reservation_id,reason,created_at";
/// The export's header with `columns=all`.
const CSV_HEADER: &str = "releaseId,orderId,reservationId,reason,releasedItems,traceId,createdAt";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

async fn json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path, None).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// Every id of a keyset walk with `limit`, checking each page's size and that only the last page has
/// no `nextCursor`.
async fn walk(app: &TestApp, query: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{CURSOR}?limit={limit}&cursor={c}{query}"),
            None => format!("{CURSOR}?limit={limit}{query}"),
        };
        let page = json(app, &path).await;
        assert_eq!(page["limit"], limit as u64);
        assert_eq!(page["size"], limit as u64, "the seed's name of limit");
        assert_eq!(
            page["hasMore"],
            page["nextCursor"].is_string(),
            "hasMore says whether a next page exists: {page}"
        );
        let items = ids(&page, "releaseId");
        all.extend(items.iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(items.len(), limit, "a page before the last one is full: {page}");
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(items.len() <= limit);
                return all;
            }
        }
        assert!(all.len() <= 10_000, "the walk does not end");
    }
}

/// The CSV body as records, the header first.
fn csv_records(body: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

async fn export(app: &TestApp, query: &str) -> (reqwest::header::HeaderMap, String) {
    let response = app.get(&format!("{EXPORT}{query}"), None).await;
    assert_eq!(response.status(), 200, "export {query}");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

on_every_backend! {
    async fn failed_orders_are_in_the_release_audit_with_the_stock_they_gave_back(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        app.set_stock("SKU-A", 10).await;
        app.set_stock("SKU-B", 5).await;
        let mut orders = Vec::new();
        for lines in [
            vec![line("SKU-A", 2, "19.90")],
            vec![line("SKU-B", 2, "5.00"), line("SKU-A", 1, "19.90")],
            vec![line("SKU-B", 1, "5.00")],
        ] {
            let placed = app.order("u-1", lines).await;
            let ended = app.ended(placed["orderId"].as_str().unwrap()).await;
            assert_eq!(ended["status"], "FAILED", "{ended}");
            orders.push(ended);
        }

        let page = json(&app, LIST).await;
        assert_eq!(page["totalElements"], 3);
        assert_eq!(page["totalPages"], 1);
        assert_eq!(page["hasNext"], false);
        let items = page["items"].as_array().unwrap();
        let newest = orders.last().unwrap();
        assert_eq!(items[0]["orderId"], newest["orderId"], "newest first");
        let created: Vec<&str> = items.iter().map(|i| i["createdAt"].as_str().unwrap()).collect();
        let parsed: Vec<DateTime<Utc>> = created.iter().map(|t| at(t)).collect();
        assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");
        for order in &orders {
            let item = items.iter().find(|i| i["orderId"] == order["orderId"]).expect("each failed order has a release");
            assert_eq!(item["reason"], "PAYMENT_FAILED");
            assert_eq!(item["traceId"], order["traceId"], "the release keeps the order's trace id");
            assert!(!item["releaseId"].as_str().unwrap().is_empty());
            assert!(!item["reservationId"].as_str().unwrap().is_empty());
        }
        let mixed = &orders[1];
        let only: Value = json(&app, &format!("{LIST}?orderId={}", mixed["orderId"].as_str().unwrap())).await;
        assert_eq!(only["totalElements"], 1);
        let released = &only["items"][0]["releasedItems"];
        assert_eq!(released, &serde_json::json!([{"skuId": "SKU-A", "quantity": 1}, {"skuId": "SKU-B", "quantity": 2}]));

        let versioned = json(&app, "/api/v1/stocks/release-events").await;
        assert_eq!(versioned, page, "the /api/v1 alias answers the same");
        for sku in ["SKU-A", "SKU-B"] {
            let stock = json(&app, &format!("/api/stocks/{sku}")).await;
            assert_eq!(stock["reservedQty"], 0, "{stock}");
        }
        assert_eq!(json(&app, "/api/stocks/SKU-A").await["availableQty"], 10);
        assert_eq!(json(&app, "/api/stocks/SKU-B").await["availableQty"], 5);

        let (_, body) = export(&app, &format!("?orderId={}", mixed["orderId"].as_str().unwrap())).await;
        let records = csv_records(&body);
        assert_eq!(records.len(), 2, "{body}");
        assert_eq!(records[1][1], mixed["orderId"].as_str().unwrap());
        assert_eq!(records[1][0], only["items"][0]["releaseId"].as_str().unwrap());
        assert_eq!(records[1][4], only["items"][0]["createdAt"].as_str().unwrap());
        assert_eq!(records[1][3], "PAYMENT_FAILED");
    }

    async fn an_empty_audit_answers_empty_pages(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let page = json(&app, LIST).await;
        assert_eq!(page, serde_json::json!({"items": [], "page": 0, "size": 20, "totalElements": 0, "totalPages": 0, "hasNext": false}));
        let beyond = json(&app, &format!("{LIST}?page=3&size=5")).await;
        assert_eq!(beyond["items"], serde_json::json!([]));
        assert_eq!(beyond["hasNext"], false);
        let keyset = json(&app, CURSOR).await;
        assert_eq!(keyset, serde_json::json!({"items": [], "nextCursor": null, "limit": 20, "size": 20, "hasMore": false}));
        let (headers, body) = export(&app, "").await;
        assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
        assert_eq!(body, format!("{SEED_CSV_HEADER}\n"));
        let (_, body) = export(&app, "?columns=all").await;
        assert_eq!(body, format!("{CSV_HEADER}\r\n"));
    }

    async fn offset_pages_are_newest_first_and_add_up_to_every_event_once(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let expected: Vec<String> = seed_releases(&app, 45, at("2026-03-01T12:00:00.250000Z")).await
            .into_iter().map(|r| r.id).collect();

        let mut seen = Vec::new();
        for (page, (len, has_next)) in [(20, true), (20, true), (5, false)].into_iter().enumerate() {
            let body = json(&app, &format!("{LIST}?page={page}&size=20")).await;
            assert_eq!((body["page"].as_u64(), body["size"].as_u64()), (Some(page as u64), Some(20)));
            assert_eq!(body["totalElements"], 45);
            assert_eq!(body["totalPages"], 3);
            assert_eq!(body["hasNext"], has_next, "page {page}");
            let items = ids(&body, "releaseId");
            assert_eq!(items.len(), len, "page {page}");
            seen.extend(items);
        }
        assert_eq!(seen, expected, "pages in order, newest first, ties broken by id, each event once");

        let beyond = json(&app, &format!("{LIST}?page=3&size=20")).await;
        assert_eq!(beyond["items"], serde_json::json!([]));
        assert_eq!((beyond["totalElements"].as_u64(), beyond["totalPages"].as_u64(), beyond["hasNext"].as_bool()), (Some(45), Some(3), Some(false)));

        // An exact multiple of the page size: the last page is full and has no next.
        for (page, has_next) in [(0, true), (1, true), (2, false)] {
            let body = json(&app, &format!("{LIST}?page={page}&size=15")).await;
            assert_eq!(body["totalPages"], 3);
            assert_eq!(body["hasNext"], has_next);
            assert_eq!(ids(&body, "releaseId"), expected[page * 15..(page + 1) * 15].to_vec());
        }
        // Size 1: the last page is the oldest event.
        let last = json(&app, &format!("{LIST}?page=44&size=1")).await;
        assert_eq!(ids(&last, "releaseId"), vec![expected[44].clone()]);
        assert_eq!((last["totalPages"].as_u64(), last["hasNext"].as_bool()), (Some(45), Some(false)));
        let first = json(&app, &format!("{LIST}?size=1")).await;
        assert_eq!(ids(&first, "releaseId"), vec![expected[0].clone()]);
        assert_eq!(first["hasNext"], true);
        // Size 100: everything on one page.
        let all = json(&app, &format!("{LIST}?size=100")).await;
        assert_eq!(ids(&all, "releaseId"), expected);
        assert_eq!((all["totalPages"].as_u64(), all["hasNext"].as_bool()), (Some(1), Some(false)));
    }

    async fn bad_parameters_answer_400_naming_the_parameter(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let mut cases: Vec<(String, &str)> = Vec::new();
        for route in [LIST, CURSOR, EXPORT] {
            cases.extend([
                (format!("{route}?from=yesterday"), "from"),
                (format!("{route}?to=2026-13-01T00:00:00Z"), "to"),
                (format!("{route}?from=2026-11-21T25:00:00Z"), "from"),
                (format!("{route}?orderId=not-a-uuid"), "orderId"),
                (format!("{route}?from=2026-11-22T00:00:00Z&to=2026-11-21T00:00:00Z"), "from must not be after to"),
            ]);
        }
        cases.extend([
            (format!("{LIST}?size=0"), "size"),
            (format!("{LIST}?size=101"), "size"),
            (format!("{LIST}?size=abc"), "size"),
            (format!("{LIST}?page=-1"), "page"),
            (format!("{LIST}?page=1.5"), "page"),
            (format!("{CURSOR}?limit=0"), "limit"),
            (format!("{CURSOR}?limit=101"), "limit"),
            (format!("{CURSOR}?cursor=not-a-cursor"), "cursor"),
            (format!("{CURSOR}?cursor=djJ8MjAyNi0xMS0yMVQwNTo0NDowMlp8eA"), "cursor"),
            (format!("{CURSOR}?after=!!!"), "after"),
            (format!("{CURSOR}?size=0"), "size"),
            (format!("{CURSOR}?size=101"), "size"),
            (format!("{CURSOR}?limit=5&size=6"), "limit and size"),
            (format!("{EXPORT}?columns=some"), "columns"),
            (format!("{EXPORT}?limit=0"), "limit"),
            (format!("{EXPORT}?limit=10001"), "limit"),
            (format!("{EXPORT}?limit=many"), "limit"),
        ]);
        for (path, named) in cases {
            let problem = assert_problem(app.get(&path, None).await, 400).await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(named), "GET {path}: `{detail}` should name {named}");
        }
        // The largest accepted values are accepted.
        for path in [
            format!("{LIST}?size=100"),
            format!("{CURSOR}?limit=100"),
            format!("{CURSOR}?size=100"),
            format!("{CURSOR}?limit=100&size=100"),
            format!("{EXPORT}?limit=10000"),
            format!("{EXPORT}?columns=all"),
        ] {
            assert_eq!(app.get(&path, None).await.status(), 200, "{path}");
        }
    }

    async fn the_time_range_is_inclusive_and_takes_the_usual_iso_forms(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let base = at("2026-01-01T10:00:00Z");
        let rows: Vec<_> = (0..10)
            .map(|i| release_row(base + Duration::minutes(i) + Duration::microseconds(i * 7), &uuid::Uuid::new_v4().to_string(), "PAYMENT_FAILED"))
            .collect();
        insert_releases(&app, &rows).await;
        let expected = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
            newest_first(rows[range].to_vec()).into_iter().map(|r| r.id).collect()
        };
        let exact_from = rows[3].created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let exact_to = rows[6].created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        for (query, want) in [
            (format!("from={exact_from}&to={exact_to}"), expected(3..=6)),
            ("from=2026-01-01T12:03:00%2B02:00&to=2026-01-01T10:06:59Z".to_owned(), expected(3..=6)),
            ("from=2026-01-01T12:03:00+02:00".to_owned(), expected(3..=9)),
            ("from=2026-01-01T10:03&to=2026-01-01T10:07".to_owned(), expected(3..=6)),
            ("to=2026-01-01 10:01:30".to_owned(), expected(0..=1)),
            ("from=2026-01-01&to=2026-01-02".to_owned(), expected(0..=9)),
            ("from=2026-01-02".to_owned(), vec![]),
        ] {
            let page = json(&app, &format!("{LIST}?size=100&{query}")).await;
            assert_eq!(ids(&page, "releaseId"), want, "{query}");
            assert_eq!(page["totalElements"], want.len() as u64, "{query}");
            assert_eq!(walk(&app, &format!("&{query}"), 3).await, want, "cursor, {query}");
            let (_, body) = export(&app, &format!("?{query}")).await;
            let exported: Vec<String> = csv_records(&body).into_iter().skip(1).map(|r| r[0].clone()).collect();
            assert_eq!(exported, want, "export, {query}");
        }
        let one = &rows[4];
        let page = json(&app, &format!("{LIST}?orderId={}&from=2026-01-01", one.order_id.to_uppercase())).await;
        assert_eq!(ids(&page, "releaseId"), vec![one.id.clone()], "the order id filter, any case");
        let unknown = json(&app, &format!("{LIST}?orderId={}", uuid::Uuid::new_v4())).await;
        assert_eq!(unknown["totalElements"], 0);
    }

    async fn cursor_pages_walk_every_event_once_in_the_order_of_offset_pages(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let expected: Vec<String> = seed_releases(&app, 45, at("2026-03-01T12:00:00Z")).await
            .into_iter().map(|r| r.id).collect();
        let offset = ids(&json(&app, &format!("{LIST}?size=100")).await, "releaseId");
        assert_eq!(offset, expected);

        for limit in [1, 2, 15, 20, 44, 45, 100] {
            assert_eq!(walk(&app, "", limit).await, expected, "limit {limit}");
        }
        // Deep pages agree with offset pages of the same size.
        let mut cursor = String::new();
        for page in 0..3 {
            let path = if cursor.is_empty() { format!("{CURSOR}?limit=20") } else { format!("{CURSOR}?limit=20&cursor={cursor}") };
            let keyset = json(&app, &path).await;
            let offset = json(&app, &format!("{LIST}?page={page}&size=20")).await;
            assert_eq!(keyset["items"], offset["items"], "page {page}");
            cursor = keyset["nextCursor"].as_str().unwrap_or_default().to_owned();
        }
        assert!(cursor.is_empty(), "no cursor after the last page");
        // The default limit is 20.
        let first = json(&app, CURSOR).await;
        assert_eq!(ids(&first, "releaseId"), expected[..20].to_vec());
        // Beyond the last page: the cursor of the oldest event leads nowhere.
        let last_page = json(&app, &format!("{CURSOR}?limit=1&cursor={}", {
            let before_last = json(&app, &format!("{CURSOR}?limit=44")).await;
            before_last["nextCursor"].as_str().unwrap().to_owned()
        })).await;
        assert_eq!(ids(&last_page, "releaseId"), vec![expected[44].clone()]);
        assert_eq!(last_page["nextCursor"], Value::Null);
        // The seed's names: `size` for limit, `after` for cursor, `hasMore` beside `nextCursor`.
        let mut seed_walk = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("{CURSOR}?size=20&after={a}"),
                None => format!("{CURSOR}?size=20"),
            };
            let page = json(&app, &path).await;
            assert_eq!(page["size"], 20);
            seed_walk.extend(ids(&page, "releaseId"));
            if page["hasMore"] != true {
                assert_eq!(page["nextCursor"], Value::Null);
                break;
            }
            after = page["nextCursor"].as_str().map(str::to_owned);
            assert!(seed_walk.len() <= 45, "the walk does not end");
        }
        assert_eq!(seed_walk, expected, "a walk with size and after");
        let everything = json(&app, &format!("{CURSOR}?limit=45")).await;
        assert_eq!(everything["nextCursor"], Value::Null, "an exact fit has no next page");
        // A cursor taken from a walk of every event, used with another filter, reads after its place.
        let half = json(&app, &format!("{CURSOR}?limit=22")).await;
        let next = half["nextCursor"].as_str().unwrap();
        let rest = walk_from(&app, next).await;
        assert_eq!(rest, expected[22..].to_vec());
    }

    async fn the_export_is_a_streamed_csv_newest_first_up_to_the_limit(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let expected: Vec<String> = seed_releases(&app, 1_203, at("2026-03-01T12:00:00Z")).await
            .into_iter().map(|r| r.id).collect();

        let response = app.get(EXPORT, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
        assert_eq!(
            response.headers()["content-disposition"],
            "attachment; filename=\"inventory-release-events.csv\""
        );
        assert!(response.headers().get("content-length").is_none(), "streamed, so no length up front");
        let body = response.text().await.unwrap();
        assert!(body.starts_with(&format!("{SEED_CSV_HEADER}\n")), "the seed's header row first");
        assert!(body.ends_with('\n') && !body.contains('\r'), "lines end in LF, as the seed writes them");
        let records = csv_records(&body);
        assert_eq!(records.len(), 1 + 1_000, "the default limit is 1000");
        assert!(records.iter().all(|r| r.len() == 5), "the seed's five columns");
        let exported: Vec<String> = records[1..].iter().map(|r| r[0].clone()).collect();
        assert_eq!(exported, expected[..1_000].to_vec());

        // Every column on request: ordersaga's RFC 4180 export with the released lines.
        let (_, body) = export(&app, "?columns=all").await;
        assert!(body.starts_with(&format!("{CSV_HEADER}\r\n")), "header row first");
        assert!(body.ends_with("\r\n"));
        let records = csv_records(&body);
        assert_eq!(records.len(), 1 + 1_000, "the default limit is 1000");
        let exported: Vec<String> = records[1..].iter().map(|r| r[0].clone()).collect();
        assert_eq!(exported, expected[..1_000].to_vec());
        let items: Value = serde_json::from_str(&records[1][4]).unwrap();
        assert_eq!(items, serde_json::json!([{"skuId": "SKU-1", "quantity": 2}, {"skuId": "SKU-2", "quantity": 1}]));
        assert!(body.contains(r#","[{""skuId"":""SKU-1"",""quantity"":2},{""skuId"":""SKU-2"",""quantity"":1}]","#), "quotes doubled inside a quoted field");

        for (limit, rows) in [(1, 1), (2, 2), (500, 500), (501, 501), (1_203, 1_203), (10_000, 1_203)] {
            let (_, body) = export(&app, &format!("?limit={limit}")).await;
            let exported: Vec<String> = csv_records(&body).into_iter().skip(1).map(|r| r[0].clone()).collect();
            assert_eq!(exported.len(), rows, "limit {limit}");
            assert_eq!(exported, expected[..rows].to_vec(), "limit {limit}");
        }
        let unique: HashSet<&String> = expected.iter().collect();
        assert_eq!(unique.len(), 1_203);
    }
}

/// The ids after `cursor` to the end, 10 at a time.
async fn walk_from(app: &TestApp, cursor: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut next = Some(cursor.to_owned());
    while let Some(c) = next {
        let page = json(app, &format!("{CURSOR}?limit=10&cursor={c}")).await;
        all.extend(ids(&page, "releaseId"));
        next = page["nextCursor"].as_str().map(str::to_owned);
    }
    all
}
