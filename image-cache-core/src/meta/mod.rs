//! Metadata stores: image records and the cache's bookkeeping about their data.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod memory;
mod recent;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryMetadataStore;
pub use recent::{RecentRecords, RecordVersion, StoredVersion};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteMetadataStore;

use std::fmt;

use async_trait::async_trait;

use crate::error::BoxError;
use crate::id::ImageId;
use crate::record::ImageRecord;

/// A record as stored, with when it was last confirmed by the upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The record.
    pub record: ImageRecord,
    /// When the upstream last confirmed it, milliseconds since the Unix epoch.
    pub fetched_at_ms: u64,
}

/// What the cache knows about an image's data it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEntry {
    /// The image.
    pub id: ImageId,
    /// Bytes held.
    pub size: u64,
    /// When the data was committed, ms since the epoch.
    pub cached_at_ms: u64,
    /// When it was last read, ms since the epoch.
    pub last_access_ms: u64,
    /// How many times it was read.
    pub hits: u64,
    /// Whether eviction must leave it alone.
    pub pinned: bool,
}

/// Errors from a metadata store. Always the cache's own fault
/// ([`ErrorSource::Internal`](crate::ErrorSource::Internal)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// Busy (another writer holds it): retry.
    #[error("metadata store unavailable: {source}")]
    Unavailable {
        /// The store's error.
        #[source]
        source: BoxError,
    },
    /// Its storage failed (a full disk, an I/O error, a file that cannot be opened):
    /// retrying will not help until an operator acts.
    #[error("metadata store failed: {source}")]
    Storage {
        /// The store's error.
        #[source]
        source: BoxError,
    },
    /// Damaged or incompatible data: an operator must look.
    #[error("metadata store damaged or incompatible: {reason}")]
    Internal {
        /// What is wrong.
        reason: String,
        /// The store's error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl MetaError {
    /// Whether a retry may help (the store was busy).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// A store whose storage failed (full, I/O errors, cannot be opened).
    pub fn storage(source: impl Into<BoxError>) -> Self {
        Self::Storage {
            source: source.into(),
        }
    }

    /// A store that is busy.
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            source: source.into(),
        }
    }

    /// Damaged or incompatible data.
    pub fn internal(reason: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Internal {
            reason: reason.into(),
            source,
        }
    }
}

/// Image records and cache bookkeeping.
#[async_trait]
pub trait MetadataStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts or replaces a record (bookkeeping is kept).
    async fn put(&self, record: &ImageRecord, fetched_at_ms: u64) -> Result<(), MetaError>;
    /// One record.
    async fn get(&self, id: &ImageId) -> Result<Option<StoredRecord>, MetaError>;
    /// Every record.
    async fn list(&self) -> Result<Vec<StoredRecord>, MetaError>;
    /// Forgets a record and its bookkeeping.
    async fn remove(&self, id: &ImageId) -> Result<(), MetaError>;
    /// Records that the image's data is held (`size` bytes), now.
    async fn set_cached(&self, id: &ImageId, size: u64, now_ms: u64) -> Result<(), MetaError>;
    /// Records that the image's data is no longer held.
    async fn clear_cached(&self, id: &ImageId) -> Result<(), MetaError>;
    /// Counts a read of the data.
    async fn touch(&self, id: &ImageId, now_ms: u64) -> Result<(), MetaError>;
    /// Bookkeeping for one image's data, if held.
    async fn cache_entry(&self, id: &ImageId) -> Result<Option<CacheEntry>, MetaError>;
    /// Bookkeeping of all data held.
    async fn cache_entries(&self) -> Result<Vec<CacheEntry>, MetaError>;
    /// Pins or unpins an image: a pinned image's data is never evicted. A pin outlives
    /// the data (an image pinned before it is cached stays pinned once it is).
    async fn set_pinned(&self, id: &ImageId, pinned: bool) -> Result<(), MetaError>;
    /// Every pinned image.
    async fn pinned(&self) -> Result<Vec<ImageId>, MetaError>;
}
