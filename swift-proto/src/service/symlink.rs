//! Symlinks across clusters. Swift's symlink middleware follows a link on its own
//! cluster; a dynamic link whose target container lives elsewhere comes back as 404
//! (403 when the target is in another account the cluster cannot see) with
//! `Content-Location` naming the target, and the proxy follows it to the target's
//! cluster (the 404-then-follow rule).
//!
//! A static link (`X-Symlink-Target-Etag`) is verified by the cluster that stores it
//! when its target is on the same cluster. When the target's container is on another
//! cluster, the proxy does what the middleware does (`symlink.py`'s
//! `_validate_etag_and_update_sysmeta`): it `HEAD`s the target through the federation
//! as the caller (Swift's 409s for a missing target or another ETag, the target's
//! refusal as it comes), then stores on the link's cluster what that cluster accepts,
//! a dynamic link, **marked** in its content type with `stackfed_link=<etag>-<bytes>`
//! (the same kind of marker as `large.rs`'s). Reads of a marked link follow it as any
//! link across clusters, then check the target's ETag (409 when it changed);
//! `?symlink=get` and container listings show what Swift shows for a static link
//! (`X-Symlink-Target-Etag`, `X-Symlink-Target-Bytes`; `symlink_etag`,
//! `symlink_bytes`), the marker removed.

use std::fmt::Write as _;

use federation_core::{AccountName, ClusterId};
use http::{header, HeaderName, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use stackfed_http::{empty, Body};

use super::copy::{header_account, header_path};
use super::{Call, Caller, FederationService, Result};
use crate::error::SwiftError;
use crate::path::SwiftPath;

/// How many symlinks one read follows (Swift's default `symloop_max`).
const SYMLOOP_MAX: usize = 2;

/// The content-type parameter that marks a static link the proxy verifies.
pub(super) const LINK_MARK: &str = "stackfed_link";
/// The content-type parameter beside it when the target is an SLO: the large
/// object's ETag (listed as `slo_etag`, as Swift lists a static link to an SLO).
const LINK_SLO_MARK: &str = "stackfed_link_slo";
/// How the marker's ETag is encoded (`quote(value, safe='')`).
const MARK_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// What the marker of a static link across clusters records: the target's ETag (as
/// the client gave it, unquoted: for a large object its manifest's) and size (for an
/// SLO the large object's) when the link was made, and for an SLO its ETag as Swift
/// lists it (`slo_etag`, quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StaticLink {
    pub(super) etag: String,
    pub(super) bytes: u64,
    pub(super) slo_etag: Option<String>,
}

/// The value of a content-type parameter `key`, percent-decoded.
fn mark_param<'a>(content_type: &'a str, key: &str) -> Option<&'a str> {
    content_type
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix(key)?.strip_prefix('='))
}

/// The static-link marker of a content type, if it carries one.
pub(super) fn link_mark(content_type: &str) -> Option<StaticLink> {
    let decode = |v: &str| Some(percent_decode_str(v).decode_utf8().ok()?.into_owned());
    let (etag, bytes) = mark_param(content_type, LINK_MARK)?.rsplit_once('-')?;
    Some(StaticLink {
        etag: decode(etag)?,
        bytes: bytes.parse().ok()?,
        slo_etag: mark_param(content_type, LINK_SLO_MARK).and_then(decode),
    })
}

/// `content_type` with the static-link marker.
pub(super) fn with_link_mark(content_type: &str, link: &StaticLink) -> String {
    let mut marked = format!(
        "{content_type};{LINK_MARK}={}-{}",
        utf8_percent_encode(&link.etag, MARK_ENCODE),
        link.bytes
    );
    if let Some(slo) = &link.slo_etag {
        let _ = write!(
            marked,
            ";{LINK_SLO_MARK}={}",
            utf8_percent_encode(slo, MARK_ENCODE)
        );
    }
    marked
}

/// `content_type` without the static-link marker.
pub(super) fn without_link_mark(content_type: &str) -> String {
    let mut pieces = content_type.split(';');
    let mut clean = pieces.next().unwrap_or_default().to_owned();
    for p in pieces {
        if !p.trim_start().starts_with(LINK_MARK) {
            clean.push(';');
            clean.push_str(p);
        }
    }
    clean
}

