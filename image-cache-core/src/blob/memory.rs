//! Blobs in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use bytes::Bytes;

use super::{check_range, BlobError, BlobRead, BlobStore, BlobTap, BlobWriter};
use crate::id::ImageId;
use crate::upstream::ByteRange;

type Blobs = Arc<Mutex<BTreeMap<ImageId, Bytes>>>;

/// A blob store in process memory (tests, small throw-away caches).
#[derive(Debug, Default, Clone)]
pub struct MemoryBlobStore {
    blobs: Blobs,
}

impl MemoryBlobStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn create(&self, id: &ImageId) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(MemWriter {
            id: id.clone(),
            data: Arc::new(RwLock::new(Vec::new())),
            blobs: self.blobs.clone(),
        }))
    }

    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>, BlobError> {
        let Some(blob) = self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
        else {
            return Ok(None);
        };
        let size = blob.len() as u64;
        let (start, len) = check_range(range, size)?;
        let (start, len) = (start as usize, len as usize);
        let part = blob.slice(start..start + len);
        Ok(Some(BlobRead {
            size,
            stream: Box::pin(futures::stream::iter([Ok(part)])),
        }))
    }

    async fn remove(&self, id: &ImageId) -> Result<(), BlobError> {
        self.blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(ImageId, u64)>, BlobError> {
        Ok(self
            .blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    async fn clear_incomplete(&self) -> Result<usize, BlobError> {
        Ok(0)
    }
}

struct MemWriter {
    id: ImageId,
    data: Arc<RwLock<Vec<u8>>>,
    blobs: Blobs,
}

struct MemTap(Arc<RwLock<Vec<u8>>>);

#[async_trait]
impl BlobWriter for MemWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        self.data
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(&data);
        Ok(())
    }

    fn tap(&self) -> Arc<dyn BlobTap> {
        Arc::new(MemTap(self.data.clone()))
    }

    async fn commit(self: Box<Self>) -> Result<(), BlobError> {
        let data = Bytes::from(
            self.data
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        );
        self.blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.id, data);
        Ok(())
    }

    async fn abort(self: Box<Self>, _quarantine: bool) -> Result<(), BlobError> {
        Ok(())
    }
}

#[async_trait]
impl BlobTap for MemTap {
    async fn read_at(&self, offset: u64, max: usize) -> Result<Bytes, BlobError> {
        let data = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start.saturating_add(max).min(data.len());
        Ok(Bytes::copy_from_slice(&data[start..end]))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run_all(&super::MemoryBlobStore::new()).await;
    }
}
