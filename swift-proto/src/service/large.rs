//! Large objects whose parts live on other clusters: SLO manifests with segments in
//! containers on other clusters, and DLO manifests whose segment container lives on
//! another cluster. A cluster follows such references only within itself, so the proxy
//! does what Swift's `slo` and `dlo` middlewares do, across clusters:
//!
//! - **SLO `PUT ?multipart-manifest=put`** (`slo.py`'s `handle_multipart_put`): the
//!   manifest is parsed and checked as Swift checks it, each segment is `HEAD`ed through
//!   this service (so each goes to its own container's cluster, and a segment that is
//!   itself a large object answers with its total size), the problems come back as
//!   Swift's 400 with its `Errors:` list, and the manifest Swift would store (the same
//!   JSON, byte for byte, so its MD5 is the same) is written to the manifest
//!   container's cluster as a plain object, **marked** in its content type (below).
//! - **DLO `PUT` with `X-Object-Manifest`** naming a container on another cluster: the
//!   object is stored without `X-Object-Manifest` (the cluster would look for the
//!   segments in its own container of that name), marked with the manifest instead.
//! - **`GET`/`HEAD`** of a marked object: the proxy answers as the middleware does —
//!   `ETag`, `Content-Length`, `X-Static-Large-Object`/`X-Object-Manifest`,
//!   `Accept-Ranges`, one `Range`, `?part-number=N`, `If-Match`/`If-None-Match` against
//!   the large object's ETag — and streams the segments one after the other, each
//!   fetched through this service from its own cluster (memory stays bounded: one
//!   segment's frames at a time). `?multipart-manifest=get` (and `&format=raw`) returns
//!   the manifest as Swift does.
//! - **`DELETE ?multipart-manifest=delete`**: the segments, wherever they live, then the
//!   manifest, in the bulk middleware's answer (see [`bulk`](super::bulk)).
//! - **container listings** show what Swift shows for a large object (the total size as
//!   `bytes`, `slo_etag`): Swift takes `bytes` from a `swift_bytes` content-type
//!   parameter only its own middleware may write (a client's is refused), so the proxy
//!   rewrites JSON and XML listings that contain a marker: marker removed, `bytes` set
//!   to the total, `slo_etag` added, in Swift's order.
//!
//! The marker is a content-type parameter, `stackfed_slo=<slo etag>-<size>` or `stackfed_dlo=<percent-encoded manifest>`.
//! Invariants: the proxy writes it only on manifests it validated; it is removed from
//! every answer (object headers, listings); a client may not set it (400); an object
//! `POST` with a new `Content-Type` keeps it (the proxy adds it back, as Swift's object
//! server keeps `swift_bytes`).

use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use federation_core::{AccountName, ClusterId, ContainerName};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use stackfed_http::range::{parse_range_value, RangeSpec};
use stackfed_http::{empty, from_stream, full, Body, BoxError};

use super::bulk::{self, Format, QUOTE};
use super::symlink::{link_fields, link_mark, with_link_mark, LINK_MARK};
use super::{Call, FederationService, Result};
use crate::cluster::swift_path;
use crate::error::SwiftError;

#[cfg(feature = "fuzzing")]
pub mod fuzz;

/// The content-type parameter that marks an SLO manifest the proxy assembles.
const SLO_MARK: &str = "stackfed_slo";
/// The content-type parameter that marks a DLO manifest the proxy assembles.
const DLO_MARK: &str = "stackfed_dlo";
/// Swift's defaults (`max_manifest_segments`, `max_manifest_size`, recursion depth).
const DEFAULT_MAX_SEGMENTS: u64 = 1000;
pub(super) const MAX_MANIFEST: usize = 8 * 1024 * 1024;
const MAX_DEPTH: u8 = 10;
/// Swift's `CONTAINER_LISTING_LIMIT`: a DLO listing of this many entries is a page.
const LISTING_LIMIT: usize = 10_000;
/// The largest `?versions` page the proxy reads to show a versioned listing's entries.
const MAX_LISTING: usize = 16 * 1024 * 1024;
/// How much of a container listing is read whole (and rewritten at once when it must
/// be); a longer one is streamed entry by entry. No fixed cap fits Swift's listings:
/// 10,000 entries (`CONTAINER_LISTING_LIMIT`) of 1,024-byte names
/// (`MAX_OBJECT_NAME_LENGTH`) of 3-byte characters are over 20 MB of JSON (each
/// character `\uXXXX`), and more in XML.
const WHOLE_LISTING: usize = 1024 * 1024;
/// The most one entry of a streamed listing may take (a 1,024-byte name is at most
/// 6 KiB escaped, a content type one 8 KiB header line, twice that escaped).
const MAX_ENTRY: usize = 256 * 1024;
/// Entries of a streamed listing rewritten together (and shown as the versions they
/// link to, in a versioned container).
const LISTING_BATCH: usize = 500;
/// `quote(value, safe='')` for the DLO marker.
const MARK_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// How deep large objects nest in the current request (a request extension).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Depth(pub(super) u8);

/// What a marked object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Marked {
    /// An SLO: its ETag (unquoted) and total size.
    Slo { etag: String, size: u64 },
    /// A DLO: its `X-Object-Manifest` value (`container/prefix`, decoded).
    Dlo { manifest: String },
}

/// The proxy's marker in `content_type`, if any (what [`unmark`] returns second, without
/// building the cleaned type).
fn mark_of(content_type: &str) -> Option<Marked> {
    let mut marked = None;
    for p in content_type.split(';').skip(1) {
        let p = p.trim();
        if let Some(v) = p.strip_prefix(SLO_MARK).and_then(|r| r.strip_prefix('=')) {
            if let Some((etag, size)) = v.rsplit_once('-') {
                if let Ok(size) = size.parse() {
                    marked = Some(Marked::Slo {
                        etag: etag.to_owned(),
                        size,
                    });
                }
            }
        } else if let Some(v) = p.strip_prefix(DLO_MARK).and_then(|r| r.strip_prefix('=')) {
            if let Ok(m) = percent_decode_str(v).decode_utf8() {
                marked = Some(Marked::Dlo {
                    manifest: m.into_owned(),
                });
            }
        }
    }
    marked
}

/// A content type without the marker (and `swift_bytes`), and the marker, if any.
pub(super) fn unmark(content_type: &str) -> (String, Option<Marked>) {
    let marked = mark_of(content_type);
    if marked.is_none() && !content_type.contains(LINK_MARK) {
        return (content_type.to_owned(), None);
    }
    let mut pieces = content_type.split(';');
    let mut clean = pieces.next().unwrap_or_default().to_owned();
    for p in pieces {
        let t = p.trim_start();
        if t.starts_with(SLO_MARK)
            || t.starts_with(DLO_MARK)
            || t.starts_with(LINK_MARK)
            || (marked.is_some() && t.starts_with("swift_bytes="))
        {
            continue;
        }
        clean.push(';');
        clean.push_str(p);
    }
    (clean, marked)
}

/// `content_type` with the marker. (Not with `swift_bytes`, as Swift's own SLOs: a real
/// Swift 2.38 refuses `swift_*` parameters from clients, "Invalid Content-Type, swift_*
/// is not a valid parameter name.")
pub(super) fn mark(content_type: &str, marked: &Marked) -> String {
    match marked {
        Marked::Slo { etag, size } => {
            format!("{content_type};{SLO_MARK}={etag}-{size}")
        }
        Marked::Dlo { manifest } => format!(
            "{content_type};{DLO_MARK}={}",
            utf8_percent_encode(manifest, MARK_ENCODE)
        ),
    }
}

/// Whether a client's content type carries a marker parameter (refused: only the proxy
/// writes markers).
pub(super) fn carries_mark(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').skip(1).any(|p| {
                let p = p.trim_start();
                p.starts_with(SLO_MARK) || p.starts_with(DLO_MARK) || p.starts_with(LINK_MARK)
            })
        })
}

/// The marker of an answer's content type.
pub(super) fn marked(resp: &Response<Body>) -> Option<Marked> {
    let ct = resp.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    // The marker alone: the cleaned type `unmark` builds was a `String` per GET, dropped.
    mark_of(ct)
}

/// A query parameter's value, as sent (still encoded).
fn query_value<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn query_has(query: Option<&str>, pair: &str) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == pair))
}

/// `?multipart-manifest=<value>`.
pub(super) fn manifest_query(call: &Call, value: &str) -> bool {
    query_has(
        call.parts.uri.query(),
        &format!("multipart-manifest={value}"),
    )
}

// ----- ranges ----------------------------------------------------------------------

/// swob's `Range.ranges_for_length` for one range: `(start, end)`, `end` exclusive;
/// `None` when it is not satisfiable.
fn range_for_length(spec: RangeSpec, length: u64) -> Option<(u64, u64)> {
    match spec {
        RangeSpec::Suffix(0) => None,
        RangeSpec::Suffix(n) => Some((length.saturating_sub(n), length)),
        RangeSpec::From { first, last } if first < length => Some((
            first,
            last.map_or(length, |l| l.saturating_add(1).min(length)),
        )),
        RangeSpec::From { .. } => None,
    }
}

/// A range of a manifest entry (`"M-N"`, `"M-"`, `"-N"`), as swob parses `bytes=…`:
/// `Err` with Swift's reason when it is not one valid range.
fn entry_range(text: &str) -> std::result::Result<RangeSpec, &'static str> {
    let value = format!("bytes={text}");
    if text.contains(',') {
        let all_valid = text
            .split(',')
            .all(|r| matches!(parse_range_value(&format!("bytes={r}")), Ok(Some(_))));
        return Err(if all_valid {
            "multiple ranges (only one allowed)"
        } else {
            "invalid range"
        });
    }
    match parse_range_value(&value) {
        Ok(Some(r)) => Ok(r),
        _ => Err("invalid range"),
    }
}

// ----- the manifest a client sends -------------------------------------------------

/// One entry of a manifest as a client sends it.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    Path {
        path: String,
        etag: Option<String>,
        size: Option<u64>,
        range: Option<RangeSpec>,
    },
    Data(Vec<u8>),
}

