//! # glance-proto
//!
//! The OpenStack Glance v2 wire protocol for the stackfed edge cache, on top of
//! `image-cache-core`:
//!
//! - [`image`]: the flat image JSON (custom properties at the top level), both ways;
//! - [`query`]: list query parameters (filters, sort keys, marker, limit) both ways, with
//!   Glance's refusals, and the `first`/`next` links of a page;
//! - [`error`]: [`GlanceError`], the answer type (plain text, JSON or HTML as Glance
//!   negotiates), and the one mapping from every internal error to its answer;
//! - [`identity`]: who the caller is (no-auth, or trusted headers);
//! - [`keystone`]: the Keystone mode: tokens validated by Keystone, cached, honoured
//!   offline until they expire;
//! - [`client`]: the client for the central Glance (over `stackfed_http::HttpClient`),
//!   which implements `image_cache_core::upstream::Upstream`;
//! - [`service`]: the [`EdgeService`], a `tower::Service` that runs each request through
//!   the same phases, one file per request family (`/versions`, `/v2/images…`,
//!   `/v2/schemas/…`, `/v2/cache…`, writes forwarded, `/healthcheck`);
//! - [`config`]: TOML → the service plus the `stackfed_http::Background` that owns its
//!   background tasks.
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
pub mod identity;
pub mod image;
pub mod keystone;
pub mod query;
pub mod service;

pub use error::GlanceError;
pub use identity::IdentityMode;
pub use image_cache_core;
pub use service::EdgeService;
