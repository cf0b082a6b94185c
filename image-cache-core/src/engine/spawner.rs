//! Who runs the engine's background work.

use futures::future::BoxFuture;

/// Where the engine runs the work that outlives a request: fills that continue after
/// their client left, and the prefetch workers. The owner of the cache supplies it (for
/// example a `stackfed_http::Background`, which stops every task on shutdown), so nothing
/// the engine starts runs detached.
///
/// Any `Fn(&'static str, BoxFuture<'static, ()>)` is a spawner:
///
/// ```
/// use std::sync::Arc;
/// use image_cache_core::engine::Spawner;
/// let spawner: Arc<dyn Spawner> = Arc::new(|_name: &'static str, task| {
///     // A test or a tool may run it on the current runtime; a service hands it to the
///     // owner of its background tasks.
///     # let _ = task;
/// });
/// ```
pub trait Spawner: Send + Sync + 'static {
    /// Runs `task` in the background; `name` says what it is (for logs).
    fn spawn(&self, name: &'static str, task: BoxFuture<'static, ()>);
}

impl<F> Spawner for F
where
    F: Fn(&'static str, BoxFuture<'static, ()>) + Send + Sync + 'static,
{
    fn spawn(&self, name: &'static str, task: BoxFuture<'static, ()>) {
        self(name, task);
    }
}
