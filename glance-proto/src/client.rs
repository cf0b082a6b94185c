//! The client for the central Glance: the one place that formats a URL on the central
//! and attaches a caller's identity to it. It implements [`Upstream`] for the engine and
//! sends the requests the edge passes through, over `stackfed_http`'s pooled
//! [`HttpClient`]; its failures become [`UpstreamError`]s that keep the cause.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyStream;
use image_cache_core::list::{ListQuery, Page};
use image_cache_core::upstream::{
    ByteRange, RequestContext, Upstream, UpstreamData, UpstreamError,
};
use image_cache_core::{ImageId, ImageRecord};
use serde_json::Value;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use stackfed_http::{ClientError, HttpClient, Timeouts};
use url::Url;

use crate::body::{empty, Body};
use crate::image::{from_json, images_of};
use crate::query::to_query_string;

/// The central Glance. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct CentralClient {
    base: Url,
    http: HttpClient,
    /// What the last exchange with the central found: 0 nothing yet, 1 reachable, 2 not.
    reach: Arc<AtomicU8>,
}

/// The most a metadata document (image, listing, schema) may weigh.
const MAX_DOC: usize = 16 * 1024 * 1024;
/// The most of a refusal's body kept to pass on.
const MAX_REFUSAL: usize = 64 * 1024;

/// What an exchange with the central that failed means for the edge: unreachable,
/// timed out or broken off (the serve-stale rule applies), or a request that could not
/// be made. The [`ClientError`] stays attached as the cause.
pub fn upstream_error(e: ClientError) -> UpstreamError {
    match e {
        ClientError::Timeout { .. } => UpstreamError::Timeout { source: e.into() },
        ClientError::TooLarge { .. } => UpstreamError::Invalid {
            reason: "the answer is too large".into(),
            source: Some(e.into()),
        },
        ClientError::Invalid(_) => UpstreamError::Request { source: e.into() },
        // Connect, Transport, Body, and whatever is added later.
        _ => UpstreamError::Unreachable { source: e.into() },
    }
}

