//! The edge service: a Glance v2 API in front of one central Glance, serving metadata
//! and data from its cache, and reads even while the central is unreachable.
//!
//! [`EdgeService::handle`] runs the same phases for every request, once each:
//!
//! 1. **parse** the request line into a route (a request family);
//! 2. **identify the caller** ([`IdentityMode::identify`], or in Keystone mode
//!    [`KeystoneAuth::identify`]), except for the public
//!    documents (`/`, `/versions`, `/healthcheck`);
//! 3. **resolve and send**: the family answers from the cache (through the engine, which
//!    asks the central when it must) or passes the request through to the central;
//! 4. **map errors**: every failure becomes a [`GlanceError`] answer in one place
//!    ([`crate::error`]);
//! 5. **log** one line.
//!
//! One file per family: `versions` (`/`, `/versions`), `health` (`/healthcheck`),
//! `schemas` (`/v2/schemas/…`), `images` (show, list, download), `cache_api`
//! (`/v2/cache…`), `forward` (writes and everything else, passed through).
//!
//! The service is a `tower::Service`, so it can be wrapped in tower layers and served by
//! `stackfed_http::serve`:
//!
//! ```no_run
//! # async fn run(config: glance_proto::config::EdgeConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let edge = config.build().await?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! stackfed_http::serve(listener, edge.service, stackfed_http::shutdown_signal(),
//!     std::time::Duration::from_secs(10)).await?;
//! edge.background.shutdown().await; // prefetch workers, fills
//! # Ok(()) }
//! ```

mod cache_api;
mod forward;
mod health;
mod images;
mod schemas;
mod versions;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use image_cache_core::engine::ImageCache;
use image_cache_core::upstream::RequestContext;
use image_cache_core::ImageId;
use serde_json::Value;

use crate::body::{from_any, full, Body, BoxError};
use crate::client::CentralClient;
use crate::error::GlanceError;
use crate::identity::IdentityMode;
use crate::keystone::KeystoneAuth;

/// The header that marks an answer served from cache while the central could not
/// confirm it.
pub const STALE_HEADER: &str = "x-edge-stale";

type Result<T, E = GlanceError> = std::result::Result<T, E>;

/// The request id header of OpenStack services.
pub const REQUEST_ID: &str = "x-openstack-request-id";

/// Whether a value is a request id in Glance's form, `req-` and a UUID.
fn is_request_id(v: &[u8]) -> bool {
    v.len() == 40
        && v.starts_with(b"req-")
        && v[4..].iter().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// A new request id in Glance's form: `req-` and a random (version 4) UUID (from a
/// thread-local generator seeded by the system: no system call per request).
fn new_request_id() -> HeaderValue {
    let mut s = [0u8; 40];
    s[..4].copy_from_slice(b"req-");
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut s[4..]);
    HeaderValue::from_bytes(&s).unwrap_or_else(|_| HeaderValue::from_static("req-unknown"))
}

/// The family of a Glance request, for the access log and the metrics: `healthcheck`,
/// `versions`, `schemas`, `images` (list, show, writes), `image-data` (download,
/// upload), `cache` (the cache API), or `other`.
///
/// ```
/// use http::Method;
/// use glance_proto::service::family;
/// assert_eq!(family(&Method::GET, "/v2/images/x/file"), "image-data");
/// assert_eq!(family(&Method::GET, "/v2/images"), "images");
/// ```
pub fn family(_method: &Method, path: &str) -> &'static str {
    match path {
        "/healthcheck" => "healthcheck",
        "/" | "/versions" => "versions",
        "/v2/cache" => "cache",
        p if p.starts_with("/v2/cache/") => "cache",
        p if p.starts_with("/v2/schemas/") => "schemas",
        p if p.starts_with("/v2/images/") && p.ends_with("/file") => "image-data",
        p if p == "/v2/images" || p.starts_with("/v2/images/") => "images",
        _ => "other",
    }
}

/// See the [module docs](self). Cheap to clone: clones share one cache and one client.
#[derive(Debug, Clone)]
pub struct EdgeService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: ImageCache,
    central: CentralClient,
    mode: IdentityMode,
    keystone: Option<KeystoneAuth>,
    documents: schemas::Documents,
    disable_path: Option<std::path::PathBuf>,
}

