//! `ordersaga loadtest`: drives a running node through its public API and checks that nothing was lost.
//!
//! A run
//! 1. mints an admin token and buyer tokens with the mock issuer, and stocks fresh SKUs (`LT-<run>-NNN`);
//! 2. places orders, closed loop (`concurrency` workers, each sending its next order once the previous
//!    one was answered) or open loop (orders due at a fixed `rate`, whatever the answers; latency counts
//!    from the moment an order was due, so a slow node cannot hide its queueing);
//! 3. waits until every accepted order has ended, watching the saga counts of `GET /api/sagas` (one cheap
//!    request every half second) and then reading each order once, polling only those still pending;
//! 4. reads the node's state and checks the invariants ([`invariants`]);
//! 5. reports throughput and latencies ([`report`]), with a chart ([`chart`]).

pub mod chart;
pub mod client;
pub mod command;
pub mod invariants;
pub mod report;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use client::{Api, Found, Placed};
use invariants::{Lines, OrderState, Plan};
use report::{InvariantReport, LoadDescription, Report, Timing};
use workload::Workload;

/// Node the harness drives when no `--url` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_ORDERS: u64 = 4_000;
pub const DEFAULT_CONCURRENCY: usize = 32;
pub const DEFAULT_SKUS: u32 = 20;
pub const DEFAULT_STOCK: i64 = 100;
pub const DEFAULT_USERS: u32 = 16;
pub const DEFAULT_LINES: u32 = 1;
pub const DEFAULT_MAX_QUANTITY: u32 = 2;
/// How long to wait for the sagas to end after the last order was placed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Open loop: most orders waiting for an answer at once; later ones wait (their latency still counts
/// from when they were due).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_024;

/// Most SKUs a run stocks.
pub const MAX_SKUS: u32 = 10_000;
/// Most buyers a run uses.
pub const MAX_USERS: u32 = 10_000;
/// Most lines per order (the API's limit).
pub const MAX_LINES: u32 = 100;
/// Largest stock per SKU the API accepts.
pub const MAX_STOCK: i64 = 1_000_000_000_000;
/// Largest quantity per line the API accepts.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// Most orders per second in open loop.
pub const MAX_RATE: f64 = 1_000_000.0;

/// Attempts of one order (transport errors, `429` and `5xx` are retried with the same idempotency key).
const PLACE_ATTEMPTS: u32 = 5;
/// How often the saga counts are read while orders are in flight.
const COUNTS_INTERVAL: Duration = Duration::from_millis(500);
/// How often orders still pending are read again once the counts say they should have ended.
const PENDING_INTERVAL: Duration = Duration::from_millis(250);
/// Whole sagas in a closed loop: the shortest and the longest pause between two reads of an order.
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(250);
/// Whole sagas in a closed loop: what a worker expects its first saga to take.
const FIRST_EXPECTED: Duration = Duration::from_millis(20);
/// Stock set per SKU at the same time during set-up.
const SETUP_CONCURRENCY: usize = 8;

/// Why a run could not be carried out (as opposed to a run that found violations).
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// Before the first order: unreachable node, tokens or stock refused.
    #[error("{0}")]
    Setup(String),
    /// The node stopped answering as the API says, after the first order.
    #[error("{0}")]
    Server(String),
    /// The report could not be written.
    #[error("{0}")]
    Output(String),
}

/// How the load is applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// `concurrency` workers, each placing its next order once the previous one was answered.
    Closed { concurrency: usize },
    /// `concurrency` workers, each placing its next order once the previous one's saga has ended (it reads
    /// the order, as the seed system's clients do): the whole saga in a closed loop, as the peer's driver
    /// measures it.
    Sagas { concurrency: usize },
    /// Orders due at `rate` per second whatever the answers, at most `max_in_flight` unanswered.
    Open { rate: f64, max_in_flight: usize },
}

/// How much load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// This many orders.
    Orders(u64),
    /// Orders for this long (open loop: `rate × duration` orders).
    Duration(Duration),
}

