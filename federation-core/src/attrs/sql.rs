//! What the SQL stores (PostgreSQL, MySQL/MariaDB) share: the row → record conversion,
//! the error for a conditional statement that touched no row, the change events their
//! feeds produce, and the configuration helpers (timeouts, password files).

use std::path::Path;
use std::time::Duration;

use super::{Attributes, ContainerRecord, StoreError};
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

/// The columns of a container record, in this order, in every SQL store.
pub(crate) const COLUMNS: &str =
    "account, container, cluster, attributes, placed_at_ms, policy, version";

/// What the database says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// This container's record was updated, relocated or deleted by someone (maybe
    /// this very process): a cached copy is stale.
    Record {
        /// The account.
        account: AccountName,
        /// The container.
        container: ContainerName,
    },
    /// The feed was (re)established after a gap: changes made during the gap were not
    /// seen, so every cached record is suspect.
    Resync,
}

/// One record's columns as the database returned them, before any check.
#[derive(Debug)]
pub(crate) struct RawRecord {
    pub(crate) account: Vec<u8>,
    pub(crate) container: Vec<u8>,
    pub(crate) cluster: Vec<u8>,
    pub(crate) attributes: Vec<u8>,
    pub(crate) placed_at_ms: i64,
    pub(crate) policy: Vec<u8>,
    pub(crate) version: i64,
}

/// A store-damaged error: `db` names the database (`"PostgreSQL"`, `"MySQL"`).
pub(crate) fn corrupt(db: &str, what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Internal {
        message: format!("corrupt {what} in {db}: {detail}"),
    }
}

impl RawRecord {
    /// Checks every column: names, cluster id, JSON attributes, non-negative numbers.
    pub(crate) fn into_record(self, db: &str) -> Result<ContainerRecord, StoreError> {
        let text =
            |bytes: Vec<u8>, what: &str| String::from_utf8(bytes).map_err(|e| corrupt(db, what, e));
        Ok(ContainerRecord {
            account: AccountName::new(text(self.account, "account")?)
                .map_err(|e| corrupt(db, "account", e))?,
            container: ContainerName::new(text(self.container, "container")?)
                .map_err(|e| corrupt(db, "container", e))?,
            cluster: ClusterId::new(text(self.cluster, "cluster")?)
                .map_err(|e| corrupt(db, "cluster", e))?,
            attributes: serde_json::from_slice(&self.attributes)
                .map_err(|e| corrupt(db, "attributes", e))?,
            placed_at_ms: u64::try_from(self.placed_at_ms).map_err(|e| corrupt(db, "time", e))?,
            policy: text(self.policy, "policy")?,
            version: u64::try_from(self.version).map_err(|e| corrupt(db, "version", e))?,
        })
    }
}

/// The attributes as stored: JSON text.
pub(crate) fn json(attributes: &Attributes) -> Result<String, StoreError> {
    serde_json::to_string(attributes).map_err(|e| StoreError::InvalidInput {
        reason: e.to_string(),
    })
}

/// A version or time as a signed 64-bit column.
pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        reason: format!("{v} does not fit in a bigint"),
    })
}

/// After a conditional statement found no row at `expected` version: why, from what a
/// read of the record returned (no record, or another version).
pub(crate) fn miss(
    account: &AccountName,
    container: &ContainerName,
    expected: u64,
    read: Result<Option<ContainerRecord>, StoreError>,
) -> StoreError {
    match read {
        Ok(Some(r)) => StoreError::Conflict {
            account: account.clone(),
            container: container.clone(),
            expected,
            actual: r.version,
        },
        Ok(None) => StoreError::NotFound {
            account: account.clone(),
            container: container.clone(),
        },
        Err(e) => e,
    }
}

/// `work`, or an [`StoreError::Unavailable`] naming `db` and `what` if it takes longer
/// than `timeout`.
pub(crate) async fn bounded<T>(
    db: &str,
    timeout: Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| StoreError::Unavailable {
            message: format!("{db} did not answer in time ({what})"),
            source: None,
        })?
}

