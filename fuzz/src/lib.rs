//! The checks behind each fuzz target: every parser that reads network input, with
//! what it must keep on any input (no panic; a round trip where a writer exists).
//! One function a target; `fuzz_targets/` call them under libFuzzer,
//! `tests/corpora.rs` runs the committed corpora through them on stable.

use http::Method;
use swift_proto::listing::{self, ListingFormat};
use swift_proto::path::SwiftPath;
use swift_proto::service::fuzzing::{bulk, large};

/// Splits `data` at the first `\n`: (head, rest).
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The first 8 bytes as a number (fewer: zero-padded), and the rest.
fn number(data: &[u8]) -> (u64, &[u8]) {
    let n = data.len().min(8);
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&data[..n]);
    (u64::from_le_bytes(b), &data[n..])
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A request path, for every method: Swift's answer or a path whose names are valid.
pub fn swift_path(data: &[u8]) {
    let raw = text(data);
    for m in [Method::GET, Method::PUT, Method::POST] {
        if let Ok(p) = SwiftPath::parse_request(&m, &raw) {
            if let SwiftPath::Object { object, .. } = &p {
                assert!(!object.is_empty(), "empty object name");
                let _ = SwiftPath::check_object_name(object);
            }
        }
    }
}

/// A listing query string (and the `format`/`Accept` negotiation): refused or read,
/// and what is read is asked of a backend unchanged; names are admitted and rolled up
/// by the federation's listing query without a panic.
pub fn swift_listing_query(data: &[u8]) {
    let (query, rest) = split(data);
    let query = text(query);
    let (accept, names) = split(rest);
    let _ = ListingFormat::negotiate(Some(&query), Some(&text(accept)));
    let _ = ListingFormat::negotiate(None, Some(&text(accept)));
    let Ok((q, _format)) = listing::parse_query(Some(&query)) else {
        return;
    };
    let again = listing::parse_query(Some(&listing::backend_query(&q)));
    match again {
        Ok((q2, format)) => {
            assert_eq!(q2, q, "backend query round trip");
            assert_eq!(format.as_deref(), Some("json"));
        }
        Err(e) => panic!("the backend query of an accepted query is refused: {e:?}"),
    }
    if q.validate().is_ok() {
        for name in text(names).split('\n') {
            if q.admits(name) {
                if let Some(r) = q.rollup(name) {
                    assert!(name.starts_with(r), "rollup is not a prefix of the name");
                }
            }
        }
    }
}

/// A cluster's account listing body (JSON, XML, plain): decoded or refused; a decoded
/// JSON listing is written in every format and read back to the same names.
pub fn swift_listing_body(data: &[u8]) {
    let _ = listing::decode_xml(&text(data));
    let _ = listing::decode_plain(&text(data));
    let Ok(entries) = listing::decode_json(data) else {
        return;
    };
    let json = listing::encode(ListingFormat::Json, "AUTH_test", &entries);
    let back = json.as_deref().map(listing::decode_json);
    match back {
        Some(Ok(back)) => assert_eq!(back, entries, "JSON listing round trip"),
        other => panic!("own JSON listing unreadable: {other:?}"),
    }
    for f in [ListingFormat::Xml("application/xml"), ListingFormat::Plain] {
        let _ = listing::encode(f, "AUTH_test", &entries);
    }
}

/// A `Range` header value, resolved against sizes: one range within the size or none.
pub fn http_range(data: &[u8]) {
    let (size, rest) = number(data);
    let value = text(rest);
    let Ok(Some(spec)) = stackfed_http::range::parse_range_value(&value) else {
        return;
    };
    let spec = match spec {
        stackfed_http::range::RangeSpec::From { first, last } => {
            image_cache_core::upstream::RangeSpec::From { first, last }
        }
        stackfed_http::range::RangeSpec::Suffix(n) => {
            image_cache_core::upstream::RangeSpec::Suffix(n)
        }
    };
    for size in [size, 0, 1, u64::MAX] {
        if let Some(r) = spec.resolve(size) {
            assert!(
                r.first <= r.last && r.last < size,
                "range outside the image"
            );
        }
    }
    // The same value as a manifest entry's range, against a segment of `size` bytes.
    if let Some(v) = value.trim().strip_prefix("bytes=") {
        large::manifest_range(v, size);
    }
}

/// A Glance list query: refused (Glance's 400) or read; what is read is asked of the
/// central and read back the same; the page links keep the client's parameters.
pub fn glance_query(data: &[u8]) {
    let query = text(data);
    let _ = glance_proto::query::page_links(Some(&query), None);
    let Ok(q) = glance_proto::query::parse_list_query(Some(&query)) else {
        return;
    };
    let s = glance_proto::query::to_query_string(&q);
    match glance_proto::query::parse_list_query(Some(&s)) {
        Ok(q2) => assert_eq!(q2, q, "central query round trip: {s}"),
        Err(e) => panic!("the central query of an accepted query is refused: {s}: {e:?}"),
    }
}

/// A Glance image document (and a list of them): read or refused; what is read is
/// written and read back the same.
pub fn glance_image(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = glance_proto::image::images_of(&doc);
    let Ok(r) = glance_proto::image::from_json(doc) else {
        return;
    };
    let back = glance_proto::image::from_json(glance_proto::image::to_json(&r));
    match back {
        Ok(mut back) => {
            // `to_json` adds Glance's links (`self`, `file`, `schema`) as properties.
            for k in ["self", "file", "schema"] {
                if !r.properties.contains_key(k) {
                    back.properties.remove(k);
                }
            }
            assert_eq!(back, r, "image round trip");
        }
        Err(e) => panic!("own image document unreadable: {e:?}"),
    }
}

/// A client's SLO manifest.
pub fn slo_manifest(data: &[u8]) {
    large::slo_input(data);
}

/// A stored SLO manifest (first 16 bytes: a byte range of the object), and the same
/// text as a content type carrying the proxy's markers.
pub fn slo_stored(data: &[u8]) {
    let (first, rest) = number(data);
    let (last, rest) = number(rest);
    large::stored_manifest(rest, first, last);
    large::content_type_marker(&text(rest));
}

/// A bulk-delete body (first byte: how the network cuts it; second: the limit), and
/// the first line as an `Accept` header.
pub fn bulk_delete(data: &[u8]) {
    let (cut, max, body) = match data {
        [c, m, rest @ ..] => (usize::from(*c) * 37 + 1, u64::from(*m), rest),
        _ => return,
    };
    let cuts: Vec<usize> = (0..body.len() / cut).map(|_| cut).collect();
    bulk::delete_list(body, &cuts, max);
    bulk::accept(split(body).0);
}

/// A configuration file of either server: read and checked, or refused naming why.
pub fn config_toml(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = swift_proto::config::ProxyConfig::from_toml(s);
    let _ = glance_proto::config::EdgeConfig::from_toml(s);
}
