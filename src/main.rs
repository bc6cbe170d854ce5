//! `ordersaga`: serve, migrate, archive, loadtest. Everything happens in the library; this parses the command line.

use clap::Parser;

/// mimalloc: the engine allocates many small, short-lived buffers (statements, rows, envelopes) across
/// threads, where it is measurably cheaper than the system allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ordersaga::cli::run(ordersaga::cli::Cli::parse())
}
