//! Image data: hits streamed from the blob store, misses joined to (or starting) the one
//! fill of the image, and pass-through from the upstream for what will not be cached.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use super::fill::{open_span, Fill};
use super::inflight::{FillSlot, Resume};
use super::{now_ms, ImageCache};
use crate::blob::BlobTap;
use crate::error::CacheError;
use crate::hash::{Verifier, VerifyPolicy};
use crate::id::ImageId;
use crate::record::{ImageRecord, ImageStatus};
use crate::upstream::{skip, ByteRange, ByteStream, RangeSpec, RequestContext};

/// Where image data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataSource {
    /// A verified blob in the cache.
    Cache,
    /// A fill in progress (this request started it or joined it).
    Fill,
    /// Straight from the upstream, not cached (a range on a miss, or an image the size
    /// budget cannot take or its checksums cannot verify).
    Upstream,
}

/// Image data ready to stream.
#[non_exhaustive]
pub struct ImageData {
    /// The image's metadata.
    pub record: ImageRecord,
    /// Whether the metadata is stale.
    pub stale: bool,
    /// The whole image's size.
    pub size: u64,
    /// The range being sent, if a range was asked for.
    pub range: Option<ByteRange>,
    /// Where the bytes come from.
    pub source: DataSource,
    /// The bytes.
    pub stream: ByteStream,
}

impl std::fmt::Debug for ImageData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageData")
            .field("id", &self.record.id)
            .field("size", &self.size)
            .field("range", &self.range)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What admission decided for a miss.
pub(crate) enum Admitted {
    /// A fill is running (started now or before).
    Fill(Arc<FillSlot>),
    /// The image became cached meanwhile.
    Cached,
    /// It will not be cached: stream it through.
    Bypass,
}

impl ImageCache {
    /// An image's data, whole or a range: from a verified blob when cached, else from the
    /// one fill of this image in progress (started now if there is none). A range on a
    /// miss is answered from the upstream and queues a fill.
    pub async fn data(
        &self,
        id: &ImageId,
        range: Option<RangeSpec>,
        ctx: &RequestContext,
    ) -> Result<ImageData, CacheError> {
        let served = self.image(id, ctx).await?;
        let record = served.value;
        match record.status {
            ImageStatus::Active => {}
            // As Glance: an admin may still download a deactivated image.
            ImageStatus::Deactivated if ctx.is_admin => {}
            ImageStatus::Deactivated => return Err(CacheError::Deactivated(id.clone())),
            _ => return Err(CacheError::NoData(id.clone())),
        }
        let i = &self.inner;
        let cached = i.meta.cache_entry(id).await?;
        let size = match (record.size, &cached) {
            (Some(s), _) => s,
            (None, Some(e)) => e.size,
            (None, None) => return Err(CacheError::NoData(id.clone())),
        };
        let range = match range {
            None => None,
            Some(spec) => Some(spec.resolve(size).ok_or(CacheError::BadRange { size })?),
        };
        let piece = Piece {
            record,
            stale: served.stale,
            size,
            range,
        };
        if cached.is_some() {
            if let Some(data) = self.open_cached(&piece).await? {
                return Ok(data);
            }
            // The entry lied (blob removed behind our back): fill again.
            i.meta.clear_cached(id).await?;
        }
        let admitted = match (i.fills.running(id), range) {
            (Some(slot), _) => Admitted::Fill(slot),
            // A range on a miss: answer it from the upstream now, fill in the background.
            (None, Some(_)) => {
                self.queue(id, ctx);
                Admitted::Bypass
            }
            (None, None) => self.admit(&piece.record, ctx).await?,
        };
        match admitted {
            Admitted::Fill(slot) => {
                let resume: Resume = {
                    let (cache, record, ctx) = (self.clone(), piece.record.clone(), ctx.clone());
                    let span = range.unwrap_or(ByteRange {
                        first: 0,
                        last: size.saturating_sub(1),
                    });
                    Box::new(move |pos, sent| {
                        async move {
                            cache
                                .resume(&record, span, range.is_none(), pos, sent, &ctx)
                                .await
                        }
                        .boxed()
                    })
                };
                let stream = slot
                    .subscribe(
                        range.map_or(0, |r| r.first),
                        range.map_or(size, |r| r.len()),
                        i.config.chunk_size,
                        resume,
                    )
                    .await?;
                Ok(piece.with(DataSource::Fill, stream))
            }
            Admitted::Cached => match self.open_cached(&piece).await? {
                Some(data) => Ok(data),
                None => self.pass_through(piece, ctx).await,
            },
            Admitted::Bypass => self.pass_through(piece, ctx).await,
        }
    }