/// Everything a run needs. [`Options::new`] gives the defaults of the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// Base URL of the node, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub load: Load,
    pub extent: Extent,
    /// Fresh SKUs stocked for the run.
    pub skus: u32,
    /// Stock of each SKU.
    pub stock: i64,
    /// Buyers the orders are spread over.
    pub users: u32,
    /// Lines (distinct SKUs) per order.
    pub lines: u32,
    /// Each line's quantity is drawn from 1..=`max_quantity`.
    pub max_quantity: u32,
    /// Seed of the order contents.
    pub seed: u64,
    /// Names the run's SKUs, users and idempotency keys; must be new to the node.
    pub run_id: String,
    /// How long to wait for the sagas after the last order.
    pub timeout: Duration,
    pub request_timeout: Duration,
    /// `false`: place the orders and stop (no waiting, no checks).
    pub wait: bool,
    /// Draw progress bars on the terminal.
    pub progress: bool,
}

impl Options {
    /// The defaults of the command line, with a random run id and seed.
    pub fn new(url: &str) -> Options {
        Options {
            url: url.to_owned(),
            load: Load::Closed {
                concurrency: DEFAULT_CONCURRENCY,
            },
            extent: Extent::Orders(DEFAULT_ORDERS),
            skus: DEFAULT_SKUS,
            stock: DEFAULT_STOCK,
            users: DEFAULT_USERS,
            lines: DEFAULT_LINES,
            max_quantity: DEFAULT_MAX_QUANTITY,
            // Below 2^53, so that the JSON number survives any reader.
            seed: rand::random::<u64>() >> 11,
            run_id: new_run_id(),
            timeout: DEFAULT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            wait: true,
            progress: false,
        }
    }

    /// The first problem with the options, phrased for the command line.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("--url `{}`: {e}", self.url))?;
        if url.scheme() != "http" {
            return Err(format!(
                "--url `{}`: only http:// URLs are supported (run the harness next to the node or behind a plain-HTTP port)",
                self.url
            ));
        }
        if url.host_str().is_none() {
            return Err(format!("--url `{}` names no host", self.url));
        }
        match self.load {
            Load::Closed { concurrency } | Load::Sagas { concurrency } => {
                if !(1..=100_000).contains(&concurrency) {
                    return Err("--concurrency must be between 1 and 100000".to_owned());
                }
            }
            Load::Open { rate, max_in_flight } => {
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                    return Err(format!("--rate must be above 0 and at most {MAX_RATE}"));
                }
                if !(1..=100_000).contains(&max_in_flight) {
                    return Err("--max-in-flight must be between 1 and 100000".to_owned());
                }
            }
        }
        match self.extent {
            Extent::Orders(0) => return Err("--orders must be at least 1".to_owned()),
            Extent::Duration(d) if d.is_zero() => return Err("--duration must be above 0".to_owned()),
            _ => {}
        }
        if let (Extent::Duration(d), Load::Open { rate, .. }) = (self.extent, self.load)
            && (d.as_secs_f64() * rate).ceil() < 1.0
        {
            return Err("--rate × --duration must make at least one order".to_owned());
        }
        if !(1..=MAX_SKUS).contains(&self.skus) {
            return Err(format!("--skus must be between 1 and {MAX_SKUS}"));
        }
        if !(0..=MAX_STOCK).contains(&self.stock) {
            return Err(format!("--stock must be between 0 and {MAX_STOCK}"));
        }
        if !(1..=MAX_USERS).contains(&self.users) {
            return Err(format!("--users must be between 1 and {MAX_USERS}"));
        }
        if !(1..=MAX_LINES).contains(&self.lines) || self.lines > self.skus {
            return Err(format!(
                "--lines must be between 1 and {MAX_LINES}, and at most --skus ({})",
                self.skus
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&self.max_quantity) {
            return Err(format!("--max-quantity must be between 1 and {MAX_QUANTITY}"));
        }
        let id_ok = !self.run_id.is_empty()
            && self.run_id.len() <= 32
            && self.run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            return Err("--run-id must be 1-32 letters, digits or `-`".to_owned());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be above 0".to_owned());
        }
        if self.request_timeout.is_zero() {
            return Err("--request-timeout must be above 0".to_owned());
        }
        Ok(())
    }

    fn describe_load(&self) -> LoadDescription {
        match self.load {
            Load::Closed { concurrency } => LoadDescription::Closed {
                concurrency: concurrency as u64,
            },
            Load::Sagas { concurrency } => LoadDescription::Sagas {
                concurrency: concurrency as u64,
            },
            Load::Open { rate, .. } => LoadDescription::Open { rate },
        }
    }

    /// How many orders the run places, when known in advance.
    fn planned_orders(&self) -> Option<u64> {
        match (self.extent, self.load) {
            (Extent::Orders(n), _) => Some(n),
            (Extent::Duration(d), Load::Open { rate, .. }) => Some((d.as_secs_f64() * rate).ceil() as u64),
            (Extent::Duration(_), Load::Closed { .. } | Load::Sagas { .. }) => None,
        }
    }
}

