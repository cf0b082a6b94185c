//! The one streamed body type both services and the client use.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};

/// Errors a streamed body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed HTTP body: request bodies flow to a backend and response bodies back to
/// the client without being collected.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Boxes any body whose errors convert into [`BoxError`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body from a stream of byte chunks.
pub fn from_stream<S, E>(stream: S) -> Body
where
    S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError>,
{
    use futures::StreamExt;
    let frames = stream.map(|r| r.map(http_body::Frame::data).map_err(Into::into));
    BodyExt::boxed(StreamBody::new(SyncStream(std::sync::Mutex::new(
        Box::pin(frames),
    ))))
}

/// Makes a `Send` stream `Sync` (bodies must be both) behind a mutex only its single
/// poller ever takes.
struct SyncStream<S>(std::sync::Mutex<std::pin::Pin<Box<S>>>);

impl<S: futures::Stream + Send> futures::Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(s) => s.as_mut().poll_next(cx),
            Err(p) => p.into_inner().as_mut().poll_next(cx),
        }
    }
}

/// Whether a body is known to be empty (so a request carrying it can be replayed).
pub fn is_empty<B: http_body::Body>(body: &B) -> bool {
    body.size_hint().exact() == Some(0)
}
