//! Client writes to a container that is moving (see [`federation_core::migration`]):
//! held while the mover switches it, counted while in flight so the mover can wait for
//! them before its last pass.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::attrs::ContainerRecord;
use federation_core::migration::{MoveMark, WriteRoute};
use federation_core::placement::{ClusterFilter, PlacementRequest};
use federation_core::{AccountName, ClusterId, ClusterStatus, ContainerName, Unfit};

use super::{FederationService, Result};
use crate::error::SwiftError;

/// Moves a small versions/history archive next to the container that names it, on a
/// client's request (the mover, when `[migration]` is configured; see
/// [`FederationService::set_archive_mover`]).
pub trait ArchiveMover: Send + Sync + std::fmt::Debug {
    /// Most objects an archive may hold to be moved on a client's request.
    fn limit(&self) -> u64;
    /// Moves `container` (with the containers that move with it) to `to`; returns
    /// once its record names `to`, or why it could not.
    fn move_archive<'a>(
        &'a self,
        account: &'a AccountName,
        container: &'a ContainerName,
        to: &'a federation_core::ClusterId,
    ) -> futures::future::BoxFuture<'a, std::result::Result<(), String>>;
}

/// The clusters being drained of an account's containers: while a drain runs, a new
/// container of that account is not placed there (else the drain would end with the
/// cluster still holding containers of the account). The drains this process runs,
/// and the drains saved as running in the attribute store (by any proxy sharing it,
/// as last seen by the migrations' resume loop).
#[derive(Debug, Default)]
pub struct Drains {
    running: Mutex<HashMap<(String, ClusterId), usize>>,
    saved: Mutex<HashSet<(String, ClusterId)>>,
}

/// One running drain; the cluster takes new containers of the account again when the
/// last guard for it is dropped.
#[derive(Debug)]
pub struct DrainGuard {
    drains: Arc<Drains>,
    key: (String, ClusterId),
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        let mut running = self
            .drains
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut running, &self.key);
    }
}

impl Drains {
    /// Starts keeping new containers of `account` off `cluster`, until the guard is
    /// dropped.
    pub fn begin(self: &Arc<Self>, account: &AccountName, cluster: &ClusterId) -> DrainGuard {
        let key = (account.as_str().to_owned(), cluster.clone());
        *self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default() += 1;
        DrainGuard {
            drains: self.clone(),
            key,
        }
    }

    /// Like [`Drains::begin`], unless this process already drains `cluster` of
    /// `account` (then `None`: a second drain of it would only race the first).
    pub fn try_begin(
        self: &Arc<Self>,
        account: &AccountName,
        cluster: &ClusterId,
    ) -> Option<DrainGuard> {
        let key = (account.as_str().to_owned(), cluster.clone());
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(&key) {
            return None;
        }
        running.insert(key.clone(), 1);
        Some(DrainGuard {
            drains: self.clone(),
            key,
        })
    }

    /// The drains saved as running in the attribute store, as read now (replaces what
    /// was read before).
    pub fn set_saved(&self, drains: impl IntoIterator<Item = (AccountName, ClusterId)>) {
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = drains
            .into_iter()
            .map(|(a, c)| (a.as_str().to_owned(), c))
            .collect();
    }

    /// A placement filter refusing the clusters `account` is being drained from, if
    /// any.
    pub fn filter(&self, account: &AccountName) -> Option<DrainFilter> {
        let clusters = self.draining(account);
        (!clusters.is_empty()).then_some(DrainFilter { clusters })
    }

    /// The clusters `account` is being drained from (by this process, or saved as
    /// running).
    pub fn draining(&self, account: &AccountName) -> Vec<ClusterId> {
        let mut clusters: Vec<ClusterId> = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|(a, _)| a == account.as_str())
            .map(|(_, c)| c.clone())
            .collect();
        for (a, c) in self
            .saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            if a == account.as_str() && !clusters.contains(c) {
                clusters.push(c.clone());
            }
        }
        clusters
    }
}

/// Refuses the clusters an account is being drained from ([`Unfit::Draining`]).
#[derive(Debug)]
pub struct DrainFilter {
    clusters: Vec<ClusterId>,
}

impl ClusterFilter for DrainFilter {
    fn check(
        &self,
        _: &PlacementRequest,
        cluster: &ClusterStatus,
    ) -> std::result::Result<(), Unfit> {
        if self.clusters.contains(cluster.id()) {
            Err(Unfit::Draining)
        } else {
            Ok(())
        }
    }

    fn name(&self) -> &'static str {
        "the account is being drained from the cluster"
    }
}

/// One holder of `key` fewer in a table of counts (the key gone at zero).
fn release<K: Eq + std::hash::Hash>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// How often a held write reads the record again.
const HOLD_POLL: Duration = Duration::from_millis(50);

/// Writes in flight to moving containers, per (account, container), in this process.
#[derive(Debug)]
pub struct Inflight {
    counts: Mutex<HashMap<(String, String), usize>>,
    /// Objects written through this proxy while their container moves: the mover
    /// re-checks each one (a container listing may lag a write).
    touched: Mutex<HashMap<(String, String), HashSet<String>>>,
    max_hold_ms: AtomicU64,
}

impl Default for Inflight {
    fn default() -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
            touched: Mutex::new(HashMap::new()),
            max_hold_ms: AtomicU64::new(30_000),
        }
    }
}