/// `slo.py`'s `parse_and_validate_input`: the entries, or Swift's 400.
/// `itself` is the manifest's own `container/object`.
fn parse_input(body: &[u8], itself: &str) -> Result<Vec<Input>> {
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return Err(SwiftError::bad_request("Manifest must be valid JSON.\n"));
    };
    let Value::Array(items) = parsed else {
        return Err(SwiftError::bad_request("Manifest must be a list.\n"));
    };
    let mut errors: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let last = items.len().saturating_sub(1);
    for (i, item) in items.iter().enumerate() {
        let Value::Object(d) = item else {
            errors.push(format!("Index {i}: not a JSON object"));
            continue;
        };
        let kind = if d.contains_key("data") {
            "data"
        } else if d.contains_key("path") {
            "path"
        } else {
            errors.push(format!(
                "Index {i}: expected keys to include one of 'data' or 'path'"
            ));
            continue;
        };
        let allowed: &[&str] = if kind == "data" {
            &["data"]
        } else {
            &["path", "range", "etag", "size_bytes"]
        };
        let mut extra: Vec<&String> = d
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        if !extra.is_empty() {
            extra.sort();
            let names: Vec<String> = extra
                .iter()
                .map(|k| stackfed_http::pyjson::string(k))
                .collect();
            errors.push(format!("Index {i}: extraneous keys {}", names.join(", ")));
            continue;
        }
        if kind == "data" {
            let decoded = d
                .get("data")
                .and_then(Value::as_str)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
            match decoded {
                None => errors.push(format!("Index {i}: data must be valid base64")),
                Some(b) if b.is_empty() => errors.push(format!(
                    "Index {i}: too small; each segment must be at least 1 byte."
                )),
                Some(b) => out.push(Input::Data(b)),
            }
            continue;
        }
        let Some(path) = d.get("path").and_then(Value::as_str) else {
            errors.push(format!("Index {i}: \"path\" must be a string"));
            continue;
        };
        let etag = match d.get("etag") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(format!(
                    "Index {i}: \"etag\" must be a string or null (if provided)"
                ));
                continue;
            }
        };
        if !path.trim_matches('/').contains('/') {
            errors.push(format!(
                "Index {i}: path does not refer to an object. Path must be of the form /container/object."
            ));
            continue;
        }
        let size = match d.get("size_bytes") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                let Some(n) = n else {
                    errors.push(format!("Index {i}: invalid size_bytes"));
                    continue;
                };
                if n < 1 && i != last {
                    errors.push(format!(
                        "Index {i}: too small; each segment must be at least 1 byte."
                    ));
                    continue;
                }
                Some(u64::try_from(n).unwrap_or(0))
            }
        };
        if path.trim_start_matches('/') == itself {
            errors.push(format!(
                "Index {i}: manifest must not include itself as a segment"
            ));
            continue;
        }
        let range = match d
            .get("range")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            None => None,
            Some(r) => match entry_range(r) {
                Ok(spec) => {
                    if size.is_some_and(|s| range_for_length(spec, s).is_none()) {
                        errors.push(format!("Index {i}: unsatisfiable range"));
                        continue;
                    }
                    Some(spec)
                }
                Err(why) => {
                    errors.push(format!("Index {i}: {why}"));
                    continue;
                }
            },
        };
        out.push(Input::Path {
            path: path.to_owned(),
            etag,
            size,
            range,
        });
    }
    if !items.is_empty() && out.iter().all(|s| matches!(s, Input::Data(_))) && errors.is_empty() {
        errors.push("Inline data segments require at least one object-backed segment.".into());
    }
    if !errors.is_empty() {
        let body: String = errors.iter().map(|e| format!("{e}\n")).collect();
        return Err(SwiftError::plain(StatusCode::BAD_REQUEST, body));
    }
    Ok(out)
}

// ----- the manifest as stored -------------------------------------------------------

/// One entry of a stored manifest (`slo.py`'s `seg_data`).
#[derive(Debug, Clone, PartialEq)]
enum Stored {
    Segment {
        name: String,
        bytes: u64,
        hash: String,
        content_type: String,
        last_modified: String,
        range: Option<(u64, u64)>,
        sub_slo: bool,
    },
    Data(Vec<u8>),
}

impl Stored {
    /// The bytes this entry contributes.
    fn length(&self) -> u64 {
        match self {
            Self::Segment {
                range: Some((a, b)),
                ..
            } => b - a + 1,
            Self::Segment { bytes, .. } => *bytes,
            Self::Data(d) => d.len() as u64,
        }
    }

    /// What the entry adds to the SLO's ETag.
    fn etag_part(&self) -> String {
        match self {
            Self::Data(d) => hex_md5(d),
            Self::Segment {
                hash,
                range: Some((a, b)),
                ..
            } => format!("{hash}:{a}-{b};"),
            Self::Segment { hash, .. } => hash.clone(),
        }
    }
}

