//! The upstream: where images come from (the central Glance, for the edge): one image's
//! metadata, a page of the listing, an image's data (whole or a range), and the errors
//! that say why it could not answer.

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::error::{BoxError, ErrorSource};
use crate::id::ImageId;
use crate::list::{ListQuery, Page};
use crate::record::ImageRecord;

/// A stream of image bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A byte range, both ends included, as in HTTP `Range: bytes=first-last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// The first byte.
    pub first: u64,
    /// The last byte (inclusive).
    pub last: u64,
}

impl ByteRange {
    /// The number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never empty: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A `Range` request before it is resolved against an image's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-` or `bytes=first-last`.
    From {
        /// The first byte.
        first: u64,
        /// The last byte, if given (clamped to the size).
        last: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl RangeSpec {
    /// The bytes this asks for in an image of `size` bytes; `None` when it cannot be
    /// satisfied (HTTP 416).
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        match self {
            Self::From { first, last } => {
                if first >= size {
                    return None;
                }
                let last = last.map_or(size - 1, |l| l.min(size - 1));
                (first <= last).then_some(ByteRange { first, last })
            }
            Self::Suffix(0) => None,
            Self::Suffix(n) => Some(ByteRange {
                first: size.saturating_sub(n),
                last: size.checked_sub(1)?,
            }),
        }
    }
}

/// The identity a request acts as: what the cache checks access with, and the headers
/// forwarded to the upstream as the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Headers that carry identity (`X-Auth-Token`, `X-Identity-Status`, `X-Project-Id`,
    /// `X-Roles`, …), forwarded verbatim.
    pub identity_headers: Vec<(String, String)>,
    /// The caller's project, if known.
    pub project_id: Option<String>,
    /// Whether the caller is an admin (sees every image).
    pub is_admin: bool,
    /// Whether the upstream is asked as someone who sees more than the caller (an edge
    /// acting as its own service user): the cache then applies [`may_see`](Self::may_see)
    /// to the upstream's answers too, instead of trusting the upstream to decide.
    pub enforce_locally: bool,
    /// The caller holds no role that lets it read images (Glance's secure-RBAC
    /// defaults want `reader` in a project, or `admin`; an unscoped token has neither):
    /// the service refuses its reads before the cache is asked.
    pub may_not_read: bool,
}

impl RequestContext {
    /// An admin context with no identity headers (no-auth deployments, tests).
    pub fn admin() -> Self {
        Self {
            is_admin: true,
            ..Self::default()
        }
    }

    /// Whether the caller may see `record` on cached metadata alone: admins see all;
    /// public and community images are everyone's; private ones their owner's; shared
    /// ones their owner's and their accepted members'. Anyone else is refused, online
    /// (after the upstream is asked) and offline alike.
    pub fn may_see(&self, record: &crate::record::ImageRecord) -> bool {
        use crate::record::Visibility::*;
        let project = self.project_id.as_deref();
        self.is_admin
            || matches!(record.visibility, Public | Community)
            || (project.is_some() && record.owner.as_deref() == project)
            || (record.visibility == Shared
                && project.is_some_and(|p| record.members.iter().any(|m| m == p)))
    }
}