impl Inflight {
    /// How long a write may be held before it is answered 503 (the mover gives up a
    /// switch well before that).
    pub fn set_max_hold(&self, max: Duration) {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self.max_hold_ms.store(ms, Ordering::Relaxed);
    }

    /// The longest hold.
    pub fn max_hold(&self) -> Duration {
        Duration::from_millis(self.max_hold_ms.load(Ordering::Relaxed))
    }

    /// How many writes to the container are in flight.
    pub fn count(&self, account: &str, container: &str) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(account.to_owned(), container.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Takes the names of the objects written to the container since the last take.
    pub fn take_touched(&self, account: &str, container: &str) -> Vec<String> {
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(account.to_owned(), container.to_owned()))
            .map(|s| s.into_iter().collect())
            .unwrap_or_default()
    }

    fn touch(&self, key: &(String, String), object: Option<&String>) {
        if let Some(o) = object {
            self.touched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default()
                .insert(o.clone());
        }
    }

    fn enter(
        self: &Arc<Self>,
        account: &str,
        container: &str,
        object: Option<&str>,
    ) -> InflightGuard {
        let key = (account.to_owned(), container.to_owned());
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_insert(0) += 1;
        let object = object.map(str::to_owned);
        InflightGuard {
            table: self.clone(),
            key,
            object,
        }
    }
}

/// A write in flight; counted until dropped.
#[derive(Debug)]
pub(crate) struct InflightGuard {
    table: Arc<Inflight>,
    key: (String, String),
    object: Option<String>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        // Again once the write is done: a take in between must not miss it.
        self.table.touch(&self.key, self.object.as_ref());
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut counts, &self.key);
    }
}

impl FederationService {
    /// Before a client write to `record`'s container: when it is moving, the record
    /// as it is now (read past the cache), after waiting out a switch, and a guard that
    /// counts the write until it is done. Containers that are not moving pass at once.
    pub(super) async fn write_gate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        object: Option<&str>,
        record: ContainerRecord,
    ) -> Result<(ContainerRecord, Option<InflightGuard>)> {
        if MoveMark::of(&record).is_none() {
            return Ok((record, None));
        }
        let table = &self.inner.inflight;
        let deadline = Instant::now() + table.max_hold();
        loop {
            // Counted first, then read: a switch that begins after this read waits for
            // this write (see the mover's switch).
            let guard = table.enter(account.as_str(), container.as_str(), object);
            let Some(now) = self.inner.locator.locate_fresh(account, container).await? else {
                return Err(SwiftError::not_found());
            };
            let route = MoveMark::of(&now).map_or(WriteRoute::Proceed, |m| m.write_route(&now));
            if route == WriteRoute::Proceed {
                // Only a write that goes on names its object for the mover's re-check
                // (now and when it ends): a held one has written nothing, and naming it
                // at every poll gave each verification pass of the switch something to
                // copy, so the switch never verified while any write waited.
                table.touch(&guard.key, guard.object.as_ref());
                return Ok((now, Some(guard)));
            }
            let mut guard = guard;
            guard.object = None;
            drop(guard);
            if Instant::now() >= deadline {
                return Err(SwiftError::unavailable(
                    "The container is switching clusters; retry",
                ));
            }
            tokio::time::sleep(HOLD_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_drains_join_this_process_drains_until_read_again() {
        let drains = Arc::new(Drains::default());
        let a = AccountName::new("AUTH_a").unwrap();
        let b = AccountName::new("AUTH_b").unwrap();
        let east = ClusterId::new("east").unwrap();
        let west = ClusterId::new("west").unwrap();
        assert!(drains.filter(&a).is_none());
        let guard = drains.begin(&a, &east);
        drains.set_saved([(a.clone(), east.clone()), (a.clone(), west.clone())]);
        assert_eq!(
            drains.filter(&a).unwrap().clusters,
            vec![east.clone(), west.clone()]
        );
        assert!(drains.filter(&b).is_none());
        // The saved ones end when the store no longer says running; this one's guard
        // still holds east.
        drains.set_saved([]);
        assert_eq!(drains.filter(&a).unwrap().clusters, vec![east]);
        drop(guard);
        assert!(drains.filter(&a).is_none());
    }

    #[test]
    fn one_drain_of_a_cluster_per_account_in_this_process() {
        let drains = Arc::new(Drains::default());
        let a = AccountName::new("AUTH_a").unwrap();
        let b = AccountName::new("AUTH_b").unwrap();
        let east = ClusterId::new("east").unwrap();
        let west = ClusterId::new("west").unwrap();
        let first = drains.try_begin(&a, &east).unwrap();
        assert!(drains.try_begin(&a, &east).is_none());
        // Another cluster, another account: their own drains.
        let other = drains.try_begin(&a, &west).unwrap();
        let _b = drains.try_begin(&b, &east).unwrap();
        let mut both = drains.draining(&a);
        both.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(both, vec![east.clone(), west.clone()]);
        drop(other);
        assert_eq!(drains.draining(&a), vec![east.clone()]);
        // A resumed drain (begin) also holds it.
        drop(first);
        let resumed = drains.begin(&a, &east);
        assert!(drains.try_begin(&a, &east).is_none());
        drop(resumed);
        assert!(drains.try_begin(&a, &east).is_some());
    }
}
