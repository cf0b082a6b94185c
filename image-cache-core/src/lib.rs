//! # image-cache-core
//!
//! The protocol-agnostic core of an image cache that keeps serving when its upstream is
//! gone: image records, and (to come) the `Upstream`, `MetadataStore` and `BlobStore`
//! traits with their backends and the caching engine. `glance-proto` speaks Glance's
//! wire protocol on top of it.
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

use std::fmt;

/// A Glance image id: a UUID in its canonical 8-4-4-4-12 hexadecimal form, stored in
/// lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageId(String);

impl ImageId {
    /// Parses a UUID in 8-4-4-4-12 hex form (either case); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let ok = b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
        ok.then(|| Self(text.to_ascii_lowercase()))
    }

    /// The id, lower case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids() {
        assert!(ImageId::parse("00000000-0000-0000-0000-000000000000").is_some());
        for bad in [
            "",
            "00000000000000000000000000000000",
            "00000000-0000-0000-0000-00000000000g",
            "00000000-0000-0000-0000-0000000000000",
            "0000000/-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000é",
        ] {
            assert!(ImageId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
