//! One fill: the upstream's bytes written to a blob while they are hashed, verified, then
//! committed (or quarantined), running in the background so it continues after the
//! client that started it left.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;

use super::budget::Reservation;
use super::config::CacheConfig;
use super::inflight::{FillSlot, FillState};
use super::{now_ms, ImageCache};
use crate::error::CacheError;
use crate::hash::Verifier;
use crate::record::ImageRecord;
use crate::upstream::{ByteRange, ByteStream, RequestContext, Upstream, UpstreamError};

/// Bytes gathered before each write (and hash) of a fill.
const WRITE_BATCH: usize = 1 << 20;

/// Ends a fill's registration whichever way its task ends; a task stopped before an
/// outcome (the cache is shutting down) fails its waiters instead of leaving them hanging.
struct Registration {
    cache: ImageCache,
    record: ImageRecord,
    slot: Arc<FillSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.slot.finished() {
            self.slot
                .set(FillState::Failed(Arc::new(CacheError::Stopped)));
        }
        self.cache.inner.fills.finish(&self.record.id, &self.slot);
    }
}

/// A fill, ready to run.
pub(crate) struct Fill {
    pub(crate) record: ImageRecord,
    pub(crate) ctx: RequestContext,
    pub(crate) verifier: Verifier,
    pub(crate) reservation: Reservation,
}

impl Fill {
    /// Registers the fill and starts it in the background; returns its slot.
    pub(crate) fn start(self, cache: &ImageCache) -> Arc<FillSlot> {
        let slot = cache.inner.fills.start(&self.record.id);
        let registration = Registration {
            cache: cache.clone(),
            record: self.record.clone(),
            slot: slot.clone(),
        };
        cache.inner.spawner.spawn(
            "image fill",
            Box::pin(async move {
                let id = registration.record.id.clone();
                if let Err(e) = self.run(&registration.cache, &registration.slot).await {
                    let cause = e.cause();
                    tracing::warn!(image = %id, error = %e, source = %e.origin(), cause, "fill failed");
                    metrics::counter!("stackfed_cache_fill_failures_total", "cause" => cause)
                        .increment(1);
                    if e.is_local_fault() {
                        // Do not keep filling into a failing disk: stream misses
                        // through for a while (set before the waiters learn of it).
                        let i = &registration.cache.inner;
                        let pause = i.config.local_fault_pause;
                        tracing::warn!(pause = ?pause, "fills paused: images stream through uncached");
                        i.budget.pause_fills(pause);
                    }
                    registration.slot.set(FillState::Failed(Arc::new(e)));
                }
                drop(registration);
            }),
        );
        slot
    }

    async fn run(self, cache: &ImageCache, slot: &FillSlot) -> Result<(), CacheError> {
        let Fill {
            record,
            ctx,
            verifier,
            reservation,
        } = self;
        let i = &cache.inner;
        i.upstream_data_fetches.fetch_add(1, Ordering::Relaxed);
        let data = match i.upstream.open(&record.id, None, &ctx).await? {
            Some(d) => d,
            None => return Err(CacheError::NotFound(record.id.clone())),
        };
        let mut writer = i
            .blobs
            .create(&record.id)
            .await
            .map_err(CacheError::blob("creating a blob for image data"))?;
        slot.set_tap(writer.tap());
        slot.set(FillState::Running { written: 0 });
        let mut stream = data.stream;
        let mut written = 0u64;
        // Network frames are small: gather them into pieces of `WRITE_BATCH` bytes. Each
        // piece goes to the blob while the checked hash (or, under `verify = "all"`, the
        // MD5 and the multihash in parallel) is computed on a blocking worker, so
        // reading, writing and hashing overlap. (The workers end when their channel
        // closes, so they never outlive the fill.)
        let (md5, multi) = verifier.split();
        let workers: Vec<_> = [md5, multi]
            .into_iter()
            .flatten()
            .map(|mut v| {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
                let handle = tokio::task::spawn_blocking(move || {
                    while let Some(piece) = rx.blocking_recv() {
                        v.update(&piece);
                    }
                    v
                });
                (tx, handle)
            })
            .collect();
        let mut batch = bytes::BytesMut::with_capacity(WRITE_BATCH);
        let mut ended = false;
        // Bytes taken from the upstream so far (written or in `batch`): where a resume
        // asks the rest from. The hashing state goes on over the resumed bytes, so the
        // final verification still covers every byte of the image.
        let mut received = 0u64;
        let mut resumes = Resumes::new(&i.config);
        while !ended {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    received += chunk.len() as u64;
                    resumes.progress();
                    batch.extend_from_slice(&chunk);
                }
                Some(Err(e)) => {
                    match resumes
                        .resume(&*i.upstream, &record, &ctx, received, e)
                        .await
                    {
                        Ok(Some(rest)) => {
                            i.upstream_data_fetches.fetch_add(1, Ordering::Relaxed);
                            stream = rest;
                            continue;
                        }
                        // Every byte arrived: the verification decides.
                        Ok(None) => ended = true,
                        Err(e) => {
                            let _ = writer.abort(false).await;
                            return Err(e);
                        }
                    }
                }
                None => ended = true,
            }
            if batch.len() < WRITE_BATCH && !ended {
                continue;
            }
            if batch.is_empty() {
                break;
            }
            let piece = batch.split().freeze();
            // The next piece in one allocation (not grown by doubling, which copied
            // every piece about twice more).
            batch.reserve(WRITE_BATCH);
            for (tx, _) in &workers {
                if tx.send(piece.clone()).await.is_err() {
                    let _ = writer.abort(false).await;
                    return Err(CacheError::internal("a hashing worker stopped", None));
                }
            }
            if let Err(e) = writer.write(piece.clone()).await {
                let _ = writer.abort(false).await;
                return Err(CacheError::blob("writing image data")(e));
            }
            written += piece.len() as u64;
            slot.set(FillState::Running { written });
        }
        let mut verdict = Ok(());
        for (tx, handle) in workers {
            drop(tx);
            match handle.await {
                Ok(v) => {
                    if verdict.is_ok() {
                        verdict = v.finish(record.size);
                    }
                }
                Err(e) => {
                    let _ = writer.abort(false).await;
                    return Err(CacheError::internal("hashing failed", Some(e.into())));
                }
            }
        }
        if let Err(source) = verdict {
            tracing::error!(image = %record.id, error = %source, "image data failed verification; quarantined");
            metrics::counter!("stackfed_cache_verification_failures_total").increment(1);
            let _ = writer.abort(true).await;
            return Err(CacheError::Verification {
                id: record.id.clone(),
                source,
            });
        }
        writer
            .commit()
            .await
            .map_err(CacheError::blob("committing image data"))?;
        i.meta.set_cached(&record.id, written, now_ms()).await?;
        // The bytes now count as cached: release the reservation before anyone learns
        // the fill is done, so no admission counts them twice.
        reservation.release();
        slot.set(FillState::Done { written });
        tracing::info!(image = %record.id, bytes = written, "image cached and verified");
        Ok(())
    }
}

