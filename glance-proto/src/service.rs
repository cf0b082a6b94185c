//! The edge service: a Glance v2 API in front of one central Glance, serving metadata
//! and data from its cache, and reads even while the central is unreachable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use image_cache_core::engine::{ImageCache, ImageData};
use image_cache_core::upstream::{RangeSpec, RequestContext, UpstreamError};
use image_cache_core::{CacheError, ImageId};
use serde_json::{json, Value};

use crate::body::{boxed, empty, from_stream, full, Body, BoxError};
use crate::client::CentralClient;
use crate::error::GlanceError;
use crate::image::to_json;
use crate::query::parse_list_query;

/// The header that marks an answer served from cache while the central could not
/// confirm it.
pub const STALE_HEADER: &str = "x-edge-stale";

/// How requests are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMode {
    /// No authentication: every request is an admin (as Glance's `noauth` context).
    #[default]
    NoAuth,
    /// Identity from trusted headers set by an authenticating front end
    /// (`X-Identity-Status: Confirmed`, `X-Project-Id`, `X-Roles`), forwarded to the central.
    TrustedHeaders,
}

const IDENTITY_HEADERS: [&str; 7] = [
    "x-auth-token",
    "x-identity-status",
    "x-project-id",
    "x-tenant-id",
    "x-user-id",
    "x-roles",
    "x-domain-id",
];

type Result<T, E = GlanceError> = std::result::Result<T, E>;

/// See the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct EdgeService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: ImageCache,
    central: CentralClient,
    mode: IdentityMode,
    documents: Mutex<HashMap<String, (HeaderMap, Bytes)>>,
}

fn cache_error(e: CacheError, id: &ImageId) -> GlanceError {
    match e {
        CacheError::NotFound(_) => GlanceError::no_image(id.as_str()),
        CacheError::Deactivated(_) => GlanceError::new(
            StatusCode::FORBIDDEN,
            "The requested image has been deactivated. Image data download is forbidden.",
        ),
        CacheError::BadRange { size } => GlanceError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("Requested range not satisfiable for an image of {size} bytes"),
        ),
        CacheError::Unavailable(m) => GlanceError::unavailable(format!(
            "The central image service is unreachable and this edge cannot answer alone: {m}"
        )),
        CacheError::Refused(UpstreamError::Refused { status, body, .. }) => GlanceError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            String::from_utf8_lossy(&body).trim().to_owned(),
        ),
        other => GlanceError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

