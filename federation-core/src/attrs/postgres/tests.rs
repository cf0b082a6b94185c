//! Against a real PostgreSQL server: ignored by a plain `cargo test`; `tests/interop`
//! starts one (Debian's package, loopback, a temporary directory) and runs these with
//! `--ignored`, naming it in `STACKFED_PG_URL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::attrs::sql::checks;

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
    crate::attrs::conformance::two_stores_race_with_one_winner(one, two, "pg").await;
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
    let client = one.pool.get().await.unwrap();
    let count = || async {
        let n: i64 = client
            .query_one("SELECT count(*) FROM stackfed_sessions", &[])
            .await
            .unwrap()
            .get(0);
        u64::try_from(n).unwrap()
    };
    checks::sessions_are_shared_bounded_and_expire(&one, &two, count).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real PostgreSQL; run by tests/interop"]
async fn notifications_bound_how_long_a_stale_record_is_used() {
    let (b, plain, fed) = (store().await, store().await, store().await);
    checks::feed_bounds_staleness(b, plain, fed, |s, f| s.watch(f), "LISTEN/NOTIFY").await;
}