/// The resumes of one fill: how many in a row found nothing, and how long to wait
/// before the next. Counted in `stackfed_cache_fill_interruptions_total{cause}` (`stall`:
/// the upstream stayed silent past the read timeout; `broken`: the connection broke) and
/// `stackfed_cache_fill_resumes_total{outcome}` (`ranged`: the upstream sent the rest;
/// `restarted`: it sent the whole image again and the bytes already kept were skipped;
/// `failed`: the fill gave up, its attempts in a row spent without a byte).
struct Resumes {
    max: u32,
    backoff: std::time::Duration,
    /// Attempts since the last byte arrived.
    in_a_row: u32,
}

impl Resumes {
    fn new(config: &CacheConfig) -> Self {
        Self {
            max: config.resume_attempts,
            backoff: config.resume_backoff,
            in_a_row: 0,
        }
    }

    /// A byte arrived: the next break starts a new series of attempts.
    fn progress(&mut self) {
        self.in_a_row = 0;
    }

    /// The rest of the image from byte `have` on, after its data broke off with
    /// `broke`: asked with a range, or whole when the upstream refuses the range (a
    /// store without random access answers 400), its first `have` bytes skipped when the
    /// upstream sends them again. `Ok(None)` when every byte had arrived already; an
    /// error when the attempts ran out (the last cause) or the upstream answered what
    /// no retry changes.
    async fn resume(
        &mut self,
        upstream: &dyn Upstream,
        record: &ImageRecord,
        ctx: &RequestContext,
        have: u64,
        broke: std::io::Error,
    ) -> Result<Option<ByteStream>, CacheError> {
        let stalled = broke.kind() == std::io::ErrorKind::TimedOut;
        metrics::counter!("stackfed_cache_fill_interruptions_total", "cause" => if stalled { "stall" } else { "broken" })
            .increment(1);
        let Some(size) = record.size else {
            return Err(UpstreamError::Interrupted { source: broke }.into());
        };
        if have >= size {
            return Ok(None);
        }
        let mut last: CacheError = UpstreamError::Interrupted { source: broke }.into();
        while self.in_a_row < self.max {
            let wait = self.backoff.saturating_mul(1 << self.in_a_row.min(16));
            self.in_a_row += 1;
            tracing::warn!(image = %record.id, at = have, error = %last, attempt = self.in_a_row, wait = ?wait, "image data broke off; resuming");
            tokio::time::sleep(wait).await;
            let rest = ByteRange {
                first: have,
                last: size - 1,
            };
            match open_span(upstream, &record.id, rest, ctx).await {
                Ok(Some((stream, ranged))) => {
                    let outcome = if ranged { "ranged" } else { "restarted" };
                    metrics::counter!("stackfed_cache_fill_resumes_total", "outcome" => outcome)
                        .increment(1);
                    tracing::info!(image = %record.id, at = have, outcome, "image data resumed");
                    return Ok(Some(stream));
                }
                Ok(None) => return Err(CacheError::NotFound(record.id.clone())),
                Err(CacheError::Upstream(e)) if e.is_temporary() => last = e.into(),
                Err(e) => return Err(e),
            }
        }
        if self.max > 0 {
            metrics::counter!("stackfed_cache_fill_resumes_total", "outcome" => "failed")
                .increment(1);
        }
        Err(last)
    }
}

/// The bytes `span` of an image from the upstream, asked with `Range`: the one place a
/// resume (of a fill that broke off, or of a client whose fill failed on this cache's
/// own disk) asks for the rest of an image. When the upstream refuses the range (a store
/// without random access answers 400) the whole image is asked for instead; when it
/// answers with more than the range (HTTP allows ignoring `Range`), the bytes before
/// `span` are skipped. With the stream, whether the upstream answered the range itself
/// (`true`) or sent the image from its start (`false`). `None`: no such image.
pub(crate) async fn open_span(
    upstream: &dyn Upstream,
    id: &crate::id::ImageId,
    span: ByteRange,
    ctx: &RequestContext,
) -> Result<Option<(ByteStream, bool)>, CacheError> {
    let answer = match upstream.open(id, Some(span), ctx).await {
        // The range refused (not a missing image): ask for the whole again.
        Err(e) if e.is_refusal() => upstream.open(id, None, ctx).await,
        other => other,
    };
    let Some(data) = answer? else {
        return Ok(None);
    };
    let ranged = data.first == span.first;
    Ok(Some((data.from(span.first, Some(span.len()))?, ranged)))
}
