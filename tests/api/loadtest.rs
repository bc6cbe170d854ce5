//! The load-test harness against a real node: it places, waits, checks, and reports what it measured;
//! the binary fails when an invariant is broken and refuses bad flags.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};
use crate::on_every_backend;
use ordersaga::config::PaymentMode;
use ordersaga::loadtest::report::Report;
use ordersaga::loadtest::{self, Extent, Interrupt, Load, Options};

const BIN: &str = env!("CARGO_BIN_EXE_ordersaga");

/// A small run: 60 orders of up to 2 units on 3 SKUs of 10, so that the stock runs out and some
/// orders fail; half of the payments fail too (HASHED), so some orders are compensated.
fn small_run(address: &str) -> Options {
    let mut options = Options::new(address);
    options.extent = Extent::Orders(60);
    options.load = Load::Closed { concurrency: 4 };
    options.skus = 3;
    options.stock = 10;
    options.users = 3;
    options.max_quantity = 2;
    options.timeout = Duration::from_secs(60);
    options
}

/// What every finished report must say: numbers that add up and ordered percentiles.
fn assert_consistent(report: &Report) {
    assert!(
        report.invariants.ok,
        "violations: {:#?}",
        report.invariants.violations
    );
    assert_eq!(
        report.accepted, report.orders,
        "rejections: {:?}",
        report.rejections
    );
    assert_eq!(report.completed, report.accepted, "every accepted order ended");
    assert_eq!(report.confirmed + report.failed, report.completed);
    assert_eq!(report.not_ended, 0);
    assert!(report.compensated <= report.failed);
    for l in [&report.latency_ms.accept, &report.latency_ms.completion] {
        assert_eq!(l.count, report.accepted);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, "{l:?}");
    }
    assert!(report.duration_seconds > 0.0);
    let expected_rate = report.completed as f64 / report.duration_seconds;
    assert!(
        (report.orders_per_second - expected_rate).abs() < 0.2 + expected_rate * 0.01,
        "{} sagas/s for {} sagas in {} s",
        report.orders_per_second,
        report.completed,
        report.duration_seconds
    );
    let ended: u64 = report.timeline.iter().map(|s| s.ended).sum();
    let accepted: u64 = report.timeline.iter().map(|s| s.accepted).sum();
    assert_eq!((ended, accepted), (report.completed, report.accepted));
    // The release audit may not exist on this node; then only that check is skipped.
    for skipped in &report.invariants.skipped {
        assert!(skipped.contains("release-events"), "{skipped}");
    }
}

on_every_backend! {
    async fn a_closed_loop_run_ends_every_order_and_keeps_every_invariant(backend) {
        let Some(app) = spawn_app_with(backend, |s| s.payment_mode = PaymentMode::Hashed).await else { return };
        let options = small_run(&app.address);

        let report = loadtest::run(&options, Interrupt::new()).await.unwrap();

        assert_eq!(report.orders, 60);
        assert_consistent(&report);
        assert!(report.confirmed > 0, "some orders got stock and were paid");
        assert!(report.failed > 0, "30 units cannot serve up to 120");
        // The node agrees: each SKU's stock is conserved and what is reserved was confirmed.
        let mut reserved = 0;
        for i in 0..3 {
            let stock: Value = app
                .get(&format!("/api/stocks/LT-{}-{i:03}", options.run_id), None)
                .await
                .json()
                .await
                .unwrap();
            let (available, held) = (stock["availableQty"].as_i64().unwrap(), stock["reservedQty"].as_i64().unwrap());
            assert_eq!(available + held, 10, "{stock}");
            reserved += held;
        }
        assert!(reserved >= report.confirmed as i64, "each confirmed order holds at least one unit");
    }
}

#[actix_web::test]
async fn an_open_loop_run_places_rate_times_duration_orders() {
    let Some(app) = spawn_app(crate::helpers::Backend::Sqlite).await else {
        return;
    };
    let mut options = small_run(&app.address);
    options.load = Load::Open {
        rate: 100.0,
        max_in_flight: 16,
    };
    options.extent = Extent::Duration(Duration::from_millis(400));
    options.stock = 1_000;

    let report = loadtest::run(&options, Interrupt::new()).await.unwrap();

    assert_eq!(report.orders, 40);
    assert_consistent(&report);
    assert_eq!(report.confirmed, 40, "enough stock and every payment succeeds");
    assert_eq!(
        serde_json::to_value(&report.load).unwrap(),
        json!({"kind": "open", "rate": 100.0})
    );
}

