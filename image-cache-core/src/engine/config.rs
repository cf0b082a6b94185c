//! How the cache treats time, space and concurrency.

use std::time::Duration;

use crate::hash::VerifyPolicy;

/// How the cache treats time, space and concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Metadata younger than this is served without asking the upstream.
    pub freshness: Duration,
    /// When the upstream gives no answer, metadata confirmed within this long is still
    /// served (marked stale); older metadata is not.
    pub max_stale: Duration,
    /// Size of the pieces streamed to clients waiting on a fill.
    pub chunk_size: usize,
    /// The most bytes of image data the cache may hold (`None`: no limit). Enforced at
    /// admission: a fill starts only after enough least recently used, unpinned, unread
    /// images were evicted; an image that cannot fit streams through uncached.
    pub max_bytes: Option<u64>,
    /// How many prefetches (queued images, background fills) run at once: the number of
    /// prefetch workers.
    pub prefetch_concurrency: usize,
    /// After a fill fails for a reason of the cache's own (a full or failing disk), how
    /// long misses stream through from the upstream uncached before a fill is tried
    /// again.
    pub local_fault_pause: Duration,
    /// When the upstream's data breaks off or stalls in the middle of a fill, how many
    /// times in a row the fill asks for the rest (`Range: bytes=<have>-`) without
    /// receiving a byte before it gives up (0: never resume).
    pub resume_attempts: u32,
    /// The wait before the first resume of a fill; it doubles with each further
    /// attempt in a row.
    pub resume_backoff: Duration,
    /// Which of the checksums an image names its data is verified against (by default
    /// the strongest, as glanceclient).
    pub verify: VerifyPolicy,
    /// How many image records are kept in memory in front of the metadata store (the
    /// most recently read or written; each version encoded once for every caller).
    /// 0 keeps none.
    pub recent_records: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            freshness: Duration::from_secs(30),
            max_stale: Duration::from_secs(7 * 24 * 3600),
            chunk_size: 1 << 20,
            max_bytes: None,
            prefetch_concurrency: 2,
            local_fault_pause: Duration::from_secs(60),
            resume_attempts: 3,
            resume_backoff: Duration::from_secs(1),
            verify: VerifyPolicy::Strongest,
            recent_records: 4096,
        }
    }
}

impl CacheConfig {
    /// Sets the freshness window.
    pub fn freshness(mut self, d: Duration) -> Self {
        self.freshness = d;
        self
    }

    /// Sets how long stale metadata may be served while the upstream is down.
    pub fn max_stale(mut self, d: Duration) -> Self {
        self.max_stale = d;
        self
    }

    /// Sets the size budget.
    pub fn max_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how long misses stream through uncached after a fill failed for a reason of
    /// the cache's own.
    pub fn local_fault_pause(mut self, d: Duration) -> Self {
        self.local_fault_pause = d;
        self
    }

    /// Sets how often in a row a broken fill resumes, and the first wait before it does.
    pub fn resume(mut self, attempts: u32, backoff: Duration) -> Self {
        self.resume_attempts = attempts;
        self.resume_backoff = backoff;
        self
    }

    /// Sets which checksums image data is verified against.
    pub fn verify(mut self, policy: VerifyPolicy) -> Self {
        self.verify = policy;
        self
    }

    /// Sets how many prefetches run at once (at least 1).
    pub fn prefetch_concurrency(mut self, n: usize) -> Self {
        self.prefetch_concurrency = n.max(1);
        self
    }

    /// Sets how many image records are kept in memory (0: none).
    pub fn recent_records(mut self, n: usize) -> Self {
        self.recent_records = n;
        self
    }
}
