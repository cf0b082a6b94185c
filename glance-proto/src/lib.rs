//! # glance-proto
//!
//! The OpenStack Glance v2 wire protocol for the stackfed edge cache: image JSON, list
//! queries, `/versions`, schemas and errors, a client for the central Glance, and the edge
//! service built on `image-cache-core`. Its first piece is the routing of image paths,
//! which validates ids before anything else sees them:
//!
//! ```
//! use glance_proto::image_path;
//! let id = image_path("/v2/images/9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab/file").unwrap();
//! assert_eq!(id.0.as_str(), "9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab");
//! assert_eq!(id.1, Some("file"));
//! assert!(image_path("/v2/images/../../secret").is_none());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use image_cache_core;

use image_cache_core::ImageId;

/// Splits `/v2/images/{id}[/{rest}]` into the validated id and the rest; `None` when the
/// path is not an image path or the id is not a UUID.
pub fn image_path(path: &str) -> Option<(ImageId, Option<&str>)> {
    let tail = path.strip_prefix("/v2/images/")?;
    let (id, rest) = match tail.split_once('/') {
        Some((id, rest)) => (id, Some(rest)),
        None => (tail, None),
    };
    Some((ImageId::parse(id)?, rest))
}