/// A fresh run id: 8 hex digits.
pub fn new_run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Asks a run to stop placing orders; it then waits for what was accepted and checks as usual.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<(AtomicBool, Notify)>);

impl Interrupt {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.0.0.store(true, Ordering::Release);
        self.0.1.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.0.0.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        let notified = self.0.1.notified();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

/// What became of one order.
#[derive(Debug)]
enum Outcome {
    Accepted { order_id: String, at: Duration },
    Refused { status: Option<u16>, detail: String },
}

#[derive(Debug)]
struct Record {
    lines: Lines,
    due: Duration,
    sent: Duration,
    outcome: Outcome,
}

/// The progress display (hidden unless asked for).
struct Progress {
    multi: MultiProgress,
    placed: ProgressBar,
    ended: ProgressBar,
}

impl Progress {
    fn new(visible: bool, planned: Option<u64>) -> Progress {
        let multi = if visible {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8))
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let style = |template: &str| {
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        let placed = multi.add(match planned {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        });
        placed.set_style(style(
            "{prefix:>7} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos:>7}/{len:7} {per_sec:>12} {msg}",
        ));
        placed.set_prefix("placed");
        let ended = multi.add(ProgressBar::new(0));
        ended.set_style(style(
            "{prefix:>7} [{elapsed_precise}] {wide_bar:.green/blue} {pos:>7}/{len:7} {per_sec:>12} {msg}",
        ));
        ended.set_prefix("ended");
        Progress { multi, placed, ended }
    }

    /// Prints a line above the bars (or plainly when they are hidden).
    fn warn(&self, message: &str) {
        self.multi.suspend(|| eprintln!("warning: {message}"));
    }
}

/// State shared by the tasks that place orders.
struct Placing {
    api: Api,
    workload: Workload,
    tokens: Vec<String>,
    start: Instant,
    records: Mutex<Vec<Record>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    progress: Arc<Progress>,
}

impl Placing {
    /// Places order `n`; answers its id and its buyer's token when the node accepted it.
    async fn place(&self, n: u64, due: Duration) -> Option<(String, &str)> {
        let spec = self.workload.order(n);
        let sent = self.start.elapsed();
        let token = self.tokens.get(spec.user % self.tokens.len().max(1))?;
        let placed = self
            .api
            .place_order(token, &spec.idempotency_key, &spec.body, PLACE_ATTEMPTS)
            .await;
        let mut answer = None;
        let outcome = match placed {
            Placed::Accepted { order_id } => {
                let at = self.start.elapsed();
                let accepted = self.accepted.fetch_add(1, Ordering::AcqRel) + 1;
                self.progress.ended.set_length(accepted);
                answer = Some((order_id.clone(), token.as_str()));
                Outcome::Accepted { order_id, at }
            }
            Placed::Refused { status, detail } => {
                self.refused.fetch_add(1, Ordering::AcqRel);
                Outcome::Refused { status, detail }
            }
        };
        self.progress.placed.inc(1);
        if let Ok(mut records) = self.records.lock() {
            records.push(Record {
                lines: spec.lines,
                due,
                sent,
                outcome,
            });
        }
        answer
    }

