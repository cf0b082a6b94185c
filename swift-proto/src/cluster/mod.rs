//! The one typed client per Swift cluster (OpenDAL's `services/swift/src/core.rs` is the
//! model). [`SwiftCluster`] is the only code that formats a cluster's URLs, attaches a
//! cluster token, filters hop-by-hop headers, renews a token once on 401 for a request
//! that can be replayed, and turns transport failures into [`ClusterError`]s. Timeouts
//! (connect, response head, idle body reads) and header limits come from the shared
//! [`HttpClient`]. The service, the Swift-backed attribute store and the probes all talk
//! to clusters through it.

mod error;
pub mod health;
pub mod keystone;
mod token;
pub mod usage;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use federation_core::{AccountName, ClusterId, ClusterSpec, ContainerName};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use stackfed_http::headers::{is_hop_by_hop, strip_hop_by_hop};
use stackfed_http::{empty, full, Body, HttpClient};
use url::Url;

pub use error::{ClusterError, Origin};
pub use keystone::{KeystoneAuth, KeystoneConfig, Secret};
pub use token::{ClusterToken, Credentials, Session};
pub use usage::Usage;

use crate::path::push_encoded_segment;

/// The largest listing, auth or info body read whole from a cluster.
pub const MAX_COLLECTED_BODY: usize = 64 * 1024 * 1024;

/// Who a request acts as, towards a cluster.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// No token (public reads, temp URLs, health checks).
    Anonymous,
    /// A token passed through unchanged (clusters sharing one Keystone); never renewed.
    Token(&'a HeaderValue),
    /// A session's token on this cluster, obtained and renewed as needed.
    Session(&'a Session),
    /// A user's session plus a service's (Swift's service tokens: the request also
    /// carries the service session's token as `X-Service-Token`).
    WithService {
        /// The user's session (`X-Auth-Token`).
        user: &'a Session,
        /// The service's session (`X-Service-Token`).
        service: &'a Session,
    },
}

/// A request body: bytes in hand can be sent again (after a token renewal), a stream
/// cannot.
#[derive(Debug)]
pub enum Payload {
    /// No body.
    Empty,
    /// A body in memory (replayable).
    Bytes(Bytes),
    /// A streamed body (sent once).
    Stream(Body),
}

impl Payload {
    fn replay(&self) -> Option<Body> {
        match self {
            Self::Empty => Some(empty()),
            Self::Bytes(b) => Some(full(b.clone())),
            Self::Stream(b) if stackfed_http::body::is_empty(b) => Some(empty()),
            Self::Stream(_) => None,
        }
    }

    fn into_body(self) -> Body {
        match self {
            Self::Empty => empty(),
            Self::Bytes(b) => full(b),
            Self::Stream(b) => b,
        }
    }
}

/// A request for one cluster: a method, a path (with its query) under the cluster's
/// endpoint, end-to-end headers and a body.
#[derive(Debug)]
pub struct ClusterRequest {
    /// The method.
    pub method: Method,
    /// `/v1/AUTH_test/c/o?query`, already percent-encoded.
    pub path_and_query: String,
    /// Headers to send. Hop-by-hop headers, `Host` and any token are dropped: the
    /// cluster client sets those itself.
    pub headers: HeaderMap,
    /// The body.
    pub body: Payload,
}

impl ClusterRequest {
    /// A bodiless request without headers.
    pub fn new(method: Method, path_and_query: impl Into<String>) -> Self {
        Self {
            method,
            path_and_query: path_and_query.into(),
            headers: HeaderMap::new(),
            body: Payload::Empty,
        }
    }

    /// With these headers.
    pub fn headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// With this body.
    pub fn body(mut self, body: Payload) -> Self {
        self.body = body;
        self
    }
}

/// The path of an account, container or object, percent-encoded (`/v1/a/c/o`).
pub fn swift_path(account: &AccountName, container: Option<&str>, object: Option<&str>) -> String {
    // One allocation, sized for names without escapes.
    let len =
        6 + account.as_str().len() + container.map_or(0, str::len) + object.map_or(0, str::len);
    let mut p = String::with_capacity(len);
    p.push_str("/v1/");
    push_encoded_segment(&mut p, account.as_str(), false);
    if let Some(c) = container {
        p.push('/');
        push_encoded_segment(&mut p, c, false);
        if let Some(o) = object {
            p.push('/');
            push_encoded_segment(&mut p, o, true);
        }
    }
    p
}

/// See the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SwiftCluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: ClusterId,
    /// The proxy endpoint, without a trailing slash.
    base: String,
    /// Storage nodes answering `recon`, without trailing slashes.
    recon: Vec<String>,
    http: HttpClient,
}

