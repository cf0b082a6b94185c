//! `GET /v2/images` (list), `GET /v2/images/{id}` (show), `GET /v2/images/{id}/file`
//! (download): answered by the engine's read-through, marked stale when the central
//! could not confirm them.

use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use image_cache_core::engine::ImageData;
use image_cache_core::upstream::RangeSpec;
use image_cache_core::ImageId;
use serde_json::{json, Value};
use stackfed_http::range::{self, RangeSpec as WireRange};

use super::{json_bytes_response, json_response, mark_stale, Caller, EdgeService, Result};
use crate::body::{from_stream, Body};
use crate::error::GlanceError;
use crate::image::{encode_image, to_json};
use crate::query::{page_links, parse_list_query};

impl EdgeService {
    pub(super) async fn show(&self, id: &ImageId, caller: &Caller) -> Result<Response<Body>> {
        // Glance's answer is the same for every caller allowed to see the image (the
        // engine checked that): each version of a record is encoded once.
        let served = self.inner.cache.image_version(id, caller).await?;
        let body = served.value.encoded(encode_image);
        Ok(json_bytes_response(StatusCode::OK, body, served.stale))
    }

    pub(super) async fn list(&self, parts: &Parts, caller: &Caller) -> Result<Response<Body>> {
        let query = parse_list_query(parts.uri.query())?;
        let served = self.inner.cache.list(&query, caller).await?;
        let page = served.value;
        let last = page.images.last().filter(|_| page.more).map(|r| &r.id);
        let (first, next) = page_links(parts.uri.query(), last);
        let mut doc = json!({
            "images": page.images.iter().map(to_json).collect::<Vec<_>>(),
            "first": first,
            "schema": "/v2/schemas/images",
        });
        if let Some(next) = next {
            doc["next"] = Value::String(next);
        }
        Ok(json_response(StatusCode::OK, &doc, served.stale))
    }

    pub(super) async fn download(
        &self,
        parts: &Parts,
        id: &ImageId,
        caller: &Caller,
    ) -> Result<Response<Body>> {
        if !parts.headers.contains_key(header::RANGE) {
            if let Some(v) = parts.headers.get(header::CONTENT_RANGE) {
                let range = self.legacy_content_range(v, id, caller).await?;
                let data = self.inner.cache.data(id, range, caller).await?;
                return Ok(data_response(data));
            }
        }
        let range = range::parse_range(&parts.headers)
            .map_err(|_| {
                let several = parts
                    .headers
                    .get(header::RANGE)
                    .is_some_and(|v| v.as_bytes().contains(&b','));
                if several {
                    // Glance's words (glance/api/v2/image_data.py).
                    GlanceError::bad_request(
                        "Requests with multiple ranges are not supported in Glance. You may \
                         make multiple single-range requests instead.",
                    )
                } else {
                    GlanceError::range_not_satisfiable("Invalid Range header.")
                }
            })?
            .map(|r| match r {
                WireRange::From { first, last } => RangeSpec::From { first, last },
                WireRange::Suffix(n) => RangeSpec::Suffix(n),
            });
        let data = self.inner.cache.data(id, range, caller).await?;
        Ok(data_response(data))
    }
}

impl EdgeService {
    /// The range a request's `Content-Range` header selects, as Glance still honours it
    /// in requests without `Range` (for backward compatibility): `bytes first-last/size`
    /// or `bytes first-last/*`, checked against the image's size with Glance's 416s.
    async fn legacy_content_range(
        &self,
        value: &HeaderValue,
        id: &ImageId,
        caller: &Caller,
    ) -> Result<Option<RangeSpec>> {
        let record = self.inner.cache.image(id, caller).await?.value;
        if record.status == image_cache_core::ImageStatus::Deactivated && !caller.is_admin {
            // Glance refuses the download before it reads the header.
            return Ok(None);
        }
        let size = record.size.unwrap_or(0);
        let unsatisfiable = |m: String| GlanceError::new(StatusCode::RANGE_NOT_SATISFIABLE, m);
        let (first, last, length) = value
            .to_str()
            .ok()
            .and_then(parse_content_range)
            .ok_or_else(|| unsatisfiable("Invalid Content-Range header.".into()))?;
        let top = size.saturating_sub(1);
        if length.is_none() && last >= size {
            return Err(unsatisfiable(format!(
                "Invalid stop position in Content-Range header. The stop position MUST be in the inclusive range [0, {top}]."
            )));
        }
        if first >= size {
            return Err(unsatisfiable(format!(
                "Invalid start position in Content-Range header. Start position MUST be in the inclusive range [0, {top}]."
            )));
        }
        Ok(Some(RangeSpec::From {
            first,
            last: Some(last),
        }))
    }
}

/// `bytes first-last/length` or `bytes first-last/*` (webob's `ContentRange.parse`):
/// the first and last byte and the length if given; `None` when invalid.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, length) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (first, last): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    let length = match length {
        "*" => None,
        l => Some(l.parse::<u64>().ok()?),
    };
    (first <= last && length.is_none_or(|l| last < l)).then_some((first, last, length))
}

/// 200 with the whole image or 206 with a range, `Content-MD5` of the whole image as
/// Glance sends it.
fn data_response(data: ImageData) -> Response<Body> {
    let ImageData {
        record,
        stale,
        size,
        range,
        stream,
        ..
    } = data;
    let mut r = Response::new(from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(md5) = record
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(HeaderName::from_static("content-md5"), md5);
    }
    if stale {
        mark_stale(h);
    }
    match range {
        Some(rg) => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(rg.len()));
            h.insert(
                header::CONTENT_RANGE,
                range::content_range(rg.first, rg.last, size),
            );
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        None => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn legacy_content_range_values() {
        assert_eq!(parse_content_range("bytes 0-99/*"), Some((0, 99, None)));
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 5-10/10"), None);
        assert_eq!(parse_content_range("bytes 9-5/*"), None);
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("bytes=0-9"), None);
        assert_eq!(parse_content_range("bytes -1-9/*"), None);
    }
}