    /// Waits until the order's saga has ended (or `deadline`), reading the order as its buyer. The first
    /// read comes after `expected` (about what the worker's sagas take), the next ones every quarter of
    /// it, so that a saga costs the node a read or two. Answers what to expect of the next saga: a little
    /// less when the first read found this one ended, else about what this one took.
    async fn until_ended(
        &self,
        token: &str,
        order_id: &str,
        expected: Duration,
        deadline: Instant,
    ) -> Duration {
        let started = Instant::now();
        let mut first = true;
        let step = (expected / 4).clamp(POLL_MIN, POLL_MAX);
        let mut pause = expected.clamp(POLL_MIN, POLL_MAX);
        loop {
            tokio::time::sleep(pause).await;
            pause = step;
            let ended = match self.api.order(token, order_id).await {
                Ok(Found::Yes(view)) => view.status != invariants::PENDING,
                // Not readable: the final wait reports it.
                Ok(Found::No) => true,
                // The node is busy or restarting: read again later.
                Err(_) => {
                    pause = POLL_MAX;
                    false
                }
            };
            if ended && first {
                return (expected * 7 / 8).max(POLL_MIN);
            }
            if ended || Instant::now() >= deadline {
                return (expected * 3 + started.elapsed()) / 4;
            }
            first = false;
        }
    }
}

/// Saga counts as the node reports them, relative to the start of the run.
#[derive(Default)]
struct Counts {
    /// Whether `GET /api/sagas` answered at all.
    available: AtomicBool,
    /// Sagas that ended since the run started (any sagas of the node, not only the run's).
    ended: AtomicU64,
    /// Sagas of the node not ended.
    in_flight: AtomicU64,
}

const TERMINAL: [&str; 3] = ["COMPLETED", "FAILED", "COMPENSATED"];

fn terminal_and_in_flight(counts: &BTreeMap<String, u64>) -> (u64, u64) {
    counts.iter().fold((0, 0), |(t, f), (state, n)| {
        if TERMINAL.contains(&state.as_str()) {
            (t + n, f)
        } else {
            (t, f + n)
        }
    })
}

/// Reads the saga counts every [`COUNTS_INTERVAL`] until `stop`.
async fn watch_counts(
    api: Api,
    admin: String,
    baseline: u64,
    counts: Arc<Counts>,
    progress: Arc<Progress>,
    stop: Arc<Notify>,
) {
    loop {
        if let Ok(page) = api.sagas(&admin, 0, 1).await {
            let (terminal, in_flight) = terminal_and_in_flight(&page.counts);
            let ended = terminal.saturating_sub(baseline);
            counts.ended.store(ended, Ordering::Release);
            counts.in_flight.store(in_flight, Ordering::Release);
            counts.available.store(true, Ordering::Release);
            progress
                .ended
                .set_position(ended.min(progress.ended.length().unwrap_or(0)));
        }
        tokio::select! {
            _ = tokio::time::sleep(COUNTS_INTERVAL) => {}
            _ = stop.notified() => return,
        }
    }
}

/// Runs the load test described by `options` against the node. `Err` when the run could not be carried
/// out; a run that broke an invariant is an `Ok` report with `invariants.ok == false`.
pub async fn run(options: &Options, interrupt: Interrupt) -> Result<Report, LoadtestError> {
    options.validate().map_err(LoadtestError::Setup)?;
    let connections = match options.load {
        Load::Closed { concurrency } | Load::Sagas { concurrency } => concurrency,
        Load::Open { max_in_flight, .. } => max_in_flight,
    } + invariants::READ_CONCURRENCY;
    let api = Api::new(&options.url, connections, options.request_timeout)?;
    let workload = Workload::new(
        &options.run_id,
        options.skus,
        options.users,
        options.lines,
        options.max_quantity,
        options.seed,
    );
    let progress = Arc::new(Progress::new(options.progress, options.planned_orders()));

    // 1. Tokens and stock.
    let admin = api
        .token(&format!("lt-{}-admin", options.run_id), &["admin"])
        .await?;
    let mut tokens = Vec::with_capacity(workload.users.len());
    for user in &workload.users {
        tokens.push(api.token(user, &["buyer"]).await?);
    }
    let stocked: Vec<Result<(), LoadtestError>> = stream::iter(&workload.skus)
        .map(|sku| api.set_stock(&admin, sku, options.stock))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    stocked.into_iter().collect::<Result<Vec<()>, _>>()?;
    let baseline = match api.sagas(&admin, 0, 1).await {
        Ok(page) => Some(terminal_and_in_flight(&page.counts).0),
        Err(e) => {
            progress.warn(&format!(
                "cannot read the saga counts ({e}); reading every order until it ends instead"
            ));
            None
        }
    };

    // 2. Orders.
    let start = Instant::now();
    let start_wall = Utc::now();
    let placing = Arc::new(Placing {
        api: api.clone(),
        workload,
        tokens,
        start,
        records: Mutex::new(Vec::with_capacity(options.planned_orders().unwrap_or(0) as usize)),
        accepted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        progress: progress.clone(),
    });
    let counts = Arc::new(Counts::default());
    let stop_watching = Arc::new(Notify::new());
    let watcher = baseline.map(|baseline| {
        tokio::spawn(watch_counts(
            api.clone(),
            admin.clone(),
            baseline,
            counts.clone(),
            progress.clone(),
            stop_watching.clone(),
        ))
    });
    place_all(options, &placing, &interrupt).await;
    let placing_took = start.elapsed();
    progress.placed.finish();

    let records = match placing.records.lock() {
        Ok(mut records) => std::mem::take(&mut *records),
        Err(_) => Vec::new(),
    };
    let accepted_ids: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Accepted { order_id, .. } => Some(order_id.clone()),
            Outcome::Refused { .. } => None,
        })
        .collect();
    let plan = Plan {
        initial_stock: placing
            .workload
            .skus
            .iter()
            .map(|s| (s.clone(), options.stock))
            .collect(),
        orders: records
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Accepted { order_id, .. } => Some((order_id.clone(), r.lines.clone())),
                Outcome::Refused { .. } => None,
            })
            .collect(),
    };

    // 3.–4. Wait, read the node, check.
    let mut skipped = Vec::new();
    let mut violations = Vec::new();
    let mut snapshot = invariants::Snapshot::default();
    if options.wait {
        let (orders, since) = wait_for_end(
            &api,
            &admin,
            &accepted_ids,
            baseline.map(|_| counts.as_ref()),
            &progress,
            options.timeout,
        )
        .await?;
        stop_watching.notify_one();
        let since = since.unwrap_or(start_wall - chrono::Duration::hours(1));
        let collected = invariants::collect(&api, &admin, &plan, orders, since).await?;
        violations = invariants::check(&collected.snapshot, &plan);
        skipped = collected.skipped;
        snapshot = collected.snapshot;
    } else {
        stop_watching.notify_one();
        skipped.push("every check: --no-wait places the orders and stops".to_owned());
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    progress.ended.finish();

    // 5. Figures.
    let timings: Vec<Timing> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Accepted { order_id, at } => {
                let saga = snapshot.sagas.get(order_id);
                Some(Timing {
                    due: r.due,
                    sent: r.sent,
                    accepted: *at,
                    saga_started_at: saga.map(|s| s.started_at),
                    saga_completed_at: saga.and_then(|s| s.completed_at),
                })
            }
            Outcome::Refused { .. } => None,
        })
        .collect();
    let figures = report::figures(start_wall, &timings, placing_took)
        .map_err(|e| LoadtestError::Output(format!("latency histogram: {e}")))?;
    if !figures.clock_consistent {
        progress.warn(&format!(
            "the node's clock does not agree with the order timings (estimated offset {:.1} ms); \
             completion latencies are approximate",
            figures.clock_offset_ms
        ));
    }
    let status_count = |status: &str| {
        snapshot
            .orders
            .values()
            .filter(|o| o.as_ref().is_some_and(|o| o.status == status))
            .count() as u64
    };
    let confirmed = status_count(invariants::CONFIRMED);
    let failed = status_count(invariants::FAILED);
    let not_ended = if options.wait {
        status_count(invariants::PENDING)
    } else {
        accepted_ids.len() as u64
    };
    let compensated = snapshot
        .sagas
        .values()
        .filter(|s| s.state == invariants::SAGA_COMPENSATED)
        .count() as u64;
    let mut rejections: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        if let Outcome::Refused { status, detail } = &r.outcome {
            let reason = match status {
                Some(status) => format!("{status}: {detail}"),
                None => detail.clone(),
            };
            *rejections.entry(reason).or_default() += 1;
        }
    }
    let completed = confirmed + failed;
    let accepted_count = accepted_ids.len() as u64;
    Ok(Report {
        orders: records.len() as u64,
        accepted: accepted_count,
        completed,
        confirmed,
        failed,
        duration_seconds: (figures.duration.as_secs_f64() * 1_000.0).round() / 1_000.0,
        orders_per_second: report::per_second(completed, figures.duration),
        latency_ms: figures.latency,
        invariants: InvariantReport {
            ok: violations.is_empty(),
            violations,
            skipped,
        },
        run_id: options.run_id.clone(),
        url: api.base().to_owned(),
        load: options.describe_load(),
        skus: u64::from(options.skus),
        stock: options.stock,
        seed: options.seed,
        started_at: start_wall,
        rejected: records.len() as u64 - accepted_count,
        rejections,
        compensated,
        not_ended,
        waited: options.wait,
        accepted_per_second: report::per_second(accepted_count, placing_took),
        clock_offset_ms: figures.clock_offset_ms,
        timeline: figures.timeline,
    })
}

