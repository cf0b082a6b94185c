//! # stackfed
//!
//! Swift cluster federation and an offline-capable Glance edge cache, as reusable Rust
//! libraries. This facade re-exports the workspace's crates so that one dependency
//! brings them all; depend on the individual crates to pick only what you need.
//!
//! ```
//! use stackfed::federation_core::ContainerName;
//! assert!(ContainerName::new("photos").is_ok());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use federation_core;
pub use glance_proto;
pub use image_cache_core;
pub use stackfed_http as http;
pub use swift_proto;
