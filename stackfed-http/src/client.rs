//! The pooled HTTP/1.1 client both protocol crates use to reach their peers (Swift
//! clusters, the central Glance): keep-alive, bodies streamed both ways, a timeout for
//! each phase (connect, response head, idle body reads), one retry where it is safe, and
//! typed errors that say whether a retry may help.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tower_http::timeout::TimeoutBody;

use crate::body::{boxed, empty, is_empty, Body, BoxError};

/// The most headers a peer's answer may carry (hyper's default, 100, is less than a
/// Swift account with its 90 allowed metadata items sends).
pub const MAX_RESPONSE_HEADERS: usize = 1024;

/// The headers a replayable request's answer is first parsed with: hyper's own default,
/// for which its parser needs neither a heap allocation nor to fill
/// [`MAX_RESPONSE_HEADERS`] slots on every answer (about 10,000 instructions a request).
/// An answer with more is asked for again with the wide limit (see [`HttpClient::send`]).
pub const COMMON_RESPONSE_HEADERS: usize = 100;

/// Client timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish a TCP connection.
    pub connect: Duration,
    /// The longest wait for the response head after the request's head, or after the
    /// last piece of its body was sent (an upload that keeps flowing is not cut).
    pub response: Duration,
    /// The longest wait for the next piece of a response body (a stalled peer ends the
    /// body with [`ClientError::Timeout`] instead of holding the client forever).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// Which phase of an exchange timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for the response head.
    Response,
    /// Waiting for the next piece of the response body.
    Body,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Response => "the response head",
            Self::Body => "the response body",
        })
    }
}

/// An error with its causes ("a: b: c"): hyper's "client error (Connect)" says nothing
/// without what lies beneath it (connection refused, a certificate nobody trusts).
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

/// Why an exchange with a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection could be made: nothing reached the peer, a retry is safe.
    #[error("could not connect: {}", with_causes(&**.source))]
    Connect {
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The connection failed after the request was (maybe partly) sent.
    #[error("connection failed: {}", with_causes(&**.source))]
    Transport {
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The peer did not answer in time.
    #[error("no answer within {after:?} while waiting for {phase}")]
    Timeout {
        /// What was awaited.
        phase: Phase,
        /// The limit that passed.
        after: Duration,
    },
    /// A body read whole was larger than allowed.
    #[error("a body was larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A body broke off while it was read.
    #[error("a body broke off: {}", with_causes(&**.source))]
    Body {
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The request could not be built (a bad URL or header from configuration or input).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether the same request may succeed if tried again later (the peer was
    /// unreachable or slow, not refused).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Transport { .. }
                | Self::Timeout { .. }
                | Self::Body { .. }
        )
    }

    /// Whether it is a timeout (a gateway answers 504 rather than 503).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// What an error of a response body from [`HttpClient::send`] means: a
    /// [`Timeout`](Self::Timeout) when the peer stayed silent longer than `idle`
    /// (the client's [`Timeouts::idle`]), else [`Body`](Self::Body).
    pub fn from_body(e: BoxError, idle: Duration) -> Self {
        if e.is::<tower_http::timeout::TimeoutError>() {
            Self::Timeout {
                phase: Phase::Body,
                after: idle,
            }
        } else {
            Self::Body { source: e }
        }
    }
}

/// How long a request with `Expect: 100-continue` waits for the peer's `100 Continue`
/// before its body is sent anyway (RFC 9110 §10.1.1: a client need not wait forever).
pub const CONTINUE_WAIT: Duration = Duration::from_secs(2);

/// A request that says `Expect: 100-continue` sends its body only once the peer said
/// `100 Continue` (or after [`CONTINUE_WAIT`]): until then the body is not even read,
/// so a peer that refuses the request on its head (404, 401, 413…) answers before a
/// byte is read from the body's source, which for a proxy means that the client's own
/// `100 Continue` is not sent either.
fn gate_on_continue(mut req: Request<Body>) -> Request<Body> {
    let expects = req
        .headers()
        .get_all(http::header::EXPECT)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects || is_empty(req.body()) {
        return req;
    }
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = go.clone();
    hyper::ext::on_informational(&mut req, move |res| {
        if res.status() == http::StatusCode::CONTINUE {
            signal.notify_one();
        }
    });
    req.map(|body| {
        use futures::StreamExt;
        let wait = futures::stream::once(async move {
            let _ = tokio::time::timeout(CONTINUE_WAIT, go.notified()).await;
        })
        .filter_map(|()| async { None });
        let frames = http_body_util::BodyStream::new(body).filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok),
                Err(e) => Some(Err(e)),
            }
        });
        crate::body::from_stream(wait.chain(frames))
    })
}

