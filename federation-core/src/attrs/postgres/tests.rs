//! Against a real PostgreSQL server: ignored by a plain `cargo test`; `tests/interop`
//! starts one (Debian's package, loopback, a temporary directory) and runs these with
//! `--ignored`, naming it in `STACKFED_PG_URL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::placement::MostFree;
use crate::sessions::{SealedSession, SessionStore};
use crate::{ClusterRegistry, ClusterSpec, Locator};

fn url() -> String {
    std::env::var("STACKFED_PG_URL").expect("STACKFED_PG_URL names the test database")
}

async fn store() -> PostgresStore {
    PostgresStore::open(&PostgresConfig::new(url()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real PostgreSQL; run by tests/interop"]
async fn postgres_passes_the_conformance_suite() {
    crate::attrs::conformance::run_all(Arc::new(store().await), "pg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real PostgreSQL; run by tests/interop"]
async fn two_pools_race_with_one_winner() {
    // Two independent pools, as two proxy processes have, 8 tasks each per name.
    let (one, two) = (Arc::new(store().await), Arc::new(store().await));
    let a = AccountName::new(format!("AUTH_pgrace_{}", crate::attrs::now_ms())).unwrap();
    for round in 0..50 {
        let c = ContainerName::new(format!("c{round}")).unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = if i % 2 == 0 { one.clone() } else { two.clone() };
                let new = NewContainer::new(
                    a.clone(),
                    c.clone(),
                    ClusterId::new(format!("k{i}")).unwrap(),
                );
                tokio::spawn(async move { s.create_if_absent(new).await })
            })
            .collect();
        let mut winners = 0;
        let mut clusters = std::collections::BTreeSet::new();
        for t in tasks {
            let o = t.await.unwrap().unwrap();
            winners += usize::from(o.created());
            clusters.insert(o.record().cluster.clone());
        }
        assert_eq!((winners, clusters.len()), (1, 1), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real PostgreSQL; run by tests/interop"]
async fn sessions_are_shared_bounded_and_expire() {
    let config = PostgresConfig {
        max_sessions: 3,
        ..PostgresConfig::new(url())
    };
    let one = PostgresStore::open(&config).await.unwrap();
    let two = PostgresStore::open(&config).await.unwrap();
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
    let client = one.pool.get().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM stackfed_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "bounded");
    assert!(one.get_session(&[7; 32]).await.unwrap().is_some());
    client
        .execute("DELETE FROM stackfed_sessions", &[])
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a real PostgreSQL; run by tests/interop"]
async fn a_database_that_is_not_there_is_unavailable_quickly() {
    // A closed port on loopback: connection refused, a retryable error, no hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = PostgresConfig {
        timeout_seconds: 2.0,
        ..PostgresConfig::new(format!("postgres://x@127.0.0.1:{port}/x"))
    };
    let start = Instant::now();
    let err = PostgresStore::open(&config).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

fn locator(store: PostgresStore, ttl: Duration) -> Arc<Locator> {
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

/// How long proxy A keeps using a record after proxy B deleted it: `rounds` samples,
/// each the time from the return of B's delete until A's (cached) lookup stops naming
/// the old cluster; then B creates it again on another cluster and A must see that at
/// once. Sorted.
async fn staleness(
    a: &Locator,
    b: &PostgresStore,
    rounds: usize,
    limit: Duration,
) -> Vec<Duration> {
    let account = AccountName::new(format!("AUTH_pgstale_{}", crate::attrs::now_ms())).unwrap();
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

fn summary(samples: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "n={} median={:.1} ms p95={:.1} ms max={:.1} ms",
        samples.len(),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 95 / 100]),
        ms(samples[samples.len() - 1])
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real PostgreSQL; run by tests/interop"]
async fn notifications_bound_how_long_a_stale_record_is_used() {
    let ttl = Duration::from_secs(2);
    let b = store().await;
    // Before: no change feed; A trusts its cache for the TTL.
    let before = staleness(&locator(store().await, ttl), &b, 5, ttl * 2).await;
    // After: A listens and drops what another proxy changed.
    let a_store = store().await;
    let a = locator(a_store.clone(), ttl);
    // The test owns the feed (federation-core does not depend on stackfed-http).
    let mut bg = tokio::task::JoinSet::new();
    let watched = a.clone();
    let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
    let feed = a_store.watch(move |change| match change {
        Change::Record { account, container } => watched.invalidate(&account, &container),
        Change::Resync => {
            watched.invalidate_all();
            let _ = ready_tx.send(true);
        }
    });
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
    println!("STALENESS after (LISTEN/NOTIFY): {}", summary(&after));
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
