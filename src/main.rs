//! `ordersaga`: serve, migrate, loadtest. Everything happens in the library; this parses the command line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    ordersaga::cli::run(ordersaga::cli::Cli::parse())
}
