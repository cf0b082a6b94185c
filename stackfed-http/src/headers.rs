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
    hop_by_hop_index(name).is_some()
}

/// `name`'s place in [`HOP_BY_HOP`] (`proxy-connection` after them), if it is one: a
/// `match` on the name's text (its length, then its bytes) rather than a comparison
/// with each of the nine names.
fn hop_by_hop_index(name: &HeaderName) -> Option<u8> {
    index_of_lowercase(name.as_str().as_bytes())
}

/// [`hop_by_hop_index`] of a name as a `Connection` value lists it (in any case).
fn named_index(name: &str) -> Option<u8> {
    // The longest of the nine names is 19 bytes: a longer one is none of them.
    let mut buf = [0u8; 19];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name.as_bytes());
    lower.make_ascii_lowercase();
    index_of_lowercase(lower)
}

fn index_of_lowercase(name: &[u8]) -> Option<u8> {
    Some(match name {
        b"connection" => 0,
        b"keep-alive" => 1,
        b"proxy-authenticate" => 2,
        b"proxy-authorization" => 3,
        b"te" => 4,
        b"trailer" => 5,
        b"transfer-encoding" => 6,
        b"upgrade" => 7,
        b"proxy-connection" => 8,
        _ => return None,
    })
}

/// Removes the hop-by-hop headers, and those the `Connection` header names, from `headers`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds the few that are there (on a hot path usually just
    // `Connection`), kept as their places in the list, in the map's order (the order
    // they are removed in decides the order of the headers left): nothing is cloned or
    // allocated for them.
    let mut present = [0u8; 9];
    let mut n = 0;
    for i in headers.keys().filter_map(hop_by_hop_index) {
        // Each name once (the keys are distinct), so at most all nine (the eight of
        // `HOP_BY_HOP` and `proxy-connection`).
        if let Some(slot) = present.get_mut(n) {
            *slot = i;
            n += 1;
        }
    }
    if n == 0 {
        // Nothing to strip: without a `Connection` header, nothing is named either.
        return;
    }
    if present[..n].contains(&0) {
        // `Connection`'s values: usually one, taken out without a `Vec` (any others in one).
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        for named in first
            .iter()
            .chain(&rest)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let named = named.trim();
            // A hop-by-hop name that is not there (the usual `keep-alive`) is no lookup;
            // one that is goes now, as any other named header.
            if named_index(named).is_some_and(|i| !present[..n].contains(&i)) {
                continue;
            }
            // By `&str`: looked up without allocating a name, and not a name is no header.
            headers.remove(named);
        }
    }
    for &i in &present[..n] {
        match HOP_BY_HOP.get(usize::from(i)) {
            Some(name) => headers.remove(name),
            None => headers.remove("proxy-connection"),
        };
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

    /// The previous implementation (a `Vec` of the names found, cloned): the same
    /// headers must be left, in the same order.
    fn model(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        let mut headers = headers.clone();
        let present: Vec<HeaderName> = headers
            .keys()
            .filter(|n| HOP_BY_HOP.contains(n) || n.as_str() == "proxy-connection")
            .cloned()
            .collect();
        if !present.is_empty() {
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
                headers.remove(named.trim());
            }
            for n in present {
                headers.remove(n);
            }
        }
        headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn strips_what_the_model_strips(
            entries in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection",
                        "x-a", "x-b", "content-length", "etag", "tea", "upgrades",
                    ]),
                    "(( ?(x-a|X-B|te|Keep-Alive|close|upgrade|bad name|) ?),){0,3}",
                ),
                0..12,
            )
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in &entries {
                h.append(*name, HeaderValue::from_str(value).unwrap());
            }
            let expected = model(&h);
            strip_hop_by_hop(&mut h);
            let got: Vec<(String, Vec<u8>)> = h
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            proptest::prop_assert_eq!(got, expected);
            for name in h.keys() {
                proptest::prop_assert!(!is_hop_by_hop(name));
            }
        }
    }
}
