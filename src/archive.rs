//! `ordersaga archive`: the archive batch on demand, against the configured database (the settings of
//! `serve`, `--config` too). The daily run inside `serve` stays; both move orders the same way
//! ([`actors::archive::archive_old_orders`]): in chunks of one transaction each.
//!
//! It shows progress (a bar on a terminal, a plain line per chunk otherwise), stops between chunks on
//! Ctrl-C or SIGTERM (the chunk in progress commits first; a second signal stops at once, and the
//! database rolls that chunk back whole), and can be run again at any time: a rerun archives what is
//! left, nothing twice. `--dry-run` counts and changes nothing.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use migration::{Migrator, MigratorTrait};

use crate::config::Settings;
use crate::database;
use actors::archive::{self, ArchiveOutcome, ArchiveProgress};

/// Largest `--older-than-days`: a hundred years.
pub const MAX_DAYS: u32 = 36_500;
/// Largest `--chunk-size` (and `archive.chunk_size`): the ids of a chunk are bound parameters of one
/// statement, and PostgreSQL allows 65 535 of them.
pub const MAX_CHUNK_SIZE: u64 = actors::config::MAX_ARCHIVE_CHUNK_SIZE;
/// Exit status of a run stopped by a signal (what the chunks committed so far archived stays archived).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status for bad flags or settings.
pub const EXIT_BAD_ARGUMENTS: u8 = 2;

/// The flags of `ordersaga archive`. Values are read as text and checked here, so that a bad one is
/// refused with one line naming it.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Archive terminal orders (CONFIRMED, FAILED) last updated more than DAYS days ago (1 to 36500).
    #[arg(long, value_name = "DAYS", allow_negative_numbers = true)]
    pub older_than_days: Option<String>,
    /// Orders moved per transaction, 1 to 10000 [default: the setting archive.chunk_size, 500].
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub chunk_size: Option<String>,
    /// Count the orders a run would archive, and the chunks, without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// What to do, once the flags are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchivePlan {
    pub older_than_days: u32,
    /// `None`: the setting `archive.chunk_size`.
    pub chunk_size: Option<u64>,
    pub dry_run: bool,
}

fn whole_number(flag: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "--{flag} must be a whole number from {min} to {max}, not `{}`",
            crate::routes::paging::quoted(value)
        )),
    }
}

impl ArchiveArgs {
    /// The plan, or the first problem with the flags (one line).
    pub fn plan(&self) -> Result<ArchivePlan, String> {
        let days = self
            .older_than_days
            .as_deref()
            .ok_or("--older-than-days DAYS is required (the age of the orders to archive)")?;
        let older_than_days = whole_number("older-than-days", days, 1, u64::from(MAX_DAYS))?;
        let chunk_size = match &self.chunk_size {
            Some(k) => Some(whole_number("chunk-size", k, 1, MAX_CHUNK_SIZE)?),
            None => None,
        };
        Ok(ArchivePlan {
            older_than_days: u32::try_from(older_than_days).unwrap_or(MAX_DAYS),
            chunk_size,
            dry_run: self.dry_run,
        })
    }
}

/// How a run went, for the summary.
struct Summary {
    cutoff: DateTime<Utc>,
    chunk_size: u64,
    dry_run: bool,
    outcome: ArchiveOutcome,
    seconds: f64,
}

impl Summary {
    fn render(&self) -> String {
        let cutoff = self.cutoff.to_rfc3339_opts(SecondsFormat::Secs, true);
        let verb = if self.dry_run { "would archive" } else { "archived" };
        let mut text = if self.dry_run {
            format!(
                "ordersaga archive (dry run: nothing changed) — terminal orders last updated before {cutoff}\n"
            )
        } else {
            format!("ordersaga archive — terminal orders last updated before {cutoff}\n")
        };
        text.push_str(&format!("  {verb:<14}{} orders\n", self.outcome.archived));
        text.push_str(&format!(
            "  {:<14}{} (up to {} orders each)\n",
            "chunks", self.outcome.chunks, self.chunk_size
        ));
        text.push_str(&format!("  {:<14}{:.2}\n", "seconds", self.seconds));
        text
    }
}

