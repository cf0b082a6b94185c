//! # stackfed-http
//!
//! HTTP plumbing shared by `swift-proto` and `glance-proto`, so that each speaks only its
//! protocol:
//!
//! - [`body`]: the one streamed [`Body`] type;
//! - [`serve`]: an HTTP/1.1 accept loop with graceful shutdown for any
//!   `tower::Service`, and [`shutdown_signal`];
//! - [`client`]: the pooled client for peers, with a timeout per phase and typed errors;
//! - [`headers`]: the one hop-by-hop header list;
//! - [`keystone`]: the one Keystone login (a service's own token, renewed single-flight);
//! - [`range`]: the one `Range` header parser and `Content-Range` values;
//! - [`pyjson`]: JSON strings in the bytes Python's `json.dumps` writes;
//! - [`background`]: the owner of a service's background tasks.
//!
//! Any `tower::Service` can be served, wrapped in tower-http layers first:
//!
//! ```
//! use std::convert::Infallible;
//! use stackfed_http::{full, serve, Body, Request, Response};
//! use tower_http::set_header::SetResponseHeaderLayer;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let hello = tower::service_fn(|_req: Request<stackfed_http::RequestBody>| async {
//!     Ok::<_, Infallible>(Response::<Body>::new(full("hi")))
//! });
//! let service = tower::ServiceBuilder::new()
//!     .layer(SetResponseHeaderLayer::overriding(
//!         http::header::SERVER,
//!         http::HeaderValue::from_static("stackfed"),
//!     ))
//!     .service(hello);
//! // Serve until the shutdown future completes (here: at once).
//! serve(listener, service, async {}, std::time::Duration::from_secs(1)).await.unwrap();
//! # });
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod background;
pub mod body;
pub mod client;
pub mod config;
pub mod headers;
pub mod keystone;
pub mod logfmt;
pub mod observe;
pub mod pyjson;
pub mod range;
mod server;

pub use background::Background;
pub use body::{boxed, empty, from_stream, full, Body, BoxError};
pub use client::{ClientError, HttpClient, Timeouts, TlsError};
pub use hyper::{Request, Response};
pub use observe::{AccessLogLayer, PeerAddr};
pub use server::{
    serve, serve_with, shutdown_signal, RequestBody, RequestBodyTimeout, ServeOptions,
    CLIENT_CHUNK_SIZE, DEFAULT_CLIENT_TIMEOUT,
};
