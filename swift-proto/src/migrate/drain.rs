//! Draining: moving every container of an account off one cluster.
//!
//! A drain lists the account's containers on the cluster (bases first: a `_segments`
//! container or an archive moves with its base) and moves them elsewhere,
//! `concurrency` migrations at a time, each one to the placement policy's choice among
//! the other clusters. While it runs, no new container of the account is placed on
//! the cluster ([`crate::service::migrate::Drains`]). At its end the account is listed
//! again and whatever is still there (recorded meanwhile, or a move that failed) is
//! moved too, for a few rounds, until nothing is left (`done`) or the rounds run out
//! (`stopped`, with how many are left).
//!
//! Restart-safe (see [`super::leased`]): a drain is saved in the attribute store (a
//! record of the journal account named by its id, attribute `@drain`: the account,
//! the cluster, the concurrency, its moves and its state) with a lease. A proxy killed
//! mid-drain leaves the lease to expire; the resume loop of any proxy with
//! `[migration]` claims it, keeps new containers of the account off the cluster again,
//! waits for the moves that had started (journaled migrations, resumed on their own),
//! and lists the account's containers on the cluster again: the listing is the state,
//! what is still there is what is left. Every saved drain still running also keeps
//! new containers off the cluster on the other proxies that share the store (seen by
//! their resume loop).
//!
//! One drain of an (account, cluster) at a time among every proxy sharing the store:
//! starting one is a compare-and-set on its slot record (attribute `@drain-slot`,
//! named by a digest of the two), which names the drain holding it; the slot is free
//! again once that drain is no longer running (or, never saved, a minute after it was
//! claimed). Of two proxies asked at once, one starts the drain, the other answers
//! 409 naming it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use federation_core::attrs::{
    now_ms, Attributes, ContainerRecord, CreateOutcome, NewContainer, StoreError,
};
use federation_core::migration::{JournalEntry, JournalState};
use federation_core::{AccountName, ClusterId, ContainerName};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::leased::{Job, Leased};
use super::{lease_ms, random_hex, Inner, Migrations, MoveError};
use crate::service::migrate::DrainGuard;

/// Most listings of what is left a drain runs after its first.
const MAX_ROUNDS: usize = 5;

/// A drain, as `GET /federation/v1/drains/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Drain {
    /// Its id.
    pub id: String,
    /// The account.
    pub account: String,
    /// The cluster drained.
    pub cluster: String,
    /// Migrations at once.
    pub concurrency: usize,
    /// `running`, `done` (nothing of the account left on the cluster) or `stopped`.
    pub state: String,
    /// Why it stopped (`stopped`).
    pub reason: Option<String>,
    /// Every move, in the order queued.
    pub moves: Vec<DrainMove>,
}

/// One move of a drain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrainMove {
    /// The container (the containers that move with it move in the same migration).
    pub container: String,
    /// The id given when it was queued: `GET /federation/v1/migrations/{planned}`
    /// answers for its migration once started.
    pub planned: String,
    /// The migration's id, once started.
    pub migration: Option<String>,
    /// `queued`, then the migration's phase (`copying`, …, `done`, `failed`,
    /// `cancelled`), or `not-started` (never started: gone from the cluster, or see
    /// `error`).
    pub phase: String,
    /// Why its last try did not start (no cluster to move to, a refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A drain as saved in the attribute store (attribute `@drain`, with the lease).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DrainJob {
    drain: Drain,
    /// When it started (a migration of one of its containers journaled since then is
    /// its move, even when it was killed before saving the move's id).
    started_ms: u64,
}

impl Job for DrainJob {
    const ATTRIBUTE: &'static str = "@drain";
    const KIND: &'static str = "drain";
    type Shown = Drain;
    fn shown(&self) -> &Drain {
        &self.drain
    }
    fn shown_mut(&mut self) -> &mut Drain {
        &mut self.drain
    }
    fn running(shown: &Drain) -> bool {
        shown.state == "running"
    }
    fn table(inner: &Inner) -> &Mutex<HashMap<String, Drain>> {
        &inner.drain_jobs
    }
}

/// How long a claimed drain slot whose drain is not saved yet stays held (at least):
/// its proxy is listing the cluster; one that died meanwhile frees it after this.
const STARTING_WINDOW_MS: u64 = 60_000;

