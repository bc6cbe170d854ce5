//! The command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::archive::ArchiveArgs;
use crate::config::Settings;
use crate::loadtest::command::LoadtestArgs;
use crate::{archive, database, loadtest, observability, startup};

/// An actor-based order saga engine.
#[derive(Debug, Parser)]
#[command(name = "ordersaga", version, about)]
pub struct Cli {
    /// Configuration file (default: ./ordersaga.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations and serve the HTTP API and the saga engine.
    Serve {
        /// Listen address, overriding `bind` / ORDERSAGA_BIND.
        #[arg(long, value_name = "HOST:PORT")]
        bind: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Move terminal orders older than --older-than-days to the archive now, in chunks, and exit.
    ///
    /// The configured database (the settings of `serve`) must be migrated. Safe to interrupt (Ctrl-C,
    /// SIGTERM: the chunk in progress finishes, then it stops) and to run again (it archives what is
    /// left). Exit status: 0 done, 1 the database failed, 2 bad flags or settings, 130 interrupted.
    Archive(ArchiveArgs),
    /// Print the effective settings (defaults, then the file, then the environment) as TOML, with
    /// secrets and passwords in URLs shown as `***`, and exit.
    Config,
    /// Drive a running node with orders, wait for their sagas, check that nothing was lost.
    ///
    /// Exit status: 0 when every invariant holds, 1 when one is broken (or an accepted order did not
    /// end in time), 2 for bad flags, 3 when the run could not be carried out (node unreachable, set-up
    /// refused, report not written).
    Loadtest(LoadtestArgs),
}

/// Runs a command and turns the outcome into the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let command = match cli.command {
        Command::Loadtest(args) => return loadtest::command::run(args),
        command => command,
    };
    if let Command::Archive(args) = &command
        && let Err(e) = args.plan()
    {
        eprintln!("ordersaga archive: {e}");
        return ExitCode::from(archive::EXIT_BAD_ARGUMENTS);
    }
    let mut settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ordersaga: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve { bind: Some(bind) } = &command {
        settings.bind = bind.clone();
        if let Err(e) = settings.validate() {
            eprintln!("ordersaga: {e}");
            return ExitCode::from(2);
        }
    }
    if let Command::Config = command {
        return match settings.to_redacted_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ordersaga: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let _telemetry = observability::init_tracing(&settings);
    actors::faults::setup_from_env();
    let command = match command {
        Command::Archive(args) => return archive::run(args, settings),
        command => command,
    };

    let result = crate::runtime::block_on(async move {
        match command {
            Command::Serve { .. } => {
                let app = startup::Application::build(settings).await?;
                app.run_until_stopped().await
            }
            Command::Migrate => {
                let db = database::connect(&settings).await?;
                database::migrate(&db).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            // Handled above.
            Command::Loadtest(_) | Command::Archive(_) | Command::Config => Ok(()),
        }
    });
    match result.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ordersaga: {e:#}");
            ExitCode::FAILURE
        }
    }
}
