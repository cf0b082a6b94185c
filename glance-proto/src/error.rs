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
//! | central refused (4xx) | its status and message, in the format the client asked for |
//! | central sent something unreadable or data that failed verification | 502 |
//! | the edge's own stores or tasks failed | 500 (503 when the store was only busy) |

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use image_cache_core::list::ListError;
use image_cache_core::upstream::UpstreamError;
use image_cache_core::CacheError;

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
    /// webob's title for the status when it is not the status's reason phrase (its 416
    /// is "Request Range Not Satisfiable").
    title: Option<&'static str>,
    /// webob's `detail`, written after the explanation (the message).
    detail: Option<String>,
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
        if stackfed_http::RequestBodyTimeout::caused(e) {
            // The client's body stalled while it was streamed to the central.
            return Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "The server has waited too long for the request to be sent by the client.",
            );
        }
        let (status, what) = match e {
            UpstreamError::Refused {
                status,
                body,
                content_type,
            } => {
                // The edge asked in a format of its own choosing (JSON for show and
                // list): the central's words, in the format the client negotiated.
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
                let message = central_message(body, content_type.as_deref())
                    .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").to_owned());
                return Self::new(status, message);
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
    pub(crate) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.extra
            .get_or_insert_default()
            .headers
            .insert(name, value);
        self
    }

    /// A 416 as Glance answers it: webob's title and explanation, and Glance's `detail`.
    pub(crate) fn range_not_satisfiable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "The Range requested is not available.",
        );
        let extra = e.extra.get_or_insert_default();
        extra.title = Some("Request Range Not Satisfiable");
        extra.detail = Some(detail.into());
        e
    }

    /// The response, in the format the request's `Accept` header prefers.
    pub fn into_response(self, request_headers: &HeaderMap) -> Response<Body> {
        let Extra {
            headers,
            title,
            detail,
        } = self.extra.map(|e| *e).unwrap_or_default();
        let mut r = if self.status == StatusCode::NO_CONTENT {
            Response::new(empty())
        } else {
            let page = Page {
                title,
                explanation: &self.message,
                detail: detail.as_deref().unwrap_or(""),
            };
            page.negotiated(self.status, request_headers)
        };
        *r.status_mut() = self.status;
        for (k, v) in &headers {
            r.headers_mut().insert(k.clone(), v.clone());
        }
        r
    }
}

/// The message of an error answer of the central's, whatever format it came in (webob's
/// JSON, HTML or plain text), without its markup; `None` when it says nothing.
fn central_message(body: &[u8], content_type: Option<&str>) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let raw = if let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) {
        // `{"message": …}`, or one level down (`{"error": {"message": …}}`).
        let field = |v: &serde_json::Value| {
            v.get("message")
                .or_else(|| v.get("explanation"))
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        };
        field(&doc)
            .or_else(|| doc.as_object().and_then(|o| o.values().find_map(field)))
            .unwrap_or_else(|| text.to_owned())
    } else if ct.contains("html") || text.starts_with('<') {
        // webob's page: the title again in `<h1>`, then the message.
        let lower = text.to_ascii_lowercase();
        let start = lower.find("<body").unwrap_or(0);
        let end = lower.rfind("</body>").unwrap_or(text.len());
        let inner = &text[start..end.max(start)];
        let inner = match (inner.find("<h1>"), inner.find("</h1>")) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &inner[..a], &inner[b + 5..]),
            _ => inner.to_owned(),
        };
        inner
    } else {
        // webob's plain text: `<code> <title>`, a blank line, the message.
        match text.split_once("\n\n") {
            Some((first, rest))
                if first.len() > 4 && first.as_bytes()[..3].iter().all(u8::is_ascii_digit) =>
            {
                rest.to_owned()
            }
            _ => text.to_owned(),
        }
    };
    let message = strip_markup(&raw);
    (!message.is_empty()).then_some(message)
}

