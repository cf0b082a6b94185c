//! Clusters: their identity, their specification, and their current status.
//!
//! A [`ClusterSpec`] is what the operator configures; a [`ClusterStatus`] adds what is
//! measured (usage, state, when last seen). The [`ClusterRegistry`] holds the current
//! statuses and hands out cheap snapshots to placement.

mod registry;

pub use registry::{ClusterRegistry, RegistryError};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use url::Url;

/// The longest cluster id accepted, in bytes.
pub const MAX_CLUSTER_ID_LENGTH: usize = 64;

/// The name of one backend cluster: 1 to 64 ASCII letters, digits, `-`, `_` or `.`,
/// so it is safe in headers, logs and file names.
///
/// ```
/// use federation_core::ClusterId;
/// assert_eq!(ClusterId::new("east-1").unwrap().as_str(), "east-1");
/// assert!(ClusterId::new("east 1").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(Arc<str>);

impl Serialize for ClusterId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A cluster id that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster id {id:?}: use 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
pub struct InvalidClusterId {
    /// The refused id.
    pub id: String,
}

impl ClusterId {
    /// Validates and wraps a cluster id.
    pub fn new(id: impl AsRef<str>) -> Result<Self, InvalidClusterId> {
        let id = id.as_ref();
        let ok = !id.is_empty()
            && id.len() <= MAX_CLUSTER_ID_LENGTH
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(Arc::from(id)))
        } else {
            Err(InvalidClusterId { id: id.to_owned() })
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClusterId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// Whether a cluster serves requests and takes new containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ClusterState {
    /// Serves requests and takes new containers.
    #[default]
    Online,
    /// Serves its existing containers but takes no new ones.
    Draining,
    /// Unreachable or switched off: serves nothing and takes nothing.
    Offline,
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Online => "online",
            Self::Draining => "draining",
            Self::Offline => "offline",
        })
    }
}

fn default_weight() -> u32 {
    1
}

fn default_high_water_mark() -> f64 {
    0.9
}

/// What the operator says about a cluster.
///
/// Deserializes from configuration such as:
///
/// ```
/// # use federation_core::ClusterSpec;
/// let spec: ClusterSpec = serde_json::from_str(r#"{
///     "id": "gold-1", "endpoint": "http://127.0.0.1:8080",
///     "capacity_bytes": 1000000000, "labels": {"tier": "gold"}
/// }"#).unwrap();
/// assert_eq!(spec.weight, 1);
/// assert_eq!(spec.high_water_mark, 0.9);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// The cluster's name.
    pub id: ClusterId,
    /// The base URL of the cluster's proxy (scheme, host, port).
    pub endpoint: Url,
    /// Free-form labels such as `tier = "gold"`, `redundancy = "3"`, `region = "east"`,
    /// matched against the service level a container asks for.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Usable capacity in bytes.
    pub capacity_bytes: u64,
    /// Relative weight for weighted policies; 0 means never place here.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Fraction of `capacity_bytes` past which the cluster counts as full and takes no
    /// new containers (0.0 to 1.0).
    #[serde(default = "default_high_water_mark")]
    pub high_water_mark: f64,
}

impl ClusterSpec {
    /// A spec with no labels, weight 1 and a high-water mark of 0.9.
    pub fn new(id: ClusterId, endpoint: Url, capacity_bytes: u64) -> Self {
        Self {
            id,
            endpoint,
            labels: BTreeMap::new(),
            capacity_bytes,
            weight: default_weight(),
            high_water_mark: default_high_water_mark(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Checks what serde cannot: the endpoint is `http://` or `https://` with a host,
    /// and the high-water mark is a fraction from 0.0 to 1.0 (`90` is refused rather
    /// than read as 100%). The error says which value is wrong.
    ///
    /// ```
    /// # use federation_core::ClusterSpec;
    /// let spec: ClusterSpec = serde_json::from_str(r#"{
    ///     "id": "a", "endpoint": "http://127.0.0.1:8080",
    ///     "capacity_bytes": 1, "high_water_mark": 90
    /// }"#).unwrap();
    /// assert!(spec.validate().unwrap_err().contains("high_water_mark"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        match self.endpoint.scheme() {
            "http" | "https" if self.endpoint.host_str().is_some_and(|h| !h.is_empty()) => {}
            "http" | "https" => return Err(format!("endpoint {}: no host", self.endpoint)),
            other => {
                return Err(format!(
                    "endpoint {}: scheme {other}:// is not supported, use http:// or https://",
                    self.endpoint
                ))
            }
        }
        if !(0.0..=1.0).contains(&self.high_water_mark) {
            return Err(format!(
                "high_water_mark = {} is not a fraction from 0.0 to 1.0 (write 0.9 for 90%)",
                self.high_water_mark
            ));
        }
        Ok(())
    }

    /// Sets the high-water mark (clamped to 0.0..=1.0).
    pub fn high_water_mark(mut self, fraction: f64) -> Self {
        self.high_water_mark = fraction;
        self
    }

    /// The byte count past which the cluster is full.
    pub fn limit_bytes(&self) -> u64 {
        let hwm = if self.high_water_mark.is_nan() {
            0.0
        } else {
            self.high_water_mark.clamp(0.0, 1.0)
        };
        // u64 -> f64 loses precision only above 2^53 bytes (8 PiB); good enough for a limit.
        (self.capacity_bytes as f64 * hwm) as u64
    }
}

/// Why a cluster cannot take a new container.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unfit {
    /// The cluster is offline.
    #[error("offline")]
    Offline,
    /// The cluster is draining: it serves but takes no new containers.
    #[error("draining")]
    Draining,
    /// The cluster is past (or would pass) its high-water mark.
    #[error("full: {used_bytes} + {expected_bytes} bytes would pass the limit of {limit_bytes} (capacity {capacity_bytes})")]
    Full {
        /// Measured usage.
        used_bytes: u64,
        /// Bytes the new container is expected to bring.
        expected_bytes: u64,
        /// The high-water mark in bytes.
        limit_bytes: u64,
        /// The configured capacity.
        capacity_bytes: u64,
    },
    /// The cluster's weight is zero.
    #[error("weight is 0")]
    NoWeight,
    /// A requested service-level label does not match.
    #[error("label {label}={wanted} requested, cluster has {}", found.as_deref().unwrap_or("none"))]
    LabelMismatch {
        /// The label key.
        label: String,
        /// The requested value.
        wanted: String,
        /// The cluster's value, if it has the label.
        found: Option<String>,
    },
    /// The container is pinned to another cluster.
    #[error("container is pinned to {pinned}")]
    NotPinned {
        /// The cluster the container is pinned to.
        pinned: ClusterId,
    },
}