impl SwiftCluster {
    /// A client for the cluster whose proxy answers at `endpoint`; `recon` lists storage
    /// nodes running Swift's recon middleware (for usage), possibly none.
    pub fn new(id: ClusterId, endpoint: &Url, recon: &[Url], http: HttpClient) -> Self {
        let trim = |u: &Url| u.as_str().trim_end_matches('/').to_owned();
        Self {
            inner: Arc::new(Inner {
                id,
                base: trim(endpoint),
                recon: recon.iter().map(trim).collect(),
                http,
            }),
        }
    }

    /// A client for a configured cluster.
    pub fn from_spec(spec: &ClusterSpec, recon: &[Url], http: HttpClient) -> Self {
        Self::new(spec.id.clone(), &spec.endpoint, recon, http)
    }

    /// The cluster's name.
    pub fn id(&self) -> &ClusterId {
        &self.inner.id
    }

    /// The HTTP client (its timeouts).
    pub fn http(&self) -> &HttpClient {
        &self.inner.http
    }

    fn invalid(&self, message: impl Into<String>) -> ClusterError {
        ClusterError::Invalid {
            cluster: self.inner.id.clone(),
            message: message.into(),
        }
    }

    fn bad_answer(&self, message: impl Into<String>) -> ClusterError {
        ClusterError::BadAnswer {
            cluster: self.inner.id.clone(),
            message: message.into(),
        }
    }

    /// Every transport failure passes here: counted in
    /// `stackfed_swift_backend_errors_total{cluster, kind}` (`timeout`, `connect` or
    /// `transport`) when the cluster is to blame. One that the client's own request body
    /// caused (silent past `client_timeout` while it was streamed to the cluster) is the
    /// client's: counted in `stackfed_swift_client_body_timeouts_total` instead (the
    /// client gets 408), never against the cluster.
    fn transport(&self, source: stackfed_http::ClientError) -> ClusterError {
        let error = ClusterError::Transport {
            cluster: self.inner.id.clone(),
            source: Arc::new(source),
        };
        let kind = match &error {
            e if e.is_client_body_timeout() => None,
            e if e.is_timeout() => Some("timeout"),
            ClusterError::Transport { source, .. }
                if matches!(**source, stackfed_http::ClientError::Connect { .. }) =>
            {
                Some("connect")
            }
            _ => Some("transport"),
        };
        match kind {
            Some(kind) => metrics::counter!("stackfed_swift_backend_errors_total",
                "cluster" => self.inner.id.to_string(), "kind" => kind)
            .increment(1),
            None => metrics::counter!("stackfed_swift_client_body_timeouts_total").increment(1),
        }
        error
    }

    /// The only place a cluster URL is formatted.
    fn url(base: &str, path_and_query: &str) -> Result<Uri, String> {
        let mut s = String::with_capacity(base.len() + path_and_query.len());
        s.push_str(base);
        s.push_str(path_and_query);
        // From the `String` itself: its buffer becomes the URI's bytes (`parse` on a
        // `&str` copied them into another allocation).
        Uri::try_from(s).map_err(|_| format!("not a valid path: {path_and_query}"))
    }

