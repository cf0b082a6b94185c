//! The one rule for serving what the cache holds when the upstream gives no answer, for
//! show, download (which starts with show) and list alike.

use std::time::Duration;

use crate::meta::StoredRecord;
use crate::upstream::UpstreamError;

use super::dur_ms;

/// See the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeStale {
    max_stale_ms: u64,
}

impl ServeStale {
    pub(crate) fn new(max_stale: Duration) -> Self {
        Self {
            max_stale_ms: dur_ms(max_stale),
        }
    }

    /// Whether the cache may stand in for the upstream after `error`: only when the
    /// upstream gave no answer (unreachable, slow, failing, unreadable). A refusal is the
    /// upstream's answer and is passed on.
    pub(crate) fn applies(&self, error: &UpstreamError) -> bool {
        !error.is_refusal()
    }

    /// Whether `stored` may still be served at `now_ms` (marked stale).
    pub(crate) fn servable(&self, stored: &StoredRecord, now_ms: u64) -> bool {
        self.servable_at(stored.fetched_at_ms, now_ms)
    }

    /// Whether a record last confirmed by the upstream at `fetched_at_ms` may still be
    /// served at `now_ms` (marked stale).
    pub(crate) fn servable_at(&self, fetched_at_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(fetched_at_ms) <= self.max_stale_ms
    }
}
