//! Single flight: at most one fill per image, and the clients streaming from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::sync::watch;

use crate::blob::BlobTap;
use crate::error::CacheError;
use crate::id::ImageId;
use crate::upstream::ByteStream;

/// The fills in progress, one per image.
#[derive(Debug, Default)]
pub(crate) struct FillRegistry {
    fills: Mutex<HashMap<ImageId, Arc<FillSlot>>>,
}

impl FillRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ImageId, Arc<FillSlot>>> {
        self.fills.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fill of `id` still running, if any.
    pub(crate) fn running(&self, id: &ImageId) -> Option<Arc<FillSlot>> {
        self.lock().get(id).filter(|s| !s.finished()).cloned()
    }

    /// Registers a new fill of `id` (the caller decided under the admission lock that
    /// none is running).
    pub(crate) fn start(&self, id: &ImageId) -> Arc<FillSlot> {
        let slot = Arc::new(FillSlot::new());
        let mut fills = self.lock();
        fills.insert(id.clone(), slot.clone());
        metrics::gauge!("stackfed_cache_fills_in_flight").set(fills.len() as f64);
        metrics::counter!("stackfed_cache_fills_started_total").increment(1);
        slot
    }

    /// Forgets the fill of `id` if it is still `slot`.
    pub(crate) fn finish(&self, id: &ImageId, slot: &Arc<FillSlot>) {
        let mut fills = self.lock();
        if fills.get(id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            fills.remove(id);
        }
        metrics::gauge!("stackfed_cache_fills_in_flight").set(fills.len() as f64);
    }
}

#[derive(Debug, Clone)]
pub(crate) enum FillState {
    /// Waiting for the upstream's first answer.
    Starting,
    /// Bytes arriving.
    Running { written: u64 },
    /// Verified and committed.
    Done { written: u64 },
    /// Gave up; nothing was committed. Every waiter sees the same cause.
    Failed(Arc<CacheError>),
}

/// One fill in progress: its state, and a reader of the blob it writes.
pub(crate) struct FillSlot {
    state: watch::Sender<FillState>,
    tap: OnceLock<Arc<dyn BlobTap>>,
}

impl std::fmt::Debug for FillSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillSlot")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

fn failed(e: &Arc<CacheError>) -> CacheError {
    CacheError::Shared(e.clone())
}

impl FillSlot {
    fn new() -> Self {
        Self {
            state: watch::Sender::new(FillState::Starting),
            tap: OnceLock::new(),
        }
    }

    pub(crate) fn set(&self, s: FillState) {
        self.state.send_replace(s);
    }

    pub(crate) fn set_tap(&self, tap: Arc<dyn BlobTap>) {
        let _ = self.tap.set(tap);
    }

    /// Waits for the fill to end: `Ok` when verified and committed.
    pub(crate) async fn wait(&self) -> Result<(), CacheError> {
        let mut rx = self.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                FillState::Done { .. } => return Ok(()),
                FillState::Failed(e) => return Err(failed(e)),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(CacheError::internal(
                    "a fill ended without an outcome",
                    None,
                ));
            }
        }
    }

    pub(crate) fn finished(&self) -> bool {
        matches!(
            *self.state.borrow(),
            FillState::Done { .. } | FillState::Failed(_)
        )
    }

    /// A stream of `len` bytes from `offset`, as the fill writes them. Waits until the
    /// upstream has answered, so an unreachable upstream (or a blob that cannot be
    /// created) is an error here rather than a broken stream later. Should the fill
    /// fail for a reason of the cache's own once streaming began, the rest comes from
    /// `resume` (the upstream) instead of the stream breaking.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        chunk: usize,
        resume: Resume,
    ) -> Result<ByteStream, CacheError> {
        let mut rx = self.state.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                FillState::Starting => {
                    if rx.changed().await.is_err() {
                        return Err(CacheError::internal("a fill vanished", None));
                    }
                }
                FillState::Failed(e) => return Err(failed(&e)),
                FillState::Running { .. } | FillState::Done { .. } => break,
            }
        }
        let Some(tap) = self.tap.get().cloned() else {
            return Err(CacheError::internal("a fill has no data", None));
        };
        let reader = Reader {
            rx,
            tap: Some(tap),
            pos: offset,
            end: offset + len,
            chunk,
            resume: Some(resume),
            resumed: None,
        };
        Ok(Box::pin(futures::stream::unfold(reader, Reader::next)))
    }
}

