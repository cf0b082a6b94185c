//! The registry of current cluster statuses.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use super::{ClusterId, ClusterSpec, ClusterState, ClusterStatus};

/// Errors from the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two clusters share an id.
    #[error("cluster id {id} is configured twice")]
    DuplicateCluster {
        /// The repeated id.
        id: ClusterId,
    },
    /// No cluster has this id.
    #[error("no cluster named {id}")]
    UnknownCluster {
        /// The unknown id.
        id: ClusterId,
    },
}

/// The current view of every cluster, shared by the placement path (which reads
/// snapshots) and whatever refreshes it (a health or capacity probe).
///
/// Reads are a cheap `Arc` clone; an update copies the (small) list and swaps it in,
/// so a placement decision always sees one consistent snapshot.
///
/// ```
/// use federation_core::{ClusterId, ClusterRegistry, ClusterSpec, ClusterState};
/// let id = ClusterId::new("east").unwrap();
/// let spec = ClusterSpec::new(id.clone(), "http://127.0.0.1:8080".parse().unwrap(), 1 << 40);
/// let registry = ClusterRegistry::new(vec![spec]).unwrap();
/// registry.set_state(&id, ClusterState::Draining).unwrap();
/// assert_eq!(registry.get(&id).unwrap().state, ClusterState::Draining);
/// ```
#[derive(Debug)]
pub struct ClusterRegistry {
    current: RwLock<Arc<[ClusterStatus]>>,
}

impl ClusterRegistry {
    /// A registry of freshly configured (online, unmeasured) clusters.
    pub fn new(specs: Vec<ClusterSpec>) -> Result<Self, RegistryError> {
        Self::from_statuses(specs.into_iter().map(ClusterStatus::new).collect())
    }

    /// A registry from full statuses.
    pub fn from_statuses(statuses: Vec<ClusterStatus>) -> Result<Self, RegistryError> {
        for (i, s) in statuses.iter().enumerate() {
            if statuses[..i].iter().any(|o| o.id() == s.id()) {
                return Err(RegistryError::DuplicateCluster { id: s.id().clone() });
            }
        }
        Ok(Self {
            current: RwLock::new(statuses.into()),
        })
    }

    /// The current statuses, in configuration order.
    pub fn snapshot(&self) -> Arc<[ClusterStatus]> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One cluster's current status.
    pub fn get(&self, id: &ClusterId) -> Option<ClusterStatus> {
        self.snapshot().iter().find(|s| s.id() == id).cloned()
    }

    /// Applies `change` to one cluster's status.
    pub fn update(
        &self,
        id: &ClusterId,
        change: impl FnOnce(&mut ClusterStatus),
    ) -> Result<(), RegistryError> {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let mut next: Vec<ClusterStatus> = guard.to_vec();
        let status = next
            .iter_mut()
            .find(|s| s.id() == id)
            .ok_or_else(|| RegistryError::UnknownCluster { id: id.clone() })?;
        change(status);
        *guard = next.into();
        Ok(())
    }

    /// Sets a cluster's state.
    pub fn set_state(&self, id: &ClusterId, state: ClusterState) -> Result<(), RegistryError> {
        self.update(id, |s| s.state = state)
    }

    /// Records a measurement of a cluster's usage, taken at `when`.
    pub fn record_usage(
        &self,
        id: &ClusterId,
        used_bytes: u64,
        when: SystemTime,
    ) -> Result<(), RegistryError> {
        self.update(id, |s| {
            s.used_bytes = used_bytes;
            s.last_seen = Some(when);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> ClusterSpec {
        ClusterSpec::new(
            ClusterId::new(id).unwrap(),
            "http://127.0.0.1:1".parse().unwrap(),
            100,
        )
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err = ClusterRegistry::new(vec![spec("a"), spec("a")]).unwrap_err();
        assert!(matches!(err, RegistryError::DuplicateCluster { .. }));
    }

    #[test]
    fn snapshots_are_stable_across_updates() {
        let r = ClusterRegistry::new(vec![spec("a"), spec("b")]).unwrap();
        let before = r.snapshot();
        let a = ClusterId::new("a").unwrap();
        r.record_usage(&a, 42, SystemTime::now()).unwrap();
        assert_eq!(before[0].used_bytes, 0);
        assert_eq!(r.get(&a).unwrap().used_bytes, 42);
        assert!(r.get(&a).unwrap().last_seen.is_some());
        let missing = ClusterId::new("zzz").unwrap();
        assert!(matches!(
            r.set_state(&missing, ClusterState::Offline),
            Err(RegistryError::UnknownCluster { .. })
        ));
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let r = Arc::new(ClusterRegistry::new(vec![spec("a"), spec("b")]).unwrap());
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let id = ClusterId::new(if t.is_multiple_of(2) { "a" } else { "b" }).unwrap();
                    for _ in 0..100 {
                        r.update(&id, |s| s.used_bytes += 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = r.snapshot();
        assert_eq!(snap[0].used_bytes + snap[1].used_bytes, 800);
    }
}
