//! The streamed body type.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};

/// Errors a streamed body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed HTTP body.
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

/// Boxes any body.
pub fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A body from a byte stream.
pub fn from_stream(stream: image_cache_core::upstream::ByteStream) -> Body {
    use futures::StreamExt;
    let frames = stream.map(|r| {
        r.map(hyper::body::Frame::data)
            .map_err(|e| Box::new(e) as BoxError)
    });
    BodyExt::boxed(StreamBody::new(SyncStream(std::sync::Mutex::new(
        Box::pin(frames),
    ))))
}

/// Makes a `Send` stream `Sync` (bodies must be both) by guarding it with a mutex that
/// only the single poller ever takes.
struct SyncStream<S>(std::sync::Mutex<std::pin::Pin<Box<S>>>);

impl<S: futures::Stream + Send> futures::Stream for SyncStream<S> {
    type Item = S::Item;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let this = self.get_mut();
        match this.0.get_mut() {
            Ok(s) => s.as_mut().poll_next(cx),
            Err(p) => p.into_inner().as_mut().poll_next(cx),
        }
    }
}
