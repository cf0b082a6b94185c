//! Live container migration: the protocol's recorded state and its pure decisions.
//!
//! A container moves from its cluster (the *source*) to another (the *destination*)
//! while clients keep using it. The protocol is **mirror, then switch**:
//!
//! 1. **copying** — the container's record still names the source, and every client
//!    request goes there as before (reads, listings and HEADs are the source's own
//!    answers). The mover mirrors the source into a container of the same name on the
//!    destination: passes of "list both, [`diff`], apply", until a pass finds little to
//!    do. The destination is a pure mirror: nothing but the mover writes to it, so any
//!    difference is resolved towards the source (copy what is new or changed, delete
//!    what the source no longer has).
//! 2. **switching** — client *writes* to the container (object PUT/POST/DELETE,
//!    container PUT/POST/DELETE) are held at the proxy (not refused) while the mover
//!    runs one last pass with the source frozen, verifies the two listings name for
//!    name (identity key, size, content type), restores the settings withheld from the
//!    mirror (versions/history location) and moves the record to the destination
//!    (compare-and-set, [`AttributeStore::relocate`](crate::attrs::AttributeStore::relocate)).
//!    That compare-and-set *is* the switch. Reads still go to the source, which is
//!    frozen and equal to the destination.
//! 3. **cleaning** — the record names the destination; held writes go on there. After
//!    every proxy's cache has had time to see the switch, the source container is
//!    emptied and deleted, then the mark is removed.
//!
//! The state lives in the attribute store: a [`MoveMark`] in the container's record
//! (attribute [`MIGRATION_ATTRIBUTE`], a key no `X-Container-Attr-*` header can produce
//! since `@` is not allowed in a header name, and never shown to clients), and a
//! [`JournalEntry`] per migration under the account [`JOURNAL_ACCOUNT`] (so a restarted
//! proxy finds what was running). The journal entry carries a lease (owner and expiry):
//! only the holder works on a migration, renews the lease by compare-and-set, and stops
//! the moment a renewal fails. A lease that expires (its proxy died) is taken over by
//! the next proxy that looks, which resumes from the phase the record shows: every step
//! is idempotent (mirror passes converge whatever the destination holds; the switch is
//! a compare-and-set; cleaning deletes what is left).
//!
//! Invariants:
//!
//! - the record names exactly one cluster, and client writes reach only that cluster;
//! - before the switch the source is complete and authoritative; the destination is
//!   written only by the mover;
//! - the switch happens only with writes held and the two listings verified equal;
//! - the source is deleted only after the switch is recorded and every proxy's cache
//!   has expired;
//! - one lease holder per migration.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::attrs::ContainerRecord;
use crate::cluster::{ClusterId, ClusterState, ClusterStatus};

/// The record attribute holding a container's [`MoveMark`] (never a header's key).
pub const MIGRATION_ATTRIBUTE: &str = "@migration";
/// The account under which the attribute store keeps one [`JournalEntry`] per
/// migration (the entry is the `entry` attribute of the record named by its id).
pub const JOURNAL_ACCOUNT: &str = ".stackfed-migrations";
/// The journal record's attribute holding the entry.
pub const JOURNAL_ATTRIBUTE: &str = "@entry";

/// Where a container is in its move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Mirroring; clients use the source.
    Copying,
    /// Writes held; last pass, verification and the switch.
    Switching,
    /// Switched (the record names the destination); the source is being removed.
    Cleaning,
}

/// The mark a moving container's record carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveMark {
    /// The migration's id (its journal entry).
    pub id: String,
    /// The source cluster.
    pub from: ClusterId,
    /// The destination cluster.
    pub to: ClusterId,
    /// The phase.
    pub phase: Phase,
}

impl MoveMark {
    /// The mark on `record`, if it is moving (a mark that cannot be read is ignored
    /// and logged: the record is then treated as not moving).
    pub fn of(record: &ContainerRecord) -> Option<Self> {
        let raw = record.attributes.get(MIGRATION_ATTRIBUTE)?;
        match serde_json::from_str(raw) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(account = %record.account, container = %record.container, error = %e, "unreadable migration mark");
                None
            }
        }
    }

    /// The mark as an attribute value.
    pub fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What a client write to `record`'s container must do now.
    pub fn write_route(&self, record: &ContainerRecord) -> WriteRoute {
        if self.phase == Phase::Switching && record.cluster == self.from {
            WriteRoute::Hold
        } else {
            WriteRoute::Proceed
        }
    }
}