fn hex_md5(data: &[u8]) -> String {
    let mut s = String::with_capacity(32);
    for b in Md5::digest(data) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// An inline data item of a manifest, `{"data": "<base64>"}`, as both the stored and
/// the raw form write it.
fn data_item(d: &[u8]) -> String {
    format!(
        "{{\"data\": {}}}",
        stackfed_http::pyjson::string(&base64::engine::general_purpose::STANDARD.encode(d))
    )
}

/// The stored manifest as Python's `json.dumps` writes it (Swift stores exactly that).
fn encode_stored(entries: &[Stored]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| match e {
            Stored::Data(d) => data_item(d),
            Stored::Segment {
                name,
                bytes,
                hash,
                content_type,
                last_modified,
                range,
                sub_slo,
            } => {
                let mut s = format!(
                    "{{\"name\": {}, \"bytes\": {bytes}, \"hash\": {}, \"content_type\": {}, \"last_modified\": {}",
                    stackfed_http::pyjson::string(name),
                    stackfed_http::pyjson::string(hash),
                    stackfed_http::pyjson::string(content_type),
                    stackfed_http::pyjson::string(last_modified)
                );
                if let Some((a, b)) = range {
                    let _ = write!(s, ", \"range\": \"{a}-{b}\"");
                }
                if *sub_slo {
                    s.push_str(", \"sub_slo\": true");
                }
                s.push('}');
                s
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// A stored manifest, read back (`None` when it is not one: also an inverted range, or
/// a total size past `u64`).
fn decode_stored(body: &[u8]) -> Option<Vec<Stored>> {
    let Value::Array(items) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let entries: Vec<Stored> = items
        .iter()
        .map(|item| {
            if let Some(d) = item.get("data").and_then(Value::as_str) {
                return base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .ok()
                    .map(Stored::Data);
            }
            let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
            let sub_slo = item.get("sub_slo").is_some_and(|v| v == &Value::Bool(true));
            let content_type = text("content_type").unwrap_or_default();
            let mut bytes = item.get("bytes").and_then(Value::as_u64)?;
            if sub_slo {
                // `override_bytes_from_content_type`
                if let Some(n) = content_type
                    .split(';')
                    .filter_map(|p| p.trim().strip_prefix("swift_bytes="))
                    .find_map(|n| n.parse().ok())
                {
                    bytes = n;
                }
            }
            let range = match text("range") {
                None => None,
                Some(r) => {
                    let (a, b) = r.split_once('-')?;
                    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                    Some((a <= b && b < u64::MAX).then_some((a, b))?)
                }
            };
            Some(Stored::Segment {
                name: text("name")?,
                bytes,
                hash: text("hash")?,
                content_type,
                last_modified: text("last_modified").unwrap_or_default(),
                range,
                sub_slo,
            })
        })
        .collect::<Option<_>>()?;
    entries
        .iter()
        .try_fold(0u64, |n, e| n.checked_add(e.length()))?;
    Some(entries)
}

/// `convert_segment_listing`: the stored manifest in the form a client PUTs
/// (`?multipart-manifest=get&format=raw`).
fn encode_raw(entries: &[Stored]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| match e {
            Stored::Data(d) => data_item(d),
            Stored::Segment {
                name,
                bytes,
                hash,
                range,
                ..
            } => {
                // `json.dumps(…, sort_keys=True)`
                let mut s = format!(
                    "{{\"etag\": {}, \"path\": {}",
                    stackfed_http::pyjson::string(hash),
                    stackfed_http::pyjson::string(name)
                );
                if let Some((a, b)) = range {
                    let _ = write!(s, ", \"range\": \"{a}-{b}\"");
                }
                let _ = write!(s, ", \"size_bytes\": {bytes}");
                s.push('}');
                s
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// An HTTP date (`Last-Modified`) as `%Y-%m-%dT%H:%M:%S.%f`.
fn manifest_time(http_date: Option<&HeaderValue>) -> String {
    let secs = http_date
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or_else(std::time::SystemTime::now)
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Swift's `normalize_etag`: without the quotes.
fn normalize_etag(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

// ----- pieces of a large object ------------------------------------------------------

/// One piece of the body: a byte range of a segment (fetched), or inline bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// The segment's path (`container/object`, decoded), first and last byte within it,
    /// and whether that is the whole segment.
    Fetch {
        path: String,
        first: u64,
        last: u64,
        whole: bool,
    },
    Inline(Bytes),
}

/// The pieces that make bytes `first..=last` of a large object made of `parts`: each
/// part is a path (or inline bytes), the range of it used, and its length.
fn pieces(parts: &[(PartSource, u64, u64)], first: u64, last: u64) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (src, start, len) in parts {
        let (lo, hi) = (offset, offset + len);
        offset = hi;
        if *len == 0 || hi <= first || lo > last {
            continue;
        }
        let a = first.max(lo) - lo;
        let b = (last + 1).min(hi) - lo - 1;
        match src {
            PartSource::Path { path, size } => out.push(Piece::Fetch {
                path: path.clone(),
                first: start + a,
                last: start + b,
                whole: start + a == 0 && Some(start + b + 1) == *size,
            }),
            PartSource::Inline(d) => {
                let (a, b) = (*start + a, *start + b);
                out.push(Piece::Inline(d.slice(a as usize..=b as usize)));
            }
        }
    }
    out
}

/// Where a part's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartSource {
    /// A segment (`container/object`) and its whole size, when known.
    Path {
        path: String,
        size: Option<u64>,
    },
    Inline(Bytes),
}

fn slo_parts(entries: &[Stored]) -> Vec<(PartSource, u64, u64)> {
    entries
        .iter()
        .map(|e| match e {
            Stored::Data(d) => (
                PartSource::Inline(Bytes::from(d.clone())),
                0,
                d.len() as u64,
            ),
            Stored::Segment {
                name, bytes, range, ..
            } => (
                PartSource::Path {
                    path: name.trim_start_matches('/').to_owned(),
                    size: Some(*bytes),
                },
                range.map_or(0, |r| r.0),
                e.length(),
            ),
        })
        .collect()
}

// ----- the service side --------------------------------------------------------------

/// What a subrequest carries of the client's request: its tokens, and its `Referer`
/// (Swift's subrequests copy the request's environment, so referrer ACLs apply to
/// segments too).
pub(super) fn auth_headers(headers: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in [
        "x-auth-token",
        "x-storage-token",
        "x-service-token",
        "referer",
    ] {
        if let Some(v) = headers.get(name) {
            h.insert(HeaderName::from_static(name), v.clone());
        }
    }
    h
}

fn header_str(resp: &Response<Body>, name: impl header::AsHeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a body up to `limit` bytes (`None` past it or on a broken body).
async fn read_limited(mut body: Body, limit: usize) -> Option<Bytes> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if out.len() + data.len() > limit {
                return None;
            }
            out.extend_from_slice(&data);
        }
    }
    Some(out.freeze())
}

fn swift_status(status: StatusCode) -> String {
    bulk::status_line(status)
}

/// `get_heartbeat_response_body(fmt, {}, errors, 'upload')`.
fn upload_errors(format: Format, errors: &[(String, String)]) -> String {
    match format {
        Format::Json => {
            let items: Vec<String> = errors
                .iter()
                .map(|(n, s)| {
                    format!(
                        "[{}, {}]",
                        stackfed_http::pyjson::string(n),
                        stackfed_http::pyjson::string(s)
                    )
                })
                .collect();
            format!("{{\"Errors\": [{}]}}", items.join(", "))
        }
        Format::Xml(_) => {
            let mut out = String::from("<upload>\n<errors>\n");
            for (n, s) in errors {
                let _ = writeln!(
                    out,
                    "<object><name>{}</name><status>{}</status></object>",
                    bulk::xml_escape(n),
                    bulk::xml_escape(s)
                );
            }
            out.push_str("</errors>\n</upload>\n");
            out
        }
        Format::Plain => {
            let mut out = String::from("Errors:\n");
            for (n, s) in errors {
                let _ = writeln!(out, "{n}, {s}");
            }
            out
        }
    }
}

impl FederationService {
    /// The auth headers of a large object's subrequest for `segment` (a
    /// `container/object` path, or a container): the caller's token; for a read through
    /// a temp URL (no token), the authority Swift's tempurl middleware lends, as far as
    /// the key that signed it reaches (see [`lent_token`](Self::lent_token)).
    async fn segment_auth(
        &self,
        call: &Call,
        account: &AccountName,
        segment: &str,
    ) -> Result<HeaderMap> {
        let mut h = auth_headers(&call.parts.headers);
        let container = segment
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        if let Some(v) = self
            .lent_token(call, account, container)
            .await?
            .and_then(|t| HeaderValue::from_str(&t).ok())
        {
            h.insert(HeaderName::from_static("x-auth-token"), v);
        }
        Ok(h)
    }

    /// A request through this service's own phases (as Swift's middlewares send their
    /// subrequests through the rest of the pipeline).
    pub(super) async fn subrequest(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        depth: u8,
    ) -> Response<Body> {
        self.subrequest_with(method, path_and_query, headers, empty(), depth)
            .await
    }

    /// [`subrequest`](Self::subrequest) with a body.
    pub(super) async fn subrequest_with(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Body,
        depth: u8,
    ) -> Response<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        match path_and_query.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return SwiftError::status(StatusCode::PRECONDITION_FAILED).into_response(false)
            }
        }
        *req.headers_mut() = headers;
        req.extensions_mut().insert(Depth(depth));
        let mut svc = self.clone();
        let Ok(resp) = tower::Service::call(&mut svc, req).await;
        resp
    }

    /// An SLO manifest PUT whose segments live (partly) on other clusters (see the
    /// [module docs](self)). `home` is the manifest container's cluster.
    pub(super) async fn slo_put(
        &self,
        mut call: Call,
        account: &AccountName,
        container: &ContainerName,
        object: &str,
        home: &ClusterId,
        manifest: Bytes,
    ) -> Result<Response<Body>> {
        if call.parts.headers.contains_key("x-copy-from") {
            return Err(SwiftError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Multipart Manifest PUTs cannot be COPY requests",
            ));
        }
        let itself = format!("{container}/{object}");
        let input = parse_input(&manifest, &itself)?;
        let (info, _) = self.info().await;
        let max_segments = info
            .pointer("/slo/max_manifest_segments")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_SEGMENTS);
        let objects = input
            .iter()
            .filter(|i| matches!(i, Input::Path { .. }))
            .count();
        if objects as u64 > max_segments {
            return Err(SwiftError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Number of object-backed segments must be <= {max_segments}"),
            ));
        }
        let format = bulk::negotiate(
            call.parts
                .headers
                .get(header::ACCEPT)
                .map(HeaderValue::as_bytes),
        )
        .unwrap_or(Format::Plain);
        let depth = call
            .parts
            .extensions
            .get::<Depth>()
            .copied()
            .unwrap_or_default()
            .0;
        // HEAD every distinct segment, two at a time (Swift's default concurrency).
        let mut paths: Vec<String> = Vec::new();
        for i in &input {
            if let Input::Path { path, .. } = i {
                if !paths.contains(path) {
                    paths.push(path.clone());
                }
            }
        }
        let base = swift_path(account, None, None);
        let mut auths = Vec::with_capacity(paths.len());
        for p in &paths {
            auths.push(self.segment_auth(&call, account, p).await?);
        }
        let heads: Vec<(String, Response<Body>)> =
            futures::stream::iter(paths.into_iter().zip(auths).map(|(p, auth)| {
                let svc = self.clone();
                let target = format!(
                    "{base}/{}",
                    utf8_percent_encode(p.trim_start_matches('/'), QUOTE)
                );
                let fut: std::pin::Pin<
                    Box<dyn std::future::Future<Output = (String, Response<Body>)> + Send>,
                > = Box::pin(async move {
                    let r = svc.subrequest(Method::HEAD, &target, auth, depth).await;
                    (p, r)
                });
                fut
            }))
            .buffered(2)
            .collect()
            .await;
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut stored = Vec::with_capacity(input.len());
        let mut total = 0u64;
        for (i, item) in input.iter().enumerate() {
            let Input::Path {
                path,
                etag,
                size,
                range,
            } = item
            else {
                if let Input::Data(d) = item {
                    total += d.len() as u64;
                    stored.push(Stored::Data(d.clone()));
                }
                continue;
            };
            let Some((_, head)) = heads.iter().find(|(p, _)| p == path) else {
                continue;
            };
            let quoted = utf8_percent_encode(path, QUOTE).to_string();
            if !head.status().is_success() {
                problems.push((quoted, swift_status(head.status())));
                continue;
            }
            let length = header_str(head, header::CONTENT_LENGTH)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let head_etag = header_str(head, header::ETAG)
                .map(normalize_etag)
                .unwrap_or_default();
            let mut seg_len = length;
            let mut kept_range = None;
            if let Some(spec) = range {
                match range_for_length(*spec, length) {
                    None => problems.push((quoted.clone(), "Unsatisfiable Range".into())),
                    Some((0, e)) if e == length => {}
                    Some((a, e)) => {
                        kept_range = Some((a, e - 1));
                        seg_len = e - a;
                    }
                }
            }
            if seg_len < 1 && i != input.len() - 1 {
                problems.push((
                    quoted.clone(),
                    "Too small; each segment must be at least 1 byte.".into(),
                ));
            }
            if size.is_some_and(|s| s != length) {
                problems.push((quoted.clone(), "Size Mismatch".into()));
            }
            if etag.as_deref().is_some_and(|e| e != head_etag) {
                problems.push((quoted.clone(), "Etag Mismatch".into()));
            }
            let content_type = header_str(head, header::CONTENT_TYPE).unwrap_or_default();
            let sub_slo = header_str(head, "x-static-large-object").is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "on" | "t" | "y"
                )
            });
            total += seg_len;
            stored.push(Stored::Segment {
                name: format!("/{}", path.trim_start_matches('/')),
                bytes: length,
                hash: head_etag.to_owned(),
                content_type: content_type.to_owned(),
                last_modified: manifest_time(head.headers().get(header::LAST_MODIFIED)),
                range: kept_range,
                sub_slo,
            });
        }
        if !problems.is_empty() {
            let mut r = Response::new(full(upload_errors(format, &problems)));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            return Ok(r);
        }
        let mut etag_input = String::new();
        for s in &stored {
            etag_input.push_str(&s.etag_part());
        }
        let slo_etag = hex_md5(etag_input.as_bytes());
        if let Some(client) = call
            .parts
            .headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
        {
            let client = normalize_etag(client);
            if !client.is_empty() && client != slo_etag {
                return Err(SwiftError::status(StatusCode::UNPROCESSABLE_ENTITY));
            }
        }
        let json = encode_stored(&stored);
        let content_type = call
            .parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(|| guess_type(object).to_owned(), str::to_owned);
        let marked = mark(
            &content_type,
            &Marked::Slo {
                etag: slo_etag.clone(),
                size: total,
            },
        );
        let h = &mut call.parts.headers;
        h.remove(header::TRANSFER_ENCODING);
        h.remove(header::EXPECT);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(json.len()));
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&hex_md5(json.as_bytes()))
                .map_err(|_| SwiftError::status(StatusCode::INTERNAL_SERVER_ERROR))?,
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&marked)
                .map_err(|_| SwiftError::bad_request("Invalid Content-Type"))?,
        );
        // The cluster stores a plain object: no SLO query.
        let path = swift_path(account, Some(container.as_str()), Some(object));
        let cluster = self.cluster(home)?;
        let mut resp = self.forward(cluster, &call, &path, full(json)).await?;
        if resp.status().is_success() {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{slo_etag}\"")) {
                resp.headers_mut().insert(header::ETAG, v);
            }
        }
        Ok(resp)
    }

    /// A DLO manifest PUT whose segment container lives on another cluster: stored
    /// marked, without `X-Object-Manifest`.
    pub(super) async fn dlo_put(
        &self,
        mut call: Call,
        home: &ClusterId,
        manifest: String,
    ) -> Result<Response<Body>> {
        let h = &mut call.parts.headers;
        h.remove("x-object-manifest");
        let object = call
            .parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let content_type = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map_or_else(|| guess_type(&object).to_owned(), str::to_owned);
        let marked = mark(&content_type, &Marked::Dlo { manifest });
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&marked)
                .map_err(|_| SwiftError::bad_request("Invalid Content-Type"))?,
        );
        let cluster = self.cluster(home)?;
        let body = std::mem::replace(&mut call.body, empty());
        self.forward(cluster, &call, call.path_and_query(), body)
            .await
    }

    /// An object `POST` that sets a new `Content-Type` on a marked object keeps the
    /// marker (as Swift's object server keeps an SLO's `swift_bytes`, and a static
    /// link's target ETag in its sysmeta).
    pub(super) async fn keep_mark_on_post(
        &self,
        call: &mut Call,
        path: &str,
        home: &ClusterId,
    ) -> Result<()> {
        let Some(ct) = call
            .parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let cluster = self.cluster(home)?;
        let head = self
            .forward(
                cluster,
                &Call {
                    parts: head_parts(&call.parts),
                    body: empty(),
                    caller: call.caller.clone(),
                    lent: call.lent.clone(),
                },
                &format!("{}&symlink=get", manifest_get(call, path)),
                empty(),
            )
            .await?;
        let mut kept = ct;
        if let Some(m) = marked(&head) {
            kept = mark(&kept, &m);
        }
        if let Some(link) = header_str(&head, header::CONTENT_TYPE).and_then(link_mark) {
            kept = with_link_mark(&kept, &link);
        }
        if let Ok(v) = HeaderValue::from_str(&kept) {
            call.parts.headers.insert(header::CONTENT_TYPE, v);
        }
        Ok(())
    }

    /// Whether a conditional read the cluster refused (304/412) was about a marked
    /// object: its `HEAD ?multipart-manifest=get` without the conditions.
    pub(super) async fn probe_mark(
        &self,
        call: &Call,
        path: &str,
        home: &ClusterId,
    ) -> Result<Option<Response<Body>>> {
        let cluster = self.cluster(home)?;
        let mut parts = head_parts(&call.parts);
        parts.method = Method::HEAD;
        let head = self
            .forward(
                cluster,
                &Call {
                    parts,
                    body: empty(),
                    caller: call.caller.clone(),
                    lent: call.lent.clone(),
                },
                &manifest_get(call, path),
                empty(),
            )
            .await?;
        Ok(marked(&head).is_some().then_some(head))
    }

    /// The answer to a `GET`/`HEAD` (or `DELETE ?multipart-manifest=delete`) of a
    /// marked object, from the cluster's first answer `resp` (see the module docs), or
    /// from [`probe_mark`](Self::probe_mark)'s answer (`probed`).
    pub(super) async fn large_answer(
        &self,
        call: &Call,
        at: ObjectHome<'_>,
        resp: Response<Body>,
        marked: Marked,
        probed: bool,
    ) -> Result<Response<Body>> {
        let ObjectHome {
            account,
            path,
            home,
        } = at;
        let depth = call
            .parts
            .extensions
            .get::<Depth>()
            .copied()
            .unwrap_or_default()
            .0;
        if depth >= MAX_DEPTH {
            return Err(SwiftError::new(
                StatusCode::CONFLICT,
                "Max recursion depth exceeded",
            ));
        }
        let head = call.parts.method == Method::HEAD;
        let query = call.parts.uri.query();
        if call.parts.method == Method::DELETE {
            return self.large_delete(call, account, path, home, marked).await;
        }
        if manifest_query(call, "get") {
            return manifest_answer(resp, &marked, query_has(query, "format=raw"), head).await;
        }
        // The manifest itself, whole and unconditional (the first answer may be a range
        // of it, or judged against the manifest's own ETag).
        // A 304/412 judged on the dates alone is right: the manifest's time is the
        // large object's (as in Swift).
        let etag_conditions = call.parts.headers.contains_key(header::IF_MATCH)
            || call.parts.headers.contains_key(header::IF_NONE_MATCH);
        let refused = resp.status() == StatusCode::NOT_MODIFIED
            || resp.status() == StatusCode::PRECONDITION_FAILED;
        if refused && !etag_conditions && !probed {
            let (mut p, b) = resp.into_parts();
            if let Some(v) = p
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| HeaderValue::from_str(&unmark(v).0).ok())
            {
                p.headers.insert(header::CONTENT_TYPE, v);
            }
            if let Marked::Slo { etag, .. } = &marked {
                if let Some(m) = p.headers.remove(header::ETAG) {
                    p.headers.insert("x-manifest-etag", m);
                }
                if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
                    p.headers.insert(header::ETAG, v);
                }
                p.headers
                    .insert("x-static-large-object", HeaderValue::from_static("True"));
            }
            return Ok(Response::from_parts(p, b));
        }
        // The cluster's answer serves when it is whole (a plain GET) or when only its
        // headers are needed (a HEAD of an SLO without a part number, any DLO).
        let body_needed =
            matches!(marked, Marked::Slo { .. }) && (!head || part_number(query)?.is_some());
        let whole = !probed && !head && !call.parts.headers.contains_key(header::RANGE);
        let plain_get = resp.status() == StatusCode::OK && (whole || !body_needed);
        let manifest = if plain_get {
            resp
        } else {
            let cluster = self.cluster(home)?;
            let mut parts = head_parts(&call.parts);
            parts.method = Method::GET;
            let c = Call {
                parts,
                body: empty(),
                caller: call.caller.clone(),
                lent: call.lent.clone(),
            };
            let r = self
                .forward(cluster, &c, &manifest_get(call, path), empty())
                .await?;
            if !r.status().is_success() {
                return Ok(r);
            }
            r
        };
        let (mut headers, body) = {
            let (p, b) = manifest.into_parts();
            (p.headers, b)
        };
        let manifest_etag = headers.get(header::ETAG).cloned();
        let needs_parts =
            !head || part_number(query)?.is_some() || matches!(marked, Marked::Dlo { .. });
        let (parts, etag, size) = match &marked {
            Marked::Slo { etag, size } => {
                let parts = if needs_parts {
                    let bytes = read_limited(body, MAX_MANIFEST)
                        .await
                        .ok_or_else(|| SwiftError::status(StatusCode::BAD_GATEWAY))?;
                    let entries = decode_stored(&bytes).ok_or_else(|| {
                        SwiftError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Unable to load SLO manifest",
                        )
                    })?;
                    slo_parts(&entries)
                } else {
                    Vec::new()
                };
                (parts, Some(etag.clone()), *size)
            }
            Marked::Dlo { manifest } => {
                drop(body);
                let (parts, etag) = self.dlo_parts(call, account, manifest, depth).await?;
                let size = parts.iter().map(|p| p.2).sum();
                (parts, etag, size)
            }
        };
        // The answer's headers: the manifest's, as the middleware rewrites them.
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| unmark(v).0);
        if let Some(v) = ct.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        headers.remove(header::CONTENT_RANGE);
        headers.remove(header::ETAG);
        if let Some(e) = &etag {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{e}\"")) {
                headers.insert(header::ETAG, v);
            }
        }
        match &marked {
            Marked::Slo { .. } => {
                headers.insert("x-static-large-object", HeaderValue::from_static("True"));
                if let Some(m) = manifest_etag {
                    headers.insert("x-manifest-etag", m);
                }
            }
            Marked::Dlo { manifest } => {
                if let Ok(v) = HeaderValue::from_str(
                    &utf8_percent_encode(manifest, MANIFEST_HEADER).to_string(),
                ) {
                    headers.insert("x-object-manifest", v);
                }
            }
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        // Conditions against the large object's ETag.
        if let Some(status) = etag_condition(&call.parts.headers, etag.as_deref()) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            if status == StatusCode::PRECONDITION_FAILED {
                // swob's 412: its own (empty, for a conditional) HTML answer.
                headers.remove(header::ACCEPT_RANGES);
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=UTF-8"),
                );
            }
            let mut r = Response::new(empty());
            *r.status_mut() = status;
            *r.headers_mut() = headers;
            return Ok(r);
        }
        let mut status = StatusCode::OK;
        // Swift's dlo middleware reads no part number: a DLO is answered whole.
        let part = match marked {
            Marked::Slo { .. } => part_number(query)?,
            Marked::Dlo { .. } => None,
        };
        let (first, last) = if let Some(n) = part {
            let n = n as usize;
            if matches!(marked, Marked::Slo { .. }) {
                headers.insert("x-parts-count", HeaderValue::from(parts.len()));
            }
            if n > parts.len() {
                let body = "The requested part number is not satisfiable";
                headers.insert(
                    header::CONTENT_RANGE,
                    stackfed_http::range::unsatisfied_range(size),
                );
                headers.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(if head { 0 } else { body.len() }),
                );
                let mut r = Response::new(if head { empty() } else { full(body) });
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                *r.headers_mut() = headers;
                return Ok(r);
            }
            let start: u64 = parts[..n - 1].iter().map(|p| p.2).sum();
            status = StatusCode::PARTIAL_CONTENT;
            (start, start + parts[n - 1].2 - 1)
        } else {
            let range = if head {
                None
            } else {
                call.parts
                    .headers
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_range_value(v).ok().flatten())
            };
            match range {
                None => (0, size.saturating_sub(1)),
                Some(spec) => match range_for_length(spec, size) {
                    None => {
                        headers.insert(
                            header::CONTENT_RANGE,
                            stackfed_http::range::unsatisfied_range(size),
                        );
                        let body = "<html><h1>Requested Range Not Satisfiable</h1><p>The Range requested is not available.</p></html>";
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
                        let mut r = Response::new(full(body));
                        *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                        *r.headers_mut() = headers;
                        return Ok(r);
                    }
                    Some((a, e)) => {
                        status = StatusCode::PARTIAL_CONTENT;
                        (a, e - 1)
                    }
                },
            }
        };
        let length = if size == 0 { 0 } else { last - first + 1 };
        if status == StatusCode::PARTIAL_CONTENT {
            headers.insert(
                header::CONTENT_RANGE,
                stackfed_http::range::content_range(first, last, size),
            );
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        let body = if head || length == 0 {
            empty()
        } else {
            self.segment_stream(call, account, pieces(&parts, first, last), depth)
                .await?
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        Ok(r)
    }

    /// The body of a large object: its pieces fetched one after the other, each
    /// through this service. The first is fetched before the answer starts (a missing
    /// first segment is Swift's 409).
    async fn segment_stream(
        &self,
        call: &Call,
        account: &AccountName,
        pieces: Vec<Piece>,
        depth: u8,
    ) -> Result<Body> {
        let mut auths: Vec<HeaderMap> = Vec::with_capacity(pieces.len());
        for p in &pieces {
            auths.push(match p {
                Piece::Fetch { path, .. } => self.segment_auth(call, account, path).await?,
                Piece::Inline(_) => HeaderMap::new(),
            });
        }
        let pieces: Vec<(Piece, HeaderMap)> = pieces.into_iter().zip(auths).collect();
        let base = swift_path(account, None, None);
        let svc = self.clone();
        let fetch = move |(piece, auth): (Piece, HeaderMap)| {
            let svc = svc.clone();
            let base = base.clone();
            async move {
                match piece {
                    Piece::Inline(b) => Ok::<Body, BoxError>(full(b)),
                    Piece::Fetch {
                        path,
                        first,
                        last,
                        whole,
                    } => {
                        let mut h = auth;
                        if !whole {
                            if let Ok(v) = HeaderValue::from_str(&format!("bytes={first}-{last}")) {
                                h.insert(header::RANGE, v);
                            }
                        }
                        let target = format!("{base}/{}", utf8_percent_encode(&path, QUOTE));
                        let r = svc.subrequest(Method::GET, &target, h, depth + 1).await;
                        if r.status().is_success() {
                            Ok(r.into_body())
                        } else {
                            Err(format!("segment {path}: {}", r.status()).into())
                        }
                    }
                }
            }
        };
        let mut pieces = pieces.into_iter();
        let Some(first) = pieces.next() else {
            return Ok(empty());
        };
        let first = fetch(first.clone()).await.map_err(|e| {
            tracing::info!(error = %e, "first segment of a large object unavailable");
            SwiftError::status(StatusCode::CONFLICT)
        })?;
        let rest = futures::stream::iter(pieces).then(fetch);
        let bodies = futures::stream::once(async move { Ok::<Body, BoxError>(first) }).chain(rest);
        let frames = bodies.flat_map(|b| match b {
            Ok(body) => http_body_util::BodyDataStream::new(body).boxed(),
            Err(e) => futures::stream::once(async move { Err::<Bytes, BoxError>(e) }).boxed(),
        });
        Ok(from_stream(frames))
    }

    /// A DLO's parts across clusters: the segment container's listing under the prefix
    /// (as Swift's dlo middleware reads it), and the ETag when the listing is complete.
    async fn dlo_parts(
        &self,
        call: &Call,
        account: &AccountName,
        manifest: &str,
        depth: u8,
    ) -> Result<(Vec<(PartSource, u64, u64)>, Option<String>)> {
        let (container, prefix) = manifest.split_once('/').unwrap_or((manifest, ""));
        let target = format!(
            "{}?format=json&prefix={}",
            swift_path(account, Some(container), None),
            utf8_percent_encode(prefix, NON_ALPHANUMERIC)
        );
        let r = self
            .subrequest(
                Method::GET,
                &target,
                self.segment_auth(call, account, container).await?,
                depth + 1,
            )
            .await;
        if !r.status().is_success() {
            return Err(SwiftError::status(r.status()));
        }
        let bytes = read_limited(r.into_body(), MAX_LISTING)
            .await
            .ok_or_else(|| SwiftError::status(StatusCode::BAD_GATEWAY))?;
        let listing: Vec<Value> = if bytes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|_| SwiftError::status(StatusCode::BAD_GATEWAY))?
        };
        let complete = listing.len() < LISTING_LIMIT;
        let mut etag = String::new();
        let mut parts = Vec::new();
        for item in &listing {
            let (Some(name), Some(bytes)) = (
                item.get("name").and_then(Value::as_str),
                item.get("bytes").and_then(Value::as_u64),
            ) else {
                continue;
            };
            etag.push_str(normalize_etag(
                item.get("hash").and_then(Value::as_str).unwrap_or_default(),
            ));
            parts.push((
                PartSource::Path {
                    path: format!("{container}/{name}"),
                    size: Some(bytes),
                },
                0,
                bytes,
            ));
        }
        Ok((parts, complete.then(|| hex_md5(etag.as_bytes()))))
    }

    /// `DELETE ?multipart-manifest=delete` of a marked SLO: its segments (on whatever
    /// cluster), then the manifest, answered as Swift's bulk delete. A DLO manifest is
    /// deleted alone (Swift deletes a DLO's manifest only).
    async fn large_delete(
        &self,
        call: &Call,
        account: &AccountName,
        path: &str,
        home: &ClusterId,
        marked: Marked,
    ) -> Result<Response<Body>> {
        let format = bulk::negotiate(
            call.parts
                .headers
                .get(header::ACCEPT)
                .map(HeaderValue::as_bytes),
        );
        let mut names: Vec<Vec<u8>> = Vec::new();
        if matches!(marked, Marked::Slo { .. }) {
            let cluster = self.cluster(home)?;
            let mut parts = head_parts(&call.parts);
            parts.method = Method::GET;
            let c = Call {
                parts,
                body: empty(),
                caller: call.caller.clone(),
                lent: call.lent.clone(),
            };
            let r = self
                .forward(cluster, &c, &manifest_get(call, path), empty())
                .await?;
            let bytes = read_limited(r.into_body(), MAX_MANIFEST)
                .await
                .unwrap_or_default();
            for e in decode_stored(&bytes).unwrap_or_default() {
                if let Stored::Segment { name, .. } = e {
                    names.push(name.into_bytes());
                }
            }
        }
        // The manifest itself, last (its own path, decoded, under the account).
        let own = call
            .parts
            .uri
            .path()
            .splitn(4, '/')
            .nth(3)
            .map(|p| percent_decode_str(p).collect::<Vec<u8>>())
            .unwrap_or_default();
        names.push(own);
        let token = call.parts.headers.get("x-auth-token").cloned();
        let version = query_value(call.parts.uri.query(), "version-id").map(str::to_owned);
        let outcome = self
            .clone()
            .delete_in_order(names, account.clone(), token, version)
            .await;
        let mut r = Response::new(full(outcome.render(format)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.map_or("text/plain", Format::content_type)),
        );
        Ok(r)
    }
}

