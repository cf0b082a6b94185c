//! Serving any `tower::Service` over HTTP/1.1 with graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use http_body_util::Either;

use crate::body::{from_stream, Body, BoxError};

/// How a server treats its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// After shutdown begins, how long in-flight requests may still run.
    pub drain: Duration,
    /// How long a client may take to send a request head (a client that stalls
    /// mid-head is disconnected instead of holding the connection).
    pub header_read_timeout: Duration,
    /// The most headers a request may carry; more are answered 431 by the server.
    pub max_headers: usize,
    /// Percent-encode raw bytes of 0x80 and above in a connection's first request
    /// line (a client that sends a path's UTF-8, or invalid UTF-8, unencoded), which
    /// the HTTP parser would otherwise refuse with a bare 400 before the service sees
    /// the request. Later requests on a kept-alive connection are not rewritten.
    pub encode_raw_target: bool,
    /// How long the server may wait for each [`CLIENT_CHUNK_SIZE`] bytes of a request
    /// body (Swift's `client_timeout`): waiting longer ends the body with a
    /// [`RequestBodyTimeout`] error, so a client that sends a byte now and then, or stops
    /// mid-body, holds nothing for long (see [`RequestBody`]).
    pub body_idle_timeout: Duration,
}

impl ServeOptions {
    /// Options with the given drain time and a 30 s header read timeout.
    pub fn new(drain: Duration) -> Self {
        Self {
            drain,
            header_read_timeout: Duration::from_secs(30),
            max_headers: 100,
            encode_raw_target: false,
            body_idle_timeout: DEFAULT_CLIENT_TIMEOUT,
        }
    }

    /// With another idle timeout on request bodies (60 s by default, Swift's
    /// `client_timeout`).
    pub fn body_idle_timeout(mut self, timeout: Duration) -> Self {
        self.body_idle_timeout = timeout;
        self
    }

    /// With raw bytes in a connection's first request line percent-encoded (see
    /// [`encode_raw_target`](Self::encode_raw_target)).
    pub fn encode_raw_target(mut self, encode: bool) -> Self {
        self.encode_raw_target = encode;
        self
    }

    /// With another limit on request headers (100 by default, as hyper's).
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max;
        self
    }

    /// With another header read timeout.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }
}

/// Swift's default `client_timeout`: how long a request body may stay silent.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A request body stayed silent longer than the server's
/// [`body_idle_timeout`](ServeOptions::body_idle_timeout): the client's fault (Swift
/// answers 408 Request Timeout); retrying helps only if the client sends faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client sent no part of the request body for {after:?}")]
pub struct RequestBodyTimeout {
    /// The idle time that passed.
    pub after: Duration,
}

impl RequestBodyTimeout {
    /// Whether `error`, or any error it was caused by, is a [`RequestBodyTimeout`]:
    /// a request that failed because the client's body stalled (also when that body was
    /// being streamed to a peer by an [`HttpClient`](crate::HttpClient)).
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut e = Some(error);
        while let Some(err) = e {
            if err.is::<Self>() {
                return true;
            }
            e = err.source();
        }
        false
    }
}

/// Swift's `client_chunk_size`: the unit a request body is read in, each within the
/// `client_timeout`.
pub const CLIENT_CHUNK_SIZE: usize = 64 * 1024;

