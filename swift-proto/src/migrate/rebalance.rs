//! Rebalancing: moving containers until every cluster is under a fill target.
//!
//! A rebalance runs in rounds. Each round takes the clusters' usage as this proxy
//! knows it (configured or measured from `recon_endpoints`, and adjusted by every move
//! it finished), lists the containers of the given accounts on the clusters over the
//! target (with the containers that move with them, and their bytes from the source
//! cluster's HEAD), plans with [`plan_rebalance`] (the pick rule and the destination
//! rule are documented there; the destination is the placement policy's choice among
//! the clusters that stay under the target with the container added) and runs the
//! planned moves, `concurrency` at a time. It stops when a round finds every cluster
//! under the target (`done`) or plans nothing although one is over (`stopped`, with
//! why: nothing left there fits anywhere). A container whose move failed is not tried
//! again by the same rebalance.
//!
//! The rebalance's own state lives in this proxy's memory (the moves it started are
//! journaled migrations: they resume after a restart, the rebalance does not).

use std::collections::{BTreeMap, HashSet};
use std::sync::PoisonError;

use federation_core::migration::{plan_rebalance, Candidate, FillTarget};
use federation_core::placement::PlacementRequest;
use federation_core::{AccountName, ClusterId, ClusterState, ContainerName};
use futures::StreamExt;
use serde::Serialize;

use super::{mirror, random_hex, Migrations, MoveError};
use crate::cluster::SwiftCluster;

/// Most rounds a rebalance runs (each round plans from fresh usage).
const MAX_ROUNDS: usize = 8;

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct RebalanceRequest {
    /// The fill target.
    pub target: FillTarget,
    /// The accounts whose containers may move.
    pub accounts: Vec<AccountName>,
    /// Migrations at once.
    pub concurrency: usize,
}

/// One cluster as the rebalance saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFill {
    /// The cluster.
    pub cluster: String,
    /// Its capacity.
    pub capacity_bytes: u64,
    /// Used bytes when the rebalance started.
    pub used_bytes_before: u64,
    /// Used bytes as this proxy knows them now.
    pub used_bytes: u64,
    /// `used_bytes / capacity_bytes`.
    pub fill: f64,
    /// Whether it is over the target now.
    pub over: bool,
}

/// One move of a rebalance.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceMove {
    /// The account.
    pub account: String,
    /// The container (its group moves with it).
    pub container: String,
    /// From.
    pub from: String,
    /// To.
    pub to: String,
    /// Bytes planned (the group's, from the source's HEAD).
    pub bytes: u64,
    /// The migration's id, once started.
    pub migration: Option<String>,
    /// `planned`, then the migration's phase (`done`, `failed`, …), or `not-started`.
    pub phase: String,
}

/// A rebalance's state, as `GET /federation/v1/rebalances/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Rebalance {
    /// Its id.
    pub id: String,
    /// The target, a fraction.
    pub fill_target: f64,
    /// The accounts.
    pub accounts: Vec<String>,
    /// `running`, `done` (every cluster under the target) or `stopped`.
    pub state: String,
    /// Why it stopped (`stopped`).
    pub reason: Option<String>,
    /// Rounds run.
    pub rounds: usize,
    /// The clusters.
    pub clusters: Vec<ClusterFill>,
    /// Every move, in the order planned.
    pub moves: Vec<RebalanceMove>,
}

