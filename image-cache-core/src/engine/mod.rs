//! The cache engine: metadata read-through, data hits, single-flight verified fills.

mod fill;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::blob::{BlobError, BlobStore};
use crate::id::ImageId;
use crate::meta::{MetaError, MetadataStore};
use crate::record::{ImageRecord, ImageStatus};
use crate::upstream::{ByteRange, ByteStream, RangeSpec, RequestContext, Upstream, UpstreamError};

use fill::{FillSlot, FillState};

/// How the cache treats time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Metadata younger than this is served without asking the upstream.
    pub freshness: Duration,
    /// When the upstream is unreachable, metadata confirmed within this long is still
    /// served (marked stale); older metadata is not.
    pub max_stale: Duration,
    /// Size of the pieces streamed to clients waiting on a fill.
    pub chunk_size: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            freshness: Duration::from_secs(30),
            max_stale: Duration::from_secs(7 * 24 * 3600),
            chunk_size: 256 * 1024,
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
}

/// Errors from the engine; each tells the protocol layer what to answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// No such image (404).
    #[error("no image {0}")]
    NotFound(ImageId),
    /// The image exists but has no data to download (Glance answers 204).
    #[error("image {0} has no data")]
    NoData(ImageId),
    /// The image is deactivated (403).
    #[error("image {0} is deactivated")]
    Deactivated(ImageId),
    /// The range cannot be satisfied (416); carries the image's size.
    #[error("range not satisfiable for an image of {size} bytes")]
    BadRange {
        /// The image's size.
        size: u64,
    },
    /// The upstream is unreachable and the cache cannot answer alone (503).
    #[error("upstream unavailable and not cached: {0}")]
    Unavailable(String),
    /// The upstream refused; pass its answer on.
    #[error(transparent)]
    Refused(UpstreamError),
    /// The metadata store failed (503 or 500).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The blob store failed (500).
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// A value and whether it came from the cache while the upstream was unreachable.
#[derive(Debug, Clone, PartialEq)]
pub struct Served<T> {
    /// The value.
    pub value: T,
    /// `true` when the upstream could not confirm it.
    pub stale: bool,
}

/// Where image data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    /// A verified blob in the cache.
    Cache,
    /// A fill in progress (this request started it or joined it).
    Fill,
}

/// Image data ready to stream.
pub struct ImageData {
    /// The image's metadata.
    pub record: ImageRecord,
    /// Whether the metadata is stale.
    pub stale: bool,
    /// The whole image's size.
    pub size: u64,
    /// The range being sent, if a range was asked for.
    pub range: Option<ByteRange>,
    /// Where the bytes come from.
    pub source: DataSource,
    /// The bytes.
    pub stream: ByteStream,
}

impl std::fmt::Debug for ImageData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageData")
            .field("id", &self.record.id)
            .field("size", &self.size)
            .field("range", &self.range)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What a start-up reconciliation found and fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Incomplete writes removed.
    pub incomplete_removed: usize,
    /// Blobs without a (verified) record removed.
    pub orphan_blobs_removed: usize,
    /// Records that claimed data whose blob is missing or of the wrong size.
    pub stale_entries_cleared: usize,
}

