//! `GET /` (300) and `GET /versions` (200).

use http::request::Parts;
use http::{header, Response, StatusCode};
use serde_json::{json, Value};

use super::{json_response, EdgeService};
use crate::body::Body;

impl EdgeService {
    /// The versions, with links on the request's host. The edge has an image cache, so it
    /// lists the versions Glance lists when its own cache is on (2.14–2.18 add the cache
    /// API); built locally, so it also answers offline.
    pub(super) fn versions(&self, parts: &Parts, root: bool) -> Response<Body> {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let href = format!("http://{host}/v2/");
        let versions: Vec<Value> = (0..=18)
            .rev()
            .map(|minor| {
                json!({
                    "id": format!("v2.{minor}"),
                    "status": if minor == 18 { "CURRENT" } else { "SUPPORTED" },
                    "links": [{"rel": "self", "href": href}],
                })
            })
            .collect();
        let status = if root {
            StatusCode::MULTIPLE_CHOICES
        } else {
            StatusCode::OK
        };
        json_response(status, &json!({ "versions": versions }), false)
    }
}
