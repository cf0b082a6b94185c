//! `/healthcheck` for load balancers: answered locally and at once, from what the edge
//! already knows. The edge is ready while the central is down (serving then is its
//! job), so the central's reachability is reported, not required: it comes from the
//! last exchange with the central (a client's request or the background probe), never
//! from asking the central during the health check. 503 `DISABLED BY FILE` while the
//! configured `disable_path` exists (Swift's drain switch).

use http::{Response, StatusCode};
use serde_json::json;

use super::{json_response, EdgeService};
use crate::body::Body;

impl EdgeService {
    pub(super) async fn health(&self) -> Response<Body> {
        if let Some(path) = &self.inner.disable_path {
            if path.exists() {
                let mut r = Response::new(crate::body::full("DISABLED BY FILE"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                );
                return r;
            }
        }
        let reachable = self.inner.central.last_reachable();
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