/// A marked object: its account, its path (`/v1/…`, encoded) and its cluster.
#[derive(Debug, Clone, Copy)]
pub(super) struct ObjectHome<'a> {
    pub(super) account: &'a AccountName,
    pub(super) path: &'a str,
    pub(super) home: &'a ClusterId,
}

/// A `Call`'s head without the conditions and range (for the proxy's own reads of a
/// manifest).
fn head_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut req = Request::new(());
    *req.method_mut() = Method::HEAD;
    *req.uri_mut() = parts.uri.clone();
    let mut h = parts.headers.clone();
    for n in [
        header::RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONTENT_TYPE,
    ] {
        h.remove(n);
    }
    *req.headers_mut() = h;
    req.into_parts().0
}

/// `path?multipart-manifest=get`, with the request's `version-id` (the manifest of that
/// version).
fn manifest_get(call: &Call, path: &str) -> String {
    let version = call
        .parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find(|kv| kv.starts_with("version-id="));
    match version {
        Some(v) => format!("{path}?multipart-manifest=get&{v}"),
        None => format!("{path}?multipart-manifest=get"),
    }
}

/// `X-Object-Manifest` as Swift returns it (quoted, `/` kept).
const MANIFEST_HEADER: &AsciiSet = QUOTE;

/// `?part-number=N`: `None` when absent; Swift's 400 when not a positive integer.
fn part_number(query: Option<&str>) -> Result<Option<u64>> {
    let Some(v) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("part-number="))
    else {
        return Ok(None);
    };
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(SwiftError::bad_request(
            "Part number must be an integer greater than 0",
        )),
    }
}

