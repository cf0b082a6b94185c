//! Glance-style errors: plain text by default, JSON when asked for, HTML for browsers.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{full, Body};

/// An error answered as Glance answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct GlanceError {
    /// The status.
    pub status: StatusCode,
    /// The explanation.
    pub message: String,
}

impl GlanceError {
    /// An error.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
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

    /// The response, in the format the request's `Accept` header prefers.
    pub fn into_response(self, request_headers: &HeaderMap) -> Response<Body> {
        let accept = request_headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let code = format!(
            "{} {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error")
        );
        let title = self.status.canonical_reason().unwrap_or("Error");
        // As webob negotiates: JSON when asked for, HTML for `text/html` or `*/*`
        // (what browsers and most HTTP clients send), plain text otherwise.
        let html = accept.contains("html") || accept.contains("*/*") || accept.contains("text/*");
        let json = accept.contains("application/json") && !accept.contains("html");
        let (ctype, body) = if json {
            (
                "application/json",
                json!({"message": self.message, "code": code, "title": title}).to_string(),
            )
        } else if html {
            (
                "text/html; charset=UTF-8",
                format!(
                    "<html>\n <head>\n  <title>{code}</title>\n </head>\n <body>\n  <h1>{code}</h1>\n  {}<br /><br />\n\n\n\n </body>\n</html>",
                    html_escape(&self.message)
                ),
            )
        } else {
            (
                "text/plain; charset=UTF-8",
                format!("{code}\n\n{}\n\n   ", self.message),
            )
        };
        let len = body.len();
        let mut r = Response::new(full(body));
        *r.status_mut() = self.status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
