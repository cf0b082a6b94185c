//! Everything the edge does not answer itself (writes, members, tasks, …): passed
//! through to the central, streamed both ways; the cache then drops or re-confirms what
//! a write changed. 503 when the central is unreachable.

use http::request::Parts;
use http::{header, Method, Response};
use image_cache_core::ImageId;

use super::{Caller, EdgeService, Result};
use crate::body::Body;
use crate::error::GlanceError;
use crate::identity::{IdentityMode, IDENTITY_HEADERS};

impl EdgeService {
    pub(super) async fn forward(
        &self,
        parts: &Parts,
        body: Body,
        caller: &Caller,
    ) -> Result<Response<Body>> {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = parts.headers.clone();
        headers.remove(header::HOST);
        if self.inner.mode != IdentityMode::NoAuth {
            // Only what we vouched for travels on.
            for n in IDENTITY_HEADERS {
                headers.remove(n);
            }
            for (k, v) in self.identity_for_central(caller, &parts.headers) {
                if let Some(k) = k {
                    headers.insert(k, v);
                }
            }
        }
        let resp = self
            .inner
            .central
            .send(parts.method.clone(), pq, &headers, body)
            .await
            .map_err(|e| {
                GlanceError::from_upstream(
                    &e,
                    if parts.method == Method::GET {
                        "this request is not possible from this edge while the central is offline"
                    } else {
                        "changing images is not possible from this edge while the central is offline"
                    },
                )
            })?;
        if resp.status().is_success() && parts.method != Method::GET {
            self.after_write(parts).await;
        }
        let (p, b) = resp.into_parts();
        let mut r = Response::new(b);
        *r.status_mut() = p.status;
        stackfed_http::headers::copy_end_to_end(&p.headers, r.headers_mut());
        Ok(r)
    }

    async fn after_write(&self, parts: &Parts) {
        let Some(rest) = parts.uri.path().strip_prefix("/v2/images/") else {
            return;
        };
        let Some(id) = ImageId::parse(rest.split('/').next().unwrap_or("")) else {
            return;
        };
        let mut parts_of = rest.split('/').skip(1);
        let member = match (parts_of.next(), parts_of.next(), parts_of.next()) {
            (Some("members"), Some(m), None) if !m.is_empty() => Some(m),
            _ => None,
        };
        let result = if parts.method == Method::DELETE && !rest.contains('/') {
            self.inner.cache.forget(&id).await
        } else if let Some(m) = member {
            self.inner.cache.expire_member(&id, m).await
        } else {
            self.inner.cache.expire(&id).await
        };
        if let Err(e) = result {
            tracing::warn!(image = %id, error = %e, "could not update the cache after a write");
        }
    }
}