/// The progress display: a bar on a terminal, else a line per committed chunk on standard error.
#[derive(Clone)]
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            eprintln!("ordersaga archive: {total} orders to archive");
            return Progress { bar: None, total };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
        let style = ProgressStyle::with_template(
            "archiving [{elapsed_precise}] {wide_bar:.cyan/blue} {pos:>7}/{len:7} orders {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress {
            bar: Some(bar),
            total,
        }
    }

    fn chunk_done(&self, p: &ArchiveProgress) {
        match &self.bar {
            Some(bar) => {
                // Orders that became old since the count stretch the bar rather than overflow it.
                if p.archived > bar.length().unwrap_or(0) {
                    bar.set_length(p.archived);
                }
                bar.set_position(p.archived);
                bar.set_message(format!("chunk {}", p.chunks));
            }
            None => eprintln!(
                "ordersaga archive: chunk {} committed: {} orders in it, {} of {} archived",
                p.chunks,
                p.in_chunk,
                p.archived,
                self.total.max(p.archived)
            ),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// A line on standard error, above the bar if there is one.
    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, listened to from the moment this is made.
struct Interrupts {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    fn listen() -> Interrupts {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Interrupts {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Interrupts {}
    }

    /// Waits for the next signal (forever, if none can be listened to).
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn on(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = on(&mut self.term) => {}
                _ = on(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The run itself, on a connected database.
async fn archive(settings: &Settings, plan: ArchivePlan) -> anyhow::Result<Summary> {
    let db = database::connect(settings).await?;
    let pending = Migrator::get_pending_migrations(&db)
        .await
        .context("cannot read the database's migrations")?;
    if !pending.is_empty() {
        anyhow::bail!(
            "the database lacks {} migration(s): run `ordersaga migrate` (or `serve`) first",
            pending.len()
        );
    }
    let chunk_size = plan.chunk_size.unwrap_or(settings.archive.chunk_size);
    let cutoff = archive::cutoff(actors::db::now(), plan.older_than_days);
    let started = Instant::now();
    let total = archive::count_archivable(&db, cutoff)
        .await
        .context("counting the orders to archive failed")?;
    if plan.dry_run {
        let outcome = ArchiveOutcome {
            chunks: total.div_ceil(chunk_size),
            archived: total,
            stopped: false,
        };
        return Ok(Summary {
            cutoff,
            chunk_size,
            dry_run: true,
            outcome,
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    let mut interrupts = Interrupts::listen();
    let progress = Progress::new(total);
    let stop = Arc::new(AtomicBool::new(false));
    let (on_signal, note) = (stop.clone(), progress.clone());
    actix_web::rt::spawn(async move {
        interrupts.next().await;
        on_signal.store(true, Ordering::SeqCst);
        note.say(
            "ordersaga archive: interrupted: the chunk in progress finishes, then the run stops \
             (interrupt again to stop at once: that chunk is rolled back)",
        );
        interrupts.next().await;
        eprintln!("ordersaga archive: stopped at once; the chunk in progress is rolled back");
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
    let outcome = archive::archive_old_orders(
        &db,
        cutoff,
        chunk_size,
        |p| progress.chunk_done(p),
        || stop.load(Ordering::SeqCst),
    )
    .await
    .context("archiving failed (the chunk in progress was rolled back; the ones before it stay archived)");
    progress.finish();
    Ok(Summary {
        cutoff,
        chunk_size,
        dry_run: false,
        outcome: outcome?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `ordersaga archive` and turns the outcome into the exit status: `0` done (or counted), `1` the
/// database failed, `2` bad flags or settings, `130` interrupted.
pub fn run(args: ArchiveArgs, settings: Settings) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("ordersaga archive: {e}");
            return ExitCode::from(EXIT_BAD_ARGUMENTS);
        }
    };
    let result = crate::runtime::block_on(archive(&settings, plan));
    let summary = match result.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("ordersaga archive: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", summary.render());
    if summary.outcome.stopped {
        eprintln!(
            "ordersaga archive: interrupted after {} chunk(s): {} orders archived, each chunk whole; \
             run the command again to archive the rest",
            summary.outcome.chunks, summary.outcome.archived
        );
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(days: Option<&str>, chunk: Option<&str>) -> ArchiveArgs {
        ArchiveArgs {
            older_than_days: days.map(str::to_owned),
            chunk_size: chunk.map(str::to_owned),
            dry_run: false,
        }
    }

    #[test]
    fn flags_are_checked() {
        assert!(args(None, None).plan().is_err());
        for days in ["0", "-3", "abc", "", "36501", "1.5"] {
            let e = args(Some(days), None).plan().unwrap_err();
            assert!(e.contains("--older-than-days"), "{days}: {e}");
        }
        for chunk in ["0", "-1", "x", "10001"] {
            let e = args(Some("30"), Some(chunk)).plan().unwrap_err();
            assert!(e.contains("--chunk-size"), "{chunk}: {e}");
        }
        assert_eq!(
            args(Some("30"), Some("7")).plan(),
            Ok(ArchivePlan {
                older_than_days: 30,
                chunk_size: Some(7),
                dry_run: false
            })
        );
        assert_eq!(args(Some("1"), None).plan().map(|p| p.chunk_size), Ok(None));
    }
}
