//! # image-cache-core
//!
//! The protocol-agnostic core of an image cache that keeps serving when its upstream is
//! gone. It caches image **metadata and data**:
//!
//! - [`record`]: [`ImageRecord`] (typed fields the cache reasons about, the rest verbatim);
//! - [`upstream`]: the [`Upstream`](upstream::Upstream) trait (get metadata, list, open
//!   data, ranges), its errors, and the request context used for access checks;
//! - [`meta`]: the [`MetadataStore`](meta::MetadataStore) trait with SQLite and memory
//!   backends; [`blob`]: the [`BlobStore`](blob::BlobStore) trait with filesystem
//!   (incomplete → fsync → rename) and memory backends; one conformance suite per trait;
//! - [`engine`]: [`ImageCache`]: metadata read-through (show and list) with a
//!   freshness window and one bounded serve-stale rule; data hits streamed from the blob
//!   store, ranges too; a miss filled by exactly one upstream fetch however many clients
//!   ask, each client streamed bytes as they arrive; data verified against
//!   `os_hash_value` and `checksum` before commit, quarantined on mismatch; the size
//!   budget; prefetch workers; reconciliation at start so a crash never leaves anything
//!   partial or unverified servable. Work that outlives a request runs on a
//!   [`Spawner`] its owner supplies;
//! - [`error`]: [`CacheError`] and [`ErrorSource`]: every error says where the fault came
//!   from and whether a retry may help, and keeps its cause;
//! - [`list`]: Glance's filters, sort keys, marker and limit over cached records;
//! - [`eviction`]: the size budget's admission and LRU eviction plan;
//! - [`hash`]: the verifier.
//!
//! Image ids are validated before they are used anywhere, and are never used as paths:
//!
//! ```
//! use image_cache_core::ImageId;
//! let id = ImageId::parse("9B2C1F4E-3A5D-4C6B-8E7F-0123456789AB").unwrap();
//! assert_eq!(id.as_str(), "9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab");
//! assert!(ImageId::parse("../../etc/passwd").is_none());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod blob;
pub mod engine;
pub mod error;
pub mod eviction;
pub mod hash;
mod id;
pub mod list;
pub mod meta;
pub mod record;
pub mod upstream;

pub use engine::{CacheConfig, ImageCache, Spawner};
pub use error::{CacheError, ErrorSource};
pub use id::ImageId;
pub use record::{ImageRecord, ImageStatus, Visibility};
