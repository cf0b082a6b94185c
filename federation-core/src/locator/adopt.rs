//! Adoption: a container found on a cluster without a record (a cluster that joined the
//! federation with containers of its own, or a record lost with its store).
//!
//! On a record miss the locator asks every reachable cluster, through a
//! [`ContainerProbe`], whether it holds the name: none → no such container; exactly one
//! → the container is recorded there (policy `adopted`); several → an error naming
//! them, because an operator must decide: the federation never picks one silently. A
//! cluster that cannot answer makes the question undecidable (it may hold the name too):
//! the lookup fails rather than adopt or create a second container of that name.

use async_trait::async_trait;

/// Why a probe could not answer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

use super::{LocateError, Locator};
use crate::attrs::ContainerRecord;
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

/// Asks one cluster whether it holds a container.
#[async_trait]
pub trait ContainerProbe: Send + Sync {
    /// Whether `cluster` holds `account/container`; an error when the cluster could not
    /// say (unreachable, or an error of its own).
    async fn holds(
        &self,
        cluster: &ClusterId,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<bool, BoxError>;
}

impl Locator {
    /// The container's record (from the cache, or from the store when `fresh`); on a
    /// miss, asks `clusters` through `probe` and adopts the container where exactly one
    /// holds it. Two or more holders: [`LocateError::Ambiguous`]; otherwise a cluster
    /// that could not answer: [`LocateError::Undecided`].
    pub async fn locate_or_adopt(
        &self,
        account: &AccountName,
        container: &ContainerName,
        fresh: bool,
        clusters: &[ClusterId],
        probe: &dyn ContainerProbe,
    ) -> Result<Option<ContainerRecord>, LocateError> {
        let known = if fresh {
            self.locate_fresh(account, container).await?
        } else {
            self.locate(account, container).await?
        };
        if known.is_some() {
            return Ok(known);
        }
        let answers = futures::future::join_all(
            clusters
                .iter()
                .map(|c| async move { (c, probe.holds(c, account, container).await) }),
        )
        .await;
        let mut holders: Vec<ClusterId> = Vec::new();
        let mut failed = None;
        for (c, answer) in answers {
            match answer {
                Ok(true) => holders.push(c.clone()),
                Ok(false) => {}
                Err(e) => {
                    failed.get_or_insert((c.clone(), e));
                }
            }
        }
        if let (Some((cluster, source)), 0 | 1) = (failed, holders.len()) {
            tracing::warn!(%account, %container, %cluster, error = %source, "cannot tell whether a cluster holds a container");
            return Err(LocateError::Undecided {
                container: container.clone(),
                cluster,
                source,
            });
        }
        match holders.as_slice() {
            [] => Ok(None),
            [one] => {
                let placed = self.adopt(account, container, one.clone()).await?;
                if placed.created {
                    tracing::info!(%account, %container, cluster = %one, "adopted an existing container");
                }
                Ok(Some(placed.record))
            }
            _ => {
                tracing::error!(%account, %container, clusters = ?holders, "one container name on several clusters");
                Err(LocateError::Ambiguous {
                    container: container.clone(),
                    clusters: holders,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::MemoryStore;
    use crate::cluster::{ClusterRegistry, ClusterSpec, ClusterStatus};
    use crate::placement::MostFree;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Holders(BTreeSet<&'static str>, AtomicUsize);

    #[async_trait]
    impl ContainerProbe for Holders {
        async fn holds(
            &self,
            c: &ClusterId,
            _: &AccountName,
            _: &ContainerName,
        ) -> Result<bool, BoxError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            if c.as_str() == "down" {
                return Err("unreachable".into());
            }
            Ok(self.0.contains(c.as_str()))
        }
    }

    fn locator() -> (Locator, Vec<ClusterId>) {
        let ids = ["a", "b", "c"];
        let statuses = ids
            .iter()
            .map(|i| {
                ClusterStatus::new(ClusterSpec::new(
                    ClusterId::new(*i).unwrap(),
                    format!("http://{i}.invalid").parse().unwrap(),
                    1 << 40,
                ))
            })
            .collect();
        let registry = Arc::new(ClusterRegistry::from_statuses(statuses).unwrap());
        let loc = Locator::new(Arc::new(MemoryStore::new()), registry, Arc::new(MostFree));
        (
            loc,
            ids.iter().map(|i| ClusterId::new(*i).unwrap()).collect(),
        )
    }

    #[tokio::test]
    async fn none_one_or_many_holders() {
        let (loc, ids) = locator();
        let acct = AccountName::new("AUTH_t").unwrap();
        let name = |n: &str| ContainerName::new(n).unwrap();

        let none = Holders(BTreeSet::new(), AtomicUsize::new(0));
        let r = loc
            .locate_or_adopt(&acct, &name("x"), false, &ids, &none)
            .await
            .unwrap();
        assert!(r.is_none());
        assert_eq!(none.1.load(Ordering::SeqCst), 3, "every cluster asked");

        let one = Holders(BTreeSet::from(["b"]), AtomicUsize::new(0));
        let r = loc
            .locate_or_adopt(&acct, &name("y"), false, &ids, &one)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.cluster.as_str(), "b");
        assert_eq!(r.policy, "adopted");
        // Recorded: the next lookup asks nobody.
        let again = loc
            .locate_or_adopt(&acct, &name("y"), true, &ids, &one)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.cluster.as_str(), "b");
        assert_eq!(one.1.load(Ordering::SeqCst), 3);

        let two = Holders(BTreeSet::from(["a", "c"]), AtomicUsize::new(0));
        match loc
            .locate_or_adopt(&acct, &name("z"), false, &ids, &two)
            .await
        {
            Err(LocateError::Ambiguous { clusters, .. }) => {
                let names: Vec<_> = clusters.iter().map(ClusterId::as_str).collect();
                assert_eq!(names, ["a", "c"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            loc.locate(&acct, &name("z")).await.unwrap().is_none(),
            "nothing recorded"
        );
    }
}
