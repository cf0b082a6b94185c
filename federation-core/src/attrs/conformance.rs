//! The conformance suite every [`AttributeStore`] backend must pass.
//!
//! Written once, run against every backend (memory, SQLite, PostgreSQL and MySQL here; the
//! Swift-backed store in `swift-proto`). Each check works in accounts of its own, named from
//! `namespace` and the current time, so the suite can run against a shared, persistent
//! store. Failures panic, as assertions do in tests.
//!
//! ```no_run
//! # async fn demo() {
//! use federation_core::attrs::{conformance, MemoryStore};
//! conformance::run_all(std::sync::Arc::new(MemoryStore::new()), "mem").await;
//! # }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{AttributeStore, Attributes, CreateOutcome, NewContainer, StoreError};
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

fn account(namespace: &str, check: &str) -> AccountName {
    let nonce = super::now_ms() ^ u64::from(std::process::id());
    AccountName::new(format!("AUTH_{namespace}_{check}_{nonce:x}")).unwrap()
}

fn container(name: &str) -> ContainerName {
    ContainerName::new(name).unwrap()
}

fn cluster(name: &str) -> ClusterId {
    ClusterId::new(name).unwrap()
}

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs every check.
pub async fn run_all<S: AttributeStore>(store: Arc<S>, namespace: &str) {
    get_missing(&*store, namespace).await;
    create_then_get(&*store, namespace).await;
    create_twice_keeps_the_first(&*store, namespace).await;
    concurrent_creates_have_one_winner(store.clone(), namespace).await;
    update_is_compare_and_set(&*store, namespace).await;
    delete_is_conditional(&*store, namespace).await;
    relocate_is_compare_and_set(&*store, namespace).await;
    list_is_ordered_and_paged(&*store, namespace).await;
}

/// A missing record reads as `None`, and updates and deletes of it say `NotFound`.
pub async fn get_missing<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "missing");
    let c = container("nothing-here");
    assert_eq!(store.get(&a, &c).await.unwrap(), None);
    assert!(matches!(
        store.update_attributes(&a, &c, 1, Attributes::new()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&a, &c, None).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// A created record reads back exactly, at version 1, with unicode intact.
pub async fn create_then_get<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "create");
    let c = container("fotos-über-𝄞");
    let new = NewContainer::new(a.clone(), c.clone(), cluster("east"))
        .attributes(attrs(&[("tier", "gold"), ("note", "ünïcödé ✓")]))
        .policy("most-free");
    let outcome = store.create_if_absent(new.clone()).await.unwrap();
    assert!(outcome.created());
    let expected = new.into_record();
    assert_eq!(outcome.record(), &expected);
    assert_eq!(store.get(&a, &c).await.unwrap(), Some(expected));
}

/// A second create returns the first record unchanged.
pub async fn create_twice_keeps_the_first<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "twice");
    let c = container("dup");
    let first = NewContainer::new(a.clone(), c.clone(), cluster("one"));
    let second =
        NewContainer::new(a.clone(), c.clone(), cluster("two")).attributes(attrs(&[("x", "y")]));
    assert!(store
        .create_if_absent(first.clone())
        .await
        .unwrap()
        .created());
    match store.create_if_absent(second).await.unwrap() {
        CreateOutcome::Existing(r) => assert_eq!(r, first.clone().into_record()),
        other => panic!("second create must lose, got {other:?}"),
    }
    assert_eq!(store.get(&a, &c).await.unwrap(), Some(first.into_record()));
}

/// Many tasks creating one name at once: exactly one wins and everybody agrees on the
/// winner's cluster. Repeated over several names.
pub async fn concurrent_creates_have_one_winner<S: AttributeStore>(store: Arc<S>, namespace: &str) {
    let a = account(namespace, "race");
    for round in 0..8 {
        let c = container(&format!("contended-{round}"));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                let new = NewContainer::new(a.clone(), c.clone(), cluster(&format!("c{i}")));
                tokio::spawn(async move { store.create_if_absent(new).await })
            })
            .collect();
        let mut winners = 0;
        let mut clusters = BTreeSet::new();
        for t in tasks {
            let outcome = t.await.unwrap().unwrap();
            winners += usize::from(outcome.created());
            clusters.insert(outcome.record().cluster.clone());
        }
        assert_eq!(winners, 1, "exactly one creator wins");
        assert_eq!(clusters.len(), 1, "all callers agree: {clusters:?}");
        let stored = store.get(&a, &c).await.unwrap().unwrap();
        assert!(clusters.contains(&stored.cluster));
        assert_eq!(stored.version, 1);
    }
}

/// Two stores over one shared database (as two proxy processes have): 16 tasks per
/// name, alternating between the stores, over 50 names; exactly one wins each race and
/// all agree on its cluster. Not part of [`run_all`]: it needs two stores.
pub async fn two_stores_race_with_one_winner<S: AttributeStore>(
    one: Arc<S>,
    two: Arc<S>,
    namespace: &str,
) {
    let a = account(namespace, "race2");
    for round in 0..50 {
        let c = container(&format!("c{round}"));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = if i % 2 == 0 { one.clone() } else { two.clone() };
                let new = NewContainer::new(a.clone(), c.clone(), cluster(&format!("k{i}")));
                tokio::spawn(async move { s.create_if_absent(new).await })
            })
            .collect();
        let mut winners = 0;
        let mut clusters = BTreeSet::new();
        for t in tasks {
            let o = t.await.unwrap().unwrap();
            winners += usize::from(o.created());
            clusters.insert(o.record().cluster.clone());
        }
        assert_eq!((winners, clusters.len()), (1, 1), "round {round}");
    }
}