    /// Decides, under the budget, whether a miss is filled; evicts to make room.
    pub(crate) async fn admit(
        &self,
        record: &ImageRecord,
        ctx: &RequestContext,
    ) -> Result<Admitted, CacheError> {
        let i = &self.inner;
        let _one_at_a_time = i.budget.lock().await;
        if let Some(slot) = i.fills.running(&record.id) {
            return Ok(Admitted::Fill(slot));
        }
        if i.meta.cache_entry(&record.id).await?.is_some() {
            return Ok(Admitted::Cached);
        }
        if i.budget.fills_paused() {
            tracing::info!(image = %record.id, "not cached: a fill just failed on this cache's own storage");
            return Ok(Admitted::Bypass);
        }
        let verifier = match verifier(record, i.config.verify) {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(image = %record.id, reason = %e, "not cached: its data cannot be verified");
                return Ok(Admitted::Bypass);
            }
        };
        let Some(reservation) = i
            .budget
            .make_room(&record.id, record.size, &*i.meta, &*i.blobs)
            .await?
        else {
            return Ok(Admitted::Bypass);
        };
        let fill = Fill {
            record: record.clone(),
            ctx: ctx.clone(),
            verifier,
            reservation,
        };
        Ok(Admitted::Fill(fill.start(self)))
    }

    async fn open_cached(&self, piece: &Piece) -> Result<Option<ImageData>, CacheError> {
        let i = &self.inner;
        let id = &piece.record.id;
        let guard = i.budget.read_guard(id);
        let Some(read) = i
            .blobs
            .open(id, piece.range)
            .await
            .map_err(CacheError::blob("opening cached image data"))?
        else {
            return Ok(None);
        };
        i.meta.touch(id, now_ms()).await?;
        let stream = read.stream.inspect(move |_| {
            let _ = &guard;
        });
        Ok(Some(
            piece.clone().with(DataSource::Cache, Box::pin(stream)),
        ))
    }

    /// The rest of `span` from the upstream, from byte `pos` on, for a client whose fill
    /// failed for a reason of the cache's own (a full or failing disk) after it was sent
    /// the bytes before `pos`: asked with `Range: bytes=<pos>-<last>`, as a fill resumes
    /// (`open_span`). A whole image is still verified before its last byte goes out: the
    /// bytes the client already has are hashed from what the fill wrote (`sent`); should
    /// they not be readable, the whole image is fetched again and its first `pos` bytes
    /// skipped. Counted in `stackfed_cache_fill_fallbacks_total{outcome}` (`ranged`,
    /// `restarted`: the upstream sent the image from its start, `whole`).
    async fn resume(
        &self,
        record: &ImageRecord,
        span: ByteRange,
        whole: bool,
        pos: u64,
        sent: Arc<dyn BlobTap>,
        ctx: &RequestContext,
    ) -> Result<ByteStream, CacheError> {
        let i = &self.inner;
        i.upstream_data_fetches.fetch_add(1, Ordering::Relaxed);
        let rest = ByteRange {
            first: pos,
            last: span.last,
        };
        let fallback = |outcome: &'static str| {
            metrics::counter!("stackfed_cache_fill_fallbacks_total", "outcome" => outcome)
                .increment(1);
            tracing::info!(image = %record.id, at = pos, outcome, "the rest of the image comes from the upstream");
        };
        let checked = match (whole, verifier(record, i.config.verify)) {
            (true, Ok(v)) => match hash_prefix(v, &*sent, pos, i.config.chunk_size).await {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(image = %record.id, error = %e, "the bytes already sent cannot be read back: fetching the whole image again");
                    let Some(data) = i.upstream.open(&record.id, None, ctx).await? else {
                        return Err(CacheError::NotFound(record.id.clone()));
                    };
                    let v = verifier(record, i.config.verify)
                        .map_err(|e| CacheError::internal("verifier", Some(e.into())))?;
                    fallback("whole");
                    return Ok(skip(verified(data.from(0, None)?, v, record.size), pos));
                }
            },
            _ => None,
        };
        let Some((stream, ranged)) = open_span(&*i.upstream, &record.id, rest, ctx).await? else {
            return Err(CacheError::NotFound(record.id.clone()));
        };
        fallback(if ranged { "ranged" } else { "restarted" });
        Ok(match checked {
            Some(v) => verified(stream, v, record.size),
            None => stream,
        })
    }

    /// Streams straight from the upstream; a whole image is still verified, its last
    /// piece held back until it is.
    async fn pass_through(
        &self,
        piece: Piece,
        ctx: &RequestContext,
    ) -> Result<ImageData, CacheError> {
        let i = &self.inner;
        i.upstream_data_fetches.fetch_add(1, Ordering::Relaxed);
        let Some(data) = i.upstream.open(&piece.record.id, piece.range, ctx).await? else {
            return Err(CacheError::NotFound(piece.record.id.clone()));
        };
        // An upstream may answer a range with the whole image: only the range is sent.
        let stream = match (piece.range, verifier(&piece.record, i.config.verify)) {
            (None, Ok(v)) => verified(data.from(0, None)?, v, piece.record.size),
            (None, Err(_)) => data.from(0, None)?,
            (Some(r), _) => data.from(r.first, Some(r.len()))?,
        };
        Ok(piece.with(DataSource::Upstream, stream))
    }
}

