//! Header classes: what the federation keeps, what it forwards, what it sums.

use std::collections::BTreeMap;

use federation_core::attrs::Attributes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::error::SwiftError;

/// The prefix of container attribute headers (case-insensitive on the wire).
pub const CONTAINER_ATTR_PREFIX: &str = "x-container-attr-";

/// The attribute that names (on `HEAD`/`GET`) or pins (on `PUT`) a container's cluster.
pub const CLUSTER_ATTRIBUTE: &str = "cluster";

/// Swift's limits on metadata, applied to attributes too.
pub const MAX_ATTR_NAME_LENGTH: usize = 128;
/// The longest attribute value, in bytes.
pub const MAX_ATTR_VALUE_LENGTH: usize = 256;
/// The most attributes a container may have.
pub const MAX_ATTR_COUNT: usize = 90;

/// The attribute key (lower case, prefix removed) of an `X-Container-Attr-*` header, or
/// `None` for any other header or an empty key.
///
/// ```
/// use swift_proto::headers::attribute_key;
/// assert_eq!(attribute_key("X-Container-Attr-Tier"), Some("tier".to_owned()));
/// assert_eq!(attribute_key("X-Container-Meta-Tier"), None);
/// ```
pub fn attribute_key(header: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    lower
        .strip_prefix(CONTAINER_ATTR_PREFIX)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// The attribute changes a request carries: key → new value (an empty value removes the
/// attribute, as an empty `X-Container-Meta-*` does in Swift). Values must be UTF-8 and
/// within Swift's metadata limits; anything else is a 400 before anything is written.
pub fn attribute_changes(headers: &HeaderMap) -> Result<BTreeMap<String, String>, SwiftError> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let Some(key) = attribute_key(name.as_str()) else {
            continue;
        };
        if key.len() > MAX_ATTR_NAME_LENGTH {
            return Err(SwiftError::bad_request(format!(
                "Metadata name too long: {CONTAINER_ATTR_PREFIX}{key}"
            )));
        }
        let text = std::str::from_utf8(value.as_bytes())
            .map_err(|_| SwiftError::precondition_failed("Invalid UTF8 or contains NULL"))?;
        if text.len() > MAX_ATTR_VALUE_LENGTH {
            return Err(SwiftError::bad_request(format!(
                "Metadata value longer than {MAX_ATTR_VALUE_LENGTH}: {CONTAINER_ATTR_PREFIX}{key}"
            )));
        }
        out.insert(key, text.trim().to_owned());
    }
    Ok(out)
}

/// Applies changes from [`attribute_changes`] to a record's attributes.
pub fn apply_changes(
    current: &Attributes,
    changes: &BTreeMap<String, String>,
) -> Result<Attributes, SwiftError> {
    let mut next = current.clone();
    for (k, v) in changes {
        if v.is_empty() {
            next.remove(k);
        } else {
            next.insert(k.clone(), v.clone());
        }
    }
    if next.len() > MAX_ATTR_COUNT {
        return Err(SwiftError::bad_request("Too many metadata items; max 90"));
    }
    Ok(next)
}

/// Adds a record's attributes (and its cluster) to response headers.
pub fn insert_attributes(headers: &mut HeaderMap, attributes: &Attributes, cluster: &str) {
    for (k, v) in attributes {
        if k == CLUSTER_ATTRIBUTE {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("{CONTAINER_ATTR_PREFIX}{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(name, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(cluster) {
        headers.insert(HeaderName::from_static("x-container-attr-cluster"), value);
    }
}

/// Whether a response header is an account usage counter that the federation sums:
/// `X-Account-{Container,Object}-Count`, `X-Account-Bytes-Used`, and their
/// per-storage-policy forms.
pub fn is_usage_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "x-account-container-count" | "x-account-object-count" | "x-account-bytes-used"
    ) || (n.starts_with("x-account-storage-policy-")
        && (n.ends_with("-container-count")
            || n.ends_with("-object-count")
            || n.ends_with("-bytes-used")))
}

/// Sums the usage headers of several account responses into `into`, which keeps its
/// other headers. Counters absent from a response count as 0.
pub fn sum_usage<'a>(into: &mut HeaderMap, responses: impl IntoIterator<Item = &'a HeaderMap>) {
    let mut sums: Vec<(HeaderName, u64)> = Vec::new();
    for headers in responses {
        for (name, value) in headers {
            if !is_usage_header(name.as_str()) {
                continue;
            }
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            match sums.iter_mut().find(|(k, _)| k == name) {
                Some((_, total)) => *total += n,
                None => sums.push((name.clone(), n)),
            }
        }
    }
    let stale: Vec<HeaderName> = into
        .keys()
        .filter(|n| is_usage_header(n.as_str()))
        .cloned()
        .collect();
    for n in stale {
        into.remove(n);
    }
    for (name, total) in sums {
        into.insert(name, HeaderValue::from(total));
    }
}

