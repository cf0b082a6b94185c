//! Fault injection for the kill -9 tests, compiled into debug builds only: the
//! environment variable `STACKFED_PAUSE_AT`, read once when the service is built, names
//! a point of a request's work where the request then stops for good (logging
//! `paused for fault injection` with the point), so that a test can kill the process
//! exactly there. Release builds have neither the variable nor the points.
//!
//! Points: `container-recorded` (a new container's record is written, the cluster's
//! `PUT` not yet sent).

/// The point named by `STACKFED_PAUSE_AT`, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct PausePoint(Option<String>);

impl PausePoint {
    pub(crate) fn from_env() -> Self {
        Self(std::env::var("STACKFED_PAUSE_AT").ok())
    }

    /// Never returns when `point` is the one named.
    pub(crate) async fn at(&self, point: &str) {
        if self.0.as_deref() == Some(point) {
            tracing::warn!(point, "paused for fault injection");
            std::future::pending::<()>().await;
        }
    }
}
