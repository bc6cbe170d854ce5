//! `ordersaga loadtest` on the command line: its flags, its runtime, its output and exit status.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{Extent, Interrupt, Load, Options};
use crate::loadtest;

/// The flags of `ordersaga loadtest`. It needs no settings and no database: only the node's URL.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Base URL of the node.
    #[arg(long, default_value = loadtest::DEFAULT_URL)]
    pub url: String,
    /// Orders to place [default: 4000, or as many as fit in --duration].
    #[arg(long, conflicts_with = "duration")]
    pub orders: Option<u64>,
    /// Seconds to place orders for, instead of a number of orders (open loop: rate × duration orders).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Closed loop: workers, each placing its next order once the previous one was answered [default: 32].
    #[arg(long, conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Closed loop over whole sagas: each worker places its next order once the previous one's saga has
    /// ended (it reads the order until then), so `--concurrency` sagas are in flight, as with the peer's
    /// driver.
    #[arg(long, conflicts_with = "rate")]
    pub whole_sagas: bool,
    /// Open loop: orders per second, due on a fixed schedule whatever the answers.
    #[arg(long, value_name = "PER_SECOND", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Open loop: most orders waiting for an answer at once (later ones wait; their latency counts
    /// from when they were due).
    #[arg(long, default_value_t = loadtest::DEFAULT_MAX_IN_FLIGHT, requires = "rate")]
    pub max_in_flight: usize,
    /// Fresh SKUs to stock for the run (`LT-<run>-NNN`).
    #[arg(long, default_value_t = loadtest::DEFAULT_SKUS)]
    pub skus: u32,
    /// Stock of each SKU.
    #[arg(long, default_value_t = loadtest::DEFAULT_STOCK, allow_negative_numbers = true)]
    pub stock: i64,
    /// Buyers the orders are spread over.
    #[arg(long, default_value_t = loadtest::DEFAULT_USERS)]
    pub users: u32,
    /// Lines (distinct SKUs) per order.
    #[arg(long, default_value_t = loadtest::DEFAULT_LINES)]
    pub lines: u32,
    /// Each line's quantity is drawn from 1 to this.
    #[arg(long, default_value_t = loadtest::DEFAULT_MAX_QUANTITY)]
    pub max_quantity: u32,
    /// Seed of the order contents [default: random; the report names it].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Names the run's SKUs, buyers and idempotency keys; must be new to the node [default: random].
    #[arg(long)]
    pub run_id: Option<String>,
    /// Seconds to wait for the sagas to end after the last order was placed.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, default_value_t = loadtest::DEFAULT_TIMEOUT.as_secs_f64())]
    pub timeout: f64,
    /// Seconds one HTTP request may take.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true, default_value_t = loadtest::DEFAULT_REQUEST_TIMEOUT.as_secs_f64())]
    pub request_timeout: f64,
    /// Place the orders and stop: no waiting, no checks (e.g. to fill a node with sagas in flight).
    #[arg(long)]
    pub no_wait: bool,
    /// Write the report as JSON to FILE, and the chart beside it (FILE with `.svg`).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress bars (they are drawn only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Threads of the harness's runtime. One (a current-thread runtime) leaves the most CPU to a node on
    /// the same machine and measured fastest there; more help a harness that drives a remote node hard.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Seconds from the command line as a duration.
fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("--{flag} must be a number of seconds ≥ 0"))
}

impl LoadtestArgs {
    /// The run's options, or the first problem with the flags.
    pub fn options(&self) -> Result<Options, String> {
        let mut options = Options::new(&self.url);
        options.load = match (self.rate, self.concurrency) {
            (Some(rate), _) => Load::Open {
                rate,
                max_in_flight: self.max_in_flight,
            },
            (None, concurrency) => {
                let concurrency = concurrency.unwrap_or(loadtest::DEFAULT_CONCURRENCY);
                if self.whole_sagas {
                    Load::Sagas { concurrency }
                } else {
                    Load::Closed { concurrency }
                }
            }
        };
        options.extent = match (self.orders, self.duration) {
            (_, Some(duration)) => Extent::Duration(seconds("duration", duration)?),
            (Some(orders), None) => Extent::Orders(orders),
            (None, None) => options.extent,
        };
        options.skus = self.skus;
        options.stock = self.stock;
        options.users = self.users;
        options.lines = self.lines;
        options.max_quantity = self.max_quantity;
        if let Some(seed) = self.seed {
            options.seed = seed;
        }
        if let Some(run_id) = &self.run_id {
            options.run_id = run_id.clone();
        }
        options.timeout = seconds("timeout", self.timeout)?;
        options.request_timeout = seconds("request-timeout", self.request_timeout)?;
        options.wait = !self.no_wait;
        options.progress = !self.no_progress && std::io::stderr().is_terminal();
        if !(1..=64).contains(&self.threads) {
            return Err("--threads must be between 1 and 64".to_owned());
        }
        options.validate()?;
        Ok(options)
    }
}

/// Runs `ordersaga loadtest` on a runtime of its own (`--threads`), without settings or a database, and
/// turns the outcome into the exit status.
pub fn run(args: LoadtestArgs) -> ExitCode {
    let options = match args.options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("ordersaga loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ordersaga loadtest: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let outcome = runtime.block_on(async {
        let interrupt = Interrupt::new();
        let on_signal = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "ordersaga loadtest: interrupted: no more orders; waiting for the accepted ones, then \
                     checking (interrupt again to abort)"
                );
                on_signal.trigger();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        loadtest::run(&options, interrupt).await
    });
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            eprintln!("ordersaga loadtest: {e}");
            return ExitCode::from(3);
        }
    };
    print!("{}", loadtest::report::render_summary(&report));
    if let Some(path) = &args.json {
        match loadtest::write_outputs(&report, path) {
            Ok(chart) => println!("  report        {} (chart {})", path.display(), chart.display()),
            Err(e) => {
                eprintln!("ordersaga loadtest: {e}");
                return ExitCode::from(3);
            }
        }
    }
    if report.invariants.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