/// When a request's body last gave the connection a piece to send (its start, then
/// each frame taken): the wait for the answer's head counts from there, so an upload
/// that keeps flowing is never cut by [`Timeouts::response`] (as Swift's `node_timeout`
/// bounds each wait, not the whole transfer). `None` for a request without a body.
type LastSent = Option<std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>>;

fn track_sending(req: Request<Body>) -> (Request<Body>, LastSent) {
    if is_empty(req.body()) {
        return (req, None);
    }
    let at = std::sync::Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let mark = at.clone();
    let req = req.map(move |body| {
        boxed(body.map_frame(move |frame| {
            *mark
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = tokio::time::Instant::now();
            frame
        }))
    });
    (req, Some(at))
}

/// `fut` (sending a request, up to the answer's head) within `limit` of the last piece
/// of its body sent (of its start for a bodiless request); `Err` when that passed.
async fn head_within<F: std::future::Future>(
    fut: F,
    limit: Duration,
    sent: LastSent,
) -> Result<F::Output, ()> {
    let Some(at) = sent else {
        return tokio::time::timeout(limit, fut).await.map_err(|_| ());
    };
    let last = || *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = tokio::time::sleep_until(last() + limit) => {
                if tokio::time::Instant::now() >= last() + limit {
                    return Err(());
                }
            }
        }
    }
}

/// A CA bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read or holds no PEM certificate.
    #[error("CA file {path}: {problem}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The roots an `https://` peer's certificate must chain to: the system's
/// (rustls-native-certs) and, when given, every certificate of a PEM file.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, "system CA certificates loaded");
    if let Some(path) = ca_file {
        let err = |problem: String| TlsError::CaFile {
            path: path.to_owned(),
            problem,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no PEM certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// See the module docs. Cheap to clone: clones share the connection pool. Speaks
/// `http://` and `https://` (rustls; the system's roots plus an optional CA bundle,
/// see [`with_ca_file`](Self::with_ca_file)).
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// Parses answers with up to [`COMMON_RESPONSE_HEADERS`] headers (hyper's default).
    http: Client<Connector, Body>,
    /// Parses answers with up to [`MAX_RESPONSE_HEADERS`]: requests that cannot be sent
    /// again, and replayable ones whose answer had more headers than `http` reads.
    wide: Client<Connector, Body>,
    timeouts: Timeouts,
}

/// How one attempt failed: for good, or on an answer head too large to parse (more
/// headers than the client allowed), which a wider client may read.
enum Failure {
    Error(ClientError),
    ManyHeaders(BoxError),
}

impl Failure {
    fn into_error(self) -> ClientError {
        match self {
            Self::Error(e) => e,
            Self::ManyHeaders(source) => ClientError::Transport { source },
        }
    }
}

/// Whether hyper refused an answer's head as too large (too many headers, or more bytes
/// than its buffer holds).
fn too_many_headers(e: &hyper_util::client::legacy::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_parse_too_large)
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::PUT
    )
}

impl HttpClient {
    /// A client with its own connection pool, trusting the system's CA certificates
    /// for `https://` peers.
    #[allow(clippy::expect_used)]
    pub fn new(timeouts: Timeouts) -> Self {
        // Without a CA file the only fallible step is rustls accepting its own default
        // protocol versions with its own ring provider, which it always does.
        let tls = tls_config(None).expect("rustls accepts its defaults");
        Self::with_tls(timeouts, tls)
    }

    /// A client that also trusts the CA certificates of a PEM file (when given), such
    /// as a private CA that signed the clusters' or the central's certificates.
    pub fn with_ca_file(
        timeouts: Timeouts,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, TlsError> {
        Ok(Self::with_tls(timeouts, tls_config(ca_file)?))
    }

    fn with_tls(timeouts: Timeouts, tls: rustls::ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeouts.connect));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            // The answer's header names keep the peer's spelling (in its extensions),
            // for a server that passes the answer on.
            .http1_preserve_header_case(true);
        // No `http1_max_headers` here: hyper then parses into 100 slots on the stack
        // instead of a configured number of slots it allocates and fills per answer.
        let http = builder.build(connector.clone());
        let wide = builder
            .http1_max_headers(MAX_RESPONSE_HEADERS)
            .build(connector);
        Self {
            http,
            wide,
            timeouts,
        }
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sends a request whose body streams from the caller; the response body streams
    /// back (each wait for more of it bounded by [`Timeouts::idle`]). A bodiless request
    /// with an idempotent method is tried once more if no connection could be made, and
    /// once more with the [`MAX_RESPONSE_HEADERS`] limit if its answer carried more than
    /// [`COMMON_RESPONSE_HEADERS`] headers (other requests are parsed with that limit
    /// from the start).
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Body>, ClientError> {
        let replay = (is_empty(req.body()) && is_idempotent(req.method())).then(|| {
            let mut again = Request::new(empty());
            *again.method_mut() = req.method().clone();
            *again.uri_mut() = req.uri().clone();
            *again.headers_mut() = req.headers().clone();
            again
        });
        let Some(again) = replay else {
            return self
                .once(&self.wide, req)
                .await
                .map_err(Failure::into_error);
        };
        match self.once(&self.http, req).await {
            Err(Failure::Error(ClientError::Connect { source })) => {
                tracing::debug!(error = %source, "retrying an idempotent request once");
                self.once(&self.http, again).await
            }
            Err(Failure::ManyHeaders(source)) => {
                tracing::debug!(error = %source, "asking again for an answer with many headers");
                self.once(&self.wide, again).await
            }
            other => other,
        }
        .map_err(Failure::into_error)
    }

