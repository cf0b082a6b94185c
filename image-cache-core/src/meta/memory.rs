//! Metadata in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{CacheEntry, MetaError, MetadataStore, StoredRecord};
use crate::id::ImageId;
use crate::record::ImageRecord;

#[derive(Debug, Default)]
struct Inner {
    records: BTreeMap<ImageId, StoredRecord>,
    cached: BTreeMap<ImageId, CacheEntry>,
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
        Ok(())
    }

    async fn set_cached(&self, id: &ImageId, size: u64, now_ms: u64) -> Result<(), MetaError> {
        let mut inner = self.lock();
        let pinned = inner.cached.get(id).is_some_and(|e| e.pinned);
        inner.cached.insert(
            id.clone(),
            CacheEntry {
                id: id.clone(),
                size,
                cached_at_ms: now_ms,
                last_access_ms: now_ms,
                hits: 0,
                pinned,
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
        Ok(self.lock().cached.get(id).cloned())
    }

    async fn cache_entries(&self) -> Result<Vec<CacheEntry>, MetaError> {
        Ok(self.lock().cached.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(&super::MemoryMetadataStore::new()).await;
    }
}
