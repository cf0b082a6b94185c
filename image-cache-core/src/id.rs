//! Image ids.

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

impl serde::Serialize for ImageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ImageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid image id {s:?}")))
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
