//! The body type the service and the client stream (from `stackfed-http`), any request
//! body turned into it, and small bodies read whole.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
pub use stackfed_http::{boxed, empty, from_stream, full, Body, BoxError};

/// Any request body with `Bytes` data, as a [`Body`] (which must also be `Sync`: a body
/// that is only `Send`, such as axum's, is wrapped in a mutex only its one poller takes).
pub fn from_any<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    boxed(SyncBody(Mutex::new(Box::pin(body))))
}

struct SyncBody<B>(Mutex<Pin<Box<B>>>);

impl<B: http_body::Body + Send> http_body::Body for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.get_mut().0.get_mut() {
            Ok(b) => b.as_mut().poll_frame(cx),
            Err(poisoned) => poisoned.into_inner().as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.0.lock() {
            Ok(b) => b.is_end_stream(),
            Err(poisoned) => poisoned.into_inner().is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.0.lock() {
            Ok(b) => b.size_hint(),
            Err(poisoned) => poisoned.into_inner().size_hint(),
        }
    }
}

/// Reads a small body whole (at most `max` bytes). Boxed, so that the handler futures
/// that await it stay simple for the compiler's `Send` check.
pub fn read_small(
    body: Body,
    max: usize,
) -> futures::future::BoxFuture<'static, Result<Bytes, BoxError>> {
    use http_body_util::BodyExt;
    Box::pin(async move {
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if buf.len() + data.len() > max {
                    return Err(format!("body larger than {max} bytes").into());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    })
}
