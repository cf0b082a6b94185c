//! One fill: the upstream's bytes written to a blob while they are hashed, verified, then
//! committed (or quarantined), running in the background so it continues after the
//! client that started it left.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;

use super::budget::Reservation;
use super::inflight::{FillSlot, FillState};
use super::{now_ms, ImageCache};
use crate::error::CacheError;
use crate::hash::Verifier;
use crate::record::ImageRecord;
use crate::upstream::{RequestContext, UpstreamError};

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
                    tracing::warn!(image = %id, error = %e, source = %e.origin(), "fill failed");
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
        // piece goes to the blob while the MD5 and the multihash are computed on two
        // blocking workers in parallel, so reading, writing and hashing overlap. (The
        // workers end when their channel closes, so they never outlive the fill.)
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
        while !ended {
            match stream.next().await {
                Some(Ok(chunk)) => batch.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    let _ = writer.abort(false).await;
                    return Err(UpstreamError::Interrupted { source: e }.into());
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
