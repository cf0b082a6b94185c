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

use super::{json_response, mark_stale, Caller, EdgeService, Result};
use crate::body::{from_stream, Body};
use crate::error::GlanceError;
use crate::image::to_json;
use crate::query::{page_links, parse_list_query};

impl EdgeService {
    pub(super) async fn show(&self, id: &ImageId, caller: &Caller) -> Result<Response<Body>> {
        let served = self.inner.cache.image(id, caller).await?;
        Ok(json_response(
            StatusCode::OK,
            &to_json(&served.value),
            served.stale,
        ))
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
        let range = range::parse_range(&parts.headers)
            .map_err(|_| {
                GlanceError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "Multiple or inverted ranges are not supported",
                )
            })?
            .map(|r| match r {
                WireRange::From { first, last } => RangeSpec::From { first, last },
                WireRange::Suffix(n) => RangeSpec::Suffix(n),
            });
        let data = self.inner.cache.data(id, range, caller).await?;
        Ok(data_response(data))
    }
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
