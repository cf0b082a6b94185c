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

use federation_core::{AccountName, ClusterId};
use http::{header, HeaderName, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use stackfed_http::{empty, Body};

use super::copy::{header_account, header_path, unfollowed};
use super::{Call, Caller, FederationService, Result};
use crate::error::SwiftError;
use crate::path::SwiftPath;

/// How many symlinks the proxy follows across clusters for one read (Swift's default
/// `symloop_max`).
const SYMLINK_HOPS: usize = 2;

/// The content-type parameter that marks a static link the proxy verifies.
pub(super) const LINK_MARK: &str = "stackfed_link";
/// How the marker's ETag is encoded (`quote(value, safe='')`).
const MARK_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// What the marker of a static link across clusters records: the target's ETag (as
/// the client gave it, unquoted) and size when the link was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StaticLink {
    pub(super) etag: String,
    pub(super) bytes: u64,
}

/// The static-link marker of a content type, if it carries one.
pub(super) fn link_mark(content_type: &str) -> Option<StaticLink> {
    content_type.split(';').skip(1).find_map(|p| {
        let v = p.trim().strip_prefix(LINK_MARK)?.strip_prefix('=')?;
        let (etag, bytes) = v.rsplit_once('-')?;
        Some(StaticLink {
            etag: percent_decode_str(etag).decode_utf8().ok()?.into_owned(),
            bytes: bytes.parse().ok()?,
        })
    })
}

