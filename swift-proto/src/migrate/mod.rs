//! Live container migration between clusters: the mover, its progress, and the
//! operator's admin API ([`AdminService`]).
//!
//! The protocol (mirror, hold writes, switch by compare-and-set, clean) and its
//! invariants are described in [`federation_core::migration`]; the README has the
//! operator's view. [`Migrations`] runs migrations on a [`Background`]: one task per
//! migration, each holding the migration's lease in the journal, and a resume loop
//! that takes over migrations whose lease expired (a proxy that died mid-move).

mod admin;
mod drain;
mod leased;
mod mirror;
mod rebalance;

pub use admin::AdminService;
pub use drain::{Drain, DrainMove};
pub use rebalance::{Rebalance, RebalanceRequest};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::attrs::{now_ms, Attributes, ContainerRecord, NewContainer, StoreError};
use federation_core::migration::{
    diff, Action, CancelOutcome, JournalEntry, JournalState, MoveMark, Phase, JOURNAL_ACCOUNT,
    JOURNAL_ATTRIBUTE, MIGRATION_ATTRIBUTE,
};
use federation_core::placement::PlacementRequest;
use federation_core::{AccountName, ClusterId, ClusterState, ContainerName, LocateError, Locator};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use stackfed_http::config::duration;
use stackfed_http::Background;

use crate::cluster::{Auth, Credentials, Session, SwiftCluster};
use crate::service::migrate::Inflight;
use crate::FederationService;

/// `[migration]` in the proxy's configuration. Durations are seconds or strings with
/// units (`"30s"`, `"1m"`), as elsewhere; the `*_seconds` spellings are aliases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MigrationConfig {
    /// The operator: a tempauth user in the `.reseller_admin` group on every cluster
    /// (`account:user`). Its credentials also open the admin API.
    pub operator_user: String,
    /// Its key.
    pub operator_key: String,
    /// Objects copied (and deleted from the source) at once, per migration; with
    /// Swift's bulk delete, half as many bulk requests (each deletes two at a time).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long a lease lasts (renewed at a third of it; alias `lease_seconds`).
    #[serde(default = "default_lease", alias = "lease_seconds", with = "duration")]
    pub lease: Duration,
    /// How long to wait after a phase change for every proxy's cache to see it
    /// (default: the locator's cache TTL plus one second; alias `settle_seconds`).
    #[serde(default, alias = "settle_seconds", deserialize_with = "duration::some")]
    pub settle: Option<Duration>,
    /// The longest a client write is held during a switch (alias `max_hold_seconds`).
    #[serde(
        default = "default_hold",
        alias = "max_hold_seconds",
        with = "duration"
    )]
    pub max_hold: Duration,
    /// Time between looks for migrations to resume (alias `resume_interval_seconds`).
    #[serde(
        default = "default_resume",
        alias = "resume_interval_seconds",
        with = "duration"
    )]
    pub resume_interval: Duration,
    /// Most objects a versions/history archive on another cluster may hold to be
    /// moved next to its container when a client names it (`X-Versions-Location`,
    /// `X-History-Location`); above it the client gets 409.
    #[serde(default = "default_archive_limit")]
    pub archive_move_limit: u64,
    /// The longest a client's request waits for such a move (then 409 saying it is
    /// still moving: retry).
    #[serde(default = "default_archive_wait", with = "duration")]
    pub archive_move_wait: Duration,
}

impl MigrationConfig {
    /// Refuses values the mover cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), stackfed_http::config::Invalid> {
        use stackfed_http::config::{nonzero, Invalid};
        if self.concurrency == 0 {
            return Err(Invalid::new("migration.concurrency", "must be more than 0"));
        }
        nonzero("migration.lease", self.lease)?;
        nonzero("migration.max_hold", self.max_hold)?;
        nonzero("migration.resume_interval", self.resume_interval)?;
        nonzero("migration.archive_move_wait", self.archive_move_wait)?;
        Ok(())
    }
}

fn default_archive_limit() -> u64 {
    1000
}
fn default_archive_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_concurrency() -> usize {
    8
}
fn default_lease() -> Duration {
    Duration::from_secs(30)
}
fn default_hold() -> Duration {
    Duration::from_secs(20)
}
fn default_resume() -> Duration {
    Duration::from_secs(5)
}

/// Why a migration step failed. `Cluster` and `Store` failures are retried (the
/// migration resumes); `Fatal` stops it.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// A cluster failed or answered unexpectedly (temporary: retried).
    #[error("cluster: {0}")]
    Cluster(String),
    /// The attribute store failed (retried).
    #[error("attribute store: {0}")]
    Store(String),
    /// Another proxy holds the lease, or a record changed under us: stop working.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// Cannot go on (recorded in the journal).
    #[error("{0}")]
    Fatal(String),
    /// What the operator named does not exist (a container not in the account): 404,
    /// as Swift answers for a missing container.
    #[error("{0}")]
    NotFound(String),
    /// An operator cancelled the migration: stop working, roll back.
    #[error("cancelled")]
    Cancelled,
    /// The container turned out not movable during the move (versioning enabled
    /// meanwhile): roll back, then fail with the reason.
    #[error("{0}")]
    Refused(String),
}

impl MoveError {
    fn answer(cluster: &SwiftCluster, what: &str, status: http::StatusCode) -> Self {
        Self::Cluster(format!("{}: {what} answered {status}", cluster.id()))
    }
}

impl From<StoreError> for MoveError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}
impl From<LocateError> for MoveError {
    fn from(e: LocateError) -> Self {
        Self::Store(e.to_string())
    }
}

/// A migration's progress, as the admin API shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// The journal entry's id.
    pub id: String,
    /// The account.
    pub account: String,
    /// The containers.
    pub containers: Vec<String>,
    /// Source and destination.
    pub from: String,
    /// The destination.
    pub to: String,
    /// `copying`, `switching`, `cleaning`, `done`, `failed`, `waiting` (lease held
    /// elsewhere or not started here).
    pub phase: String,
    /// Objects in the source when the migration started here.
    pub objects_total: u64,
    /// Bytes in the source when it started here.
    pub bytes_total: u64,
    /// Objects copied.
    pub objects_done: u64,
    /// Bytes copied.
    pub bytes_done: u64,
    /// Objects deleted from the destination (the source deleted them meanwhile).
    pub objects_deleted: u64,
    /// Mirror passes run.
    pub passes: u64,
    /// Seconds since it started here.
    pub elapsed_seconds: f64,
    /// Objects per second so far.
    pub objects_per_second: f64,
    /// Bytes per second so far.
    pub bytes_per_second: f64,
    /// Estimated seconds to the end of the first pass (0 once it is over).
    pub eta_seconds: f64,
    /// How long client writes were held at the switch, milliseconds.
    pub hold_ms: u64,
    /// The last error (retried unless the phase is `failed`).
    pub error: Option<String>,
}

struct Live {
    progress: Progress,
    started: Instant,
    /// When its phase became final (`done`, `failed`, `cancelled`): the clock of its
    /// elapsed time and rates stops there.
    ended: Option<Instant>,
}

impl Live {
    /// Time from the start to the end, or to now while it runs.
    fn elapsed(&self) -> Duration {
        self.ended
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.started)
    }

    /// Stops the clock once the phase is final (the first time only).
    fn end_if_over(&mut self) {
        if self.ended.is_none()
            && matches!(
                self.progress.phase.as_str(),
                "done" | "failed" | "cancelled"
            )
        {
            self.ended = Some(Instant::now());
        }
    }
}

