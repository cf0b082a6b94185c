//! Placement: choosing the cluster for a new container.
//!
//! A [`PlacementPolicy`] is synchronous and pure: given a [`PlacementRequest`] and the
//! clusters' current statuses it names a cluster, or says for each cluster why it cannot
//! take the container. Policies never choose a draining, offline, weightless or full
//! cluster: they all go through [`ClusterStatus::admits`].
//!
//! One file per policy; [`Filtered`] and [`FirstOf`] compose them, and [`PolicyConfig`]
//! builds any of them from configuration.
//!
//! ```
//! use federation_core::placement::{PlacementPolicy, PlacementRequest, PolicyConfig};
//! use federation_core::{AccountName, ClusterId, ClusterSpec, ClusterStatus, ContainerName};
//!
//! let clusters: Vec<ClusterStatus> = ["silver", "gold"]
//!     .iter()
//!     .map(|id| {
//!         let spec = ClusterSpec::new(
//!             ClusterId::new(id).unwrap(),
//!             "http://127.0.0.1:8080".parse().unwrap(),
//!             1 << 40,
//!         )
//!         .label("tier", *id);
//!         ClusterStatus::new(spec)
//!     })
//!     .collect();
//!
//! let policy = PolicyConfig::from_toml(r#"
//!     kind = "service-level"
//!     then = { kind = "most-free" }
//! "#).unwrap().build();
//!
//! let request = PlacementRequest::new(
//!     AccountName::new("AUTH_test").unwrap(),
//!     ContainerName::new("reports").unwrap(),
//! )
//! .label("tier", "gold");
//! let chosen = policy.place_among(&request, &clusters).unwrap();
//! assert_eq!(chosen.as_str(), "gold");
//! ```

mod affinity;
mod compose;
mod config;
mod hash;
mod most_free;
mod pin;
mod rendezvous;
mod service_level;
mod weighted_free;

pub use affinity::AccountAffinity;
pub use compose::{AllOf, ClusterFilter, Filtered, FirstOf, Offers, SameClusterAs};
pub use config::{ConfigError, FilterConfig, PolicyConfig};
pub use most_free::MostFree;
pub use pin::Pin;
pub use rendezvous::Rendezvous;
pub use service_level::{RequireLabels, ServiceLevelMatch, DEFAULT_SERVICE_LEVEL_KEYS};
pub use weighted_free::WeightedFree;

use std::collections::BTreeMap;
use std::fmt;

use crate::cluster::{ClusterId, ClusterStatus, Unfit};
use crate::name::{AccountName, ContainerName};

/// What is known about a new container when its cluster is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlacementRequest {
    /// The account that owns the container.
    pub account: AccountName,
    /// The new container's name.
    pub container: ContainerName,
    /// The service level the client asked for (from `X-Container-Attr-*`), lower-case keys.
    pub labels: BTreeMap<String, String>,
    /// A cluster the client asked for explicitly.
    pub pin: Option<ClusterId>,
    /// Bytes the container is expected to bring (0 when unknown).
    pub expected_bytes: u64,
    /// How many of the account's containers each cluster already holds. Filled by the
    /// caller when the policy asks for it ([`PlacementPolicy::needs_footprint`]).
    pub footprint: BTreeMap<ClusterId, u64>,
}

impl PlacementRequest {
    /// A request with no labels, no pin and no footprint.
    pub fn new(account: AccountName, container: ContainerName) -> Self {
        Self {
            account,
            container,
            labels: BTreeMap::new(),
            pin: None,
            expected_bytes: 0,
            footprint: BTreeMap::new(),
        }
    }

    /// Adds a requested label (the key is lower-cased).
    pub fn label(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.labels
            .insert(key.as_ref().to_ascii_lowercase(), value.into());
        self
    }

    /// Pins the container to a cluster.
    pub fn pin(mut self, cluster: ClusterId) -> Self {
        self.pin = Some(cluster);
        self
    }

    /// Sets the expected size.
    pub fn expected_bytes(mut self, bytes: u64) -> Self {
        self.expected_bytes = bytes;
        self
    }

    /// Sets the account's footprint (containers per cluster).
    pub fn footprint(mut self, footprint: BTreeMap<ClusterId, u64>) -> Self {
        self.footprint = footprint;
        self
    }
}

/// One cluster that was not chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The cluster.
    pub cluster: ClusterId,
    /// Why it could not take the container.
    pub reason: Unfit,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cluster, self.reason)
    }
}

