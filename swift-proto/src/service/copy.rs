//! Server-side copy (`COPY` with `Destination`, `PUT` with `X-Copy-From`), as Swift's
//! copy middleware (`swift/common/middleware/copy.py`) does it.
//!
//! A copy whose two containers live on the same cluster goes to that cluster as it
//! came. When they live on different clusters the proxy does the middleware's work,
//! streaming a GET from the source's cluster into a PUT on the destination's:
//!
//! - each side is resolved in its own account (`X-Copy-From-Account`,
//!   `Destination-Account`), with the caller's token; a cluster's refusal (403) is
//!   passed on as it comes;
//! - the source GET carries the request's headers (`Range`, `If-Match`,
//!   `If-None-Match`, `If-Modified-Since`, …) and query (`multipart-manifest=get`
//!   becomes `&format=raw`, `symlink=get`, `version-id`); any answer from 300 up is
//!   the copy's answer, as Swift gives it;
//! - a link is followed to its target's cluster (404 with `Content-Location`), unless
//!   `?symlink=get` asks to copy the link itself;
//! - the PUT gets what Swift's object server keeps of the source (user metadata unless
//!   `X-Fresh-Metadata: true`, `Content-Type`, `Content-Encoding`,
//!   `Content-Disposition`, `Content-Language`, `Cache-Control`, `Expires`,
//!   `X-Robots-Tag`, `X-Delete-At`, a link's `X-Symlink-Target*`), then the request's
//!   own headers on top, the source's `ETag` when the source is a whole plain object,
//!   and `?multipart-manifest=put` (SLO) or `X-Object-Manifest` (DLO) when a manifest is
//!   copied as such;
//! - a successful answer carries `X-Copied-From`, `X-Copied-From-Account`,
//!   `X-Copied-From-Last-Modified` (and `X-Copied-From-Version-Id`), and the new
//!   object's user metadata and `X-Delete-At`.

use federation_core::{AccountName, ClusterId, ContainerName, NameError};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use stackfed_http::Body;

use super::{Call, FederationService, Result};
use crate::cluster::{swift_path, ClusterRequest, Payload};
use crate::error::SwiftError;
use crate::headers::CONTAINER_ATTR_PREFIX;
use crate::path::{encode_segment, SwiftPath};

/// An object: its container and name.
pub(super) type ObjectRef = (ContainerName, String);

/// How many symlinks a copy follows across clusters (Swift's default `symloop_max`).
const SYMLINK_HOPS: usize = 2;

/// An object in some account.
#[derive(Debug, Clone)]
pub(super) struct ObjectAt {
    pub(super) account: AccountName,
    pub(super) container: ContainerName,
    pub(super) object: String,
}

impl ObjectAt {
    /// `/v1/<account>/<container>/<object>`, percent-encoded.
    fn path(&self) -> String {
        swift_path(
            &self.account,
            Some(self.container.as_str()),
            Some(&self.object),
        )
    }
}

/// A copy request's source and destination.
#[derive(Debug, Clone)]
pub(super) struct CopyRequest {
    pub(super) src: ObjectAt,
    pub(super) dst: ObjectAt,
}

/// The source and destination of a copy, when the request is one, validated as
/// Swift's copy middleware validates them (and in its order).
pub(super) fn copy_endpoints(
    parts: &Parts,
    account: &AccountName,
    container: &ContainerName,
    object: &str,
) -> Result<Option<CopyRequest>> {
    let here = |account: AccountName| ObjectAt {
        account,
        container: container.clone(),
        object: object.to_owned(),
    };
    let h = &parts.headers;
    let present = |name: &str| h.get(name).is_some_and(|v| !v.is_empty());
    match parts.method.as_str() {
        "PUT" if present("x-copy-from") => {
            zero_byte_body(h)?;
            let src_account = header_account(h, "x-copy-from-account")?;
            let (c, o) = required_path(h, "X-Copy-From")?;
            Ok(Some(CopyRequest {
                src: ObjectAt {
                    account: src_account.unwrap_or_else(|| account.clone()),
                    container: c,
                    object: o,
                },
                dst: here(account.clone()),
            }))
        }
        // Without a Destination the cluster answers Swift's 412 itself.
        "COPY" if present("destination") => {
            let dst_account = header_account(h, "destination-account")?;
            let (c, o) = required_path(h, "Destination")?;
            zero_byte_body(h)?;
            Ok(Some(CopyRequest {
                src: here(account.clone()),
                dst: ObjectAt {
                    account: dst_account.unwrap_or_else(|| account.clone()),
                    container: c,
                    object: o,
                },
            }))
        }
        _ => Ok(None),
    }
}