/// swob's `If-Match`/`If-None-Match` for an object whose ETag is `etag`: 412 or 304.
fn etag_condition(headers: &HeaderMap, etag: Option<&str>) -> Option<StatusCode> {
    let matches = |v: &HeaderValue| {
        v.to_str().ok().is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|t| t == "*" || etag.is_some_and(|e| normalize_etag(t) == e))
        })
    };
    if let Some(v) = headers.get(header::IF_MATCH) {
        if !matches(v) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    }
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        if matches(v) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    }
    None
}

/// The answer to `?multipart-manifest=get` of a marked object: the stored manifest as
/// Swift returns it (or, with `format=raw`, in the form a client PUTs).
async fn manifest_answer(
    resp: Response<Body>,
    marked: &Marked,
    raw: bool,
    head: bool,
) -> Result<Response<Body>> {
    let (mut parts, body) = resp.into_parts();
    let h = &mut parts.headers;
    let clean = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| unmark(v).0)
        .unwrap_or_default();
    match marked {
        Marked::Dlo { manifest } => {
            if let Ok(v) = HeaderValue::from_str(&clean) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Ok(v) =
                HeaderValue::from_str(&utf8_percent_encode(manifest, MANIFEST_HEADER).to_string())
            {
                h.insert("x-object-manifest", v);
            }
            Ok(Response::from_parts(parts, body))
        }
        Marked::Slo { .. } => {
            h.insert("x-static-large-object", HeaderValue::from_static("True"));
            if !raw || !parts.status.is_success() {
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                return Ok(Response::from_parts(parts, body));
            }
            if let Ok(v) = HeaderValue::from_str(&clean) {
                h.insert(header::CONTENT_TYPE, v);
            }
            let bytes = read_limited(body, MAX_MANIFEST)
                .await
                .ok_or_else(|| SwiftError::status(StatusCode::BAD_GATEWAY))?;
            let json = decode_stored(&bytes)
                .map(|e| encode_raw(&e))
                .unwrap_or_default();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(json.len()));
            if let Ok(v) = HeaderValue::from_str(&hex_md5(json.as_bytes())) {
                h.insert(header::ETAG, v);
            }
            h.remove(header::CONTENT_RANGE);
            Ok(Response::from_parts(
                parts,
                if head { empty() } else { full(json) },
            ))
        }
    }
}