    /// The token to send; `refused`: the one the cluster answered 401 to.
    async fn token(
        &self,
        auth: Auth<'_>,
        refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, ClusterError> {
        Ok(match auth {
            Auth::Anonymous => None,
            Auth::Token(t) => Some(t.clone()),
            Auth::Session(s) | Auth::WithService { user: s, .. } => {
                Some(s.token_for(self, refused).await?.token)
            }
        })
    }

    /// The service token to send, for requests that carry one.
    async fn service_token(
        &self,
        auth: Auth<'_>,
        refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, ClusterError> {
        Ok(match auth {
            Auth::WithService { service, .. } => {
                Some(service.token_for(self, refused).await?.token)
            }
            _ => None,
        })
    }

    /// One exchange: the request as given, with `token`, the answer's hop-by-hop
    /// headers removed.
    async fn exchange(
        &self,
        method: &Method,
        uri: Uri,
        headers: &HeaderMap,
        body: Body,
        (token, service): (Option<HeaderValue>, Option<HeaderValue>),
    ) -> Result<Response<Body>, ClusterError> {
        let mut req = Request::new(body);
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.reserve(headers.len() + 1);
        // Headers the client's `Connection` names are for the hop to the proxy only
        // (looked up once, not for each header, when there is no `Connection`).
        let connection = headers.contains_key(header::CONNECTION);
        let named = || {
            headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
        };
        for (name, value) in headers {
            if is_hop_by_hop(name)
                || name == header::HOST
                || name == "x-auth-token"
                || name == "x-storage-token"
                || (service.is_some() && name == "x-service-token")
                || (connection && named().any(|n| n.trim().eq_ignore_ascii_case(name.as_str())))
            {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if let Some(t) = token {
            h.insert(HeaderName::from_static("x-auth-token"), t);
        }
        if let Some(t) = service {
            h.insert(HeaderName::from_static("x-service-token"), t);
        }
        let mut resp = self
            .inner
            .http
            .send(req)
            .await
            .map_err(|e| self.transport(e))?;
        strip_hop_by_hop(resp.headers_mut());
        if let Some(host) = headers.get(header::HOST) {
            self.relocate(resp.headers_mut(), host);
        }
        // The proxy answers in its own HTTP version, whatever the cluster spoke.
        *resp.version_mut() = http::Version::HTTP_11;
        Ok(resp)
    }

    /// A `Location` the cluster built from the host it was called at (staticweb's
    /// redirects) points at the proxy the client called instead (`host`, the client's
    /// `Host`; the proxy speaks plain HTTP).
    fn relocate(&self, answer: &mut HeaderMap, host: &HeaderValue) {
        let base = self.inner.base.as_str();
        let moved = answer
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix(base))
            .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            .zip(host.to_str().ok())
            .and_then(|(rest, host)| HeaderValue::from_str(&format!("http://{host}{rest}")).ok());
        if let Some(v) = moved {
            answer.insert(header::LOCATION, v);
        }
    }

    /// Sends a request and streams the answer back. When the cluster refuses a
    /// session's token (401) and the request can be replayed, the token is renewed and
    /// the request sent once more.
    pub async fn send(
        &self,
        req: ClusterRequest,
        auth: Auth<'_>,
    ) -> Result<Response<Body>, ClusterError> {
        let ClusterRequest {
            method,
            path_and_query,
            headers,
            body,
        } = req;
        let uri = Self::url(&self.inner.base, &path_and_query).map_err(|m| self.invalid(m))?;
        let replay = match auth {
            Auth::Session(_) | Auth::WithService { .. } => body.replay(),
            _ => None,
        };
        let token = self.token(auth, None).await?;
        let service = self.service_token(auth, None).await?;
        let resp = self
            .exchange(
                &method,
                uri.clone(),
                &headers,
                body.into_body(),
                (token.clone(), service.clone()),
            )
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        match (replay, auth) {
            (Some(again), _) => {
                tracing::debug!(cluster = %self.id(), "token refused; renewing it once");
                let token = self.token(auth, token.as_ref()).await?;
                let service = self.service_token(auth, service.as_ref()).await?;
                self.exchange(&method, uri, &headers, again, (token, service))
                    .await
            }
            (None, Auth::Session(session) | Auth::WithService { user: session, .. }) => {
                // The body is spent: pass the 401 on, but let the next request log in
                // again instead of meeting the same refusal.
                session.forget(self.id(), token.as_ref());
                Ok(resp)
            }
            _ => Ok(resp),
        }
    }

    /// [`send`](Self::send), reading the answer whole (at most `limit` bytes): for
    /// listings, `/info` and records, never for objects.
    pub async fn collect(
        &self,
        req: ClusterRequest,
        auth: Auth<'_>,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), ClusterError> {
        let (parts, body) = self.send(req, auth).await?.into_parts();
        let bytes = self
            .inner
            .http
            .read_body(body, limit)
            .await
            .map_err(|e| self.transport(e))?;
        Ok((parts, bytes))
    }

    /// Logs in on the cluster's tempauth (`GET /auth/v1.0`).
    pub async fn login(&self, credentials: &Credentials) -> Result<ClusterToken, ClusterError> {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-auth-user", &credentials.user),
            ("x-auth-key", &credentials.key),
        ] {
            let v = HeaderValue::from_str(value)
                .map_err(|_| self.invalid("credentials are not valid header values"))?;
            headers.insert(name, v);
        }
        // Straight to the exchange: a login never needs a token of its own.
        let uri = Self::url(&self.inner.base, "/auth/v1.0").map_err(|m| self.invalid(m))?;
        let resp = self
            .exchange(&Method::GET, uri, &headers, empty(), (None, None))
            .await?;
        let (parts, body) = resp.into_parts();
        // Drain the (small) body so the connection goes back to the pool.
        let _ = self.inner.http.read_body(body, 64 * 1024).await;
        if parts.status == StatusCode::UNAUTHORIZED || parts.status == StatusCode::FORBIDDEN {
            return Err(ClusterError::Refused {
                cluster: self.id().clone(),
            });
        }
        if !parts.status.is_success() {
            return Err(ClusterError::AuthFailed {
                cluster: self.id().clone(),
                status: parts.status,
            });
        }
        let token = parts
            .headers
            .get("x-auth-token")
            .cloned()
            .ok_or_else(|| self.bad_answer("no token"))?;
        let storage_path = parts
            .headers
            .get("x-storage-url")
            .and_then(|v| v.to_str().ok())
            .and_then(|u| Url::parse(u).ok())
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .ok_or_else(|| self.bad_answer("no usable storage URL"))?;
        let lifetime = parts
            .headers
            .get("x-auth-token-expires")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(Duration::from_secs(3600), Duration::from_secs_f64);
        Ok(ClusterToken {
            token,
            storage_path,
            expires: Instant::now() + lifetime,
        })
    }

    /// `HEAD` of a container: whether the cluster holds it. 2xx: yes; 404, and 401 or
    /// 403 (the caller may not see it there): no; any other answer is an error, since
    /// the cluster could not say.
    pub async fn holds_container(
        &self,
        account: &AccountName,
        container: &ContainerName,
        auth: Auth<'_>,
    ) -> Result<bool, ClusterError> {
        let path = swift_path(account, Some(container.as_str()), None);
        let resp = self
            .send(ClusterRequest::new(Method::HEAD, path), auth)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND
            | StatusCode::GONE
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN => Ok(false),
            s => Err(self.bad_answer(format!("container HEAD answered {s}"))),
        }
    }

    /// `PUT` of a container with the given headers (metadata, storage policy, ACLs).
    pub async fn put_container(
        &self,
        account: &AccountName,
        container: &ContainerName,
        headers: HeaderMap,
        body: Body,
        auth: Auth<'_>,
    ) -> Result<Response<Body>, ClusterError> {
        let path = swift_path(account, Some(container.as_str()), None);
        let req = ClusterRequest::new(Method::PUT, path)
            .headers(headers)
            .body(Payload::Stream(body));
        self.send(req, auth).await
    }

    /// One page of an account listing: `query` is the backend query string (JSON
    /// format, marker, limit…), `headers` the end-to-end headers to pass on. Read whole.
    pub async fn account_page(
        &self,
        account: &AccountName,
        query: &str,
        headers: HeaderMap,
        auth: Auth<'_>,
    ) -> Result<(http::response::Parts, Bytes), ClusterError> {
        let mut path = swift_path(account, None, None);
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        let req = ClusterRequest::new(Method::GET, path).headers(headers);
        self.collect(req, auth, MAX_COLLECTED_BODY).await
    }

    /// `GET` of an object, streamed.
    pub async fn get_object(
        &self,
        account: &AccountName,
        container: &ContainerName,
        object: &str,
        auth: Auth<'_>,
    ) -> Result<Response<Body>, ClusterError> {
        let path = swift_path(account, Some(container.as_str()), Some(object));
        self.send(ClusterRequest::new(Method::GET, path), auth)
            .await
    }

    /// `PUT` of an object from a stream.
    pub async fn put_object(
        &self,
        account: &AccountName,
        container: &ContainerName,
        object: &str,
        headers: HeaderMap,
        body: Body,
        auth: Auth<'_>,
    ) -> Result<Response<Body>, ClusterError> {
        let path = swift_path(account, Some(container.as_str()), Some(object));
        let req = ClusterRequest::new(Method::PUT, path)
            .headers(headers)
            .body(Payload::Stream(body));
        self.send(req, auth).await
    }

    /// The cluster's `/info` document.
    pub async fn info(&self) -> Result<serde_json::Value, ClusterError> {
        let req = ClusterRequest::new(Method::GET, "/info");
        let (parts, body) = self.collect(req, Auth::Anonymous, 1 << 20).await?;
        if !parts.status.is_success() {
            return Err(self.bad_answer(format!("/info answered {}", parts.status)));
        }
        serde_json::from_slice(&body).map_err(|e| self.bad_answer(format!("/info: {e}")))
    }

    /// Whether `/healthcheck` answers 200 within `within`.
    pub async fn healthcheck(&self, within: Duration) -> bool {
        let req = ClusterRequest::new(Method::GET, "/healthcheck");
        matches!(
            tokio::time::timeout(within, self.send(req, Auth::Anonymous)).await,
            Ok(Ok(resp)) if resp.status() == StatusCode::OK
        )
    }

    /// Whether the cluster has recon nodes to measure usage with.
    pub fn has_recon(&self) -> bool {
        !self.inner.recon.is_empty()
    }

    /// The sum of `/recon/diskusage` over the cluster's storage nodes; an error names
    /// the first node that did not answer usefully.
    pub async fn diskusage(&self) -> Result<Usage, ClusterError> {
        let answers = futures::future::join_all(self.inner.recon.iter().map(|node| async move {
            let uri = Self::url(node, "/recon/diskusage").map_err(|m| self.invalid(m))?;
            let resp = self
                .exchange(&Method::GET, uri, &HeaderMap::new(), empty(), (None, None))
                .await?;
            let status = resp.status();
            let body = self
                .inner
                .http
                .read_body(resp.into_body(), 1 << 20)
                .await
                .map_err(|e| self.transport(e))?;
            if !status.is_success() {
                return Err(self.bad_answer(format!("{node} answered {status}")));
            }
            Ok(body)
        }))
        .await;
        let mut usage = Usage::default();
        for (node, answer) in self.inner.recon.iter().zip(answers) {
            usage
                .add_diskusage(&answer?)
                .map_err(|e| self.bad_answer(format!("{node}/recon/diskusage: {e}")))?;
        }
        Ok(usage)
    }
}

/// The clusters of a federation, by name.
#[derive(Debug, Clone, Default)]
pub struct Clusters {
    by_id: Arc<BTreeMap<ClusterId, SwiftCluster>>,
}

impl Clusters {
    /// A set of clusters.
    pub fn new(clusters: impl IntoIterator<Item = SwiftCluster>) -> Self {
        Self {
            by_id: Arc::new(clusters.into_iter().map(|c| (c.id().clone(), c)).collect()),
        }
    }

