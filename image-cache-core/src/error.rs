//! The engine's error, and what every error of this crate can say about itself: where the
//! fault came from ([`ErrorSource`]) and whether trying again may help
//! (`is_temporary`), as pingora's `ErrorSource` and OpenDAL's `ErrorStatus` do. Causes
//! stay attached as `source()` chains; a protocol crate turns these into its answers in
//! one place.

use std::sync::Arc;

use crate::blob::BlobError;
use crate::hash::VerifyError;
use crate::id::ImageId;
use crate::list::ListError;
use crate::meta::MetaError;
use crate::upstream::UpstreamError;

/// Any error, boxed (the causes this crate keeps without knowing their types).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a fault came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorSource {
    /// The upstream (the central image service): unreachable, slow, failing, refusing
    /// or sending something unusable.
    Upstream,
    /// The client's request: an image that does not exist or cannot be served as asked.
    Client,
    /// This cache itself: its metadata store, its blob store, its own tasks.
    Internal,
}

impl std::fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Upstream => "upstream",
            Self::Client => "client",
            Self::Internal => "internal",
        })
    }
}

/// Errors from the engine; each says what happened, [`origin`](Self::origin) says whose
/// fault it is and [`is_temporary`](Self::is_temporary) whether a retry may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// No such image (or not one the caller may see).
    #[error("no image {0}")]
    NotFound(ImageId),
    /// The image exists but has no data to download.
    #[error("image {0} has no data")]
    NoData(ImageId),
    /// The image is deactivated.
    #[error("image {0} is deactivated")]
    Deactivated(ImageId),
    /// The range cannot be satisfied; carries the image's size.
    #[error("range not satisfiable for an image of {size} bytes")]
    BadRange {
        /// The image's size.
        size: u64,
    },
    /// A listing query the cache cannot answer (an unknown marker).
    #[error(transparent)]
    List(#[from] ListError),
    /// The upstream did not give a usable answer and the cache cannot answer alone, or it
    /// refused.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Data from the upstream did not match its checksums; it was quarantined.
    #[error("data of image {id} from the upstream failed verification: {source}")]
    Verification {
        /// The image.
        id: ImageId,
        /// What did not match.
        #[source]
        source: VerifyError,
    },
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The blob store failed.
    #[error("the image store failed while {doing}: {source}")]
    Blob {
        /// What the cache was doing (`"writing image data"`, …).
        doing: &'static str,
        /// The store's error.
        #[source]
        source: BlobError,
    },
    /// Something else inside the cache failed (a hashing worker, a task).
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
        /// The cause, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The cache is shutting down: the work was stopped.
    #[error("the cache is shutting down")]
    Stopped,
    /// The outcome of work several requests share (a fill they all joined).
    #[error(transparent)]
    Shared(Arc<CacheError>),
}

impl CacheError {
    /// The error itself, seen through [`Shared`](Self::Shared).
    pub fn kind(&self) -> &CacheError {
        match self {
            Self::Shared(inner) => inner.kind(),
            other => other,
        }
    }

    /// Where the fault came from.
    pub fn origin(&self) -> ErrorSource {
        match self.kind() {
            Self::NotFound(_)
            | Self::NoData(_)
            | Self::Deactivated(_)
            | Self::BadRange { .. }
            | Self::List(_) => ErrorSource::Client,
            Self::Upstream(e) => e.origin(),
            Self::Verification { .. } => ErrorSource::Upstream,
            Self::Meta(_) | Self::Blob { .. } | Self::Internal { .. } | Self::Stopped => {
                ErrorSource::Internal
            }
            Self::Shared(_) => ErrorSource::Internal,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_temporary(&self) -> bool {
        match self.kind() {
            Self::Upstream(e) => e.is_temporary(),
            Self::Meta(e) => e.is_temporary(),
            Self::Stopped => true,
            _ => false,
        }
    }

    /// Whether the cache's own storage or tasks failed (not the upstream, not the client,
    /// not a shutdown): the upstream may still give what was asked for.
    pub fn is_local_fault(&self) -> bool {
        self.origin() == ErrorSource::Internal && !matches!(self.kind(), Self::Stopped)
    }

    /// A short, fixed label of what failed, for metrics and logs: `no_space` (the cache's
    /// disk or quota is full), `disk` (another failure of the cache's image store),
    /// `metadata`, `verification`, `upstream`, `not_found` (the image or its data is
    /// gone), `client` (another refusal of the request), `stopped` or `internal`.
    pub fn cause(&self) -> &'static str {
        match self.kind() {
            Self::Blob {
                source: BlobError::Io(e),
                ..
            } if matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) =>
            {
                "no_space"
            }
            Self::Blob { .. } => "disk",
            Self::Meta(_) => "metadata",
            Self::Verification { .. } => "verification",
            Self::Upstream(_) => "upstream",
            Self::NotFound(_) | Self::NoData(_) => "not_found",
            Self::Deactivated(_) | Self::BadRange { .. } | Self::List(_) => "client",
            Self::Stopped => "stopped",
            Self::Internal { .. } | Self::Shared(_) => "internal",
        }
    }

    /// A blob store error, with what the cache was doing.
    pub(crate) fn blob(doing: &'static str) -> impl FnOnce(BlobError) -> Self {
        move |source| Self::Blob { doing, source }
    }

    /// Another internal failure.
    pub(crate) fn internal(reason: impl Into<String>, source: Option<BoxError>) -> Self {
        Self::Internal {
            reason: reason.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_errors_keep_their_origin_and_cause() {
        let disk = CacheError::blob("writing image data")(BlobError::Io(std::io::Error::from(
            std::io::ErrorKind::PermissionDenied,
        )));
        let shared = CacheError::Shared(Arc::new(disk));
        assert_eq!(shared.origin(), ErrorSource::Internal);
        assert!(!shared.is_temporary());
        assert!(shared.to_string().contains("image store"), "{shared}");
        let mut chain = Vec::new();
        let mut e: Option<&(dyn std::error::Error + 'static)> = Some(&shared);
        while let Some(x) = e {
            chain.push(x.to_string());
            e = x.source();
        }
        assert!(chain.len() >= 3, "{chain:?}");
        assert_eq!(shared.cause(), "disk");
        let full = CacheError::blob("writing image data")(BlobError::Io(
            std::io::Error::from_raw_os_error(28),
        ));
        assert_eq!(CacheError::Shared(Arc::new(full)).cause(), "no_space");
        let down = CacheError::Upstream(UpstreamError::Timeout {
            source: "30s passed".into(),
        });
        assert_eq!(down.origin(), ErrorSource::Upstream);
        assert!(down.is_temporary());
    }
}
