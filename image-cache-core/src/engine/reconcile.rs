//! Start-up reconciliation: after a crash nothing partial or unverified is servable, and
//! metadata and blobs agree.

use std::collections::HashMap;

use crate::blob::BlobStore;
use crate::error::CacheError;
use crate::id::ImageId;
use crate::meta::MetadataStore;

/// What a start-up reconciliation found and fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconciled {
    /// Incomplete writes removed.
    pub incomplete_removed: usize,
    /// Blobs without a (verified) record removed.
    pub orphan_blobs_removed: usize,
    /// Records that claimed data whose blob is missing or of the wrong size.
    pub stale_entries_cleared: usize,
}

impl Reconciled {
    /// Clears incomplete writes, blobs no record vouches for, and records whose blob is
    /// missing or of the wrong size.
    pub(crate) async fn run(
        meta: &dyn MetadataStore,
        blobs: &dyn BlobStore,
    ) -> Result<Self, CacheError> {
        let mut report = Self {
            incomplete_removed: blobs
                .clear_incomplete()
                .await
                .map_err(CacheError::blob("clearing incomplete writes"))?,
            ..Self::default()
        };
        let on_disk: HashMap<ImageId, u64> = blobs
            .list()
            .await
            .map_err(CacheError::blob("listing blobs"))?
            .into_iter()
            .collect();
        let entries = meta.cache_entries().await?;
        for e in &entries {
            if on_disk.get(&e.id) != Some(&e.size) {
                meta.clear_cached(&e.id).await?;
                blobs
                    .remove(&e.id)
                    .await
                    .map_err(CacheError::blob("removing a blob of the wrong size"))?;
                report.stale_entries_cleared += 1;
            }
        }
        for id in on_disk.keys() {
            // A blob is servable only once its record says it was verified and committed.
            if !entries.iter().any(|e| &e.id == id) {
                blobs
                    .remove(id)
                    .await
                    .map_err(CacheError::blob("removing an unverified blob"))?;
                report.orphan_blobs_removed += 1;
            }
        }
        Ok(report)
    }
}
