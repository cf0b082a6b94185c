//! Validated Swift account and container names.
//!
//! Swift accepts any valid UTF-8 (without NUL) as a name; a container name is at most
//! 256 bytes and never contains `/`. Names are validated once, when they enter the
//! system, so every store and policy can trust them.

use std::fmt;

/// The longest account name Swift accepts, in bytes.
pub const MAX_ACCOUNT_NAME_LENGTH: usize = 256;
/// The longest container name Swift accepts, in bytes.
pub const MAX_CONTAINER_NAME_LENGTH: usize = 256;

/// Why a name was refused. The caller should answer the client with a 4xx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// `"account"` or `"container"`.
        kind: &'static str,
    },
    /// The name is longer than Swift allows.
    #[error("{kind} name is {len} bytes, longer than the limit of {max}")]
    TooLong {
        /// `"account"` or `"container"`.
        kind: &'static str,
        /// The name's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name contains a character Swift forbids there (`/`, or NUL).
    #[error("{kind} name contains the forbidden character {found:?}")]
    ForbiddenChar {
        /// `"account"` or `"container"`.
        kind: &'static str,
        /// The offending character.
        found: char,
    },
}

fn validate(kind: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > max {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
            max,
        });
    }
    if let Some(found) = name.chars().find(|c| *c == '/' || *c == '\0') {
        return Err(NameError::ForbiddenChar { kind, found });
    }
    Ok(())
}

macro_rules! swift_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `name` and wraps it.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                validate($kind, &name, $max)?;
                Ok(Self(name))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(value: &str) -> Result<Self, NameError> {
                Self::new(value)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                Self::new(value)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

swift_name!(
    /// A Swift account name, such as `AUTH_test`: non-empty UTF-8, at most 256 bytes,
    /// without `/` or NUL.
    AccountName,
    "account",
    MAX_ACCOUNT_NAME_LENGTH
);

swift_name!(
    /// A Swift container name: non-empty UTF-8, at most 256 bytes, without `/` or NUL.
    ///
    /// ```
    /// use federation_core::ContainerName;
    /// assert!(ContainerName::new("photos").is_ok());
    /// assert!(ContainerName::new("a/b").is_err());
    /// assert!(ContainerName::new("x".repeat(257)).is_err());
    /// ```
    ContainerName,
    "container",
    MAX_CONTAINER_NAME_LENGTH
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_in_bytes() {
        // 128 two-byte characters are 256 bytes: accepted; one more is refused.
        let ok = "é".repeat(128);
        assert!(ContainerName::new(ok.clone()).is_ok());
        let err = ContainerName::new(format!("{ok}é")).unwrap_err();
        assert_eq!(
            err,
            NameError::TooLong {
                kind: "container",
                len: 258,
                max: 256
            }
        );
    }

    #[test]
    fn forbidden_characters() {
        assert!(matches!(
            ContainerName::new("a\0b"),
            Err(NameError::ForbiddenChar { found: '\0', .. })
        ));
        assert!(matches!(
            AccountName::new("AUTH/x"),
            Err(NameError::ForbiddenChar { found: '/', .. })
        ));
        assert!(matches!(AccountName::new(""), Err(NameError::Empty { .. })));
    }

    #[test]
    fn deserialize_validates() {
        let ok: Result<ContainerName, _> = serde_json::from_str("\"fine\"");
        assert!(ok.is_ok());
        let bad: Result<ContainerName, _> = serde_json::from_str("\"no/slash\"");
        assert!(bad.is_err());
    }
}
