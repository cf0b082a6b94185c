//! Background work with an owner (pingora's `background.rs`): every task a service
//! starts (probes, prefetch, fills) is spawned through a [`Background`], and
//! [`Background::shutdown`] stops them all and waits until they have.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The owner of a service's background tasks. Clones share the same set of tasks.
#[derive(Debug, Clone, Default)]
pub struct Background {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Background {
    /// An owner with no tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task` on the current runtime; it is dropped at its next await point once
    /// shutdown begins.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(&tokio::runtime::Handle::current(), name, task);
    }

    /// Like [`spawn`](Self::spawn), on a given runtime.
    pub fn spawn_on<F>(&self, runtime: &tokio::runtime::Handle, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn_on(
            async move {
                tokio::select! {
                    () = cancel.cancelled() => tracing::debug!(task = name, "background task stopped"),
                    () = task => {}
                }
            },
            runtime,
        );
    }

    /// Spawns `task` to run at once and then every `interval` (a late run delays the
    /// next) until shutdown.
    pub fn spawn_every<F, Fut>(
        &self,
        runtime: &tokio::runtime::Handle,
        name: &'static str,
        interval: Duration,
        mut task: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(runtime, name, async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                task().await;
            }
        });
    }

    /// Whether shutdown has begun (long tasks may check between steps).
    pub fn is_stopping(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when shutdown begins.
    pub async fn stopping(&self) {
        self.cancel.cancelled().await;
    }

    /// How many tasks are still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Stops every task and waits until all have ended. Tasks spawned after this are
    /// stopped at once.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_stops_periodic_tasks() {
        let bg = Background::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        bg.spawn_every(
            &tokio::runtime::Handle::current(),
            "probe",
            Duration::from_millis(10),
            move || {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        // Until it has run twice (a fixed sleep failed once on a loaded machine).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(bg.running(), 1);
        bg.shutdown().await;
        assert_eq!(bg.running(), 0);
        let seen = runs.load(Ordering::SeqCst);
        assert!(seen >= 2, "ran {seen} times in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), seen, "no run after shutdown");
        bg.spawn("late", std::future::pending());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            bg.running(),
            0,
            "a task spawned after shutdown stops at once"
        );
    }
}