/// Which drain holds an (account, cluster): a record of the journal account (attribute
/// `@drain-slot`), changed only by compare-and-set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DrainSlot {
    account: String,
    cluster: String,
    /// The drain's id.
    drain: String,
    /// When it was claimed, milliseconds since the Unix epoch.
    since_ms: u64,
}

impl DrainSlot {
    const ATTRIBUTE: &'static str = "@drain-slot";

    fn of(rec: &ContainerRecord) -> Option<Self> {
        serde_json::from_str(rec.attributes.get(Self::ATTRIBUTE)?).ok()
    }

    fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        a.insert(
            Self::ATTRIBUTE.into(),
            serde_json::to_string(self).unwrap_or_default(),
        );
        a
    }
}

/// The slot record's name: a digest of (account, cluster), so that any account name
/// fits in a container name.
fn slot_name(account: &AccountName, cluster: &ClusterId) -> Result<ContainerName, MoveError> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{account}\n{cluster}"));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    ContainerName::new(format!("drain-slot-{hex}")).map_err(|e| MoveError::Fatal(e.to_string()))
}

/// The (account, cluster) of every saved drain still running.
pub(super) fn running_drains(records: &[ContainerRecord]) -> Vec<(AccountName, ClusterId)> {
    records
        .iter()
        .filter_map(Leased::<DrainJob>::of)
        .filter(|s| DrainJob::running(&s.job.drain))
        .filter_map(|s| {
            Some((
                AccountName::new(s.job.drain.account).ok()?,
                ClusterId::new(s.job.drain.cluster).ok()?,
            ))
        })
        .collect()
}

/// Queues the containers `left` on the cluster: a container queued before and never
/// started keeps its planned id, any other gets a new one (`fresh`). Returns the
/// queue, (planned id, container).
fn queue_left(
    moves: &mut Vec<DrainMove>,
    left: &[String],
    mut fresh: impl FnMut() -> String,
) -> Vec<(String, String)> {
    let mut queue = Vec::new();
    for name in left {
        let planned = match moves
            .iter_mut()
            .find(|m| &m.container == name && m.migration.is_none())
        {
            Some(m) => {
                "queued".clone_into(&mut m.phase);
                m.planned.clone()
            }
            None => {
                let planned = fresh();
                moves.push(DrainMove {
                    container: name.clone(),
                    planned: planned.clone(),
                    migration: None,
                    phase: "queued".into(),
                    error: None,
                });
                planned
            }
        };
        queue.push((planned, name.clone()));
    }
    queue
}

/// What the journal tells of a drain's move: its migration (saved, else the latest
/// of its container journaled since the drain started) and that one's state.
fn journaled<'a>(
    m: &DrainMove,
    account: &str,
    started_ms: u64,
    journal: &'a [JournalEntry],
) -> Option<&'a JournalEntry> {
    match &m.migration {
        Some(mid) => journal.iter().find(|e| &e.id == mid),
        None => journal
            .iter()
            .filter(|e| {
                e.account == account
                    && e.created_ms >= started_ms
                    && e.containers.contains(&m.container)
            })
            .max_by_key(|e| e.created_ms),
    }
}

/// A journal state as a move's phase.
fn phase_of(state: &JournalState) -> &'static str {
    match state {
        JournalState::Running => "running",
        JournalState::Cancelling => "cancelling",
        JournalState::Done => "done",
        JournalState::Failed { .. } => "failed",
        JournalState::Cancelled => "cancelled",
    }
}

fn planned_id() -> String {
    format!("m{}-{}", now_ms(), random_hex(4))
}

