//! `ordersaga archive`, the real binary against a test app's database: chunk boundaries, a dry run, a run
//! interrupted between chunks and in the middle of one, and its reruns; archived orders stay readable
//! over HTTP; bad flags are one line and a non-zero exit.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::{ordersaga, temp_dir};
use crate::helpers::{TestApp, line, spawn_app};
use crate::on_every_backend;
use entities::{order_items, orders, orders_archive};

/// Age past which the tests archive.
const DAYS: i64 = 30;
/// How long one run of the command may take in a test.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// `ordersaga archive ARGS` on `app`'s database, with extra `env`.
fn command(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = ordersaga(&temp_dir());
    cmd.arg("archive")
        .args(args)
        .env("ORDERSAGA_DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd
}

/// What a finished run printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Run {
        Run {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The number on the summary line `label` (`archived`, `would archive`, `chunks`).
    fn figure(&self, label: &str) -> u64 {
        self.stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in the summary:\n{}\n{}", self.stdout, self.stderr))
    }
}

/// Runs a command to its end.
async fn run_to_end(mut cmd: tokio::process::Command) -> Run {
    let output = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .expect("the command ends")
        .unwrap();
    Run::from(output)
}

/// A run that must succeed: `(archived, chunks)`.
async fn archived(app: &TestApp, args: &[&str]) -> (u64, u64) {
    let run = run_to_end(command(app, args, &[])).await;
    assert!(run.status.success(), "{args:?}: {}\n{}", run.stdout, run.stderr);
    (run.figure("archived"), run.figure("chunks"))
}

/// Terminal orders of `u-1`, ended, as the API answered them once they had ended.
async fn ended_orders(app: &TestApp, n: usize) -> Vec<Value> {
    let mut ended = Vec::with_capacity(n);
    for i in 0..n {
        // Every third one fails (an unknown SKU), the others confirm.
        let sku = if i % 3 == 2 { "NO-SUCH-SKU" } else { "SKU-AR" };
        let order = app.order("u-1", vec![line(sku, 1, "1.25")]).await;
        ended.push(app.ended(order["orderId"].as_str().unwrap()).await);
    }
    ended
}

fn ids(orders: &[Value]) -> Vec<String> {
    orders
        .iter()
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect()
}

/// Makes the orders look `days` old: last updated then.
async fn age(app: &TestApp, ids: &[String], days: i64) {
    let then = actors::db::now() - chrono::Duration::days(days);
    orders::Entity::update_many()
        .col_expr(orders::Column::UpdatedAt, Expr::value(then))
        .filter(orders::Column::Id.is_in(ids.iter().map(String::as_str)))
        .exec(&app.state.db)
        .await
        .unwrap();
}

/// `(live, archived)` counts of these orders, checking that none is in both tables.
async fn where_are(app: &TestApp, ids: &[String]) -> (u64, u64) {
    let db = &app.state.db;
    let live = orders::Entity::find()
        .filter(orders::Column::Id.is_in(ids.iter().map(String::as_str)))
        .count(db)
        .await
        .unwrap();
    let archived = orders_archive::Entity::find()
        .filter(orders_archive::Column::Id.is_in(ids.iter().map(String::as_str)))
        .count(db)
        .await
        .unwrap();
    assert_eq!(
        live + archived,
        ids.len() as u64,
        "every order is in exactly one of the tables"
    );
    (live, archived)
}

/// Every order answers `GET /api/orders/{id}` as it did before it was archived (but for `updatedAt`), and its saga route and
/// its notification still answer.
async fn still_readable(app: &TestApp, before: &[Value]) {
    let owner = app.buyer_token("u-1").await;
    for order in before {
        let id = order["orderId"].as_str().unwrap();
        let mut now: Value = app
            .get(&format!("/api/orders/{id}"), Some(&owner))
            .await
            .json()
            .await
            .unwrap();
        // Its last update is the one the test gave it, to make it old.
        let updated = now.as_object_mut().unwrap().remove("updatedAt").unwrap();
        let updated = chrono::DateTime::parse_from_rfc3339(updated.as_str().unwrap()).unwrap();
        assert!(
            updated < chrono::Utc::now() - chrono::Duration::days(DAYS),
            "order {id} was old"
        );
        let mut then = order.clone();
        then.as_object_mut().unwrap().remove("updatedAt");
        assert_eq!(now, then, "order {id} reads the same");
        let saga = app.get(&format!("/api/orders/{id}/saga"), Some(&owner)).await;
        assert_eq!(saga.status(), 200, "the saga of archived order {id}");
        let saga: Value = saga.json().await.unwrap();
        let ended_as = if order["status"] == "CONFIRMED" {
            "COMPLETED"
        } else {
            "FAILED"
        };
        assert_eq!(saga["state"], ended_as);
        let notes: Value = app
            .get(&format!("/api/notifications?orderId={id}"), Some(&owner))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            notes["totalElements"], 1,
            "the notification of archived order {id}"
        );
    }
}

