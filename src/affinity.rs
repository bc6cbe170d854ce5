//! Keeping the engine and its SQLite connection on one core.
//!
//! On SQLite every statement is handed from the engine's thread to the connection's own thread (sqlx runs
//! each SQLite connection on a thread of its own) and the answer handed back: two wake-ups per statement.
//! When the two threads sit on different cores, each wake-up crosses cores, which on a virtual machine
//! costs tens of microseconds of nobody running; on one core it is a plain switch. Pinning the thread that
//! builds the engine before the connection opens puts both there (a new thread inherits its creator's
//! cores); the HTTP workers, started later from the same thread, give the pin up again and run anywhere.
//! docs/performance.md has the measurements.

/// The cores the process could use before the calling thread was pinned.
#[derive(Clone, Copy, Debug)]
pub struct Pinned {
    #[cfg(target_os = "linux")]
    original: nix::sched::CpuSet,
    /// The core the thread was pinned to.
    pub core: usize,
}

#[cfg(target_os = "linux")]
mod imp {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;

    use super::Pinned;

    pub fn pin_current_thread() -> Option<Pinned> {
        let this = Pid::from_raw(0);
        let original = sched_getaffinity(this).ok()?;
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&cpu| original.is_set(cpu).unwrap_or(false))
            .collect();
        if allowed.len() < 2 {
            return None;
        }
        let core = *allowed.first()?;
        let mut one = CpuSet::new();
        one.set(core).ok()?;
        sched_setaffinity(this, &one).ok()?;
        Some(Pinned { original, core })
    }

    pub fn release_current_thread(pinned: &Pinned) {
        if let Err(e) = sched_setaffinity(Pid::from_raw(0), &pinned.original) {
            tracing::warn!(error = %e, "could not unpin a thread");
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Pinned;

    pub fn pin_current_thread() -> Option<Pinned> {
        None
    }

    pub fn release_current_thread(_: &Pinned) {}
}

/// Pins the calling thread to the first core it may use. `None` (and nothing changed) when it may use
/// only one core, or where the system does not let it.
pub fn pin_current_thread() -> Option<Pinned> {
    imp::pin_current_thread()
}

impl Pinned {
    /// Gives the calling thread (one started from the pinned thread) every core the process had.
    pub fn release_current_thread(&self) {
        imp::release_current_thread(self)
    }
}
