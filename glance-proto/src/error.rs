//! The edge's error answers, as Glance gives them (plain text by default, JSON when asked
//! for, HTML for browsers), and the one mapping from every internal error to its answer.
//!
//! | internal error | answer |
//! |---|---|
//! | no such image (or not the caller's) | 404 |
//! | deactivated image | 403 |
//! | unsatisfiable range | 416 with `Content-Range: bytes */size` |
//! | unknown marker, bad query | 400 |
//! | central unreachable, failing, or its data broke off | 503 |
//! | central did not answer in time | 504 |
//! | central refused (4xx) | its answer, passed on |
//! | central sent something unreadable or data that failed verification | 502 |
//! | the edge's own stores or tasks failed | 500 (503 when the store was only busy) |

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use image_cache_core::list::ListError;
use image_cache_core::upstream::UpstreamError;
use image_cache_core::CacheError;
use serde_json::json;

use crate::body::{empty, full, Body};

/// An error answered as Glance answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct GlanceError {
    /// The status.
    pub status: StatusCode,
    /// The explanation.
    pub message: String,
    /// What few answers carry besides (boxed: errors travel in `Result`s).
    extra: Option<Box<Extra>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Extra {
    /// Headers the answer carries besides the body's (`Content-Range` on a 416).
    headers: HeaderMap,
    /// The central's own answer, passed on as it came (a refusal).
    central: Option<(Bytes, Option<HeaderValue>)>,
}

impl GlanceError {
    /// An error.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            extra: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for an image id.
    pub fn no_image(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("No image found with ID {id}"),
        )
    }

    /// 503 with a reason.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The answer to the central failing us, saying what that means for this request
    /// (`consequence`, e.g. "changing images is not possible from this edge while it is
    /// offline").
    pub fn from_upstream(e: &UpstreamError, consequence: &str) -> Self {
        let (status, what) = match e {
            UpstreamError::Refused {
                status,
                body,
                content_type,
            } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut err = Self::new(status, String::from_utf8_lossy(body).trim().to_owned());
                err.extra.get_or_insert_default().central = Some((
                    body.clone(),
                    content_type
                        .as_deref()
                        .and_then(|c| HeaderValue::from_str(c).ok()),
                ));
                return err;
            }
            UpstreamError::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "The central image service did not answer in time",
            ),
            UpstreamError::Failing { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The central image service is failing",
            ),
            UpstreamError::Invalid { .. } => (
                StatusCode::BAD_GATEWAY,
                "The central image service sent an invalid answer",
            ),
            UpstreamError::Request { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "A request to the central image service could not be made",
            ),
            // Unreachable, Interrupted, and whatever is added later.
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The central image service is unreachable",
            ),
        };
        Self::new(status, format!("{what}; {consequence} ({e})"))
    }

    /// Adds a header to the answer.
    fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.extra
            .get_or_insert_default()
            .headers
            .insert(name, value);
        self
    }

    /// The response, in the format the request's `Accept` header prefers (a refusal of
    /// the central's is passed on as it came).
    pub fn into_response(self, request_headers: &HeaderMap) -> Response<Body> {
        let Extra { headers, central } = self.extra.map(|e| *e).unwrap_or_default();
        let mut r = match central {
            Some((body, content_type)) => {
                let len = body.len();
                let mut r = Response::new(full(body));
                if let Some(ct) = content_type {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                r.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                r
            }
            None if self.status == StatusCode::NO_CONTENT => Response::new(empty()),
            None => negotiated(self.status, &self.message, request_headers),
        };
        *r.status_mut() = self.status;
        for (k, v) in &headers {
            r.headers_mut().insert(k.clone(), v.clone());
        }
        r
    }
}

