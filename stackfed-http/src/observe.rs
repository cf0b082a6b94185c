//! One access-log line and the request metrics for every request a server answers, as
//! a tower layer any service can be wrapped in.
//!
//! The line is a `tracing` event with target `access` at level `info`, written when
//! the response body is finished (or the client went away): the request id (read from
//! the response header the protocol uses, such as Swift's `X-Trans-Id`), method, path
//! (without the query, which may hold signatures), status, bytes of the body sent,
//! duration in milliseconds, and the client's address ([`PeerAddr`], which
//! [`serve`](crate::serve) attaches to every request).
//!
//! Metrics, through the `metrics` facade (a binary installs the exporter), all labelled
//! with `service` (such as `swift` or `glance`):
//!
//! - `stackfed_http_requests_total{service, method, family, status}` — counter;
//! - `stackfed_http_request_duration_seconds{service, method, family}` — histogram of
//!   the time to the response head;
//! - `stackfed_http_response_bytes_total{service, family}` — counter of body bytes sent.
//!
//! `family` comes from the protocol's classifier (`account`, `object`, `image-data`…),
//! and unknown methods count as `OTHER`, so label values stay few.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// The client's address, attached to each request by [`serve`](crate::serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Names a request's family from its method and path (a protocol's classifier).
pub type Classifier = fn(&Method, &str) -> &'static str;

/// The layer; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    cfg: Arc<Config>,
}

#[derive(Debug)]
struct Config {
    service: &'static str,
    classify: Classifier,
    request_id: HeaderName,
}

impl AccessLogLayer {
    /// Logs and measures the requests of `service` (a metrics label), classified by
    /// `classify`, each identified by the response header `request_id`.
    pub fn new(service: &'static str, classify: Classifier, request_id: HeaderName) -> Self {
        Self {
            cfg: Arc::new(Config {
                service,
                classify,
                request_id,
            }),
        }
    }
}

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// A service wrapped by [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    cfg: Arc<Config>,
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ if m.as_str() == "COPY" => "COPY",
        _ => "OTHER",
    }
}

/// The three digits of every status from 100 to 599, in order.
static STATUS_DIGITS: [u8; 1500] = {
    let mut digits = [0; 1500];
    let mut i = 0;
    while i < 500 {
        let code = i + 100;
        digits[3 * i] = b'0' + (code / 100) as u8;
        digits[3 * i + 1] = b'0' + (code / 10 % 10) as u8;
        digits[3 * i + 2] = b'0' + (code % 10) as u8;
        i += 1;
    }
    digits
};

/// A status as a label value, without a `String` per request for the usual ones.
fn status_label(status: u16) -> metrics::SharedString {
    match status {
        100..=599 => {
            let at = 3 * usize::from(status - 100);
            match std::str::from_utf8(&STATUS_DIGITS[at..at + 3]) {
                Ok(digits) => metrics::SharedString::const_str(digits),
                Err(_) => status.to_string().into(),
            }
        }
        _ => status.to_string().into(),
    }
}

impl<S, ReqB, B> tower::Service<Request<ReqB>> for AccessLog<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
    ReqB: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let started = Instant::now();
        let cfg = self.cfg.clone();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let family = (cfg.classify)(&method, &path);
        let client = req.extensions().get::<PeerAddr>().map(|p| p.0);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let resp = inner.call(req).await?;
            let status = resp.status().as_u16();
            let m = method_label(&method);
            metrics::counter!("stackfed_http_requests_total",
                "service" => cfg.service, "method" => m, "family" => family,
                "status" => status_label(status))
            .increment(1);
            metrics::histogram!("stackfed_http_request_duration_seconds",
                "service" => cfg.service, "method" => m, "family" => family)
            .record(started.elapsed().as_secs_f64());
            let request_id = resp
                .headers()
                .get(&cfg.request_id)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let entry = Entry {
                cfg,
                started,
                method,
                path,
                family,
                status,
                client,
                request_id,
                bytes: 0,
                finished: false,
            };
            // The server frames by `Content-Length` when the answer has one, and stops
            // reading the body after that many bytes.
            let declared = resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            Ok(resp.map(|body| {
                let expected = body.size_hint().exact().or(declared);
                http_body_util::BodyExt::boxed(Counted {
                    inner: crate::body::boxed(body),
                    entry,
                    expected,
                })
            }))
        })
    }
}

