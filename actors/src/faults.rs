//! Fault-injection points for the tests (the `fail` crate). They exist only in a build with the
//! `failpoints` feature, which the test build turns on and `cargo build`/`cargo run` do not; such a build
//! reads them from the `FAILPOINTS` variable (`name=return(arg);…`) at start.
//!
//! | point | with `return(KEY)` |
//! | --- | --- |
//! | `outbox-claimed` | the process dies (SIGABRT, like `kill -9`) right after the relay claimed a batch holding an event with routing key `KEY`, before publishing it |
//! | `outbox-hold` | the relay keeps events with routing key `KEY` claimed and never publishes them (a frozen node) |
//! | `archive-chunk-done` | with `return(MS)`: an archive run waits MS milliseconds after each committed chunk (so a test can interrupt it between two) |
//! | `archive-in-chunk` | with `return(MS)`: each archive chunk waits MS milliseconds inside its transaction, before the commit, and logs a warning saying so (so a test can interrupt it mid-chunk) |
//! | `commit-unanswered` | a unit of work that wrote an event with routing key `KEY` to the outbox commits, and its caller is told the commit failed (as when the connection is lost after `COMMIT`) |
//! | `commit-outlived` | after a unit of work that wrote an event with routing key `KEY` has committed, its rows are handed to the relay only once the unit's caller has given it up (past `database.work_timeout_seconds`) |
//! | `consume-fails` | with `return(PREFIX@N,…)`: a delivery whose event id starts with `PREFIX` fails transiently while its attempt is below `N` |

/// Reads `FAILPOINTS` (in a build with fault injection; otherwise does nothing).
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    {
        if std::env::var_os("FAILPOINTS").is_some() {
            tracing::warn!(failpoints = ?std::env::var("FAILPOINTS").ok(), "fault injection is on");
        }
        // The scenario lives as long as the process.
        std::mem::forget(fail::FailScenario::setup());
    }
}

/// Whether the point `consume-fails` makes this delivery fail (see the table above).
pub fn consume_fails(event_id: &str, attempt: u32) -> bool {
    let Some(rules) = armed("consume-fails") else {
        return false;
    };
    rules.split(',').any(|rule| match rule.split_once('@') {
        Some((prefix, below)) => {
            event_id.starts_with(prefix) && below.trim().parse::<u32>().is_ok_and(|n| attempt < n)
        }
        None => false,
    })
}

/// The argument of the point `name` when it is configured with `return(arg)`.
pub fn armed(name: &str) -> Option<String> {
    if !fail::has_failpoints() {
        return None;
    }
    fail::eval(name, |arg| arg).flatten()
}