/// Python's `mimetypes.guess_type` for the common cases, else
/// `application/octet-stream` (what Swift stores when a manifest PUT has no type).
fn guess_type(object: &str) -> &'static str {
    let ext = object.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("iso") => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

// ----- container listings ------------------------------------------------------------

/// A JSON listing as Swift writes it (Python's `json.dumps` spacing, keys in order).
fn json_listing(items: &[Entry]) -> String {
    let mut out = String::from("[");
    for (i, Entry(fields)) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_entry(fields, &mut out);
    }
    out.push(']');
    out
}

/// The same listing asked as JSON: the query with any `format` replaced by `format=json`.
fn as_json_listing(path: &str, query: &str) -> String {
    let mut q: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("format"))
        .collect();
    q.push("format=json");
    format!("{path}?{}", q.join("&"))
}

/// One entry of a JSON listing, as Python's `json.dumps` writes it.
fn json_entry(fields: &[(String, Value)], out: &mut String) {
    json_object(fields.iter().map(|(k, v)| (k.as_str(), v)), out);
}

/// A JSON object from its members in order, as Python's `json.dumps` writes it.
fn json_object<'a>(members: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut String) {
    out.push('{');
    for (j, (k, v)) in members.enumerate() {
        if j > 0 {
            out.push_str(", ");
        }
        out.push_str(&stackfed_http::pyjson::string(k));
        out.push_str(": ");
        python_json(v, out);
    }
    out.push('}');
}

/// How many pages of a `?versions` listing one versioned listing reads at most.
const VERSION_PAGES: usize = 8;

/// The version id a versioned container's listing entry links to
/// (`symlink_path` ending in `?version-id=<id>`, with `version_symlink`).
fn linked_version(fields: &[(String, Value)]) -> Option<(String, String)> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    if get("version_symlink") != Some(&Value::Bool(true)) {
        return None;
    }
    let name = get("name")?.as_str()?.to_owned();
    let id = get("symlink_path")?.as_str()?.rsplit_once("version-id=")?.1;
    Some((name, id.to_owned()))
}

/// Whether a query names a parameter (`key`, `key=` or `key=value`).
fn has_param(query: &str, key: &str) -> bool {
    query.split('&').any(|kv| kv.split('=').next() == Some(key))
}

/// What a listing entry of a container with object versioning shows of the version
/// it links to, taken from that version's `?versions` entry (markers already removed):
/// a static link's target size and ETag as `bytes` and `hash` (Swift lists the link
/// to the version with the version's `symlink_bytes`/`symlink_etag`), else a large
/// object's size and `slo_etag`.
#[derive(Debug, Clone, PartialEq)]
struct VersionShown {
    bytes: Option<Value>,
    hash: Option<Value>,
    slo_etag: Option<Value>,
}

impl VersionShown {
    fn of(fields: &[(String, Value)]) -> Self {
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match (get("symlink_etag"), get("symlink_bytes")) {
            (Some(etag), Some(bytes)) => Self {
                bytes: Some(bytes),
                hash: Some(etag),
                slo_etag: None,
            },
            _ => Self {
                bytes: get("bytes"),
                hash: None,
                slo_etag: get("slo_etag"),
            },
        }
    }

    fn apply(&self, fields: &mut Vec<(String, Value)>) {
        for (key, value) in [("bytes", &self.bytes), ("hash", &self.hash)] {
            if let (Some(v), Some(f)) = (value, fields.iter_mut().find(|(k, _)| k == key)) {
                f.1 = v.clone();
            }
        }
        if let Some(slo) = &self.slo_etag {
            fields.retain(|(k, _)| k != "slo_etag");
            fields.push(("slo_etag".into(), slo.clone()));
        }
    }
}

impl FederationService {
    /// A container listing as the client gets it, every format and direction alike.
    /// The proxy's markers (large objects it assembles, static links across clusters)
    /// are removed by [`rewrite_listing`]; in a container with object versioning
    /// (`X-Versions-Enabled`, true or suspended; not a `?versions` listing) each
    /// entry links to a version and shows what that version is (see
    /// [`VersionShown`]), read from the container's `?versions` listing. XML is rendered from the JSON listing as
    /// Swift's `listing_formats` renders it (the same listing is asked again in JSON
    /// when it needs rewriting). Anything else streams through untouched.
    pub(super) async fn listing(
        &self,
        call: &Call,
        cluster: &crate::service::SwiftCluster,
        resp: Response<Body>,
    ) -> Result<Response<Body>> {
        let xml = match header_str(&resp, header::CONTENT_TYPE) {
            Some(ct) if ct.starts_with("application/json") => false,
            Some(ct) if ct.starts_with("application/xml") || ct.starts_with("text/xml") => true,
            _ => return Ok(resp),
        };
        let query = call.parts.uri.query().unwrap_or_default();
        // Versioning on, or suspended (`False`): the objects written while it was on
        // are still links to their versions, and listed as them.
        let versioned =
            header_str(&resp, "x-versions-enabled").is_some() && !has_param(query, "versions");
        let (mut parts, mut body) = resp.into_parts();
        let mut head = bytes::BytesMut::new();
        while head.len() <= WHOLE_LISTING {
            match body.frame().await {
                None => break,
                Some(Err(_)) => return Err(SwiftError::status(StatusCode::BAD_GATEWAY)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        head.extend_from_slice(&data);
                    }
                }
            }
        }
        if head.len() > WHOLE_LISTING {
            return self
                .listing_stream(call, cluster, parts, (head.freeze(), body), xml, versioned)
                .await;
        }
        let original = head.freeze();
        let marked = |b: &[u8]| {
            std::str::from_utf8(b).is_ok_and(|t| {
                t.contains(SLO_MARK) || t.contains(DLO_MARK) || t.contains(LINK_MARK)
            })
        };
        if !versioned && !marked(&original) {
            return Ok(Response::from_parts(parts, full(original)));
        }
        let path = call.parts.uri.path();
        let json = if xml {
            let again = self
                .forward(cluster, call, &as_json_listing(path, query), empty())
                .await?;
            if !again.status().is_success() {
                // Never the proxy's markers: the original only when it has none.
                if marked(&original) {
                    return Err(SwiftError::status(StatusCode::BAD_GATEWAY));
                }
                return Ok(Response::from_parts(parts, full(original)));
            }
            read_limited(again.into_body(), MAX_LISTING)
                .await
                .ok_or_else(|| SwiftError::status(StatusCode::BAD_GATEWAY))?
        } else {
            original.clone()
        };
        let text = rewrite_listing(&json).unwrap_or_else(|| json.to_vec());
        let Ok(mut items) = serde_json::from_slice::<Vec<Entry>>(&text) else {
            return Ok(Response::from_parts(parts, full(original)));
        };
        if versioned {
            self.show_versions(call, cluster, &mut items).await?;
        }
        let out = if xml {
            let container = path.split('/').nth(3).unwrap_or_default();
            let container = percent_decode_str(container).decode_utf8_lossy();
            crate::listing::container_xml(&container, items.iter().map(|Entry(f)| &f[..]))
        } else {
            json_listing(&items)
        };
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        parts.headers.remove(header::ETAG);
        Ok(Response::from_parts(parts, full(out)))
    }

    /// A listing longer than [`WHOLE_LISTING`], streamed: its entries pass as they come
    /// ([`LISTING_BATCH`] at a time), the marked ones rewritten, a versioned
    /// container's shown as their versions, XML rendered from the JSON listing (asked
    /// again). Memory stays bounded by a batch whatever the listing's length.
    async fn listing_stream(
        &self,
        call: &Call,
        cluster: &crate::service::SwiftCluster,
        mut parts: http::response::Parts,
        (head, rest): (Bytes, Body),
        xml: bool,
        versioned: bool,
    ) -> Result<Response<Body>> {
        let path = call.parts.uri.path();
        let (body, first, name) = if xml {
            drop(rest);
            let query = call.parts.uri.query().unwrap_or_default();
            let again = self
                .forward(cluster, call, &as_json_listing(path, query), empty())
                .await?;
            if !again.status().is_success() {
                return Err(SwiftError::status(StatusCode::BAD_GATEWAY));
            }
            let container = path.split('/').nth(3).unwrap_or_default();
            let container = percent_decode_str(container)
                .decode_utf8_lossy()
                .into_owned();
            (again.into_body(), Bytes::new(), Some(container))
        } else {
            (rest, head, None)
        };
        let mut split = EntrySplitter::default();
        let mut ready = Vec::new();
        split
            .push(&first, &mut ready)
            .map_err(|()| SwiftError::status(StatusCode::BAD_GATEWAY))?;
        let state = StreamedListing {
            service: self.clone(),
            call: Call {
                parts: call.parts.clone(),
                body: empty(),
                caller: call.caller.clone(),
                lent: call.lent.clone(),
            },
            cluster: cluster.id().clone(),
            body,
            split,
            ready,
            xml: name,
            versioned,
            written: 0,
            ended: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            match st.next_piece().await {
                Ok(Some(piece)) => Some((Ok::<_, BoxError>(piece), st)),
                Ok(None) => None,
                Err(e) => {
                    // Past the status line: the answer is cut, as a broken backend's.
                    st.written = usize::MAX;
                    st.ended = true;
                    st.ready.clear();
                    Some((Err(BoxError::from(format!("listing: {e:?}"))), st))
                }
            }
        });
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::ETAG);
        Ok(Response::from_parts(parts, from_stream(stream)))
    }

    /// The entries of a versioned container's listing that link to versions, shown as
    /// the versions are: the `?versions` listing (with the request's `prefix`) is read
    /// from the first linked name's versions on (`version_marker=null`: just before
    /// all its versions) until past the last linked name, at most [`VERSION_PAGES`]
    /// pages, so every direction and marker reads only what the listing shows.
    async fn show_versions(
        &self,
        call: &Call,
        cluster: &crate::service::SwiftCluster,
        items: &mut [Entry],
    ) -> Result<()> {
        let query = call.parts.uri.query();
        let wanted: Vec<(String, String)> = items
            .iter()
            .filter_map(|Entry(f)| linked_version(f))
            .collect();
        let (Some(first), Some(last)) = (
            wanted.iter().map(|(n, _)| n.clone()).min(),
            wanted.iter().map(|(n, _)| n.clone()).max(),
        ) else {
            return Ok(());
        };
        let path = call.parts.uri.path();
        let mut base = String::from("format=json&versions");
        if let Some(p) = query_value(query, "prefix") {
            base.push_str("&prefix=");
            base.push_str(p);
        }
        let enc = |t: &str| utf8_percent_encode(t, NON_ALPHANUMERIC).to_string();
        let mut next = format!("&marker={}&version_marker=null", enc(&first));
        let mut found = std::collections::HashMap::new();
        for _ in 0..VERSION_PAGES {
            let page = self
                .forward(cluster, call, &format!("{path}?{base}{next}"), empty())
                .await?;
            if !page.status().is_success() {
                break;
            }
            let Some(raw) = read_limited(page.into_body(), MAX_LISTING).await else {
                break;
            };
            let text = rewrite_listing(&raw).unwrap_or_else(|| raw.to_vec());
            let Ok(versions) = serde_json::from_slice::<Vec<Entry>>(&text) else {
                break;
            };
            let field = |f: &[(String, Value)], k: &str| {
                f.iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.as_str().map(str::to_owned))
            };
            let Some(Entry(end)) = versions.last() else {
                break;
            };
            let (end_name, end_id) = (field(end, "name"), field(end, "version_id"));
            for Entry(f) in &versions {
                if let (Some(n), Some(id)) = (field(f, "name"), field(f, "version_id")) {
                    found.insert((n, id), VersionShown::of(f));
                }
            }
            match (end_name, end_id) {
                (Some(n), Some(id)) if n < last => {
                    next = format!("&marker={}&version_marker={}", enc(&n), enc(&id));
                }
                _ => break,
            }
        }
        for Entry(fields) in items {
            if let Some(shown) = linked_version(fields).and_then(|key| found.get(&key)) {
                shown.apply(fields);
            }
        }
        Ok(())
    }
}

