//! The shipped Grafana dashboard and Prometheus alert rules (`deploy/`) name only metrics that a node
//! serves in `/metrics`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::start_server;
use crate::helpers::{TestBroker, TestDb, eventually, line, mint_token};
use crate::on_every_backend;

/// PromQL's keywords and aggregations (`sum by (…) (…)` is not followed by a parenthesis); functions
/// are told apart by the `(` that follows them.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "on",
    "ignoring",
    "offset",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The metric names of a PromQL expression: its identifiers, less functions, keywords, label matchers
/// (`{…}`), ranges (`[…]`), strings and the label lists of `by (…)` and `without (…)`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |from: usize, close: char| {
        chars[from + 1..]
            .iter()
            .position(|&c| c == close)
            .map_or(chars.len(), |p| from + 2 + p)
    };
    let mut names = BTreeSet::new();
    let (mut i, mut labels) = (0, false);
    while i < chars.len() {
        match chars[i] {
            '"' => i = skip_to(i, '"'),
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            ')' => {
                labels = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let called = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
                if word == "by" || word == "without" {
                    labels = true;
                } else if !labels && !called && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every `expr` of the dashboard and of the alert rules.
fn shipped_expressions() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/ordersaga.json")).unwrap())
            .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    exprs.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(|e| e.trim().to_owned()),
    );
    exprs
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{route!="x"}[5m]))) and max(outbox_backlog) > 0"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "http_request_duration_seconds_bucket".to_owned(),
            "outbox_backlog".to_owned()
        ])
    );
}

on_every_backend! {
    async fn the_dashboard_and_the_alerts_name_only_metrics_a_node_serves(backend) {
        let Some(broker) = TestBroker::create().await else { return };
        let Some(db) = TestDb::create(backend).await else { return };
        let env = [("ORDERSAGA_AMQP_URL", broker.amqp_url.as_str()), ("ORDERSAGA_PAYMENT_MODE", "HASHED")];
        let server = start_server(&db, &env).await;
        let (client, base) = (crate::helpers::test_client(), server.address.clone());
        let admin = mint_token(&client, &base, "admin-1", "admin").await;
        let buyer = mint_token(&client, &base, "obs-buyer", "buyer").await;
        let r = client.post(format!("{base}/api/stocks")).bearer_auth(&admin)
            .json(&json!({"skuId": "OBS-1", "availableQty": 100})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Orders that end both ways (HASHED), so that the sagas' metrics have values.
        let mut placed = Vec::new();
        for i in 0..6 {
            let r = client.post(format!("{base}/api/orders")).bearer_auth(&buyer)
                .header("Idempotency-Key", format!("obs-{i}"))
                .json(&json!({"userId": "obs-buyer", "items": [line("OBS-1", 1, "1.00")]})).send().await.unwrap();
            assert_eq!(r.status(), 201);
            placed.push(r.json::<Value>().await.unwrap()["orderId"].as_str().unwrap().to_owned());
        }
        for id in &placed {
            eventually(Duration::from_secs(30), "the order to end", || async {
                let order: Value = client.get(format!("{base}/api/orders/{id}")).bearer_auth(&admin)
                    .send().await.ok()?.json().await.ok()?;
                (order["status"] != "PENDING").then_some(())
            }).await;
        }

        let wanted: BTreeSet<String> = shipped_expressions().iter().flat_map(|e| metric_names(e)).collect();
        assert!(wanted.len() >= 10, "the dashboard and the rules name metrics: {wanted:?}");
        // The database's gauges are read every 10 s; the first reading is at the start.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let missing = loop {
            let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            let served: BTreeSet<&str> = text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .collect();
            let missing: Vec<&String> = wanted.iter().filter(|name| !served.contains(name.as_str())).collect();
            if missing.is_empty() || std::time::Instant::now() > deadline {
                break missing.into_iter().cloned().collect::<Vec<_>>();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert!(missing.is_empty(), "named in deploy/ but not in /metrics: {missing:?}");
    }
}