impl Migrations {
    /// Starts a rebalance; returns its id (progress: [`Migrations::rebalance`]).
    pub fn start_rebalance(&self, request: RebalanceRequest) -> String {
        let id = format!("r{}-{}", federation_core::attrs::now_ms(), random_hex(4));
        let before: BTreeMap<ClusterId, u64> = self
            .inner
            .locator
            .registry()
            .snapshot()
            .iter()
            .map(|s| (s.id().clone(), s.used_bytes))
            .collect();
        let state = Rebalance {
            id: id.clone(),
            fill_target: request.target.fraction(),
            accounts: request
                .accounts
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
            state: "running".into(),
            reason: None,
            rounds: 0,
            clusters: Vec::new(),
            moves: Vec::new(),
        };
        self.inner
            .rebalances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), state);
        let this = self.clone();
        let rid = id.clone();
        self.inner.background.spawn("rebalance", async move {
            let end = this.rebalance_rounds(&rid, &request, &before).await;
            let (state, reason) = match end {
                Ok(None) => ("done", None),
                Ok(Some(why)) => ("stopped", Some(why)),
                Err(e) => ("stopped", Some(e.to_string())),
            };
            tracing::info!(id = %rid, state, reason = reason.as_deref().unwrap_or(""), "rebalance finished");
            this.update_rebalance(&rid, &before, request.target, |r| {
                r.state = state.into();
                r.reason = reason;
            });
        });
        id
    }

    /// A rebalance's state.
    pub fn rebalance(&self, id: &str) -> Option<Rebalance> {
        self.inner
            .rebalances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every rebalance this proxy ran.
    pub fn rebalances(&self) -> Vec<Rebalance> {
        let mut all: Vec<_> = self
            .inner
            .rebalances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn update_rebalance(
        &self,
        id: &str,
        before: &BTreeMap<ClusterId, u64>,
        target: FillTarget,
        f: impl FnOnce(&mut Rebalance),
    ) {
        let clusters = self
            .inner
            .locator
            .registry()
            .snapshot()
            .iter()
            .map(|s| ClusterFill {
                cluster: s.id().to_string(),
                capacity_bytes: s.spec.capacity_bytes,
                used_bytes_before: before.get(s.id()).copied().unwrap_or(s.used_bytes),
                used_bytes: s.used_bytes,
                fill: s.fill_ratio(),
                over: target.over(s.used_bytes, s.spec.capacity_bytes),
            })
            .collect();
        let mut all = self
            .inner
            .rebalances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = all.get_mut(id) {
            r.clusters = clusters;
            f(r);
        }
    }

    /// Runs rounds until done (`None`) or stopped (`Some(why)`).
    async fn rebalance_rounds(
        &self,
        id: &str,
        request: &RebalanceRequest,
        before: &BTreeMap<ClusterId, u64>,
    ) -> Result<Option<String>, MoveError> {
        let target = request.target;
        let mut tried: HashSet<(String, String)> = HashSet::new();
        for round in 1..=MAX_ROUNDS {
            let snapshot = self.inner.locator.registry().snapshot();
            let over: HashSet<ClusterId> = snapshot
                .iter()
                .filter(|s| {
                    s.spec.capacity_bytes > 0 && target.over(s.used_bytes, s.spec.capacity_bytes)
                })
                .map(|s| s.id().clone())
                .collect();
            self.update_rebalance(id, before, target, |r| r.rounds = round);
            if over.is_empty() {
                return Ok(None);
            }
            let mut candidates = Vec::new();
            for account in &request.accounts {
                for (record, group) in self.groups_on(account, |c| over.contains(c)).await? {
                    let key = (
                        account.as_str().to_owned(),
                        record.container.as_str().to_owned(),
                    );
                    if tried.contains(&key) {
                        continue;
                    }
                    let from = self.cluster(&record.cluster)?;
                    candidates.push(Candidate {
                        account: key.0,
                        container: key.1,
                        cluster: record.cluster.clone(),
                        bytes: self.group_bytes(from, account, &group).await?,
                    });
                }
            }
            let policy = self.inner.locator.policy();
            let (plan, _) = plan_rebalance(&snapshot, &candidates, target, |c, fits| {
                let (Ok(account), Ok(container)) = (
                    AccountName::new(c.account.clone()),
                    ContainerName::new(c.container.clone()),
                ) else {
                    return None;
                };
                let mut req = PlacementRequest::new(account, container);
                req.expected_bytes = c.bytes;
                policy.place(&req, fits).ok()
            });
            if plan.is_empty() {
                let names: Vec<String> = over.iter().map(ToString::to_string).collect();
                return Ok(Some(format!(
                    "nothing can help: no container left on {} fits on a cluster that stays \
                     under the target (online, not draining)",
                    names.join(", ")
                )));
            }
            tracing::info!(%id, round, moves = plan.len(), "rebalance round planned");
            let first = self.rebalance(id).map_or(0, |r| r.moves.len());
            self.update_rebalance(id, before, target, |r| {
                r.moves.extend(plan.iter().map(|m| RebalanceMove {
                    account: m.candidate.account.clone(),
                    container: m.candidate.container.clone(),
                    from: m.candidate.cluster.to_string(),
                    to: m.to.to_string(),
                    bytes: m.candidate.bytes,
                    migration: None,
                    phase: "planned".into(),
                }));
            });
            for m in &plan {
                tried.insert((m.candidate.account.clone(), m.candidate.container.clone()));
            }
            futures::stream::iter(plan.into_iter().enumerate())
                .for_each_concurrent(request.concurrency.max(1), |(k, m)| async move {
                    let slot = first + k;
                    let set = |f: &dyn Fn(&mut RebalanceMove)| {
                        self.update_rebalance(id, before, target, |r| {
                            if let Some(x) = r.moves.get_mut(slot) {
                                f(x);
                            }
                        });
                    };
                    let (Ok(account), Ok(name)) = (
                        AccountName::new(m.candidate.account.clone()),
                        ContainerName::new(m.candidate.container.clone()),
                    ) else {
                        return;
                    };
                    // The destination may have gone offline since the plan.
                    if self
                        .inner
                        .locator
                        .registry()
                        .get(&m.to)
                        .is_none_or(|s| s.state != ClusterState::Online)
                    {
                        set(&|x| x.phase = "not-started".into());
                        return;
                    }
                    let r = self
                        .move_and_wait(&account, &name, Some(m.to.clone()), |mid| {
                            let mid = mid.to_owned();
                            set(&|x| {
                                x.migration = Some(mid.clone());
                                x.phase = "copying".into();
                            });
                        })
                        .await;
                    match r {
                        Ok(p) => set(&|x| x.phase.clone_from(&p.phase)),
                        Err(e) => {
                            tracing::warn!(%id, %account, container = %name, error = %e, "rebalance: could not start a move");
                            set(&|x| x.phase = "not-started".into());
                        }
                    }
                })
                .await;
        }
        Ok(Some(format!(
            "still over the target after {MAX_ROUNDS} rounds"
        )))
    }

    /// The bytes a group holds on its cluster.
    async fn group_bytes(
        &self,
        from: &SwiftCluster,
        account: &AccountName,
        group: &[String],
    ) -> Result<u64, MoveError> {
        let mut bytes = 0u64;
        for c in group {
            if let Some(h) = mirror::head(from, self.auth(), account, c).await? {
                bytes = bytes.saturating_add(
                    h.get("x-container-bytes-used")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                );
            }
        }
        Ok(bytes)
    }
}