/// A JSON container listing with the markers removed and `slo_etag` (large objects)
/// or `symlink_etag`/`symlink_bytes` (static links) added, as Swift lists its own;
/// `None` when nothing in it is marked.
pub(super) fn rewrite_listing(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains(SLO_MARK) && !text.contains(DLO_MARK) && !text.contains(LINK_MARK) {
        return None;
    }
    let mut items: Vec<Entry> = serde_json::from_str(text).ok()?;
    for Entry(fields) in &mut items {
        rewrite_entry(fields);
    }
    Some(json_listing(&items).into_bytes())
}

/// One listing entry with the marker removed and what Swift lists added (see
/// [`rewrite_listing`]).
fn rewrite_entry(fields: &mut Vec<(String, Value)>) {
    let Some(at) = fields.iter().position(|(k, _)| k == "content_type") else {
        return;
    };
    let Some(ct) = fields[at].1.as_str() else {
        return;
    };
    let link = link_mark(ct);
    let (clean, marked) = unmark(ct);
    fields[at].1 = Value::String(clean);
    if let Some(link) = link {
        link_fields(fields, link);
    }
    if let Some(Marked::Slo { etag, size }) = marked {
        if let Some(b) = fields.iter_mut().find(|(k, _)| k == "bytes") {
            b.1 = Value::from(size);
        }
        fields.push(("slo_etag".into(), Value::String(format!("\"{etag}\""))));
    }
}

/// Whether a listing's bytes hold one of the proxy's markers.
fn has_marker(b: &[u8]) -> bool {
    let has = |m: &str| b.windows(m.len()).any(|w| w == m.as_bytes());
    has(SLO_MARK) || has(DLO_MARK) || has(LINK_MARK)
}

/// Splits a JSON container listing (an array of flat objects) into its entries'
/// bytes as they arrive.
#[derive(Default)]
struct EntrySplitter {
    pending: Vec<u8>,
    scanned: usize,
    start: Option<usize>,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl EntrySplitter {
    /// Takes the next bytes, adding every entry they complete to `out`. `Err` for
    /// what no listing is (an entry past [`MAX_ENTRY`], a brace out of place).
    fn push(&mut self, data: &[u8], out: &mut Vec<Bytes>) -> std::result::Result<(), ()> {
        self.pending.extend_from_slice(data);
        for i in self.scanned..self.pending.len() {
            let b = self.pending[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' => {
                    if self.depth == 0 {
                        self.start = Some(i);
                    }
                    self.depth += 1;
                }
                b'}' => {
                    self.depth = self.depth.checked_sub(1).ok_or(())?;
                    if self.depth == 0 {
                        let start = self.start.take().ok_or(())?;
                        out.push(Bytes::copy_from_slice(&self.pending[start..=i]));
                    }
                }
                _ => {}
            }
        }
        let keep = self.start.unwrap_or(self.pending.len());
        self.pending.drain(..keep);
        if self.start.is_some() {
            self.start = Some(0);
        }
        self.scanned = self.pending.len();
        if self.pending.len() > MAX_ENTRY {
            return Err(());
        }
        Ok(())
    }
}

/// A container listing streamed entry by entry (see [`FederationService::listing`]).
struct StreamedListing {
    service: FederationService,
    call: Call,
    cluster: ClusterId,
    body: Body,
    split: EntrySplitter,
    ready: Vec<Bytes>,
    /// The container's name when the answer is XML (rendered from the JSON listing).
    xml: Option<String>,
    versioned: bool,
    written: usize,
    ended: bool,
}

impl StreamedListing {
    /// The next piece of the answer: up to [`LISTING_BATCH`] entries, rewritten.
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        if self.ended && self.ready.is_empty() && self.written == usize::MAX {
            return Ok(None);
        }
        while self.ready.len() < LISTING_BATCH && !self.ended {
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(_)) => return Err(SwiftError::status(StatusCode::BAD_GATEWAY)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.split
                            .push(&data, &mut self.ready)
                            .map_err(|()| SwiftError::status(StatusCode::BAD_GATEWAY))?;
                    }
                }
            }
        }
        let raw = std::mem::take(&mut self.ready);
        let mut out = String::new();
        if self.written == 0 {
            match &self.xml {
                Some(name) => out.push_str(&crate::listing::container_xml_start(name)),
                None => out.push('['),
            }
        }
        let rewrite = self.versioned || self.xml.is_some();
        let mut entries = Vec::with_capacity(raw.len());
        for r in raw {
            if rewrite || has_marker(&r) {
                let Ok(Entry(mut fields)) = serde_json::from_slice::<Entry>(&r) else {
                    return Err(SwiftError::status(StatusCode::BAD_GATEWAY));
                };
                rewrite_entry(&mut fields);
                entries.push(Err(Entry(fields)));
            } else {
                entries.push(Ok(r));
            }
        }
        if self.versioned {
            let mut items: Vec<Entry> = entries
                .into_iter()
                .filter_map(std::result::Result::err)
                .collect();
            let cluster = self.service.cluster(&self.cluster)?;
            self.service
                .show_versions(&self.call, cluster, &mut items)
                .await?;
            entries = items.into_iter().map(Err).collect();
        }
        for e in entries {
            match (&self.xml, e) {
                (Some(_), Err(Entry(fields))) => {
                    crate::listing::container_xml_entry(&fields, self.written == 0, &mut out);
                }
                (_, e) => {
                    if self.written > 0 {
                        out.push_str(", ");
                    }
                    match e {
                        Ok(raw) => out.push_str(&String::from_utf8_lossy(&raw)),
                        Err(Entry(fields)) => json_entry(&fields, &mut out),
                    }
                }
            }
            self.written += 1;
        }
        if self.ended {
            match &self.xml {
                Some(_) => out.push_str(crate::listing::container_xml_end(self.written == 0)),
                None => out.push(']'),
            }
            self.written = usize::MAX;
        }
        Ok(Some(Bytes::from(out)))
    }
}