/// Swift refuses a copy that brings a body of its own.
fn zero_byte_body(headers: &HeaderMap) -> Result<()> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > 0) {
        return Err(SwiftError::bad_request(
            "Copy requests require a zero byte body",
        ));
    }
    Ok(())
}

/// The bytes of a header, percent-decoded, as UTF-8 (Swift's `wsgi_unquote`, then its
/// UTF-8 check): raw UTF-8 and percent-encoded names are both accepted.
fn decoded(value: &HeaderValue) -> Result<String> {
    let bytes: Vec<u8> = percent_encoding::percent_decode(value.as_bytes()).collect();
    match String::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Ok(s),
        _ => Err(SwiftError::precondition_failed(
            "Invalid UTF8 or contains NULL",
        )),
    }
}

/// An account named by a header (`X-Copy-From-Account`, `Destination-Account`,
/// `X-Symlink-Target-Account`), checked as Swift's `check_account_format` does.
pub(super) fn header_account(headers: &HeaderMap, name: &str) -> Result<Option<AccountName>> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let text = decoded(v)?;
    AccountName::new(text).map(Some).map_err(|e| match e {
        NameError::Empty { .. } => SwiftError::precondition_failed("Account name cannot be empty"),
        NameError::ForbiddenChar { found: '/', .. } => {
            SwiftError::precondition_failed("Account name cannot contain slashes")
        }
        other => SwiftError::precondition_failed(other.to_string()),
    })
}

fn required_path(headers: &HeaderMap, name: &'static str) -> Result<ObjectRef> {
    header_path(headers, name)?.ok_or_else(|| form_error(name))
}

fn form_error(name: &str) -> SwiftError {
    SwiftError::precondition_failed(format!(
        "{name} header must be of the form <container name>/<object name>"
    ))
}

/// A `<container>/<object>` path from a header (`X-Copy-From`, `Destination`,
/// `X-Symlink-Target`; `name` spelled as Swift spells it in its answers), percent-decoded
/// or raw UTF-8, one leading `/` allowed (Swift's `check_path_header`); `None` when the
/// header is absent.
pub(super) fn header_path(headers: &HeaderMap, name: &str) -> Result<Option<ObjectRef>> {
    let Some(v) = headers.get(name.to_ascii_lowercase().as_str()) else {
        return Ok(None);
    };
    let text = decoded(v)?;
    let rest = text.strip_prefix('/').unwrap_or(&text);
    let (c, o) = rest.split_once('/').ok_or_else(|| form_error(name))?;
    if c.is_empty() || o.is_empty() {
        return Err(form_error(name));
    }
    let c = ContainerName::new(c).map_err(|_| form_error(name))?;
    SwiftPath::check_object_name(o)?;
    Ok(Some((c, o.to_owned())))
}

/// The query string's `key=value` pairs, as sent (still encoded).
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

fn with_query(path: String, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return path;
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// Request headers that belong to the copy itself, never passed on.
fn copy_control(name: &str) -> bool {
    matches!(
        name,
        "x-copy-from"
            | "x-copy-from-account"
            | "destination"
            | "destination-account"
            | "x-fresh-metadata"
            | "content-length"
            | "transfer-encoding"
            | "expect"
    ) || name.starts_with(CONTAINER_ATTR_PREFIX)
}

/// Headers of the source that Swift's copy carries to the new object and Swift's
/// object server keeps (its default `allowed_headers`), with a link's target.
fn kept_from_source(name: &str) -> bool {
    name.starts_with("x-object-meta-")
        || name.starts_with("x-object-transient-sysmeta-")
        || matches!(
            name,
            "content-encoding"
                | "content-disposition"
                | "content-language"
                | "cache-control"
                | "expires"
                | "x-robots-tag"
                | "x-delete-at"
                | "x-symlink-target"
                | "x-symlink-target-account"
                | "x-symlink-target-etag"
        )
}

/// Copied into the answer from the new object's headers (Swift's `_copy_headers`).
fn echoed(name: &str) -> bool {
    name.starts_with("x-object-meta-")
        || name.starts_with("x-object-transient-sysmeta-")
        || name == "x-delete-at"
}

fn is_true(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on" | "t" | "y"
            )
        })
}

