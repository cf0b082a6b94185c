//! Cluster health: a probe that marks clusters offline and back online.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use federation_core::attrs::AttributeStore;
use federation_core::{AccountName, ClusterId, ClusterRegistry, ClusterState, ContainerName};

use super::Clusters;

/// Whether the proxy is ready for traffic, as the last background probe found it: at
/// least one cluster online (or draining) and the attribute store answering. `None`
/// until the first probe; `Some(Err(why))` when not ready. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<Mutex<Option<Result<(), String>>>>);

impl Readiness {
    /// What the last probe found (`None` before the first).
    pub fn get(&self) -> Option<Result<(), String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records a probe's finding.
    pub fn set(&self, found: Result<(), String>) {
        metrics::gauge!("stackfed_swift_ready").set(if found.is_ok() { 1.0 } else { 0.0 });
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(found);
    }
}

/// Probes every cluster's `/healthcheck`. A cluster that does not answer 200 within
/// `timeout` on `fall` consecutive probes is marked offline (placement avoids it, its
/// containers answer 503 at once); when it answers again on `rise` consecutive probes
/// it gets back its configured state (online or draining). Both are 1 unless set with
/// [`with_hysteresis`](Self::with_hysteresis) (the proxy's configuration defaults to
/// `probe_fall = 2`, `probe_rise = 1`). Each cluster's state is also the gauge `stackfed_swift_cluster_up`
/// (1 online or draining, 0 offline), each failed probe counts in
/// `stackfed_swift_cluster_probe_failures_total`.
#[derive(Debug, Clone)]
pub struct HealthProbe {
    registry: Arc<ClusterRegistry>,
    clusters: Clusters,
    configured: HashMap<ClusterId, ClusterState>,
    timeout: Duration,
    fall: u32,
    rise: u32,
    /// Per cluster: consecutive failed probes, consecutive good ones.
    streaks: Arc<Mutex<HashMap<ClusterId, (u32, u32)>>>,
    ready: Option<(Readiness, Arc<dyn AttributeStore>)>,
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
            fall: 1,
            rise: 1,
            streaks: Arc::default(),
            ready: None,
        }
    }

    /// After each round, records in `readiness` whether the proxy can serve: a cluster
    /// not offline, and `store` answering a read within the probe's timeout.
    pub fn with_readiness(mut self, readiness: Readiness, store: Arc<dyn AttributeStore>) -> Self {
        self.ready = Some((readiness, store));
        self
    }

    async fn store_answers(&self, store: &dyn AttributeStore) -> Result<(), String> {
        let (Ok(account), Ok(container)) = (
            AccountName::new("AUTH_stackfed-readiness"),
            ContainerName::new("probe"),
        ) else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let found = match tokio::time::timeout(self.timeout, store.get(&account, &container)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("attribute store unreachable: {e}")),
            Err(_) => Err(format!(
                "attribute store unreachable: no answer within {:?}",
                self.timeout
            )),
        };
        metrics::histogram!("stackfed_swift_store_probe_seconds")
            .record(started.elapsed().as_secs_f64());
        found
    }

    /// Marks a cluster offline only after `fall` consecutive failed probes, and back
    /// after `rise` consecutive good ones (each at least 1).
    pub fn with_hysteresis(mut self, fall: u32, rise: u32) -> Self {
        self.fall = fall.max(1);
        self.rise = rise.max(1);
        self
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
            let (fails, goods) = {
                let mut streaks = self
                    .streaks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let e = streaks.entry(c.id().clone()).or_default();
                *e = if ok {
                    (0, e.1.saturating_add(1))
                } else {
                    (e.0.saturating_add(1), 0)
                };
                *e
            };
            if !ok {
                metrics::counter!("stackfed_swift_cluster_probe_failures_total", "cluster" => c.id().to_string())
                    .increment(1);
            }
            let healthy = self
                .configured
                .get(c.id())
                .copied()
                .unwrap_or(ClusterState::Online);
            let wanted = if c.state == ClusterState::Offline {
                if goods >= self.rise {
                    healthy
                } else {
                    ClusterState::Offline
                }
            } else if fails >= self.fall {
                ClusterState::Offline
            } else {
                healthy
            };
            metrics::gauge!("stackfed_swift_cluster_up", "cluster" => c.id().to_string()).set(
                if wanted == ClusterState::Offline {
                    0.0
                } else {
                    1.0
                },
            );
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
        if let Some((readiness, store)) = &self.ready {
            let any_up = self
                .registry
                .snapshot()
                .iter()
                .any(|c| c.state != ClusterState::Offline);
            let found = if any_up {
                self.store_answers(store.as_ref()).await
            } else {
                Err("no cluster online".to_owned())
            };
            if let Err(why) = &found {
                tracing::warn!(%why, "not ready");
            }
            readiness.set(found);
        }
    }
}