/// The body of a request as [`serve`] hands it to a service: the connection's body,
/// ending with a [`RequestBodyTimeout`] error when the client takes longer than the
/// [`body_idle_timeout`](ServeOptions::body_idle_timeout) to send the next
/// [`CLIENT_CHUNK_SIZE`] bytes (or the rest), as Swift reads `wsgi.input` in chunks of
/// `client_chunk_size`, each under `client_timeout`: a client that stops, or sends a
/// byte now and then, is cut off. Only the time spent waiting for the client counts
/// (a service busy elsewhere, a peer slow to take the bytes, is not the client's
/// fault). Its size hint is the request's.
pub struct RequestBody {
    body: Incoming,
    after: Duration,
    /// The time waited for the client since the last full chunk.
    waited: Duration,
    /// Bytes received since the last full chunk.
    got: usize,
    /// While waiting: since when, and the deadline.
    waiting: Option<(tokio::time::Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("idle_timeout", &self.after)
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    fn new(body: Incoming, after: Duration) -> Self {
        Self {
            body,
            after,
            waited: Duration::ZERO,
            got: 0,
            waiting: None,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some((since, _)) = this.waiting.take() {
                    this.waited += since.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref())) {
                    this.got += data.map_or(0, Bytes::len);
                    if this.got >= CLIENT_CHUNK_SIZE {
                        this.got = 0;
                        this.waited = Duration::ZERO;
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let left = this.after.saturating_sub(this.waited);
                let (_, deadline) = this.waiting.get_or_insert_with(|| {
                    (
                        tokio::time::Instant::now(),
                        Box::pin(tokio::time::sleep(left)),
                    )
                });
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.waiting = None;
                        Poll::Ready(Some(Err(Box::new(RequestBodyTimeout {
                            after: this.after,
                        }))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `service` on `listener` (HTTP/1.1, keep-alive) until `shutdown` completes,
/// then stops accepting and lets in-flight requests finish for up to `drain`.
///
/// Header names go out as a peer spelled them when a response carries the case map
/// of a response [`HttpClient`](crate::HttpClient) received (a proxied answer keeps
/// `X-Object-Meta-Color`), and title-cased otherwise (`X-Trans-Id`, `Content-Type`).
///
/// Any `tower::Service` that answers `http::Request`s with `http::Response`s will do, so
/// tower and tower-http layers can wrap the stackfed services before they are served.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_with(listener, service, shutdown, ServeOptions::new(drain)).await
}

/// [`serve`] with explicit [`ServeOptions`].
pub async fn serve_with<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> std::io::Result<()>
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let idle = options.body_idle_timeout;
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .timer(TokioTimer::new())
                    .header_read_timeout(options.header_read_timeout)
                    .max_headers(options.max_headers)
                    .preserve_header_case(true)
                    .title_case_headers(true)
                    .serve_connection(
                        TokioIo::new(FirstLine::new(stream, options.encode_raw_target)),
                        TowerToHyperService::new(tower::ServiceExt::map_request(
                            tower::ServiceExt::map_response(
                                service.clone(),
                                keep_zero_length::<B>,
                            ),
                            move |req: Request<Incoming>| {
                                let mut req = req.map(|b| RequestBody::new(b, idle));
                                req.extensions_mut().insert(crate::observe::PeerAddr(peer));
                                req
                            },
                        )),
                    );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let drain = options.drain;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {drain:?}");
    }
    Ok(())
}

/// A connection whose first line (the first request line) has its bytes of 0x80 and
/// above percent-encoded, when enabled; everything after that line passes unchanged.
struct FirstLine<S> {
    inner: S,
    in_line: bool,
    pending: Vec<u8>,
    pos: usize,
}

impl<S> FirstLine<S> {
    fn new(inner: S, enabled: bool) -> Self {
        Self {
            inner,
            in_line: enabled,
            pending: Vec::new(),
            pos: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstLine<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.pending.len() {
            if !this.in_line {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut raw = [0u8; 4096];
            let mut rb = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let got = rb.filled();
            if got.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.pending.clear();
            this.pos = 0;
            let mut rest = got;
            while let Some((&b, tail)) = rest.split_first() {
                if !this.in_line {
                    break;
                }
                if b >= 0x80 {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    this.pending.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(b >> 4)],
                        HEX[usize::from(b & 0xf)],
                    ]);
                } else {
                    this.pending.push(b);
                }
                if b == b'\n' {
                    this.in_line = false;
                }
                rest = tail;
            }
            this.pending.extend_from_slice(rest);
        }
        let n = buf.remaining().min(this.pending.len() - this.pos);
        buf.put_slice(&this.pending[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstLine<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A `204` or `304` that says `Content-Length: 0` keeps saying it (hyper drops the
/// header of a bodiless answer whose body is known to be over, but writes it for a body
/// that is not known to be over yet; Swift's 204s and 304s carry it).
fn keep_zero_length<B>(resp: Response<B>) -> Response<Either<B, Body>> {
    let keep = matches!(
        resp.status(),
        http::StatusCode::NO_CONTENT | http::StatusCode::NOT_MODIFIED
    ) && resp.headers().contains_key(http::header::CONTENT_LENGTH);
    resp.map(|b| {
        if keep {
            Either::Right(from_stream(
                futures::stream::empty::<Result<Bytes, BoxError>>(),
            ))
        } else {
            Either::Left(b)
        }
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{from_stream, Body};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `service` served on a free loopback port: its address, the switch that shuts it
    /// down, and the serving task.
    async fn start<S, B>(
        service: S,
        options: ServeOptions,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    )
    where
        S: tower::Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with(
            listener,
            service,
            async {
                let _ = rx.await;
            },
            options,
        ));
        (addr, tx, server)
    }

    #[tokio::test]
    async fn serves_until_shutdown_and_streams() {
        let service = tower::service_fn(|_req: Request<RequestBody>| async {
            let chunks = futures::stream::iter(
                ["a", "b", "c"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))),
            );
            Ok::<_, std::convert::Infallible>(Response::<Body>::new(from_stream(chunks)))
        });
        let (addr, tx, server) = start(service, ServeOptions::new(Duration::from_secs(1))).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("Transfer-Encoding: chunked"), "{out}");
        assert!(
            out.ends_with("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"),
            "{out}"
        );
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "stopped listening"
        );
    }

    #[tokio::test]
    async fn a_client_stalling_mid_head_is_disconnected() {
        let service = tower::service_fn(|_req: Request<RequestBody>| async {
            Ok::<_, std::convert::Infallible>(Response::<Body>::new(crate::empty()))
        });
        let options = ServeOptions::new(Duration::from_secs(1))
            .header_read_timeout(Duration::from_millis(300));
        let (addr, tx, server) = start(service, options).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server closed the stalled connection");
        assert!(started.elapsed() < Duration::from_secs(3));
        tx.send(()).unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(2), server).await;
        assert!(
            stopped.is_ok(),
            "shutdown did not wait for the stalled client"
        );
    }

    #[tokio::test]
    async fn header_names_keep_the_peers_case_and_204s_their_length() {
        // A peer spelling its headers as Swift does.
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = peer.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nX-Object-Meta-Color: blUe\r\nETag: abc\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .await;
            }
        });
        let client = crate::HttpClient::new(crate::Timeouts::default());
        let service = tower::service_fn(move |req: Request<RequestBody>| {
            let client = client.clone();
            async move {
                if req.uri().path() == "/empty" || req.uri().path() == "/not-modified" {
                    let mut r = Response::new(crate::empty());
                    *r.status_mut() = if req.uri().path() == "/empty" {
                        http::StatusCode::NO_CONTENT
                    } else {
                        http::StatusCode::NOT_MODIFIED
                    };
                    r.headers_mut()
                        .insert("content-length", http::HeaderValue::from(0));
                    return Ok::<_, std::convert::Infallible>(r);
                }
                let fwd = Request::get(format!("http://{peer_addr}/"))
                    .body(crate::empty())
                    .unwrap();
                let mut r = client.send(fwd).await.unwrap();
                r.headers_mut()
                    .insert("x-made-here", http::HeaderValue::from_static("1"));
                Ok(r)
            }
        });
        let (addr, tx, server) = start(service, ServeOptions::new(Duration::from_secs(1))).await;
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let out = get("/").await;
        assert!(out.contains("\r\nX-Object-Meta-Color: blUe\r\n"), "{out}");
        assert!(
            out.contains("\r\nETag: abc\r\n"),
            "the peer's spelling: {out}"
        );
        assert!(out.contains("\r\nX-Made-Here: 1\r\n"), "title case: {out}");
        let out = get("/empty").await;
        assert!(out.starts_with("HTTP/1.1 204"), "{out}");
        assert!(out.contains("\r\nContent-Length: 0\r\n"), "{out}");
        let out = get("/not-modified").await;
        assert!(out.starts_with("HTTP/1.1 304"), "{out}");
        assert!(out.contains("\r\nContent-Length: 0\r\n"), "{out}");
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn raw_bytes_in_a_first_request_line_are_percent_encoded() {
        let service = tower::service_fn(|req: Request<RequestBody>| async move {
            Ok::<_, std::convert::Infallible>(Response::new(crate::full(req.uri().to_string())))
        });
        let options = ServeOptions::new(Duration::from_secs(1)).encode_raw_target(true);
        let (addr, tx, server) = start(service, options).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /v1/a/\xff\xc3\xa9?q=\xe2 HTTP/1.1\r\nHost: x\r\nX-Meta: \xc3\xa9\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("/v1/a/%FF%C3%A9?q=%E2"), "{out}");
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A client that stops mid-body: the body read ends with [`RequestBodyTimeout`]
    /// within the bound, also when the body is being streamed on to a peer by an
    /// `HttpClient` (whose error then says it was caused by the client's body), and the
    /// peer sees its request broken off rather than completed.
    #[tokio::test]
    async fn a_stalled_request_body_times_out_also_when_streamed_on() {
        // The peer: reads the whole body, says how much it got.
        let peer_got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = peer_got.clone();
        let peer = tower::service_fn(move |req: Request<RequestBody>| {
            let seen = seen.clone();
            async move {
                let r = http_body_util::BodyExt::collect(req.into_body()).await;
                let what = match r {
                    Ok(b) => format!("complete {}", b.to_bytes().len()),
                    Err(_) => "broken".to_owned(),
                };
                seen.lock().unwrap().push(what);
                Ok::<_, std::convert::Infallible>(Response::new(crate::full("ok")))
            }
        });
        let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer_listener.local_addr().unwrap();
        let (peer_tx, peer_rx) = tokio::sync::oneshot::channel::<()>();
        let peer_server = tokio::spawn(serve(
            peer_listener,
            peer,
            async {
                let _ = peer_rx.await;
            },
            Duration::from_secs(1),
        ));
        // The proxy: streams the client's body to the peer.
        let client = crate::HttpClient::new(crate::Timeouts::default());
        let proxy = tower::service_fn(move |req: Request<RequestBody>| {
            let client = client.clone();
            async move {
                let (parts, body) = req.into_parts();
                let mut up = Request::new(crate::boxed(body));
                *up.method_mut() = parts.method;
                *up.uri_mut() = format!("http://{peer_addr}/x").parse().unwrap();
                if let Some(l) = parts.headers.get(http::header::CONTENT_LENGTH) {
                    up.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, l.clone());
                }
                let answer = match client.send(up).await {
                    Ok(_) => "forwarded".to_owned(),
                    Err(e) if RequestBodyTimeout::caused(&e) => "client timeout".to_owned(),
                    Err(e) => format!("other: {e}"),
                };
                Ok::<_, std::convert::Infallible>(Response::new(crate::full(answer)))
            }
        });
        let options =
            ServeOptions::new(Duration::from_secs(1)).body_idle_timeout(Duration::from_millis(300));
        let (addr, tx, server) = start(proxy, options).await;
        let started = std::time::Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        // Then nothing more: the answer comes within the bound.
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server held the stalled connection");
        let out = String::from_utf8_lossy(&out);
        assert!(out.ends_with("client timeout"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // The peer never saw a complete request.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let got = peer_got.lock().unwrap().clone();
        assert!(got.iter().all(|g| g == "broken"), "{got:?}");
        // A client that sends the whole body is served as before.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(String::from_utf8_lossy(&out).ends_with("forwarded"));
        assert_eq!(peer_got.lock().unwrap().last().unwrap(), "complete 3");
        tx.send(()).unwrap();
        peer_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        peer_server.await.unwrap().unwrap();
    }

    /// A client that trickles a byte now and then never sends a chunk in time: cut off
    /// after about the timeout of waiting, not kept alive by each byte.
    #[tokio::test]
    async fn a_trickling_request_body_times_out() {
        let service = tower::service_fn(|req: Request<RequestBody>| async move {
            let r = http_body_util::BodyExt::collect(req.into_body()).await;
            let answer = match r {
                Ok(b) => format!("complete {}", b.to_bytes().len()),
                Err(e) if RequestBodyTimeout::caused(&*e) => "client timeout".to_owned(),
                Err(e) => format!("other: {e}"),
            };
            Ok::<_, std::convert::Infallible>(Response::new(crate::full(answer)))
        });
        let options =
            ServeOptions::new(Duration::from_secs(1)).body_idle_timeout(Duration::from_millis(400));
        let (addr, tx, server) = start(service, options).await;
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = s.into_split();
        w.write_all(b"PUT /o HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let trickle = tokio::spawn(async move {
            for _ in 0..50 {
                if w.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(4), r.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the trickling client held the connection");
        let out = String::from_utf8_lossy(&out);
        assert!(out.ends_with("client timeout"), "{out}");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        trickle.abort();
        tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
