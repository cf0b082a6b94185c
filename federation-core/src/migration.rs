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
use crate::cluster::ClusterId;

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
}

impl JournalEntry {
    /// Whether `owner` may work on it at `now_ms` (it holds the lease, or the lease has
    /// expired).
    pub fn claimable_by(&self, owner: &str, now_ms: u64) -> bool {
        self.state == JournalState::Running && (self.owner == owner || self.lease_until_ms < now_ms)
    }
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
