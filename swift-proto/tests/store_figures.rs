//! Container-record figures for the README, per attribute store: create latency
//! (sequential), create throughput (16 concurrent creators) and the locator's miss
//! latency (a lookup that reaches the store). Small and bounded; ignored by a plain
//! `cargo test`: `tests/interop/test_swift_shared_store.py` runs it against a real
//! PostgreSQL (`STACKFED_PG_URL`), a real MariaDB (`STACKFED_MYSQL_URL`,
//! `STACKFED_MYSQL_PASSWORD_FILE`) and a real Swift registry (`STACKFED_REGISTRY_*`),
//! and SQLite on a file in a temporary directory (unless `STACKFED_FIGURES_SKIP_SQLITE`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use federation_core::attrs::{AttributeStore, NewContainer, SqliteStore};
use federation_core::placement::MostFree;
use federation_core::{
    AccountName, ClusterId, ClusterRegistry, ClusterSpec, ContainerName, Locator,
};
use stackfed_http::{HttpClient, Timeouts};
use swift_proto::registry::{SwiftAttributeStore, SwiftStoreConfig};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn measure(name: &str, store: Arc<dyn AttributeStore>, sequential: usize, concurrent: usize) {
    let account = AccountName::new(format!(
        "AUTH_fig_{name}_{}",
        federation_core::attrs::now_ms()
    ))
    .unwrap();
    let east = ClusterId::new("east").unwrap();
    let new = |i: usize| {
        NewContainer::new(
            account.clone(),
            ContainerName::new(format!("c{i:06}")).unwrap(),
            east.clone(),
        )
    };
    let mut lat = Vec::new();
    for i in 0..sequential {
        let t = Instant::now();
        assert!(store.create_if_absent(new(i)).await.unwrap().created());
        lat.push(t.elapsed());
    }
    let start = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let store = store.clone();
            let batch: Vec<_> = (sequential + w..sequential + concurrent)
                .step_by(16)
                .map(new)
                .collect();
            tokio::spawn(async move {
                for n in batch {
                    assert!(store.create_if_absent(n).await.unwrap().created());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let throughput = concurrent as f64 / start.elapsed().as_secs_f64();
    let spec = ClusterSpec::new(east.clone(), "http://127.0.0.1:1".parse().unwrap(), 1 << 40);
    let registry = Arc::new(ClusterRegistry::new(vec![spec]).unwrap());
    // Cache capacity 0: every lookup is a miss that reads the store.
    let locator = Locator::with_cache(store, registry, Arc::new(MostFree), 0, Duration::ZERO);
    let mut miss = Vec::new();
    for i in 0..sequential {
        let c = ContainerName::new(format!("c{i:06}")).unwrap();
        let t = Instant::now();
        assert!(locator.locate(&account, &c).await.unwrap().is_some());
        miss.push(t.elapsed());
    }
    println!(
        "FIGURE {name}: create {:.2} ms (median of {sequential}), {throughput:.0} creates/s (16 concurrent, {concurrent}), locator miss {:.0} µs (median)",
        median(lat).as_secs_f64() * 1e3,
        median(miss).as_secs_f64() * 1e6,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real PostgreSQL, MariaDB and Swift; run by tests/interop"]
async fn store_figures() {
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("STACKFED_FIGURES_SKIP_SQLITE").is_none() {
        let sqlite = SqliteStore::open(dir.path().join("figures.db")).unwrap();
        measure("sqlite", Arc::new(sqlite), 200, 800).await;
    }
    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("STACKFED_PG_URL") {
        use federation_core::attrs::{PostgresConfig, PostgresStore};
        let pg = PostgresStore::open(&PostgresConfig::new(url))
            .await
            .unwrap();
        measure("postgres", Arc::new(pg), 200, 800).await;
    }
    #[cfg(feature = "mysql")]
    if let Ok(url) = std::env::var("STACKFED_MYSQL_URL") {
        use federation_core::attrs::{MysqlConfig, MysqlStore};
        let mut config = MysqlConfig::new(url);
        config.password_file = std::env::var_os("STACKFED_MYSQL_PASSWORD_FILE").map(Into::into);
        let my = MysqlStore::open(&config).await.unwrap();
        measure("mysql (MariaDB)", Arc::new(my), 200, 800).await;
    }
    if let Ok(endpoint) = std::env::var("STACKFED_REGISTRY_ENDPOINT") {
        let config = SwiftStoreConfig::new(
            endpoint.parse().unwrap(),
            std::env::var("STACKFED_REGISTRY_USER").unwrap(),
            std::env::var("STACKFED_REGISTRY_KEY").unwrap(),
        )
        .container(format!("figures-{}", std::process::id()));
        let swift = SwiftAttributeStore::new(config, HttpClient::new(Timeouts::default()));
        measure("swift (settle 200 ms)", Arc::new(swift), 10, 64).await;
    }
}
