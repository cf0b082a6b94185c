//! The cache engine: metadata read-through, data hits, single-flight verified fills.

mod fill;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::blob::{BlobError, BlobStore};
use crate::id::ImageId;
use crate::meta::{MetaError, MetadataStore};
use crate::record::{ImageRecord, ImageStatus};
use crate::upstream::{ByteRange, ByteStream, RangeSpec, RequestContext, Upstream, UpstreamError};

use crate::eviction::{plan_admission, Admission, Resident};
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
    /// The most bytes of image data the cache may hold (`None`: no limit). Enforced at
    /// admission: a fill starts only after enough least recently used, unpinned, unread
    /// images were evicted; an image that cannot fit streams through uncached.
    pub max_bytes: Option<u64>,
    /// How many prefetches (queued images, background fills) run at once.
    pub prefetch_concurrency: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            freshness: Duration::from_secs(30),
            max_stale: Duration::from_secs(7 * 24 * 3600),
            chunk_size: 1 << 20,
            max_bytes: None,
            prefetch_concurrency: 2,
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

    /// Sets how many prefetches run at once (at least 1).
    pub fn prefetch_concurrency(mut self, n: usize) -> Self {
        self.prefetch_concurrency = n.max(1);
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
    /// Straight from the upstream, not cached (a range on a miss, or an image the size
    /// budget cannot take).
    Upstream,
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
    /// Serialises admission decisions against the budget.
    admission: tokio::sync::Mutex<()>,
    /// Bytes promised to fills in progress.
    reserved: Mutex<u64>,
    /// Open readers of cached blobs, per image: those are never evicted.
    readers: Mutex<HashMap<ImageId, usize>>,
    /// Images waiting for a prefetch to start.
    queued: Mutex<BTreeSet<ImageId>>,
    prefetch: Arc<tokio::sync::Semaphore>,
}

/// What admission decided for a miss.
enum Admitted {
    /// A fill is running (started now or before).
    Fill(Arc<FillSlot>),
    /// The image became cached meanwhile.
    Cached,
    /// It will not be cached: stream it through.
    Bypass,
}

/// Counts an open reader of a cached blob for as long as it lives.
struct ReadGuard {
    inner: Arc<Inner>,
    id: ImageId,
}

impl ReadGuard {
    fn new(inner: &Arc<Inner>, id: &ImageId) -> Self {
        *inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_insert(0) += 1;
        Self {
            inner: inner.clone(),
            id: id.clone(),
        }
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut readers = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = readers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.id);
            }
        }
    }
}