/// Reads standard error line by line until a line holds `needle`; returns what was read.
async fn until_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(RUN_LIMIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            seen.push_str(&l);
            seen.push('\n');
            if l.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no line with `{needle}` on standard error:\n{seen}"
    );
    seen
}

/// Sends `signal` (`TERM`, `INT`) to a process.
fn send(signal: &str, child: &tokio::process::Child) {
    let pid = child.id().expect("the child runs").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Waits for the child to exit and collects the rest of what it printed.
async fn finished(
    mut child: tokio::process::Child,
    mut lines: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    mut stderr: String,
) -> Run {
    let mut stdout = child.stdout.take().unwrap();
    let rest = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            stderr.push_str(&l);
            stderr.push('\n');
        }
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
            .await
            .unwrap();
        let status = child.wait().await.unwrap();
        (status, out)
    };
    let (status, stdout) = tokio::time::timeout(RUN_LIMIT, rest)
        .await
        .expect("the command stops");
    Run {
        status,
        stdout,
        stderr,
    }
}

/// Starts `ordersaga archive ARGS` with the fault points `failpoints`, and waits for a line on standard
/// error holding `needle`.
async fn started_until(
    app: &TestApp,
    args: &[&str],
    failpoints: &str,
    needle: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    String,
) {
    let mut child = command(app, args, &[("FAILPOINTS", failpoints)]).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let seen = until_line(&mut lines, needle).await;
    (child, lines, seen)
}

