//! Blob stores: image data, written once, committed atomically, read in ranges.
//!
//! A [`BlobWriter`] writes a blob that nobody can open until it is committed; while it
//! is written, [`BlobTap`]s read back what has been written so far, so clients waiting
//! for an image being filled are streamed its bytes as they arrive.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod fs;
mod memory;

pub use fs::FsBlobStore;
pub use memory::MemoryBlobStore;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::id::ImageId;
use crate::upstream::{ByteRange, ByteStream};

/// Errors from a blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// An I/O failure (disk full, permissions, …).
    #[error("blob store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A range outside the blob.
    #[error("range {first}-{last} is outside a blob of {size} bytes")]
    BadRange {
        /// First byte asked for.
        first: u64,
        /// Last byte asked for.
        last: u64,
        /// The blob's size.
        size: u64,
    },
}

/// A committed blob opened for reading.
pub struct BlobRead {
    /// The whole blob's size.
    pub size: u64,
    /// The bytes (of the range, if one was given).
    pub stream: ByteStream,
}

impl fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Where image data lives.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug + 'static {
    /// Starts writing the blob of `id` (invisible until committed).
    async fn create(&self, id: &ImageId) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Opens a committed blob, whole or a range of it; `None` if there is none.
    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>, BlobError>;
    /// Removes a committed blob (no error if absent).
    async fn remove(&self, id: &ImageId) -> Result<(), BlobError>;
    /// Every committed blob with its size.
    async fn list(&self) -> Result<Vec<(ImageId, u64)>, BlobError>;
    /// Drops every write that was never committed (at start, after a crash); returns
    /// how many.
    async fn clear_incomplete(&self) -> Result<usize, BlobError>;
}

/// A blob being written.
#[async_trait]
pub trait BlobWriter: Send + Sync {
    /// Appends bytes.
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError>;
    /// A reader of what has been written so far.
    fn tap(&self) -> Arc<dyn BlobTap>;
    /// Makes the blob durable and visible, atomically.
    async fn commit(self: Box<Self>) -> Result<(), BlobError>;
    /// Abandons the blob; with `quarantine`, keeps the bytes aside for inspection
    /// (never served).
    async fn abort(self: Box<Self>, quarantine: bool) -> Result<(), BlobError>;
}

/// Reads back a blob that is being written.
#[async_trait]
pub trait BlobTap: Send + Sync {
    /// Up to `max` bytes from `offset`, of those written so far (empty if none yet).
    async fn read_at(&self, offset: u64, max: usize) -> Result<Bytes, BlobError>;
}

pub(crate) fn check_range(range: Option<ByteRange>, size: u64) -> Result<(u64, u64), BlobError> {
    match range {
        None => Ok((0, size)),
        Some(r) if r.first <= r.last && r.last < size => Ok((r.first, r.len())),
        Some(r) => Err(BlobError::BadRange {
            first: r.first,
            last: r.last,
            size,
        }),
    }
}
