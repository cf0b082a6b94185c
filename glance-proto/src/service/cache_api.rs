//! Glance's cache API (`glance cache-list`, `cache-queue`, `cache-delete`,
//! `cache-clear`), plus `PUT`/`DELETE /v2/cache/{id}/pin` and
//! `POST /v2/cache/prefetch` (`{"filters": {"os_distro": "ubuntu"}}`). Admins only.

use http::request::Parts;
use http::{Method, Response, StatusCode};
use image_cache_core::ImageId;
use serde_json::{json, Value};

use super::{json_response, status_only, Caller, EdgeService, Result};
use crate::body::Body;
use crate::error::GlanceError;

/// One operation of the cache API.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CacheOp {
    /// `GET /v2/cache`
    List,
    /// `DELETE /v2/cache` (`x-image-cache-clear-target`: cache, queue or both).
    Clear,
    /// `POST /v2/cache/prefetch`
    Prefetch,
    /// `PUT /v2/cache/{id}`
    Queue(ImageId),
    /// `DELETE /v2/cache/{id}`
    Delete(ImageId),
    /// `PUT`/`DELETE /v2/cache/{id}/pin`
    Pin(ImageId, bool),
}

impl CacheOp {
    fn parse(parts: &Parts) -> Result<Self> {
        let rest = parts
            .uri
            .path()
            .trim_start_matches("/v2/cache")
            .trim_start_matches('/');
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let method = &parts.method;
        match (method, segments.as_slice()) {
            (&Method::GET, []) => Ok(Self::List),
            (&Method::DELETE, []) => Ok(Self::Clear),
            (&Method::POST, ["prefetch"]) => Ok(Self::Prefetch),
            (_, [id_text, tail @ ..]) => {
                let id = ImageId::parse(id_text).ok_or_else(|| GlanceError::no_image(id_text))?;
                match (method, tail) {
                    (&Method::PUT, []) => Ok(Self::Queue(id)),
                    (&Method::DELETE, []) => Ok(Self::Delete(id)),
                    (&Method::PUT, ["pin"]) => Ok(Self::Pin(id, true)),
                    (&Method::DELETE, ["pin"]) => Ok(Self::Pin(id, false)),
                    _ => Err(GlanceError::new(
                        StatusCode::NOT_FOUND,
                        "The resource could not be found.",
                    )),
                }
            }
            _ => Err(GlanceError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            )),
        }
    }
}

const PREFETCH_BODY: &str = "Body must be JSON: {\"filters\": {\"key\": \"value\"}}";

impl EdgeService {
    pub(super) async fn cache_api(
        &self,
        parts: &Parts,
        body: Body,
        caller: &Caller,
    ) -> Result<Response<Body>> {
        if !caller.is_admin {
            return Err(GlanceError::new(
                StatusCode::FORBIDDEN,
                "Access was denied to this resource.",
            ));
        }
        let cache = &self.inner.cache;
        match CacheOp::parse(parts)? {
            CacheOp::List => {
                let cached = cache.cached().await?;
                let doc = json!({
                    "cached_images": cached.iter().map(|e| json!({
                        "image_id": e.id.as_str(),
                        "hits": e.hits,
                        "last_accessed": e.last_access_ms as f64 / 1000.0,
                        "last_modified": e.cached_at_ms as f64 / 1000.0,
                        "size": e.size,
                        "pinned": e.pinned,
                    })).collect::<Vec<_>>(),
                    "queued_images": cache.queued().iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>(),
                });
                Ok(json_response(StatusCode::OK, &doc, false))
            }
            CacheOp::Clear => {
                let target = parts
                    .headers
                    .get("x-image-cache-clear-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("both");
                let (cached, queue) = match target {
                    "both" | "" => (true, true),
                    "cache" => (true, false),
                    "queue" => (false, true),
                    other => {
                        return Err(GlanceError::bad_request(format!(
                            "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string, not {other}"
                        )))
                    }
                };
                if queue {
                    cache.clear_queue();
                }
                if cached {
                    cache.clear_cached().await?;
                }
                Ok(status_only(StatusCode::NO_CONTENT))
            }
            CacheOp::Prefetch => {
                let bytes = crate::body::read_small(body, 64 * 1024)
                    .await
                    .map_err(|_| {
                        GlanceError::bad_request("Request body too large or unreadable")
                    })?;
                let doc: Value = serde_json::from_slice(&bytes)
                    .map_err(|_| GlanceError::bad_request(PREFETCH_BODY))?;
                let filters: Vec<(String, String)> = doc
                    .get("filters")
                    .and_then(Value::as_object)
                    .ok_or_else(|| GlanceError::bad_request(PREFETCH_BODY))?
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect();
                let ids = cache.prefetch_matching(&filters, caller).await?;
                let doc = json!({"queued": ids.iter().map(|i| i.as_str().to_owned()).collect::<Vec<_>>()});
                Ok(json_response(StatusCode::ACCEPTED, &doc, false))
            }
            CacheOp::Queue(id) => {
                cache.image(&id, caller).await?;
                cache.queue(&id, caller);
                Ok(status_only(StatusCode::ACCEPTED))
            }
            CacheOp::Delete(id) => {
                cache.delete_cached(&id).await?;
                Ok(status_only(StatusCode::NO_CONTENT))
            }
            CacheOp::Pin(id, pinned) => {
                cache.set_pinned(&id, pinned).await?;
                Ok(status_only(StatusCode::NO_CONTENT))
            }
        }
    }
}
