//! The client for backend clusters: pooled keep-alive HTTP/1.1, bodies streamed both
//! ways, timeouts, and one retry where it is safe.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::body::{empty, Body};

/// Client timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish a TCP connection.
    pub connect: Duration,
    /// From sending the request head to receiving the response head (bodies stream
    /// without a deadline).
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            response: Duration::from_secs(60),
        }
    }
}

/// Why a backend request failed. Each variant maps to the answer a proxy gives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend could not be reached or closed the connection (answer 503).
    #[error("backend unreachable: {0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// The backend did not answer in time (answer 504).
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// A body that had to be read whole was larger than allowed, or broke off.
    #[error("backend body unreadable: {0}")]
    Body(String),
}

/// See the module docs. Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct BackendClient {
    http: Client<HttpConnector, Body>,
    timeouts: Timeouts,
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT
    )
}

impl BackendClient {
    /// A client with its own pool.
    pub fn new(timeouts: Timeouts) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Self { http, timeouts }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sends a request whose body streams from the caller; the response body streams
    /// back. A request with no body and an idempotent method is retried once if the
    /// connection failed before any answer.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, BackendError> {
        let bodiless = hyper::body::Body::size_hint(req.body()).exact() == Some(0);
        let retry = (bodiless && is_idempotent(req.method())).then(|| {
            let mut again = Request::new(empty());
            *again.method_mut() = req.method().clone();
            *again.uri_mut() = req.uri().clone();
            *again.headers_mut() = req.headers().clone();
            again
        });
        match self.once(req).await {
            Err(BackendError::Unreachable(e)) if retry.is_some() && e.is_connect() => {
                tracing::debug!(error = %e, "retrying an idempotent request once");
                match retry {
                    Some(r) => self.once(r).await,
                    None => Err(BackendError::Unreachable(e)),
                }
            }
            other => other,
        }
    }

    async fn once(&self, req: Request<Body>) -> Result<Response<Incoming>, BackendError> {
        match tokio::time::timeout(self.timeouts.response, self.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(BackendError::Unreachable(e)),
            Err(_) => Err(BackendError::Timeout(self.timeouts.response)),
        }
    }

    /// Sends a request and reads a small response body whole (at most `max_body` bytes):
    /// for listings, `/info` and authentication, never for objects.
    pub async fn send_collect(
        &self,
        req: Request<Body>,
        max_body: usize,
    ) -> Result<(http::response::Parts, Bytes), BackendError> {
        let resp = self.send(req).await?;
        let (parts, body) = resp.into_parts();
        let deadline = self.timeouts.response;
        let bytes = tokio::time::timeout(deadline, Limited::new(body, max_body).collect())
            .await
            .map_err(|_| BackendError::Timeout(deadline))?
            .map_err(|e| BackendError::Body(e.to_string()))?
            .to_bytes();
        Ok((parts, bytes))
    }
}
