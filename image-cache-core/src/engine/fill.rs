//! One fill in progress, and the clients streaming from it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::watch;

use super::CacheError;
use crate::blob::BlobTap;
use crate::upstream::ByteStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FillState {
    /// Waiting for the upstream's first answer.
    Starting,
    /// Bytes arriving.
    Running { written: u64 },
    /// Verified and committed.
    Done { written: u64 },
    /// Gave up; nothing was committed.
    Failed(String),
}

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

impl FillSlot {
    pub(crate) fn new() -> Self {
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
            match rx.borrow_and_update().clone() {
                FillState::Done { .. } => return Ok(()),
                FillState::Failed(e) => return Err(CacheError::Unavailable(e)),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(CacheError::Unavailable(
                    "fill ended without an outcome".into(),
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
    /// upstream has answered, so an unreachable upstream is an error here rather than a
    /// broken stream later.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        offset: u64,
        len: u64,
        chunk: usize,
    ) -> Result<ByteStream, CacheError> {
        let mut rx = self.state.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                FillState::Starting => {
                    if rx.changed().await.is_err() {
                        return Err(CacheError::Unavailable("fill vanished".into()));
                    }
                }
                FillState::Failed(e) => return Err(CacheError::Unavailable(e)),
                FillState::Running { .. } | FillState::Done { .. } => break,
            }
        }
        let Some(tap) = self.tap.get().cloned() else {
            return Err(CacheError::Unavailable("fill has no data".into()));
        };
        let end = offset + len;
        let stream =
            futures::stream::unfold((rx, tap, offset), move |(mut rx, tap, pos)| async move {
                if pos >= end {
                    return None;
                }
                loop {
                    let state = rx.borrow_and_update().clone();
                    let (written, done) = match state {
                        FillState::Running { written } => (written, false),
                        FillState::Done { written } => (written, true),
                        FillState::Failed(e) => {
                            return Some((Err(std::io::Error::other(e)), (rx, tap, end)));
                        }
                        FillState::Starting => (0, false),
                    };
                    // The last byte is held back until the data is verified and committed:
                    // a client never receives a complete body of unverified data.
                    let available = if done {
                        written.min(end)
                    } else {
                        written.min(end.saturating_sub(1))
                    };
                    if pos < available {
                        let want = usize::try_from(available - pos).unwrap_or(chunk).min(chunk);
                        return match tap.read_at(pos, want).await {
                            Ok(b) if !b.is_empty() => {
                                let n = b.len() as u64;
                                Some((Ok::<Bytes, std::io::Error>(b), (rx, tap, pos + n)))
                            }
                            Ok(_) => Some((
                                Err(std::io::Error::other("fill data vanished")),
                                (rx, tap, end),
                            )),
                            Err(e) => Some((Err(std::io::Error::other(e)), (rx, tap, end))),
                        };
                    }
                    if done {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "image shorter than promised",
                            )),
                            (rx, tap, end),
                        ));
                    }
                    if rx.changed().await.is_err() {
                        // The fill task ended without a final state.
                        return Some((Err(std::io::Error::other("fill ended")), (rx, tap, end)));
                    }
                }
            });
        Ok(Box::pin(stream))
    }
}

/// Streams `stream` through `verifier`, holding the last piece back until the whole is
/// verified (so a corrupted image never arrives complete).
pub(crate) fn verified(
    stream: ByteStream,
    verifier: crate::hash::Verifier,
    size: Option<u64>,
) -> ByteStream {
    use futures::StreamExt;
    let state = (stream, Some(verifier), None::<Bytes>);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut stream, mut verifier, mut held)| async move {
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
