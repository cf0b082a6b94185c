//! The conformance suite every [`MetadataStore`] must pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::MetadataStore;
use crate::id::ImageId;
use crate::record::{ImageRecord, ImageStatus, Visibility};

fn id(n: u8) -> ImageId {
    ImageId::parse(&format!("{n:08x}-0000-4000-8000-000000000000")).unwrap()
}

/// Runs every check on an empty store.
pub async fn run_all<S: MetadataStore + ?Sized>(store: &S) {
    records_round_trip(store).await;
    bookkeeping(store).await;
    pins(store).await;
}

/// Pins outlive the data, show in the bookkeeping, and go with the record.
pub async fn pins<S: MetadataStore + ?Sized>(store: &S) {
    store
        .put(&ImageRecord::new(id(4), Visibility::Public), 1)
        .await
        .unwrap();
    store.set_pinned(&id(4), true).await.unwrap();
    store.set_pinned(&id(4), true).await.unwrap();
    assert_eq!(store.pinned().await.unwrap(), vec![id(4)]);
    store.set_cached(&id(4), 9, 2).await.unwrap();
    assert!(
        store.cache_entry(&id(4)).await.unwrap().unwrap().pinned,
        "pinned before cached"
    );
    store.clear_cached(&id(4)).await.unwrap();
    store.set_cached(&id(4), 9, 3).await.unwrap();
    assert!(
        store.cache_entries().await.unwrap()[0].pinned,
        "the pin outlives the data"
    );
    store.set_pinned(&id(4), false).await.unwrap();
    assert!(!store.cache_entry(&id(4)).await.unwrap().unwrap().pinned);
    store.set_pinned(&id(4), true).await.unwrap();
    store.remove(&id(4)).await.unwrap();
    assert!(store.pinned().await.unwrap().is_empty());
}

/// Records read back exactly; put replaces; remove forgets.
pub async fn records_round_trip<S: MetadataStore + ?Sized>(store: &S) {
    let mut r = ImageRecord::new(id(1), Visibility::Private);
    r.status = ImageStatus::Other("weird".into());
    r.size = Some(10);
    r.checksum = Some("abc".into());
    r.owner = Some("proj-ü".into());
    r.properties.insert("os_distro".into(), json!("ubuntu"));
    r.properties.insert("tags".into(), json!(["a", "b"]));
    assert!(store.get(&id(1)).await.unwrap().is_none());
    store.put(&r, 100).await.unwrap();
    let got = store.get(&id(1)).await.unwrap().unwrap();
    assert_eq!(got.record, r);
    assert_eq!(got.fetched_at_ms, 100);
    r.status = ImageStatus::Active;
    store.put(&r, 200).await.unwrap();
    store
        .put(&ImageRecord::new(id(2), Visibility::Public), 1)
        .await
        .unwrap();
    let all = store.list().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        store.get(&id(1)).await.unwrap().unwrap().record.status,
        ImageStatus::Active
    );
    store.remove(&id(2)).await.unwrap();
    assert!(store.get(&id(2)).await.unwrap().is_none());
    store.remove(&id(2)).await.unwrap();
    store.remove(&id(1)).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
}

/// Cache bookkeeping: set, touch, survive a record update, clear, and go with remove.
pub async fn bookkeeping<S: MetadataStore + ?Sized>(store: &S) {
    let r = ImageRecord::new(id(3), Visibility::Public);
    store.put(&r, 1).await.unwrap();
    assert!(store.cache_entry(&id(3)).await.unwrap().is_none());
    store.touch(&id(3), 5).await.unwrap();
    assert!(
        store.cache_entry(&id(3)).await.unwrap().is_none(),
        "touch does not create"
    );
    store.set_cached(&id(3), 1234, 10).await.unwrap();
    store.touch(&id(3), 20).await.unwrap();
    store.touch(&id(3), 30).await.unwrap();
    store.put(&r, 2).await.unwrap();
    let e = store.cache_entry(&id(3)).await.unwrap().unwrap();
    assert_eq!(
        (e.size, e.cached_at_ms, e.last_access_ms, e.hits, e.pinned),
        (1234, 10, 30, 2, false)
    );
    assert_eq!(store.cache_entries().await.unwrap(), vec![e]);
    store.clear_cached(&id(3)).await.unwrap();
    assert!(store.cache_entry(&id(3)).await.unwrap().is_none());
    assert!(store.get(&id(3)).await.unwrap().is_some(), "metadata stays");
    store.set_cached(&id(3), 1, 40).await.unwrap();
    store.remove(&id(3)).await.unwrap();
    assert!(store.cache_entries().await.unwrap().is_empty());
}