/// What a client write does while its container moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRoute {
    /// Go to the cluster the record names.
    Proceed,
    /// Wait for the switch to finish, then read the record again.
    Hold,
}

/// Where a migration stands, as its journal says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JournalState {
    /// Being worked on (or waiting for a proxy to take it over).
    Running,
    /// Every container switched and the source removed.
    Done,
    /// Stopped for a reason an operator must read (for example, the container was
    /// deleted by its owner while it moved).
    Failed {
        /// Why.
        reason: String,
    },
    /// An operator cancelled it before the switch: being rolled back (marks removed,
    /// the destination's copy deleted) by whoever holds the lease.
    Cancelling,
    /// Rolled back: the records never left the source, the destination's copy is gone.
    Cancelled,
}

impl JournalState {
    /// Whether a proxy still has work to do on it (running or rolling back).
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Running | Self::Cancelling)
    }
}

/// One migration: a container and the containers that must stay with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The id (also the journal record's name).
    pub id: String,
    /// The account.
    pub account: String,
    /// The containers, in the order they are mirrored (referenced ones first: segments
    /// and version archives before the container that refers to them).
    pub containers: Vec<String>,
    /// The source cluster.
    pub from: ClusterId,
    /// The destination cluster.
    pub to: ClusterId,
    /// The state.
    pub state: JournalState,
    /// The proxy instance holding the lease.
    pub owner: String,
    /// When the lease ends, milliseconds since the Unix epoch.
    pub lease_until_ms: u64,
    /// When the migration was asked for.
    pub created_ms: u64,
    /// Set (by compare-and-set on the journal record) right before the records are
    /// moved: from then on the switch is committed and a cancel is refused. A cancel
    /// is the same compare-and-set from the other side, so exactly one of them wins.
    #[serde(default)]
    pub switched: bool,
}

impl JournalEntry {
    /// Whether `owner` may work on it at `now_ms` (it holds the lease, or the lease has
    /// expired).
    pub fn claimable_by(&self, owner: &str, now_ms: u64) -> bool {
        self.state.is_active() && (self.owner == owner || self.lease_until_ms < now_ms)
    }

    /// What a cancel asked of this entry must do.
    pub fn cancel(&self) -> CancelOutcome {
        match self.state {
            JournalState::Running if self.switched => CancelOutcome::Refused(
                "the switch is committed: the container is (or is being) switched to the \
                 destination; move it back with a new migration"
                    .into(),
            ),
            JournalState::Running => CancelOutcome::Cancel,
            JournalState::Cancelling | JournalState::Cancelled => CancelOutcome::Already,
            JournalState::Done => CancelOutcome::Refused(
                "the migration is done; move the container back with a new migration".into(),
            ),
            JournalState::Failed { .. } => {
                CancelOutcome::Refused("the migration has failed and was cleaned up".into())
            }
        }
    }
}

/// The answer to a cancel of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Record `Cancelling`: the lease holder rolls it back.
    Cancel,
    /// Already cancelling or cancelled (a repeated cancel is not an error).
    Already,
    /// Too late (or nothing to cancel), and why.
    Refused(String),
}

/// One object as a listing shows it, reduced to what the mirror compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The object's name.
    pub name: String,
    /// Its content identity: the ETag (for an SLO, the `slo_etag`), size and content
    /// type, joined. Equal on both clusters for a faithful copy.
    pub key: String,
    /// The source's `last_modified` (a version stamp; not preserved by a copy).
    pub modified: String,
}

/// One step of a mirror pass.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Copy the source's object to the destination.
    Copy(String),
    /// Delete the destination's object (the source no longer has it).
    Delete(String),
}

/// The steps that make the destination a mirror of the source.
///
/// `copied` maps a name to the source `modified` stamp the mover last copied (what the
/// listing showed before its copy). An object is copied when the destination lacks it,
/// holds other content, or the source's stamp differs from the one last copied (a
/// metadata change, or a write racing the copy); for a name copied by an earlier
/// process (not in `copied`), when the source's stamp is not older than the
/// destination's (the copy is older than the source's version). Both listings must be
/// complete.
pub fn diff(source: &[Entry], dest: &[Entry], copied: &HashMap<String, String>) -> Vec<Action> {
    let dest: BTreeMap<&str, &Entry> = dest.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in source {
        seen.insert(s.name.as_str());
        let stale = match dest.get(s.name.as_str()) {
            None => true,
            Some(d) if d.key != s.key => true,
            Some(d) => match copied.get(&s.name) {
                Some(stamp) => *stamp != s.modified,
                None => s.modified >= d.modified,
            },
        };
        if stale {
            out.push(Action::Copy(s.name.clone()));
        }
    }
    for name in dest.keys() {
        if !seen.contains(name) {
            out.push(Action::Delete((*name).to_owned()));
        }
    }
    out
}