impl Migrations {
    /// Moves every container of `account` on `cluster` elsewhere, `concurrency` at a
    /// time (saved first); returns the drain's id and the planned ids of its first
    /// moves (containers that move with another count under it).
    pub async fn start_drain(
        &self,
        account: &AccountName,
        cluster: &ClusterId,
        concurrency: usize,
    ) -> Result<(String, Vec<String>), MoveError> {
        // An unknown cluster (a typo) is refused, not "drained" of nothing.
        self.cluster(cluster)?;
        // A drain of the same cluster already running (here, saved by another proxy,
        // or saved by a proxy that died and not resumed yet) is the one drain of it.
        if let Some(d) = self.drain_list().await?.into_iter().find(|d| {
            DrainJob::running(d) && d.account == account.as_str() && d.cluster == cluster.as_str()
        }) {
            return Err(MoveError::Refused(format!(
                "drain {} of {cluster} for {account} is already running",
                d.id
            )));
        }
        // From here no new container of the account is placed on the cluster (until
        // the drain ends): else it would end with the cluster still holding some.
        let guard = self
            .inner
            .drains
            .try_begin(account, cluster)
            .ok_or_else(|| {
                MoveError::Refused(format!("{account} is already being drained from {cluster}"))
            })?;
        // Somewhere to go: a cluster the account is being drained from is none (two
        // drains towards each other would move the containers back and forth).
        let draining = self.inner.drains.draining(account);
        let snapshot = self.inner.locator.registry().snapshot();
        if !snapshot
            .iter()
            .any(|c| c.id() != cluster && !draining.contains(c.id()))
        {
            return Err(MoveError::Refused(format!(
                "no cluster to move {account}'s containers to: every other one is being drained"
            )));
        }
        let id = format!("d{}-{}", now_ms(), random_hex(4));
        // The one drain of (account, cluster) among every proxy sharing the store: a
        // compare-and-set on its slot record (the check above reads, then writes; two
        // proxies asked at once would both pass it).
        let slot = self.claim_drain_slot(account, cluster, &id).await?;
        match self.create_drain(account, cluster, concurrency, &id).await {
            Ok((job, queue)) => {
                let planned = queue.iter().map(|(p, _)| p.clone()).collect();
                self.run_drain(job, guard, queue);
                Ok((id, planned))
            }
            Err(e) => {
                // Not started: the slot is free again (else it would be held until
                // the "starting" window ends).
                if let Err(undo) = self
                    .inner
                    .locator
                    .store()
                    .delete(&Self::journal_account(), &slot.0, Some(slot.1))
                    .await
                {
                    tracing::warn!(%id, error = %undo, "drain: could not free its slot");
                }
                Err(e)
            }
        }
    }

    /// Lists what is left on `cluster` and saves the new drain `id` (leased here).
    async fn create_drain(
        &self,
        account: &AccountName,
        cluster: &ClusterId,
        concurrency: usize,
        id: &str,
    ) -> Result<(DrainJob, Vec<(String, String)>), MoveError> {
        let left = self.left_on(account, cluster, false).await?;
        let mut moves = Vec::new();
        let queue = queue_left(&mut moves, &left, planned_id);
        let job = DrainJob {
            drain: Drain {
                id: id.to_owned(),
                account: account.as_str().to_owned(),
                cluster: cluster.to_string(),
                concurrency,
                state: "running".into(),
                reason: None,
                moves,
            },
            started_ms: now_ms(),
        };
        self.create_job(id, job.clone()).await?;
        Ok((job, queue))
    }

    /// Takes the slot of (account, cluster) for drain `id` by compare-and-set on its
    /// record (created if absent): of proxies asking at once, one wins; the others, and
    /// any later one while the drain runs (or is still being started), are refused
    /// naming it. Returns the slot record's name and version.
    async fn claim_drain_slot(
        &self,
        account: &AccountName,
        cluster: &ClusterId,
        id: &str,
    ) -> Result<(ContainerName, u64), MoveError> {
        let store = self.inner.locator.store();
        let journal = Self::journal_account();
        let name = slot_name(account, cluster)?;
        let ours = DrainSlot {
            account: account.as_str().to_owned(),
            cluster: cluster.to_string(),
            drain: id.to_owned(),
            since_ms: now_ms(),
        };
        for _ in 0..16 {
            let rec = match store.get(&journal, &name).await? {
                Some(r) => r,
                None => {
                    let new =
                        NewContainer::new(journal.clone(), name.clone(), self.journal_home()?)
                            .attributes(ours.attributes());
                    match store.create_if_absent(new).await? {
                        CreateOutcome::Created(r) => return Ok((name, r.version)),
                        CreateOutcome::Existing(r) => r,
                    }
                }
            };
            if let Some(held) = DrainSlot::of(&rec) {
                if self.slot_held(&held).await? {
                    return Err(MoveError::Refused(format!(
                        "drain {} of {cluster} for {account} is already running",
                        held.drain
                    )));
                }
            }
            match store
                .update_attributes(&journal, &name, rec.version, ours.attributes())
                .await
            {
                Ok(r) => return Ok((name, r.version)),
                Err(StoreError::Conflict { .. }) => continue, // read again: who won?
                Err(e) => return Err(e.into()),
            }
        }
        Err(MoveError::Store("the drain slot kept changing".into()))
    }

