//! Header classes: what the federation keeps, what it forwards, what it sums.

use std::collections::BTreeMap;

use federation_core::attrs::Attributes;
use http::{HeaderMap, HeaderName, HeaderValue};

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
}
