//! # swift-proto
//!
//! The OpenStack Swift wire protocol for the stackfed federation: request paths, header
//! classes, listing formats and errors, a client for backend clusters, and the federation
//! service built on `federation-core`. Its first piece is the header class that carries
//! container attributes, which the federation keeps and never sends to a backend:
//!
//! ```
//! use swift_proto::attribute_key;
//! assert_eq!(attribute_key("X-Container-Attr-Tier"), Some("tier".to_owned()));
//! assert_eq!(attribute_key("X-Container-Meta-Tier"), None);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use federation_core;

/// The prefix of container attribute headers (case-insensitive on the wire).
pub const CONTAINER_ATTR_PREFIX: &str = "x-container-attr-";

/// The attribute key (lower case, prefix removed) of an `X-Container-Attr-*` header, or
/// `None` for any other header or an empty key.
pub fn attribute_key(header: &str) -> Option<String> {
    let lower = header.to_ascii_lowercase();
    lower
        .strip_prefix(CONTAINER_ATTR_PREFIX)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}
