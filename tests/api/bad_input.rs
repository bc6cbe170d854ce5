//! Inputs found by the fuzzers and property tests (`tests/fuzz`, `entities::money`), held here over
//! HTTP on every backend: each was accepted where it should not have been, or answered a `5xx`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::helpers::{assert_problem, spawn_app};
use crate::on_every_backend;

const LIST: &str = "/api/stocks/release-events";
const CURSOR: &str = "/api/stocks/release-events/cursor";
const EXPORT: &str = "/api/stocks/release-events/export";

fn cursor(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

// An instant outside the years 1–9999 (UTC) is no time a row has, and not one every database can
// compare with (`sqlx` refuses to send MariaDB a negative year): `400` naming the parameter, not a `5xx`.
on_every_backend! {
    async fn instants_outside_the_calendar_answer_400(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        let mut cases: Vec<(String, &str)> = Vec::new();
        for route in [LIST, CURSOR, EXPORT] {
            for (name, value) in [
                ("from", "0000-01-01T00:00:00%2B01:00"),
                ("to", "-0001-06-01"),
                ("from", "9999-12-31T23:59:59-01:00"),
                ("to", "%2B10000-01-01T00:00:00"),
            ] {
                cases.push((format!("{route}?{name}={value}"), name));
            }
        }
        for value in ["v1|0000-01-01T00:00:00+01:00|x", "v1|9999-12-31T23:59:59-01:00|x"] {
            cases.push((format!("{CURSOR}?cursor={}", cursor(value)), "cursor"));
            cases.push((format!("{CURSOR}?after={}", cursor(value)), "after"));
        }
        for (path, named) in cases {
            let response = app.get(&path, None).await;
            assert_eq!(response.status(), 400, "GET {path}");
            let problem = assert_problem(response, 400).await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(named), "GET {path}: `{detail}` should name {named}");
        }
        // The calendar's edges themselves are times.
        for path in [
            format!("{LIST}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59.999999Z"),
            format!("{CURSOR}?cursor={}", cursor("v1|9999-12-31T23:59:59.999999Z|x")),
            format!("{CURSOR}?cursor={}", cursor("v1|0001-01-01T00:00:00Z|x")),
        ] {
            let response = app.get(&path, None).await;
            assert_eq!(response.status(), 200, "GET {path}: {}", response.text().await.unwrap());
        }
    }
}
