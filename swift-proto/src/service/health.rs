//! `/healthcheck` for load balancers, and the request families the access log and the
//! request metrics name.
//!
//! `/healthcheck` is answered locally, at once, never by asking a cluster: 503
//! `DISABLED BY FILE` while the configured `disable_path` exists (Swift's drain
//! switch), 503 with the reason when the last background probe found the proxy not
//! ready (no cluster online, the attribute store not answering), else 200 `OK`.

use http::{Method, Response, StatusCode};
use stackfed_http::Body;

use super::FederationService;

impl FederationService {
    pub(super) fn healthcheck(&self) -> Response<Body> {
        if let Some(path) = &self.inner.disable_path {
            if path.exists() {
                return super::text(StatusCode::SERVICE_UNAVAILABLE, "DISABLED BY FILE");
            }
        }
        match self.inner.readiness.as_ref().and_then(|r| r.get()) {
            Some(Err(why)) => {
                let mut r = Response::new(stackfed_http::full(format!("NOT READY: {why}")));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                );
                r
            }
            // Ready, or no probe configured (or not yet run: the clusters are assumed
            // online until probed, as the registry does).
            _ => super::text(StatusCode::OK, "OK"),
        }
    }
}

/// The family of a Swift request, for the access log and the metrics: `healthcheck`,
/// `info`, `auth`, `account`, `container`, `object`, or `other` (a path Swift refuses).
///
/// ```
/// use http::Method;
/// use swift_proto::service::family;
/// assert_eq!(family(&Method::GET, "/v1/AUTH_a/c/o/p"), "object");
/// assert_eq!(family(&Method::GET, "/v1/AUTH_a/c"), "container");
/// assert_eq!(family(&Method::GET, "/v1/AUTH_a"), "account");
/// assert_eq!(family(&Method::GET, "/metrics"), "other");
/// ```
pub fn family(_method: &Method, path: &str) -> &'static str {
    match path {
        "/healthcheck" => return "healthcheck",
        "/info" => return "info",
        _ => {}
    }
    if path.starts_with("/auth/") {
        return "auth";
    }
    let Some(rest) = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v1.0/"))
    else {
        return "other";
    };
    let mut buf = [""; 3];
    let n = crate::path::split_slashes(rest, &mut buf);
    let part = |i: usize| (i < n).then(|| buf[i]);
    match (part(0), part(1), part(2)) {
        (Some(a), None | Some(""), None) if !a.is_empty() => "account",
        (Some(a), Some(c), None | Some("")) if !a.is_empty() && !c.is_empty() => "container",
        (Some(a), Some(c), Some(_)) if !a.is_empty() && !c.is_empty() => "object",
        _ => "other",
    }
}
