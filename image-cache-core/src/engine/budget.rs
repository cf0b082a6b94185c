//! The size budget at run time: admission (one decision at a time, evicting what must go
//! to make room), reservations for fills in progress, and read guards that keep images
//! being read from eviction. The plan itself is [`crate::eviction`].

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::blob::BlobStore;
use crate::error::CacheError;
use crate::eviction::{plan_admission, Admission, Resident};
use crate::id::ImageId;
use crate::meta::MetadataStore;

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Budget {
    max_bytes: Option<u64>,
    /// Serialises admission decisions.
    admission: tokio::sync::Mutex<()>,
    /// Bytes promised to fills in progress.
    reserved: Arc<Mutex<u64>>,
    /// Open readers of cached blobs, per image: those are never evicted.
    readers: Arc<Mutex<HashMap<ImageId, usize>>>,
    /// Until when no fill is started, after one failed for a reason of the cache's own
    /// (its disk is full or failing): misses stream through instead.
    fills_paused_until: Mutex<Option<Instant>>,
}

/// Bytes of the budget promised to one fill; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    bytes: u64,
    reserved: Arc<Mutex<u64>>,
}

impl Reservation {
    /// Gives the bytes back (they now count as cached, or the fill failed).
    pub(crate) fn release(self) {}
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        *reserved = reserved.saturating_sub(self.bytes);
    }
}

/// Counts an open reader of a cached blob for as long as it lives.
#[derive(Debug)]
pub(crate) struct ReadGuard {
    readers: Arc<Mutex<HashMap<ImageId, usize>>>,
    id: ImageId,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = readers.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.id);
            }
        }
    }
}

impl Budget {
    pub(crate) fn new(max_bytes: Option<u64>) -> Self {
        Self {
            max_bytes,
            admission: tokio::sync::Mutex::new(()),
            reserved: Arc::new(Mutex::new(0)),
            readers: Arc::new(Mutex::new(HashMap::new())),
            fills_paused_until: Mutex::new(None),
        }
    }

    /// Starts no fill for `pause`: the cache's own storage just failed one.
    pub(crate) fn pause_fills(&self, pause: Duration) {
        *self
            .fills_paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now().checked_add(pause);
    }

    /// Whether fills are paused (misses stream through uncached).
    pub(crate) fn fills_paused(&self) -> bool {
        let mut until = self
            .fills_paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Keeps `id` from eviction until the guard is dropped.
    pub(crate) fn read_guard(&self, id: &ImageId) -> ReadGuard {
        *self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_insert(0) += 1;
        ReadGuard {
            readers: self.readers.clone(),
            id: id.clone(),
        }
    }

    /// Takes the admission lock: one decision at a time, so two misses never both count
    /// the same free bytes.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.admission.lock().await
    }

    /// Makes room for an image of `size` bytes (the caller holds [`lock`](Self::lock)):
    /// evicts least recently used images that are neither pinned nor being read, and
    /// reserves the bytes; `None` when it cannot fit (stream it through). Without a
    /// budget everything fits.
    pub(crate) async fn make_room(
        &self,
        id: &ImageId,
        size: Option<u64>,
        meta: &dyn MetadataStore,
        blobs: &dyn BlobStore,
    ) -> Result<Option<Reservation>, CacheError> {
        let Some(budget) = self.max_bytes else {
            return Ok(Some(self.reserve(0)));
        };
        let Some(need) = size else {
            return Ok(None);
        };
        let in_use: BTreeSet<ImageId> = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let residents: Vec<Resident> = meta
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
        let reserved = *self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        match plan_admission(&residents, reserved, budget, need) {
            Admission::Bypass => {
                tracing::info!(image = %id, need, budget, "not cached: the budget cannot take it");
                Ok(None)
            }
            Admission::Admit { evict } => {
                for victim in evict {
                    tracing::info!(image = %victim, "evicted (least recently used)");
                    metrics::counter!("stackfed_cache_evictions_total").increment(1);
                    meta.clear_cached(&victim).await?;
                    blobs
                        .remove(&victim)
                        .await
                        .map_err(CacheError::blob("evicting an image"))?;
                }
                Ok(Some(self.reserve(need)))
            }
        }
    }

    fn reserve(&self, bytes: u64) -> Reservation {
        *self.reserved.lock().unwrap_or_else(PoisonError::into_inner) += bytes;
        Reservation {
            bytes,
            reserved: self.reserved.clone(),
        }
    }
}
