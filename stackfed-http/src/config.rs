//! What both services' configurations share: durations written with units, checks that
//! name the key they refuse.
//!
//! A duration is either a number of seconds (`response_timeout = 60`,
//! `response_timeout = 0.5`) or a string with units, as humantime reads it
//! (`response_timeout = "60s"`, `"1m 30s"`, `"250ms"`, `"7days"`):
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct C {
//!     #[serde(with = "stackfed_http::config::duration")]
//!     t: std::time::Duration,
//! }
//! let c: C = serde_json::from_str(r#"{"t": "1m 30s"}"#).unwrap();
//! assert_eq!(c.t.as_secs(), 90);
//! let c: C = serde_json::from_str(r#"{"t": 2.5}"#).unwrap();
//! assert_eq!(c.t.as_millis(), 2500);
//! assert!(serde_json::from_str::<C>(r#"{"t": -1}"#).is_err());
//! assert!(serde_json::from_str::<C>(r#"{"t": "soon"}"#).is_err());
//! ```

use std::time::Duration;

/// A configured value that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    /// The key, as written in the configuration (`clusters[2].endpoint`).
    pub key: String,
    /// What is wrong with its value.
    pub problem: String,
}

impl Invalid {
    /// A refusal of `key`'s value.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// How a server writes its log lines (the access log included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Refuses a zero duration (a timeout of 0 would fail every call).
pub fn nonzero(key: &str, d: Duration) -> Result<Duration, Invalid> {
    if d.is_zero() {
        Err(Invalid::new(key, "must be more than 0"))
    } else {
        Ok(d)
    }
}

/// Refuses an endpoint that is not `http://` or `https://` with a host.
pub fn http_endpoint(key: &str, url: &url::Url) -> Result<(), Invalid> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Invalid::new(
                key,
                format!("{url}: scheme {other}:// is not supported, use http:// or https://"),
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Invalid::new(key, format!("{url}: no host")));
    }
    Ok(())
}

/// Serde for a [`Duration`] written as seconds (a number) or with units (a string).
pub mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    struct V;

    impl Visitor<'_> for V {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a duration: seconds as a number, or a string such as \"60s\" or \"1m 30s\"",
            )
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|_| {
                E::custom(format!(
                    "{v} is not a duration (seconds must be a non-negative number)"
                ))
            })
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v).map(Duration::from_secs).map_err(|_| {
                E::custom(format!(
                    "{v} is not a duration (seconds must be a non-negative number)"
                ))
            })
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v.trim()).map_err(|e| {
                E::custom(format!("{v:?} is not a duration ({e}); write e.g. \"60s\""))
            })
        }
    }

    /// Reads a duration: a number of seconds or a string with units.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(V)
    }

    /// Reads a duration into an `Option` (with `#[serde(default, deserialize_with =
    /// "duration::some")]`: absent is `None`).
    pub fn some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        deserialize(d).map(Some)
    }

    /// Writes a duration with units (`"1m 30s"`).
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_http() {
        let ok = url::Url::parse("https://a.example:8080").unwrap();
        assert!(http_endpoint("e", &ok).is_ok());
        let ftp = url::Url::parse("ftp://a.example").unwrap();
        let e = http_endpoint("clusters[0].endpoint", &ftp).unwrap_err();
        assert!(e.to_string().contains("clusters[0].endpoint"), "{e}");
        assert!(e.to_string().contains("ftp://"), "{e}");
        assert!(nonzero("t", Duration::ZERO).is_err());
    }
}