/// Why the upstream could not answer. [`origin`](Self::origin) says whose fault it is,
/// [`is_temporary`](Self::is_temporary) whether a retry may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No answer: the upstream could not be reached, or the connection broke.
    #[error("upstream unreachable: {source}")]
    Unreachable {
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The upstream did not answer in time.
    #[error("upstream did not answer in time: {source}")]
    Timeout {
        /// What timed out.
        #[source]
        source: BoxError,
    },
    /// Data the upstream was sending broke off.
    #[error("upstream data broke off: {source}")]
    Interrupted {
        /// The stream's error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream answered with a server error (5xx).
    #[error("upstream failed with status {status}")]
    Failing {
        /// Its status.
        status: u16,
    },
    /// The upstream refused the request (a 4xx other than those the calls answer with
    /// `None`): its answer is passed on.
    #[error("upstream refused the request with status {status}")]
    Refused {
        /// The upstream's status.
        status: u16,
        /// Its body.
        body: Bytes,
        /// Its content type, if any.
        content_type: Option<String>,
    },
    /// The upstream sent something unreadable.
    #[error("upstream sent an invalid answer: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
        /// The parser's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The request to the upstream could not be made (a bad URL in the configuration, a
    /// header that cannot be sent): a fault of this side, not the upstream's.
    #[error("a request to the upstream could not be made: {source}")]
    Request {
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl UpstreamError {
    /// Where the fault came from.
    pub fn origin(&self) -> ErrorSource {
        match self {
            Self::Request { .. } => ErrorSource::Internal,
            _ => ErrorSource::Upstream,
        }
    }

    /// Whether the same request may succeed later (the upstream was unreachable, slow or
    /// failing; not when it refused or sent nonsense).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Timeout { .. }
                | Self::Interrupted { .. }
                | Self::Failing { .. }
        )
    }

    /// Whether the upstream did not answer in time (a gateway answers 504).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether this is an answer of the upstream (a refusal) rather than the lack of one:
    /// a refusal is passed on; without an answer, the cache may serve what it has.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }

    /// An invalid answer, with its cause.
    pub fn invalid(reason: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Invalid {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }
}

/// An image's data as the upstream serves it.
pub struct UpstreamData {
    /// Total size of the image (not of the range), when known.
    pub total_size: Option<u64>,
    /// Where in the image the stream starts: the first byte of the range the upstream
    /// answered with (HTTP `206`'s `Content-Range`), 0 when it sent the whole image (an
    /// upstream may answer a `Range` with all of it: HTTP allows ignoring `Range`).
    pub first: u64,
    /// The bytes (of the range, if one was asked for).
    pub stream: ByteStream,
}

impl UpstreamData {
    /// The stream cut to the bytes from `first` on (`len` of them, or to the end when
    /// `None`), whatever part of the image the upstream answered with: bytes before
    /// `first` (a whole image sent for a range) are skipped, bytes past the end dropped.
    /// An answer starting after `first` cannot give those bytes: `Invalid`.
    pub fn from(self, first: u64, len: Option<u64>) -> Result<ByteStream, UpstreamError> {
        if self.first > first {
            return Err(UpstreamError::Invalid {
                reason: format!(
                    "asked for the bytes from {first} on, the upstream sent them from {} on",
                    self.first
                ),
                source: None,
            });
        }
        let stream = skip(self.stream, first - self.first);
        Ok(match len {
            Some(n) => take(stream, n),
            None => stream,
        })
    }
}

/// `stream` without its first `n` bytes.
pub fn skip(stream: ByteStream, n: u64) -> ByteStream {
    use futures::StreamExt;
    if n == 0 {
        return stream;
    }
    let mut left = n;
    Box::pin(stream.filter_map(move |item| {
        let out = match item {
            Ok(mut b) if left > 0 => {
                let cut = usize::try_from(left).unwrap_or(usize::MAX).min(b.len());
                left -= cut as u64;
                let rest = b.split_off(cut);
                (!rest.is_empty()).then_some(Ok(rest))
            }
            other => Some(other),
        };
        futures::future::ready(out)
    }))
}

/// The first `n` bytes of `stream` (it ends there, without reading further).
pub fn take(stream: ByteStream, n: u64) -> ByteStream {
    use futures::StreamExt;
    Box::pin(futures::stream::unfold(
        (stream, n),
        |(mut stream, left)| async move {
            if left == 0 {
                return None;
            }
            match stream.next().await? {
                Ok(mut b) => {
                    let keep = usize::try_from(left).unwrap_or(usize::MAX).min(b.len());
                    b.truncate(keep);
                    Some((Ok(b), (stream, left - keep as u64)))
                }
                Err(e) => Some((Err(e), (stream, 0))),
            }
        },
    ))
}

impl fmt::Debug for UpstreamData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamData")
            .field("total_size", &self.total_size)
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

/// Where images come from.
#[async_trait]
pub trait Upstream: Send + Sync + fmt::Debug + 'static {
    /// One image's metadata; `Ok(None)` when the upstream says it does not exist.
    async fn get(
        &self,
        id: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError>;

    /// One page of the upstream's listing for `query` (filters, sort, marker, limit), as
    /// the caller may see it.
    async fn list(&self, query: &ListQuery, ctx: &RequestContext) -> Result<Page, UpstreamError>;

    /// An image's data (a range of it, if given); `Ok(None)` when the image is gone.
    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
        ctx: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use proptest::prelude::*;

    fn answer(image: &[u8], first: usize, cuts: &[usize]) -> UpstreamData {
        let mut pieces = Vec::new();
        let mut at = first;
        for c in cuts {
            let end = (at + c).min(image.len());
            pieces.push(Ok(Bytes::copy_from_slice(&image[at..end])));
            at = end;
        }
        pieces.push(Ok(Bytes::copy_from_slice(&image[at..])));
        UpstreamData {
            total_size: None,
            first: first as u64,
            stream: Box::pin(futures::stream::iter(pieces)),
        }
    }

    proptest! {
        /// Whatever part of the image the upstream answered with (from `sent` on, in
        /// any pieces), the bytes from `want` on (`len` of them, or all) are exactly the
        /// image's; an answer starting after `want` is refused.
        #[test]
        fn from_gives_exactly_the_bytes_asked(
            size in 1usize..2000,
            sent in 0usize..2000,
            want in 0usize..2000,
            len in proptest::option::of(0u64..2500),
            cuts in proptest::collection::vec(0usize..700, 0..6),
        ) {
            let image: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let (sent, want) = (sent.min(size), want.min(size));
            let out = answer(&image, sent, &cuts).from(want as u64, len);
            if sent > want {
                let refused = matches!(out, Err(UpstreamError::Invalid { .. }));
                prop_assert!(refused);
                return Ok(());
            }
            let got: Vec<Bytes> = futures::executor::block_on(out.unwrap().try_collect()).unwrap();
            let end = len.map_or(size, |n| (want + n as usize).min(size));
            prop_assert_eq!(got.concat(), image[want..end].to_vec());
        }
    }
}