/// What a request asks for: its family, and what the path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Health,
    Versions {
        root: bool,
    },
    Schema,
    List,
    Show(ImageId),
    Download(ImageId),
    /// `/v2/images/{x}…` where `x` is not an image id.
    NoImage(String),
    Cache,
    Forward,
}

impl Route {
    /// Phase 1: the family of a request.
    fn parse(parts: &Parts) -> Self {
        let path = parts.uri.path();
        let get = parts.method == Method::GET;
        if path == "/healthcheck" {
            return Self::Health;
        }
        if get && (path == "/" || path == "/versions") {
            return Self::Versions { root: path == "/" };
        }
        if get && path.starts_with("/v2/schemas/") {
            return Self::Schema;
        }
        if get && path == "/v2/images" {
            return Self::List;
        }
        if path == "/v2/cache" || path.starts_with("/v2/cache/") {
            return Self::Cache;
        }
        if let Some(rest) = path.strip_prefix("/v2/images/") {
            let (id_text, tail) = rest
                .split_once('/')
                .map_or((rest, None), |(a, b)| (a, Some(b)));
            match (ImageId::parse(id_text), tail) {
                (Some(id), None) if get => return Self::Show(id),
                (Some(id), Some("file")) if get => return Self::Download(id),
                (None, _) => return Self::NoImage(id_text.to_owned()),
                _ => {}
            }
        }
        Self::Forward
    }
}

impl EdgeService {
    /// A service over `cache`, forwarding to `central`.
    pub fn new(cache: ImageCache, central: CentralClient, mode: IdentityMode) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache,
                central,
                mode,
                keystone: None,
                documents: schemas::Documents::default(),
                disable_path: None,
            }),
        }
    }

    /// `/healthcheck` answers 503 `DISABLED BY FILE` while `path` exists.
    pub fn with_disable_path(mut self, path: Option<std::path::PathBuf>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.disable_path = path;
        }
        self
    }

    /// A service over `cache`, forwarding to `central`, whose callers are identified by
    /// their Keystone tokens ([`IdentityMode::Keystone`]).
    pub fn with_keystone(cache: ImageCache, central: CentralClient, auth: KeystoneAuth) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache,
                central,
                mode: IdentityMode::Keystone,
                keystone: Some(auth),
                documents: schemas::Documents::default(),
                disable_path: None,
            }),
        }
    }

    /// Phase 2: who the caller is.
    async fn identify(&self, headers: &http::HeaderMap) -> Result<Caller> {
        match &self.inner.keystone {
            Some(auth) => auth.identify(headers).await,
            None => self.inner.mode.identify(headers),
        }
    }

    /// How the caller's identity goes on to the central with a request the edge passes
    /// through: what it sent, or — with a service identity for the edge's own reads —
    /// the caller's own token, so that the central decides every write.
    fn identity_for_central(&self, caller: &Caller, headers: &http::HeaderMap) -> http::HeaderMap {
        if caller.enforce_locally {
            let mut h = http::HeaderMap::new();
            if let Some(t) = headers.get("x-auth-token") {
                h.insert("x-auth-token", t.clone());
            }
            return h;
        }
        crate::client::identity(caller)
    }

    /// The cache.
    pub fn cache(&self) -> &ImageCache {
        &self.inner.cache
    }

    /// Answers one request; errors become Glance-style responses.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        // Glance's request id: the client's when it sent one in Glance's form, else a new
        // one; it goes to the central with forwarded requests (which logs it as the
        // global request id) and back on every answer, also the edge's own.
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .filter(|v| is_request_id(v.as_bytes()))
            .cloned()
            .unwrap_or_else(new_request_id);
        parts
            .headers
            .insert(HeaderName::from_static(REQUEST_ID), request_id.clone());
        let route = Route::parse(&parts);
        let mut response = match self.answer(route, &parts, from_any(body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(status = %e.status, error = %e.message, "request refused");
                e.into_response(&parts.headers)
            }
        };
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), request_id);
        tracing::debug!(method = %parts.method, path = parts.uri.path(), status = response.status().as_u16(), "answered");
        response
    }

    /// Phases 2 and 3: identify the caller where the family needs one, then let the
    /// family answer.
    async fn answer(&self, route: Route, parts: &Parts, body: Body) -> Result<Response<Body>> {
        let caller = match route {
            Route::Health => return Ok(self.health().await),
            Route::Versions { root } => return Ok(self.versions(parts, root)),
            // Glance authenticates before it routes: a caller who is not identified gets
            // the 401 even for a path that names no image.
            _ => self.identify(&parts.headers).await?,
        };
        if caller.may_not_read {
            // As Glance's policy refuses a caller without a reading role: before any
            // cached answer, online and offline alike. Other calls go to the central.
            match route {
                Route::List => {
                    return Err(GlanceError::new(
                        StatusCode::FORBIDDEN,
                        "You are not authorized to complete get_images action.",
                    ))
                }
                Route::Show(_) | Route::Download(_) => {
                    return Err(GlanceError::new(
                        StatusCode::NOT_FOUND,
                        "The resource could not be found.",
                    ))
                }
                _ => {}
            }
        }
        match route {
            Route::NoImage(id) => Err(GlanceError::no_image(&id)),
            Route::Schema => self.schema(parts, &caller).await,
            Route::List => self.list(parts, &caller).await,
            Route::Show(id) => self.show(&id, &caller).await,
            Route::Download(id) => self.download(parts, &id, &caller).await,
            Route::Cache => self.cache_api(parts, body, &caller).await,
            _ => self.forward(parts, body, &caller).await,
        }
    }
}

