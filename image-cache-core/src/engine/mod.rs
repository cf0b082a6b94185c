//! The cache engine. [`ImageCache`] is the handle; each concern is one small type in its
//! own file:
//!
//! - `metadata`: read-through of one image (show) and of listings, from the cache while
//!   fresh, else the upstream, else what the cache holds;
//! - `stale`: the one rule for serving cached metadata when the upstream gives no
//!   answer (show, download and list alike);
//! - `data`: data hits from the blob store, misses joined to a fill, pass-through;
//! - `budget`: admission under the size budget, reservations, read guards;
//! - `inflight`: the fill registry (single flight) and the clients streaming from a fill;
//! - `fill`: one fill (upstream → blob, hashed, verified, committed or quarantined);
//! - `prefetch`: the queue and its workers, and prefetch by listing filter;
//! - `reconcile`: making metadata and blobs agree at start;
//! - [`Spawner`]: who runs what outlives a request (fills, prefetch workers).

mod budget;
mod config;
mod data;
mod fill;
mod inflight;
mod metadata;
mod prefetch;
mod reconcile;
mod spawner;
mod stale;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::blob::BlobStore;
use crate::id::ImageId;
use crate::list::{ListQuery, Page};
use crate::meta::{CacheEntry, MetadataStore, RecentRecords, RecordVersion};
use crate::record::ImageRecord;
use crate::upstream::{RequestContext, Upstream};

pub use crate::error::CacheError;
pub use config::CacheConfig;
pub use data::{DataSource, ImageData};
pub use reconcile::Reconciled;
pub use spawner::Spawner;

use budget::Budget;
use inflight::FillRegistry;
use metadata::ReadThrough;
use prefetch::PrefetchQueue;
use stale::ServeStale;

/// A value and whether it came from the cache while the upstream gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Served<T> {
    /// The value.
    pub value: T,
    /// `true` when the upstream could not confirm it.
    pub stale: bool,
}

impl<T> Served<T> {
    fn fresh(value: T) -> Self {
        Self {
            value,
            stale: false,
        }
    }

    fn stale(value: T) -> Self {
        Self { value, stale: true }
    }
}