/// Bytes gathered before each write (and hash) of a fill.
const WRITE_BATCH: usize = 1 << 20;

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
                admission: tokio::sync::Mutex::new(()),
                reserved: Mutex::new(0),
                readers: Mutex::new(HashMap::new()),
                queued: Mutex::new(BTreeSet::new()),
                prefetch: Arc::new(tokio::sync::Semaphore::new(
                    config.prefetch_concurrency.max(1),
                )),
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
            // Listings carry no member lists: keep what is known.
            let mut r = r.clone();
            if r.members.is_empty() {
                if let Some(c) = self.inner.meta.get(&r.id).await? {
                    r.members = c.record.members;
                }
            }
            self.inner.meta.put(&r, now).await?;
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

    /// Queues an image for caching (Glance's `PUT /v2/cache/{id}`, prefetch): fetched in
    /// the background, at most `prefetch_concurrency` at a time, subject to the budget.
    pub fn queue(&self, id: &ImageId, ctx: &RequestContext) {
        let newly = self
            .inner
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        if !newly {
            return;
        }
        let (this, id, ctx) = (self.clone(), id.clone(), ctx.clone());
        tokio::spawn(async move {
            let Ok(_permit) = this.inner.prefetch.clone().acquire_owned().await else {
                return;
            };
            // Still wanted? (The queue may have been cleared meanwhile.)
            if !this
                .inner
                .queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id)
            {
                return;
            }
            tracing::info!(image = %id, "prefetch started");
            let outcome = async {
                let record = this.image(&id, &ctx).await?.value;
                if record.status != ImageStatus::Active {
                    return Ok(false);
                }
                match this.admit(&record, &ctx).await? {
                    Admitted::Fill(slot) => slot.wait().await.map(|()| true),
                    Admitted::Cached => Ok(true),
                    Admitted::Bypass => Ok(false),
                }
            }
            .await;
            match outcome {
                Ok(true) => tracing::info!(image = %id, "prefetch done: cached"),
                Ok(false) => tracing::info!(image = %id, "prefetch done: not cacheable"),
                Err(e) => tracing::warn!(image = %id, error = %e, "prefetch failed"),
            }
        });
    }

    /// Images queued for caching whose fill has not started.
    pub fn queued(&self) -> Vec<ImageId> {
        self.inner
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Empties the queue; returns how many were dropped.
    pub fn clear_queue(&self) -> usize {
        let mut q = self
            .inner
            .queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = q.len();
        q.clear();
        n
    }

    /// The images whose data is cached.
    pub async fn cached(&self) -> Result<Vec<crate::meta::CacheEntry>, CacheError> {
        Ok(self.inner.meta.cache_entries().await?)
    }

    /// Drops an image's cached data (its metadata stays). Readers already streaming it
    /// finish undisturbed. Returns whether there was any.
    pub async fn delete_cached(&self, id: &ImageId) -> Result<bool, CacheError> {
        let had = self.inner.meta.cache_entry(id).await?.is_some();
        self.inner.meta.clear_cached(id).await?;
        self.inner.blobs.remove(id).await?;
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
            Ok(Some(mut record)) => {
                // Only the owner sees a shared image's whole member list; a member sees
                // itself, and others (admins included) may see none: merge their
                // partial views into what is known.
                let authoritative = record.owner.is_some() && record.owner == ctx.project_id;
                if !authoritative {
                    if let Some(c) = &cached {
                        let mut members: Vec<String> = c
                            .record
                            .members
                            .iter()
                            .filter(|m| Some(m.as_str()) != ctx.project_id.as_deref())
                            .cloned()
                            .collect();
                        members.extend(record.members.iter().cloned());
                        members.sort();
                        members.dedup();
                        record.members = members;
                    }
                }
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
            if let Some(data) = self.open_cached(&record, served.stale, size, range).await? {
                return Ok(data);
            }
            // The entry lied (blob removed behind our back): fill again.
            i.meta.clear_cached(id).await?;
        }
        let admitted = match (self.running_fill(id), range) {
            (Some(slot), _) => Admitted::Fill(slot),
            // A range on a miss: answer it from the upstream now, fill in the background.
            (None, Some(_)) => {
                self.queue(id, ctx);
                Admitted::Bypass
            }
            (None, None) => self.admit(&record, ctx).await?,
        };
        match admitted {
            Admitted::Fill(slot) => {
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
            Admitted::Cached => match self.open_cached(&record, served.stale, size, range).await? {
                Some(data) => Ok(data),
                None => {
                    self.pass_through(record, served.stale, size, range, ctx)
                        .await
                }
            },
            Admitted::Bypass => {
                self.pass_through(record, served.stale, size, range, ctx)
                    .await
            }
        }
    }

    async fn open_cached(
        &self,
        record: &ImageRecord,
        stale: bool,
        size: u64,
        range: Option<ByteRange>,
    ) -> Result<Option<ImageData>, CacheError> {
        use futures::StreamExt;
        let i = &self.inner;
        let guard = ReadGuard::new(&self.inner, &record.id);
        let Some(read) = i.blobs.open(&record.id, range).await? else {
            return Ok(None);
        };
        i.meta.touch(&record.id, now_ms()).await?;
        let stream = read.stream.inspect(move |_| {
            let _ = &guard;
        });
        Ok(Some(ImageData {
            record: record.clone(),
            stale,
            size,
            range,
            source: DataSource::Cache,
            stream: Box::pin(stream),
        }))
    }

    /// Streams straight from the upstream; a whole image is still verified, its last
    /// piece held back until it is.
    async fn pass_through(
        &self,
        record: ImageRecord,
        stale: bool,
        size: u64,
        range: Option<ByteRange>,
        ctx: &RequestContext,
    ) -> Result<ImageData, CacheError> {
        let i = &self.inner;
        i.upstream_data_fetches.fetch_add(1, Ordering::Relaxed);
        let data = match i.upstream.open(&record.id, range, ctx).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(CacheError::NotFound(record.id.clone())),
            Err(e) => return Err(CacheError::Unavailable(e.to_string())),
        };
        let verifier = crate::hash::Verifier::new(
            record.checksum.as_deref(),
            record.os_hash_algo.as_deref(),
            record.os_hash_value.as_deref(),
        );
        let stream = match (range, verifier) {
            (None, Ok(v)) => fill::verified(data.stream, v, record.size),
            _ => data.stream,
        };
        Ok(ImageData {
            record,
            stale,
            size,
            range,
            source: DataSource::Upstream,
            stream,
        })
    }

    fn running_fill(&self, id: &ImageId) -> Option<Arc<FillSlot>> {
        self.inner
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|s| !s.finished())
            .cloned()
    }

    /// Decides, under the budget, whether a miss is filled; evicts to make room.
    async fn admit(
        &self,
        record: &ImageRecord,
        ctx: &RequestContext,
    ) -> Result<Admitted, CacheError> {
        let i = &self.inner;
        let _one_at_a_time = i.admission.lock().await;
        if let Some(slot) = self.running_fill(&record.id) {
            return Ok(Admitted::Fill(slot));
        }
        if i.meta.cache_entry(&record.id).await?.is_some() {
            return Ok(Admitted::Cached);
        }
        let mut reservation = 0;
        if let Some(budget) = i.config.max_bytes {
            let Some(need) = record.size else {
                return Ok(Admitted::Bypass);
            };
            let in_use: BTreeSet<ImageId> = i
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .cloned()
                .collect();
            let residents: Vec<Resident> = i
                .meta
                .cache_entries()
                .await?
                .into_iter()
                .map(|e| Resident {
                    in_use: in_use.contains(&e.id),
                    id: e.id,
                    size: e.size,
                    last_access_ms: e.last_access_ms,
                    pinned: e.pinned,
                })
                .collect();
            let reserved = *i.reserved.lock().unwrap_or_else(PoisonError::into_inner);
            match plan_admission(&residents, reserved, budget, need) {
                Admission::Bypass => {
                    tracing::info!(image = %record.id, need, budget, "not cached: the budget cannot take it");
                    return Ok(Admitted::Bypass);
                }
                Admission::Admit { evict } => {
                    for victim in evict {
                        tracing::info!(image = %victim, "evicted (least recently used)");
                        i.meta.clear_cached(&victim).await?;
                        i.blobs.remove(&victim).await?;
                    }
                }
            }
            reservation = need;
            *i.reserved.lock().unwrap_or_else(PoisonError::into_inner) += need;
        }
        Ok(Admitted::Fill(self.start_fill(record, ctx, reservation)))
    }

    /// Starts a fill of `record`'s data (admission already decided), releasing
    /// `reservation` bytes of the budget when it ends.
    fn start_fill(
        &self,
        record: &ImageRecord,
        ctx: &RequestContext,
        reservation: u64,
    ) -> Arc<FillSlot> {
        let mut fills = self
            .inner
            .fills
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = Arc::new(FillSlot::new());
        fills.insert(record.id.clone(), slot.clone());
        drop(fills);
        let this = self.clone();
        let (record, ctx, task_slot) = (record.clone(), ctx.clone(), slot.clone());
        tokio::spawn(async move {
            let outcome = this.run_fill(&record, &ctx, &task_slot, reservation).await;
            if let Err(e) = &outcome {
                tracing::warn!(image = %record.id, error = %e, "fill failed");
                this.release(reservation);
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

    /// Returns bytes reserved for a fill to the budget.
    fn release(&self, reservation: u64) {
        let mut reserved = self
            .inner
            .reserved
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *reserved = reserved.saturating_sub(reservation);
    }

    async fn run_fill(
        &self,
        record: &ImageRecord,
        ctx: &RequestContext,
        slot: &FillSlot,
        reservation: u64,
    ) -> Result<(), CacheError> {
        use futures::StreamExt;
        let i = &self.inner;
        let verifier = crate::hash::Verifier::new(
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
        // Network frames are small: gather them into pieces of `WRITE_BATCH` bytes. Each
        // piece goes to the blob while the MD5 and the multihash are computed on two
        // blocking workers in parallel, so reading, writing and hashing overlap.
        let (md5, multi) = verifier.split();
        let workers: Vec<_> = [md5, multi]
            .into_iter()
            .flatten()
            .map(|mut v| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
                let handle = tokio::task::spawn_blocking(move || {
                    while let Some(piece) = rx.blocking_recv() {
                        v.update(&piece);
                    }
                    v
                });
                (tx, handle)
            })
            .collect();
        let mut batch = bytes::BytesMut::with_capacity(WRITE_BATCH);
        let mut ended = false;
        while !ended {
            match stream.next().await {
                Some(Ok(chunk)) => batch.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    let _ = writer.abort(false).await;
                    return Err(CacheError::Unavailable(format!("upstream broke off: {e}")));
                }
                None => ended = true,
            }
            if batch.len() < WRITE_BATCH && !ended {
                continue;
            }
            if batch.is_empty() {
                break;
            }
            let piece = batch.split().freeze();
            for (tx, _) in &workers {
                if tx.send(piece.clone()).await.is_err() {
                    let _ = writer.abort(false).await;
                    return Err(CacheError::Unavailable("a hashing worker stopped".into()));
                }
            }
            if let Err(e) = writer.write(piece.clone()).await {
                let _ = writer.abort(false).await;
                return Err(e.into());
            }
            written += piece.len() as u64;
            slot.set(FillState::Running { written });
        }
        let mut verdict = Ok(());
        for (tx, handle) in workers {
            drop(tx);
            match handle.await {
                Ok(v) => {
                    if verdict.is_ok() {
                        verdict = v.finish(record.size);
                    }
                }
                Err(e) => {
                    let _ = writer.abort(false).await;
                    return Err(CacheError::Unavailable(format!("hashing failed: {e}")));
                }
            }
        }
        if let Err(e) = verdict {
            tracing::error!(image = %record.id, error = %e, "image data failed verification; quarantined");
            let _ = writer.abort(true).await;
            return Err(CacheError::Unavailable(format!(
                "image data failed verification: {e}"
            )));
        }
        writer.commit().await?;
        i.meta.set_cached(&record.id, written, now_ms()).await?;
        // The bytes now count as cached: release the reservation before anyone learns
        // the fill is done, so no admission counts them twice.
        self.release(reservation);
        slot.set(FillState::Done { written });
        tracing::info!(image = %record.id, bytes = written, "image cached and verified");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