/// See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ImageCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    upstream: Arc<dyn Upstream>,
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    config: CacheConfig,
    fills: Mutex<HashMap<ImageId, Arc<FillSlot>>>,
    upstream_data_fetches: AtomicU64,
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
    /// Opens the cache over its stores and reconciles them: after a crash nothing partial
    /// or unverified is servable, and metadata and blobs agree.
    pub async fn open(
        upstream: Arc<dyn Upstream>,
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        config: CacheConfig,
    ) -> Result<(Self, Reconciled), CacheError> {
        let cache = Self {
            inner: Arc::new(Inner {
                upstream,
                meta,
                blobs,
                config,
                fills: Mutex::new(HashMap::new()),
                upstream_data_fetches: AtomicU64::new(0),
            }),
        };
        let report = cache.reconcile().await?;
        Ok((cache, report))
    }

    async fn reconcile(&self) -> Result<Reconciled, CacheError> {
        let i = &self.inner;
        let mut report = Reconciled {
            incomplete_removed: i.blobs.clear_incomplete().await?,
            ..Reconciled::default()
        };
        let blobs: HashMap<ImageId, u64> = i.blobs.list().await?.into_iter().collect();
        let entries = i.meta.cache_entries().await?;
        for e in &entries {
            if blobs.get(&e.id) != Some(&e.size) {
                i.meta.clear_cached(&e.id).await?;
                i.blobs.remove(&e.id).await?;
                report.stale_entries_cleared += 1;
            }
        }
        for id in blobs.keys() {
            // A blob is servable only once its record says it was verified and committed.
            if !entries.iter().any(|e| &e.id == id) {
                i.blobs.remove(id).await?;
                report.orphan_blobs_removed += 1;
            }
        }
        Ok(report)
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

    /// Records images the upstream listed (read-through for listings).
    pub async fn record_seen(&self, records: &[ImageRecord]) -> Result<(), CacheError> {
        let now = now_ms();
        for r in records {
            self.inner.meta.put(r, now).await?;
        }
        Ok(())
    }

    /// Every cached record the caller may see (for listings while offline).
    pub async fn visible_records(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<ImageRecord>, CacheError> {
        Ok(self
            .inner
            .meta
            .list()
            .await?
            .into_iter()
            .map(|s| s.record)
            .filter(|r| ctx.may_see(r))
            .collect())
    }

    /// Forgets an image entirely (metadata and data), e.g. after the upstream deleted it.
    pub async fn forget(&self, id: &ImageId) -> Result<(), CacheError> {
        self.inner.meta.remove(id).await?;
        self.inner.blobs.remove(id).await?;
        Ok(())
    }

    /// Marks an image's cached metadata as needing confirmation by the upstream before it
    /// is served fresh again (after a write went through to the upstream).
    pub async fn expire(&self, id: &ImageId) -> Result<(), CacheError> {
        if let Some(s) = self.inner.meta.get(id).await? {
            self.inner.meta.put(&s.record, 0).await?;
        }
        Ok(())
    }

    /// How many images' data the cache holds, and their total size.
    pub async fn usage(&self) -> Result<(usize, u64), CacheError> {
        let entries = self.inner.meta.cache_entries().await?;
        Ok((entries.len(), entries.iter().map(|e| e.size).sum()))
    }

    /// One image's metadata: from the cache while fresh (and the caller may see it on
    /// cached metadata alone), else from the upstream (recorded); when the upstream is
    /// unreachable, the cached copy if it is not older than `max_stale` (stale).
    pub async fn image(
        &self,
        id: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Served<ImageRecord>, CacheError> {
        let i = &self.inner;
        let cached = i.meta.get(id).await?;
        let now = now_ms();
        if let Some(c) = &cached {
            if now.saturating_sub(c.fetched_at_ms) < dur_ms(i.config.freshness)
                && ctx.may_see(&c.record)
            {
                return Ok(Served {
                    value: c.record.clone(),
                    stale: false,
                });
            }
        }
        match i.upstream.get(id, ctx).await {
            Ok(Some(record)) => {
                i.meta.put(&record, now).await?;
                Ok(Served {
                    value: record,
                    stale: false,
                })
            }
            Ok(None) => {
                // For an admin, "not found" means deleted; for others it may only mean
                // "not yours", which must not evict it for everybody.
                if ctx.is_admin {
                    self.forget(id).await?;
                }
                Err(CacheError::NotFound(id.clone()))
            }
            Err(UpstreamError::Refused { status: 403, .. })
            | Err(UpstreamError::Refused { status: 404, .. }) => {
                Err(CacheError::NotFound(id.clone()))
            }
            Err(e @ UpstreamError::Refused { .. }) => Err(CacheError::Refused(e)),
            Err(e) => match cached {
                Some(c)
                    if now.saturating_sub(c.fetched_at_ms) <= dur_ms(i.config.max_stale)
                        && ctx.may_see(&c.record) =>
                {
                    Ok(Served {
                        value: c.record,
                        stale: true,
                    })
                }
                // Not visible on cached metadata alone: as if it did not exist.
                Some(c) if !ctx.may_see(&c.record) => Err(CacheError::NotFound(id.clone())),
                _ => Err(CacheError::Unavailable(e.to_string())),
            },
        }
    }

    /// An image's data, whole or a range: from a verified blob when cached, else from the
    /// one fill of this image in progress (started now if there is none).
    pub async fn data(
        &self,
        id: &ImageId,
        range: Option<RangeSpec>,
        ctx: &RequestContext,
    ) -> Result<ImageData, CacheError> {
        let served = self.image(id, ctx).await?;
        let record = served.value;
        match record.status {
            ImageStatus::Active => {}
            ImageStatus::Deactivated => return Err(CacheError::Deactivated(id.clone())),
            _ => return Err(CacheError::NoData(id.clone())),
        }
        let i = &self.inner;
        let cached = i.meta.cache_entry(id).await?;
        let size = match (record.size, &cached) {
            (Some(s), _) => s,
            (None, Some(e)) => e.size,
            (None, None) => return Err(CacheError::NoData(id.clone())),
        };
        let range = match range {
            None => None,
            Some(spec) => Some(spec.resolve(size).ok_or(CacheError::BadRange { size })?),
        };
        if cached.is_some() {
            if let Some(read) = i.blobs.open(id, range).await? {
                i.meta.touch(id, now_ms()).await?;
                return Ok(ImageData {
                    record,
                    stale: served.stale,
                    size,
                    range,
                    source: DataSource::Cache,
                    stream: read.stream,
                });
            }
            // The entry lied (blob removed behind our back): fill again.
            i.meta.clear_cached(id).await?;
        }
        let slot = self.fill(&record, ctx);
        let stream = slot
            .subscribe(
                range.map_or(0, |r| r.first),
                range.map_or(size, |r| r.len()),
                i.config.chunk_size,
            )
            .await?;
        Ok(ImageData {
            record,
            stale: served.stale,
            size,
            range,
            source: DataSource::Fill,
            stream,
        })
    }

    /// The fill of `record`'s data: the one in progress, or a new one.
    fn fill(&self, record: &ImageRecord, ctx: &RequestContext) -> Arc<FillSlot> {
        let mut fills = self
            .inner
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = fills.get(&record.id) {
            if !slot.finished() {
                return slot.clone();
            }
        }
        let slot = Arc::new(FillSlot::new());
        fills.insert(record.id.clone(), slot.clone());
        drop(fills);
        let this = self.clone();
        let (record, ctx, task_slot) = (record.clone(), ctx.clone(), slot.clone());
        tokio::spawn(async move {
            let outcome = this.run_fill(&record, &ctx, &task_slot).await;
            if let Err(e) = &outcome {
                tracing::warn!(image = %record.id, error = %e, "fill failed");
                task_slot.set(FillState::Failed(e.to_string()));
            }
            let mut fills = this
                .inner
                .fills
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if fills
                .get(&record.id)
                .is_some_and(|s| Arc::ptr_eq(s, &task_slot))
            {
                fills.remove(&record.id);
            }
        });
        slot
    }

    async fn run_fill(
        &self,
        record: &ImageRecord,
        ctx: &RequestContext,
        slot: &FillSlot,
    ) -> Result<(), CacheError> {
        use futures::StreamExt;
        let i = &self.inner;
        let mut verifier = crate::hash::Verifier::new(
            record.checksum.as_deref(),
            record.os_hash_algo.as_deref(),
            record.os_hash_value.as_deref(),
        )
        .map_err(|e| CacheError::Unavailable(format!("cannot verify image data: {e}")))?;
        i.upstream_data_fetches.fetch_add(1, Ordering::Relaxed);
        let data = match i.upstream.open(&record.id, None, ctx).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(CacheError::NotFound(record.id.clone())),
            Err(e) => return Err(CacheError::Unavailable(e.to_string())),
        };
        let mut writer = i.blobs.create(&record.id).await?;
        slot.set_tap(writer.tap());
        slot.set(FillState::Running { written: 0 });
        let mut stream = data.stream;
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort(false).await;
                    return Err(CacheError::Unavailable(format!("upstream broke off: {e}")));
                }
            };
            verifier.update(&chunk);
            if let Err(e) = writer.write(chunk.clone()).await {
                let _ = writer.abort(false).await;
                return Err(e.into());
            }
            written += chunk.len() as u64;
            slot.set(FillState::Running { written });
        }
        if let Err(e) = verifier.finish(record.size) {
            tracing::error!(image = %record.id, error = %e, "image data failed verification; quarantined");
            let _ = writer.abort(true).await;
            return Err(CacheError::Unavailable(format!(
                "image data failed verification: {e}"
            )));
        }
        writer.commit().await?;
        i.meta.set_cached(&record.id, written, now_ms()).await?;
        slot.set(FillState::Done { written });
        tracing::info!(image = %record.id, bytes = written, "image cached and verified");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
