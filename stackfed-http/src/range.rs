//! The `Range` request header (RFC 9110 §14.2) for one byte range, and the
//! `Content-Range` values that answer it.

use http::header::{self, HeaderMap, HeaderValue};

/// One byte range as a client asked for it, before it is resolved against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=first-` or `bytes=first-last`.
    From {
        /// The first byte.
        first: u64,
        /// The last byte, if given (a server clamps it to the size).
        last: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A `Range` header this parser will not serve: several ranges, or an inverted one
/// (`bytes=9-1`). A server answers 416.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("multiple or inverted ranges are not supported")]
pub struct UnsupportedRange;

/// Reads the `Range` header of a request: one `bytes=` range, or `None` when there is no
/// header or it is malformed or not in bytes (ignored, as RFC 9110 allows).
///
/// ```
/// use http::{header::RANGE, HeaderMap, HeaderValue};
/// use stackfed_http::range::{parse_range, RangeSpec};
/// let mut h = HeaderMap::new();
/// h.insert(RANGE, HeaderValue::from_static("bytes=-5"));
/// assert_eq!(parse_range(&h), Ok(Some(RangeSpec::Suffix(5))));
/// ```
pub fn parse_range(headers: &HeaderMap) -> Result<Option<RangeSpec>, UnsupportedRange> {
    match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => parse_range_value(v),
        None => Ok(None),
    }
}

/// Parses the value of a `Range` header (see [`parse_range`]).
pub fn parse_range_value(value: &str) -> Result<Option<RangeSpec>, UnsupportedRange> {
    // The unit is case-insensitive (RFC 9110 §14.1): Glance (webob) and Swift (swob)
    // both serve `Bytes=0-9`.
    let value = value.trim();
    let spec = match value.get(..6) {
        Some(unit) if unit.eq_ignore_ascii_case("bytes=") => &value[6..],
        _ => return Ok(None),
    };
    if spec.contains(',') {
        return Err(UnsupportedRange);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    Ok(match (a.is_empty(), b.is_empty()) {
        (true, false) => position(b).map(RangeSpec::Suffix),
        (false, true) => position(a).map(|first| RangeSpec::From { first, last: None }),
        (false, false) => match (position(a), position(b)) {
            (Some(first), Some(last)) if first <= last => Some(RangeSpec::From {
                first,
                last: Some(last),
            }),
            (Some(_), Some(_)) => return Err(UnsupportedRange),
            _ => None,
        },
        (true, true) => None,
    })
}

/// A position or length: digits only (no sign); one past `u64::MAX` is as far as any
/// size, so it saturates (a last position beyond the end is clamped, a first one is
/// unsatisfiable).
fn position(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// `Content-Range: bytes first-last/size` of a 206.
pub fn content_range(first: u64, last: u64, size: u64) -> HeaderValue {
    format!("bytes {first}-{last}/{size}")
        .parse()
        .unwrap_or(HeaderValue::from_static("bytes */*"))
}

/// The first and last byte of a 206's `Content-Range: bytes first-last/size` (the size
/// may be `*`); `None` when it is not that.
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, size) = rest.split_once('/')?;
    let (first, last) = span.trim().split_once('-')?;
    let (first, last) = (first.parse::<u64>().ok()?, last.parse::<u64>().ok()?);
    let size_ok = match size.trim() {
        "*" => true,
        s => s.parse::<u64>().is_ok_and(|n| last < n),
    };
    (first <= last && size_ok).then_some((first, last))
}

/// `Content-Range: bytes */size` of a 416.
pub fn unsatisfied_range(size: u64) -> HeaderValue {
    format!("bytes */{size}")
        .parse()
        .unwrap_or(HeaderValue::from_static("bytes */*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Result<Option<RangeSpec>, UnsupportedRange> {
        parse_range_value(v)
    }

    #[test]
    fn content_ranges_read_back() {
        assert_eq!(
            parse_content_range("bytes 1000-8388607/8388608"),
            Some((1000, 8388607))
        );
        assert_eq!(
            parse_content_range(content_range(0, 9, 100).to_str().unwrap()),
            Some((0, 9))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9)));
        for bad in [
            "bytes 9-5/100",
            "bytes 0-100/100",
            "bytes */100",
            "items 0-1/2",
            "bytes 0-/9",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            p("bytes=0-9"),
            Ok(Some(RangeSpec::From {
                first: 0,
                last: Some(9)
            }))
        );
        assert_eq!(
            p("bytes=5-"),
            Ok(Some(RangeSpec::From {
                first: 5,
                last: None
            }))
        );
        assert_eq!(p("bytes=-5"), Ok(Some(RangeSpec::Suffix(5))));
        assert_eq!(p("bytes=0-1,3-4"), Err(UnsupportedRange));
        assert_eq!(p("bytes=9-1"), Err(UnsupportedRange));
        assert_eq!(p("items=0-1"), Ok(None));
        assert_eq!(p("bytes=x-y"), Ok(None));
        assert_eq!(p("Bytes=-5"), Ok(Some(RangeSpec::Suffix(5))));
        assert_eq!(p("BYTES=-5"), Ok(Some(RangeSpec::Suffix(5))));
        assert_eq!(p("bytes=+1-2"), Ok(None));
        assert_eq!(p("bytes=-+2"), Ok(None));
        assert_eq!(p("byteséé"), Ok(None));
        assert_eq!(
            p("bytes=0-18446744073709551616"),
            Ok(Some(RangeSpec::From {
                first: 0,
                last: Some(u64::MAX)
            }))
        );
        assert_eq!(
            p("bytes=99999999999999999999-"),
            Ok(Some(RangeSpec::From {
                first: u64::MAX,
                last: None
            }))
        );
        assert_eq!(
            p("bytes=-99999999999999999999"),
            Ok(Some(RangeSpec::Suffix(u64::MAX)))
        );
        assert_eq!(parse_range(&HeaderMap::new()), Ok(None));
        assert_eq!(content_range(0, 9, 100), "bytes 0-9/100");
        assert_eq!(unsatisfied_range(100), "bytes */100");
    }
}
