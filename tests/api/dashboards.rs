//! The dashboards: readable without a token, showing the data of the test, with working filters,
//! escaped output and HTML error pages.

use chrono::{Duration, Utc};
use serde_json::Value;

use crate::fixtures::{insert_dead_letter, insert_waiting_saga};
use crate::helpers::{TestApp, line, spawn_app, spawn_app_with};
use crate::on_every_backend;
use ordersaga::config::PaymentMode;

/// GETs a page without a token, checks it is HTML with `status`, and returns its text.
async fn page(app: &TestApp, path: &str, status: u16) -> String {
    let response = app.get(path, None).await;
    assert_eq!(response.status(), status, "GET {path}");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8", "GET {path}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    response.text().await.unwrap()
}

/// Whether a table row of `order_id` is on the page.
fn has_row(html: &str, order_id: &str) -> bool {
    html.contains(&format!("data-order-id=\"{order_id}\""))
}

/// Two orders that failed on payment (their stock released), newest last.
async fn two_failed_orders(app: &TestApp) -> Vec<Value> {
    app.set_stock("SKU-A", 10).await;
    let mut orders = Vec::new();
    for quantity in [2, 1] {
        let placed = app.order("u-1", vec![line("SKU-A", quantity, "19.90")]).await;
        let ended = app.ended(placed["orderId"].as_str().unwrap()).await;
        assert_eq!(ended["status"], "FAILED");
        orders.push(ended);
    }
    orders
}

