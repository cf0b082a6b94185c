//! Metadata in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{CacheEntry, MetaError, MetadataStore, StoredRecord};
use crate::id::ImageId;
use crate::record::ImageRecord;

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<ImageId, StoredRecord>,
    cached: BTreeMap<ImageId, CacheEntry>,
    pins: BTreeSet<ImageId>,
}

impl Inner {
    fn entry(&self, e: &CacheEntry) -> CacheEntry {
        CacheEntry {
            pinned: self.pins.contains(&e.id),
            ..e.clone()
        }
    }
}

/// A metadata store in process memory (tests, throw-away caches).
#[derive(Debug, Default)]
pub struct MemoryMetadataStore {
    inner: Mutex<Inner>,
}

impl MemoryMetadataStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl MetadataStore for MemoryMetadataStore {
    async fn put(&self, record: &ImageRecord, fetched_at_ms: u64) -> Result<(), MetaError> {
        self.lock().records.insert(
            record.id.clone(),
            StoredRecord {
                record: record.clone(),
                fetched_at_ms,
            },
        );
        Ok(())
    }

    async fn get(&self, id: &ImageId) -> Result<Option<StoredRecord>, MetaError> {
        Ok(self.lock().records.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<StoredRecord>, MetaError> {
        Ok(self.lock().records.values().cloned().collect())
    }

    async fn remove(&self, id: &ImageId) -> Result<(), MetaError> {
        let mut inner = self.lock();
        inner.records.remove(id);
        inner.cached.remove(id);
        inner.pins.remove(id);
        Ok(())
    }

    async fn set_cached(&self, id: &ImageId, size: u64, now_ms: u64) -> Result<(), MetaError> {
        let mut inner = self.lock();
        inner.cached.insert(
            id.clone(),
            CacheEntry {
                id: id.clone(),
                size,
                cached_at_ms: now_ms,
                last_access_ms: now_ms,
                hits: 0,
                pinned: false,
            },
        );
        Ok(())
    }

    async fn clear_cached(&self, id: &ImageId) -> Result<(), MetaError> {
        self.lock().cached.remove(id);
        Ok(())
    }

    async fn touch(&self, id: &ImageId, now_ms: u64) -> Result<(), MetaError> {
        if let Some(e) = self.lock().cached.get_mut(id) {
            e.hits += 1;
            e.last_access_ms = now_ms;
        }
        Ok(())
    }

    async fn cache_entry(&self, id: &ImageId) -> Result<Option<CacheEntry>, MetaError> {
        let inner = self.lock();
        Ok(inner.cached.get(id).map(|e| inner.entry(e)))
    }

    async fn cache_entries(&self) -> Result<Vec<CacheEntry>, MetaError> {
        let inner = self.lock();
        Ok(inner.cached.values().map(|e| inner.entry(e)).collect())
    }

    async fn set_pinned(&self, id: &ImageId, pinned: bool) -> Result<(), MetaError> {
        let mut inner = self.lock();
        if pinned {
            inner.pins.insert(id.clone());
        } else {
            inner.pins.remove(id);
        }
        Ok(())
    }

    async fn pinned(&self) -> Result<Vec<ImageId>, MetaError> {
        Ok(self.lock().pins.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(&super::MemoryMetadataStore::new()).await;
    }
}
