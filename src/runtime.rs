//! Running an actix system to completion.

use std::future::Future;

/// Runs `fut` on a new actix system and tears the system down afterwards.
///
/// Tasks still alive when the system stops (a consumer in the middle of a transaction, say) are dropped
/// after actix's runtime has gone, and dropping a pooled database connection hands it back through a
/// spawned task. A spare tokio runtime stays entered while that happens, so such a drop finds a runtime
/// instead of panicking; its tasks are dropped unrun with it.
pub fn block_on<F: Future>(fut: F) -> std::io::Result<F::Output> {
    let spare = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _context = spare.enter();
    let system = actix_web::rt::System::new();
    let output = system.block_on(fut);
    drop(system);
    Ok(output)
}