/// A rebalance's fill target: the fraction of its capacity every cluster should stay
/// under. Written as a fraction (`0.8`, more than 0 and at most 1) or as a percentage
/// string (`"80%"`, more than 0 and at most 100). A bare number above 1 is refused
/// rather than read as a percentage (`80` would otherwise mean 8,000%).
///
/// ```
/// use federation_core::migration::FillTarget;
/// assert_eq!(FillTarget::parse_json(&serde_json::json!(0.8)).unwrap().fraction(), 0.8);
/// assert_eq!(FillTarget::parse_json(&serde_json::json!("75%")).unwrap().fraction(), 0.75);
/// assert!(FillTarget::parse_json(&serde_json::json!(80)).is_err());
/// assert!(FillTarget::parse_json(&serde_json::json!("0%")).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct FillTarget(f64);

impl FillTarget {
    /// A target from a fraction in (0, 1].
    pub fn new(fraction: f64) -> Result<Self, String> {
        if fraction.is_finite() && fraction > 0.0 && fraction <= 1.0 {
            Ok(Self(fraction))
        } else {
            Err(format!(
                "fill_target {fraction} must be a fraction more than 0 and at most 1 (or a \
                 percentage string such as \"80%\")"
            ))
        }
    }

    /// Reads a JSON value: a fraction, or a string `"NN%"` (or a fraction as a string).
    pub fn parse_json(v: &serde_json::Value) -> Result<Self, String> {
        match v {
            serde_json::Value::Number(n) => Self::new(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => {
                let s = s.trim();
                match s.strip_suffix('%') {
                    Some(p) => match p.trim().parse::<f64>() {
                        Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self(p / 100.0)),
                        _ => Err(format!(
                            "fill_target {s:?} must be a percentage more than 0% and at most 100%"
                        )),
                    },
                    None => s
                        .parse::<f64>()
                        .map_err(|_| format!("fill_target {s:?} is not a fraction or a percentage"))
                        .and_then(Self::new),
                }
            }
            other => Err(format!(
                "fill_target must be a fraction (0.8) or a percentage (\"80%\"), not {other}"
            )),
        }
    }

    /// The fraction.
    pub fn fraction(self) -> f64 {
        self.0
    }

    /// Whether `used` bytes of `capacity` are over the target (a cluster of unknown,
    /// zero, capacity always is: it never takes a container).
    pub fn over(self, used: u64, capacity: u64) -> bool {
        capacity == 0 || used as f64 > self.0 * capacity as f64
    }
}

/// A container a rebalance may move (with the containers that move with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Its account.
    pub account: String,
    /// Its name.
    pub container: String,
    /// Where it is.
    pub cluster: ClusterId,
    /// Bytes it (and the containers that move with it) hold.
    pub bytes: u64,
}

/// One move a rebalance plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedMove {
    /// What moves.
    pub candidate: Candidate,
    /// Where to.
    pub to: ClusterId,
}

