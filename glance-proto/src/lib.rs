//! # glance-proto
//!
//! The OpenStack Glance v2 wire protocol for the stackfed edge cache, on top of
//! `image-cache-core`:
//!
//! - [`image`]: the flat image JSON (custom properties at the top level), both ways;
//! - [`query`]: list query parameters (filters, sort keys, marker, limit) with Glance's
//!   refusals; [`error`]: Glance-style errors (plain text, JSON or HTML);
//! - [`client`]: a streaming client for the central Glance that implements
//!   `image_cache_core::upstream::Upstream`;
//! - [`service`]: the [`EdgeService`] (`/versions`, `/v2/images…`,
//!   `/v2/schemas/…`, writes forwarded, `/healthcheck`); [`server::serve`] runs it;
//!   [`config`] builds it from TOML.
//!
//! ```
//! use glance_proto::query::parse_list_query;
//! let q = parse_list_query(Some("limit=10&sort=name:asc&os_distro=ubuntu")).unwrap();
//! assert_eq!(q.limit, 10);
//! assert!(parse_list_query(Some("sort_key=colour")).is_err());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod body;
pub mod client;
pub mod config;
pub mod error;
pub mod image;
pub mod query;
pub mod server;
pub mod service;

pub use image_cache_core;
pub use service::EdgeService;
