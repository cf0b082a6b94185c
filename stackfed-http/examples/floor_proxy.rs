//! A measuring tool, not a server to deploy: the least reverse proxy that can be built
//! from the libraries the federation proxy uses (hyper 1's HTTP/1.1 server, hyper-util's
//! pooled legacy client, Tokio), forwarding every request to one upstream with its
//! method, path, query and headers, and passing the answer back. No logging, metrics,
//! authentication, header filtering or timeouts. `scripts/profile_swift.py --floor`
//! counts its instructions per request beside the proxy's and nginx's: what the
//! libraries cost before any federation work.
//!
//! ```text
//! cargo run --release -p stackfed-http --example floor_proxy -- LISTEN UPSTREAM [--current-thread] [--no-pool] [--swift-slots] [--keep-case]
//! ```
//!
//! `--current-thread` runs Tokio's single-threaded scheduler; `--no-pool` replaces the
//! pooled client by one `hyper::client::conn::http1` connection to the upstream per
//! client connection (requests on it in turn, as a keep-alive client sends them).
//! The hyper options the federation proxy sets for Swift, each alone, to count what it
//! costs: `--swift-slots` lets a request carry as many headers as Swift's proxy reads
//! (`max_headers(201)`, hyper then allocates and fills that many slots per request
//! instead of 100 on the stack); `--keep-case` keeps the answer's header names as the
//! upstream spelled them (`preserve_header_case` on the client and the server, and
//! `title_case_headers` for names without a recorded spelling).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let mut addrs = args.iter().filter(|a| !a.starts_with("--"));
    let usage = "usage: floor_proxy LISTEN UPSTREAM [--current-thread] [--no-pool] [--swift-slots] [--keep-case]";
    let listen: SocketAddr = addrs.next().ok_or(usage)?.parse()?;
    let upstream: SocketAddr = addrs.next().ok_or(usage)?.parse()?;
    let runtime = if flag("--current-thread") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let options = Options {
        pooled: !flag("--no-pool"),
        swift_slots: flag("--swift-slots"),
        keep_case: flag("--keep-case"),
    };
    runtime.block_on(serve(listen, upstream, options))
}

/// What the command line asked for.
#[derive(Clone, Copy)]
struct Options {
    pooled: bool,
    swift_slots: bool,
    keep_case: bool,
}

async fn serve(
    listen: SocketAddr,
    upstream: SocketAddr,
    options: Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let pooled = options.pooled;
    let listener = TcpListener::bind(listen).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .http1_preserve_header_case(options.keep_case)
        .build(connector);
    let base = Arc::new(format!("http://{upstream}"));
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, base) = (client.clone(), base.clone());
        // Without the pool: this client connection's own upstream connection, opened
        // on its first request.
        let own: Arc<Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>> =
            Arc::default();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (client, base, own) = (client.clone(), base.clone(), own.clone());
                async move {
                    let answer = if pooled {
                        forward_pooled(&client, &base, req).await
                    } else {
                        forward_own(&own, upstream, req).await
                    };
                    Ok::<_, Infallible>(answer.unwrap_or_else(|e| {
                        let mut r =
                            Response::new(Empty::new().map_err(|never| match never {}).boxed());
                        *r.status_mut() = StatusCode::BAD_GATEWAY;
                        eprintln!("floor_proxy: {e}");
                        r
                    }))
                }
            });
            let mut server = hyper::server::conn::http1::Builder::new();
            server.keep_alive(true);
            if options.swift_slots {
                // `swift_proto::headers::MAX_REQUEST_HEADERS`.
                server.max_headers(201);
            }
            if options.keep_case {
                server.preserve_header_case(true).title_case_headers(true);
            }
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn forward_pooled(
    client: &Client<HttpConnector, Incoming>,
    base: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = req.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{base}{target}").parse()?;
    let answer = client.request(Request::from_parts(parts, body)).await?;
    Ok(answer.map(BodyExt::boxed))
}

async fn forward_own(
    own: &Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let mut own = own.lock().await;
    let sender = match &mut *own {
        Some(s) if !s.is_closed() => s,
        slot => {
            let stream = TcpStream::connect(upstream).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            slot.insert(sender)
        }
    };
    sender.ready().await?;
    let answer = sender.send_request(req).await?;
    Ok(answer.map(BodyExt::boxed))
}