/// Where a client streaming from a fill gets the rest of its bytes, from a position on,
/// when the fill fails for a reason of the cache's own.
/// It is given the position and the fill's blob as far as it was written (the bytes the
/// client already has, for verifying the whole image without fetching them again).
pub(crate) type Resume = Box<
    dyn FnOnce(u64, Arc<dyn BlobTap>) -> BoxFuture<'static, Result<ByteStream, CacheError>> + Send,
>;

/// One client's reading of a fill.
struct Reader {
    rx: watch::Receiver<FillState>,
    /// The fill's blob; let go once the rest comes from the upstream (a failed fill's
    /// removed blob held open keeps its space taken until the slowest client finishes).
    tap: Option<Arc<dyn BlobTap>>,
    /// The next byte to send.
    pos: u64,
    /// One past the last byte to send.
    end: u64,
    chunk: usize,
    resume: Option<Resume>,
    /// The rest, from the upstream, once the fill failed.
    resumed: Option<ByteStream>,
}

impl Reader {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if let Some(rest) = self.resumed.as_mut() {
            let item = rest.next().await?;
            return Some((item, self));
        }
        if self.pos >= self.end {
            return None;
        }
        loop {
            let state = self.rx.borrow_and_update().clone();
            let (written, done) = match state {
                FillState::Running { written } => (written, false),
                FillState::Done { written } => (written, true),
                FillState::Failed(e) => {
                    if let (true, Some(resume), Some(tap)) =
                        (e.is_local_fault(), self.resume.take(), self.tap.take())
                    {
                        tracing::warn!(error = %e, at = self.pos, "fill failed; the rest comes from the upstream");
                        return match resume(self.pos, tap).await {
                            Ok(mut rest) => {
                                let item = rest.next().await?;
                                self.resumed = Some(rest);
                                Some((item, self))
                            }
                            Err(re) => self.fail(std::io::Error::other(re)),
                        };
                    }
                    return self.fail(std::io::Error::other(failed(&e)));
                }
                FillState::Starting => (0, false),
            };
            // The last byte is held back until the data is verified and committed: a
            // client never receives a complete body of unverified data.
            let available = if done {
                written.min(self.end)
            } else {
                written.min(self.end.saturating_sub(1))
            };
            if self.pos < available {
                let want = usize::try_from(available - self.pos)
                    .unwrap_or(self.chunk)
                    .min(self.chunk);
                let Some(tap) = self.tap.as_ref() else {
                    return self.fail(std::io::Error::other("fill data let go"));
                };
                return match tap.read_at(self.pos, want).await {
                    Ok(b) if !b.is_empty() => {
                        self.pos += b.len() as u64;
                        Some((Ok(b), self))
                    }
                    Ok(_) => self.fail(std::io::Error::other("fill data vanished")),
                    Err(e) => self.fail(std::io::Error::other(e)),
                };
            }
            if done {
                return self.fail(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "image shorter than promised",
                ));
            }
            if self.rx.changed().await.is_err() {
                // The fill task ended without a final state.
                return self.fail(std::io::Error::other("fill ended"));
            }
        }
    }

    /// Ends the stream with `e`.
    fn fail(mut self, e: std::io::Error) -> Option<(std::io::Result<Bytes>, Self)> {
        self.pos = self.end;
        self.resume = None;
        self.tap = None;
        Some((Err(e), self))
    }
}