/// An answer about a marked link itself (`?symlink=get`, or a `HEAD`/`GET` the
/// cluster answered with the link): the marker removed from its content type, and
/// `X-Symlink-Target-Etag`/`X-Symlink-Target-Bytes` added as Swift shows them for a
/// static link.
pub(super) fn link_answer(resp: &mut Response<Body>) {
    let Some(ct) = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let Some(link) = link_mark(ct) else {
        return;
    };
    let clean = without_link_mark(ct);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&clean) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if h.contains_key("x-symlink-target") {
        if let Ok(v) = HeaderValue::from_str(&link.etag) {
            h.insert(HeaderName::from_static("x-symlink-target-etag"), v);
        }
        h.insert(
            HeaderName::from_static("x-symlink-target-bytes"),
            HeaderValue::from(link.bytes),
        );
    }
}

/// A listing entry's fields for a marked link, as Swift lists a static link:
/// `symlink_etag` and `symlink_bytes` before the `symlink_path` the cluster lists,
/// and for a link to an SLO its `slo_etag` after it.
pub(super) fn link_fields(fields: &mut Vec<(String, serde_json::Value)>, link: StaticLink) {
    let at = fields
        .iter()
        .position(|(k, _)| k == "symlink_path")
        .unwrap_or(fields.len());
    if let Some(slo) = link.slo_etag {
        fields.insert((at + 1).min(fields.len()), ("slo_etag".into(), slo.into()));
    }
    fields.insert(at, ("symlink_bytes".into(), link.bytes.into()));
    fields.insert(at, ("symlink_etag".into(), link.etag.into()));
}

/// A `HEAD` with no headers of its own, as `caller` (a probe of a link).
fn head_call(call: &Call, caller: Caller) -> Call {
    let mut parts = call.parts.clone();
    parts.method = Method::HEAD;
    parts.headers = http::HeaderMap::new();
    Call {
        parts,
        body: empty(),
        caller,
        lent: call.lent.clone(),
    }
}

/// The request's `version-id=<id>` query parameter.
fn path_version(call: &Call) -> Option<&str> {
    call.parts
        .uri
        .query()?
        .split('&')
        .find(|kv| kv.starts_with("version-id="))
}

/// `path` (which may carry a query) with one more query parameter.
fn with_query(path: &str, kv: &str) -> String {
    if path.contains('?') {
        format!("{path}&{kv}")
    } else {
        format!("{path}?{kv}")
    }
}