/// The headers of the PUT that writes the copy.
fn sink_headers(
    request: &HeaderMap,
    source: &http::response::Parts,
    manifest_get: bool,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !is_true(request, "x-fresh-metadata") {
        for (k, v) in &source.headers {
            if kept_from_source(k.as_str()) {
                h.append(k.clone(), v.clone());
            }
        }
    }
    // The request's own headers replace the source's.
    for name in request.keys() {
        let n = name.as_str();
        if copy_control(n) || n == "range" {
            continue;
        }
        h.remove(name);
        for v in request.get_all(name) {
            h.append(name.clone(), v.clone());
        }
    }
    let sh = &source.headers;
    let slo = sh.contains_key("x-static-large-object");
    let dlo = sh.get("x-object-manifest");
    if manifest_get {
        if let Some(m) = dlo {
            h.insert("x-object-manifest", m.clone());
        }
    }
    if source.status == StatusCode::OK && !slo && (dlo.is_none() || manifest_get) {
        if let Some(etag) = sh.get(header::ETAG) {
            h.insert(header::ETAG, etag.clone());
        }
    }
    let typed = request
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| !v.is_empty());
    if !typed {
        if let Some(ct) = sh.get(header::CONTENT_TYPE) {
            h.insert(header::CONTENT_TYPE, ct.clone());
        }
    }
    if let Some(len) = sh.get(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, len.clone());
    }
    h
}

/// What a successful copy's answer tells of its source (`X-Copied-From`,
/// `X-Copied-From-Account`, `-Last-Modified`, `-Version-Id`) and of the new object
/// (`sink`: its user metadata and `X-Delete-At`), as Swift's copy middleware does.
fn copied_from(out: &mut HeaderMap, src: &ObjectAt, source: &HeaderMap, sink: &HeaderMap) {
    let copied_from = format!(
        "{}/{}",
        encode_segment(src.container.as_str(), false),
        encode_segment(&src.object, true)
    );
    for (name, value) in [
        (
            "x-copied-from-account",
            encode_segment(src.account.as_str(), false),
        ),
        ("x-copied-from", copied_from),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    }
    if let Some(v) = source.get(header::LAST_MODIFIED) {
        out.insert("x-copied-from-last-modified", v.clone());
    }
    if let Some(v) = source.get("x-object-version-id") {
        out.insert("x-copied-from-version-id", v.clone());
    }
    for (k, v) in sink {
        if echoed(k.as_str()) {
            out.append(k.clone(), v.clone());
        }
    }
}

/// The `Content-Location` of a link's answer, as an object path.
pub(super) fn link_target(resp: &Response<Body>) -> Option<ObjectAt> {
    let raw = resp.headers().get(header::CONTENT_LOCATION)?;
    let text = std::str::from_utf8(raw.as_bytes()).ok()?;
    match SwiftPath::parse(text).ok()? {
        SwiftPath::Object {
            account,
            container,
            object,
        } => Some(ObjectAt {
            account,
            container,
            object,
        }),
        _ => None,
    }
}

/// Whether an answer may be a link this cluster could not follow: a 404, or a 403 (the
/// caller may not see the target account here), with `Content-Location` naming the
/// target.
pub(super) fn unfollowed(resp: &Response<Body>) -> bool {
    matches!(resp.status(), StatusCode::NOT_FOUND | StatusCode::FORBIDDEN)
        && resp.headers().contains_key(header::CONTENT_LOCATION)
}

/// Whether the request asks for a link itself (`?symlink=get`).
pub(super) fn link_itself(parts: &Parts) -> bool {
    query_pairs(parts.uri.query())
        .iter()
        .any(|(k, v)| k == "symlink" && v == "get")
}