on_every_backend! {
    async fn archive_moves_old_terminal_orders_in_chunks_and_a_rerun_moves_nothing_twice(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-AR", 100).await;
        let orders = ended_orders(&app, 10).await;
        let all = ids(&orders);
        let args = ["--older-than-days", "30", "--chunk-size", "3"];

        assert_eq!(archived(&app, &args).await, (0, 0), "nothing old yet");
        assert_eq!(where_are(&app, &all).await, (10, 0));

        // One order, then exactly one chunk, then a chunk and one more.
        for (batch, expected) in [(0..1, (1, 1)), (1..4, (3, 1)), (4..8, (4, 2))] {
            age(&app, &all[batch.clone()], DAYS + 10).await;
            assert_eq!(archived(&app, &args).await, expected, "orders {batch:?}");
            assert_eq!(where_are(&app, &all[..batch.end]).await, (0, batch.end as u64));
        }
        assert_eq!(archived(&app, &args).await, (0, 0), "a rerun finds nothing left");

        // Not old enough, or not ended: they stay.
        age(&app, &all[8..9], DAYS - 1).await;
        age(&app, &all[9..10], DAYS + 10).await;
        orders::Entity::update_many()
            .col_expr(orders::Column::Status, Expr::value("PENDING"))
            .filter(orders::Column::Id.eq(all[9].as_str()))
            .exec(&app.state.db).await.unwrap();
        assert_eq!(archived(&app, &args).await, (0, 0));
        assert_eq!(where_are(&app, &all[8..]).await, (2, 0));

        // Archived: out of orders and order_items, and read back the same over HTTP.
        let lines = order_items::Entity::find()
            .filter(order_items::Column::OrderId.is_in(all[..8].iter().map(String::as_str)))
            .count(&app.state.db).await.unwrap();
        assert_eq!(lines, 0, "the archived orders' lines left order_items");
        still_readable(&app, &orders[..8]).await;
    }

    async fn a_dry_run_counts_and_changes_nothing_and_the_config_file_is_read(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-AR", 100).await;
        let orders = ended_orders(&app, 5).await;
        let all = ids(&orders);
        age(&app, &all, DAYS + 1).await;
        // The database and the chunk size come from the file, as for `serve`.
        let dir = temp_dir();
        let file = dir.join("archive.toml");
        std::fs::write(&file, format!("database_url = \"{}\"\n\n[archive]\nchunk_size = 2\n", app.db.url)).unwrap();
        let with_file = |more: &[&str]| {
            let mut cmd = ordersaga(&dir);
            cmd.args(["archive", "--config", file.to_str().unwrap(), "--older-than-days", "30"]).args(more).env("RUST_LOG", "warn");
            tokio::process::Command::from(cmd)
        };
        let dry = run_to_end(with_file(&["--dry-run"])).await;
        assert!(dry.status.success(), "{}\n{}", dry.stdout, dry.stderr);
        assert!(dry.stdout.contains("dry run: nothing changed"), "{}", dry.stdout);
        assert_eq!((dry.figure("would archive"), dry.figure("chunks")), (5, 3), "{}", dry.stdout);
        assert_eq!(where_are(&app, &all).await, (5, 0), "a dry run moves nothing");
        let real = run_to_end(with_file(&[])).await;
        assert!(real.status.success(), "{}\n{}", real.stdout, real.stderr);
        assert_eq!((real.figure("archived"), real.figure("chunks")), (5, 3), "what the dry run said");
        assert_eq!(where_are(&app, &all).await, (0, 5));
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn an_interrupted_run_stops_between_chunks_and_a_rerun_archives_the_rest(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-AR", 100).await;
        let orders = ended_orders(&app, 6).await;
        let all = ids(&orders);
        age(&app, &all, DAYS + 1).await;
        let args = ["--older-than-days", "30", "--chunk-size", "2"];
        // Each chunk is followed by a pause, in which the signal arrives.
        let pause = "archive-chunk-done=return(3000)";

        // SIGTERM after the first chunk, then Ctrl-C (SIGINT) after the first chunk of the rerun.
        let mut moved = 0;
        for signal in ["TERM", "INT"] {
            let (child, lines, seen) = started_until(&app, &args, pause, "chunk 1 committed").await;
            send(signal, &child);
            let run = finished(child, lines, seen).await;
            assert_eq!(run.status.code(), Some(130), "SIG{signal}: a non-zero status\n{}\n{}", run.stdout, run.stderr);
            assert!(run.stderr.contains("interrupted after 1 chunk(s): 2 orders archived"), "SIG{signal}: a clear message:\n{}", run.stderr);
            assert_eq!((run.figure("archived"), run.figure("chunks")), (2, 1), "the summary");
            moved += 2;
            assert_eq!(where_are(&app, &all).await, (6 - moved, moved), "after SIG{signal}");
        }
        assert_eq!(archived(&app, &args).await, (2, 1), "the rerun archives what is left");
        assert_eq!(where_are(&app, &all).await, (0, 6), "each order once");
        still_readable(&app, &orders).await;
    }

    async fn an_interrupt_inside_a_chunk_lets_it_commit_and_a_second_one_rolls_it_back(backend) {
        let Some(app) = spawn_app(backend).await else { return };
        app.set_stock("SKU-AR", 100).await;
        let orders = ended_orders(&app, 4).await;
        let all = ids(&orders);
        age(&app, &all, DAYS + 1).await;
        let args = ["--older-than-days", "30", "--chunk-size", "2"];
        // The first chunk's transaction waits before its commit; the signal arrives meanwhile.
        let pause = "archive-in-chunk=return(3000)";
        let in_chunk = "archive-in-chunk: pausing";

        // Interrupted twice inside the chunk: it stops at once and the chunk rolls back whole.
        let (child, mut lines, mut seen) = started_until(&app, &args, pause, in_chunk).await;
        send("TERM", &child);
        seen.push_str(&until_line(&mut lines, "the chunk in progress finishes").await);
        send("TERM", &child);
        let run = finished(child, lines, seen).await;
        assert_eq!(run.status.code(), Some(130), "{}", run.stderr);
        assert!(run.stderr.contains("stopped at once; the chunk in progress is rolled back"), "{}", run.stderr);
        assert_eq!(where_are(&app, &all).await, (4, 0), "nothing of the chunk in progress stays");

        // Interrupted once inside the chunk: that chunk commits, and the run stops there.
        let (child, lines, seen) = started_until(&app, &args, pause, in_chunk).await;
        send("TERM", &child);
        let run = finished(child, lines, seen).await;
        assert_eq!(run.status.code(), Some(130), "{}", run.stderr);
        assert_eq!((run.figure("archived"), run.figure("chunks")), (2, 1), "{}", run.stderr);
        assert_eq!(where_are(&app, &all).await, (2, 2));

        assert_eq!(archived(&app, &args).await, (2, 1));
        assert_eq!(where_are(&app, &all).await, (0, 4));
        still_readable(&app, &orders).await;
    }
}

#[test]
fn bad_archive_flags_are_one_line_and_a_non_zero_exit() {
    let cases: [(&[&str], &str); 7] = [
        (&["--older-than-days", "0"], "--older-than-days"),
        (&["--older-than-days", "-3"], "--older-than-days"),
        (&["--older-than-days=-3"], "--older-than-days"),
        (&["--older-than-days", "soon"], "--older-than-days"),
        (&["--chunk-size", "10"], "--older-than-days"),
        (&["--older-than-days", "30", "--chunk-size", "0"], "--chunk-size"),
        (&["--older-than-days", "30", "--chunk-size", "-5"], "--chunk-size"),
    ];
    for (args, flag) in cases {
        let dir = temp_dir();
        // A database that would be created if the command got that far.
        let db = dir.join("untouched.db");
        let output = ordersaga(&dir)
            .arg("archive")
            .args(args)
            .env(
                "ORDERSAGA_DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {stderr}");
        assert!(lines[0].contains(flag), "{args:?}: names {flag}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: no summary");
        assert!(!db.exists(), "{args:?}: the database was not opened");
        let _ = std::fs::remove_dir_all(dir);
    }
}
