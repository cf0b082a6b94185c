//! The records read or written most recently, kept in memory in front of a metadata
//! store, each version shared by every request that reads it (with a slot for its wire
//! encoding, made once per version).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use super::{CacheEntry, MetaError, MetadataStore, StoredRecord};
use crate::id::ImageId;
use crate::record::ImageRecord;

/// One version of an image record as the cache holds it: shared (an `Arc`) by every
/// request that reads it until the record is written again, with a slot for its wire
/// encoding, so that a protocol encodes each version once.
#[derive(Debug)]
pub struct RecordVersion {
    record: ImageRecord,
    encoded: OnceLock<Bytes>,
}

impl RecordVersion {
    /// A version of `record` (not yet encoded).
    pub fn new(record: ImageRecord) -> Self {
        Self {
            record,
            encoded: OnceLock::new(),
        }
    }

    /// The record.
    pub fn record(&self) -> &ImageRecord {
        &self.record
    }

    /// The record's wire encoding: `encode`'s answer, computed on the first call only.
    /// A process speaks one protocol, so one slot is enough; `encode` must be a pure
    /// function of the record (the same for every caller allowed to see it).
    pub fn encoded(&self, encode: impl FnOnce(&ImageRecord) -> Bytes) -> Bytes {
        self.encoded.get_or_init(|| encode(&self.record)).clone()
    }
}

/// A version and when the upstream last confirmed it.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// The version.
    pub version: Arc<RecordVersion>,
    /// When the upstream last confirmed it, milliseconds since the Unix epoch.
    pub fetched_at_ms: u64,
}

#[derive(Debug, Default)]
struct Recent {
    records: HashMap<ImageId, StoredVersion>,
    /// Bumped by every write: a read from the store that a write overtook is not kept.
    generation: u64,
}

/// A [`MetadataStore`] in front of another that keeps up to `capacity` records in
/// memory: a read of a kept record does not reach the store (nor decode it), and
/// [`get_version`](Self::get_version) hands out the kept version itself. Writes go
/// through to the store first and then replace what is kept, one at a time; a read from
/// the store that a write overtook is not kept. It must be the only writer of the
/// store's records (one process per cache directory).
#[derive(Debug)]
pub struct RecentRecords {
    store: Arc<dyn MetadataStore>,
    recent: Mutex<Recent>,
    writes: tokio::sync::Mutex<()>,
    capacity: usize,
}