/// The most headers a request may carry: what Swift's proxy reads before it answers
/// 431 `Too many headers` (Python's `http.client` limit, which Swift sets to 1.6 times
/// its `MAX_HEADER_COUNT` of `max_meta_count` + 36, so 201 with the default 90).
pub const MAX_REQUEST_HEADERS: usize = 201;

/// A request's target as its request line carried it (what `Uri`'s `Display` writes),
/// borrowed for the usual origin form (`/v1/a/c/o?q`) rather than formatted.
pub fn request_target(uri: &http::Uri) -> std::borrow::Cow<'_, str> {
    match uri.path_and_query() {
        Some(pq) if uri.scheme().is_none() && uri.authority().is_none() => pq.as_str().into(),
        _ => uri.to_string().into(),
    }
}

/// The longest request line Swift's server (eventlet) reads: at this length or more it
/// answers 414.
pub const MAX_REQUEST_LINE: usize = 8192;
/// The longest header line (`Name: value` and its line end) it reads: at this length or
/// more it answers 400 `Header Line Too Long`.
pub const MAX_HEADER_LINE: usize = 8192;
/// The most header bytes it reads: more is a 400 `Headers Too Large`.
pub const MAX_TOTAL_HEADER_SIZE: usize = 65_536;

/// The limits Swift's server applies to a request head before Swift sees it (so every
/// request, also those the proxy answers itself, meets them): a request line of
/// [`MAX_REQUEST_LINE`] bytes or more is a 414, a header line of [`MAX_HEADER_LINE`]
/// or more or more than [`MAX_TOTAL_HEADER_SIZE`] header bytes a 400, all with empty
/// bodies. Lines are measured as HTTP/1.1 writes them (`Name: value\r\n`).
pub fn check_request_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
) -> Result<(), SwiftError> {
    let request_line = method.as_str().len() + 1 + target.len() + " HTTP/1.1\r\n".len();
    if request_line >= MAX_REQUEST_LINE {
        return Err(SwiftError::plain(StatusCode::URI_TOO_LONG, ""));
    }
    let mut total = 0;
    for (name, value) in headers {
        let line = name.as_str().len() + 2 + value.len() + 2;
        total += line;
        if line >= MAX_HEADER_LINE || total > MAX_TOTAL_HEADER_SIZE {
            return Err(SwiftError::plain(StatusCode::BAD_REQUEST, ""));
        }
    }
    Ok(())
}

/// A numeric constraint of `/info`'s `swift` section, or Swift's default.
fn constraint(info: &Value, name: &str, default: u64) -> u64 {
    info.pointer(&format!("/swift/{name}"))
        .and_then(Value::as_u64)
        .unwrap_or(default)
}