/// The migrations this proxy runs and knows about. Cheap to clone.
#[derive(Clone)]
pub struct Migrations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Migrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migrations")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

struct Inner {
    locator: Arc<Locator>,
    clusters: crate::cluster::Clusters,
    inflight: Arc<Inflight>,
    drains: Arc<crate::service::migrate::Drains>,
    operator: Session,
    config: MigrationConfig,
    settle: Duration,
    owner: String,
    live: Mutex<HashMap<String, Live>>,
    rebalances: Mutex<HashMap<String, Rebalance>>,
    drain_jobs: Mutex<HashMap<String, Drain>>,
    background: Background,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        b = now_ms().to_be_bytes().to_vec();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Migrations {
    /// Starts the migration machinery for `service`: the resume loop runs on
    /// `background` (which also owns every migration's task).
    pub fn start(
        service: &FederationService,
        config: MigrationConfig,
        cache_ttl: Duration,
        background: &Background,
    ) -> Self {
        service.inflight().set_max_hold(config.max_hold);
        let settle = config.settle.unwrap_or(cache_ttl + Duration::from_secs(1));
        let operator = Session::new(Credentials {
            user: config.operator_user.clone(),
            key: config.operator_key.clone(),
        });
        let me = Self {
            inner: Arc::new(Inner {
                locator: service.locator().clone(),
                clusters: service.clusters().clone(),
                inflight: service.inflight().clone(),
                drains: service.drains().clone(),
                operator,
                settle,
                owner: format!("proxy-{}", random_hex(6)),
                live: Mutex::new(HashMap::new()),
                rebalances: Mutex::new(HashMap::new()),
                drain_jobs: Mutex::new(HashMap::new()),
                background: background.clone(),
                config,
            }),
        };
        service.set_archive_mover(Arc::new(me.clone()));
        let resume = me.clone();
        background.spawn("migration resume", async move {
            loop {
                if let Err(e) = resume.resume_once().await {
                    tracing::warn!(error = %e, "could not look for migrations to resume");
                }
                tokio::time::sleep(resume.inner.config.resume_interval).await;
            }
        });
        me
    }

    /// Whether these are the operator's credentials (constant time).
    pub fn is_operator(&self, user: &str, key: &str) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        let c = &self.inner.config;
        eq(user.as_bytes(), c.operator_user.as_bytes())
            & eq(key.as_bytes(), c.operator_key.as_bytes())
    }

    /// The operator's user and key (what its admin API tokens are signed with).
    pub(crate) fn operator_credentials(&self) -> (&str, &str) {
        let c = &self.inner.config;
        (&c.operator_user, &c.operator_key)
    }

