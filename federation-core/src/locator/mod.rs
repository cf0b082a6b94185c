//! The locator: the one entry point a proxy uses to find or place a container.
//!
//! It ties the [`AttributeStore`], the [`ClusterRegistry`] and a [`PlacementPolicy`]
//! together, with a bounded, TTL'd cache in front of the store. A record deleted or
//! replaced through this locator is never served stale from its cache afterwards, even
//! when a lookup was in flight during the delete.
//!
//! ```
//! use std::sync::Arc;
//! use federation_core::attrs::{Attributes, MemoryStore};
//! use federation_core::placement::{MostFree, PlacementRequest};
//! use federation_core::{AccountName, ClusterId, ClusterRegistry, ClusterSpec, ContainerName, Locator};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let spec = ClusterSpec::new(ClusterId::new("east").unwrap(), "http://127.0.0.1:8080".parse().unwrap(), 1 << 40);
//! let registry = Arc::new(ClusterRegistry::new(vec![spec]).unwrap());
//! let locator = Locator::new(Arc::new(MemoryStore::new()), registry, Arc::new(MostFree));
//!
//! let account = AccountName::new("AUTH_test").unwrap();
//! let container = ContainerName::new("photos").unwrap();
//! let placed = locator
//!     .place(PlacementRequest::new(account.clone(), container.clone()), Attributes::new())
//!     .await
//!     .unwrap();
//! assert!(placed.created);
//! let found = locator.locate(&account, &container).await.unwrap().unwrap();
//! assert_eq!(found.cluster.as_str(), "east");
//! # });
//! ```

mod cache;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::attrs::{AttributeStore, Attributes, ContainerRecord, NewContainer, StoreError};
use crate::cluster::{ClusterId, ClusterRegistry};
use crate::name::{AccountName, ContainerName};
use crate::placement::{
    ClusterFilter, PlacementError, PlacementPolicy, PlacementRequest, Rejection,
};

use cache::{key, RecordCache};

pub mod adopt;
pub use adopt::ContainerProbe;

/// Cache size used by [`Locator::new`].
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// Cache lifetime used by [`Locator::new`]: how long a record changed by another proxy
/// may be served from this one's cache.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// Errors from the locator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    /// The attribute store failed; see [`StoreError`] for what to do.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No cluster could be chosen; see [`PlacementError`].
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A container without a record exists on several clusters: an operator must
    /// decide which one is the container (see [`adopt`]).
    #[error("container {container} exists on clusters {}; an operator must resolve this", .clusters.iter().map(ClusterId::as_str).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The container.
        container: ContainerName,
        /// The clusters holding it.
        clusters: Vec<ClusterId>,
    },
    /// A container without a record might exist on a cluster that could not be asked,
    /// so it can neither be adopted nor created elsewhere yet (a retry may help).
    #[error("cannot tell whether cluster {cluster} holds container {container}: {source}")]
    Undecided {
        /// The container.
        container: ContainerName,
        /// The cluster that did not answer.
        cluster: ClusterId,
        /// Why.
        #[source]
        source: adopt::BoxError,
    },
}

/// The result of [`Locator::place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The container's record (new, or the one that already existed).
    pub record: ContainerRecord,
    /// Whether this call created it. `false` means the container already had a cluster
    /// (possibly because another proxy won a race to create it).
    pub created: bool,
}

/// See the [module docs](self).
#[derive(Debug)]
pub struct Locator {
    store: Arc<dyn AttributeStore>,
    registry: Arc<ClusterRegistry>,
    policy: Arc<dyn PlacementPolicy>,
    cache: RecordCache,
}

impl Locator {
    /// A locator with the default cache (100,000 records, 10 s).
    pub fn new(
        store: Arc<dyn AttributeStore>,
        registry: Arc<ClusterRegistry>,
        policy: Arc<dyn PlacementPolicy>,
    ) -> Self {
        Self::with_cache(
            store,
            registry,
            policy,
            DEFAULT_CACHE_CAPACITY,
            DEFAULT_CACHE_TTL,
        )
    }