/// Places every order of the run, closed or open loop, until done or interrupted.
async fn place_all(options: &Options, placing: &Arc<Placing>, interrupt: &Interrupt) {
    let mut tasks = JoinSet::new();
    match options.load {
        Load::Closed { concurrency } | Load::Sagas { concurrency } => {
            let whole_sagas = matches!(options.load, Load::Sagas { .. });
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..concurrency {
                let placing = placing.clone();
                let next = next.clone();
                let interrupt = interrupt.clone();
                let extent = options.extent;
                let timeout = options.timeout;
                tasks.spawn(async move {
                    let mut expected = FIRST_EXPECTED;
                    while !interrupt.is_set() {
                        let n = next.fetch_add(1, Ordering::AcqRel);
                        let more = match extent {
                            Extent::Orders(total) => n < total,
                            Extent::Duration(d) => placing.start.elapsed() < d,
                        };
                        if !more {
                            break;
                        }
                        let due = placing.start.elapsed();
                        let placed = placing.place(n, due).await;
                        if let (true, Some((order_id, token))) = (whole_sagas, placed) {
                            let deadline = Instant::now() + timeout;
                            tokio::select! {
                                next = placing.until_ended(token, &order_id, expected, deadline) => expected = next,
                                _ = interrupt.wait() => break,
                            }
                        }
                    }
                });
            }
        }
        Load::Open { rate, max_in_flight } => {
            let total = options.planned_orders().unwrap_or(0);
            let permits = Arc::new(Semaphore::new(max_in_flight));
            let start = tokio::time::Instant::from_std(placing.start);
            for n in 0..total {
                let due = Duration::from_secs_f64(n as f64 / rate);
                tokio::select! {
                    _ = tokio::time::sleep_until(start + due) => {}
                    _ = interrupt.wait() => break,
                }
                let permit = tokio::select! {
                    permit = permits.clone().acquire_owned() => permit,
                    _ = interrupt.wait() => break,
                };
                let Ok(permit) = permit else { break };
                let placing = placing.clone();
                tasks.spawn(async move {
                    placing.place(n, due).await;
                    drop(permit);
                });
                // Keep the set small: collect what has finished.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits until every accepted order has ended or `timeout` passes. Returns the last state read of each
/// order, and the node's earliest `createdAt` among them (the start of the run on the node's clock).
async fn wait_for_end(
    api: &Api,
    admin: &str,
    accepted: &[String],
    counts: Option<&Counts>,
    progress: &Progress,
    timeout: Duration,
) -> Result<(BTreeMap<String, Option<OrderState>>, Option<DateTime<Utc>>), LoadtestError> {
    let deadline = Instant::now() + timeout;
    let total = accepted.len() as u64;
    progress.ended.set_length(total);
    // While the counts say sagas are still running, do not read orders one by one.
    if let Some(counts) = counts {
        progress.ended.set_message("watching the saga counts");
        while Instant::now() < deadline {
            let available = counts.available.load(Ordering::Acquire);
            let ended = counts.ended.load(Ordering::Acquire);
            let in_flight = counts.in_flight.load(Ordering::Acquire);
            if !available || ended >= total || in_flight == 0 {
                break;
            }
            tokio::time::sleep(COUNTS_INTERVAL / 5).await;
        }
    }
    progress.ended.set_message("reading the orders");
    let mut states: BTreeMap<String, Option<OrderState>> = BTreeMap::new();
    let mut since: Option<DateTime<Utc>> = None;
    let mut pending: Vec<String> = accepted.to_vec();
    loop {
        let read: Vec<Result<(String, Found<client::OrderView>), LoadtestError>> = stream::iter(&pending)
            .map(|id| async move { Ok((id.clone(), api.order(admin, id).await?)) })
            .buffer_unordered(invariants::READ_CONCURRENCY)
            .collect()
            .await;
        let mut still = Vec::new();
        for result in read {
            let (id, found) = result?;
            match found {
                Found::Yes(view) => {
                    since = Some(since.map_or(view.created_at, |s| s.min(view.created_at)));
                    if view.status == invariants::PENDING {
                        still.push(id.clone());
                    }
                    states.insert(id, Some(OrderState::from(&view)));
                }
                Found::No => {
                    states.insert(id, None);
                }
            }
        }
        pending = still;
        progress.ended.set_position(total - pending.len() as u64);
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            progress.warn(&format!(
                "{} accepted order(s) had not ended {:.0} s after the last order was placed (see --timeout)",
                pending.len(),
                timeout.as_secs_f64()
            ));
            break;
        }
        progress
            .ended
            .set_message(format!("{} still pending", pending.len()));
        tokio::time::sleep(PENDING_INTERVAL).await;
    }
    progress.ended.set_message("");
    // A second's margin: the node truncates timestamps and sagas start inside the order's transaction.
    Ok((states, since.map(|s| s - chrono::Duration::seconds(1))))
}

/// Writes the JSON report to `path` and the chart beside it (same name, `.svg`); returns the chart's path.
pub fn write_outputs(report: &Report, path: &Path) -> Result<PathBuf, LoadtestError> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| LoadtestError::Output(format!("cannot encode the report: {e}")))?;
    std::fs::write(path, json + "\n")
        .map_err(|e| LoadtestError::Output(format!("cannot write {}: {e}", path.display())))?;
    let chart = path.with_extension("svg");
    std::fs::write(&chart, chart::svg(report))
        .map_err(|e| LoadtestError::Output(format!("cannot write {}: {e}", chart.display())))?;
    Ok(chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Options::new(DEFAULT_URL).validate(), Ok(()));
    }

    type Change = Box<dyn Fn(&mut Options)>;

    #[test]
    fn bad_options_are_named() {
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|o| o.url = "ftp://x".into()), "--url"),
            (Box::new(|o| o.url = "https://x".into()), "only http://"),
            (Box::new(|o| o.url = "not a url".into()), "--url"),
            (Box::new(|o| o.extent = Extent::Orders(0)), "--orders"),
            (
                Box::new(|o| o.extent = Extent::Duration(Duration::ZERO)),
                "--duration",
            ),
            (
                Box::new(|o| o.load = Load::Closed { concurrency: 0 }),
                "--concurrency",
            ),
            (
                Box::new(|o| {
                    o.load = Load::Open {
                        rate: 0.0,
                        max_in_flight: 10,
                    }
                }),
                "--rate",
            ),
            (
                Box::new(|o| {
                    o.load = Load::Open {
                        rate: f64::NAN,
                        max_in_flight: 10,
                    }
                }),
                "--rate",
            ),
            (Box::new(|o| o.skus = 0), "--skus"),
            (Box::new(|o| o.stock = -1), "--stock"),
            (Box::new(|o| o.users = 0), "--users"),
            (
                Box::new(|o| {
                    o.skus = 2;
                    o.lines = 3
                }),
                "--lines",
            ),
            (Box::new(|o| o.max_quantity = 0), "--max-quantity"),
            (Box::new(|o| o.run_id = "no spaces".into()), "--run-id"),
            (Box::new(|o| o.timeout = Duration::ZERO), "--timeout"),
        ];
        for (change, flag) in cases {
            let mut options = Options::new(DEFAULT_URL);
            change(&mut options);
            let err = options.validate().expect_err(flag);
            assert!(err.contains(flag), "{err} should name {flag}");
        }
    }

    #[test]
    fn open_loop_plans_rate_times_duration() {
        let mut options = Options::new(DEFAULT_URL);
        options.load = Load::Open {
            rate: 250.0,
            max_in_flight: 10,
        };
        options.extent = Extent::Duration(Duration::from_secs(3));
        assert_eq!(options.planned_orders(), Some(750));
        options.load = Load::Closed { concurrency: 4 };
        assert_eq!(options.planned_orders(), None);
    }

    #[test]
    fn counts_split_into_ended_and_running() {
        let counts: BTreeMap<String, u64> = [
            ("AWAITING_INVENTORY", 3),
            ("AWAITING_PAYMENT", 2),
            ("COMPENSATING", 1),
            ("COMPLETED", 10),
            ("FAILED", 4),
            ("COMPENSATED", 5),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(terminal_and_in_flight(&counts), (19, 6));
    }
}