impl FederationService {
    /// The cluster of the container a link's answer points at, when it is another
    /// cluster than `home` (the copy must then go through the proxy).
    pub(super) async fn link_elsewhere(
        &self,
        call: &Call,
        resp: &Response<Body>,
        home: &ClusterId,
    ) -> Result<bool> {
        if !unfollowed(resp) || link_itself(&call.parts) {
            return Ok(false);
        }
        let Some(target) = link_target(resp) else {
            return Ok(false);
        };
        Ok(self
            .find(&call.caller, &target.account, &target.container, false)
            .await?
            .is_some_and(|r| r.cluster != *home))
    }

    /// GETs a copy's source from its cluster, following links to other clusters.
    async fn copy_source(
        &self,
        call: &Call,
        src: &ObjectAt,
        cluster: &ClusterId,
        query: &[(String, String)],
    ) -> Result<Response<Body>> {
        let mut headers = HeaderMap::new();
        for (k, v) in &call.parts.headers {
            if !copy_control(k.as_str()) {
                headers.append(k.clone(), v.clone());
            }
        }
        headers.insert("x-newest", HeaderValue::from_static("true"));
        let auth = call.caller.auth();
        let get = |path: String| ClusterRequest::new(Method::GET, path).headers(headers.clone());
        let mut at = cluster.clone();
        let mut resp = self
            .cluster(&at)?
            .send(get(with_query(src.path(), query)), auth)
            .await?;
        if link_itself(&call.parts) {
            return Ok(resp);
        }
        for _ in 0..SYMLINK_HOPS {
            if !unfollowed(&resp) {
                break;
            }
            let Some(target) = link_target(&resp) else {
                break;
            };
            let Some(record) = self
                .find(&call.caller, &target.account, &target.container, false)
                .await?
            else {
                break;
            };
            if record.cluster == at {
                break;
            }
            // Swift's symlink middleware follows a link without the query.
            resp = self
                .cluster(&record.cluster)?
                .send(get(target.path()), auth)
                .await?;
            at = record.cluster;
        }
        Ok(resp)
    }

