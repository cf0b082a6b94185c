//! # swift-proto
//!
//! The OpenStack Swift wire protocol for the stackfed federation, on top of
//! `federation-core`:
//!
//! - [`path`], [`headers`], [`listing`], [`error`], [`info`]: request paths and their
//!   validation, header classes (attributes, usage counters), account listings as JSON,
//!   XML and plain text both ways, Swift-style errors and the one mapping of internal
//!   errors to them, `/info` merging;
//! - [`cluster`]: the one typed client per Swift cluster (URLs, tokens and their
//!   renewal, timeouts, typed errors), and the health and usage probes built on it;
//! - [`registry`]: an attribute store kept as objects in a Swift cluster, shared by
//!   many proxies;
//! - [`service`]: the [`FederationService`] (a `tower::Service`) that presents many
//!   clusters as one Swift endpoint, its request phases and families; [`config`] builds
//!   it from TOML.
//!
//! ```
//! use swift_proto::path::SwiftPath;
//! match SwiftPath::parse("/v1/AUTH_test/photos/2024/cat.jpg").unwrap() {
//!     SwiftPath::Object { container, object, .. } => {
//!         assert_eq!(container.as_str(), "photos");
//!         assert_eq!(object, "2024/cat.jpg");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! The service is a `tower::Service`, so tower-http layers can wrap it before
//! [`stackfed_http::serve`] serves it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use swift_proto::config::ProxyConfig;
//! use tower_http::set_header::SetResponseHeaderLayer;
//!
//! let config = ProxyConfig::from_file("proxy.toml")?;
//! let (proxy, background) = config.build()?;
//! let service = tower::ServiceBuilder::new()
//!     .layer(SetResponseHeaderLayer::if_not_present(
//!         http::header::SERVER,
//!         http::HeaderValue::from_static("stackfed"),
//!     ))
//!     .service(proxy);
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! stackfed_http::serve(listener, service, stackfed_http::shutdown_signal(), Duration::from_secs(10)).await?;
//! background.shutdown().await; // the health and usage probes stop
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cluster;
pub mod config;
pub mod error;
pub mod headers;
pub mod info;
pub mod listing;
pub mod migrate;
pub mod path;
pub mod registry;
pub mod service;

pub use federation_core;
pub use service::FederationService;