/// Swift's checks of an object PUT's head (`check_object_creation`, in its order), so
/// that a refused PUT is answered before its body is read (and before `100 Continue`):
/// a `Transfer-Encoding` of several codings is a 501, one other than `chunked` or a
/// `Content-Length` that is not a number a 400, a length over `/info`'s
/// `max_file_size` a 413, neither length nor `chunked` a 411 (unless a middleware
/// before Swift's check makes the body: `X-Copy-From`, `X-Symlink-Target`, an SLO
/// manifest). Texts as Swift's.
pub fn check_object_creation(headers: &HeaderMap, info: &Value) -> Result<(), SwiftError> {
    let te = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let chunked = match te.as_deref().filter(|t| !t.is_empty()) {
        None => false,
        Some(te) => {
            let codings: Vec<&str> = te.split(',').collect();
            if codings.len() > 1 {
                return Err(SwiftError::plain(
                    StatusCode::NOT_IMPLEMENTED,
                    "Unsupported Transfer-Coding header value specified in Transfer-Encoding header",
                ));
            }
            if !te.eq_ignore_ascii_case("chunked") {
                return Err(SwiftError::plain(
                    StatusCode::BAD_REQUEST,
                    "Invalid Transfer-Encoding header value",
                ));
            }
            true
        }
    };
    let length = match headers.get(header::CONTENT_LENGTH) {
        Some(v) if !chunked => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    SwiftError::plain(
                        StatusCode::BAD_REQUEST,
                        "Invalid Content-Length header value",
                    )
                })?,
        ),
        _ => None,
    };
    let max = constraint(info, "max_file_size", 5_368_709_122);
    if length.is_some_and(|l| l > max) {
        return Err(SwiftError::plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Your request is too large.",
        ));
    }
    let made_by_middleware = ["x-copy-from", "x-symlink-target"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if length.is_none() && te.as_deref() != Some("chunked") && !made_by_middleware {
        return Err(SwiftError::plain(
            StatusCode::LENGTH_REQUIRED,
            "Missing Content-Length header.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_changes_are_validated() {
        let mut h = HeaderMap::new();
        h.insert("x-container-attr-tier", HeaderValue::from_static(" gold "));
        h.insert("x-container-meta-color", HeaderValue::from_static("blue"));
        let c = attribute_changes(&h).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c["tier"], "gold");
        h.insert(
            "x-container-attr-big",
            HeaderValue::from_str(&"v".repeat(257)).unwrap(),
        );
        assert_eq!(attribute_changes(&h).unwrap_err().status, 400);
        let mut bad = HeaderMap::new();
        bad.insert(
            "x-container-attr-x",
            HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(attribute_changes(&bad).unwrap_err().status, 412);
    }

    #[test]
    fn empty_values_remove() {
        let cur: Attributes = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let ch = [
            ("a".to_owned(), String::new()),
            ("c".to_owned(), "3".to_owned()),
        ]
        .into();
        let next = apply_changes(&cur, &ch).unwrap();
        assert_eq!(
            next,
            [("b".into(), "2".into()), ("c".into(), "3".into())].into()
        );
    }

    #[test]
    fn usage_is_summed() {
        let mut a = HeaderMap::new();
        a.insert("x-account-bytes-used", HeaderValue::from_static("10"));
        a.insert(
            "x-account-storage-policy-gold-bytes-used",
            HeaderValue::from_static("10"),
        );
        a.insert("x-account-meta-k", HeaderValue::from_static("v"));
        let mut b = HeaderMap::new();
        b.insert("x-account-bytes-used", HeaderValue::from_static("32"));
        b.insert("x-account-container-count", HeaderValue::from_static("2"));
        let mut out = a.clone();
        sum_usage(&mut out, [&a, &b]);
        assert_eq!(out["x-account-bytes-used"], "42");
        assert_eq!(out["x-account-container-count"], "2");
        assert_eq!(out["x-account-storage-policy-gold-bytes-used"], "10");
        assert_eq!(out["x-account-meta-k"], "v");
        assert!(!is_usage_header("x-account-meta-bytes-used-x"));
    }

    #[test]
    fn object_creation_is_checked_as_swift_does() {
        let info = serde_json::json!({"swift": {"max_file_size": 100}});
        let check = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            check_object_creation(&h, &info).map_err(|e| {
                let r = e.clone().into_response(false);
                assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
                (
                    e.status.as_u16(),
                    e.message.unwrap_or_default().into_owned(),
                )
            })
        };
        // Values from a real Swift 2.38 cluster.
        assert_eq!(
            check(&[("transfer-encoding", "gzip,chunked")]),
            Err((
                501,
                "Unsupported Transfer-Coding header value specified in Transfer-Encoding header"
                    .into()
            ))
        );
        assert_eq!(check(&[("transfer-encoding", "gzip")]).unwrap_err().0, 400);
        assert_eq!(check(&[("content-length", "x")]).unwrap_err().0, 400);
        assert_eq!(
            check(&[("content-length", "101")]),
            Err((413, "Your request is too large.".into()))
        );
        assert_eq!(
            check(&[]),
            Err((411, "Missing Content-Length header.".into()))
        );
        assert_eq!(check(&[("content-length", "100")]), Ok(()));
        assert_eq!(check(&[("x-copy-from", "c/o")]), Ok(()));
        assert_eq!(check(&[("transfer-encoding", "chunked")]), Ok(()));
        assert_eq!(
            check(&[("transfer-encoding", "chunked"), ("content-length", "1000")]),
            Ok(()),
            "chunked wins over a length"
        );
    }

    #[test]
    fn request_heads_meet_swifts_server_limits() {
        // A real Swift 2.38 cluster: a 9,000-byte path is a 414, an 8,100-byte one is
        // served; a 9,000-byte header value is a 400, an 8,180-byte one is served.
        let get = Method::GET;
        let path = |n: usize| format!("/v1/AUTH_test/{}", "p".repeat(n));
        let e = check_request_head(&get, &path(9000), &HeaderMap::new()).unwrap_err();
        assert_eq!(
            (
                e.status.as_u16(),
                e.into_response(false).headers()[header::CONTENT_LENGTH]
                    .to_str()
                    .unwrap()
            ),
            (414, "0")
        );
        assert!(check_request_head(&get, &path(8100), &HeaderMap::new()).is_ok());
        let with = |n: usize| {
            let mut h = HeaderMap::new();
            h.insert("x-foo", HeaderValue::from_str(&"a".repeat(n)).unwrap());
            check_request_head(&get, "/v1/AUTH_test", &h)
        };
        assert_eq!(with(9000).unwrap_err().status, 400);
        assert!(with(8180).is_ok());
        let mut many = HeaderMap::new();
        for i in 0..10 {
            many.insert(
                HeaderName::from_bytes(format!("x-foo-{i}").as_bytes()).unwrap(),
                HeaderValue::from_str(&"a".repeat(8000)).unwrap(),
            );
        }
        assert_eq!(
            check_request_head(&get, "/", &many).unwrap_err().status,
            400
        );
    }
}