/// Plans the moves that bring every cluster under `target`, from `clusters` (their
/// capacity and used bytes) and the `candidates` on them.
///
/// The pick, per cluster over the target (the fullest first): the *smallest*
/// container that alone brings it under the target and fits somewhere, else the
/// *largest* that fits somewhere, and again. That is the fewest moves (each one holds
/// the container's writes once and waits for every proxy's cache twice) and, among
/// those, the least data copied; moving small containers first would take many moves
/// for little, moving the largest first would copy more than needed.
///
/// A destination must be online (not draining or offline), not the source, and stay
/// under the target with the container added (projected); among those, `choose`
/// decides (the placement policy, given the clusters with their projected usage), and
/// `None` means none suits it. Empty containers never help and are not moved. The
/// plan stops when every cluster is under the target or nothing can help; it returns
/// the moves and the projected used bytes per cluster.
pub fn plan_rebalance(
    clusters: &[ClusterStatus],
    candidates: &[Candidate],
    target: FillTarget,
    mut choose: impl FnMut(&Candidate, &[&ClusterStatus]) -> Option<ClusterId>,
) -> (Vec<PlannedMove>, BTreeMap<ClusterId, u64>) {
    let mut now: Vec<ClusterStatus> = clusters.to_vec();
    let mut left: Vec<&Candidate> = candidates.iter().filter(|c| c.bytes > 0).collect();
    let mut moves = Vec::new();
    let capacity = |s: &ClusterStatus| s.spec.capacity_bytes;
    loop {
        // The fullest cluster over the target that still has a candidate that fits.
        let mut over: Vec<usize> = (0..now.len())
            .filter(|&i| capacity(&now[i]) > 0 && target.over(now[i].used_bytes, capacity(&now[i])))
            .collect();
        over.sort_by(|&a, &b| now[b].fill_ratio().total_cmp(&now[a].fill_ratio()));
        let mut progressed = false;
        for i in over {
            let source = now[i].id().clone();
            let excess = now[i]
                .used_bytes
                .saturating_sub((target.0 * capacity(&now[i]) as f64).floor() as u64);
            let mut mine: Vec<usize> = (0..left.len())
                .filter(|&k| left[k].cluster == source)
                .collect();
            // Smallest sufficient first, then the rest largest-first.
            mine.sort_by_key(|&k| {
                let b = left[k].bytes;
                if b >= excess {
                    (0, b)
                } else {
                    (1, u64::MAX - b)
                }
            });
            for k in mine {
                let c = left[k];
                let fits: Vec<&ClusterStatus> = now
                    .iter()
                    .filter(|s| {
                        s.id() != &source
                            && s.state == ClusterState::Online
                            && !target.over(s.used_bytes.saturating_add(c.bytes), capacity(s))
                    })
                    .collect();
                if fits.is_empty() {
                    continue;
                }
                let Some(to) = choose(c, &fits).filter(|t| fits.iter().any(|s| s.id() == t)) else {
                    continue;
                };
                for s in &mut now {
                    if s.id() == &source {
                        s.used_bytes = s.used_bytes.saturating_sub(c.bytes);
                    } else if s.id() == &to {
                        s.used_bytes = s.used_bytes.saturating_add(c.bytes);
                    }
                }
                moves.push(PlannedMove {
                    candidate: c.clone(),
                    to,
                });
                left.remove(k);
                progressed = true;
                break;
            }
            if progressed {
                break;
            }
        }
        if !progressed {
            let projected = now.iter().map(|s| (s.id().clone(), s.used_bytes)).collect();
            return (moves, projected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The model: a source of objects (name → (content, metadata)), a destination, a
    /// clock; the mover lists, diffs and applies, while clients write the source in
    /// between any two of its steps (a write may land between the listing and the copy
    /// of the same object).
    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Post(u8, u8),
        Delete(u8),
        /// Run this many steps of the current pass.
        Step(u8),
        /// A new pass (list, diff); with `true`, the mover's memory is lost (restart).
        Pass(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u8..3).prop_map(|(n, c)| Op::Put(n, c)),
            (0u8..6, 0u8..3).prop_map(|(n, m)| Op::Post(n, m)),
            (0u8..6).prop_map(Op::Delete),
            (1u8..4).prop_map(Op::Step),
            any::<bool>().prop_map(Op::Pass),
        ]
    }

    #[derive(Clone, Debug, PartialEq)]
    struct Obj {
        content: u8,
        meta: u8,
        modified: u64,
    }

    fn listing(m: &BTreeMap<String, Obj>) -> Vec<Entry> {
        m.iter()
            .map(|(n, o)| Entry {
                name: n.clone(),
                key: o.content.to_string(),
                modified: format!("{:08}", o.modified),
            })
            .collect()
    }

    fn status(id: &str, capacity: u64, used: u64, state: ClusterState) -> ClusterStatus {
        ClusterStatus::new(crate::ClusterSpec::new(
            ClusterId::new(id).unwrap(),
            "http://127.0.0.1:1".parse().unwrap(),
            capacity,
        ))
        .with_used_bytes(used)
        .with_state(state)
    }

    proptest! {
        /// Against the model: the plan never sends a cluster over the target, conserves
        /// bytes, moves each container once and only off clusters that were over; and
        /// when it stops with a cluster still over, no container left there would fit
        /// on any eligible cluster.
        #[test]
        fn rebalance_plans_reach_the_target_or_show_nothing_helps(
            cl in proptest::collection::vec((1u64..1000, 0u64..1000, 0u8..4), 1..5),
            cs in proptest::collection::vec((0usize..5, 0u64..400), 0..25),
            pct in 1u32..=100,
            refuse in 0u8..4,
        ) {
            let target = FillTarget::new(f64::from(pct) / 100.0).unwrap();
            // A cluster's usage: its containers' bytes plus some it holds otherwise.
            let clusters: Vec<ClusterStatus> = cl.iter().enumerate().map(|(i, (cap, used, st))| {
                let state = match st { 0 => ClusterState::Draining, 1 => ClusterState::Offline, _ => ClusterState::Online };
                let mine: u64 = cs.iter().filter(|(j, _)| j % cl.len() == i).map(|(_, b)| *b).sum();
                status(&format!("c{i}"), *cap, (*used).min(*cap * 2) + mine, state)
            }).collect();
            let candidates: Vec<Candidate> = cs.iter().enumerate().map(|(k, (i, b))| Candidate {
                account: "AUTH_a".into(),
                container: format!("k{k}"),
                cluster: clusters[i % clusters.len()].id().clone(),
                bytes: *b,
            }).collect();
            // A policy that sometimes refuses (a service level nothing meets).
            let (moves, projected) = plan_rebalance(&clusters, &candidates, target, |c, fits| {
                if refuse == 0 && c.bytes % 3 == 0 { None } else { fits.last().map(|s| s.id().clone()) }
            });
            let before: u64 = clusters.iter().map(|s| s.used_bytes).sum();
            prop_assert_eq!(before, projected.values().sum::<u64>());
            let mut model: BTreeMap<ClusterId, u64> = clusters.iter().map(|s| (s.id().clone(), s.used_bytes)).collect();
            let mut moved = std::collections::BTreeSet::new();
            for m in &moves {
                prop_assert!(moved.insert(m.candidate.container.clone()), "moved twice");
                let src = &m.candidate.cluster;
                let cap = |id: &ClusterId| clusters.iter().find(|s| s.id() == id).unwrap().spec.capacity_bytes;
                prop_assert!(target.over(model[src], cap(src)), "moved off a cluster under the target");
                prop_assert!(m.candidate.bytes > 0);
                *model.get_mut(src).unwrap() -= m.candidate.bytes;
                *model.get_mut(&m.to).unwrap() += m.candidate.bytes;
                let dst = clusters.iter().find(|s| s.id() == &m.to).unwrap();
                prop_assert!(dst.state == ClusterState::Online && &m.to != src);
                prop_assert!(!target.over(model[&m.to], cap(&m.to)), "destination sent over the target");
            }
            prop_assert_eq!(&model, &projected);
            for s in &clusters {
                if !target.over(projected[s.id()], s.spec.capacity_bytes) { continue; }
                for c in candidates.iter().filter(|c| &c.cluster == s.id() && c.bytes > 0 && !moved.contains(&c.container)) {
                    let fits = clusters.iter().any(|d| d.id() != s.id() && d.state == ClusterState::Online
                        && !target.over(projected[d.id()] + c.bytes, d.spec.capacity_bytes));
                    let refused = refuse == 0 && c.bytes % 3 == 0;
                    prop_assert!(!fits || refused, "{} could still help {}", c.container, s.id());
                }
            }
        }
    }

    #[test]
    fn rebalance_takes_the_smallest_sufficient_container() {
        let clusters = [
            status("east", 100, 80, ClusterState::Online),
            status("west", 100, 10, ClusterState::Online),
        ];
        let c = |n: &str, b| Candidate {
            account: "AUTH_a".into(),
            container: n.into(),
            cluster: clusters[0].id().clone(),
            bytes: b,
        };
        let planned = |cands: &[Candidate]| {
            let (moves, projected) =
                plan_rebalance(&clusters, cands, FillTarget::new(0.5).unwrap(), |_, f| {
                    f.first().map(|s| s.id().clone())
                });
            let names: Vec<String> = moves.into_iter().map(|m| m.candidate.container).collect();
            (names, projected[clusters[0].id()])
        };
        // 30 over a 50% target: the 35 (smallest sufficient), not the 60 nor 5+10+20.
        let cands = [c("a", 5), c("b", 10), c("c", 20), c("d", 35), c("e", 60)];
        assert_eq!(planned(&cands), (vec!["d".to_owned()], 45));
        // None sufficient: largest first (20 then 10 for 30 over a 50% target).
        let cands = [c("a", 5), c("b", 10), c("c", 20)];
        assert_eq!(planned(&cands), (vec!["c".to_owned(), "b".to_owned()], 50));
    }

    proptest! {
        #[test]
        fn mirror_passes_converge_to_the_source(ops in proptest::collection::vec(op(), 0..60)) {
            let mut clock = 0u64;
            let mut src: BTreeMap<String, Obj> = BTreeMap::new();
            let mut dst: BTreeMap<String, Obj> = BTreeMap::new();
            let mut copied: HashMap<String, String> = HashMap::new();
            let mut pending: Vec<(Action, String)> = Vec::new();
            let step = |a: &(Action, String), src: &BTreeMap<String, Obj>, dst: &mut BTreeMap<String, Obj>, copied: &mut HashMap<String, String>, clock: &mut u64| {
                *clock += 1;
                match &a.0 {
                    // The copy reads whatever the source holds *now* and stamps what
                    // the listing showed.
                    Action::Copy(n) => {
                        if let Some(o) = src.get(n) {
                            dst.insert(n.clone(), Obj { modified: *clock, ..o.clone() });
                            copied.insert(n.clone(), a.1.clone());
                        }
                    }
                    Action::Delete(n) => { dst.remove(n); copied.remove(n); }
                }
            };
            for op in ops {
                clock += 1;
                match op {
                    Op::Put(n, c) => { src.insert(format!("o{n}"), Obj { content: c, meta: 0, modified: clock }); }
                    Op::Post(n, m) => { if let Some(o) = src.get_mut(&format!("o{n}")) { o.meta = m; o.modified = clock; } }
                    Op::Delete(n) => { src.remove(&format!("o{n}")); }
                    Op::Step(k) => {
                        for _ in 0..k {
                            if pending.is_empty() { break; }
                            let a = pending.remove(0);
                            step(&a, &src, &mut dst, &mut copied, &mut clock);
                        }
                    }
                    Op::Pass(restart) => {
                        if restart { copied.clear(); }
                        let s = listing(&src);
                        let stamps: HashMap<String, String> = s.iter().map(|e| (e.name.clone(), e.modified.clone())).collect();
                        pending = diff(&s, &listing(&dst), &copied)
                            .into_iter()
                            .map(|a| { let n = match &a { Action::Copy(n) | Action::Delete(n) => n.clone() }; let st = stamps.get(&n).cloned().unwrap_or_default(); (a, st) })
                            .collect();
                    }
                }
            }
            // Writes stop (the switch holds them): passes until one finds nothing.
            for _ in 0..3 {
                let s = listing(&src);
                let stamps: HashMap<String, String> = s.iter().map(|e| (e.name.clone(), e.modified.clone())).collect();
                for a in diff(&s, &listing(&dst), &copied) {
                    let n = match &a { Action::Copy(n) | Action::Delete(n) => n.clone() };
                    let st = stamps.get(&n).cloned().unwrap_or_default();
                    step(&(a, st), &src, &mut dst, &mut copied, &mut clock);
                }
            }
            prop_assert!(diff(&listing(&src), &listing(&dst), &copied).is_empty());
            let strip = |m: &BTreeMap<String, Obj>| m.iter().map(|(n, o)| (n.clone(), o.content, o.meta)).collect::<Vec<_>>();
            prop_assert_eq!(strip(&src), strip(&dst));
        }
    }

    #[test]
    fn writes_are_held_only_while_switching_on_the_source() {
        let from = ClusterId::new("a").unwrap();
        let to = ClusterId::new("b").unwrap();
        let rec = crate::attrs::NewContainer::new(
            crate::AccountName::new("AUTH_t").unwrap(),
            crate::ContainerName::new("c").unwrap(),
            from.clone(),
        )
        .into_record();
        let mut mark = MoveMark {
            id: "m".into(),
            from,
            to: to.clone(),
            phase: Phase::Copying,
        };
        assert_eq!(mark.write_route(&rec), WriteRoute::Proceed);
        mark.phase = Phase::Switching;
        assert_eq!(mark.write_route(&rec), WriteRoute::Hold);
        let mut moved = rec.clone();
        moved.cluster = to;
        assert_eq!(
            mark.write_route(&moved),
            WriteRoute::Proceed,
            "switched: writes go on"
        );
        let mut with = rec;
        with.attributes
            .insert(MIGRATION_ATTRIBUTE.into(), mark.to_value());
        assert_eq!(MoveMark::of(&with), Some(mark));
        with.attributes
            .insert(MIGRATION_ATTRIBUTE.into(), "{bad".into());
        assert_eq!(MoveMark::of(&with), None);
    }
}