impl RecentRecords {
    /// Keeps up to `capacity` records of `store` in memory.
    pub fn new(store: Arc<dyn MetadataStore>, capacity: usize) -> Self {
        Self {
            store,
            recent: Mutex::new(Recent::default()),
            writes: tokio::sync::Mutex::new(()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `v` for `id` unless a write came after `generation` (or nothing may be kept).
    fn keep(&self, id: &ImageId, v: StoredVersion, generation: Option<u64>) {
        if self.capacity == 0 {
            return;
        }
        let mut r = self.lock();
        if generation.is_some_and(|g| g != r.generation) {
            return;
        }
        if r.records.len() >= self.capacity && !r.records.contains_key(id) {
            // Full: one kept record (any) makes room.
            if let Some(victim) = r.records.keys().next().cloned() {
                r.records.remove(&victim);
            }
        }
        r.records.insert(id.clone(), v);
    }

    /// One record's current version, from memory when kept, else from the store (then
    /// kept).
    pub async fn get_version(&self, id: &ImageId) -> Result<Option<StoredVersion>, MetaError> {
        let generation = {
            let r = self.lock();
            if let Some(v) = r.records.get(id) {
                return Ok(Some(v.clone()));
            }
            r.generation
        };
        let Some(stored) = self.store.get(id).await? else {
            return Ok(None);
        };
        let v = StoredVersion {
            version: Arc::new(RecordVersion::new(stored.record)),
            fetched_at_ms: stored.fetched_at_ms,
        };
        self.keep(id, v.clone(), Some(generation));
        Ok(Some(v))
    }

    /// Writes a record through and keeps it; the version kept is returned.
    pub async fn put_version(
        &self,
        record: &ImageRecord,
        fetched_at_ms: u64,
    ) -> Result<StoredVersion, MetaError> {
        let _one_at_a_time = self.writes.lock().await;
        let written = self.store.put(record, fetched_at_ms).await;
        let mut r = self.lock();
        r.generation += 1;
        // After a failed write the store may hold either version: neither is kept.
        r.records.remove(&record.id);
        drop(r);
        written?;
        let v = StoredVersion {
            version: Arc::new(RecordVersion::new(record.clone())),
            fetched_at_ms,
        };
        self.keep(&record.id, v.clone(), None);
        Ok(v)
    }
}

#[async_trait]
impl MetadataStore for RecentRecords {
    async fn put(&self, record: &ImageRecord, fetched_at_ms: u64) -> Result<(), MetaError> {
        self.put_version(record, fetched_at_ms).await.map(|_| ())
    }

    async fn get(&self, id: &ImageId) -> Result<Option<StoredRecord>, MetaError> {
        Ok(self.get_version(id).await?.map(|v| StoredRecord {
            record: v.version.record().clone(),
            fetched_at_ms: v.fetched_at_ms,
        }))
    }

    async fn list(&self) -> Result<Vec<StoredRecord>, MetaError> {
        self.store.list().await
    }

    async fn remove(&self, id: &ImageId) -> Result<(), MetaError> {
        let _one_at_a_time = self.writes.lock().await;
        let removed = self.store.remove(id).await;
        let mut r = self.lock();
        r.generation += 1;
        r.records.remove(id);
        removed
    }

    async fn set_cached(&self, id: &ImageId, size: u64, now_ms: u64) -> Result<(), MetaError> {
        self.store.set_cached(id, size, now_ms).await
    }

    async fn clear_cached(&self, id: &ImageId) -> Result<(), MetaError> {
        self.store.clear_cached(id).await
    }

    async fn touch(&self, id: &ImageId, now_ms: u64) -> Result<(), MetaError> {
        self.store.touch(id, now_ms).await
    }

    async fn cache_entry(&self, id: &ImageId) -> Result<Option<CacheEntry>, MetaError> {
        self.store.cache_entry(id).await
    }

    async fn cache_entries(&self) -> Result<Vec<CacheEntry>, MetaError> {
        self.store.cache_entries().await
    }

    async fn set_pinned(&self, id: &ImageId, pinned: bool) -> Result<(), MetaError> {
        self.store.set_pinned(id, pinned).await
    }

    async fn pinned(&self) -> Result<Vec<ImageId>, MetaError> {
        self.store.pinned().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::meta::MemoryMetadataStore;
    use crate::record::Visibility;

    fn id(n: u8) -> ImageId {
        ImageId::parse(&format!("{n:08x}-0000-4000-8000-000000000000")).unwrap()
    }

    fn recent(capacity: usize) -> RecentRecords {
        RecentRecords::new(Arc::new(MemoryMetadataStore::new()), capacity)
    }

    #[tokio::test]
    async fn conformance() {
        crate::meta::conformance::run_all(&recent(4096)).await;
        crate::meta::conformance::run_all(&recent(1)).await;
        crate::meta::conformance::run_all(&recent(0)).await;
    }

    #[tokio::test]
    async fn a_version_is_shared_and_encoded_once_until_the_record_is_written() {
        let store = recent(8);
        let mut r = ImageRecord::new(id(1), Visibility::Public);
        store.put(&r, 5).await.unwrap();
        let a = store.get_version(&id(1)).await.unwrap().unwrap();
        let b = store.get_version(&id(1)).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&a.version, &b.version));
        let encodings = AtomicUsize::new(0);
        let encode = |r: &ImageRecord| {
            encodings.fetch_add(1, Ordering::SeqCst);
            Bytes::from(r.status.as_str().to_owned())
        };
        assert_eq!(a.version.encoded(encode), "active");
        assert_eq!(b.version.encoded(encode), "active");
        assert_eq!(encodings.load(Ordering::SeqCst), 1);
        r.status = crate::record::ImageStatus::Deactivated;
        store.put(&r, 6).await.unwrap();
        let c = store.get_version(&id(1)).await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a.version, &c.version));
        assert_eq!(
            (c.fetched_at_ms, c.version.encoded(encode)),
            (6, "deactivated".into())
        );
        store.remove(&id(1)).await.unwrap();
        assert!(store.get_version(&id(1)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn no_more_than_capacity_is_kept_and_everything_stays_readable() {
        let store = recent(2);
        for n in 0..5 {
            store
                .put(&ImageRecord::new(id(n), Visibility::Public), u64::from(n))
                .await
                .unwrap();
        }
        for n in 0..5 {
            assert_eq!(
                store.get(&id(n)).await.unwrap().unwrap().fetched_at_ms,
                u64::from(n)
            );
            assert!(store.lock().records.len() <= 2);
        }
    }

    /// A store whose reads wait at a gate after reading (so that a write can overtake
    /// them), and whose writes can be made to fail.
    #[derive(Debug, Default)]
    struct Gated {
        inner: MemoryMetadataStore,
        gate: tokio::sync::Mutex<()>,
        fail_puts: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl MetadataStore for Gated {
        async fn put(&self, record: &ImageRecord, at: u64) -> Result<(), MetaError> {
            if self.fail_puts.load(Ordering::SeqCst) {
                // As SQLite may: written, then the commit reported as failed.
                self.inner.put(record, at).await?;
                return Err(MetaError::storage("disk full"));
            }
            self.inner.put(record, at).await
        }
        async fn get(&self, id: &ImageId) -> Result<Option<StoredRecord>, MetaError> {
            let read = self.inner.get(id).await;
            let _pass = self.gate.lock().await;
            read
        }
        async fn list(&self) -> Result<Vec<StoredRecord>, MetaError> {
            self.inner.list().await
        }
        async fn remove(&self, id: &ImageId) -> Result<(), MetaError> {
            self.inner.remove(id).await
        }
        async fn set_cached(&self, id: &ImageId, size: u64, now: u64) -> Result<(), MetaError> {
            self.inner.set_cached(id, size, now).await
        }
        async fn clear_cached(&self, id: &ImageId) -> Result<(), MetaError> {
            self.inner.clear_cached(id).await
        }
        async fn touch(&self, id: &ImageId, now: u64) -> Result<(), MetaError> {
            self.inner.touch(id, now).await
        }
        async fn cache_entry(&self, id: &ImageId) -> Result<Option<CacheEntry>, MetaError> {
            self.inner.cache_entry(id).await
        }
        async fn cache_entries(&self) -> Result<Vec<CacheEntry>, MetaError> {
            self.inner.cache_entries().await
        }
        async fn set_pinned(&self, id: &ImageId, pinned: bool) -> Result<(), MetaError> {
            self.inner.set_pinned(id, pinned).await
        }
        async fn pinned(&self) -> Result<Vec<ImageId>, MetaError> {
            self.inner.pinned().await
        }
    }

    #[tokio::test]
    async fn a_read_overtaken_by_a_write_or_a_removal_is_not_kept() {
        let gated = Arc::new(Gated::default());
        let store = Arc::new(RecentRecords::new(gated.clone(), 8));
        gated
            .inner
            .put(&ImageRecord::new(id(1), Visibility::Public), 1)
            .await
            .unwrap();
        for removal in [false, true] {
            let closed = gated.gate.lock().await;
            let reader = tokio::spawn({
                let store = store.clone();
                async move { store.get_version(&id(1)).await.unwrap() }
            });
            // The reader has read the old record and waits at the gate.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if removal {
                store.remove(&id(1)).await.unwrap();
            } else {
                store
                    .put(&ImageRecord::new(id(1), Visibility::Private), 2)
                    .await
                    .unwrap();
            }
            drop(closed);
            assert!(reader.await.unwrap().is_some(), "it read before the write");
            let now = store.get_version(&id(1)).await.unwrap();
            if removal {
                assert!(now.is_none());
            } else {
                assert_eq!(
                    now.unwrap().version.record().visibility,
                    Visibility::Private
                );
                // Back to the first record for the removal round.
                gated
                    .inner
                    .put(&ImageRecord::new(id(1), Visibility::Public), 1)
                    .await
                    .unwrap();
                store.lock().records.clear();
            }
        }
    }

    #[tokio::test]
    async fn after_a_failed_write_the_store_is_read_again() {
        let gated = Arc::new(Gated::default());
        let store = RecentRecords::new(gated.clone(), 8);
        store
            .put(&ImageRecord::new(id(1), Visibility::Public), 1)
            .await
            .unwrap();
        assert!(store.get_version(&id(1)).await.unwrap().is_some());
        gated.fail_puts.store(true, Ordering::SeqCst);
        let r = ImageRecord::new(id(1), Visibility::Private);
        assert!(store.put(&r, 2).await.is_err());
        let now = store.get_version(&id(1)).await.unwrap().unwrap();
        assert_eq!(
            (now.version.record().visibility, now.fetched_at_ms),
            (Visibility::Private, 2)
        );
    }
}
