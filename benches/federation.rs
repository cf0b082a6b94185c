//! Hot paths of federation-core: placement decisions, locator lookups, listing merges.
//!
//! Run with `cargo bench --bench federation`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use stackfed::federation_core::attrs::{AttributeStore, Attributes, NewContainer, SqliteStore};
use stackfed::federation_core::listing::{merge_page, ListingQuery, VecSource};
use stackfed::federation_core::placement::{
    MostFree, PlacementPolicy, PlacementRequest, PolicyConfig, Rendezvous,
};
use stackfed::federation_core::{
    AccountName, ClusterId, ClusterRegistry, ClusterSpec, ClusterStatus, ContainerName, Locator,
};

fn clusters(n: usize) -> Vec<ClusterStatus> {
    (0..n)
        .map(|i| {
            let spec = ClusterSpec::new(
                ClusterId::new(format!("cluster-{i}")).unwrap(),
                "http://127.0.0.1:8080".parse().unwrap(),
                1 << 40,
            )
            .label(
                "tier",
                if i.is_multiple_of(2) {
                    "gold"
                } else {
                    "silver"
                },
            )
            .label("redundancy", "3");
            ClusterStatus::new(spec).with_used_bytes((i as u64 * 7919) << 20)
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    let request = PlacementRequest::new(
        AccountName::new("AUTH_bench").unwrap(),
        ContainerName::new("container-0001").unwrap(),
    )
    .label("tier", "gold");
    let policies: Vec<(&str, Box<dyn PlacementPolicy>)> = vec![
        ("most-free", Box::new(MostFree)),
        ("rendezvous", Box::new(Rendezvous::default())),
        ("default", PolicyConfig::default().build()),
    ];
    for n in [2usize, 8, 64] {
        let cs = clusters(n);
        let refs: Vec<&ClusterStatus> = cs.iter().collect();
        for (name, p) in &policies {
            group.bench_with_input(BenchmarkId::new(*name, n), &refs, |b, refs| {
                b.iter(|| p.place(&request, refs).unwrap())
            });
        }
    }
    group.finish();
}

fn locator(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    let account = AccountName::new("AUTH_bench").unwrap();
    let names: Vec<ContainerName> = (0..10_000)
        .map(|i| ContainerName::new(format!("container-{i:05}")).unwrap())
        .collect();
    rt.block_on(async {
        for n in &names {
            let new = NewContainer::new(account.clone(), n.clone(), ClusterId::new("a").unwrap());
            store.create_if_absent(new).await.unwrap();
        }
    });
    let registry = Arc::new(ClusterRegistry::from_statuses(clusters(2)).unwrap());
    let cached = Locator::new(store.clone(), registry.clone(), Arc::new(MostFree));
    let uncached = Locator::with_cache(
        store.clone(),
        registry,
        Arc::new(MostFree),
        0,
        Duration::ZERO,
    );
    rt.block_on(async {
        for n in &names {
            cached.locate(&account, n).await.unwrap();
        }
    });
    let mut group = c.benchmark_group("locator");
    let mut i = 0usize;
    group.bench_function("hit (cache)", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7) % names.len();
            let n = &names[i];
            let loc = &cached;
            let account = &account;
            async move { loc.locate(account, n).await.unwrap().unwrap() }
        })
    });
    group.bench_function("miss (SQLite)", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7) % names.len();
            let n = &names[i];
            let loc = &uncached;
            let account = &account;
            async move { loc.locate(account, n).await.unwrap().unwrap() }
        })
    });
    group.bench_function("place (SQLite, new name)", |b| {
        let mut k = 0u64;
        b.to_async(&rt).iter(|| {
            k += 1;
            let loc = &uncached;
            let req = PlacementRequest::new(
                account.clone(),
                ContainerName::new(format!("new-{k}-{}", std::process::id())).unwrap(),
            );
            async move { loc.place(req, Attributes::new()).await.unwrap() }
        })
    });
    group.finish();
}

fn listing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // 4 sources of 10,000 names each, interleaved in byte order.
    let sources: Vec<VecSource> = (0..4)
        .map(|s| VecSource::new((0..10_000).map(move |i| format!("container-{:06}", i * 4 + s))))
        .collect();
    let mut group = c.benchmark_group("listing");
    group.throughput(Throughput::Elements(1000));
    for (label, marker) in [("first page", ""), ("middle page", "container-020000")] {
        let q = ListingQuery::new().limit(1000).marker(marker);
        group.bench_function(BenchmarkId::new("merge 4x10k, page of 1000", label), |b| {
            b.iter(|| {
                let mut srcs = sources.clone();
                rt.block_on(merge_page(&mut srcs, &q)).unwrap()
            })
        });
    }
    let q = ListingQuery::new().limit(1000).delimiter('-');
    group.bench_function("merge 4x10k, delimiter rolls all into one subdir", |b| {
        b.iter(|| {
            let mut srcs = sources.clone();
            rt.block_on(merge_page(&mut srcs, &q)).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, placement, locator, listing);
criterion_main!(benches);