/// `content_type` with the static-link marker.
fn with_link_mark(content_type: &str, link: &StaticLink) -> String {
    format!(
        "{content_type};{LINK_MARK}={}-{}",
        utf8_percent_encode(&link.etag, MARK_ENCODE),
        link.bytes
    )
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
/// `symlink_etag` and `symlink_bytes` before the `symlink_path` the cluster lists.
pub(super) fn link_fields(fields: &mut Vec<(String, serde_json::Value)>, link: StaticLink) {
    let at = fields
        .iter()
        .position(|(k, _)| k == "symlink_path")
        .unwrap_or(fields.len());
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

/// The ETag Swift's middleware compares a static link's with, from a
/// `HEAD ?symlink=get` of the link's target: a link's target ETag (a marked link's
/// too) when the target is a static link, else the target's own ETag; `None` when the
/// target is not there to judge (the read then answers as it does).
fn link_etag(probe: &Response<Body>) -> Option<String> {
    if !probe.status().is_success() {
        return None;
    }
    let h = probe.headers();
    let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if !h.contains_key("x-symlink-target") {
        return None;
    }
    text("x-symlink-target-etag")
        .or_else(|| {
            text("content-type")
                .as_deref()
                .and_then(link_mark)
                .map(|l| l.etag)
        })
        .or_else(|| text("etag"))
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
    /// Follows a read's 404 (or 403) with `Content-Location` to the target's cluster, at
    /// most [`SYMLINK_HOPS`] times. Any other answer, and `?symlink=get`, pass through
    /// unchanged. A static link the proxy stored (marked) is checked against its
    /// target's ETag, as Swift checks it: the target's own (a link's target ETag when
    /// the target is a static link itself).
    pub(super) async fn follow_symlink(
        &self,
        call: &Call,
        home: &ClusterId,
        mut resp: Response<Body>,
    ) -> Result<Response<Body>> {
        if super::copy::link_itself(&call.parts) {
            return Ok(resp);
        }
        let head = call.parts.method == Method::HEAD;
        let mut at = home.clone();
        let mut wanted = None;
        for hop in 0..SYMLINK_HOPS {
            let Some(target) = resp
                .headers()
                .get(header::CONTENT_LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok(resp);
            };
            let Ok(SwiftPath::Object {
                account, container, ..
            }) = SwiftPath::parse(&target)
            else {
                return Ok(resp);
            };
            let Some(record) = self.find(&call.caller, &account, &container, false).await? else {
                return Ok(resp);
            };
            if record.cluster == at {
                return Ok(resp);
            }
            let next = self.cluster(&record.cluster)?;
            // Through a temp URL, the target is read with the authority the URL lends.
            let caller = match self.lent_token(call, &account, container.as_str()).await? {
                Some(t) => self.inner.sessions.get(&t).await?.map(Caller::Session),
                None => None,
            }
            .unwrap_or_else(|| call.caller.clone());
            if hop == 0 {
                if let Some(etag) = self.marked_link_etag(call, home).await? {
                    // The first object the link reaches is the one its ETag names.
                    let probe = self
                        .forward(
                            next,
                            &head_call(call, caller.clone()),
                            &format!("{target}?symlink=get"),
                            empty(),
                        )
                        .await?;
                    match link_etag(&probe) {
                        Some(found) if found != etag => {
                            return Ok(etag_conflict(&found, &etag, &target, head));
                        }
                        Some(_) => {}
                        None => wanted = Some(etag),
                    }
                }
            }
            let borrowed = Call {
                parts: call.parts.clone(),
                body: empty(),
                caller,
                lent: call.lent.clone(),
            };
            resp = self.forward(next, &borrowed, &target, empty()).await?;
            if let Ok(v) = HeaderValue::from_str(&target) {
                resp.headers_mut()
                    .entry(header::CONTENT_LOCATION)
                    .or_insert(v);
            }
            if !unfollowed(&resp) {
                if let Some(wanted) = &wanted {
                    let found = resp
                        .headers()
                        .get(header::ETAG)
                        .and_then(|v| v.to_str().ok());
                    if let Some(found) = found.filter(|f| f != wanted) {
                        return Ok(etag_conflict(found, wanted, &target, head));
                    }
                }
                return Ok(resp);
            }
            at = record.cluster;
        }
        Ok(resp)
    }

    /// The ETag named by the marker of the link the request reads (on `home`), when the
    /// proxy stored it as a static link across clusters: a `HEAD ?symlink=get` on its
    /// cluster, as the caller (or with the authority a temp URL lends within the link's
    /// own container).
    async fn marked_link_etag(&self, call: &Call, home: &ClusterId) -> Result<Option<String>> {
        let path = call.parts.uri.path();
        let Ok(SwiftPath::Object {
            account, container, ..
        }) = SwiftPath::parse(path)
        else {
            return Ok(None);
        };
        let caller = match self.lent_token(call, &account, container.as_str()).await? {
            Some(t) => self.inner.sessions.get(&t).await?.map(Caller::Session),
            None => None,
        }
        .unwrap_or_else(|| call.caller.clone());
        let cluster = self.cluster(home)?;
        let probe = self
            .forward(
                cluster,
                &head_call(call, caller),
                &format!("{path}?symlink=get"),
                empty(),
            )
            .await?;
        if !probe.status().is_success() {
            return Ok(None);
        }
        Ok(probe
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(link_mark)
            .map(|l| l.etag))
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
                &format!("{path}?symlink=get"),
                auth.clone(),
                0,
            )
            .await;
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
                link = self.subrequest(Method::HEAD, path, auth, 0).await;
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
        let bytes = value(&link, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let content_type =
            value(&link, "content-type").unwrap_or_else(|| "application/octet-stream".into());
        Ok(Some(Ok(Target {
            content_type: without_link_mark(&content_type),
            bytes,
        })))
    }
}

/// What a static link takes from its target.
struct Target {
    content_type: String,
    bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_marks_round_trip() {
        let link = StaticLink {
            etag: "ab c-1;x".into(),
            bytes: 17,
        };
        let ct = with_link_mark("text/plain; charset=utf-8", &link);
        assert_eq!(
            ct,
            "text/plain; charset=utf-8;stackfed_link=ab%20c-1%3Bx-17"
        );
        assert_eq!(link_mark(&ct), Some(link));
        assert_eq!(without_link_mark(&ct), "text/plain; charset=utf-8");
        assert_eq!(link_mark("text/plain"), None);
        assert_eq!(link_mark("a/b;stackfed_link=x"), None);
    }

    #[test]
    fn conflicts_read_as_swifts() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("\"abc\""), "'\"abc\"'");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
    }
}
