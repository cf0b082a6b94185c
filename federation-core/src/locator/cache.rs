//! A bounded, TTL'd cache of container records that never resurrects a deleted one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::attrs::ContainerRecord;

/// Key: `account NUL container` (NUL never occurs in a valid name).
pub(crate) type Key = String;

pub(crate) fn key(account: &str, container: &str) -> Key {
    let mut k = String::with_capacity(account.len() + container.len() + 1);
    k.push_str(account);
    k.push('\0');
    k.push_str(container);
    k
}

struct Entry {
    record: ContainerRecord,
    expires: Instant,
    seq: u64,
}

struct Inner {
    /// Foldhash, randomly seeded: SipHash's hashing of the key was about 230
    /// instructions of every request.
    map: HashMap<Key, Entry, foldhash::fast::RandomState>,
    /// Insertion order for eviction: (key, seq); stale pairs are skipped when popped.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
    /// Bumped by every invalidation: a fill that began before it must not land.
    generation: u64,
}

/// See the module docs.
pub(crate) struct RecordCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

impl std::fmt::Debug for RecordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RecordCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::default(),
                order: VecDeque::new(),
                next_seq: 0,
                generation: 0,
            }),
            capacity,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &str) -> Option<ContainerRecord> {
        let mut inner = self.lock();
        match inner.map.get(key) {
            Some(e) if e.expires > Instant::now() => Some(e.record.clone()),
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// The generation to pass to [`fill`](Self::fill) after a store read.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Caches a record read from the store, unless an invalidation happened since
    /// `generation` was taken (the read may predate a delete).
    pub(crate) fn fill(&self, key: Key, record: ContainerRecord, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            self.insert(&mut inner, key, record);
        }
    }

    /// Replaces the entry with a record this process just wrote (authoritative).
    pub(crate) fn replace(&self, key: Key, record: ContainerRecord) {
        let mut inner = self.lock();
        inner.generation += 1;
        self.insert(&mut inner, key, record);
    }

    pub(crate) fn invalidate(&self, key: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.remove(key);
    }

    /// Drops every entry (and any fill in flight).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.map.clear();
        inner.order.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn insert(&self, inner: &mut Inner, key: Key, record: ContainerRecord) {
        if self.capacity == 0 {
            return;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((key.clone(), seq));
        inner.map.insert(
            key,
            Entry {
                record,
                expires: Instant::now() + self.ttl,
                seq,
            },
        );
        while inner.map.len() > self.capacity {
            let Some((k, s)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&k).is_some_and(|e| e.seq == s) {
                inner.map.remove(&k);
            }
        }
        // Re-inserted keys leave stale pairs behind; compact when they dominate.
        if inner.order.len() > 2 * self.capacity + 16 {
            let Inner { map, order, .. } = inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::NewContainer;
    use crate::{AccountName, ClusterId, ContainerName};

    fn rec(c: &str) -> ContainerRecord {
        NewContainer::new(
            AccountName::new("a").unwrap(),
            ContainerName::new(c).unwrap(),
            ClusterId::new("x").unwrap(),
        )
        .into_record()
    }

    #[test]
    fn bounded_fifo_eviction() {
        let cache = RecordCache::new(3, Duration::from_secs(60));
        for i in 0..10 {
            let g = cache.generation();
            cache.fill(key("a", &format!("c{i}")), rec(&format!("c{i}")), g);
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(&key("a", "c9")).is_some());
        assert!(cache.get(&key("a", "c0")).is_none());
        // Re-inserting one key many times keeps the order queue bounded.
        for _ in 0..1000 {
            cache.replace(key("a", "hot"), rec("hot"));
        }
        assert!(cache.lock().order.len() <= 2 * 3 + 16 + 1);
    }

    #[test]
    fn clear_drops_entries_and_fills_in_flight() {
        let cache = RecordCache::new(3, Duration::from_secs(60));
        cache.fill(key("a", "c"), rec("c"), 0);
        let g = cache.generation();
        cache.clear();
        assert_eq!(cache.len(), 0);
        cache.fill(key("a", "d"), rec("d"), g);
        assert!(cache.get(&key("a", "d")).is_none());
    }

    #[test]
    fn ttl_expires() {
        let cache = RecordCache::new(3, Duration::from_millis(0));
        cache.fill(key("a", "c"), rec("c"), 0);
        assert!(cache.get(&key("a", "c")).is_none());
    }

    #[test]
    fn a_fill_that_began_before_an_invalidation_is_dropped() {
        let cache = RecordCache::new(3, Duration::from_secs(60));
        let g = cache.generation();
        cache.invalidate(&key("a", "c"));
        cache.fill(key("a", "c"), rec("c"), g);
        assert!(cache.get(&key("a", "c")).is_none());
    }
}
