//! The dashboards in a real headless browser: Debian's `chromium` driven by `playwright-core`
//! (`tests/browser/dashboards.mjs`) against an app on SQLite holding confirmed and failed orders, a
//! dead letter and a stuck saga.
//!
//! Needs `node`, `chromium` (`/usr/bin/chromium`, or `ORDERSAGA_CHROMIUM`) and
//! `npm ci --prefix tests/browser`. When one is missing the test says why and passes, unless
//! `ORDERSAGA_REQUIRE_SERVICES=1` (CI), where it fails. Screenshots go to
//! `target/tmp/browser-screenshots/`, or to `ORDERSAGA_SCREENSHOTS` (`docs/screenshots` refreshes the
//! ones in the README).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
#[path = "api/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use fixtures::{insert_dead_letter, insert_waiting_saga};
use helpers::{Backend, drop_finished_databases, line, services_required, spawn_app_with};
use ordersaga::config::PaymentMode;

/// How long the browser script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);
/// Orders placed at most while looking for both outcomes.
const MAX_ORDERS: usize = 60;
const SKUS: [&str; 4] = ["SKU-APPLE", "SKU-BREAD", "SKU-CHEESE", "SKU-DATES"];

fn project() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite(chromium: &Path) -> Option<String> {
    let node = std::process::Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref out) if out.status.success()) {
        return Some("`node` is not installed".to_owned());
    }
    if !chromium.exists() {
        return Some(format!(
            "{} does not exist (apt-get install -y chromium, or set ORDERSAGA_CHROMIUM)",
            chromium.display()
        ));
    }
    if !project()
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Some("playwright-core is not installed (npm ci --prefix tests/browser)".to_owned());
    }
    None
}

#[test]
fn the_dashboards_work_in_a_headless_browser() {
    // Like every test of the app: its own actix system, torn down before its database is dropped.
    let outcome = std::panic::catch_unwind(|| ordersaga::runtime::block_on(drive_the_dashboards()));
    drop_finished_databases();
    match outcome {
        Ok(result) => result.unwrap(),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn drive_the_dashboards() {
    let chromium = std::env::var_os("ORDERSAGA_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if let Some(why) = missing_prerequisite(&chromium) {
        assert!(!services_required(), "the browser test cannot run: {why}");
        eprintln!("skipped the browser test: {why}");
        return;
    }

    // Arrange: about half of the payments fail (HASHED), so the audit has releases and the sagas both
    // outcomes; a dead letter and a saga that stopped moving ten minutes ago.
    let app = spawn_app_with(Backend::Sqlite, |s| s.payment_mode = PaymentMode::Hashed)
        .await
        .expect("SQLite is always available");
    for sku in SKUS {
        app.set_stock(sku, 500).await;
    }
    let (mut failed, mut confirmed) = (Vec::new(), Vec::new());
    for i in 0..MAX_ORDERS {
        if failed.len() >= 6 && confirmed.len() >= 4 {
            break;
        }
        let lines = vec![
            line(SKUS[i % 4], (i % 3 + 1) as i64, "19.90"),
            line(SKUS[(i + 1) % 4], 1, "4.50"),
        ];
        let placed = app.order(&format!("u-{}", i % 5), lines).await;
        let order = app.ended(placed["orderId"].as_str().unwrap()).await;
        let id = order["orderId"].as_str().unwrap().to_owned();
        match order["status"].as_str() {
            Some("FAILED") => failed.push((id, order["traceId"].as_str().unwrap().to_owned())),
            Some("CONFIRMED") => confirmed.push(id),
            other => panic!("order {id} ended as {other:?}"),
        }
    }
    assert!(
        failed.len() >= 2 && !confirmed.is_empty(),
        "HASHED payments gave {} failed and {} confirmed orders out of {MAX_ORDERS}",
        failed.len(),
        confirmed.len()
    );
    let reason = "payment gateway answered 502 on every attempt";
    insert_dead_letter(&app, &failed[0].0, &failed[0].1, reason).await;
    let stuck = insert_waiting_saga(
        &app,
        "AWAITING_PAYMENT",
        Utc::now() - chrono::Duration::minutes(10),
    )
    .await;
    let expectations = json!({
        "failed": failed.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        "confirmed": confirmed,
        "stuck": stuck,
        "deadLetterReason": reason,
        "sku": SKUS[0],
    });
    let screenshots = std::env::var_os("ORDERSAGA_SCREENSHOTS")
        .map(|dir| project().join(dir))
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots"));

    // Act: the script drives the browser while this runtime keeps serving the app and its engine.
    let run = tokio::process::Command::new("node")
        .arg(project().join("tests/browser/dashboards.mjs"))
        .arg(&app.address)
        .arg(&screenshots)
        .arg(expectations.to_string())
        .env("ORDERSAGA_CHROMIUM", &chromium)
        .current_dir(project())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the browser script ran longer than {SCRIPT_DEADLINE:?}"))
        .expect("node starts");

    // Assert: every check of the script passed.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser checks failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("no console errors"), "{stdout}");
    for name in [
        "dashboard-release-audit.png",
        "dashboard-saga.png",
        "dashboard-sagas.png",
        "dashboard-dead-letters.png",
    ] {
        assert!(screenshots.join(name).exists(), "screenshot {name}");
    }
}
