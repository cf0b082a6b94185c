//! # swift-proto
//!
//! The OpenStack Swift wire protocol for the stackfed federation, on top of
//! `federation-core`:
//!
//! - [`path`], [`headers`], [`listing`], [`error`], [`info`]: request paths and their
//!   validation, header classes (attributes, usage counters, hop-by-hop), account listings
//!   as JSON, XML and plain text both ways, Swift-style errors, `/info` merging;
//! - [`client`]: a pooled, streaming HTTP/1.1 client for backend clusters;
//! - [`auth`]: one proxy token standing for a token on every cluster (tempauth), or
//!   pass-through;
//! - [`registry`]: an attribute store kept as objects in a Swift cluster, shared by
//!   many proxies;
//! - [`health`], [`usage`]: probes that mark clusters offline and back, and refresh
//!   their capacity and usage from the storage nodes' `recon`;
//! - [`service`]: the [`FederationService`] that presents many clusters as one Swift
//!   endpoint, and [`server::serve`] to run it; [`config`] builds it from TOML.
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod body;
pub mod client;
pub mod config;
pub mod error;
pub mod headers;
pub mod health;
pub mod info;
pub mod listing;
pub mod path;
pub mod registry;
pub mod server;
pub mod service;
pub mod usage;

pub use federation_core;
pub use service::FederationService;