/// A listing entry, its fields in the order the cluster wrote them.
struct Entry(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Entry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a listing entry")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entry, A::Error> {
                let mut fields = Vec::new();
                while let Some(kv) = map.next_entry::<String, Value>()? {
                    fields.push(kv);
                }
                Ok(Entry(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A JSON value as Python's `json.dumps` writes it (`", "`, `": "`, ASCII only).
fn python_json(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => out.push_str(&stackfed_http::pyjson::string(s)),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => json_object(m.iter().map(|(k, x)| (k.as_str(), x)), out),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_round_trip_and_leave_the_type_as_it_was() {
        let m = Marked::Slo {
            etag: "abc".into(),
            size: 12,
        };
        let ct = mark("text/plain; charset=utf-8", &m);
        assert_eq!(ct, "text/plain; charset=utf-8;stackfed_slo=abc-12");
        assert_eq!(unmark(&ct), ("text/plain; charset=utf-8".into(), Some(m)));
        // As a listing shows it (swift_bytes removed, parameters re-joined).
        assert_eq!(
            unmark("text/plain;charset=utf-8;stackfed_slo=abc-12").0,
            "text/plain;charset=utf-8"
        );
        let d = Marked::Dlo {
            manifest: "segs/a b;c".into(),
        };
        let ct = mark("application/x", &d);
        assert!(!ct.contains(' ') && ct.matches(';').count() == 1, "{ct}");
        assert_eq!(unmark(&ct), ("application/x".into(), Some(d)));
        assert_eq!(
            unmark("text/plain;swift_bytes=3"),
            ("text/plain;swift_bytes=3".into(), None)
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("a/b; stackfed_slo=x-1"),
        );
        assert!(carries_mark(&h));
    }

    #[test]
    fn manifests_are_checked_as_swift_checks_them() {
        let err = |b: &str| parse_input(b.as_bytes(), "c/m").unwrap_err();
        assert_eq!(
            err("{").message.as_deref(),
            Some("Manifest must be valid JSON.\n")
        );
        assert_eq!(
            err("{}").message.as_deref(),
            Some("Manifest must be a list.\n")
        );
        let e = err(
            r#"[{"path": "c/a", "size_bytes": 0}, 3, {"path": "nope"}, {"path": "/c/m"}, {"path": "c/a", "x": 1}, {"path": "c/a", "range": "1-2,4-5"}, {"path": "c/a", "range": "5-", "size_bytes": 3}]"#,
        );
        assert_eq!(
            e.message.as_deref(),
            Some(
                "Index 0: too small; each segment must be at least 1 byte.\n\
                 Index 1: not a JSON object\n\
                 Index 2: path does not refer to an object. Path must be of the form /container/object.\n\
                 Index 3: manifest must not include itself as a segment\n\
                 Index 4: extraneous keys \"x\"\n\
                 Index 5: multiple ranges (only one allowed)\n\
                 Index 6: unsatisfiable range\n"
            )
        );
        let ok = parse_input(
            br#"[{"path": "/c/a", "etag": null, "size_bytes": "3"}, {"data": "eHl6"}]"#,
            "c/m",
        )
        .unwrap();
        assert_eq!(ok[1], Input::Data(b"xyz".to_vec()));
    }

    /// Found by the fuzz targets (fuzz/regressions/): a range ending at `u64::MAX`
    /// overflowed, and a stored manifest with an inverted range or sizes past `u64`
    /// made its length and pieces overflow.
    #[test]
    fn ranges_and_stored_manifests_at_the_limits_do_not_overflow() {
        let all = RangeSpec::From {
            first: 0,
            last: Some(u64::MAX),
        };
        assert_eq!(range_for_length(all, 10), Some((0, 10)));
        let stored = |r: &str| {
            decode_stored(format!(r#"[{{"name": "/s/o", "bytes": 5, "hash": "x"{r}}}]"#).as_bytes())
        };
        assert!(stored(r#", "range": "5-3""#).is_none());
        assert!(stored(r#", "range": "0-18446744073709551615""#).is_none());
        assert_eq!(
            stored(r#", "range": "1-3""#).map(|e| e[0].length()),
            Some(3)
        );
        let max = u64::MAX;
        let huge = format!(
            r#"[{{"name": "/s/o", "bytes": {max}, "hash": "x"}}, {{"name": "/s/p", "bytes": {max}, "hash": "y"}}]"#
        );
        assert!(decode_stored(huge.as_bytes()).is_none());
    }

    #[test]
    fn stored_manifests_are_pythons_json() {
        let e = vec![
            Stored::Segment {
                name: "/c/é".into(),
                bytes: 3,
                hash: "h".into(),
                content_type: "a/b".into(),
                last_modified: "2026-11-30T14:23:13.000000".into(),
                range: Some((1, 2)),
                sub_slo: true,
            },
            Stored::Data(b"xyz".to_vec()),
        ];
        let s = encode_stored(&e);
        assert_eq!(
            s,
            r#"[{"name": "/c/\u00e9", "bytes": 3, "hash": "h", "content_type": "a/b", "last_modified": "2026-11-30T14:23:13.000000", "range": "1-2", "sub_slo": true}, {"data": "eHl6"}]"#
        );
        assert_eq!(decode_stored(s.as_bytes()).unwrap(), e);
        assert_eq!(
            manifest_time(Some(&HeaderValue::from_static(
                "Mon, 30 Nov 2026 14:23:13 GMT"
            ))),
            "2026-11-30T14:23:13.000000"
        );
    }

    #[test]
    fn listings_lose_the_marker_and_gain_the_slo_etag() {
        let j = br#"[{"name": "m", "hash": "x", "bytes": 2, "content_type": "a/b;stackfed_slo=e-7", "last_modified": "t"}, {"subdir": "d/"}]"#;
        assert_eq!(
            String::from_utf8(rewrite_listing(j).unwrap()).unwrap(),
            r#"[{"name": "m", "hash": "x", "bytes": 7, "content_type": "a/b", "last_modified": "t", "slo_etag": "\"e\""}, {"subdir": "d/"}]"#
        );
        assert!(rewrite_listing(b"[]").is_none());
        let items: Vec<Entry> = serde_json::from_slice(&rewrite_listing(j).unwrap()).unwrap();
        assert_eq!(
            crate::listing::container_xml("c&\"", items.iter().map(|Entry(f)| &f[..])),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c&amp;&quot;\"><object><name>m</name><hash>x</hash><bytes>7</bytes><content_type>a/b</content_type><last_modified>t</last_modified></object><subdir name=\"d/\"><name>d/</name></subdir></container>"
        );
        assert_eq!(
            crate::listing::container_xml("c", std::iter::empty()),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\" />"
        );
    }

    /// What a versioned container lists for the version an entry links to, as Swift's
    /// object_versioning takes it from the link to the version: a static link's
    /// target size and ETag, a large object's size and `slo_etag`, else as stored.
    #[test]
    fn versions_are_shown_as_swift_shows_them() {
        let entry = |j: &str| serde_json::from_str::<Entry>(j).unwrap().0;
        let current = r#"{"bytes": 0, "hash": "d41d", "name": "l", "content_type": "t", "symlink_path": "/v1/a/c/l?version-id=1", "version_symlink": true}"#;
        let shown = |version: &str| {
            let mut f = entry(current);
            VersionShown::of(&entry(version)).apply(&mut f);
            json_listing(&[Entry(f)])
        };
        assert_eq!(
            shown(
                r#"{"bytes": 0, "hash": "d41d", "name": "l", "symlink_etag": "e7", "symlink_bytes": 7, "symlink_path": "/v1/a/d/t", "version_id": "1"}"#
            ),
            r#"[{"bytes": 7, "hash": "e7", "name": "l", "content_type": "t", "symlink_path": "/v1/a/c/l?version-id=1", "version_symlink": true}]"#
        );
        assert_eq!(
            shown(
                r#"{"bytes": 3111, "hash": "m", "name": "l", "slo_etag": "\"s\"", "version_id": "1"}"#
            ),
            r#"[{"bytes": 3111, "hash": "d41d", "name": "l", "content_type": "t", "symlink_path": "/v1/a/c/l?version-id=1", "version_symlink": true, "slo_etag": "\"s\""}]"#
        );
        assert_eq!(
            shown(r#"{"bytes": 0, "hash": "d41d", "name": "l", "version_id": "1"}"#),
            format!("[{current}]")
        );
        assert!(has_param("versions&reverse", "versions"));
        assert!(has_param("a=1&versions=", "versions"));
        assert!(!has_param("versionsx=1", "versions"));
    }

    /// A model: the bytes of a large object, and what the pieces of a range give.
    fn assemble(parts: &[(Vec<u8>, u64, u64)], first: u64, last: u64) -> Vec<u8> {
        let src: Vec<(PartSource, u64, u64)> = parts
            .iter()
            .enumerate()
            .map(|(i, (d, a, n))| {
                (
                    PartSource::Path {
                        path: i.to_string(),
                        size: Some(d.len() as u64),
                    },
                    *a,
                    *n,
                )
            })
            .collect();
        let mut out = Vec::new();
        for p in pieces(&src, first, last) {
            if let Piece::Fetch {
                path,
                first,
                last,
                whole,
            } = p
            {
                let d = &parts[path.parse::<usize>().unwrap()].0;
                assert_eq!(whole, first == 0 && last + 1 == d.len() as u64);
                out.extend_from_slice(&d[first as usize..=last as usize]);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn ranges_of_a_large_object_are_its_bytes(
            segs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 1..20), any::<u16>(), any::<u16>()), 1..6),
            a in any::<u16>(), b in any::<u16>(),
        ) {
            // Each segment used whole or by a sub-range.
            let parts: Vec<(Vec<u8>, u64, u64)> = segs.into_iter().map(|(d, x, y)| {
                let n = d.len() as u64;
                let (s, e) = (u64::from(x) % n, u64::from(y) % n);
                let (s, e) = (s.min(e), s.max(e));
                (d, s, e - s + 1)
            }).collect();
            let whole: Vec<u8> = parts.iter().flat_map(|(d, s, n)| d[*s as usize..(*s + *n) as usize].to_vec()).collect();
            let len = whole.len() as u64;
            let (x, y) = (u64::from(a) % len, u64::from(b) % len);
            let (first, last) = (x.min(y), x.max(y));
            prop_assert_eq!(assemble(&parts, first, last), whole[first as usize..=last as usize].to_vec());
        }

        /// A JSON listing cut anywhere, in any pieces, splits into the entries
        /// `serde_json` reads from it whole (names with quotes, braces, backslashes).
        #[test]
        fn listings_split_into_their_entries_wherever_cut(
            names in proptest::collection::vec("[a-z{}\\[\\]\"\\\\/, \u{1}é]{0,12}", 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let items: Vec<Value> = names
                .iter()
                .map(|n| serde_json::json!({"name": n, "hash": "x", "bytes": 1, "subdir": null}))
                .collect();
            let text = serde_json::to_string(&Value::Array(items.clone())).unwrap();
            let bytes = text.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            at.push(0);
            at.push(bytes.len());
            at.sort_unstable();
            let mut split = EntrySplitter::default();
            let mut out = Vec::new();
            for w in at.windows(2) {
                prop_assert!(split.push(&bytes[w[0]..w[1]], &mut out).is_ok());
            }
            let got: Vec<Value> = out.iter().map(|e| serde_json::from_slice(e).unwrap()).collect();
            prop_assert_eq!(got, items);
        }

        #[test]
        fn range_for_length_is_swobs(first in 0u64..50, last in proptest::option::of(0u64..50), n in 1u64..50, len in 0u64..40) {
            let spec = match last { Some(l) if l >= first => RangeSpec::From { first, last: Some(l) }, _ => RangeSpec::From { first, last: None } };
            let got = range_for_length(spec, len);
            if first < len { prop_assert!(got.is_some()); } else { prop_assert!(got.is_none()); }
            let s = range_for_length(RangeSpec::Suffix(n), len);
            prop_assert_eq!(s, Some((len.saturating_sub(n), len)));
        }
    }
}
