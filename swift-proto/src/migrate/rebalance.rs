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
//! Restart-safe (see [`super::leased`]): the rebalance's state (request, usage before,
//! moves) is saved in the attribute store next to the migrations' journal (a record of
//! the journal account named by its id, attribute `@rebalance`) with a lease, as
//! migrations are; it is saved whenever it renews its lease (a third of the lease)
//! and when it ends.
//! A proxy killed mid-rebalance leaves the lease to expire; the resume loop of any
//! proxy with `[migration]` (the same one restarted included) takes it over: the
//! moves it had started resume as journaled migrations on their own, every container
//! it had already planned is not planned again, and the rounds go on from the usage as
//! that proxy knows it. A cluster's usage that still reads what it did when the
//! rebalance started (configured, not measured since) is first adjusted by the moves
//! journaled done, which the killed proxy had counted in its memory only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use federation_core::attrs::{now_ms, ContainerRecord};
use federation_core::migration::JournalState;
use federation_core::migration::{plan_rebalance, Candidate, FillTarget};
use federation_core::placement::PlacementRequest;
use federation_core::{AccountName, ClusterId, ClusterState, ContainerName};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::leased::Job;
use super::{mirror, random_hex, Inner, Migrations, MoveError};
use crate::cluster::SwiftCluster;

/// A rebalance as saved in the attribute store (attribute `@rebalance`, with the lease).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RebalanceJob {
    rebalance: Rebalance,
    concurrency: usize,
    /// Each cluster's used bytes when it started.
    before: BTreeMap<String, u64>,
    /// When it started (a migration of one of its containers journaled since then is
    /// one of its moves, even when it was killed before saving the move's id).
    #[serde(default)]
    started_ms: u64,
}