fn json_response(status: StatusCode, doc: &Value, stale: bool) -> Response<Body> {
    let text = doc.to_string();
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
        h.insert(
            HeaderName::from_static(STALE_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    r
}

/// The request's `Range` (one range; several or inverted: 416), in the engine's terms.
fn parse_range(headers: &HeaderMap) -> Result<Option<RangeSpec>, ()> {
    use stackfed_http::range::{self, RangeSpec as Wire};
    Ok(range::parse_range(headers)
        .map_err(|_| ())?
        .map(|r| match r {
            Wire::From { first, last } => RangeSpec::From { first, last },
            Wire::Suffix(n) => RangeSpec::Suffix(n),
        }))
}

impl EdgeService {
    /// A service over `cache`, forwarding to `central`.
    pub fn new(cache: ImageCache, central: CentralClient, mode: IdentityMode) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache,
                central,
                mode,
                documents: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &ImageCache {
        &self.inner.cache
    }

    /// Answers one request; errors become Glance-style responses.
    pub async fn handle<B>(&self, req: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        match self.route(&parts, boxed(body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(status = %e.status, error = %e.message, "request refused");
                e.into_response(&parts.headers)
            }
        }
    }

    fn context(&self, headers: &HeaderMap) -> Result<RequestContext> {
        let mut ctx = RequestContext::default();
        for name in IDENTITY_HEADERS {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                ctx.identity_headers.push((name.to_owned(), v.to_owned()));
            }
        }
        match self.inner.mode {
            IdentityMode::NoAuth => ctx.is_admin = true,
            IdentityMode::TrustedHeaders => {
                let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                if get("x-identity-status") != Some("Confirmed") {
                    return Err(GlanceError::new(StatusCode::UNAUTHORIZED, "This server could not verify that you are authorized to access the document you requested."));
                }
                ctx.project_id = get("x-project-id")
                    .or_else(|| get("x-tenant-id"))
                    .map(str::to_owned);
                ctx.is_admin = get("x-roles")
                    .is_some_and(|r| r.split(',').any(|x| x.trim().eq_ignore_ascii_case("admin")));
            }
        }
        Ok(ctx)
    }

    async fn route(&self, parts: &Parts, body: Body) -> Result<Response<Body>> {
        let path = parts.uri.path();
        let get = parts.method == Method::GET;
        if path == "/healthcheck" {
            return Ok(self.health().await);
        }
        if get && (path == "/" || path == "/versions") {
            return self.versions(parts, path == "/").await;
        }
        if path.starts_with("/v2/schemas/") && get {
            return self.document(parts).await;
        }
        if get && path == "/v2/images" {
            return self.list(parts).await;
        }
        if path == "/v2/cache" || path.starts_with("/v2/cache/") {
            return self.cache_api(parts, body).await;
        }
        if let Some(rest) = path.strip_prefix("/v2/images/") {
            let (id_text, tail) = rest
                .split_once('/')
                .map_or((rest, None), |(a, b)| (a, Some(b)));
            let id = ImageId::parse(id_text);
            match (&parts.method, id, tail) {
                (&Method::GET, Some(id), None) => return self.show(parts, &id).await,
                (&Method::GET, Some(id), Some("file")) => return self.download(parts, &id).await,
                (_, None, _) => return Err(GlanceError::no_image(id_text)),
                _ => {}
            }
        }
        self.forward(parts, body).await
    }

    async fn health(&self) -> Response<Body> {
        let reachable = self.inner.central.reachable().await;
        let (images, bytes) = self.inner.cache.usage().await.unwrap_or((0, 0));
        json_response(
            StatusCode::OK,
            &json!({
                "status": "ok",
                "central": {"url": self.inner.central.base().as_str(), "reachable": reachable},
                "cache": {"images": images, "bytes": bytes},
            }),
            false,
        )
    }

    /// `GET /` (300) and `/versions` (200), links on the request's host. The edge has an
    /// image cache, so it lists the versions Glance lists when its own cache is on
    /// (2.14–2.18 add the cache API); built locally, so it also answers offline.
    async fn versions(&self, parts: &Parts, root: bool) -> Result<Response<Body>> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let href = format!("http://{host}/v2/");
        let versions: Vec<Value> = (0..=18)
            .rev()
            .map(|minor| {
                json!({
                    "id": format!("v2.{minor}"),
                    "status": if minor == 18 { "CURRENT" } else { "SUPPORTED" },
                    "links": [{"rel": "self", "href": href}],
                })
            })
            .collect();
        let status = if root {
            StatusCode::MULTIPLE_CHOICES
        } else {
            StatusCode::OK
        };
        Ok(json_response(
            status,
            &json!({ "versions": versions }),
            false,
        ))
    }

    /// A document that rarely changes (`/versions`, schemas): from the central when it
    /// answers, else the last copy.
    async fn cached_document(&self, path: &str, headers: &HeaderMap) -> Option<(HeaderMap, Bytes)> {
        match self.inner.central.fetch(path, headers).await {
            Ok((s, h, b)) if s.is_success() || s == StatusCode::MULTIPLE_CHOICES => {
                self.inner
                    .documents
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(path.to_owned(), (h.clone(), b.clone()));
                Some((h, b))
            }
            _ => self
                .inner
                .documents
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(path)
                .cloned(),
        }
    }

    async fn document(&self, parts: &Parts) -> Result<Response<Body>> {
        let ctx = self.context(&parts.headers)?;
        let (_, body) = self
            .cached_document(parts.uri.path(), &crate::client::identity(&ctx))
            .await
            .ok_or_else(|| {
                GlanceError::unavailable(
                    "The central image service is unreachable and this document is not cached",
                )
            })?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| GlanceError::unavailable("bad document from the central"))?;
        Ok(json_response(StatusCode::OK, &doc, false))
    }

    async fn show(&self, parts: &Parts, id: &ImageId) -> Result<Response<Body>> {
        let ctx = self.context(&parts.headers)?;
        let served = self
            .inner
            .cache
            .image(id, &ctx)
            .await
            .map_err(|e| cache_error(e, id))?;
        Ok(json_response(
            StatusCode::OK,
            &to_json(&served.value),
            served.stale,
        ))
    }

    async fn download(&self, parts: &Parts, id: &ImageId) -> Result<Response<Body>> {
        let ctx = self.context(&parts.headers)?;
        let range = match parse_range(&parts.headers) {
            Ok(r) => r,
            Err(()) => {
                return Err(GlanceError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "Multiple or inverted ranges are not supported",
                ));
            }
        };
        let data = match self.inner.cache.data(id, range, &ctx).await {
            Ok(d) => d,
            Err(CacheError::NoData(_)) => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::NO_CONTENT;
                return Ok(r);
            }
            Err(CacheError::BadRange { size }) => {
                let mut r = GlanceError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "Requested range not satisfiable",
                )
                .into_response(&parts.headers);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
            Err(e) => return Err(cache_error(e, id)),
        };
        Ok(data_response(data))
    }

    async fn list(&self, parts: &Parts) -> Result<Response<Body>> {
        let ctx = self.context(&parts.headers)?;
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/v2/images", |p| p.as_str());
        let mut h = crate::client::identity(&ctx);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        match self.inner.central.fetch(pq, &h).await {
            Ok((StatusCode::OK, _, body)) => {
                let doc: Value = serde_json::from_slice(&body)
                    .map_err(|_| GlanceError::unavailable("bad listing from the central"))?;
                let records = crate::image::images_of(&doc);
                if let Err(e) = self.inner.cache.record_seen(&records).await {
                    tracing::warn!(error = %e, "could not record listed images");
                }
                Ok(json_response(StatusCode::OK, &doc, false))
            }
            Ok((status, headers, body)) if !status.is_server_error() => {
                let mut r = Response::new(full(body));
                *r.status_mut() = status;
                if let Some(ct) = headers.get(header::CONTENT_TYPE) {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
                }
                Ok(r)
            }
            _ => self.list_offline(parts, &ctx).await,
        }
    }

    /// The listing from cached metadata, with Glance's query semantics.
    async fn list_offline(&self, parts: &Parts, ctx: &RequestContext) -> Result<Response<Body>> {
        let query = parse_list_query(parts.uri.query())?;
        let records = self
            .inner
            .cache
            .visible_records(ctx)
            .await
            .map_err(|e| GlanceError::unavailable(e.to_string()))?;
        let (page, more) = query.apply(records).map_err(|e| match e {
            image_cache_core::list::ListError::UnknownMarker(m) => {
                GlanceError::bad_request(format!("No image found with ID {m}"))
            }
            other => GlanceError::bad_request(other.to_string()),
        })?;
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "marker")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let encode = |extra: Option<&str>| {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params {
                s.append_pair(k, v);
            }
            if let Some(m) = extra {
                s.append_pair("marker", m);
            }
            let q = s.finish();
            if q.is_empty() {
                "/v2/images".to_owned()
            } else {
                format!("/v2/images?{q}")
            }
        };
        let mut doc = json!({
            "images": page.iter().map(to_json).collect::<Vec<_>>(),
            "first": encode(None),
            "schema": "/v2/schemas/images",
        });
        if more {
            if let Some(last) = page.last() {
                doc["next"] = Value::String(encode(Some(last.id.as_str())));
            }
        }
        Ok(json_response(StatusCode::OK, &doc, true))
    }

    /// Glance's cache API (`glance cache-list`, `cache-queue`, `cache-delete`,
    /// `cache-clear`), plus `PUT`/`DELETE /v2/cache/{id}/pin` and
    /// `POST /v2/cache/prefetch` (`{"filters": {"os_distro": "ubuntu"}}`). Admins only.
    async fn cache_api(&self, parts: &Parts, body: Body) -> Result<Response<Body>> {
        let ctx = self.context(&parts.headers)?;
        if !ctx.is_admin {
            return Err(GlanceError::new(
                StatusCode::FORBIDDEN,
                "Access was denied to this resource.",
            ));
        }
        let cache = &self.inner.cache;
        let rest = parts
            .uri
            .path()
            .trim_start_matches("/v2/cache")
            .trim_start_matches('/');
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let no_content = || {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        };
        let internal =
            |e: CacheError| GlanceError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        match (&parts.method, segments.as_slice()) {
            (&Method::GET, []) => {
                let cached = cache.cached().await.map_err(internal)?;
                let doc = json!({
                    "cached_images": cached.iter().map(|e| json!({
                        "image_id": e.id.as_str(),
                        "hits": e.hits,
                        "last_accessed": e.last_access_ms as f64 / 1000.0,
                        "last_modified": e.cached_at_ms as f64 / 1000.0,
                        "size": e.size,
                        "pinned": e.pinned,
                    })).collect::<Vec<_>>(),
                    "queued_images": cache.queued().iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>(),
                });
                Ok(json_response(StatusCode::OK, &doc, false))
            }
            (&Method::DELETE, []) => {
                let target = parts
                    .headers
                    .get("x-image-cache-clear-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("both");
                let (cached, queue) = match target {
                    "both" | "" => (true, true),
                    "cache" => (true, false),
                    "queue" => (false, true),
                    other => {
                        return Err(GlanceError::bad_request(format!(
                            "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string, not {other}"
                        )))
                    }
                };
                if queue {
                    cache.clear_queue();
                }
                if cached {
                    cache.clear_cached().await.map_err(internal)?;
                }
                Ok(no_content())
            }
            (&Method::POST, ["prefetch"]) => {
                let bytes = crate::body::read_small(body, 64 * 1024)
                    .await
                    .map_err(|_| {
                        GlanceError::bad_request("Request body too large or unreadable")
                    })?;
                let doc: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    GlanceError::bad_request(
                        "Body must be JSON: {\"filters\": {\"key\": \"value\"}}",
                    )
                })?;
                let filters: Vec<(String, String)> = doc
                    .get("filters")
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        GlanceError::bad_request(
                            "Body must be JSON: {\"filters\": {\"key\": \"value\"}}",
                        )
                    })?
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect();
                let ids = self.prefetch_matching(&filters, &ctx).await?;
                let doc = json!({"queued": ids.iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>()});
                Ok(json_response(StatusCode::ACCEPTED, &doc, false))
            }
            (method, [id_text, tail @ ..]) => {
                let id = ImageId::parse(id_text).ok_or_else(|| GlanceError::no_image(id_text))?;
                match (method, tail) {
                    (&Method::PUT, []) => {
                        cache
                            .image(&id, &ctx)
                            .await
                            .map_err(|e| cache_error(e, &id))?;
                        cache.queue(&id, &ctx);
                        let mut r = Response::new(empty());
                        *r.status_mut() = StatusCode::ACCEPTED;
                        Ok(r)
                    }
                    (&Method::DELETE, []) => {
                        cache.delete_cached(&id).await.map_err(internal)?;
                        Ok(no_content())
                    }
                    (&Method::PUT, ["pin"]) | (&Method::DELETE, ["pin"]) => {
                        cache
                            .set_pinned(&id, *method == Method::PUT)
                            .await
                            .map_err(internal)?;
                        Ok(no_content())
                    }
                    _ => Err(GlanceError::new(
                        StatusCode::NOT_FOUND,
                        "The resource could not be found.",
                    )),
                }
            }
            _ => Err(GlanceError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            )),
        }
    }

    /// Queues every image matching `filters` (property equality; `visibility` too) for
    /// caching: the central's listing when it answers, else the cached records.
    pub async fn prefetch_matching(
        &self,
        filters: &[(String, String)],
        ctx: &RequestContext,
    ) -> Result<Vec<ImageId>> {
        let query = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in filters {
                q.append_pair(k, v);
            }
            q.append_pair("limit", "1000");
            q.finish()
        };
        let mut next = Some(format!("/v2/images?{query}"));
        let mut ids = Vec::new();
        let mut h = crate::client::identity(ctx);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let mut online = true;
        while let Some(path) = next.take() {
            match self.inner.central.fetch(&path, &h).await {
                Ok((StatusCode::OK, _, body)) => {
                    let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let records = crate::image::images_of(&doc);
                    let _ = self.inner.cache.record_seen(&records).await;
                    ids.extend(records.into_iter().map(|r| r.id));
                    next = doc.get("next").and_then(Value::as_str).map(str::to_owned);
                }
                Ok((status, _, body)) if status.is_client_error() => {
                    return Err(GlanceError::new(
                        status,
                        String::from_utf8_lossy(&body).trim().to_owned(),
                    ));
                }
                _ => {
                    online = false;
                    break;
                }
            }
        }
        if !online {
            let mut q = image_cache_core::list::ListQuery::default();
            q.filters = filters
                .iter()
                .filter(|(k, _)| k != "visibility")
                .cloned()
                .collect();
            q.visibility = filters
                .iter()
                .find(|(k, _)| k == "visibility")
                .map(|(_, v)| v.clone());
            q.limit = image_cache_core::list::MAX_LIMIT;
            let records = self
                .inner
                .cache
                .visible_records(ctx)
                .await
                .map_err(|e| GlanceError::unavailable(e.to_string()))?;
            ids = q
                .apply(records)
                .map(|(page, _)| page.into_iter().map(|r| r.id).collect())
                .unwrap_or_default();
        }
        for id in &ids {
            self.inner.cache.queue(id, ctx);
        }
        tracing::info!(count = ids.len(), ?filters, online, "prefetch queued");
        Ok(ids)
    }

    /// Anything else (writes, members, tasks, …) goes to the central, streamed both ways;
    /// 503 when it is unreachable.
    async fn forward(&self, parts: &Parts, body: Body) -> Result<Response<Body>> {
        let ctx = self.context(&parts.headers)?;
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = parts.headers.clone();
        headers.remove(header::HOST);
        if self.inner.mode == IdentityMode::TrustedHeaders {
            // Only what we vouched for travels on.
            for n in IDENTITY_HEADERS {
                headers.remove(n);
            }
            for (k, v) in crate::client::identity(&ctx) {
                if let Some(k) = k {
                    headers.insert(k, v);
                }
            }
        }
        let resp = self
            .inner
            .central
            .send(parts.method.clone(), pq, &headers, body)
            .await
            .map_err(|e| GlanceError::unavailable(format!(
                "The central image service is unreachable; {} is not possible from this edge while it is offline ({e})",
                if parts.method == Method::GET { "this request" } else { "changing images" }
            )))?;
        let status = resp.status();
        if status.is_success() && parts.method != Method::GET {
            self.after_write(parts).await;
        }
        let (p, b) = resp.into_parts();
        let mut r = Response::new(boxed(b));
        *r.status_mut() = p.status;
        for (k, v) in &p.headers {
            if k != header::CONNECTION && k != header::TRANSFER_ENCODING {
                r.headers_mut().append(k.clone(), v.clone());
            }
        }
        Ok(r)
    }

    async fn after_write(&self, parts: &Parts) {
        let Some(rest) = parts.uri.path().strip_prefix("/v2/images/") else {
            return;
        };
        let Some(id) = ImageId::parse(rest.split('/').next().unwrap_or("")) else {
            return;
        };
        let result = if parts.method == Method::DELETE && !rest.contains('/') {
            self.inner.cache.forget(&id).await
        } else {
            self.inner.cache.expire(&id).await
        };
        if let Err(e) = result {
            tracing::warn!(image = %id, error = %e, "could not update the cache after a write");
        }
    }
}

fn data_response(data: ImageData) -> Response<Body> {
    let ImageData {
        record,
        stale,
        size,
        range,
        stream,
        ..
    } = data;
    let mut r = Response::new(from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(md5) = record
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(HeaderName::from_static("content-md5"), md5);
    }
    if stale {
        h.insert(
            HeaderName::from_static(STALE_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    match range {
        Some(rg) => {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(rg.len()));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", rg.first, rg.last))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        None => {
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    r
}