    /// Whether a slot still holds its drain: running (here, elsewhere, or saved by a
    /// proxy that died and not resumed yet), or not saved yet but claimed within the
    /// "starting" window (its proxy is listing the cluster).
    async fn slot_held(&self, held: &DrainSlot) -> Result<bool, MoveError> {
        Ok(match self.drain(&held.drain).await? {
            Some(d) => DrainJob::running(&d),
            None => {
                let window = lease_ms(&self.inner.config).max(STARTING_WINDOW_MS);
                held.since_ms.saturating_add(window) > now_ms()
            }
        })
    }

    /// The containers of `account` on `cluster` not moving now, or also those marked
    /// as moving (`with_marked`; bases first; one per group).
    async fn left_on(
        &self,
        account: &AccountName,
        cluster: &ClusterId,
        with_marked: bool,
    ) -> Result<Vec<String>, MoveError> {
        Ok(self
            .groups_on(account, |c| c == cluster, with_marked)
            .await?
            .into_iter()
            .map(|(r, _)| r.container.as_str().to_owned())
            .collect())
    }

    /// Runs a drain on the background (leased): `first` queued, then rounds of
    /// waiting for its moves and listing what is left.
    fn run_drain(&self, job: DrainJob, guard: DrainGuard, first: Vec<(String, String)>) {
        let this = self.clone();
        let id = job.drain.id.clone();
        let work = async move {
            let _guard = guard;
            let id = &job.drain.id;
            let (Ok(account), Ok(drained)) = (
                AccountName::new(job.drain.account.clone()),
                ClusterId::new(job.drain.cluster.clone()),
            ) else {
                return;
            };
            let mut queue = first;
            let mut end = None;
            for _ in 0..=MAX_ROUNDS {
                this.drain_queue(id, &account, &drained, job.drain.concurrency, queue)
                    .await;
                // Moves off the cluster still running (resumed from the journal on
                // their own, or left to another proxy) decide what is left.
                this.await_drain_moves(id, &account, &drained, job.started_ms)
                    .await;
                // Containers created before the guard took effect but recorded after
                // the listing, a `_segments` container placed next to its base while
                // the base still waited, a failed move: moved too. No migration off the
                // cluster is active now: one still marked as moving is stuck (a
                // migration that failed without rolling back) and is left too (its
                // move is refused, and the drain stops naming it, not `done`).
                let left = match this.left_on(&account, &drained, true).await {
                    Ok(left) => left,
                    Err(e) => {
                        tracing::warn!(%id, error = %e, "drain: could not list the account again");
                        end = Some(format!("could not list the account again: {e}"));
                        break;
                    }
                };
                if left.is_empty() {
                    end = None;
                    break;
                }
                queue = Vec::new();
                let mut why = None;
                this.update_memory::<DrainJob>(id, |d| {
                    why = d
                        .moves
                        .iter()
                        .rev()
                        .find(|m| left.contains(&m.container) && m.error.is_some())
                        .and_then(|m| m.error.clone());
                    queue = queue_left(&mut d.moves, &left, planned_id);
                });
                end = Some(format!(
                    "{} containers still on the cluster after {MAX_ROUNDS} rounds{}",
                    left.len(),
                    why.map(|w| format!(" (last: {w})")).unwrap_or_default()
                ));
            }
            tracing::info!(%id, %account, cluster = %drained, reason = end.as_deref().unwrap_or(""), "drain finished");
            this.update_memory::<DrainJob>(id, |d| {
                d.state = if end.is_some() { "stopped" } else { "done" }.into();
                d.reason = end;
                for m in &mut d.moves {
                    if m.phase == "queued" {
                        "not-started".clone_into(&mut m.phase);
                    }
                }
            });
        };
        self.run_leased::<DrainJob>(id, work);
    }

