//! # federation-core
//!
//! The protocol-agnostic core of a Swift cluster federation: an account's containers are
//! spread over several independent Swift clusters, each container on exactly one, with
//! all its objects. This crate decides and remembers where:
//!
//! - [`cluster`]: clusters, their labels, capacity and state, and a registry of their
//!   current status;
//! - [`placement`]: the [`PlacementPolicy`](placement::PlacementPolicy) trait and its
//!   policies (most free, weighted by free space, service-level match, pin, account
//!   affinity with spill-over, rendezvous hash, composition), buildable from TOML;
//! - [`attrs`]: the [`AttributeStore`](attrs::AttributeStore) trait that records each
//!   container's cluster and `X-Container-Attr-*` attributes, with memory and SQLite
//!   backends and one conformance suite;
//! - [`locator`]: the [`Locator`], the single entry point a proxy calls;
//! - [`listing`]: merging sorted per-cluster listings into one Swift listing page.
//!
//! It knows nothing of HTTP: `swift-proto` speaks the wire protocol on top of it.
//!
//! ```
//! use std::sync::Arc;
//! use federation_core::attrs::{Attributes, SqliteStore};
//! use federation_core::placement::{PlacementRequest, PolicyConfig};
//! use federation_core::{AccountName, ClusterId, ClusterRegistry, ClusterSpec, ContainerName, Locator};
//!
//! # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(async {
//! let clusters = ["gold", "silver"].map(|tier| {
//!     ClusterSpec::new(ClusterId::new(tier).unwrap(), "http://127.0.0.1:8080".parse().unwrap(), 1 << 40)
//!         .label("tier", tier)
//! });
//! let registry = Arc::new(ClusterRegistry::new(clusters.to_vec()).unwrap());
//! let policy = PolicyConfig::default().build(); // pin, else service level, else most free
//! let locator = Locator::new(Arc::new(SqliteStore::in_memory().unwrap()), registry, policy.into());
//!
//! let account = AccountName::new("AUTH_test").unwrap();
//! let request = PlacementRequest::new(account.clone(), ContainerName::new("ledger").unwrap())
//!     .label("tier", "gold");
//! let attributes: Attributes = request.labels.clone();
//! let placed = locator.place(request, attributes).await.unwrap();
//! assert_eq!(placed.record.cluster.as_str(), "gold");
//! # });
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod attrs;
pub mod cluster;
pub mod listing;
pub mod locator;
pub mod migration;
mod name;
pub mod placement;
pub mod sessions;

pub use cluster::{ClusterId, ClusterRegistry, ClusterSpec, ClusterState, ClusterStatus, Unfit};
pub use locator::{ContainerProbe, LocateError, Locator, Placement};
pub use name::{
    AccountName, ContainerName, NameError, MAX_ACCOUNT_NAME_LENGTH, MAX_CONTAINER_NAME_LENGTH,
};