    /// A copy whose source is a large object the proxy must handle itself, done as
    /// Swift's copy middleware does it — a GET of the source and a PUT of the new
    /// object — but both through this service's own phases, so that the large-object
    /// paths apply to each: `None` when the source is not such an object (one `HEAD`
    /// of it, `?multipart-manifest=get`, tells).
    ///
    /// - With `?multipart-manifest=get`, the manifest itself is copied when the source
    ///   is an SLO or DLO manifest (Swift's or one the proxy assembles): its raw form is
    ///   read and PUT as `?multipart-manifest=put` (an SLO) or with `X-Object-Manifest`
    ///   (a DLO) in the destination's account, so the new manifest is validated and
    ///   stored exactly as if the client had PUT it there — the segments checked
    ///   through the federation, as the caller, wherever their containers live (a
    ///   cluster's own slo middleware could only see its own containers: 403 for a
    ///   container it does not hold, where Swift answers 404).
    /// - Without it, a source the proxy assembles (marked) is read assembled, so the
    ///   copy is a plain object of the large object's bytes, as in Swift (the cluster
    ///   would copy the stored manifest).
    pub(super) async fn copy_large(
        &self,
        call: &Call,
        copy: &CopyRequest,
    ) -> Result<Option<Response<Body>>> {
        let query = query_pairs(call.parts.uri.query());
        let manifest_get = query
            .iter()
            .any(|(k, v)| k == "multipart-manifest" && v == "get");
        let Some(src) = self
            .find(&call.caller, &copy.src.account, &copy.src.container, false)
            .await?
        else {
            return Ok(None);
        };
        let mut probe_query = vec![("multipart-manifest".to_owned(), "get".to_owned())];
        probe_query.extend(
            query
                .iter()
                .filter(|(k, _)| k == "version-id" || k == "symlink")
                .cloned(),
        );
        let head = self
            .cluster(&src.cluster)?
            .send(
                ClusterRequest::new(Method::HEAD, with_query(copy.src.path(), &probe_query)),
                call.caller.auth(),
            )
            .await?;
        if !head.status().is_success() {
            return Ok(None);
        }
        let marked = super::large::marked(&head).is_some();
        let manifest = marked
            || is_true(head.headers(), "x-static-large-object")
            || head.headers().contains_key("x-object-manifest");
        if !(marked || manifest_get && manifest) {
            return Ok(None);
        }
        let depth = call
            .parts
            .extensions
            .get::<super::large::Depth>()
            .copied()
            .unwrap_or_default()
            .0;
        // The source, through this service (a marked one assembled, or its manifest
        // in the form a client PUTs).
        let mut source_query: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k == "version-id" || k == "symlink")
            .cloned()
            .collect();
        if manifest_get {
            source_query.push(("multipart-manifest".to_owned(), "get".to_owned()));
            source_query.push(("format".to_owned(), "raw".to_owned()));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &call.parts.headers {
            if !copy_control(k.as_str()) {
                headers.append(k.clone(), v.clone());
            }
        }
        let source = self
            .subrequest_with(
                Method::GET,
                &with_query(copy.src.path(), &source_query),
                headers,
                stackfed_http::empty(),
                depth,
            )
            .await;
        if source.status().as_u16() >= 300 {
            return Ok(Some(source));
        }
        if !source.headers().contains_key(header::CONTENT_LENGTH) {
            return Err(SwiftError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Your request is too large.",
            ));
        }
        let (sp, sb) = source.into_parts();
        let h = sink_headers(&call.parts.headers, &sp, manifest_get);
        let slo_manifest = manifest_get && sp.headers.contains_key("x-static-large-object");
        let mut dst_query: Vec<(String, String)> = query
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "multipart-manifest" | "version-id" | "symlink" | "format"
                )
            })
            .collect();
        if slo_manifest {
            dst_query.push(("multipart-manifest".to_owned(), "put".to_owned()));
        }
        let mut done = self
            .subrequest_with(
                Method::PUT,
                &with_query(copy.dst.path(), &dst_query),
                h.clone(),
                sb,
                depth,
            )
            .await;
        let status = done.status();
        if status.is_success() {
            copied_from(done.headers_mut(), &copy.src, &sp.headers, &h);
        }
        tracing::info!(
            src_account = %copy.src.account,
            dst_account = %copy.dst.account,
            manifest = manifest_get,
            %status,
            "copied a large object through the proxy"
        );
        Ok(Some(done))
    }

    /// Copies an object between clusters (or through the proxy when the source is a
    /// link to another cluster): see the [module docs](self).
    pub(super) async fn copy_across(
        &self,
        call: &Call,
        copy: &CopyRequest,
        src_cluster: &ClusterId,
        dst_cluster: &ClusterId,
    ) -> Result<Response<Body>> {
        let parts = &call.parts;
        let auth = call.caller.auth();
        let mut query = query_pairs(parts.uri.query());
        let manifest_get = query
            .iter()
            .any(|(k, v)| k == "multipart-manifest" && v == "get");
        let mut source_query = query.clone();
        if manifest_get {
            source_query.retain(|(k, _)| k != "format");
            source_query.push(("format".to_owned(), "raw".to_owned()));
        }
        let source = self
            .copy_source(call, &copy.src, src_cluster, &source_query)
            .await?;
        if source.status().as_u16() >= 300 {
            return Ok(source);
        }
        if !source.headers().contains_key(header::CONTENT_LENGTH) {
            return Err(SwiftError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Your request is too large.",
            ));
        }
        let to = self.cluster(dst_cluster)?;
        // The PUT streams the source's body and cannot be replayed: make sure the
        // destination accepts the caller's token first (renewing it on a 401). The
        // PUT's own answer (404, 403) is the copy's.
        to.holds_container(&copy.dst.account, &copy.dst.container, auth)
            .await?;
        let (sp, sb) = source.into_parts();
        let h = sink_headers(&parts.headers, &sp, manifest_get);
        query.retain(|(k, _)| k != "multipart-manifest" && k != "version-id");
        if manifest_get && sp.headers.contains_key("x-static-large-object") {
            query.push(("multipart-manifest".to_owned(), "put".to_owned()));
        }
        let req = ClusterRequest::new(Method::PUT, with_query(copy.dst.path(), &query))
            .headers(h.clone())
            .body(Payload::Stream(sb));
        let mut done = to.send(req, auth).await?;
        let status = done.status();
        if status.is_success() {
            copied_from(done.headers_mut(), &copy.src, &sp.headers, &h);
        }
        tracing::info!(
            from = %src_cluster,
            to = %dst_cluster,
            src_account = %copy.src.account,
            dst_account = %copy.dst.account,
            %status,
            "copied an object through the proxy"
        );
        Ok(done)
    }
}
