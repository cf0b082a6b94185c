//! The body type the service and the client stream (from `stackfed-http`).

pub use stackfed_http::{boxed, empty, from_stream, full, Body, BoxError};

/// Reads a small body whole (at most `max` bytes). Boxed, so that the handler futures
/// that await it stay simple for the compiler.
pub fn read_small(
    body: Body,
    max: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bytes::Bytes, String>> + Send>> {
    use http_body_util::BodyExt;
    Box::pin(async move {
        let mut body = body;
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > max {
                    return Err(format!("body larger than {max} bytes"));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    })
}