/// A JSON answer (marked stale when the central could not confirm it).
fn json_response(status: StatusCode, doc: &Value, stale: bool) -> Response<Body> {
    json_bytes_response(status, Bytes::from(doc.to_string()), stale)
}

/// A JSON answer already encoded (marked stale when the central could not confirm it).
fn json_bytes_response(status: StatusCode, text: Bytes, stale: bool) -> Response<Body> {
    let len = text.len();
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if stale {
        mark_stale(h);
    }
    r
}

fn mark_stale(h: &mut http::HeaderMap) {
    h.insert(
        HeaderName::from_static(STALE_HEADER),
        HeaderValue::from_static("true"),
    );
}

/// A bodiless answer.
fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(crate::body::empty());
    *r.status_mut() = status;
    r
}

/// The caller, for the families that need one.
type Caller = RequestContext;

impl<B> tower::Service<Request<B>> for EdgeService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_have_glances_form() {
        let id = new_request_id();
        assert!(is_request_id(id.as_bytes()), "{id:?}");
        assert_ne!(new_request_id(), new_request_id());
        assert!(!is_request_id(b"req-not-a-uuid"));
        assert_eq!(family(&Method::PUT, "/v2/cache/abc"), "cache");
    }

    fn route(method: Method, uri: &str) -> Route {
        let (parts, ()) = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        Route::parse(&parts)
    }

    #[test]
    fn routes() {
        let id = "9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab";
        let image = ImageId::parse(id).unwrap();
        assert_eq!(route(Method::GET, "/"), Route::Versions { root: true });
        assert_eq!(route(Method::GET, "/healthcheck"), Route::Health);
        assert_eq!(route(Method::GET, "/v2/images?limit=1"), Route::List);
        assert_eq!(route(Method::POST, "/v2/images"), Route::Forward);
        assert_eq!(
            route(Method::GET, &format!("/v2/images/{id}")),
            Route::Show(image.clone())
        );
        assert_eq!(
            route(Method::GET, &format!("/v2/images/{id}/file")),
            Route::Download(image)
        );
        assert_eq!(
            route(Method::DELETE, &format!("/v2/images/{id}")),
            Route::Forward
        );
        assert_eq!(
            route(Method::DELETE, "/v2/images/nope"),
            Route::NoImage("nope".into())
        );
        assert_eq!(route(Method::PUT, &format!("/v2/cache/{id}")), Route::Cache);
        assert_eq!(route(Method::GET, "/v2/schemas/image"), Route::Schema);
    }
}
