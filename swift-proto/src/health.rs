//! Cluster health: a probe that marks clusters offline and back online.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use federation_core::{ClusterId, ClusterRegistry, ClusterState, ClusterStatus};
use http::{Request, StatusCode};

use crate::body::empty;
use crate::client::BackendClient;

/// Probes every cluster's `/healthcheck` at an interval. A cluster that does not answer
/// 200 within `timeout` is marked offline (placement avoids it, its containers answer
/// 503 at once); when it answers again it gets back its configured state (online or
/// draining).
#[derive(Debug, Clone)]
pub struct HealthProbe {
    registry: Arc<ClusterRegistry>,
    client: BackendClient,
    configured: HashMap<ClusterId, ClusterState>,
    interval: Duration,
    timeout: Duration,
}

impl HealthProbe {
    /// A probe of the registry's clusters; `configured` is each cluster's state when
    /// healthy (missing: online).
    pub fn new(
        registry: Arc<ClusterRegistry>,
        client: BackendClient,
        configured: HashMap<ClusterId, ClusterState>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        Self {
            registry,
            client,
            configured,
            interval,
            timeout,
        }
    }

    async fn healthy(&self, cluster: &ClusterStatus) -> bool {
        let url = format!(
            "{}/healthcheck",
            cluster.spec.endpoint.as_str().trim_end_matches('/')
        );
        let Ok(req) = Request::get(url).body(empty()) else {
            return false;
        };
        matches!(
            tokio::time::timeout(self.timeout, self.client.send(req)).await,
            Ok(Ok(resp)) if resp.status() == StatusCode::OK
        )
    }

    /// Probes every cluster once, concurrently, and updates the registry.
    pub async fn probe_once(&self) {
        let snapshot = self.registry.snapshot();
        let results = futures::future::join_all(snapshot.iter().map(|c| self.healthy(c))).await;
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

    /// Runs forever (until the task is dropped or aborted).
    pub async fn run(self) {
        every(self.interval, || self.probe_once()).await;
    }
}

/// Runs `task` at once and then every `interval` (a late run delays the next), forever.
pub(crate) async fn every<F, Fut>(interval: Duration, mut task: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        task().await;
    }
}