/// A status other than the one hoped for: a server error means the central is failing;
/// anything else is its refusal, passed on.
fn refusal(status: StatusCode, headers: &HeaderMap, body: Bytes) -> UpstreamError {
    if status.is_server_error() {
        UpstreamError::Failing {
            status: status.as_u16(),
        }
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

fn json_doc(body: &[u8], what: &str) -> Result<Value, UpstreamError> {
    serde_json::from_slice(body)
        .map_err(|e| UpstreamError::invalid(format!("{what} is not JSON"), e))
}

impl CentralClient {
    /// A client for the Glance at `base` (scheme, host, port).
    pub fn new(base: Url, timeouts: Timeouts) -> Self {
        Self {
            base,
            http: HttpClient::new(timeouts),
            reach: Arc::default(),
        }
    }

    /// A client for the Glance at `base` over an existing [`HttpClient`] (one trusting
    /// a private CA, for instance: [`HttpClient::with_ca_file`]).
    pub fn with_client(base: Url, http: HttpClient) -> Self {
        Self {
            base,
            http,
            reach: Arc::default(),
        }
    }

    /// The central's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Sends a request to `path_and_query` on the central, with `headers` (identity and
    /// content headers; hop-by-hop ones and `Host` are dropped) and a streamed body; the
    /// answer streams back.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response<Body>, UpstreamError> {
        let uri = format!(
            "{}{}",
            self.base.as_str().trim_end_matches('/'),
            path_and_query
        );
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|e| UpstreamError::Request { source: e.into() })?;
        let mut h = headers.clone();
        stackfed_http::headers::strip_hop_by_hop(&mut h);
        h.remove(header::HOST);
        req.headers_mut().extend(h);
        let sent = self.http.send(req).await;
        self.record_reach(match &sent {
            Ok(_) => Some(true),
            // A client whose upload stalled says nothing about the central.
            Err(e) if stackfed_http::RequestBodyTimeout::caused(e) => None,
            Err(e) if e.is_temporary() => Some(false),
            Err(_) => None,
        });
        sent.map_err(upstream_error)
    }

    fn record_reach(&self, reachable: Option<bool>) {
        if let Some(up) = reachable {
            let before = self.reach.swap(if up { 1 } else { 2 }, Ordering::Relaxed);
            if before != 0 && (before == 1) != up {
                tracing::warn!(central = %self.base, reachable = up, "central reachability changed");
            }
            metrics::gauge!("stackfed_glance_central_up").set(if up { 1.0 } else { 0.0 });
        }
    }

    /// Whether the central answered the last exchange with it (a request of any
    /// client, or the background probe), without asking it now; `None` before the
    /// first exchange.
    pub fn last_reachable(&self) -> Option<bool> {
        match self.reach.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Sends a body-less `GET` and reads the (small) answer whole.
    pub async fn fetch(
        &self,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamError> {
        let resp = self
            .send(Method::GET, path_and_query, headers, empty())
            .await?;
        let (parts, body) = resp.into_parts();
        let bytes = self
            .http
            .read_body(body, MAX_DOC)
            .await
            .map_err(upstream_error)?;
        Ok((parts.status, parts.headers, bytes))
    }

    /// A document the central serves (a schema): its body when the central answers
    /// with it, else why not.
    pub async fn document(&self, path: &str, headers: &HeaderMap) -> Result<Bytes, UpstreamError> {
        let (status, h, body) = self.fetch(path, headers).await?;
        if status.is_success() || status == StatusCode::MULTIPLE_CHOICES {
            Ok(body)
        } else {
            Err(refusal(status, &h, body))
        }
    }

    /// Whether the central answers at all.
    pub async fn reachable(&self) -> bool {
        matches!(self.fetch("/versions", &HeaderMap::new()).await, Ok((s, _, _)) if s.is_success() || s.is_redirection())
    }

    /// The projects that accepted a shared image, as far as this identity may see
    /// (its owner sees all members; a member sees itself). Empty when unknown.
    async fn accepted_members(&self, id: &ImageId, headers: &HeaderMap) -> Vec<String> {
        let Ok((StatusCode::OK, _, body)) = self
            .fetch(&format!("/v2/images/{id}/members"), headers)
            .await
        else {
            return Vec::new();
        };
        let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
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
                let mut record = from_json(json_doc(&body, "the image")?)
                    .map_err(|e| UpstreamError::invalid("the image cannot be read", e))?;
                if record.visibility == image_cache_core::Visibility::Shared {
                    record.members = self.accepted_members(id, &h).await;
                }
                Ok(Some(record))
            }
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(refusal(s, &headers, body)),
        }
    }

    async fn list(&self, query: &ListQuery, ctx: &RequestContext) -> Result<Page, UpstreamError> {
        let mut h = identity(ctx);
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let path = format!("/v2/images?{}", to_query_string(query));
        let (status, headers, body) = self.fetch(&path, &h).await?;
        if status != StatusCode::OK {
            return Err(refusal(status, &headers, body));
        }
        let doc = json_doc(&body, "the listing")?;
        Ok(Page {
            images: images_of(&doc),
            more: doc.get("next").is_some_and(Value::is_string),
        })
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
            status @ (StatusCode::OK | StatusCode::PARTIAL_CONTENT) => {
                let total = resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                // A 206 says where its bytes start; a 200 is the whole image, also when a
                // range was asked for (a central may ignore `Range`).
                let first = if status == StatusCode::PARTIAL_CONTENT {
                    let value = resp
                        .headers()
                        .get(header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    match stackfed_http::range::parse_content_range(value) {
                        Some((first, _)) => first,
                        None => {
                            return Err(UpstreamError::Invalid {
                                reason: format!("a 206 with Content-Range {value:?}"),
                                source: None,
                            })
                        }
                    }
                } else {
                    0
                };
                // A body that stays silent past the idle timeout ends with `TimedOut`
                // (a stalled central), other breaks with the transport's error.
                let idle = self.http.timeouts().idle;
                let stream =
                    BodyStream::new(resp.into_body()).filter_map(move |frame| async move {
                        match frame {
                            Ok(f) => f.into_data().ok().map(Ok),
                            Err(e) => {
                                let e = ClientError::from_body(e, idle);
                                let kind = if e.is_timeout() {
                                    std::io::ErrorKind::TimedOut
                                } else {
                                    std::io::ErrorKind::Other
                                };
                                Some(Err(std::io::Error::new(kind, e)))
                            }
                        }
                    });
                Ok(Some(UpstreamData {
                    total_size: if status == StatusCode::OK {
                        total
                    } else {
                        None
                    },
                    first,
                    stream: Box::pin(stream),
                }))
            }
            StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => Ok(None),
            s => {
                let (parts, body) = resp.into_parts();
                let body = self
                    .http
                    .read_body(body, MAX_REFUSAL)
                    .await
                    .unwrap_or_default();
                Err(refusal(s, &parts.headers, body))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_cache_core::ErrorSource;
    use std::error::Error as _;

    #[test]
    fn client_errors_become_upstream_errors_that_keep_them() {
        let timeout = upstream_error(ClientError::Timeout {
            phase: stackfed_http::client::Phase::Response,
            after: std::time::Duration::from_secs(30),
        });
        assert!(
            timeout.is_timeout() && timeout.is_temporary(),
            "{timeout:?}"
        );
        let cause = timeout.source().unwrap();
        assert!(cause.is::<ClientError>(), "{cause:?}");
        let refused = upstream_error(ClientError::Connect {
            source: "connection refused".into(),
        });
        assert!(matches!(refused, UpstreamError::Unreachable { .. }));
        assert_eq!(refused.origin(), ErrorSource::Upstream);
        let ours = upstream_error(ClientError::Invalid("bad URL".into()));
        assert_eq!(ours.origin(), ErrorSource::Internal);
        assert!(!ours.is_temporary());
        assert!(matches!(
            refusal(StatusCode::BAD_GATEWAY, &HeaderMap::new(), Bytes::new()),
            UpstreamError::Failing { status: 502 }
        ));
        assert!(refusal(StatusCode::CONFLICT, &HeaderMap::new(), Bytes::new()).is_refusal());
    }
}