    /// Moves the containers of `queue` off `drained`, `concurrency` at a time (each
    /// with its planned id as an alias of its migration's).
    async fn drain_queue(
        &self,
        id: &str,
        account: &AccountName,
        drained: &ClusterId,
        concurrency: usize,
        queue: Vec<(String, String)>,
    ) {
        futures::stream::iter(queue)
            .for_each_concurrent(concurrency.max(1), |(planned, name)| async move {
                let Ok(name) = ContainerName::new(name) else {
                    return;
                };
                let set = |f: &dyn Fn(&mut DrainMove)| {
                    self.update_memory::<DrainJob>(id, |d| {
                        if let Some(m) = d.moves.iter_mut().find(|m| m.planned == planned) {
                            f(m);
                        }
                    });
                };
                let Some(to) = self.choose_other(account, &name, drained) else {
                    tracing::warn!(%id, %account, container = %name, "drain: no cluster to move to");
                    set(&|m| {
                        "not-started".clone_into(&mut m.phase);
                        m.error = Some("no cluster to move to".into());
                    });
                    return;
                };
                let r = self
                    .move_and_wait(account, &name, Some(to), |mid| {
                        self.alias(&planned, mid);
                        set(&|m| {
                            m.migration = Some(mid.to_owned());
                            "copying".clone_into(&mut m.phase);
                            m.error = None;
                        });
                    })
                    .await;
                match r {
                    Ok(p) => set(&|m| m.phase.clone_from(&p.phase)),
                    Err(e) => {
                        tracing::warn!(%id, %account, container = %name, error = %e, "drain: could not start a move");
                        set(&|m| {
                            "not-started".clone_into(&mut m.phase);
                            m.error = Some(e.to_string());
                        });
                    }
                }
            })
            .await;
    }