#[actix_web::test]
async fn a_run_over_whole_sagas_keeps_at_most_its_concurrency_in_flight() {
    let Some(app) = spawn_app_with(crate::helpers::Backend::Sqlite, |s| {
        s.payment_mode = PaymentMode::Hashed
    })
    .await
    else {
        return;
    };
    let mut options = small_run(&app.address);
    options.load = Load::Sagas { concurrency: 2 };
    options.extent = Extent::Orders(30);
    options.stock = 1_000;

    let report = loadtest::run(&options, Interrupt::new()).await.unwrap();

    assert_eq!(report.orders, 30);
    assert_consistent(&report);
    assert!(
        report.compensated > 0,
        "HASHED declines about half of the payments"
    );
    assert_eq!(
        serde_json::to_value(&report.load).unwrap(),
        json!({"kind": "sagas", "concurrency": 2})
    );
    // The whole saga is the accept and the completion together.
    let (saga, completion) = (&report.latency_ms.saga, &report.latency_ms.completion);
    assert_eq!(saga.count, report.accepted);
    assert!(saga.p50 <= saga.p99 && saga.p99 <= saga.max, "{saga:?}");
    assert!(
        saga.max >= completion.max && saga.p50 >= completion.p50,
        "{saga:?} {completion:?}"
    );
    // On the node's clock: a worker's next saga started after its previous one had ended, so no more
    // than 2 sagas ever ran at once.
    let api = loadtest::client::Api::new(&app.address, 2, Duration::from_secs(10)).unwrap();
    let page = api.sagas(&app.admin_token().await, 0, 100).await.unwrap();
    assert_eq!(page.items.len(), 30);
    let mut edges = Vec::new();
    for saga in &page.items {
        let ended = saga.completed_at.expect("every saga ended");
        edges.push((saga.started_at, 1));
        edges.push((ended, -1));
    }
    // An end before a start at the same instant: touching sagas did not overlap.
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    assert!((1..=2).contains(&most), "{most} sagas ran at once");
}

/// Runs the binary with `args` (no inherited ORDERSAGA_ settings) on the blocking pool.
async fn ordersaga(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("ORDERSAGA_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[actix_web::test]
async fn the_binary_exits_with_1_and_names_the_sku_when_stock_does_not_add_up() {
    let Some(app) = spawn_app(crate::helpers::Backend::Sqlite).await else {
        return;
    };
    // Arrange: the run's first SKU already holds 2 units for an order the run knows nothing of, so once
    // the run stocks it with 10, available + reserved is 12.
    let sku = "LT-corrupt1-000";
    app.set_stock(sku, 5).await;
    let admin = app.admin_token().await;
    let reserved = app
        .post(
            "/api/stocks/reserve",
            Some(&admin),
            &json!({"orderId": uuid::Uuid::new_v4().to_string(), "items": [{"skuId": sku, "quantity": 2}]}),
        )
        .await;
    assert_eq!(reserved.status(), 200);
    let json_path = std::env::temp_dir().join(format!("ordersaga-lt-{}.json", uuid::Uuid::new_v4().simple()));

    let output = ordersaga(
        &[
            "loadtest",
            "--url",
            &app.address,
            "--orders",
            "8",
            "--concurrency",
            "2",
            "--skus",
            "1",
            "--stock",
            "10",
            "--run-id",
            "corrupt1",
            "--no-progress",
            "--json",
            json_path.to_str().unwrap(),
        ],
        &[],
    )
    .await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("invariants    FAILED"), "{stdout}");
    assert!(
        stdout.contains(&format!("SKU {sku}: availableQty")) && stdout.contains("10 were stocked"),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["invariants"]["ok"], false);
    let kinds: Vec<&str> = report["invariants"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"STOCK_NOT_CONSERVED"), "{kinds:?}");
    let chart = std::fs::read_to_string(json_path.with_extension("svg")).unwrap();
    assert!(chart.starts_with("<svg"));
    let _ = std::fs::remove_file(json_path.with_extension("svg"));
    let _ = std::fs::remove_file(json_path);
}

#[actix_web::test]
async fn bad_flags_exit_with_2_and_name_the_flag() {
    for (args, flag) in [
        (&["loadtest", "--orders", "0"][..], "--orders"),
        (&["loadtest", "--skus", "0"][..], "--skus"),
        (&["loadtest", "--url", "https://example.com"][..], "--url"),
        (&["loadtest", "--concurrency", "4", "--rate", "10"][..], "--rate"),
        (
            &["loadtest", "--whole-sagas", "--rate", "10"][..],
            "--whole-sagas",
        ),
        (
            &["loadtest", "--orders", "10", "--duration", "5"][..],
            "--duration",
        ),
        (&["loadtest", "--rate", "-3"][..], "--rate"),
    ] {
        let output = ordersaga(args, &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?} should name {flag}: {stderr}");
    }
}

#[actix_web::test]
async fn the_harness_needs_no_settings_and_says_when_the_node_is_unreachable() {
    // A configuration `serve` would refuse does not concern the harness.
    let output = ordersaga(
        &[
            "loadtest",
            "--url",
            "http://127.0.0.1:9",
            "--orders",
            "1",
            "--no-progress",
        ],
        &[("ORDERSAGA_PAYMENT_MODE", "BOGUS")],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot reach the node at http://127.0.0.1:9"),
        "{stderr}"
    );
}