/// A create that lost its race, found the winner's record gone, and lost again a few
/// times: a retry later will do.
pub(crate) fn kept_changing() -> StoreError {
    StoreError::Unavailable {
        message: "the record kept being created and deleted; try again".to_owned(),
        source: None,
    }
}

/// `timeout_seconds` as a positive duration.
pub(crate) fn positive_timeout(seconds: f64) -> Result<Duration, StoreError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| StoreError::InvalidInput {
            reason: "timeout_seconds must be a positive number".to_owned(),
        })
}

/// The password in `path` (its first line).
pub(crate) fn read_password(path: &Path) -> Result<String, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::InvalidInput {
        reason: format!("password_file {}: {e}", path.display()),
    })?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Checks both SQL stores run against a real database: shared sessions, and how long a
/// proxy keeps using a record another proxy changed.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod checks {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Change;
    use crate::attrs::{AttributeStore, NewContainer};
    use crate::placement::MostFree;
    use crate::sessions::{SealedSession, SessionStore};
    use crate::{AccountName, ClusterId, ClusterRegistry, ClusterSpec, ContainerName, Locator};

    /// Two stores (two proxies) with `max_sessions = 3` over one database: a session
    /// written by one is read by the other, expired ones are not returned, at most 3
    /// are kept (`count` reads how many rows there are).
    pub(crate) async fn sessions_are_shared_bounded_and_expire<S, F, Fut>(
        one: &S,
        two: &S,
        count: F,
    ) where
        S: SessionStore,
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = u64>,
    {
        let later = crate::attrs::now_ms() + 60_000;
        let s = |b: u8, expires_at_ms| SealedSession {
            sealed: vec![b; 8],
            expires_at_ms,
        };
        one.put_session(&[1; 32], s(1, later)).await.unwrap();
        assert_eq!(two.get_session(&[1; 32]).await.unwrap(), Some(s(1, later)));
        two.put_session(&[2; 32], s(2, 1)).await.unwrap();
        assert_eq!(one.get_session(&[2; 32]).await.unwrap(), None, "expired");
        for b in 3..8u8 {
            one.put_session(&[b; 32], s(b, later + u64::from(b)))
                .await
                .unwrap();
        }
        assert_eq!(count().await, 3, "bounded");
        assert_eq!(
            two.get_session(&[7; 32]).await.unwrap(),
            Some(s(7, later + 7))
        );
        assert_eq!(two.get_session(&[1; 32]).await.unwrap(), None, "dropped");
        // The session just written stays, even when it expires before all the others
        // (a proxy's new login must work on every proxy at once).
        one.put_session(&[9; 32], s(9, later - 1_000))
            .await
            .unwrap();
        assert_eq!(count().await, 3, "bounded");
        assert_eq!(
            two.get_session(&[9; 32]).await.unwrap(),
            Some(s(9, later - 1_000)),
            "the newest session is kept"
        );
    }

    /// A locator over `store` with two clusters and a cache of `ttl`.
    pub(crate) fn locator<S: AttributeStore>(store: S, ttl: Duration) -> Arc<Locator> {
        let specs = ["east", "west"].map(|c| {
            ClusterSpec::new(
                ClusterId::new(c).unwrap(),
                "http://127.0.0.1:1".parse().unwrap(),
                1 << 40,
            )
        });
        let registry = Arc::new(ClusterRegistry::new(specs.to_vec()).unwrap());
        Arc::new(Locator::with_cache(
            Arc::new(store),
            registry,
            Arc::new(MostFree),
            1000,
            ttl,
        ))
    }

    /// How long proxy A keeps using a record after proxy B deleted it: `rounds`
    /// samples, each the time from the return of B's delete until A's (cached) lookup
    /// stops naming the old cluster; then B creates it again on another cluster and A
    /// must see that at once. Sorted.
    pub(crate) async fn staleness<S: AttributeStore>(
        a: &Locator,
        b: &S,
        rounds: usize,
        limit: Duration,
    ) -> Vec<Duration> {
        let account = AccountName::new(format!("AUTH_stale_{}", crate::attrs::now_ms())).unwrap();
        let (east, west) = (
            ClusterId::new("east").unwrap(),
            ClusterId::new("west").unwrap(),
        );
        let mut samples = Vec::new();
        for i in 0..rounds {
            let c = ContainerName::new(format!("s{i}")).unwrap();
            b.create_if_absent(NewContainer::new(account.clone(), c.clone(), east.clone()))
                .await
                .unwrap();
            assert_eq!(a.locate(&account, &c).await.unwrap().unwrap().cluster, east);
            // Spread the deletes over a feed's period, or the rounds fall into step
            // with a polling feed and every sample is close to its worst case.
            let spread = u64::try_from(i * 37 % 101).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(spread)).await;
            b.delete(&account, &c, None).await.unwrap();
            let start = Instant::now();
            loop {
                let now = a.locate(&account, &c).await.unwrap().map(|r| r.cluster);
                if now.as_ref() != Some(&east) || start.elapsed() > limit {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            samples.push(start.elapsed());
            b.create_if_absent(NewContainer::new(account.clone(), c.clone(), west.clone()))
                .await
                .unwrap();
            assert_eq!(a.locate(&account, &c).await.unwrap().unwrap().cluster, west);
        }
        samples.sort();
        samples
    }

    /// The feed's worth: how long proxy A keeps using a record proxy B deleted,
    /// without a change feed (`plain`: for its cache TTL) and with one (`fed`, whose
    /// `watch` is started here): under 500 ms. Prints both, `label` naming the feed.
    pub(crate) async fn feed_bounds_staleness<S, W, Fut>(
        b: S,
        plain: S,
        fed: S,
        watch: W,
        label: &str,
    ) where
        S: AttributeStore + Clone,
        W: FnOnce(&S, Box<dyn Fn(Change) + Send + Sync>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let ttl = Duration::from_secs(2);
        // Before: no change feed; A trusts its cache for the TTL.
        let before = staleness(&locator(plain, ttl), &b, 5, ttl * 2).await;
        // After: A follows the feed and drops what another proxy changed. The test owns
        // the feed (federation-core does not depend on stackfed-http).
        let a = locator(fed.clone(), ttl);
        let watched = a.clone();
        let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
        let feed = watch(
            &fed,
            Box::new(move |change| match change {
                Change::Record { account, container } => watched.invalidate(&account, &container),
                Change::Resync => {
                    watched.invalidate_all();
                    let _ = ready_tx.send(true);
                }
            }),
        );
        let mut bg = tokio::task::JoinSet::new();
        bg.spawn(feed);
        tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
            .await
            .unwrap()
            .unwrap();
        let after = staleness(&a, &b, 50, ttl * 2).await;
        println!(
            "STALENESS before (TTL {ttl:?}, no feed): {}",
            summary(&before)
        );
        println!("STALENESS after ({label}): {}", summary(&after));
        assert!(
            before[0] > ttl / 4,
            "without the feed the stale record is used: {before:?}"
        );
        assert!(
            after[after.len() - 1] < Duration::from_millis(500),
            "with the feed a stale record is dropped at once: {after:?}"
        );
        bg.abort_all();
    }

    /// `n=… median=… p95=… max=…` of sorted samples.
    pub(crate) fn summary(samples: &[Duration]) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "n={} median={:.1} ms p95={:.1} ms max={:.1} ms",
            samples.len(),
            ms(samples[samples.len() / 2]),
            ms(samples[samples.len() * 95 / 100]),
            ms(samples[samples.len() - 1])
        )
    }
}