    /// Waits until no migration of `account` off `drained` is active in the journal,
    /// showing each of the drain's moves' state as journaled.
    async fn await_drain_moves(
        &self,
        id: &str,
        account: &AccountName,
        drained: &ClusterId,
        started_ms: u64,
    ) {
        loop {
            let journal: Vec<JournalEntry> = match self.journal().await {
                Ok(j) => j.into_iter().map(|(_, e)| e).collect(),
                Err(e) => {
                    tracing::warn!(%id, error = %e, "drain: could not read the journal; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.update_memory::<DrainJob>(id, |d| {
                for m in &mut d.moves {
                    if let Some(e) = journaled(m, account.as_str(), started_ms, &journal) {
                        m.migration = Some(e.id.clone());
                        let live = self.progress_of(&e.id).map(|p| p.phase);
                        m.phase = match (&e.state, live) {
                            (JournalState::Running, Some(p)) => p,
                            (s, _) => phase_of(s).to_owned(),
                        };
                    }
                }
            });
            let active = journal.iter().any(|e| {
                e.account == account.as_str() && &e.from == drained && e.state.is_active()
            });
            if !active {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Takes over running drains whose lease expired (a proxy died mid-way): claimed
    /// by compare-and-set; the guard is taken again and the rounds go on from a new
    /// listing of the cluster.
    pub(super) async fn resume_drains(&self, records: &[ContainerRecord]) -> Result<(), MoveError> {
        for (id, mut job) in self.claim_expired::<DrainJob>(records).await? {
            let (Ok(account), Ok(cluster)) = (
                AccountName::new(job.drain.account.clone()),
                ClusterId::new(job.drain.cluster.clone()),
            ) else {
                tracing::warn!(%id, "unreadable saved drain; left alone");
                continue;
            };
            let guard = self.inner.drains.begin(&account, &cluster);
            job.drain.reason = None;
            self.update_memory::<DrainJob>(&id, |d| d.reason = None);
            self.run_drain(job, guard, Vec::new());
        }
        Ok(())
    }

    /// A drain's state: this proxy's, else as saved.
    pub async fn drain(&self, id: &str) -> Result<Option<Drain>, MoveError> {
        self.job::<DrainJob>(id).await
    }

    /// Every drain: as saved, with this proxy's newer state of those it runs.
    pub async fn drain_list(&self) -> Result<Vec<Drain>, MoveError> {
        self.jobs::<DrainJob>().await
    }

    /// The migration a drain's planned id stands for, and whether such a planned id
    /// exists (a drain's move still queued has none yet).
    pub(super) async fn planned_migration(
        &self,
        planned: &str,
    ) -> Result<Option<Option<String>>, MoveError> {
        let drains = self.drain_list().await?;
        Ok(drains
            .iter()
            .flat_map(|d| &d.moves)
            .find(|m| m.planned == planned)
            .map(|m| m.migration.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(container: &str, planned: &str, migration: Option<&str>, phase: &str) -> DrainMove {
        DrainMove {
            container: container.into(),
            planned: planned.into(),
            migration: migration.map(Into::into),
            phase: phase.into(),
            error: None,
        }
    }

    #[test]
    fn queued_containers_keep_their_planned_id() {
        let mut moves = vec![
            mv("a", "p-a", Some("m-a"), "done"),
            mv("b", "p-b", None, "queued"),
            mv("c", "p-c", Some("m-c"), "failed"),
        ];
        let mut n = 0;
        let queue = queue_left(&mut moves, &["b".into(), "c".into(), "d".into()], || {
            n += 1;
            format!("new{n}")
        });
        // b never started: same id; c failed: a new move; d is new.
        assert_eq!(
            queue,
            vec![
                ("p-b".into(), "b".into()),
                ("new1".into(), "c".into()),
                ("new2".into(), "d".into())
            ]
        );
        assert_eq!(moves.len(), 5);
        assert_eq!(moves[3], mv("c", "new1", None, "queued"));
        assert_eq!(moves[0].phase, "done");
    }

    fn entry(id: &str, container: &str, created_ms: u64, state: JournalState) -> JournalEntry {
        JournalEntry {
            id: id.into(),
            account: "AUTH_a".into(),
            containers: vec![format!("{container}_segments"), container.into()],
            from: ClusterId::new("east").unwrap(),
            to: ClusterId::new("west").unwrap(),
            state,
            owner: "p".into(),
            lease_until_ms: 0,
            created_ms,
            switched: false,
        }
    }

    #[test]
    fn a_move_killed_before_its_id_was_saved_is_found_in_the_journal() {
        let journal = vec![
            entry("old", "b", 5, JournalState::Cancelled),
            entry("m1", "b", 20, JournalState::Running),
            entry("m2", "b", 30, JournalState::Done),
            entry("x", "c", 40, JournalState::Done),
        ];
        let queued = mv("b", "p-b", None, "queued");
        // The latest since the drain started (10); one from before is not its move.
        assert_eq!(
            journaled(&queued, "AUTH_a", 10, &journal).map(|e| e.id.as_str()),
            Some("m2")
        );
        assert!(journaled(&queued, "AUTH_a", 50, &journal).is_none());
        assert!(journaled(&queued, "AUTH_other", 10, &journal).is_none());
        // A saved id wins.
        let saved = mv("b", "p-b", Some("m1"), "copying");
        assert_eq!(
            journaled(&saved, "AUTH_a", 10, &journal).map(|e| phase_of(&e.state)),
            Some("running")
        );
        // Its own segments container is not another container's move.
        assert!(journaled(&mv("b_s", "p", None, "queued"), "AUTH_a", 0, &journal).is_none());
    }

    fn saved(state: &str, lease_until_ms: u64) -> Leased<DrainJob> {
        Leased {
            job: DrainJob {
                drain: Drain {
                    id: "d1".into(),
                    account: "AUTH_a".into(),
                    cluster: "east".into(),
                    concurrency: 2,
                    state: state.into(),
                    reason: None,
                    moves: vec![mv("b", "p-b", None, "queued")],
                },
                started_ms: 7,
            },
            owner: "proxy-1".into(),
            lease_until_ms,
        }
    }

    #[test]
    fn a_saved_drain_reads_back_and_is_claimable_once_its_lease_expired() {
        let s = saved("running", 100);
        let json = serde_json::to_value(&s).unwrap();
        // The lease sits next to the job's own fields.
        assert_eq!(json["owner"], "proxy-1");
        assert_eq!(json["lease_until_ms"], 100);
        assert_eq!(json["drain"]["cluster"], "east");
        let back: Leased<DrainJob> = serde_json::from_value(json).unwrap();
        assert_eq!(back.job.drain, s.job.drain);
        assert_eq!(back.job.started_ms, 7);
        assert!(!s.claimable(100));
        assert!(s.claimable(101));
        assert!(!saved("done", 0).claimable(101));
        assert!(!saved("stopped", 0).claimable(101));
    }

    #[test]
    fn running_saved_drains_keep_their_cluster() {
        use federation_core::attrs::Attributes;
        let rec = |name: &str, s: &Leased<DrainJob>| {
            let mut attributes = Attributes::new();
            attributes.insert("@drain".into(), serde_json::to_string(s).unwrap());
            federation_core::attrs::NewContainer::new(
                AccountName::new(".stackfed-migrations").unwrap(),
                ContainerName::new(name).unwrap(),
                ClusterId::new("east").unwrap(),
            )
            .attributes(attributes)
            .into_record()
        };
        let records = vec![
            rec("d1", &saved("running", 0)),
            rec("d2", &saved("done", 0)),
        ];
        assert_eq!(
            running_drains(&records),
            vec![(
                AccountName::new("AUTH_a").unwrap(),
                ClusterId::new("east").unwrap()
            )]
        );
    }
}
