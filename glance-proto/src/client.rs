//! A client for the central Glance, implementing [`Upstream`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use image_cache_core::upstream::{
    ByteRange, RequestContext, Upstream, UpstreamData, UpstreamError,
};
use image_cache_core::{ImageId, ImageRecord};
use url::Url;

use crate::body::{empty, Body};
use crate::image::from_json;

/// The central Glance.
#[derive(Debug, Clone)]
pub struct CentralClient {
    base: Url,
    http: Client<HttpConnector, Body>,
    response_timeout: Duration,
}

const MAX_DOC: usize = 16 * 1024 * 1024;

impl CentralClient {
    /// A client for the Glance at `base` (scheme, host, port).
    pub fn new(base: Url, connect_timeout: Duration, response_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            base,
            http,
            response_timeout,
        }
    }

    /// The central's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Sends a request to `path_and_query` on the central, with `headers` (identity and
    /// content headers) and a streamed body. Unreachable or slow: `Unavailable`.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let uri = format!(
            "{}{}",
            self.base.as_str().trim_end_matches('/'),
            path_and_query
        );
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        for (k, v) in headers {
            if k != header::HOST && k != header::CONNECTION && k != header::TRANSFER_ENCODING {
                req.headers_mut().append(k.clone(), v.clone());
            }
        }
        match tokio::time::timeout(self.response_timeout, self.http.request(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(UpstreamError::Unavailable(format!(
                "central Glance unreachable: {e}"
            ))),
            Err(_) => Err(UpstreamError::Unavailable(
                "central Glance did not answer in time".into(),
            )),
        }
    }

    /// Sends a body-less request and reads the (small) answer whole.
    pub async fn fetch(
        &self,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamError> {
        let resp = self
            .send(Method::GET, path_and_query, headers, empty())
            .await?;
        let (parts, body) = resp.into_parts();
        let bytes =
            tokio::time::timeout(self.response_timeout, Limited::new(body, MAX_DOC).collect())
                .await
                .map_err(|_| UpstreamError::Unavailable("central Glance stalled".into()))?
                .map_err(|e| UpstreamError::Unavailable(format!("central Glance broke off: {e}")))?
                .to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    /// Whether the central answers at all.
    pub async fn reachable(&self) -> bool {
        matches!(self.fetch("/versions", &HeaderMap::new()).await, Ok((s, _, _)) if s.is_success() || s.is_redirection())
    }
}

/// The identity headers of a context, as a header map.
pub fn identity(ctx: &RequestContext) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in &ctx.identity_headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

impl CentralClient {
    /// The projects that accepted a shared image, as far as this identity may see
    /// (its owner sees all members; a member sees itself). Empty when unknown.
    async fn accepted_members(&self, id: &ImageId, headers: &HeaderMap) -> Vec<String> {
        let Ok((StatusCode::OK, _, body)) = self
            .fetch(&format!("/v2/images/{id}/members"), headers)
            .await
        else {
            return Vec::new();
        };
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        doc.get("members")
            .and_then(|m| m.as_array())
            .map(|ms| {
                ms.iter()
                    .filter(|m| m.get("status").and_then(|s| s.as_str()) == Some("accepted"))
                    .filter_map(|m| {
                        m.get("member_id")
                            .and_then(|s| s.as_str())
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn classify(status: StatusCode, headers: &HeaderMap, body: Bytes) -> UpstreamError {
    if status.is_server_error() {
        UpstreamError::Unavailable(format!("central Glance answered {status}"))
    } else {
        UpstreamError::Refused {
            status: status.as_u16(),
            body,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

#[async_trait]
impl Upstream for CentralClient {
    async fn get(
        &self,
        id: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        let mut h = identity(ctx);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let (status, headers, body) = self.fetch(&format!("/v2/images/{id}"), &h).await?;
        match status {
            StatusCode::OK => {
                let doc: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
                let mut record =
                    from_json(doc).map_err(|e| UpstreamError::Invalid(e.to_string()))?;
                if record.visibility == image_cache_core::Visibility::Shared {
                    record.members = self.accepted_members(id, &h).await;
                }
                Ok(Some(record))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(classify(s, &headers, body)),
        }
    }

    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
        ctx: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        let mut h = identity(ctx);
        if let Some(r) = range {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-{}", r.first, r.last)) {
                h.insert(header::RANGE, v);
            }
        }
        let resp = self
            .send(Method::GET, &format!("/v2/images/{id}/file"), &h, empty())
            .await?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                let total = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let stream = BodyStream::new(resp.into_body()).filter_map(|frame| async move {
                    match frame {
                        Ok(f) => f.into_data().ok().map(Ok),
                        Err(e) => Some(Err(std::io::Error::other(e))),
                    }
                });
                Ok(Some(UpstreamData {
                    total_size: if range.is_none() { total } else { None },
                    stream: Box::pin(stream),
                }))
            }
            StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => Ok(None),
            s => {
                let headers = resp.headers().clone();
                let body = Limited::new(resp.into_body(), 64 * 1024)
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                Err(classify(s, &headers, body))
            }
        }
    }
}