/// Updates succeed only at the current version and bump it.
pub async fn update_is_compare_and_set<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "update");
    let c = container("cas");
    let new = NewContainer::new(a.clone(), c.clone(), cluster("east"))
        .attributes(attrs(&[("tier", "gold")]));
    store.create_if_absent(new).await.unwrap();
    let v2 = store
        .update_attributes(&a, &c, 1, attrs(&[("tier", "silver"), ("team", "ops")]))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.attributes, attrs(&[("tier", "silver"), ("team", "ops")]));
    assert_eq!(
        v2.cluster,
        cluster("east"),
        "an update never moves a container"
    );
    match store.update_attributes(&a, &c, 1, Attributes::new()).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, 2)),
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert_eq!(store.get(&a, &c).await.unwrap(), Some(v2.clone()));
    let v3 = store
        .update_attributes(&a, &c, 2, Attributes::new())
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert!(v3.attributes.is_empty());
}

/// Deletes honour the expected version; a deleted name can be created afresh.
pub async fn delete_is_conditional<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "delete");
    let c = container("gone");
    store
        .create_if_absent(NewContainer::new(a.clone(), c.clone(), cluster("east")))
        .await
        .unwrap();
    assert!(matches!(
        store.delete(&a, &c, Some(7)).await,
        Err(StoreError::Conflict { actual: 1, .. })
    ));
    assert!(store.get(&a, &c).await.unwrap().is_some());
    let deleted = store.delete(&a, &c, Some(1)).await.unwrap();
    assert_eq!(deleted.cluster, cluster("east"));
    assert_eq!(store.get(&a, &c).await.unwrap(), None);
    assert!(matches!(
        store.delete(&a, &c, None).await,
        Err(StoreError::NotFound { .. })
    ));
    let again = store
        .create_if_absent(NewContainer::new(a.clone(), c.clone(), cluster("west")))
        .await
        .unwrap();
    assert!(again.created());
    assert_eq!(again.record().version, 1);
    store.delete(&a, &c, None).await.unwrap();
}

/// Listings are per account, in byte order, after the marker, at most `limit` long.
pub async fn list_is_ordered_and_paged<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "list");
    let other = account(namespace, "list-other");
    // Byte order differs from char-by-char Unicode collation and from case-folding.
    let names = [
        "a", "a-b", "a0", "aa", "B", "b", "z", "~", "é", "éa", "ő", "中", "𝄞", "a\u{7f}",
    ];
    for n in names {
        store
            .create_if_absent(NewContainer::new(a.clone(), container(n), cluster("c")))
            .await
            .unwrap();
    }
    store
        .create_if_absent(NewContainer::new(
            other.clone(),
            container("a1"),
            cluster("c"),
        ))
        .await
        .unwrap();
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));

    let all = store.list(&a, None, 1000).await.unwrap();
    let got: Vec<&str> = all.iter().map(|r| r.container.as_str()).collect();
    assert_eq!(got, expected);

    // Page through with every page size from 1 to 5.
    for page in 1..=5 {
        let mut seen = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let batch = store.list(&a, marker.as_deref(), page).await.unwrap();
            assert!(batch.len() <= page);
            if batch.is_empty() {
                break;
            }
            marker = batch.last().map(|r| r.container.as_str().to_owned());
            seen.extend(batch.into_iter().map(|r| r.container.into_string()));
        }
        assert_eq!(seen, expected, "page size {page}");
    }

    // A marker that is not itself a name.
    let after: Vec<String> = store
        .list(&a, Some("a1"), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.container.into_string())
        .collect();
    let want: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| n.as_bytes() > "a1".as_bytes())
        .collect();
    assert_eq!(after, want);
    assert!(store
        .list(&a, Some("\u{10ffff}"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list(&a, None, 0).await.unwrap().is_empty());

    let theirs = store.list(&other, None, 10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].container.as_str(), "a1");
}

/// A relocation changes the cluster (and only the cluster) if the version matches.
pub async fn relocate_is_compare_and_set<S: AttributeStore + ?Sized>(store: &S, namespace: &str) {
    let a = account(namespace, "relocate");
    let c = container("moving");
    let created = store
        .create_if_absent(
            NewContainer::new(a.clone(), c.clone(), cluster("east"))
                .attributes(attrs(&[("tier", "gold")])),
        )
        .await
        .unwrap()
        .into_record();
    let moved = store
        .relocate(&a, &c, created.version, cluster("west"))
        .await
        .unwrap();
    assert_eq!(moved.cluster, cluster("west"));
    assert_eq!(moved.version, created.version + 1);
    assert_eq!(moved.attributes, created.attributes, "attributes kept");
    assert_eq!(moved.placed_at_ms, created.placed_at_ms);
    assert_eq!(store.get(&a, &c).await.unwrap(), Some(moved.clone()));
    // A stale version loses and changes nothing.
    let stale = store
        .relocate(&a, &c, created.version, cluster("north"))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(
        store.get(&a, &c).await.unwrap().unwrap().cluster,
        cluster("west")
    );
    let missing = store
        .relocate(&a, &container("never"), 1, cluster("west"))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}