/// What is being served, before its bytes are found.
#[derive(Debug, Clone)]
struct Piece {
    record: ImageRecord,
    stale: bool,
    size: u64,
    range: Option<ByteRange>,
}

impl Piece {
    /// The answer, its stream counted in `stackfed_cache_data_requests_total{source}`
    /// and `stackfed_cache_bytes_served_total{source}` (`cache`, `fill`, `upstream`).
    fn with(self, source: DataSource, stream: ByteStream) -> ImageData {
        use futures::StreamExt;
        let label = match source {
            DataSource::Cache => "cache",
            DataSource::Fill => "fill",
            DataSource::Upstream => "upstream",
        };
        metrics::counter!("stackfed_cache_data_requests_total", "source" => label).increment(1);
        let bytes = metrics::counter!("stackfed_cache_bytes_served_total", "source" => label);
        let stream: ByteStream = Box::pin(stream.inspect(move |chunk| {
            if let Ok(c) = chunk {
                bytes.increment(c.len() as u64);
            }
        }));
        ImageData {
            record: self.record,
            stale: self.stale,
            size: self.size,
            range: self.range,
            source,
            stream,
        }
    }
}

/// `verifier` fed the first `len` bytes of `blob`.
async fn hash_prefix(
    mut verifier: Verifier,
    blob: &dyn BlobTap,
    len: u64,
    chunk: usize,
) -> Result<Verifier, CacheError> {
    while verifier.bytes() < len {
        let want = usize::try_from(len - verifier.bytes())
            .unwrap_or(chunk)
            .min(chunk);
        let piece = blob
            .read_at(verifier.bytes(), want)
            .await
            .map_err(CacheError::blob("reading back image data"))?;
        if piece.is_empty() {
            return Err(CacheError::internal("fill data vanished", None));
        }
        verifier.update(&piece);
    }
    Ok(verifier)
}

/// The verifier of `record`'s data under `policy`; an error when nothing it names can
/// be checked (then the data streams through uncached).
fn verifier(
    record: &ImageRecord,
    policy: VerifyPolicy,
) -> Result<Verifier, crate::hash::VerifyError> {
    Verifier::new(
        record.checksum.as_deref(),
        record.os_hash_algo.as_deref(),
        record.os_hash_value.as_deref(),
        policy,
    )
}

/// Streams `stream` through `verifier`, holding the last piece back until the whole is
/// verified (so a corrupted image never arrives complete).
fn verified(stream: ByteStream, verifier: Verifier, size: Option<u64>) -> ByteStream {
    let state = (stream, Some(verifier), None::<Bytes>);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut stream, mut verifier, mut held)| async move {
            // Ended (verified, or failed): the inner stream is not polled again.
            verifier.as_ref()?;
            loop {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        if let Some(v) = verifier.as_mut() {
                            v.update(&chunk);
                        }
                        if let Some(prev) = held.replace(chunk) {
                            return Some((Ok(prev), (stream, verifier, held)));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), (stream, None, None))),
                    None => {
                        let v = verifier.take()?;
                        return match v.finish(size) {
                            Ok(()) => held.take().map(|last| (Ok(last), (stream, None, None))),
                            Err(e) => Some((Err(std::io::Error::other(e)), (stream, None, None))),
                        };
                    }
                }
            }
        },
    ))
}