    async fn once(
        &self,
        http: &Client<Connector, Body>,
        req: Request<Body>,
    ) -> Result<Response<Body>, Failure> {
        let req = gate_on_continue(req);
        let (req, sent) = track_sending(req);
        let limit = self.timeouts.response;
        let resp = match head_within(http.request(req), limit, sent).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) if e.is_connect() => {
                return Err(Failure::Error(ClientError::Connect { source: e.into() }))
            }
            Ok(Err(e)) if too_many_headers(&e) => return Err(Failure::ManyHeaders(e.into())),
            Ok(Err(e)) => return Err(Failure::Error(ClientError::Transport { source: e.into() })),
            Err(_) => {
                return Err(Failure::Error(ClientError::Timeout {
                    phase: Phase::Response,
                    after: self.timeouts.response,
                }))
            }
        };
        let idle = self.timeouts.idle;
        Ok(resp.map(|b| boxed(TimeoutBody::new(idle, b))))
    }

    /// Reads a response body whole, at most `limit` bytes: for listings, `/info`,
    /// tokens and image metadata, never for object or image data.
    pub async fn read_body(&self, mut body: Body, limit: usize) -> Result<Bytes, ClientError> {
        // A plain loop rather than `Limited`: bounds on a boxed error type held across
        // an await trip a compiler limitation (rust-lang/rust#102211) in callers.
        let mut out = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::from_body(e, self.timeouts.idle))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(ClientError::TooLarge { limit });
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(out.freeze())
    }

    /// Sends a request and reads the answer whole (see [`read_body`](Self::read_body)).
    pub async fn send_collect(
        &self,
        req: Request<Body>,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), ClientError> {
        let (parts, body) = self.send(req).await?.into_parts();
        Ok((parts, self.read_body(body, limit).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that answers one request with a head and part of a body, then stalls.
    async fn stalling_peer() -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        addr
    }

    /// A peer that reads a request with a body of `len` bytes whole, then answers 201
    /// after `think` (or never, when `None`).
    async fn uploading_peer(len: usize, think: Option<Duration>) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let body_at = loop {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            while seen.len() < body_at + len {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the body ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            let Some(think) = think else {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            };
            tokio::time::sleep(think).await;
            s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        addr
    }

    /// A body of `pieces` pieces of 1 KiB, one every `every`.
    fn slow_body(pieces: usize, every: Duration) -> Body {
        use futures::StreamExt;
        let stream = futures::stream::iter(0..pieces).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024]))
        });
        crate::body::from_stream(stream)
    }

    #[tokio::test]
    async fn an_upload_that_keeps_flowing_outlasts_the_response_timeout() {
        // 12 pieces 50 ms apart: 600 ms of sending, three times the response timeout.
        let addr = uploading_peer(12 * 1024, Some(Duration::from_millis(50))).await;
        let client = HttpClient::new(Timeouts {
            response: Duration::from_millis(200),
            ..Timeouts::default()
        });
        let req = Request::put(format!("http://{addr}/o"))
            .header("content-length", 12 * 1024)
            .body(slow_body(12, Duration::from_millis(50)))
            .unwrap();
        let started = std::time::Instant::now();
        let resp = client.send(req).await.unwrap();
        assert_eq!(resp.status(), 201);
        assert!(started.elapsed() >= Duration::from_millis(600));
    }

    #[tokio::test]
    async fn the_response_timeout_counts_from_the_last_piece_sent() {
        let addr = uploading_peer(4 * 1024, None).await;
        let client = HttpClient::new(Timeouts {
            response: Duration::from_millis(300),
            ..Timeouts::default()
        });
        let req = Request::put(format!("http://{addr}/o"))
            .header("content-length", 4 * 1024)
            .body(slow_body(4, Duration::from_millis(100)))
            .unwrap();
        let started = std::time::Instant::now();
        let err = client.send(req).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                err,
                ClientError::Timeout {
                    phase: Phase::Response,
                    ..
                }
            ),
            "{err:?}"
        );
        // 400 ms of sending, then 300 ms of silence (not 300 ms from the start).
        assert!(took >= Duration::from_millis(650), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn a_stalled_body_is_a_body_timeout() {
        let addr = stalling_peer().await;
        let client = HttpClient::new(Timeouts {
            idle: Duration::from_millis(200),
            ..Timeouts::default()
        });
        let req = Request::get(format!("http://{addr}/"))
            .body(empty())
            .unwrap();
        let err = client.send_collect(req, 1024).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Timeout {
                    phase: Phase::Body,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_temporary() && err.is_timeout());
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let client = HttpClient::new(Timeouts::default());
        let req = Request::put(format!("http://{addr}/"))
            .body(full("x"))
            .unwrap();
        let err = client.send(req).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        // The cause is in the message, not only "client error (Connect)".
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_says_why() {
        // https:// to a server that speaks plain HTTP (as an https auth_url at a plain
        // Keystone, or a certificate nobody trusts): the message names the TLS failure.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = HttpClient::new(Timeouts::default());
        let req = Request::get(format!("https://{addr}/v3/auth/tokens"))
            .body(full(""))
            .unwrap();
        let err = client.send(req).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("corrupt message"), "{text}");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n12345678")
                .await
                .unwrap();
        });
        let client = HttpClient::new(Timeouts::default());
        let req = Request::get(format!("http://{addr}/"))
            .body(empty())
            .unwrap();
        let err = client.send_collect(req, 4).await.unwrap_err();
        assert!(matches!(err, ClientError::TooLarge { limit: 4 }), "{err:?}");
        assert!(!err.is_temporary());
    }

    /// A peer that answers every request (on a connection of its own) with `count`
    /// `X-Meta-<n>` headers, counting the requests it read.
    async fn many_headers_peer(
        count: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            let mut answer = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..count {
                answer.push_str(&format!("X-Meta-{i}: v\r\n"));
            }
            answer.push_str("Content-Length: 2\r\nConnection: close\r\n\r\nok");
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}/"), seen)
    }

    #[tokio::test]
    async fn answers_with_many_headers_are_read_whole() {
        use std::sync::atomic::Ordering::SeqCst;
        let client = HttpClient::new(Timeouts::default());
        // Within hyper's default: one request.
        let (url, seen) = many_headers_peer(COMMON_RESPONSE_HEADERS - 10).await;
        let resp = client
            .send(Request::get(&url).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.headers().len(), COMMON_RESPONSE_HEADERS - 10 + 2);
        assert_eq!(seen.load(SeqCst), 1);
        // More: a replayable request is asked again with the wide limit.
        let (url, seen) = many_headers_peer(900).await;
        let resp = client
            .send(Request::head(&url).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.headers().len(), 902);
        assert_eq!(resp.headers()["x-meta-899"], "v");
        assert_eq!(seen.load(SeqCst), 2);
        // A request that cannot be replayed is parsed with the wide limit at once.
        let resp = client
            .send(Request::put(&url).body(full("hello")).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.headers().len(), 902);
        assert_eq!(seen.load(SeqCst), 3);
        // Beyond the wide limit: a transport error, as before.
        let (url, _) = many_headers_peer(MAX_RESPONSE_HEADERS + 1).await;
        let err = client
            .send(Request::get(&url).body(empty()).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    }

    /// A peer that reads a request head, then answers `answer` (after `100 Continue`
    /// when `cont`), and returns everything it read before answering.
    async fn expect_peer(
        cont: bool,
        answer: &'static [u8],
    ) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            if cont {
                s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
                while !seen.ends_with(b"hello") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
            } else {
                // Give a client that does not wait time to send its body.
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await
                {
                    seen.extend_from_slice(&buf[..n]);
                }
            }
            s.write_all(answer).await.unwrap();
            seen
        });
        (format!("http://{addr}/"), task)
    }

    fn expecting_put(url: &str) -> Request<Body> {
        Request::put(url)
            .header("expect", "100-continue")
            .header("content-length", "5")
            .body(full("hello"))
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_waits_for_100_continue() {
        let client = HttpClient::new(Timeouts::default());
        // Refused on its head: not a byte of the body is sent.
        let (url, peer) = expect_peer(
            false,
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let resp = client.send(expecting_put(&url)).await.unwrap();
        assert_eq!(resp.status(), 404);
        let seen = String::from_utf8(peer.await.unwrap()).unwrap();
        assert!(seen.ends_with("\r\n\r\n"), "the body was sent: {seen:?}");
        // Accepted: the body follows the peer's 100.
        let (url, peer) =
            expect_peer(true, b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n").await;
        let resp = client.send(expecting_put(&url)).await.unwrap();
        assert_eq!(resp.status(), 201);
        let seen = String::from_utf8(peer.await.unwrap()).unwrap();
        assert!(seen.ends_with("\r\n\r\nhello"), "{seen:?}");
    }
}