/// What the log line says, completed as the body is sent.
struct Entry {
    cfg: Arc<Config>,
    started: Instant,
    method: Method,
    path: String,
    family: &'static str,
    status: u16,
    client: Option<SocketAddr>,
    request_id: String,
    bytes: u64,
    finished: bool,
}

impl Drop for Entry {
    fn drop(&mut self) {
        metrics::counter!("stackfed_http_response_bytes_total",
            "service" => self.cfg.service, "family" => self.family)
        .increment(self.bytes);
        // The address written on the stack (an `Ipv6` one with its port is at most 47
        // bytes), not into a `String` per request.
        let mut client = Text::<64>::new();
        let client = match self.client {
            Some(c) if write_addr(&mut client, c).is_ok() => client.as_str(),
            _ => "-",
        };
        tracing::info!(
            target: "access",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            duration_ms = (self.started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            client = client,
            complete = self.finished,
            "{} {} {}",
            self.method,
            self.path,
            self.status,
        );
    }
}

/// Writes `addr` as its `Display` does: an IPv4 one (every client over IPv4) digit by
/// digit, without `core::fmt`'s machinery (five formatted integers and their padding
/// checks were about 1,200 instructions of every request); IPv6 through `Display`.
fn write_addr(out: &mut impl fmt::Write, addr: SocketAddr) -> fmt::Result {
    match addr {
        SocketAddr::V4(v4) => {
            let [a, b, c, d] = v4.ip().octets();
            let mut digits = itoa::Buffer::new();
            out.write_str(digits.format(a))?;
            for octet in [b, c, d] {
                out.write_char('.')?;
                out.write_str(digits.format(octet))?;
            }
            out.write_char(':')?;
            out.write_str(digits.format(v4.port()))
        }
        SocketAddr::V6(_) => fmt::write(out, format_args!("{addr}")),
    }
}

/// Text of at most `N` bytes written into a buffer on the stack.
struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole `str`s are copied in.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A response body that counts what it sends; the entry is logged when it is dropped.
struct Counted {
    inner: Body,
    entry: Entry,
    /// The body's length when known at the start.
    expected: Option<u64>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The server stops polling once the body says it has ended (a known length
        // sent, or an empty body), so the end is also read here, before the entry is
        // written.
        if self.inner.is_end_stream() || self.expected == Some(self.entry.bytes) {
            self.entry.finished = true;
        }
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.entry.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.entry.finished = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    proptest::proptest! {
        #[test]
        fn addresses_are_written_as_display_writes_them(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u16; 8]>(),
            port in proptest::prelude::any::<u16>(),
        ) {
            let addrs = [
                SocketAddr::from((v4, port)),
                SocketAddr::from((std::net::Ipv6Addr::from(v6), port)),
                SocketAddr::from((std::net::Ipv4Addr::from(v4).to_ipv6_mapped(), port)),
            ];
            for addr in addrs {
                let mut text = Text::<64>::new();
                write_addr(&mut text, addr).unwrap();
                proptest::prop_assert_eq!(text.as_str(), addr.to_string());
            }
        }
    }

    #[test]
    fn edge_addresses_are_written_as_display_writes_them() {
        for addr in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.0.0.1:8080",
            "10.0.10.100:9",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut text = Text::<64>::new();
            write_addr(&mut text, addr).unwrap();
            assert_eq!(text.as_str(), addr.to_string());
        }
    }

    #[test]
    fn status_labels_are_the_codes() {
        for status in [0, 99, 100, 200, 404, 499, 599, 600, 999, u16::MAX] {
            assert_eq!(&*status_label(status), status.to_string(), "{status}");
        }
    }

    #[tokio::test]
    async fn counts_and_passes_the_body_unchanged() {
        let svc = tower::service_fn(|_req: Request<()>| async {
            let mut r = Response::new(crate::full("hello"));
            r.headers_mut()
                .insert("x-trans-id", http::HeaderValue::from_static("tx1"));
            Ok::<_, std::convert::Infallible>(r)
        });
        let layer =
            AccessLogLayer::new("test", |_, _| "all", HeaderName::from_static("x-trans-id"));
        let resp = layer.layer(svc).oneshot(Request::new(())).await.unwrap();
        assert_eq!(resp.headers()["x-trans-id"], "tx1");
        assert_eq!(resp.size_hint().exact(), Some(5), "the length is kept");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
    }
}