impl Job for RebalanceJob {
    const ATTRIBUTE: &'static str = "@rebalance";
    const KIND: &'static str = "rebalance";
    type Shown = Rebalance;
    fn shown(&self) -> &Rebalance {
        &self.rebalance
    }
    fn shown_mut(&mut self) -> &mut Rebalance {
        &mut self.rebalance
    }
    fn running(shown: &Rebalance) -> bool {
        shown.state == "running"
    }
    fn table(inner: &Inner) -> &Mutex<HashMap<String, Rebalance>> {
        &inner.rebalances
    }
}

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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Starts a rebalance (saved first); returns its id (progress:
    /// [`Migrations::rebalance`]).
    pub async fn start_rebalance(&self, request: RebalanceRequest) -> Result<String, MoveError> {
        let id = format!("r{}-{}", now_ms(), random_hex(4));
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
        let job = RebalanceJob {
            rebalance: state,
            concurrency: request.concurrency,
            before: before.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            started_ms: now_ms(),
        };
        self.create_job(&id, job).await?;
        self.run_rebalance(id.clone(), request, before, None);
        Ok(id)
    }

    /// Runs a rebalance's rounds on the background, renewing (and saving) it every
    /// third of the lease; losing the lease stops it.
    fn run_rebalance(
        &self,
        id: String,
        request: RebalanceRequest,
        before: BTreeMap<ClusterId, u64>,
        resumed: Option<RebalanceJob>,
    ) {
        let this = self.clone();
        let work = {
            let id = id.clone();
            async move {
                let rounds = async {
                    let mut tried = HashSet::new();
                    if let Some(saved) = &resumed {
                        // Its moves are journaled migrations that resume on their own:
                        // wait for them, so that the rounds plan from their outcome.
                        this.await_moves(&id, saved, &before, request.target)
                            .await?;
                        this.restore_usage(saved, &before).await;
                        tried = this
                            .memory_rebalance(&id)
                            .map(|r| r.moves)
                            .unwrap_or_default()
                            .iter()
                            .map(|m| (m.account.clone(), m.container.clone()))
                            .collect();
                    }
                    this.rebalance_rounds(&id, &request, &before, tried).await
                };
                let (state, reason) = match rounds.await {
                    Ok(None) => ("done", None),
                    Ok(Some(why)) => ("stopped", Some(why)),
                    Err(e) => ("stopped", Some(e.to_string())),
                };
                tracing::info!(%id, state, reason = reason.as_deref().unwrap_or(""), "rebalance finished");
                this.update_rebalance(&id, &before, request.target, |r| {
                    r.state = state.into();
                    r.reason = reason;
                });
            }
        };
        self.run_leased::<RebalanceJob>(id, work);
    }

    /// Writes this proxy's state of a rebalance to the store and renews its lease.
    async fn save_rebalance(&self, id: &str) -> Result<(), MoveError> {
        self.save_job::<RebalanceJob>(id, false).await
    }

    /// Takes over running rebalances whose lease expired (a proxy died mid-way):
    /// claimed by compare-and-set, then run from a new round.
    pub(super) async fn resume_rebalances(
        &self,
        records: &[ContainerRecord],
    ) -> Result<(), MoveError> {
        for (id, saved) in self.claim_expired::<RebalanceJob>(records).await? {
            let (Ok(target), Ok(accounts)) = (
                FillTarget::new(saved.rebalance.fill_target),
                saved
                    .rebalance
                    .accounts
                    .iter()
                    .map(|a| AccountName::new(a.clone()))
                    .collect::<Result<Vec<_>, _>>(),
            ) else {
                tracing::warn!(%id, "unreadable saved rebalance; left alone");
                continue;
            };
            let before: BTreeMap<ClusterId, u64> = saved
                .before
                .iter()
                .filter_map(|(k, v)| ClusterId::new(k.clone()).ok().map(|k| (k, *v)))
                .collect();
            self.update_memory::<RebalanceJob>(&id, |r| r.reason = None);
            self.run_rebalance(
                id,
                RebalanceRequest {
                    target,
                    accounts,
                    concurrency: saved.concurrency,
                },
                before,
                Some(saved),
            );
        }
        Ok(())
    }

    /// Waits until every started move of a resumed rebalance has ended (its journal
    /// entry done, failed or cancelled), showing each one's outcome.
    async fn await_moves(
        &self,
        id: &str,
        saved: &RebalanceJob,
        before: &BTreeMap<ClusterId, u64>,
        target: FillTarget,
    ) -> Result<(), MoveError> {
        loop {
            let journal = self.journal().await?;
            let state = |mid: &str| {
                journal
                    .iter()
                    .find(|(_, e)| e.id == mid)
                    .map(|(_, e)| e.state.clone())
            };
            // A move killed before its migration's id was saved: the latest migration
            // of that container journaled since the rebalance started.
            let started = |m: &RebalanceMove| {
                journal
                    .iter()
                    .filter(|(_, e)| {
                        e.account == m.account
                            && e.created_ms >= saved.started_ms
                            && e.containers.contains(&m.container)
                    })
                    .max_by_key(|(_, e)| e.created_ms)
                    .map(|(_, e)| e.id.clone())
            };
            let mut running = false;
            let mut found = Vec::new();
            for m in self
                .memory_rebalance(id)
                .map(|r| r.moves)
                .unwrap_or_default()
            {
                let mid = m.migration.clone().or_else(|| started(&m));
                let phase = match mid.as_deref().map(state) {
                    None => "not-started",
                    Some(None) => "unknown",
                    // Ended, but run here and not yet counted in the usage.
                    Some(Some(JournalState::Done))
                        if mid
                            .as_deref()
                            .and_then(|i| self.progress_of(i))
                            .is_some_and(|p| p.phase != "done") =>
                    {
                        running = true;
                        "cleaning"
                    }
                    Some(Some(JournalState::Done)) => "done",
                    Some(Some(JournalState::Failed { .. })) => "failed",
                    Some(Some(JournalState::Cancelled)) => "cancelled",
                    Some(Some(JournalState::Running | JournalState::Cancelling)) => {
                        running = true;
                        "copying"
                    }
                };
                found.push((mid, phase));
            }
            self.update_rebalance(id, before, target, |r| {
                for (m, (mid, phase)) in r.moves.iter_mut().zip(&found) {
                    (*phase).clone_into(&mut m.phase);
                    m.migration.clone_from(mid);
                }
            });
            if !running {
                // Planned but never started: not a move; the rounds may plan it again.
                self.update_rebalance(id, before, target, |r| {
                    r.moves.retain(|m| m.phase != "not-started");
                });
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// A cluster's usage that still reads what it did when the rebalance started (not
    /// measured since: configured) follows the moves journaled done, which the proxy
    /// that ran them had counted in its memory only.
    async fn restore_usage(&self, saved: &RebalanceJob, before: &BTreeMap<ClusterId, u64>) {
        let Ok(journal) = self.journal().await else {
            return;
        };
        let registry = self.inner.locator.registry();
        let unchanged = |c: &ClusterId| {
            registry
                .get(c)
                .is_some_and(|s| before.get(c) == Some(&s.used_bytes))
        };
        let done: HashSet<&str> = journal
            .iter()
            .filter(|(_, e)| e.state == JournalState::Done)
            .map(|(_, e)| e.id.as_str())
            .collect();
        let mut moved: Vec<(ClusterId, ClusterId, u64)> = Vec::new();
        let moves = self
            .memory_rebalance(&saved.rebalance.id)
            .map_or_else(|| saved.rebalance.moves.clone(), |r| r.moves);
        for m in &moves {
            let Some(mid) = m.migration.as_deref() else {
                continue;
            };
            // Moves this process ran (resumed) count themselves when they end.
            if !done.contains(mid) || self.progress_of(mid).is_some() {
                continue;
            }
            if let (Ok(from), Ok(to)) =
                (ClusterId::new(m.from.clone()), ClusterId::new(m.to.clone()))
            {
                moved.push((from, to, m.bytes));
            }
        }
        let fixed: HashSet<ClusterId> = moved
            .iter()
            .flat_map(|(f, t, _)| [f.clone(), t.clone()])
            .filter(|c| unchanged(c))
            .collect();
        for (from, to, bytes) in moved {
            if fixed.contains(&from) {
                let _ =
                    registry.update(&from, |s| s.used_bytes = s.used_bytes.saturating_sub(bytes));
            }
            if fixed.contains(&to) {
                let _ = registry.update(&to, |s| s.used_bytes = s.used_bytes.saturating_add(bytes));
            }
        }
    }

    fn memory_rebalance(&self, id: &str) -> Option<Rebalance> {
        self.memory::<RebalanceJob>(id)
    }

    /// A rebalance's state: this proxy's, else as saved (run or finished by another
    /// proxy, or before a restart).
    pub async fn rebalance(&self, id: &str) -> Result<Option<Rebalance>, MoveError> {
        self.job::<RebalanceJob>(id).await
    }

    /// Every rebalance: as saved, with this proxy's newer state of those it runs.
    pub async fn rebalances(&self) -> Result<Vec<Rebalance>, MoveError> {
        self.jobs::<RebalanceJob>().await
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
        self.update_memory::<RebalanceJob>(id, |r| {
            r.clusters = clusters;
            f(r);
        });
    }

    /// Runs rounds until done (`None`) or stopped (`Some(why)`).
    async fn rebalance_rounds(
        &self,
        id: &str,
        request: &RebalanceRequest,
        before: &BTreeMap<ClusterId, u64>,
        mut tried: HashSet<(String, String)>,
    ) -> Result<Option<String>, MoveError> {
        let target = request.target;
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
                for (record, group) in self.groups_on(account, |c| over.contains(c), false).await? {
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
            let first = self.memory_rebalance(id).map_or(0, |r| r.moves.len());
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
            // Saved before any move starts: a proxy killed from here on leaves the
            // plan to the one that resumes it.
            match self.save_rebalance(id).await {
                Ok(()) => {}
                Err(e @ MoveError::LeaseLost(_)) => return Err(e),
                Err(e) => tracing::warn!(%id, error = %e, "could not save a rebalance's plan"),
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

#[cfg(test)]
mod tests {
    use super::super::leased::Leased;
    use super::*;

    #[test]
    fn a_rebalance_saved_before_the_lease_was_shared_reads_back() {
        // The shape saved by earlier versions: the lease's fields beside the job's.
        let old = serde_json::json!({
            "rebalance": {"id": "r1", "fill_target": 0.5, "accounts": ["AUTH_a"],
                          "state": "running", "reason": null, "rounds": 1,
                          "clusters": [], "moves": []},
            "concurrency": 2, "before": {"east": 7}, "owner": "proxy-1",
            "lease_until_ms": 100, "started_ms": 5,
        });
        let s: Leased<RebalanceJob> = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(s.owner, "proxy-1");
        assert_eq!(s.job.before.get("east"), Some(&7));
        assert!(s.claimable(101) && !s.claimable(100));
        assert_eq!(serde_json::to_value(&s).unwrap(), old);
    }
}