on_every_backend! {
    async fn the_release_audit_dashboard_shows_failed_orders_and_filters_them(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        let orders = two_failed_orders(&app).await;
        let (first, second) = (orders[0]["orderId"].as_str().unwrap(), orders[1]["orderId"].as_str().unwrap());

        let html = page(&app, "/dashboard", 200).await;
        assert!(has_row(&html, first) && has_row(&html, second), "both failed orders are listed");
        assert!(html.find(&format!("data-order-id=\"{second}\"")) < html.find(&format!("data-order-id=\"{first}\"")), "newest first");
        assert!(html.contains("PAYMENT_FAILED"));
        assert!(html.contains("<svg class=\"chart\""), "charts are inline SVG");
        assert!(
            html.contains("href=\"/api/stocks/release-events/export?limit=10000&amp;columns=all\""),
            "the export link, with every column"
        );
        assert!(html.contains(&format!("href=\"/dashboard/sagas/{first}\"")), "rows link to the saga");
        assert!(!html.contains("u-1"), "no user ids on the page");

        let filtered = page(&app, &format!("/dashboard?orderId={first}"), 200).await;
        assert!(has_row(&filtered, first) && !has_row(&filtered, second), "the order filter narrows the table");
        assert!(
            filtered.contains(&format!("export?orderId={first}&amp;limit=10000&amp;columns=all")),
            "the export keeps the filter"
        );
        let future = (Utc::now() + Duration::hours(1)).format("%Y-%m-%dT%H:%M:%S");
        let none = page(&app, &format!("/dashboard?from={future}"), 200).await;
        assert!(!has_row(&none, first) && !has_row(&none, second), "a time range after the releases shows none");
        assert!(none.contains(&format!("value=\"{future}\"")), "the form keeps the filter");
        let paged = page(&app, "/dashboard?size=1&page=1", 200).await;
        assert!(has_row(&paged, first) && !has_row(&paged, second), "page 2 of size 1 is the older release");
        assert!(paged.contains("2–2 of 2 releases"), "the pager says where it is");

        let bad = page(&app, "/dashboard?from=yesterday", 400).await;
        assert!(bad.contains("from must be an ISO-8601 date-time"), "a bad filter is explained on the page");
        let hostile = page(&app, "/dashboard?orderId=%3Cscript%3Ealert(1)%3C%2Fscript%3E", 400).await;
        assert!(!hostile.contains("<script>alert(1)"), "what the user typed is escaped");
        assert!(hostile.contains("&lt;script&gt;alert(1)"));
        assert!(page(&app, "/dashboard/", 200).await.contains("Release audit"));
    }

    async fn the_saga_dashboard_counts_searches_and_highlights_stuck_sagas(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        let orders = two_failed_orders(&app).await;
        let (first, second) = (orders[0]["orderId"].as_str().unwrap(), orders[1]["orderId"].as_str().unwrap());
        let stuck = insert_waiting_saga(&app, "AWAITING_PAYMENT", Utc::now() - Duration::minutes(10)).await;

        let html = page(&app, "/dashboard/sagas", 200).await;
        assert!(html.contains("id=\"count-s-compensated\">2<"), "two compensated sagas");
        assert!(html.contains("id=\"count-s-awaiting-payment\">1<"), "one waiting for payment");
        assert!(html.contains("id=\"count-total\">3<"));
        assert!(html.contains("id=\"stuck-total\">1<"), "the stuck saga is counted");
        assert!(html.contains(&format!("<tr class=\"stuck\" data-order-id=\"{stuck}\"")), "and highlighted in the list");
        assert!(has_row(&html, first) && has_row(&html, second));
        assert!(html.contains("id=\"ended-in-window\">2<"), "both sagas ended within the window");

        let search = page(&app, &format!("/dashboard/sagas?q={}", &first[..13].to_uppercase()), 200).await;
        assert!(has_row(&search, first) && !has_row(&search, second), "a part of an order id finds it");
        let trace = orders[1]["traceId"].as_str().unwrap();
        let by_trace = page(&app, &format!("/dashboard/sagas?q={trace}"), 200).await;
        assert!(has_row(&by_trace, second) && !has_row(&by_trace, first), "a trace id finds its saga");
        let by_reason = page(&app, "/dashboard/sagas?q=payment_failed", 200).await;
        assert!(has_row(&by_reason, first) && has_row(&by_reason, second) && !has_row(&by_reason, &stuck));
        let completed = page(&app, "/dashboard/sagas?state=COMPLETED", 200).await;
        assert!(!has_row(&completed, first) && completed.contains("No saga matches."));
        let only_stuck = page(&app, "/dashboard/sagas?stuck=1", 200).await;
        assert!(has_row(&only_stuck, &stuck) && !has_row(&only_stuck, first));
        let patient = page(&app, "/dashboard/sagas?stuckSeconds=3600", 200).await;
        assert!(patient.contains("No saga is stuck."), "the threshold is adjustable");
        let wildcard = page(&app, "/dashboard/sagas?q=%25", 200).await;
        assert!(wildcard.contains("No saga matches."), "LIKE wildcards are searched for literally");

        let bad = page(&app, "/dashboard/sagas?state=NOPE", 400).await;
        assert!(bad.contains("state must be one of"));
        page(&app, "/dashboard/sagas?minutes=0", 400).await;
    }

    async fn a_failed_order_tells_why_it_failed_and_when_its_stock_came_back(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Fail).await else { return };
        let orders = two_failed_orders(&app).await;
        let order = &orders[0];
        let order_id = order["orderId"].as_str().unwrap();
        let trace = order["traceId"].as_str().unwrap();
        let dead = insert_dead_letter(&app, order_id, trace, "payment gateway answered 502 five times").await;
        let release: Value = app.get(&format!("/api/stocks/release-events?orderId={order_id}"), None).await.json().await.unwrap();
        let release_id = release["items"][0]["releaseId"].as_str().unwrap();

        let html = page(&app, &format!("/dashboard/sagas/{order_id}"), 200).await;
        for step in ["OrderPlaced", "InventoryReserved", "PaymentFailed", "InventoryReleased"] {
            assert!(html.contains(&format!("<b>{step}</b>")), "the timeline has {step}");
        }
        assert!(html.contains("It failed with PAYMENT_FAILED"), "why it failed");
        assert!(html.contains("unit(s) of stock came back at"), "when the stock came back");
        assert!(html.contains(release_id), "the release is listed");
        assert!(html.contains(trace), "the trace id is shown");
        assert!(html.contains("payment gateway answered 502 five times"), "its dead letter is shown");
        assert!(html.contains(&format!("export?orderId={order_id}&amp;columns=all")), "its audit can be exported");
        assert!(html.contains(">COMPENSATED<"));
        assert!(!html.contains("u-1"), "no user ids on the page");

        let letters = page(&app, "/dashboard/dead-letters", 200).await;
        assert!(letters.contains(&format!("data-id=\"{dead}\"")));
        assert!(letters.contains("payment gateway answered 502 five times"));
        assert!(letters.contains(&format!("href=\"/dashboard/sagas/{order_id}\"")), "the dead letter links to its order");
        assert!(letters.contains("id=\"count-d-dead\">1<"));
        let replayed = page(&app, "/dashboard/dead-letters?status=REPLAYED", 200).await;
        assert!(!replayed.contains(&format!("data-id=\"{dead}\"")), "the status filter narrows the list");
        let by_queue = page(&app, "/dashboard/dead-letters?consumer=q.payment.inventory-reserved", 200).await;
        assert!(by_queue.contains(&format!("data-id=\"{dead}\"")));
        page(&app, "/dashboard/dead-letters?status=BOGUS", 400).await;
    }

    async fn unknown_and_malformed_saga_ids_get_html_errors(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let missing = uuid::Uuid::new_v4();
        let html = page(&app, &format!("/dashboard/sagas/{missing}"), 404).await;
        assert!(html.contains(&format!("no saga for order {missing}")));
        let html = page(&app, "/dashboard/sagas/not-an-id", 400).await;
        assert!(html.contains("orderId must be an order id"));
        page(&app, "/dashboard/nothing-here", 404).await;
        // An empty database renders every page.
        for path in ["/dashboard", "/dashboard/sagas", "/dashboard/dead-letters"] {
            page(&app, path, 200).await;
        }
    }

    async fn a_query_string_the_pages_cannot_read_gets_an_html_error(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let order = uuid::Uuid::new_v4();
        let pages = [
            "/dashboard".to_owned(),
            "/dashboard/".to_owned(),
            "/dashboard/release-audit".to_owned(),
            "/dashboard/sagas".to_owned(),
            format!("/dashboard/sagas/{order}"),
            "/dashboard/dead-letters".to_owned(),
        ];
        for path in pages {
            // A repeated parameter is refused by the query-string reader, before the page's own checks.
            let html = page(&app, &format!("{path}?refresh=1&refresh=2"), 400).await;
            assert!(html.contains("duplicate field"), "{path}: {html}");
        }
    }

    async fn the_dashboard_assets_are_served_by_the_binary(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        for (path, content_type) in [
            ("/dashboard/assets/dashboard.css", "text/css; charset=utf-8"),
            ("/dashboard/assets/dashboard.js", "text/javascript; charset=utf-8"),
            ("/dashboard/assets/icon.svg", "image/svg+xml"),
        ] {
            let response = app.get(path, None).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["content-type"], content_type, "{path}");
            assert!(!response.text().await.unwrap().is_empty());
        }
        let html = page(&app, "/dashboard", 200).await;
        for reference in ["http://", "https://", "//cdn", "<script>"] {
            assert!(!html.contains(reference), "the page loads nothing from elsewhere and has no inline script: {reference}");
        }
    }
}