fn list_rejections(rejections: &[Rejection]) -> String {
    if rejections.is_empty() {
        return "no clusters are configured".to_owned();
    }
    rejections
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why no cluster was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// No cluster can take the container; each cluster says why. Usually answered with
    /// 507 Insufficient Storage or 503; may succeed later when capacity frees up.
    #[error("no cluster can take the container ({})", list_rejections(.rejections))]
    NoFit {
        /// Every cluster considered, with its reason.
        rejections: Vec<Rejection>,
    },
    /// The container is pinned to a cluster that cannot take it.
    #[error("the container is pinned to {cluster}, which cannot take it: {reason}")]
    PinRefused {
        /// The pinned cluster.
        cluster: ClusterId,
        /// Why it cannot take the container.
        reason: Unfit,
    },
    /// The request names a cluster that does not exist (a client error).
    #[error("no cluster named {cluster}")]
    UnknownCluster {
        /// The unknown name.
        cluster: ClusterId,
    },
    /// The policy has nothing to say about this request (for example a pin policy when
    /// nothing is pinned); [`FirstOf`] then asks the next policy.
    #[error("policy {policy} does not apply: {reason}")]
    NotApplicable {
        /// The policy's name.
        policy: &'static str,
        /// Why it does not apply.
        reason: &'static str,
    },
}

/// Chooses the cluster for a new container.
///
/// Implementations are synchronous, pure and deterministic for a given request and
/// cluster list (randomised policies take their randomness from a seeded hash of the
/// names), so they are easy to test, fuzz and benchmark.
pub trait PlacementPolicy: Send + Sync + fmt::Debug {
    /// Chooses a cluster among `clusters`, or says why none fits.
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError>;

    /// A short name recorded with each placement, such as `"most-free"`.
    fn name(&self) -> &'static str;

    /// Whether [`PlacementRequest::footprint`] must be filled for this policy.
    fn needs_footprint(&self) -> bool {
        false
    }

    /// [`place`](Self::place) over a slice of statuses (such as a registry snapshot).
    fn place_among(
        &self,
        request: &PlacementRequest,
        clusters: &[ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        let refs: Vec<&ClusterStatus> = clusters.iter().collect();
        self.place(request, &refs)
    }
}

impl<P: PlacementPolicy + ?Sized> PlacementPolicy for Box<P> {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        (**self).place(request, clusters)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn needs_footprint(&self) -> bool {
        (**self).needs_footprint()
    }
}

impl<P: PlacementPolicy + ?Sized> PlacementPolicy for std::sync::Arc<P> {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        (**self).place(request, clusters)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn needs_footprint(&self) -> bool {
        (**self).needs_footprint()
    }
}

/// Splits `clusters` into those that admit the request and the rejections of the rest.
pub(crate) fn admissible<'a>(
    request: &PlacementRequest,
    clusters: &[&'a ClusterStatus],
) -> (Vec<&'a ClusterStatus>, Vec<Rejection>) {
    let mut ok = Vec::with_capacity(clusters.len());
    let mut rejected = Vec::new();
    for c in clusters {
        match c.admits(request.expected_bytes) {
            Ok(()) => ok.push(*c),
            Err(reason) => rejected.push(Rejection {
                cluster: c.id().clone(),
                reason,
            }),
        }
    }
    (ok, rejected)
}

/// Ranks the admissible clusters by `key` (highest wins; ties go to configuration order).
pub(crate) fn pick_max<K: PartialOrd>(
    request: &PlacementRequest,
    clusters: &[&ClusterStatus],
    key: impl Fn(&ClusterStatus) -> K,
) -> Result<ClusterId, PlacementError> {
    let (ok, rejections) = admissible(request, clusters);
    let mut best: Option<(&ClusterStatus, K)> = None;
    for c in ok {
        let k = key(c);
        let better = match &best {
            None => true,
            Some((_, bk)) => k.partial_cmp(bk) == Some(std::cmp::Ordering::Greater),
        };
        if better {
            best = Some((c, k));
        }
    }
    best.map(|(c, _)| c.id().clone())
        .ok_or(PlacementError::NoFit { rejections })
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::cluster::{ClusterSpec, ClusterState};

    /// A cluster with the given id, capacity, usage and labels.
    pub(crate) fn cluster(id: &str, cap: u64, used: u64, labels: &[(&str, &str)]) -> ClusterStatus {
        let mut spec = ClusterSpec::new(
            ClusterId::new(id).unwrap(),
            "http://127.0.0.1:1".parse().unwrap(),
            cap,
        )
        .high_water_mark(1.0);
        for (k, v) in labels {
            spec = spec.label(*k, *v);
        }
        ClusterStatus::new(spec).with_used_bytes(used)
    }

    pub(crate) fn state(c: ClusterStatus, s: ClusterState) -> ClusterStatus {
        c.with_state(s)
    }

    pub(crate) fn request(container: &str) -> PlacementRequest {
        PlacementRequest::new(
            AccountName::new("AUTH_test").unwrap(),
            ContainerName::new(container).unwrap(),
        )
    }

    pub(crate) fn id(s: &str) -> ClusterId {
        ClusterId::new(s).unwrap()
    }
}