    /// One cluster.
    pub fn get(&self, id: &ClusterId) -> Option<&SwiftCluster> {
        self.by_id.get(id)
    }

    /// All of them, by name.
    pub fn iter(&self) -> impl Iterator<Item = &SwiftCluster> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackfed_http::Timeouts;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that answers one request with `answer` and returns what it received.
    async fn peer(answer: &'static [u8]) -> (Url, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(answer).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (url, task)
    }

    #[tokio::test]
    async fn requests_lose_hop_headers_and_answers_speak_http_1_1() {
        let (url, seen) = peer(
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close, x-hop\r\nx-hop: 1\r\nX-Object-Meta-Color: blue\r\n\r\nok",
        )
        .await;
        let cluster = SwiftCluster::new(
            ClusterId::new("c").unwrap(),
            &url,
            &[],
            HttpClient::new(Timeouts::default()),
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("x-private"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("x-auth-token", HeaderValue::from_static("client-token"));
        headers.insert("x-object-meta-kept", HeaderValue::from_static("1"));
        let token = HeaderValue::from_static("cluster-token");
        let req = ClusterRequest::new(Method::GET, "/v1/AUTH_t/c/o").headers(headers);
        let resp = cluster.send(req, Auth::Token(&token)).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_11);
        assert!(
            resp.headers().get("x-hop").is_none(),
            "{:?}",
            resp.headers()
        );
        assert!(resp.headers().get(header::CONNECTION).is_none());
        assert_eq!(resp.headers()["x-object-meta-color"], "blue");
        let seen = seen.await.unwrap().to_ascii_lowercase();
        assert!(seen.starts_with("get /v1/auth_t/c/o http/1.1"), "{seen}");
        assert!(seen.contains("x-auth-token: cluster-token"), "{seen}");
        assert!(!seen.contains("client-token"), "{seen}");
        assert!(!seen.contains("x-private"), "{seen}");
        assert!(seen.contains("x-object-meta-kept: 1"), "{seen}");
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_a_temporary_upstream_fault() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
        drop(l);
        let cluster = SwiftCluster::new(
            ClusterId::new("gone").unwrap(),
            &url,
            &[],
            HttpClient::new(Timeouts::default()),
        );
        let err = cluster
            .send(
                ClusterRequest::new(Method::HEAD, "/v1/AUTH_t"),
                Auth::Anonymous,
            )
            .await
            .unwrap_err();
        assert_eq!(err.origin(), Origin::Upstream);
        assert!(err.is_temporary() && !err.is_timeout(), "{err:?}");
        assert_eq!(err.cluster().as_str(), "gone");
        let answer = crate::error::SwiftError::from(err);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_service_token_becomes_the_service_sessions_token_on_the_cluster() {
        let (url, seen) = peer(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let cluster = SwiftCluster::new(
            ClusterId::new("c").unwrap(),
            &url,
            &[],
            HttpClient::new(Timeouts::default()),
        );
        let session = |token: &'static str| {
            let t = ClusterToken {
                token: HeaderValue::from_static(token),
                storage_path: "/v1/AUTH_t".into(),
                expires: Instant::now() + Duration::from_secs(3600),
            };
            Session::with_tokens(
                Credentials {
                    user: "t:u".into(),
                    key: "k".into(),
                },
                [(ClusterId::new("c").unwrap(), t)].into(),
            )
        };
        let (user, service) = (session("user-on-c"), session("service-on-c"));
        let mut headers = HeaderMap::new();
        headers.insert("x-service-token", HeaderValue::from_static("AUTH_tkproxy"));
        let req = ClusterRequest::new(Method::HEAD, "/v1/SERVICE_t").headers(headers);
        let auth = Auth::WithService {
            user: &user,
            service: &service,
        };
        let resp = cluster.send(req, auth).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let seen = seen.await.unwrap().to_ascii_lowercase();
        assert!(seen.contains("x-auth-token: user-on-c"), "{seen}");
        assert!(seen.contains("x-service-token: service-on-c"), "{seen}");
        assert!(!seen.contains("auth_tkproxy"), "{seen}");
    }
}
