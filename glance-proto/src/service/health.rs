//! `/healthcheck`: whether the central is reachable, and what the cache holds.

use http::{Response, StatusCode};
use serde_json::json;

use super::{json_response, EdgeService};
use crate::body::Body;

impl EdgeService {
    pub(super) async fn health(&self) -> Response<Body> {
        let reachable = self.inner.central.reachable().await;
        let (images, bytes) = self.inner.cache.usage().await.unwrap_or((0, 0));
        json_response(
            StatusCode::OK,
            &json!({
                "status": "ok",
                "central": {"url": self.inner.central.base().as_str(), "reachable": reachable},
                "cache": {"images": images, "bytes": bytes},
            }),
            false,
        )
    }
}