    /// A locator whose cache holds up to `capacity` records for `ttl` each
    /// (`capacity` 0 disables it).
    pub fn with_cache(
        store: Arc<dyn AttributeStore>,
        registry: Arc<ClusterRegistry>,
        policy: Arc<dyn PlacementPolicy>,
        capacity: usize,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            registry,
            policy,
            cache: RecordCache::new(capacity, ttl),
        }
    }

    /// The attribute store.
    pub fn store(&self) -> &Arc<dyn AttributeStore> {
        &self.store
    }

    /// The cluster registry.
    pub fn registry(&self) -> &Arc<ClusterRegistry> {
        &self.registry
    }

    /// The placement policy.
    pub fn policy(&self) -> &Arc<dyn PlacementPolicy> {
        &self.policy
    }

    /// How many records the cache holds now.
    pub fn cached_records(&self) -> usize {
        self.cache.len()
    }

    /// A store read, timed into `stackfed_store_get_seconds` (and
    /// `stackfed_store_errors_total` when it fails).
    async fn timed_get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, crate::attrs::StoreError> {
        let started = std::time::Instant::now();
        let found = self.store.get(account, container).await;
        metrics::histogram!("stackfed_store_get_seconds").record(started.elapsed().as_secs_f64());
        if found.is_err() {
            metrics::counter!("stackfed_store_errors_total", "op" => "get").increment(1);
        }
        found
    }

    /// The record of a container, from the cache or the store; `None` if it has none.
    /// Counts `stackfed_locator_lookups_total{result="hit"|"miss"|"fresh"}`.
    pub async fn locate(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, LocateError> {
        let k = key(account.as_str(), container.as_str());
        if let Some(hit) = self.cache.get(&k) {
            metrics::counter!("stackfed_locator_lookups_total", "result" => "hit").increment(1);
            return Ok(Some(hit));
        }
        metrics::counter!("stackfed_locator_lookups_total", "result" => "miss").increment(1);
        let generation = self.cache.generation();
        let found = self.timed_get(account, container).await?;
        if let Some(record) = &found {
            self.cache.fill(k, record.clone(), generation);
        }
        Ok(found)
    }

    /// [`locate`](Self::locate) past the cache: reads the store and refreshes the cache
    /// with what it finds. For writes that must not act on a record another proxy has
    /// since deleted or replaced (container creation and deletion).
    pub async fn locate_fresh(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, LocateError> {
        let k = key(account.as_str(), container.as_str());
        metrics::counter!("stackfed_locator_lookups_total", "result" => "fresh").increment(1);
        let found = self.timed_get(account, container).await?;
        match &found {
            Some(record) => self.cache.replace(k, record.clone()),
            None => self.cache.invalidate(&k),
        }
        Ok(found)
    }

    /// Finds the container's cluster, or chooses one with the policy and records it
    /// (create-if-absent: when another proxy wins the race, its choice is returned with
    /// `created: false`). `attributes` are stored with a new record.
    pub async fn place(
        &self,
        request: PlacementRequest,
        attributes: Attributes,
    ) -> Result<Placement, LocateError> {
        self.place_filtered(request, attributes, None).await
    }

    /// [`place`](Self::place), considering only the clusters `filter` admits (for a
    /// constraint of this one request, such as a storage policy only some clusters
    /// offer). Clusters it refuses are named in a [`PlacementError::NoFit`].
    pub async fn place_filtered(
        &self,
        mut request: PlacementRequest,
        attributes: Attributes,
        filter: Option<&dyn ClusterFilter>,
    ) -> Result<Placement, LocateError> {
        if let Some(record) = self.locate(&request.account, &request.container).await? {
            return Ok(Placement {
                record,
                created: false,
            });
        }
        if self.policy.needs_footprint() {
            request.footprint = self.footprint(&request.account).await?;
        }
        let snapshot = self.registry.snapshot();
        let mut candidates = Vec::with_capacity(snapshot.len());
        let mut refused = Vec::new();
        for c in snapshot.iter() {
            match filter.map_or(Ok(()), |f| f.check(&request, c)) {
                Ok(()) => candidates.push(c),
                Err(reason) => refused.push(Rejection {
                    cluster: c.id().clone(),
                    reason,
                }),
            }
        }
        // A pinned cluster a filter refused: that reason, not "no cluster named" (the
        // policy never sees it).
        if let Some(r) = request
            .pin
            .as_ref()
            .and_then(|p| refused.iter().find(|r| &r.cluster == p))
        {
            return Err(PlacementError::PinRefused {
                cluster: r.cluster.clone(),
                reason: r.reason.clone(),
            }
            .into());
        }
        let cluster = match self.policy.place(&request, &candidates) {
            Err(PlacementError::NoFit { rejections }) => {
                refused.extend(rejections);
                return Err(PlacementError::NoFit {
                    rejections: refused,
                }
                .into());
            }
            other => other?,
        };
        let new = NewContainer::new(request.account.clone(), request.container.clone(), cluster)
            .attributes(attributes)
            .policy(self.policy.name());
        self.record_new(new).await
    }

    /// Creates a record unless one exists, and caches whichever record won.
    async fn record_new(&self, new: NewContainer) -> Result<Placement, LocateError> {
        let outcome = self.store.create_if_absent(new).await?;
        let created = outcome.created();
        let record = outcome.into_record();
        self.cache.replace(
            key(record.account.as_str(), record.container.as_str()),
            record.clone(),
        );
        Ok(Placement { record, created })
    }

    /// Records a container found on `cluster` without a record (a cluster that joined
    /// the federation with containers of its own). Create-if-absent: if a record
    /// appeared meanwhile, that one wins and is returned with `created: false`.
    pub async fn adopt(
        &self,
        account: &AccountName,
        container: &ContainerName,
        cluster: ClusterId,
    ) -> Result<Placement, LocateError> {
        let new = NewContainer::new(account.clone(), container.clone(), cluster).policy("adopted");
        self.record_new(new).await
    }

    /// Replaces a container's attributes (compare-and-set on `expected_version`).
    pub async fn update_attributes(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        attributes: Attributes,
    ) -> Result<ContainerRecord, LocateError> {
        let result = self
            .store
            .update_attributes(account, container, expected_version, attributes)
            .await;
        self.write_through(account, container, result)
    }

    /// Caches the record a compare-and-set write produced; on failure drops whatever
    /// was cached (it is out of date).
    fn write_through(
        &self,
        account: &AccountName,
        container: &ContainerName,
        result: Result<ContainerRecord, StoreError>,
    ) -> Result<ContainerRecord, LocateError> {
        let k = key(account.as_str(), container.as_str());
        match result {
            Ok(record) => {
                self.cache.replace(k, record.clone());
                Ok(record)
            }
            Err(e) => {
                self.cache.invalidate(&k);
                Err(e.into())
            }
        }
    }

    /// Deletes a container's record (conditional on `expected_version` when given) and
    /// drops it from the cache; returns what was deleted.
    pub async fn forget(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, LocateError> {
        let k = key(account.as_str(), container.as_str());
        let result = self
            .store
            .delete(account, container, expected_version)
            .await;
        self.cache.invalidate(&k);
        Ok(result?)
    }

    /// Records that a container moved to `cluster` (compare-and-set on
    /// `expected_version`) and caches the new record.
    pub async fn relocate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        cluster: ClusterId,
    ) -> Result<ContainerRecord, LocateError> {
        let result = self
            .store
            .relocate(account, container, expected_version, cluster)
            .await;
        self.write_through(account, container, result)
    }

    /// Drops a container from the cache (for example after a backend said it is gone).
    pub fn invalidate(&self, account: &AccountName, container: &ContainerName) {
        self.cache
            .invalidate(&key(account.as_str(), container.as_str()));
    }

    /// Drops every cached record, and any lookup in flight (for example when changes
    /// made by other proxies may have been missed).
    pub fn invalidate_all(&self) {
        self.cache.clear();
    }

    /// How many of the account's containers each cluster holds, from the store.
    pub async fn footprint(
        &self,
        account: &AccountName,
    ) -> Result<BTreeMap<ClusterId, u64>, LocateError> {
        const PAGE: usize = 10_000;
        let mut counts = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self.store.list(account, marker.as_deref(), PAGE).await?;
            for r in &page {
                *counts.entry(r.cluster.clone()).or_insert(0) += 1;
            }
            if page.len() < PAGE {
                return Ok(counts);
            }
            marker = page.last().map(|r| r.container.as_str().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::CreateOutcome;
    use crate::attrs::MemoryStore;
    use crate::cluster::{ClusterSpec, ClusterState, ClusterStatus, Unfit};
    use crate::placement::{AccountAffinity, MostFree};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn registry(ids: &[&str]) -> Arc<ClusterRegistry> {
        Arc::new(
            ClusterRegistry::new(
                ids.iter()
                    .map(|i| {
                        ClusterSpec::new(
                            ClusterId::new(i).unwrap(),
                            "http://127.0.0.1:1".parse().unwrap(),
                            1000,
                        )
                    })
                    .collect(),
            )
            .unwrap(),
        )
    }

    fn names(c: &str) -> (AccountName, ContainerName) {
        (
            AccountName::new("AUTH_t").unwrap(),
            ContainerName::new(c).unwrap(),
        )
    }

    /// A store that counts `get` calls and can pause one, to stage races.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryStore,
        gets: AtomicUsize,
        gate: tokio::sync::Mutex<()>,
    }

    #[async_trait]
    impl AttributeStore for Counting {
        async fn get(
            &self,
            a: &AccountName,
            c: &ContainerName,
        ) -> Result<Option<ContainerRecord>, StoreError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let found = self.inner.get(a, c).await;
            let _wait = self.gate.lock().await;
            found
        }
        async fn create_if_absent(&self, n: NewContainer) -> Result<CreateOutcome, StoreError> {
            self.inner.create_if_absent(n).await
        }
        async fn update_attributes(
            &self,
            a: &AccountName,
            c: &ContainerName,
            v: u64,
            at: Attributes,
        ) -> Result<ContainerRecord, StoreError> {
            self.inner.update_attributes(a, c, v, at).await
        }
        async fn delete(
            &self,
            a: &AccountName,
            c: &ContainerName,
            v: Option<u64>,
        ) -> Result<ContainerRecord, StoreError> {
            self.inner.delete(a, c, v).await
        }
        async fn relocate(
            &self,
            a: &AccountName,
            c: &ContainerName,
            v: u64,
            cluster: ClusterId,
        ) -> Result<ContainerRecord, StoreError> {
            self.inner.relocate(a, c, v, cluster).await
        }
        async fn list(
            &self,
            a: &AccountName,
            m: Option<&str>,
            l: usize,
        ) -> Result<Vec<ContainerRecord>, StoreError> {
            self.inner.list(a, m, l).await
        }
    }

    #[tokio::test]
    async fn locate_is_cached_and_forget_invalidates() {
        let store = Arc::new(Counting::default());
        let loc = Locator::new(store.clone(), registry(&["a"]), Arc::new(MostFree));
        let (a, c) = names("c");
        assert!(loc.locate(&a, &c).await.unwrap().is_none());
        loc.place(
            PlacementRequest::new(a.clone(), c.clone()),
            Attributes::new(),
        )
        .await
        .unwrap();
        let before = store.gets.load(Ordering::SeqCst);
        for _ in 0..5 {
            assert!(loc.locate(&a, &c).await.unwrap().is_some());
        }
        assert_eq!(
            store.gets.load(Ordering::SeqCst),
            before,
            "served from cache"
        );
        loc.forget(&a, &c, Some(1)).await.unwrap();
        assert!(loc.locate(&a, &c).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_stale_location_after_a_concurrent_forget() {
        let store = Arc::new(Counting::default());
        let loc = Arc::new(Locator::new(
            store.clone(),
            registry(&["a"]),
            Arc::new(MostFree),
        ));
        let (a, c) = names("c");
        loc.store()
            .create_if_absent(NewContainer::new(
                a.clone(),
                c.clone(),
                ClusterId::new("a").unwrap(),
            ))
            .await
            .unwrap();
        // A lookup reads the record, then stalls before it can fill the cache...
        let gate = store.gate.lock().await;
        let lookup = {
            let (loc, a, c) = (loc.clone(), a.clone(), c.clone());
            tokio::spawn(async move { loc.locate(&a, &c).await })
        };
        while store.gets.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // ...while the container is forgotten.
        loc.forget(&a, &c, None).await.unwrap();
        drop(gate);
        assert!(
            lookup.await.unwrap().unwrap().is_some(),
            "the read predates the delete"
        );
        assert!(
            loc.locate(&a, &c).await.unwrap().is_none(),
            "but its result must not be cached"
        );
    }

    #[tokio::test]
    async fn place_uses_policy_and_reports_a_lost_race() {
        let store: Arc<dyn AttributeStore> = Arc::new(MemoryStore::new());
        let reg = registry(&["a", "b"]);
        reg.set_state(&ClusterId::new("a").unwrap(), ClusterState::Draining)
            .unwrap();
        let loc = Locator::new(store.clone(), reg.clone(), Arc::new(MostFree));
        let (a, c) = names("c");
        let p = loc
            .place(
                PlacementRequest::new(a.clone(), c.clone()),
                [("tier".to_owned(), "x".to_owned())].into(),
            )
            .await
            .unwrap();
        assert!(p.created);
        assert_eq!(p.record.cluster.as_str(), "b");
        assert_eq!(p.record.policy, "most-free");
        assert_eq!(
            p.record.attributes.get("tier").map(String::as_str),
            Some("x")
        );

        // Another proxy (another locator on the same store) placing the same name loses.
        let other = Locator::new(store, reg, Arc::new(MostFree));
        let q = other
            .place(PlacementRequest::new(a, c), Attributes::new())
            .await
            .unwrap();
        assert!(!q.created);
        assert_eq!(q.record, p.record);
    }

    #[tokio::test]
    async fn a_pin_refused_by_a_filter_says_why() {
        #[derive(Debug)]
        struct NotA;
        impl crate::placement::ClusterFilter for NotA {
            fn check(&self, _: &PlacementRequest, c: &ClusterStatus) -> Result<(), Unfit> {
                if c.id().as_str() == "a" {
                    Err(Unfit::Draining)
                } else {
                    Ok(())
                }
            }
            fn name(&self) -> &'static str {
                "not a"
            }
        }
        let loc = Locator::new(
            Arc::new(MemoryStore::new()),
            registry(&["a", "b"]),
            Arc::new(crate::placement::Pin),
        );
        let (a, c) = names("c");
        let err = loc
            .place_filtered(
                PlacementRequest::new(a, c).pin(ClusterId::new("a").unwrap()),
                Attributes::new(),
                Some(&NotA),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                LocateError::Placement(PlacementError::PinRefused { cluster, reason: Unfit::Draining })
                    if cluster.as_str() == "a"
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn no_fit_is_reported() {
        let reg = registry(&["a"]);
        reg.set_state(&ClusterId::new("a").unwrap(), ClusterState::Offline)
            .unwrap();
        let loc = Locator::new(Arc::new(MemoryStore::new()), reg, Arc::new(MostFree));
        let (a, c) = names("c");
        let err = loc
            .place(
                PlacementRequest::new(a.clone(), c.clone()),
                Attributes::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            LocateError::Placement(PlacementError::NoFit { .. })
        ));
        assert!(
            loc.locate(&a, &c).await.unwrap().is_none(),
            "nothing recorded"
        );
    }

    #[tokio::test]
    async fn affinity_gets_the_footprint() {
        let loc = Locator::new(
            Arc::new(MemoryStore::new()),
            registry(&["a", "b"]),
            Arc::new(AccountAffinity::new(0.8)),
        );
        let (acct, _) = names("x");
        let first = loc
            .place(
                PlacementRequest::new(acct.clone(), ContainerName::new("one").unwrap())
                    .pin(ClusterId::new("b").unwrap()),
                Attributes::new(),
            )
            .await
            .unwrap();
        // Affinity ignores pins; with an empty footprint the tie goes to "a".
        assert_eq!(first.record.cluster.as_str(), "a");
        loc.forget(&acct, &ContainerName::new("one").unwrap(), None)
            .await
            .unwrap();
        loc.store()
            .create_if_absent(NewContainer::new(
                acct.clone(),
                ContainerName::new("home").unwrap(),
                ClusterId::new("b").unwrap(),
            ))
            .await
            .unwrap();
        let next = loc
            .place(
                PlacementRequest::new(acct, ContainerName::new("two").unwrap()),
                Attributes::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            next.record.cluster.as_str(),
            "b",
            "follows the account's home"
        );
    }

    #[tokio::test]
    async fn adopt_records_once() {
        let loc = Locator::new(
            Arc::new(MemoryStore::new()),
            registry(&["a", "b"]),
            Arc::new(MostFree),
        );
        let (a, c) = names("found");
        let first = loc
            .adopt(&a, &c, ClusterId::new("b").unwrap())
            .await
            .unwrap();
        assert!(first.created);
        assert_eq!(first.record.policy, "adopted");
        let again = loc
            .adopt(&a, &c, ClusterId::new("a").unwrap())
            .await
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.record.cluster.as_str(), "b");
        assert_eq!(
            loc.locate(&a, &c).await.unwrap().unwrap().cluster.as_str(),
            "b"
        );
    }

    #[tokio::test]
    async fn update_attributes_refreshes_the_cache() {
        let loc = Locator::new(
            Arc::new(MemoryStore::new()),
            registry(&["a"]),
            Arc::new(MostFree),
        );
        let (a, c) = names("c");
        loc.place(
            PlacementRequest::new(a.clone(), c.clone()),
            Attributes::new(),
        )
        .await
        .unwrap();
        loc.update_attributes(&a, &c, 1, [("k".to_owned(), "v".to_owned())].into())
            .await
            .unwrap();
        let r = loc.locate(&a, &c).await.unwrap().unwrap();
        assert_eq!(r.version, 2);
        assert_eq!(r.attributes.get("k").map(String::as_str), Some("v"));
        assert!(matches!(
            loc.update_attributes(&a, &c, 1, Attributes::new()).await,
            Err(LocateError::Store(StoreError::Conflict { .. }))
        ));
    }
}