/// A cluster's spec plus what was measured about it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The configured spec.
    pub spec: ClusterSpec,
    /// The current state.
    pub state: ClusterState,
    /// Measured bytes used (0 until measured).
    pub used_bytes: u64,
    /// When usage or reachability was last measured.
    pub last_seen: Option<SystemTime>,
}

impl ClusterStatus {
    /// A status for a freshly configured cluster: online, nothing used, never seen.
    pub fn new(spec: ClusterSpec) -> Self {
        Self {
            spec,
            state: ClusterState::Online,
            used_bytes: 0,
            last_seen: None,
        }
    }

    /// Sets the state.
    pub fn with_state(mut self, state: ClusterState) -> Self {
        self.state = state;
        self
    }

    /// Sets the measured usage.
    pub fn with_used_bytes(mut self, used_bytes: u64) -> Self {
        self.used_bytes = used_bytes;
        self
    }

    /// The cluster's id.
    pub fn id(&self) -> &ClusterId {
        &self.spec.id
    }

    /// Bytes that can still be placed before the high-water mark.
    pub fn free_bytes(&self) -> u64 {
        self.spec.limit_bytes().saturating_sub(self.used_bytes)
    }

    /// Used bytes as a fraction of capacity (1.0 when the capacity is 0).
    pub fn fill_ratio(&self) -> f64 {
        if self.spec.capacity_bytes == 0 {
            1.0
        } else {
            self.used_bytes as f64 / self.spec.capacity_bytes as f64
        }
    }

    /// Whether this cluster may take a new container expected to hold `expected_bytes`.
    /// Every placement policy applies this check; it is the one place that says
    /// "never on a draining, offline, weightless or full cluster".
    pub fn admits(&self, expected_bytes: u64) -> Result<(), Unfit> {
        match self.state {
            ClusterState::Offline => return Err(Unfit::Offline),
            ClusterState::Draining => return Err(Unfit::Draining),
            ClusterState::Online => {}
        }
        if self.spec.weight == 0 {
            return Err(Unfit::NoWeight);
        }
        let limit_bytes = self.spec.limit_bytes();
        let after = self.used_bytes.saturating_add(expected_bytes);
        // "Full" means at or past the mark: a cluster sitting exactly at it takes nothing more.
        if after > limit_bytes || self.used_bytes >= limit_bytes {
            return Err(Unfit::Full {
                used_bytes: self.used_bytes,
                expected_bytes,
                limit_bytes,
                capacity_bytes: self.spec.capacity_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cap: u64) -> ClusterSpec {
        ClusterSpec::new(
            ClusterId::new("c1").unwrap(),
            Url::parse("http://127.0.0.1:1").unwrap(),
            cap,
        )
    }

    #[test]
    fn admits_checks_state_weight_and_fill() {
        let s = ClusterStatus::new(spec(1000));
        assert_eq!(s.admits(0), Ok(()));
        assert_eq!(s.admits(900), Ok(()));
        assert!(matches!(s.admits(901), Err(Unfit::Full { .. })));
        assert_eq!(
            s.clone().with_state(ClusterState::Draining).admits(0),
            Err(Unfit::Draining)
        );
        assert_eq!(
            s.clone().with_state(ClusterState::Offline).admits(0),
            Err(Unfit::Offline)
        );
        assert!(matches!(
            s.clone().with_used_bytes(900).admits(0),
            Err(Unfit::Full { .. })
        ));
        let mut w0 = s;
        w0.spec.weight = 0;
        assert_eq!(w0.admits(0), Err(Unfit::NoWeight));
    }

    #[test]
    fn free_bytes_respects_high_water_mark() {
        let s = ClusterStatus::new(spec(1000).high_water_mark(0.5)).with_used_bytes(100);
        assert_eq!(s.free_bytes(), 400);
        let over = ClusterStatus::new(spec(1000)).with_used_bytes(5000);
        assert_eq!(over.free_bytes(), 0);
        assert_eq!(ClusterStatus::new(spec(0)).fill_ratio(), 1.0);
    }

    #[test]
    fn cluster_id_rules() {
        assert!(ClusterId::new("a.b_c-1").is_ok());
        assert!(ClusterId::new("").is_err());
        assert!(ClusterId::new("x".repeat(65)).is_err());
        assert!(ClusterId::new("é").is_err());
    }
}