/// Swift's `normalize_etag`: the value without surrounding double quotes.
fn normalize_etag(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// Python's `%r` of a text (the ETags in Swift's 409 bodies).
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Swift's 409 for a link whose target's ETag is not the one the link names.
fn etag_conflict(found: &str, wanted: &str, location: &str, head: bool) -> Response<Body> {
    conflict(
        format!(
            "Object Etag {} does not match X-Symlink-Target-Etag header {}",
            py_repr(found),
            py_repr(wanted)
        ),
        location,
        head,
    )
}

/// A plain-text 409 naming the target in `Content-Location`, as Swift's middleware
/// answers.
fn conflict(body: String, location: &str, head: bool) -> Response<Body> {
    let mut resp = SwiftError::plain(StatusCode::CONFLICT, body).into_response(head);
    if let Ok(v) = HeaderValue::from_bytes(location.as_bytes()) {
        resp.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    resp
}

impl FederationService {
    /// Follows a read's 404 (or 403) with `Content-Location` naming a container on
    /// another cluster: the proxy walks the chain from the requested object as Swift's
    /// middleware does (`_recursive_get_head`), one `HEAD ?symlink=get` a link on the
    /// link's own cluster, counting every link (Swift's `symloop_max`, 409 "Too many
    /// levels" past it, loops included), checking each static link (the cluster's own
    /// and the ones the proxy marked) against what it reaches (409s with Swift's
    /// bodies), then reads the last object on its cluster. Any other answer, and
    /// `?symlink=get`, pass through unchanged.
    pub(super) async fn follow_symlink(
        &self,
        call: &Call,
        home: &ClusterId,
        resp: Response<Body>,
    ) -> Result<Response<Body>> {
        if super::copy::link_itself(&call.parts) {
            return Ok(resp);
        }
        let Some(first) = resp
            .headers()
            .get(header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return Ok(resp);
        };
        let Ok(SwiftPath::Object {
            account, container, ..
        }) = SwiftPath::parse(&first)
        else {
            return Ok(resp);
        };
        match self.find(&call.caller, &account, &container, false).await? {
            Some(record) if record.cluster != *home => {}
            _ => return Ok(resp),
        }
        let head = call.parts.method == Method::HEAD;
        // The version the request reads (`?version-id=`), the cluster's to resolve.
        let mut path = match path_version(call) {
            Some(v) => format!("{}?{v}", call.parts.uri.path()),
            None => call.parts.uri.path().to_owned(),
        };
        let mut at = home.clone();
        let mut target_etag: Option<String> = None;
        let mut last: Option<String> = None;
        let mut loops = 0;
        let mut version = None;
        let mut via_version = false;
        // The last object's own answer (a large object's manifest as stored: what a
        // static link's ETag names, as Swift's middleware sees it behind `slo`/`dlo`).
        let mut end = None;
        for _ in 0..4 * (SYMLOOP_MAX + 1) {
            let caller = self.reader_of(call, &path).await?;
            let probe = self
                .forward(
                    self.cluster(&at)?,
                    &head_call(call, caller),
                    &with_query(&path, "symlink=get&multipart-manifest=get"),
                    empty(),
                )
                .await?;
            let text = |n: &str| {
                probe
                    .headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let Some(target) = text("x-symlink-target").filter(|_| probe.status().is_success())
            else {
                if via_version && !probe.status().is_success() {
                    // A version only the account's owner may name (Swift's 403 to
                    // `?version-id=` for others): the cluster resolved it, and its
                    // answer names where the object's link leads.
                    via_version = false;
                    loops += 1;
                    target_etag = None;
                    last = Some(first.clone());
                    path.clone_from(&first);
                    if let Ok(SwiftPath::Object {
                        account, container, ..
                    }) = SwiftPath::parse(&first)
                    {
                        if let Some(r) =
                            self.find(&call.caller, &account, &container, false).await?
                        {
                            at = r.cluster;
                        }
                    }
                    continue;
                }
                end = Some(probe);
                break;
            };
            // The version of the object the request reads (a versioned container's).
            if version.is_none() {
                version = probe.headers().get("x-object-version-id").cloned();
            }
            let resp_etag = text("x-symlink-target-etag").or_else(|| {
                text("content-type")
                    .as_deref()
                    .and_then(link_mark)
                    .map(|l| l.etag)
            });
            // Object versioning's link to the current version (same container, its
            // target `<object>?version-id=<id>`): resolved by the cluster, not counted
            // (Swift's `symloop_extend`), not judged.
            let version_link = target.contains("?version-id=");
            let found = resp_etag.clone().or_else(|| text("etag"));
            via_version = version_link;
            if version_link {
                path = format!(
                    "/v1/{}/{}",
                    path.split('/').nth(2).unwrap_or_default(),
                    target.trim_start_matches('/')
                );
                target_etag = None;
                continue;
            }
            if let (Some(wanted), Some(found)) = (&target_etag, &found) {
                if wanted != found {
                    return Ok(conflict(
                        "X-Symlink-Target-Etag headers do not match".into(),
                        last.as_deref().unwrap_or_default(),
                        head,
                    ));
                }
            }
            if loops >= SYMLOOP_MAX {
                return Ok(SwiftError::plain(
                    StatusCode::CONFLICT,
                    format!("Too many levels of symbolic links, maximum allowed is {SYMLOOP_MAX}"),
                )
                .into_response(head));
            }
            loops += 1;
            let account = text("x-symlink-target-account")
                .unwrap_or_else(|| path.split('/').nth(2).unwrap_or_default().to_owned());
            let next = format!("/v1/{account}/{}", target.trim_start_matches('/'));
            target_etag = resp_etag;
            last = Some(next.clone());
            let Ok(SwiftPath::Object {
                account, container, ..
            }) = SwiftPath::parse(next.split('?').next().unwrap_or_default())
            else {
                break;
            };
            path = next;
            if let Some(record) = self.find(&call.caller, &account, &container, false).await? {
                at = record.cluster;
            }
        }
        let Some(last) = last else {
            // Not a link after all (gone since): the cluster's answer stands.
            return Ok(resp);
        };
        // The last object is read with the client's query, as Swift's subrequest keeps
        // it (the parameters the large-object middlewares read; a temp URL's own stay
        // behind, the proxy judged them).
        let kept: Vec<&str> = call
            .parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| {
                matches!(
                    kv.split('=').next(),
                    Some("multipart-manifest" | "format" | "part-number")
                )
            })
            .collect();
        let read = if kept.is_empty() {
            path.clone()
        } else {
            with_query(&path, &kept.join("&"))
        };
        let mut parts = call.parts.clone();
        if let Ok(uri) = read.parse() {
            parts.uri = uri;
        }
        let borrowed = Call {
            parts,
            body: empty(),
            caller: self.reader_of(call, &path).await?,
            lent: call.lent.clone(),
        };
        let end = end.filter(|e| e.status().is_success());
        if let (Some(wanted), Some(end)) = (&target_etag, &end) {
            let found = end
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok());
            if let Some(found) = found.filter(|f| f != wanted) {
                return Ok(etag_conflict(found, wanted, &last, head));
            }
        }
        let checked = end.is_some();
        let target = path.split('?').next().unwrap_or_default();
        let marked = end.as_ref().and_then(super::large::marked);
        let target_account = match SwiftPath::parse(target) {
            Ok(SwiftPath::Object { account, .. }) => Some(account),
            _ => None,
        };
        let mut resp = match (marked, target_account) {
            // A large object the proxy assembles: answered as it answers one read
            // directly (the manifest's own answer serves `?multipart-manifest=get`).
            (Some(m), Some(account)) => {
                let at = super::large::ObjectHome {
                    account: &account,
                    path: target,
                    home: &at,
                };
                let manifest_get = super::large::manifest_query(&borrowed, "get");
                let (first, probed) = match end {
                    Some(end) if head || !manifest_get => (end, true),
                    _ => (
                        self.forward(self.cluster(at.home)?, &borrowed, &read, empty())
                            .await?,
                        false,
                    ),
                };
                Box::pin(self.large_answer(&borrowed, at, first, m, probed)).await?
            }
            _ => {
                self.forward(self.cluster(&at)?, &borrowed, &read, empty())
                    .await?
            }
        };
        if let (Some(wanted), false) = (&target_etag, checked) {
            let found = resp
                .headers()
                .get("x-manifest-etag")
                .or_else(|| resp.headers().get(header::ETAG))
                .and_then(|v| v.to_str().ok());
            if let Some(found) = found.filter(|f| f != wanted) {
                return Ok(etag_conflict(found, wanted, &last, head));
            }
        }
        if let Ok(v) = HeaderValue::from_str(&last) {
            resp.headers_mut()
                .entry(header::CONTENT_LOCATION)
                .or_insert(v);
        }
        // A version read names its version; a current one of a versioned container says
        // what the target's container says (`null` when it keeps no versions).
        if let Some(v) = version {
            let name = HeaderName::from_static("x-object-version-id");
            if path_version(call).is_some() {
                resp.headers_mut().insert(name, v);
            } else {
                resp.headers_mut()
                    .entry(name)
                    .or_insert(HeaderValue::from_static("null"));
            }
        }
        super::tempurl::temp_url_answer(&call.parts, &mut resp);
        Ok(resp)
    }

    /// A `POST` the cluster answered with 307 (a link): a link the proxy marked says
    /// its target's ETag, as Swift's middleware says a static link's.
    pub(super) async fn link_post_answer(
        &self,
        call: &Call,
        path: &str,
        home: &ClusterId,
        resp: &mut Response<Body>,
    ) -> Result<()> {
        if resp.status() != StatusCode::TEMPORARY_REDIRECT
            || resp.headers().contains_key("x-symlink-target-etag")
        {
            return Ok(());
        }
        let probe = self
            .forward(
                self.cluster(home)?,
                &head_call(call, call.caller.clone()),
                &format!("{path}?symlink=get"),
                empty(),
            )
            .await?;
        let link = probe
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(link_mark);
        if let Some(v) = link.and_then(|l| HeaderValue::from_str(&l.etag).ok()) {
            resp.headers_mut()
                .insert(HeaderName::from_static("x-symlink-target-etag"), v);
        }
        Ok(())
    }

    /// Who reads `path` for `call`: the caller, or through a temp URL the session
    /// whose authority the URL lends to that object's container.
    async fn reader_of(&self, call: &Call, path: &str) -> Result<Caller> {
        let lent = match SwiftPath::parse(path.split('?').next().unwrap_or_default()) {
            Ok(SwiftPath::Object {
                account, container, ..
            }) => match self.lent_token(call, &account, container.as_str()).await? {
                Some(t) => self.inner.sessions.get(&t).await?.map(Caller::Session),
                None => None,
            },
            _ => None,
        };
        Ok(lent.unwrap_or_else(|| call.caller.clone()))
    }

    /// A static link (`X-Symlink-Target-Etag`) whose target's container is on another
    /// cluster than `home` (the link's): checked here as Swift's middleware checks it,
    /// then sent on as a dynamic link marked with the target's ETag and size (see the
    /// [module docs](self)). `Some` answer when the check fails; links within one
    /// cluster, and dynamic links, are left to the cluster.
    pub(super) async fn prepare_static_link(
        &self,
        call: &mut Call,
        account: &AccountName,
        home: &ClusterId,
    ) -> Result<Option<Response<Body>>> {
        // A temp URL may not make links: the cluster's tempurl middleware says so.
        if super::tempurl::is_temp_url(&call.parts) {
            return Ok(None);
        }
        let headers = &call.parts.headers;
        let Some(given) = headers
            .get("x-symlink-target-etag")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        else {
            return Ok(None);
        };
        let Some((container, object)) = header_path(headers, "X-Symlink-Target")? else {
            return Ok(None);
        };
        let target_account =
            header_account(headers, "x-symlink-target-account")?.unwrap_or_else(|| account.clone());
        let Some(record) = self
            .find(&call.caller, &target_account, &container, false)
            .await?
        else {
            return Ok(None);
        };
        if record.cluster == *home {
            return Ok(None);
        }
        let etag = normalize_etag(&given).to_owned();
        if etag.contains([';', '"', '\\']) {
            return Err(SwiftError::plain(
                StatusCode::BAD_REQUEST,
                "Bad X-Symlink-Target-Etag format",
            ));
        }
        let has_body = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
            || headers.contains_key(header::TRANSFER_ENCODING);
        if has_body {
            return Err(SwiftError::plain(
                StatusCode::BAD_REQUEST,
                "Symlink requests require a zero byte body",
            ));
        }
        // Swift names the target by its decoded path in these answers.
        let location = format!("/v1/{target_account}/{container}/{object}");
        let path =
            crate::cluster::swift_path(&target_account, Some(container.as_str()), Some(&object));
        let auth = super::large::auth_headers(headers);
        let Some(target) = self.static_target(&path, auth, &etag, &location).await? else {
            return Ok(None);
        };
        let target = match target {
            Ok(t) => t,
            Err(refused) => return Ok(Some(refused)),
        };
        let content_type = match headers.get(header::CONTENT_TYPE) {
            Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            None => target.content_type,
        };
        let marked = with_link_mark(
            &content_type,
            &StaticLink {
                etag,
                bytes: target.bytes,
                slo_etag: target.slo_etag,
            },
        );
        let h = &mut call.parts.headers;
        h.remove("x-symlink-target-etag");
        h.remove("x-symlink-target-bytes");
        let v = HeaderValue::from_str(&marked)
            .map_err(|_| SwiftError::bad_request("Invalid Content-Type"))?;
        h.insert(header::CONTENT_TYPE, v);
        Ok(None)
    }

    /// The target of a static link, `HEAD`ed through this service as Swift's middleware
    /// does (a static link as target is followed, a dynamic one is not): its content
    /// type and size, or Swift's refusal. `None` when the answer is not one the
    /// middleware would judge (left to the cluster).
    ///
    /// Swift's symlink middleware sits behind `slo` and `dlo` in the pipeline: it sees
    /// a large object's manifest as stored, so the ETag a link names is the manifest's
    /// (`?multipart-manifest=get`), and for an SLO its size is the large object's
    /// (`X-Object-Sysmeta-Slo-Size`) and its listing entry carries `slo_etag`.
    async fn static_target(
        &self,
        path: &str,
        auth: http::HeaderMap,
        etag: &str,
        location: &str,
    ) -> Result<Option<std::result::Result<Target, Response<Body>>>> {
        let mut link = self
            .subrequest(
                Method::HEAD,
                &format!("{path}?symlink=get&multipart-manifest=get"),
                auth.clone(),
                0,
            )
            .await;
        let mut whole = path.to_owned();
        let value = |r: &Response<Body>, n: &str| {
            r.headers()
                .get(n)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        // The target is itself a static link: its own target's ETag must be ours, and
        // its target is what the new link stands for.
        if link.status().is_success() && value(&link, "x-symlink-target").is_some() {
            if let Some(next) = value(&link, "x-symlink-target-etag") {
                if next != etag {
                    return Ok(Some(Err(conflict(
                        "X-Symlink-Target-Etag headers do not match".into(),
                        location,
                        false,
                    ))));
                }
                link = self
                    .subrequest(
                        Method::HEAD,
                        &format!("{path}?multipart-manifest=get"),
                        auth.clone(),
                        0,
                    )
                    .await;
            } else {
                whole = format!("{path}?symlink=get");
            }
        }
        let status = link.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Some(Err(conflict(
                "X-Symlink-Target does not exist".into(),
                location,
                false,
            ))));
        }
        if !status.is_success() {
            return Ok(Some(Err(SwiftError::status(status).into_response(false))));
        }
        let found = value(&link, "etag");
        if let Some(found) = found.filter(|f| f != etag) {
            return Ok(Some(Err(etag_conflict(&found, etag, location, false))));
        }
        let mut bytes = value(&link, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut content_type =
            value(&link, "content-type").unwrap_or_else(|| "application/octet-stream".into());
        // An SLO: its size, ETag and type as a large object (what its sysmeta and
        // stored type say in Swift; its manifest is shown as JSON).
        let mut slo_etag = None;
        let slo =
            value(&link, "x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if slo && !whole.contains("symlink=get") {
            let large = self.subrequest(Method::HEAD, &whole, auth, 0).await;
            if large.status().is_success() {
                slo_etag = value(&large, "etag").map(|e| format!("\"{}\"", normalize_etag(&e)));
                bytes = value(&large, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(bytes);
                content_type = value(&large, "content-type").unwrap_or(content_type);
            }
        }
        Ok(Some(Ok(Target {
            content_type: without_link_mark(&content_type),
            bytes,
            slo_etag,
        })))
    }
}

/// What a static link takes from its target.
struct Target {
    content_type: String,
    bytes: u64,
    slo_etag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_marks_round_trip() {
        let link = StaticLink {
            etag: "ab c-1;x".into(),
            bytes: 17,
            slo_etag: None,
        };
        let ct = with_link_mark("text/plain; charset=utf-8", &link);
        assert_eq!(
            ct,
            "text/plain; charset=utf-8;stackfed_link=ab%20c-1%3Bx-17"
        );
        assert_eq!(link_mark(&ct), Some(link.clone()));
        assert_eq!(without_link_mark(&ct), "text/plain; charset=utf-8");
        assert_eq!(link_mark("text/plain"), None);
        assert_eq!(link_mark("a/b;stackfed_link=x"), None);
        let slo = StaticLink {
            slo_etag: Some("\"0123abc\"".into()),
            ..link
        };
        let ct = with_link_mark("text/plain", &slo);
        assert_eq!(
            ct,
            "text/plain;stackfed_link=ab%20c-1%3Bx-17;stackfed_link_slo=%220123abc%22"
        );
        assert_eq!(link_mark(&ct), Some(slo));
        assert_eq!(without_link_mark(&ct), "text/plain");
    }

    #[test]
    fn conflicts_read_as_swifts() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("\"abc\""), "'\"abc\"'");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }
}