/// Text without tags (`<br />` becomes a line break), entities decoded, blank lines
/// dropped and lines trimmed.
fn strip_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        match rest[i..].find('>') {
            Some(j) => {
                if rest[i + 1..].to_ascii_lowercase().starts_with("br") {
                    out.push('\n');
                }
                rest = &rest[i + j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
fn negotiated(status: StatusCode, message: &str, request_headers: &HeaderMap) -> Response<Body> {
    Page {
        title: None,
        explanation: message,
        detail: "",
    }
    .negotiated(status, request_headers)
}

/// What webob's error page says: a title (the status's reason phrase unless given), the
/// explanation, and a detail (often empty).
struct Page<'a> {
    title: Option<&'static str>,
    explanation: &'a str,
    detail: &'a str,
}

impl Page<'_> {
    /// The page in the format `Accept` chooses, as webob renders it.
    fn negotiated(&self, status: StatusCode, request_headers: &HeaderMap) -> Response<Body> {
        let page = self;
        let (message, detail) = (page.explanation, page.detail);
        let accept = request_headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let title = page
            .title
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("Error"));
        let code = format!("{} {title}", status.as_u16());
        let choice = negotiate(accept);
        let (ctype, body) = if choice == Some("application/json") {
            (
                "application/json",
                // webob's `json_body`, byte for byte: Python's `json.dumps` of the page's
                // message (with the template's `<br /><br />` and blank lines), code, title.
                format!(
                    "{{\"message\": {}, \"code\": {}, \"title\": {}}}",
                    stackfed_http::pyjson::string(&format!("{message}<br /><br />\n{detail}\n\n")),
                    stackfed_http::pyjson::string(&code),
                    stackfed_http::pyjson::string(title)
                ),
            )
        } else if choice == Some("text/html") {
            (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{code}</title>\n </head>\n <body>\n  <h1>{code}</h1>\n  {}<br /><br />\n{}\n\n\n </body>\n</html>",
                html_escape(message),
                html_escape(detail)
            ),
        )
        } else {
            (
                "text/plain; charset=UTF-8",
                format!("{code}\n\n{message}\n\n {detail}  "),
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
}

/// What webob answers an error with for this `Accept`: its `acceptable_offers` over
/// `text/html` then `application/json` — each offer takes the quality of the most
/// specific media range that matches it (`type/subtype` over `type/*` over `*/*`), offers
/// of quality 0 are out, the best quality wins and a tie goes to HTML. `None` (plain
/// text) when neither is acceptable, also for a missing or empty header.
fn negotiate(accept: &str) -> Option<&'static str> {
    let ranges: Vec<(String, String, f32)> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let range = parts.next()?.trim().to_ascii_lowercase();
            let (ty, sub) = range.split_once('/')?;
            let mut q = 1.0f32;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.trim().parse().ok().filter(|q| (0.0..=1.0).contains(q))?;
                    }
                }
            }
            Some((ty.trim().to_owned(), sub.trim().to_owned(), q))
        })
        .collect();
    let quality = |offer: &str| {
        let (ty, sub) = offer.split_once('/').unwrap_or((offer, ""));
        ranges
            .iter()
            .filter_map(|(t, s, q)| {
                let specificity = match (t.as_str(), s.as_str()) {
                    (t, s) if t == ty && s == sub => 3,
                    (t, "*") if t == ty => 2,
                    ("*", "*") => 1,
                    _ => return None,
                };
                Some((specificity, *q))
            })
            .max_by_key(|(specificity, _)| *specificity)
            .map_or(0.0, |(_, q)| q)
    };
    let (html, json) = (quality("text/html"), quality("application/json"));
    match (html > 0.0, json > 0.0) {
        (false, false) => None,
        (true, false) => Some("text/html"),
        (false, true) => Some("application/json"),
        (true, true) if json > html => Some("application/json"),
        (true, true) => Some("text/html"),
    }
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
            CacheError::BadRange { size } => Self::range_not_satisfiable(format!(
                "Invalid start position in Range header. Start position MUST be in the \
                 inclusive range [0, {}].",
                i128::from(*size) - 1
            ))
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
    use bytes::Bytes;
    use image_cache_core::blob::BlobError;
    use image_cache_core::meta::MetaError;
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
        // A full metadata disk is a lasting fault (500); only a busy store is a 503.
        let full = GlanceError::from(CacheError::Meta(MetaError::storage(
            "database or disk is full",
        )));
        assert_eq!(full.status, 500);
        assert!(
            full.message
                .contains("metadata store failed: database or disk is full"),
            "{}",
            full.message
        );
        assert_eq!(
            status(CacheError::Meta(MetaError::unavailable(
                "database is locked"
            ))),
            503
        );
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
        // Without `Accept`, plain text, as the edge's own errors.
        assert_eq!(
            refused.headers()[header::CONTENT_TYPE],
            "text/plain; charset=UTF-8"
        );
    }

    #[test]
    fn json_errors_are_webobs_bytes() {
        let r = negotiated(
            StatusCode::NOT_FOUND,
            "No \"image\" é",
            &[(header::ACCEPT, HeaderValue::from_static("application/json"))]
                .into_iter()
                .collect(),
        );
        let body = futures::executor::block_on(http_body_util::BodyExt::collect(r.into_body()))
            .unwrap()
            .to_bytes();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"message": "No \"image\" \u00e9<br /><br />\n\n\n", "code": "404 Not Found", "title": "Not Found"}"#
        );
    }

    #[test]
    fn error_formats_are_negotiated_as_webob_does() {
        for (accept, want) in [
            ("", None),
            ("*/*", Some("text/html")),
            ("text/html", Some("text/html")),
            ("application/json", Some("application/json")),
            ("application/json, */*;q=0.1", Some("application/json")),
            (
                "text/html;q=0.5, application/json",
                Some("application/json"),
            ),
            ("application/*", Some("application/json")),
            ("text/*", Some("text/html")),
            ("text/plain", None),
            ("application/json;q=0, */*", Some("text/html")),
            ("*/*;q=0", None),
            ("text/html, application/json", Some("text/html")),
        ] {
            assert_eq!(negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn the_centrals_message_is_read_without_its_markup() {
        let msg = |body: &str, ct: &str| central_message(body.as_bytes(), Some(ct));
        let said = "Invalid marker. Image 0 could not be found.";
        assert_eq!(
            msg(
                &format!(
                    "{{\"message\": \"{said}<br /><br />\\n\\n\\n\", \"code\": \"400 Bad Request\", \"title\": \"Bad Request\"}}"
                ),
                "application/json"
            )
            .as_deref(),
            Some(said)
        );
        assert_eq!(
            msg(&format!("400 Bad Request\n\n{said}\n\n   "), "text/plain").as_deref(),
            Some(said)
        );
        let page = format!(
            "<html>\n <head>\n  <title>400 Bad Request</title>\n </head>\n <body>\n  <h1>400 Bad Request</h1>\n  {said}<br /><br />\n\n\n\n </body>\n</html>"
        );
        assert_eq!(msg(&page, "text/html").as_deref(), Some(said));
        assert_eq!(msg("", "text/plain"), None);
    }
}
