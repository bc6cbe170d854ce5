//! Stopping consumers between two batches: a worker holds a [`Stop`] and checks it before it takes the
//! next batch; [`Stopper::stop`] returns once every worker has let go of its `Stop`, so a batch being
//! applied (one transaction) finishes whole instead of being cut off.

use std::sync::Mutex;

use tokio::sync::{mpsc, watch};

/// Held by the one who stops the workers.
pub struct Stopper {
    stopping: watch::Sender<bool>,
    /// Cloned into every `Stop`; dropped by `stop`, so that `gone` ends once the workers have gone.
    alive: Mutex<Option<mpsc::Sender<()>>>,
    gone: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// Held by one worker for as long as it runs.
#[derive(Clone)]
pub struct Stop {
    stopping: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Default for Stopper {
    fn default() -> Self {
        Self::new()
    }
}

impl Stopper {
    pub fn new() -> Self {
        let (stopping, _) = watch::channel(false);
        let (alive, gone) = mpsc::channel(1);
        Self {
            stopping,
            alive: Mutex::new(Some(alive)),
            gone: tokio::sync::Mutex::new(gone),
        }
    }

    /// A `Stop` for a new worker, or `None` once stopping has begun (no new worker starts then).
    pub fn worker(&self) -> Option<Stop> {
        let alive = self.alive.lock().ok()?.clone()?;
        Some(Stop {
            stopping: self.stopping.subscribe(),
            _alive: alive,
        })
    }

    /// Whether stopping has begun.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Tells every worker to stop and waits until all have (bound it with a timeout).
    pub async fn stop(&self) {
        self.stopping.send_replace(true);
        if let Ok(mut alive) = self.alive.lock() {
            alive.take();
        }
        // `None` once the last `Stop` is dropped.
        while self.gone.lock().await.recv().await.is_some() {}
    }
}

impl Stop {
    /// Whether the worker should stop before taking more work.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Resolves once stopping has begun.
    pub async fn stopping(&mut self) {
        let _ = self.stopping.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_waits_for_the_worker_to_finish_its_batch() {
        let stopper = std::sync::Arc::new(Stopper::new());
        let mut stop = stopper.worker().expect("not stopping yet");
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
        let worker = tokio::spawn(async move {
            stop.stopping().await;
            // The batch in hand is still applied after the signal.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = finished_tx.send(());
            drop(stop);
        });
        stopper.stop().await;
        assert!(
            finished_rx.try_recv().is_ok(),
            "stop returned before the worker finished"
        );
        assert!(stopper.worker().is_none(), "no new worker once stopping");
        worker.await.expect("worker");
    }

    #[tokio::test]
    async fn stop_with_no_worker_returns_at_once() {
        let stopper = Stopper::new();
        tokio::time::timeout(Duration::from_secs(1), stopper.stop())
            .await
            .expect("nothing to wait for");
        assert!(stopper.is_stopping());
    }
}
