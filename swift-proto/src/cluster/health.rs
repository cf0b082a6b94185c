//! Cluster health: a probe that marks clusters offline and back online.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use federation_core::{ClusterId, ClusterRegistry, ClusterState};

use super::Clusters;

/// Probes every cluster's `/healthcheck`. A cluster that does not answer 200 within
/// `timeout` is marked offline (placement avoids it, its containers answer 503 at once);
/// when it answers again it gets back its configured state (online or draining).
#[derive(Debug, Clone)]
pub struct HealthProbe {
    registry: Arc<ClusterRegistry>,
    clusters: Clusters,
    configured: HashMap<ClusterId, ClusterState>,
    timeout: Duration,
}

impl HealthProbe {
    /// A probe of `clusters`, recording in `registry`; `configured` is each cluster's
    /// state when healthy (missing: online).
    pub fn new(
        registry: Arc<ClusterRegistry>,
        clusters: Clusters,
        configured: HashMap<ClusterId, ClusterState>,
        timeout: Duration,
    ) -> Self {
        Self {
            registry,
            clusters,
            configured,
            timeout,
        }
    }

    /// Probes every cluster once, concurrently, and updates the registry.
    pub async fn probe_once(&self) {
        let snapshot = self.registry.snapshot();
        let results = futures::future::join_all(snapshot.iter().map(|c| async move {
            match self.clusters.get(c.id()) {
                Some(cluster) => cluster.healthcheck(self.timeout).await,
                None => false,
            }
        }))
        .await;
        for (c, ok) in snapshot.iter().zip(results) {
            let wanted = if ok {
                self.configured
                    .get(c.id())
                    .copied()
                    .unwrap_or(ClusterState::Online)
            } else {
                ClusterState::Offline
            };
            if wanted != c.state {
                tracing::warn!(cluster = %c.id(), from = %c.state, to = %wanted, "cluster state changed");
            }
            let _ = self.registry.update(c.id(), |s| {
                s.state = wanted;
                if ok {
                    s.last_seen = Some(SystemTime::now());
                }
            });
        }
    }
}
