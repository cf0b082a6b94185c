//! Header rules every proxy hop applies (RFC 9110 §7.6.1).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// Connection-specific headers, never forwarded by a proxy. `Connection` itself may name
/// more (see [`strip_hop_by_hop`]).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether `name` is a hop-by-hop header.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name.as_str() == "proxy-connection"
}

/// Removes the hop-by-hop headers, and those the `Connection` header names, from `headers`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds the few that are there (on a hot path usually just
    // `Connection`), instead of a lookup for each name that may be.
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    if present.is_empty() {
        // Nothing to strip: without a `Connection` header, nothing is named either.
        return;
    }
    let connection: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    for named in connection
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        // By `&str`: looked up without allocating a name, and not a name is no header.
        headers.remove(named.trim());
    }
    for n in present {
        headers.remove(n);
    }
}

/// Appends `from`'s end-to-end headers (all but the hop-by-hop ones) to `to`.
pub fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !is_hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-object-meta-color", HeaderValue::from_static("blue"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        // Names in any case, with spaces, and proxy-connection; nothing else goes.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("X-One ,"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-two, bad name"),
        );
        for n in [
            "x-one",
            "x-two",
            "proxy-connection",
            "keep-alive",
            "x-three",
        ] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-three"], "{h:?}");
        let mut h = HeaderMap::new();
        h.insert("x-object-meta-color", HeaderValue::from_static("blue"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-object-meta-color"));
        assert!(is_hop_by_hop(&header::UPGRADE));
        assert!(!is_hop_by_hop(&header::CONTENT_LENGTH));
    }
}