    fn auth(&self) -> Auth<'_> {
        Auth::Session(&self.inner.operator)
    }

    fn cluster(&self, id: &ClusterId) -> Result<&SwiftCluster, MoveError> {
        self.inner
            .clusters
            .get(id)
            .ok_or_else(|| MoveError::Fatal(format!("cluster {id} is not configured")))
    }

    fn journal_account() -> AccountName {
        AccountName::new(JOURNAL_ACCOUNT).unwrap_or_else(|_| unreachable!("a valid name"))
    }

    /// The containers that move with `container`: its `_segments` container and its
    /// versions/history location when they live on the same cluster, first.
    async fn group(&self, record: &ContainerRecord) -> Result<Vec<String>, MoveError> {
        let from = self.cluster(&record.cluster)?;
        let mut out = Vec::new();
        let mut candidates = vec![format!("{}_segments", record.container.as_str())];
        if let Some(h) = mirror::head(
            from,
            self.auth(),
            &record.account,
            record.container.as_str(),
        )
        .await?
        {
            for k in ["x-versions-location", "x-history-location"] {
                if let Some(v) = h.get(k).and_then(|v| v.to_str().ok()) {
                    let v = percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned();
                    candidates.push(v);
                }
            }
        }
        for c in candidates {
            let Ok(name) = ContainerName::new(c.clone()) else {
                continue;
            };
            if name == record.container || out.contains(&c) {
                continue;
            }
            if let Some(r) = self
                .inner
                .locator
                .locate_fresh(&record.account, &name)
                .await?
            {
                if r.cluster == record.cluster {
                    out.push(c);
                }
            }
        }
        out.push(record.container.as_str().to_owned());
        Ok(out)
    }

    /// Starts moving `container` (with the containers that stay with it) to `to`, or
    /// where the placement policy chooses among the other clusters. Returns the
    /// migration's id.
    pub async fn start_move(
        &self,
        account: &AccountName,
        container: &ContainerName,
        to: Option<ClusterId>,
    ) -> Result<String, MoveError> {
        // A destination not configured (a typo) is the request's fault whatever the
        // container: 409 naming it, before the container's 404.
        if let Some(t) = &to {
            self.cluster(t)?;
        }
        let locator = &self.inner.locator;
        let record = locator
            .locate_fresh(account, container)
            .await?
            .ok_or_else(|| MoveError::NotFound(format!("no container {container} in {account}")))?;
        if let Some(m) = MoveMark::of(&record) {
            return Err(MoveError::Fatal(format!(
                "already moving (migration {})",
                m.id
            )));
        }
        let to = match to {
            Some(t) => t,
            None => {
                let snapshot = locator.registry().snapshot();
                let others: Vec<_> = snapshot
                    .iter()
                    .filter(|c| c.id() != &record.cluster)
                    .collect();
                locator
                    .policy()
                    .place(
                        &PlacementRequest::new(account.clone(), container.clone()),
                        &others,
                    )
                    .map_err(|e| MoveError::Fatal(e.to_string()))?
            }
        };
        if to == record.cluster {
            return Err(MoveError::Fatal(format!("container is already on {to}")));
        }
        // A `_segments` container moves with its base: alone, the base's SLOs and DLOs
        // (which its cluster resolves itself) would answer 409 and 404.
        if let Some(base) = container
            .as_str()
            .strip_suffix("_segments")
            .and_then(|b| ContainerName::new(b).ok())
        {
            if locator
                .locate_fresh(account, &base)
                .await?
                .is_some_and(|b| b.cluster == record.cluster)
            {
                return Err(MoveError::Fatal(format!(
                    "{container} moves with {base} (its large objects' segments, on the same \
                     cluster); move {base}"
                )));
            }
        }
        let dest = self.cluster(&to)?;
        if locator
            .registry()
            .get(&to)
            .is_some_and(|s| s.state == ClusterState::Offline)
        {
            return Err(MoveError::Fatal(format!("cluster {to} is offline")));
        }
        let containers = self.group(&record).await?;
        let from = self.cluster(&record.cluster)?;
        for c in &containers {
            if let Some(h) = mirror::head(from, self.auth(), account, c).await? {
                if let Some(why) =
                    mirror::versioning_refusal(from, self.auth(), account, c, &h).await?
                {
                    return Err(MoveError::Fatal(why));
                }
            }
        }
        // A destination already holding one of them with objects is not ours to mirror
        // over (an orphan an operator must look at).
        for c in &containers {
            if let Some(h) = mirror::head(dest, self.auth(), account, c).await? {
                let count = h
                    .get("x-container-object-count")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0");
                if count != "0" {
                    return Err(MoveError::Fatal(format!(
                        "cluster {to} already holds a container {c} with {count} objects"
                    )));
                }
            }
        }
        let id = format!("m{}-{}", now_ms(), random_hex(4));
        let entry = JournalEntry {
            id: id.clone(),
            account: account.as_str().to_owned(),
            containers,
            from: record.cluster.clone(),
            to: to.clone(),
            state: JournalState::Running,
            owner: self.inner.owner.clone(),
            lease_until_ms: now_ms() + lease_ms(&self.inner.config),
            created_ms: now_ms(),
            switched: false,
        };
        let name = ContainerName::new(id.clone()).map_err(|e| MoveError::Fatal(e.to_string()))?;
        let mut attrs = Attributes::new();
        attrs.insert(
            JOURNAL_ATTRIBUTE.into(),
            serde_json::to_string(&entry).unwrap_or_default(),
        );
        locator
            .store()
            .create_if_absent(
                NewContainer::new(Self::journal_account(), name.clone(), to).attributes(attrs),
            )
            .await?;
        // Claim the containers (compare-and-set on each record, refused when another
        // migration's mark is there): of concurrent requests for one container,
        // exactly one migration runs. A refused request leaves no journal entry.
        if let Err(e) = self.claim_marks(account, &entry).await {
            let _ = self.unmark_own(account, &entry).await;
            if let Err(d) = locator
                .store()
                .delete(&Self::journal_account(), &name, None)
                .await
            {
                tracing::warn!(%id, error = %d, "could not remove a refused migration's journal entry");
                let _ = self
                    .finish(
                        &id,
                        JournalState::Failed {
                            reason: e.to_string(),
                        },
                    )
                    .await;
            }
            return Err(e);
        }
        tracing::info!(%id, %account, containers = ?entry.containers, from = %entry.from, to = %entry.to, "migration started");
        self.spawn(entry);
        Ok(id)
    }

    /// Marks every container of a new migration as copying, refused (nothing marked)
    /// when one of them already carries another migration's mark.
    async fn claim_marks(
        &self,
        account: &AccountName,
        entry: &JournalEntry,
    ) -> Result<(), MoveError> {
        let m = entry_mark(entry, Phase::Copying);
        for c in &entry.containers {
            let rec = self.mark(account, c, Some(&m)).await?;
            if rec.cluster != entry.from {
                return Err(MoveError::Fatal(format!(
                    "container {c} is no longer on {}",
                    entry.from
                )));
            }
        }
        Ok(())
    }

    /// Removes this migration's own marks (a refused start).
    async fn unmark_own(
        &self,
        account: &AccountName,
        entry: &JournalEntry,
    ) -> Result<(), MoveError> {
        for c in &entry.containers {
            if self
                .record(account, c)
                .await?
                .is_some_and(|r| MoveMark::of(&r).is_some_and(|m| m.id == entry.id))
            {
                self.mark(account, c, None).await?;
            }
        }
        Ok(())
    }

    /// The containers of `account` on the clusters `on` accepts that are not moving,
    /// each with the containers that move with it (those are not listed again).
    async fn groups_on(
        &self,
        account: &AccountName,
        on: impl Fn(&ClusterId) -> bool,
        with_marked: bool,
    ) -> Result<Vec<(ContainerRecord, Vec<String>)>, MoveError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .inner
                .locator
                .store()
                .list(account, marker.as_deref(), 1000)
                .await?;
            let n = page.len();
            for r in page {
                marker = Some(r.container.as_str().to_owned());
                if on(&r.cluster) && (with_marked || MoveMark::of(&r).is_none()) {
                    names.push(r.container);
                }
            }
            if n < 1000 {
                break;
            }
        }
        // Bases first: a `_segments` container or an archive moves with its base.
        names.sort_by_key(|n| n.as_str().ends_with("_segments"));
        let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut out = Vec::new();
        for name in names {
            if taken.contains(name.as_str()) {
                continue;
            }
            let Some(record) = self.inner.locator.locate_fresh(account, &name).await? else {
                continue;
            };
            let group = self.group(&record).await?;
            taken.extend(group.iter().cloned());
            out.push((record, group));
        }
        Ok(out)
    }

    /// Starts a move and waits for it to end (done, failed or cancelled); `started`
    /// sees its id first. Returns the last progress.
    async fn move_and_wait(
        &self,
        account: &AccountName,
        name: &ContainerName,
        to: Option<ClusterId>,
        started: impl FnOnce(&str),
    ) -> Result<Progress, MoveError> {
        let id = self.start_move(account, name, to).await?;
        started(&id);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.progress_of(&id) {
                Some(p) if matches!(p.phase.as_str(), "done" | "failed" | "cancelled") => {
                    return Ok(p)
                }
                // Left to another proxy: the journal tells how it ends.
                Some(p) if p.phase == "waiting" => return Ok(p),
                None => return Ok(Progress::default()),
                _ => {}
            }
        }
    }

    fn choose_other(
        &self,
        account: &AccountName,
        name: &ContainerName,
        not: &ClusterId,
    ) -> Option<ClusterId> {
        // Nor a cluster the account is being drained from (another drain's).
        let draining = self.inner.drains.draining(account);
        let snapshot = self.inner.locator.registry().snapshot();
        let others: Vec<_> = snapshot
            .iter()
            .filter(|c| c.id() != not && !draining.contains(c.id()))
            .collect();
        self.inner
            .locator
            .policy()
            .place(
                &PlacementRequest::new(account.clone(), name.clone()),
                &others,
            )
            .ok()
    }

    fn alias(&self, planned: &str, id: &str) {
        let mut live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = live.get(id) {
            let copy = Live {
                progress: l.progress.clone(),
                started: l.started,
                ended: l.ended,
            };
            live.insert(
                format!("alias:{planned}"),
                Live {
                    progress: Progress {
                        id: id.to_owned(),
                        ..copy.progress
                    },
                    started: copy.started,
                    ended: copy.ended,
                },
            );
        }
    }

    /// The progress of a migration this proxy knows (by id, or a drain's planned id).
    pub fn progress_of(&self, id: &str) -> Option<Progress> {
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let l = live.get(id).or_else(|| {
            live.get(&format!("alias:{id}"))
                .and_then(|a| live.get(&a.progress.id))
        })?;
        let mut p = l.progress.clone();
        let e = l.elapsed().as_secs_f64();
        p.elapsed_seconds = e;
        if e > 0.0 {
            p.objects_per_second = p.objects_done as f64 / e;
            p.bytes_per_second = p.bytes_done as f64 / e;
            p.eta_seconds = eta_seconds(&p);
        }
        Some(p)
    }

    /// Every migration in the journal, with live progress where this proxy runs it.
    pub async fn list(&self) -> Result<Vec<serde_json::Value>, MoveError> {
        let mut out = Vec::new();
        for entry in self.journal().await? {
            let p = self.progress_of(&entry.1.id);
            out.push(serde_json::json!({ "entry": entry.1, "progress": p }));
        }
        Ok(out)
    }

    /// A journal entry and its progress.
    pub async fn get(&self, id: &str) -> Result<Option<serde_json::Value>, MoveError> {
        let Ok(name) = ContainerName::new(id) else {
            return Ok(None);
        };
        let Some(rec) = self
            .inner
            .locator
            .store()
            .get(&Self::journal_account(), &name)
            .await?
        else {
            // A drain's planned id: its migration once started (known here, or from
            // the saved drain after a restart), else queued.
            let started = match self.progress_of(id) {
                Some(p) if p.id == id => return Ok(Some(serde_json::json!({ "progress": p }))),
                Some(p) => Some(Some(p.id)),
                None => self.planned_migration(id).await?,
            };
            return match started {
                Some(Some(mid)) if mid != id => Box::pin(self.get(&mid)).await,
                Some(_) => Ok(Some(
                    serde_json::json!({ "entry": null, "progress": null, "phase": "queued" }),
                )),
                None => Ok(None),
            };
        };
        let entry = read_entry(&rec);
        let progress = self.progress_of(id).map(|mut p| {
            if let Some(e) = &entry {
                match &e.state {
                    JournalState::Done => p.phase = "done".into(),
                    JournalState::Failed { .. } => p.phase = "failed".into(),
                    JournalState::Cancelled => p.phase = "cancelled".into(),
                    JournalState::Cancelling => p.phase = "cancelling".into(),
                    JournalState::Running => {}
                }
            }
            p
        });
        Ok(Some(
            serde_json::json!({ "entry": entry, "progress": progress }),
        ))
    }

    async fn journal(&self) -> Result<Vec<(ContainerRecord, JournalEntry)>, MoveError> {
        Ok(self
            .journal_records()
            .await?
            .into_iter()
            .filter_map(|r| read_entry(&r).map(|e| (r, e)))
            .collect())
    }

    /// Every record of the journal account (migrations and rebalances).
    async fn journal_records(&self) -> Result<Vec<ContainerRecord>, MoveError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .inner
                .locator
                .store()
                .list(&Self::journal_account(), marker.as_deref(), 1000)
                .await?;
            let n = page.len();
            for r in page {
                marker = Some(r.container.as_str().to_owned());
                out.push(r);
            }
            if n < 1000 {
                return Ok(out);
            }
        }
    }

    /// Takes over running migrations whose lease expired (or that are ours but not
    /// running here: this proxy restarted with the same owner id, which it never does).
    async fn resume_once(&self) -> Result<(), MoveError> {
        let now = now_ms();
        let records = self.journal_records().await?;
        // Saved drains keep new containers off their cluster on every proxy.
        self.inner.drains.set_saved(drain::running_drains(&records));
        for entry in records.iter().filter_map(read_entry) {
            let running_here = self
                .inner
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&entry.id)
                .is_some_and(|l| {
                    !matches!(
                        l.progress.phase.as_str(),
                        "done" | "failed" | "cancelled" | "waiting"
                    )
                });
            if running_here || !entry.claimable_by(&self.inner.owner, now) {
                continue;
            }
            tracing::info!(id = %entry.id, previous_owner = %entry.owner, "resuming a migration");
            self.spawn(entry);
        }
        self.resume_rebalances(&records).await?;
        self.resume_drains(&records).await
    }

    fn set(&self, id: &str, f: impl FnOnce(&mut Progress)) {
        let mut live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = live.get_mut(id) {
            f(&mut l.progress);
            l.end_if_over();
        }
        publish(&live);
    }

    fn spawn(&self, entry: JournalEntry) {
        {
            let mut live = self
                .inner
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            live.insert(
                entry.id.clone(),
                Live {
                    progress: Progress {
                        id: entry.id.clone(),
                        account: entry.account.clone(),
                        containers: entry.containers.clone(),
                        from: entry.from.to_string(),
                        to: entry.to.to_string(),
                        phase: "copying".into(),
                        ..Progress::default()
                    },
                    started: Instant::now(),
                    ended: None,
                },
            );
        }
        let this = self.clone();
        self.inner.background.spawn("migration", async move {
            let id = entry.id.clone();
            let mut backoff = Duration::from_millis(500);
            loop {
                match this.run(&id).await {
                    Ok(()) => return,
                    Err(MoveError::LeaseLost(why)) => {
                        tracing::info!(%id, %why, "migration left to another proxy");
                        this.set(&id, |p| p.phase = "waiting".into());
                        return;
                    }
                    Err(MoveError::Cancelled) => {
                        // Run again: the claim sees the cancel and rolls back.
                        tracing::info!(%id, "migration cancelled; rolling back");
                    }
                    Err(e @ (MoveError::Fatal(_) | MoveError::Refused(_))) => {
                        // Rolled back as far as it can be: the marks (writes go on
                        // to the source) and the destination's copy; a switched
                        // container never. A refused migration retries its rollback;
                        // a fatal one tries once (e.g. the source cluster left the
                        // configuration mid-move: the container stays where its
                        // record says, not stuck "already moving").
                        if let Err(undo) = this.undo(&id).await {
                            if matches!(e, MoveError::Refused(_)) {
                                tracing::warn!(%id, error = %undo, "could not roll back a refused migration; retrying");
                                tokio::time::sleep(backoff).await;
                                continue;
                            }
                            tracing::warn!(%id, error = %undo, "could not roll back a failed migration");
                        }
                        let why = e.to_string();
                        metrics::counter!("stackfed_migration_failures_total", "kind" => "fatal")
                            .increment(1);
                        tracing::error!(%id, %why, "migration failed");
                        this.set(&id, |p| {
                            p.phase = "failed".into();
                            p.error = Some(why.clone());
                        });
                        let _ = this.finish(&id, JournalState::Failed { reason: why }).await;
                        return;
                    }
                    Err(e) => {
                        metrics::counter!("stackfed_migration_failures_total", "kind" => "retried")
                            .increment(1);
                        tracing::warn!(%id, error = %e, "migration step failed; retrying");
                        this.set(&id, |p| p.error = Some(e.to_string()));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }

    /// Changes a journal entry by compare-and-set: `f` sees the entry as it is now
    /// (again after a conflict) and may refuse; returns the entry written.
    async fn update_entry(
        &self,
        id: &str,
        mut f: impl FnMut(&mut JournalEntry) -> Result<(), MoveError>,
    ) -> Result<JournalEntry, MoveError> {
        let name = ContainerName::new(id).map_err(|e| MoveError::Fatal(e.to_string()))?;
        let store = self.inner.locator.store();
        for _ in 0..16 {
            let rec = store
                .get(&Self::journal_account(), &name)
                .await?
                .ok_or_else(|| MoveError::LeaseLost("journal entry gone".into()))?;
            let mut entry = read_entry(&rec)
                .ok_or_else(|| MoveError::Fatal("unreadable journal entry".into()))?;
            f(&mut entry)?;
            let mut attrs = rec.attributes.clone();
            attrs.insert(
                JOURNAL_ATTRIBUTE.into(),
                serde_json::to_string(&entry).unwrap_or_default(),
            );
            match store
                .update_attributes(&Self::journal_account(), &name, rec.version, attrs)
                .await
            {
                Ok(_) => return Ok(entry),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MoveError::Store("journal entry kept changing".into()))
    }

    /// Claims or renews the lease (compare-and-set); refused when another proxy holds
    /// it.
    async fn claim(&self, id: &str) -> Result<JournalEntry, MoveError> {
        let owner = &self.inner.owner;
        let lease = lease_ms(&self.inner.config);
        self.update_entry(id, |entry| {
            if !entry.claimable_by(owner, now_ms()) {
                return Err(MoveError::LeaseLost(format!("held by {}", entry.owner)));
            }
            entry.owner.clone_from(owner);
            entry.lease_until_ms = now_ms() + lease;
            Ok(())
        })
        .await
    }

    async fn finish(&self, id: &str, state: JournalState) -> Result<(), MoveError> {
        match self
            .update_entry(id, |entry| {
                entry.state = state.clone();
                Ok(())
            })
            .await
        {
            Ok(_) | Err(MoveError::LeaseLost(_)) => {}
            Err(e) => return Err(e),
        }
        let outcome = match state {
            JournalState::Done => "done",
            JournalState::Failed { .. } => "failed",
            JournalState::Cancelled => "cancelled",
            JournalState::Running | JournalState::Cancelling => return Ok(()),
        };
        metrics::counter!("stackfed_migrations_finished_total", "outcome" => outcome).increment(1);
        Ok(())
    }

    /// Cancels a migration before its switch (the lease holder rolls it back: marks
    /// removed, the destination's copy deleted, journal `cancelled`). Refused once the
    /// switch is committed.
    pub async fn cancel(&self, id: &str) -> Result<Option<JournalEntry>, MoveError> {
        let Ok(name) = ContainerName::new(id) else {
            return Ok(None);
        };
        if self
            .inner
            .locator
            .store()
            .get(&Self::journal_account(), &name)
            .await?
            .is_none()
        {
            // A drain's planned id (all its POST answered) stands for its migration.
            let started = match self.progress_of(id) {
                Some(p) if p.id != id => Some(Some(p.id)),
                _ => self.planned_migration(id).await?,
            };
            return match started {
                Some(Some(mid)) if mid != id => Box::pin(self.cancel(&mid)).await,
                Some(_) => Err(MoveError::Refused(format!(
                    "{id} is a drain's move not started yet: nothing to cancel"
                ))),
                None => Ok(None),
            };
        }
        let entry = self
            .update_entry(id, |entry| match entry.cancel() {
                CancelOutcome::Cancel => {
                    entry.state = JournalState::Cancelling;
                    Ok(())
                }
                CancelOutcome::Already => Ok(()),
                CancelOutcome::Refused(why) => Err(MoveError::Fatal(why)),
            })
            .await?;
        tracing::info!(%id, "migration cancel asked");
        // Unless its run already saw the cancel and rolled back: a final phase stays
        // (overwriting "cancelled" left the running gauge at 1 for good).
        self.set(id, |p| {
            if !matches!(p.phase.as_str(), "done" | "failed" | "cancelled") {
                p.phase = "cancelling".into();
            }
        });
        Ok(Some(entry))
    }

    /// Runs a migration from whatever phase its records show (or rolls it back when
    /// cancelled), holding the lease (renewed in the background of the work; losing it
    /// stops the work, and so does a cancel seen at a renewal).
    async fn run(&self, id: &str) -> Result<(), MoveError> {
        let entry = self.claim(id).await?;
        let cancelling = entry.state == JournalState::Cancelling;
        let renew_every = self.inner.config.lease / 3;
        let renew = async {
            loop {
                tokio::time::sleep(renew_every).await;
                match self.claim(id).await {
                    Ok(e) if !cancelling && e.state == JournalState::Cancelling => {
                        return MoveError::Cancelled
                    }
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
        };
        if cancelling {
            tokio::select! {
                r = self.roll_back(&entry) => r,
                e = renew => Err(e),
            }
        } else {
            tokio::select! {
                r = self.work(&entry) => r,
                e = renew => Err(e),
            }
        }
    }

    /// A cancelled migration: the marks removed (held writes go on to the source), the
    /// destination's copies deleted, the journal says cancelled. Idempotent (a proxy
    /// killed during it does it again).
    async fn roll_back(&self, entry: &JournalEntry) -> Result<(), MoveError> {
        self.set(&entry.id, |p| p.phase = "cancelling".into());
        self.unmirror(entry).await?;
        self.finish(&entry.id, JournalState::Cancelled).await?;
        self.set(&entry.id, |p| {
            p.phase = "cancelled".into();
            p.error = None;
        });
        tracing::info!(id = %entry.id, "migration cancelled and rolled back");
        Ok(())
    }

    /// A refused migration (found not movable during the move): rolled back as a
    /// cancel is, under its lease; the caller records it failed.
    async fn undo(&self, id: &str) -> Result<(), MoveError> {
        let entry = self.claim(id).await?;
        self.unmirror(&entry).await
    }

    /// The marks removed (held writes go on to the source) and the destination's
    /// copies deleted; refused once a record was switched.
    async fn unmirror(&self, entry: &JournalEntry) -> Result<(), MoveError> {
        let account =
            AccountName::new(entry.account.clone()).map_err(|e| MoveError::Fatal(e.to_string()))?;
        for c in &entry.containers {
            match self.record(&account, c).await? {
                Some(r) if r.cluster == entry.to => {
                    return Err(MoveError::Fatal(format!(
                        "container {c} was switched; it cannot be rolled back"
                    )))
                }
                Some(r) if MoveMark::of(&r).is_some_and(|m| m.id == entry.id) => {
                    self.mark(&account, c, None).await?;
                }
                _ => {}
            }
        }
        let to = self.cluster(&entry.to)?;
        for c in &entry.containers {
            self.clean(to, &account, c).await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        account: &AccountName,
        c: &str,
    ) -> Result<Option<ContainerRecord>, MoveError> {
        let name = ContainerName::new(c).map_err(|e| MoveError::Fatal(e.to_string()))?;
        Ok(self.inner.locator.locate_fresh(account, &name).await?)
    }

    /// Sets (or with `None` removes) the mark on a container's record, compare-and-set;
    /// setting is refused when another migration's mark is there.
    async fn mark(
        &self,
        account: &AccountName,
        c: &str,
        mark: Option<&MoveMark>,
    ) -> Result<ContainerRecord, MoveError> {
        let name = ContainerName::new(c).map_err(|e| MoveError::Fatal(e.to_string()))?;
        for _ in 0..16 {
            let rec = self
                .inner
                .locator
                .locate_fresh(account, &name)
                .await?
                .ok_or_else(|| {
                    MoveError::Fatal(format!("container {c} was deleted while it moved"))
                })?;
            if let (Some(m), Some(other)) = (mark, MoveMark::of(&rec)) {
                if other.id != m.id {
                    return Err(MoveError::Fatal(format!(
                        "already moving (migration {})",
                        other.id
                    )));
                }
            }
            let mut attrs = rec.attributes.clone();
            match mark {
                Some(m) => attrs.insert(MIGRATION_ATTRIBUTE.into(), m.to_value()),
                None => attrs.remove(MIGRATION_ATTRIBUTE),
            };
            if attrs == rec.attributes {
                return Ok(rec);
            }
            match self
                .inner
                .locator
                .update_attributes(account, &name, rec.version, attrs)
                .await
            {
                Ok(r) => return Ok(r),
                Err(LocateError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(MoveError::Store(format!("record of {c} kept changing")))
    }

    async fn work(&self, entry: &JournalEntry) -> Result<(), MoveError> {
        let account =
            AccountName::new(entry.account.clone()).map_err(|e| MoveError::Fatal(e.to_string()))?;
        let (from, to) = (self.cluster(&entry.from)?, self.cluster(&entry.to)?);
        let mark = |phase| entry_mark(entry, phase);
        // Where are we? The slowest container decides.
        let mut phase = Phase::Cleaning;
        for c in &entry.containers {
            let rec = self.record(&account, c).await?;
            let p = match rec.as_ref() {
                None => return self.abandon(entry, &account, c).await,
                Some(r) if r.cluster == entry.to => {
                    MoveMark::of(r).map_or(Phase::Cleaning, |_| Phase::Cleaning)
                }
                Some(r) => match MoveMark::of(r) {
                    Some(m) if m.id == entry.id => m.phase,
                    Some(m) => {
                        return Err(MoveError::Fatal(format!(
                            "container {c} is in migration {}",
                            m.id
                        )))
                    }
                    None => Phase::Copying,
                },
            };
            phase = match (phase, p) {
                (Phase::Copying, _) | (_, Phase::Copying) => Phase::Copying,
                (Phase::Switching, _) | (_, Phase::Switching) => Phase::Switching,
                _ => Phase::Cleaning,
            };
        }
        let mut copied: HashMap<String, HashMap<String, String>> = HashMap::new();
        if phase == Phase::Switching {
            // A switch interrupted: writes are held; go back to copying briefly (the
            // switch is redone from its start).
            for c in &entry.containers {
                if self
                    .record(&account, c)
                    .await?
                    .is_some_and(|r| r.cluster == entry.from)
                {
                    self.mark(&account, c, Some(&mark(Phase::Copying))).await?;
                }
            }
            phase = Phase::Copying;
        }
        if phase == Phase::Copying {
            // Totals, the destination containers, the marks.
            let mut objects = 0;
            let mut bytes = 0;
            for c in &entry.containers {
                let h = mirror::head(from, self.auth(), &account, c)
                    .await?
                    .ok_or_else(|| {
                        MoveError::Fatal(format!("source cluster has no container {c}"))
                    })?;
                let n = |k: &str| {
                    h.get(k)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if let Some(why) =
                    mirror::versioning_refusal(from, self.auth(), &account, c, &h).await?
                {
                    return Err(MoveError::Refused(why));
                }
                objects += n("x-container-object-count");
                bytes += n("x-container-bytes-used");
                mirror::put_container(to, self.auth(), &account, c, mirror::settings(&h, false))
                    .await?;
                self.mark(&account, c, Some(&mark(Phase::Copying))).await?;
            }
            self.set(&entry.id, |p| {
                p.objects_total = objects;
                p.bytes_total = bytes;
                p.phase = "copying".into();
            });
            // Every proxy must know the container moves before the switch can count on
            // its writes being gated.
            let marked = Instant::now();
            for c in &entry.containers {
                let map = copied.entry(c.clone()).or_default();
                for _ in 0..8 {
                    if self.pass(entry, &account, c, map).await?.steps <= 16 {
                        break;
                    }
                }
            }
            if let Some(wait) = self.inner.settle.checked_sub(marked.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            self.switch(entry, &account, &mut copied).await?;
            phase = Phase::Cleaning;
        }
        if phase == Phase::Cleaning {
            self.set(&entry.id, |p| p.phase = "cleaning".into());
            tokio::time::sleep(self.inner.settle).await;
            for c in &entry.containers {
                self.clean(from, &account, c).await?;
            }
            for c in &entry.containers {
                self.mark(&account, c, None).await?;
            }
            self.finish(&entry.id, JournalState::Done).await?;
            let mut moved = self.progress_of(&entry.id).map_or(0, |p| p.bytes_total);
            if moved == 0 {
                // Resumed after the switch: the totals were taken by another run; the
                // destination holds what moved.
                for c in &entry.containers {
                    if let Ok(Some(h)) = mirror::head(to, self.auth(), &account, c).await {
                        moved += h
                            .get("x-container-bytes-used")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
            }
            self.account_usage(&entry.from, &entry.to, moved);
            self.set(&entry.id, |p| {
                p.phase = "done".into();
                p.error = None;
            });
            let p = self.progress_of(&entry.id).unwrap_or_default();
            tracing::info!(id = %entry.id, objects = p.objects_done, bytes = p.bytes_done, seconds = p.elapsed_seconds, objects_per_s = p.objects_per_second, "migration done");
        }
        Ok(())
    }

    /// Held writes, a last pass, verification, the archive settings, the switch.
    async fn switch(
        &self,
        entry: &JournalEntry,
        account: &AccountName,
        copied: &mut HashMap<String, HashMap<String, String>>,
    ) -> Result<(), MoveError> {
        let (from, to) = (self.cluster(&entry.from)?, self.cluster(&entry.to)?);
        let mark = |phase| entry_mark(entry, phase);
        self.set(&entry.id, |p| p.phase = "switching".into());
        let held = Instant::now();
        for c in &entry.containers {
            self.mark(account, c, Some(&mark(Phase::Switching))).await?;
        }
        // Writes that passed the gate before the mark: let them land.
        let budget = self.inner.config.max_hold / 2;
        let result: Result<bool, MoveError> = async {
            for c in &entry.containers {
                while self.inner.inflight.count(account.as_str(), c) > 0 {
                    if held.elapsed() > budget {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            for c in &entry.containers {
                let map = copied.entry(c.clone()).or_default();
                // Passes until one finds nothing to do: its listings, read after every
                // copy of the pass before ended, are the verification.
                let last = loop {
                    let pass = self.pass(entry, account, c, map).await?;
                    if pass.steps == 0 {
                        break pass;
                    }
                    if held.elapsed() > budget {
                        return Ok(false);
                    }
                };
                // Verified: both listings name the same objects with the same content.
                let key = |v: Vec<federation_core::migration::Entry>| {
                    v.into_iter()
                        .filter(|e| !last.gone.contains(&e.name))
                        .map(|e| (e.name, e.key))
                        .collect::<Vec<_>>()
                };
                if key(last.source) != key(last.dest) {
                    return Ok(false);
                }
                let h = mirror::head(from, self.auth(), account, c)
                    .await?
                    .ok_or_else(|| {
                        MoveError::Fatal(format!("source cluster has no container {c}"))
                    })?;
                if let Some(why) =
                    mirror::versioning_refusal(from, self.auth(), account, c, &h).await?
                {
                    return Err(MoveError::Refused(why));
                }
                mirror::post_container(to, self.auth(), account, c, mirror::settings(&h, true))
                    .await?;
            }
            Ok(true)
        }
        .await;
        let verified = match result {
            Ok(v) => v,
            Err(e) => {
                self.unhold(entry, account).await?;
                return Err(e);
            }
        };
        if !verified {
            self.unhold(entry, account).await?;
            return Err(MoveError::Cluster(
                "the switch did not finish within its hold budget; retrying".into(),
            ));
        }
        // Committed: from here a cancel is refused (the same compare-and-set on the
        // journal decides between the two).
        let committed = self
            .update_entry(&entry.id, |e| {
                if e.state == JournalState::Cancelling {
                    return Err(MoveError::Cancelled);
                }
                e.switched = true;
                Ok(())
            })
            .await;
        if let Err(e) = committed {
            if !matches!(e, MoveError::Cancelled) {
                self.unhold(entry, account).await?;
            }
            return Err(e);
        }
        // The switch: each record moves (compare-and-set), keeping its mark.
        for c in &entry.containers {
            let rec = self.record(account, c).await?.ok_or_else(|| {
                MoveError::Fatal(format!("container {c} was deleted while it moved"))
            })?;
            if rec.cluster == entry.to {
                continue;
            }
            let name = rec.container.clone();
            self.inner
                .locator
                .relocate(account, &name, rec.version, entry.to.clone())
                .await?;
            self.mark(account, c, Some(&mark(Phase::Cleaning))).await?;
        }
        let hold_ms = u64::try_from(held.elapsed().as_millis()).unwrap_or(u64::MAX);
        metrics::counter!("stackfed_migration_holds_total").increment(1);
        metrics::histogram!("stackfed_migration_hold_seconds").record(held.elapsed().as_secs_f64());
        self.set(&entry.id, |p| p.hold_ms = hold_ms);
        tracing::info!(id = %entry.id, hold_ms, to = %entry.to, "migration switched");
        Ok(())
    }

    async fn unhold(&self, entry: &JournalEntry, account: &AccountName) -> Result<(), MoveError> {
        let m = entry_mark(entry, Phase::Copying);
        for c in &entry.containers {
            if self
                .record(account, c)
                .await?
                .is_some_and(|r| r.cluster == entry.from)
            {
                self.mark(account, c, Some(&m)).await?;
            }
        }
        Ok(())
    }

    /// One mirror pass over a container: both listings, then the steps that make the
    /// destination a mirror of what they show.
    async fn pass(
        &self,
        entry: &JournalEntry,
        account: &AccountName,
        c: &str,
        copied: &mut HashMap<String, String>,
    ) -> Result<Pass, MoveError> {
        let (from, to) = (self.cluster(&entry.from)?, self.cluster(&entry.to)?);
        let Some((source, _)) = mirror::list(from, self.auth(), account, c).await? else {
            return Err(MoveError::Fatal(format!(
                "source cluster lost container {c}"
            )));
        };
        let (dest, _) = mirror::list(to, self.auth(), account, c)
            .await?
            .unwrap_or_default();
        let stamps: HashMap<&str, &str> = source
            .iter()
            .map(|e| (e.name.as_str(), e.modified.as_str()))
            .collect();
        let mut actions = diff(&source, &dest, copied);
        // Objects written through this proxy meanwhile are checked one by one: a
        // listing may lag a write (a copy of one the source no longer has deletes the
        // destination's).
        let named: std::collections::HashSet<String> = actions
            .iter()
            .map(|a| match a {
                Action::Copy(n) | Action::Delete(n) => n.clone(),
            })
            .collect();
        for t in self.inner.inflight.take_touched(account.as_str(), c) {
            if !named.contains(&t) {
                actions.push(Action::Copy(t));
            }
        }
        let n = actions.len();
        self.set(&entry.id, |p| p.passes += 1);
        // Static symlinks after everything else: their target must exist already.
        let linked: std::collections::HashSet<&str> = source
            .iter()
            .filter(|e| !e.key.ends_with('|'))
            .map(|e| e.name.as_str())
            .collect();
        let (plain, links): (Vec<Action>, Vec<Action>) =
            actions.into_iter().partition(|a| match a {
                Action::Copy(n) => !linked.contains(n.as_str()),
                Action::Delete(_) => true,
            });
        let concurrency = self.inner.config.concurrency.max(1);
        let step = |a: Action| {
            let stamp = match &a {
                Action::Copy(n) => stamps.get(n.as_str()).map(|s| (*s).to_owned()),
                Action::Delete(_) => None,
            };
            async move {
                match a {
                    Action::Copy(n) => {
                        let r = mirror::copy_object(
                            from,
                            to,
                            self.auth(),
                            account,
                            (c, &entry.containers),
                            &n,
                        )
                        .await;
                        let r = match r {
                            Ok(mirror::Copied::Bytes(b)) => {
                                metrics::counter!("stackfed_migration_objects_copied_total")
                                    .increment(1);
                                metrics::counter!("stackfed_migration_bytes_copied_total")
                                    .increment(b);
                                self.set(&entry.id, |p| {
                                    p.objects_done += 1;
                                    p.bytes_done += b;
                                });
                                Ok(b)
                            }
                            // Listed but gone (a listing lagging a delete).
                            Ok(mirror::Copied::Gone) => {
                                mirror::delete(to, self.auth(), account, c, Some(&n))
                                    .await
                                    .map(|_| GONE)
                            }
                            Err(e) => Err(e),
                        };
                        (n, stamp, r)
                    }
                    Action::Delete(n) => {
                        let r = mirror::delete(to, self.auth(), account, c, Some(&n))
                            .await
                            .map(|_| 0);
                        self.set(&entry.id, |p| p.objects_deleted += 1);
                        (n, None, r)
                    }
                }
            }
        };
        // Unordered within each half: a large object does not hold back the window;
        // the links start only once every other copy has ended.
        let mut results: Vec<(String, Option<String>, Result<u64, MoveError>)> =
            futures::stream::iter(plain)
                .map(&step)
                .buffer_unordered(concurrency)
                .collect()
                .await;
        results.extend(
            futures::stream::iter(links)
                .map(&step)
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .await,
        );
        let mut gone = std::collections::HashSet::new();
        for (name, stamp, r) in results {
            if r? == GONE {
                copied.remove(&name);
                gone.insert(name);
                continue;
            }
            match stamp {
                Some(s) => {
                    copied.insert(name, s);
                }
                None => {
                    copied.remove(&name);
                }
            }
        }
        let p = self.progress_of(&entry.id).unwrap_or_default();
        tracing::info!(id = %entry.id, container = c, steps = n, objects_done = p.objects_done, objects_total = p.objects_total, bytes_done = p.bytes_done, objects_per_s = format!("{:.1}", p.objects_per_second), eta_s = format!("{:.1}", p.eta_seconds), "mirror pass");
        Ok(Pass {
            steps: n - gone.len(),
            gone,
            source,
            dest,
        })
    }

    /// What this proxy knows of the clusters' usage follows the bytes it moved (until
    /// the next measurement from `recon_endpoints` replaces it), so that placement and
    /// a rebalance see the move at once.
    fn account_usage(&self, from: &ClusterId, to: &ClusterId, bytes: u64) {
        let registry = self.inner.locator.registry();
        let _ = registry.update(from, |s| s.used_bytes = s.used_bytes.saturating_sub(bytes));
        let _ = registry.update(to, |s| s.used_bytes = s.used_bytes.saturating_add(bytes));
    }

    /// Empties and deletes a container on `from` (the source after the switch, or the
    /// destination's mirror when rolling back), without its versions/history location
    /// first (it no longer serves clients): with Swift's bulk delete where the
    /// cluster runs it (`concurrency / 2` requests at once: Swift deletes two names of
    /// each at a time), else one DELETE per object, `concurrency` at a time.
    async fn clean(
        &self,
        from: &SwiftCluster,
        account: &AccountName,
        c: &str,
    ) -> Result<(), MoveError> {
        let concurrency = self.inner.config.concurrency.max(1);
        let bulk = mirror::bulk_delete_limit(from).await;
        mirror::forget_archives(from, self.auth(), account, c).await?;
        for _ in 0..20 {
            let Some((objects, _)) = mirror::list(from, self.auth(), account, c).await? else {
                return Ok(());
            };
            let names: Vec<String> = objects.into_iter().map(|e| e.name).collect();
            match bulk {
                Some(limit) if !names.is_empty() => {
                    let requests = (concurrency / 2).max(1);
                    let size = names.len().div_ceil(requests).min(limit).max(1);
                    let chunks: Vec<Vec<String>> = names.chunks(size).map(<[_]>::to_vec).collect();
                    futures::stream::iter(chunks)
                        .map(|chunk| async move {
                            mirror::bulk_delete(from, self.auth(), account, c, &chunk).await
                        })
                        .buffer_unordered(requests)
                        .collect::<Vec<_>>()
                        .await
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()?;
                }
                _ => {
                    futures::stream::iter(names)
                        .map(|n| async move {
                            mirror::delete(from, self.auth(), account, c, Some(&n)).await
                        })
                        .buffer_unordered(concurrency)
                        .collect::<Vec<_>>()
                        .await
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()?;
                }
            }
            let s = mirror::delete(from, self.auth(), account, c, None).await?;
            if s.is_success() || s == http::StatusCode::NOT_FOUND {
                return Ok(());
            }
            // 409: the container's listing lags its deletes; again.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Err(MoveError::Cluster(format!(
            "{}: container {c} would not go",
            from.id()
        )))
    }

    /// The container was deleted by its owner while it moved: remove the mirror.
    async fn abandon(
        &self,
        entry: &JournalEntry,
        account: &AccountName,
        c: &str,
    ) -> Result<(), MoveError> {
        let to = self.cluster(&entry.to)?;
        let _ = self.clean(to, account, c).await;
        Err(MoveError::Fatal(format!(
            "container {c} was deleted while it moved"
        )))
    }
}

impl crate::service::migrate::ArchiveMover for Migrations {
    fn limit(&self) -> u64 {
        self.inner.config.archive_move_limit
    }

    fn move_archive<'a>(
        &'a self,
        account: &'a AccountName,
        container: &'a ContainerName,
        to: &'a ClusterId,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let id = self
                .start_move(account, container, Some(to.clone()))
                .await
                .map_err(|e| e.to_string())?;
            // Switched is enough: the record names `to`; the source is cleaned later.
            let deadline = Instant::now() + self.inner.config.archive_move_wait;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let p = self.progress_of(&id).unwrap_or_default();
                match p.phase.as_str() {
                    "cleaning" | "done" => return Ok(()),
                    "failed" | "cancelled" | "cancelling" => {
                        return Err(p
                            .error
                            .unwrap_or_else(|| format!("migration {id} {}", p.phase)))
                    }
                    _ => {}
                }
                if let Ok(Some(r)) = self.inner.locator.locate_fresh(account, container).await {
                    if &r.cluster == to {
                        return Ok(());
                    }
                }
            }
            Err(format!(
                "still moving after {:?} (migration {id}); retry later",
                self.inner.config.archive_move_wait
            ))
        })
    }
}

/// The progress gauges: the migrations this proxy is working on, and their objects and
/// bytes done and expected (summed).
fn publish(live: &HashMap<String, Live>) {
    let mut running = 0u64;
    let (mut od, mut ot, mut bd, mut bt) = (0u64, 0u64, 0u64, 0u64);
    for (k, l) in live {
        let p = &l.progress;
        if k.starts_with("alias:")
            || !matches!(
                p.phase.as_str(),
                "copying" | "switching" | "cleaning" | "cancelling"
            )
        {
            continue;
        }
        running += 1;
        od += p.objects_done;
        ot += p.objects_total;
        bd += p.bytes_done;
        bt += p.bytes_total;
    }
    metrics::gauge!("stackfed_migrations_running").set(running as f64);
    metrics::gauge!("stackfed_migration_objects", "of" => "done").set(od as f64);
    metrics::gauge!("stackfed_migration_objects", "of" => "total").set(ot as f64);
    metrics::gauge!("stackfed_migration_bytes", "of" => "done").set(bd as f64);
    metrics::gauge!("stackfed_migration_bytes", "of" => "total").set(bt as f64);
}

/// Seconds left to the end of the first pass, at the rate so far: only while copying
/// (a migration past it, done or failed shows 0, also when some objects were found
/// already copied and never counted: a copy interrupted by a cluster that went down).
fn eta_seconds(p: &Progress) -> f64 {
    let left = p.objects_total.saturating_sub(p.objects_done) as f64;
    if p.phase == "copying" && p.objects_per_second > 0.0 {
        left / p.objects_per_second
    } else {
        0.0
    }
}

/// A copy that found the source's object gone.
const GONE: u64 = u64::MAX;

/// What a mirror pass did, and the listings it read (before its steps).
struct Pass {
    /// Steps taken (the objects found gone at the source not counted).
    steps: usize,
    /// Objects the source listed but no longer had (their copies deleted).
    gone: std::collections::HashSet<String>,
    /// The source's listing.
    source: Vec<federation_core::migration::Entry>,
    /// The destination's listing.
    dest: Vec<federation_core::migration::Entry>,
}

/// The mark a migration puts on its containers' records in `phase`.
fn entry_mark(entry: &JournalEntry, phase: Phase) -> MoveMark {
    MoveMark {
        id: entry.id.clone(),
        from: entry.from.clone(),
        to: entry.to.clone(),
        phase,
    }
}

fn lease_ms(config: &MigrationConfig) -> u64 {
    u64::try_from(config.lease.as_millis()).unwrap_or(30_000)
}

fn read_entry(rec: &ContainerRecord) -> Option<JournalEntry> {
    serde_json::from_str(rec.attributes.get(JOURNAL_ATTRIBUTE)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_stops_when_the_phase_is_final() {
        // A done migration kept counting: elapsed_seconds grew and objects/s fell on
        // every GET after the end (fresh-user review, 2026-12-01).
        let mut l = Live {
            progress: Progress {
                phase: "copying".into(),
                ..Progress::default()
            },
            started: Instant::now(),
            ended: None,
        };
        l.end_if_over();
        assert!(l.ended.is_none(), "still copying");
        l.progress.phase = "done".into();
        l.end_if_over();
        let first = l.elapsed();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(l.elapsed(), first, "the clock stopped at the end");
        let ended = l.ended;
        l.end_if_over();
        assert_eq!(l.ended, ended, "the first end stays");
    }

    #[test]
    fn eta_is_zero_once_past_copying() {
        let mut p = Progress {
            phase: "copying".into(),
            objects_total: 150,
            objects_done: 145,
            objects_per_second: 5.0,
            ..Progress::default()
        };
        assert!((eta_seconds(&p) - 1.0).abs() < 1e-9);
        for phase in [
            "switching",
            "cleaning",
            "done",
            "failed",
            "cancelled",
            "waiting",
        ] {
            p.phase = phase.into();
            assert_eq!(eta_seconds(&p), 0.0, "{phase}");
        }
        p.phase = "copying".into();
        p.objects_per_second = 0.0;
        assert_eq!(eta_seconds(&p), 0.0);
        p.objects_per_second = 5.0;
        p.objects_done = 400; // re-copies of objects written during the move
        assert_eq!(eta_seconds(&p), 0.0);
    }
}