fn negotiated(status: StatusCode, message: &str, request_headers: &HeaderMap) -> Response<Body> {
    let accept = request_headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let title = status.canonical_reason().unwrap_or("Error");
    let code = format!("{} {title}", status.as_u16());
    // As webob negotiates: JSON when asked for, HTML for `text/html` or `*/*`
    // (what browsers and most HTTP clients send), plain text otherwise.
    let html = accept.contains("html") || accept.contains("*/*") || accept.contains("text/*");
    let json = accept.contains("application/json") && !accept.contains("html");
    let (ctype, body) = if json {
        (
            "application/json",
            json!({"message": message, "code": code, "title": title}).to_string(),
        )
    } else if html {
        (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{code}</title>\n </head>\n <body>\n  <h1>{code}</h1>\n  {}<br /><br />\n\n\n\n </body>\n</html>",
                html_escape(message)
            ),
        )
    } else {
        (
            "text/plain; charset=UTF-8",
            format!("{code}\n\n{message}\n\n   "),
        )
    };
    let len = body.len();
    let mut r = Response::new(full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl From<UpstreamError> for GlanceError {
    fn from(e: UpstreamError) -> Self {
        Self::from_upstream(&e, "this edge cannot answer alone")
    }
}

impl From<CacheError> for GlanceError {
    fn from(e: CacheError) -> Self {
        match e.kind() {
            CacheError::NotFound(id) => Self::no_image(id.as_str()),
            CacheError::NoData(_) => Self::new(StatusCode::NO_CONTENT, "The image has no data"),
            CacheError::Deactivated(_) => Self::new(
                StatusCode::FORBIDDEN,
                "The requested image has been deactivated. Image data download is forbidden.",
            ),
            CacheError::BadRange { size } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Requested range not satisfiable",
            )
            .with_header(
                header::CONTENT_RANGE,
                stackfed_http::range::unsatisfied_range(*size),
            ),
            CacheError::List(ListError::UnknownMarker(m)) => {
                Self::bad_request(format!("No image found with ID {m}"))
            }
            CacheError::List(other) => Self::bad_request(other.to_string()),
            CacheError::Upstream(u) => Self::from_upstream(u, "this edge cannot answer alone"),
            CacheError::Verification { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                format!("The central image service sent image data that failed verification ({e})"),
            ),
            CacheError::Stopped => Self::unavailable("This edge is shutting down"),
            other => {
                let status = if other.is_temporary() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                Self::new(
                    status,
                    format!("This edge failed ({} error): {e}", e.origin()),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_cache_core::blob::BlobError;
    use image_cache_core::ImageId;
    use std::sync::Arc;

    fn id() -> ImageId {
        ImageId::parse("9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab").unwrap()
    }

    fn status(e: CacheError) -> StatusCode {
        GlanceError::from(e).status
    }

    #[test]
    fn one_mapping_for_every_internal_error() {
        let unreachable = || UpstreamError::Unreachable {
            source: "connection refused".into(),
        };
        assert_eq!(status(CacheError::NotFound(id())), 404);
        assert_eq!(status(CacheError::Deactivated(id())), 403);
        assert_eq!(status(unreachable().into()), 503);
        let timeout = UpstreamError::Timeout {
            source: "no answer within 30s".into(),
        };
        let e = GlanceError::from(CacheError::from(timeout));
        assert_eq!(e.status, 504);
        assert!(
            e.message.contains("did not answer in time"),
            "{}",
            e.message
        );
        assert_eq!(status(UpstreamError::Failing { status: 500 }.into()), 503);
        assert_eq!(
            status(UpstreamError::invalid("not JSON", "eof").into()),
            502
        );
        // A disk error during a fill several clients share: the edge's fault, a 500 that
        // says what failed — not "the central is unreachable".
        let disk = CacheError::Shared(Arc::new(CacheError::Blob {
            doing: "writing image data",
            source: BlobError::Io(std::io::Error::other("No space left on device")),
        }));
        let e = GlanceError::from(disk);
        assert_eq!(e.status, 500);
        assert!(
            e.message.contains("writing image data") && e.message.contains("No space left"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("unreachable"), "{}", e.message);
        let range =
            GlanceError::from(CacheError::BadRange { size: 10 }).into_response(&HeaderMap::new());
        assert_eq!(range.status(), 416);
        assert_eq!(range.headers()[header::CONTENT_RANGE], "bytes */10");
        let refused = GlanceError::from(UpstreamError::Refused {
            status: 409,
            body: Bytes::from_static(b"{\"conflict\": 1}"),
            content_type: Some("application/json".into()),
        })
        .into_response(&HeaderMap::new());
        assert_eq!(refused.status(), 409);
        assert_eq!(refused.headers()[header::CONTENT_TYPE], "application/json");
    }
}