/// See the [module docs](self). Cheap to clone: clones share one cache.
#[derive(Debug, Clone)]
pub struct ImageCache {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: Arc<dyn Upstream>,
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    config: CacheConfig,
    records: ReadThrough,
    budget: Budget,
    fills: FillRegistry,
    prefetch: Arc<PrefetchQueue>,
    spawner: Arc<dyn Spawner>,
    upstream_data_fetches: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageCache")
            .field("upstream", &self.upstream)
            .field("meta", &self.meta)
            .field("blobs", &self.blobs)
            .field("config", &self.config)
            .field("fills", &self.fills)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn dur_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ImageCache {
    /// Opens the cache over its stores and reconciles them (after a crash nothing partial
    /// or unverified is servable, and metadata and blobs agree), then starts the prefetch
    /// workers on `spawner`, which also runs every fill. Up to `config.recent_records`
    /// image records are kept in memory in front of `meta` ([`RecentRecords`]): the cache
    /// must be the only writer of `meta`'s records.
    pub async fn open(
        upstream: Arc<dyn Upstream>,
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        config: CacheConfig,
        spawner: Arc<dyn Spawner>,
    ) -> Result<(Self, Reconciled), CacheError> {
        let report = Reconciled::run(&*meta, &*blobs).await?;
        let recent = Arc::new(RecentRecords::new(meta, config.recent_records));
        let meta: Arc<dyn MetadataStore> = recent.clone();
        let records = ReadThrough::new(
            upstream.clone(),
            recent,
            blobs.clone(),
            config.freshness,
            ServeStale::new(config.max_stale),
        );
        let cache = Self {
            inner: Arc::new(Inner {
                upstream,
                meta,
                blobs,
                config,
                records,
                budget: Budget::new(config.max_bytes),
                fills: FillRegistry::default(),
                prefetch: Arc::new(PrefetchQueue::default()),
                spawner,
                upstream_data_fetches: AtomicU64::new(0),
            }),
        };
        cache.start_prefetch_workers();
        Ok((cache, report))
    }

    /// The configuration.
    pub fn config(&self) -> CacheConfig {
        self.inner.config
    }

    /// The metadata store.
    pub fn metadata(&self) -> &Arc<dyn MetadataStore> {
        &self.inner.meta
    }

    /// How many times image data was fetched from the upstream.
    pub fn upstream_data_fetches(&self) -> u64 {
        self.inner.upstream_data_fetches.load(Ordering::Relaxed)
    }

    /// One image's metadata: from the cache while fresh (and the caller may see it on
    /// cached metadata alone), else from the upstream (recorded); when the upstream gives
    /// no answer, the cached copy if it is not older than `max_stale` (stale).
    pub async fn image(
        &self,
        id: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Served<ImageRecord>, CacheError> {
        let served = self.image_version(id, ctx).await?;
        Ok(Served {
            value: served.value.record().clone(),
            stale: served.stale,
        })
    }

    /// As [`image`](Self::image), but the record's version itself, shared with every
    /// request that reads it (and its wire encoding, made once per version): no copy.
    pub async fn image_version(
        &self,
        id: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Served<Arc<RecordVersion>>, CacheError> {
        self.inner.records.image(id, ctx).await
    }

    /// One page of the listing: the upstream's (recorded), or — when it gives no answer
    /// — the cached records the caller may see, not older than `max_stale`, with the
    /// query's filters, sort, marker and limit (stale).
    pub async fn list(
        &self,
        query: &ListQuery,
        ctx: &RequestContext,
    ) -> Result<Served<Page>, CacheError> {
        self.inner.records.list(query, ctx).await
    }

    /// Forgets an image entirely (metadata and data), e.g. after the upstream deleted it.
    pub async fn forget(&self, id: &ImageId) -> Result<(), CacheError> {
        self.inner.records.forget(id).await
    }

    /// Marks an image's cached metadata as needing confirmation by the upstream before it
    /// is served fresh again (after a write went through to the upstream).
    pub async fn expire(&self, id: &ImageId) -> Result<(), CacheError> {
        self.inner.records.expire(id, None).await
    }

    /// As [`expire`](Self::expire), after a write changed `member`'s membership of the
    /// image: that project is no longer counted among those who accepted it until the
    /// upstream says so again.
    pub async fn expire_member(&self, id: &ImageId, member: &str) -> Result<(), CacheError> {
        self.inner.records.expire(id, Some(member)).await
    }

    /// The images whose data is cached.
    pub async fn cached(&self) -> Result<Vec<CacheEntry>, CacheError> {
        Ok(self.inner.meta.cache_entries().await?)
    }

    /// Drops an image's cached data (its metadata stays). Readers already streaming it
    /// finish undisturbed. Returns whether there was any.
    pub async fn delete_cached(&self, id: &ImageId) -> Result<bool, CacheError> {
        let had = self.inner.meta.cache_entry(id).await?.is_some();
        self.inner.meta.clear_cached(id).await?;
        self.inner
            .blobs
            .remove(id)
            .await
            .map_err(CacheError::blob("removing cached image data"))?;
        Ok(had)
    }

    /// Drops all cached data; returns how many images.
    pub async fn clear_cached(&self) -> Result<usize, CacheError> {
        let entries = self.inner.meta.cache_entries().await?;
        for e in &entries {
            self.delete_cached(&e.id).await?;
        }
        Ok(entries.len())
    }

    /// Pins (never evicted) or unpins an image.
    pub async fn set_pinned(&self, id: &ImageId, pinned: bool) -> Result<(), CacheError> {
        Ok(self.inner.meta.set_pinned(id, pinned).await?)
    }

    /// How many images' data the cache holds, and their total size.
    pub async fn usage(&self) -> Result<(usize, u64), CacheError> {
        let entries = self.inner.meta.cache_entries().await?;
        Ok((entries.len(), entries.iter().map(|e| e.size).sum()))
    }
}

#[cfg(test)]
mod tests;
