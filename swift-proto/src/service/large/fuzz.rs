//! Entry points for the fuzz targets (`fuzz/`, feature `fuzzing`): the large-object
//! parsers that read network input, each with the properties it must keep.

use super::*;

/// A client's SLO manifest (`PUT ?multipart-manifest=put`): parsed and validated, or
/// Swift's 400, never a panic. Every accepted entry's range resolves against any size.
pub fn slo_input(body: &[u8]) {
    if let Ok(items) = parse_input(body, "c/o") {
        for item in items {
            if let Input::Path {
                range: Some(r),
                size,
                ..
            } = item
            {
                let _ = range_for_length(r, size.unwrap_or(u64::MAX));
                let _ = range_for_length(r, 0);
            }
        }
    }
}

/// A stored manifest (read back from a cluster): decoded or refused; what decodes
/// encodes back to the same entries, its raw form is written, and the pieces of any
/// byte range of it are within it.
pub fn stored_manifest(body: &[u8], first: u64, last: u64) {
    let Some(entries) = decode_stored(body) else {
        return;
    };
    let again = decode_stored(encode_stored(&entries).as_bytes());
    assert_eq!(again.as_ref(), Some(&entries), "stored manifest round trip");
    let _ = encode_raw(&entries);
    let total = entries
        .iter()
        .fold(0u64, |n, e| n.saturating_add(e.length()));
    let (first, last) = (first.min(last), first.max(last));
    for p in pieces(
        &slo_parts(&entries),
        first,
        last.min(total.saturating_sub(1)),
    ) {
        if let Piece::Fetch { first, last, .. } = p {
            assert!(first <= last, "a piece's range is inverted");
        }
    }
}

/// A content type as a cluster stores it: the proxy's marker read, and a marker it
/// writes read back the same.
pub fn content_type_marker(content_type: &str) {
    let (clean, marked) = unmark(content_type);
    if let Some(m) = marked {
        let (clean2, again) = unmark(&mark(&clean, &m));
        assert_eq!(again, Some(m), "marker round trip");
        assert_eq!(clean2, clean, "content type round trip");
    }
}

/// A manifest entry's `range` (`"M-N"`), resolved against a segment of `length` bytes:
/// Swift's reason or a range within the segment.
pub fn manifest_range(text: &str, length: u64) {
    if let Ok(spec) = entry_range(text) {
        if let Some((start, end)) = range_for_length(spec, length) {
            assert!(start <= end && end <= length, "range outside the segment");
        }
    }
}
