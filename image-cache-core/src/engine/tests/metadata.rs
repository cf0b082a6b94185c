//! Metadata read-through: freshness, serve-stale for show, download and list, access.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_serves_cached_metadata_and_data_but_only_so_long() {
    let up = Scripted::new(1000, Visibility::Public, 0);
    let cfg = CacheConfig::default()
        .freshness(Duration::ZERO)
        .max_stale(Duration::from_millis(300));
    let cache = cache_over(up.clone(), Arc::new(MemoryBlobStore::new()), cfg).await;
    let ctx = RequestContext::admin();
    body(cache.data(&id(), None, &ctx).await.unwrap())
        .await
        .unwrap();
    up.down.store(true, Ordering::SeqCst);
    let served = cache.image(&id(), &ctx).await.unwrap();
    assert!(served.stale);
    let d = cache.data(&id(), None, &ctx).await.unwrap();
    assert!(d.stale);
    assert!(body(d).await.unwrap() == up.data, "bytes differ");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(
        cache.image(&id(), &ctx).await,
        Err(CacheError::Upstream(UpstreamError::Unreachable { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_data_offline_is_unavailable_and_deleted_images_are_dropped() {
    let up = Scripted::new(1000, Visibility::Public, 0);
    let cache = cache_over(
        up.clone(),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default().freshness(Duration::ZERO),
    )
    .await;
    let ctx = RequestContext::admin();
    cache.image(&id(), &ctx).await.unwrap();
    up.down.store(true, Ordering::SeqCst);
    // The fill this request started failed: it answers with the fill's cause.
    let e = cache.data(&id(), None, &ctx).await.unwrap_err();
    assert!(
        matches!(
            e.kind(),
            CacheError::Upstream(UpstreamError::Unreachable { .. })
        ),
        "{e:?}"
    );
    assert_eq!(e.origin(), ErrorSource::Upstream);
    assert!(e.is_temporary());
    up.down.store(false, Ordering::SeqCst);
    body(cache.data(&id(), None, &ctx).await.unwrap())
        .await
        .unwrap();
    *up.record.lock().unwrap() = None;
    assert!(matches!(
        cache.image(&id(), &ctx).await,
        Err(CacheError::NotFound(_))
    ));
    assert!(cache.metadata().get(&id()).await.unwrap().is_none());
    assert!(cache.metadata().cache_entry(&id()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_access() {
    let up = Scripted::new(10, Visibility::Private, 0);
    let cache = cache_over(
        up.clone(),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
    )
    .await;
    let owner = RequestContext {
        project_id: Some("owner-project".into()),
        ..RequestContext::default()
    };
    let other = RequestContext {
        project_id: Some("someone-else".into()),
        ..RequestContext::default()
    };
    body(cache.data(&id(), None, &owner).await.unwrap())
        .await
        .unwrap();
    up.down.store(true, Ordering::SeqCst);
    // Offline, the cached private image is served to its owner only.
    assert!(cache.image(&id(), &owner).await.is_ok());
    assert!(matches!(
        cache.image(&id(), &other).await,
        Err(CacheError::NotFound(_))
    ));
    assert!(cache.data(&id(), None, &other).await.is_err());
    let listed = |ctx: RequestContext| {
        let cache = cache.clone();
        async move {
            let page = cache.list(&ListQuery::default(), &ctx).await.unwrap();
            assert!(page.stale, "offline: from the cache");
            page.value.images.len()
        }
    };
    assert_eq!(listed(other.clone()).await, 0);
    assert_eq!(listed(owner.clone()).await, 1);
    // Shared with an accepted member: visible to that member only.
    let mut shared = up.record.lock().unwrap().clone().unwrap();
    shared.visibility = Visibility::Shared;
    shared.members = vec!["member-project".into()];
    cache.metadata().put(&shared, now_ms()).await.unwrap();
    let member = RequestContext {
        project_id: Some("member-project".into()),
        ..RequestContext::default()
    };
    assert!(cache.image(&id(), &member).await.is_ok());
    assert!(matches!(
        cache.image(&id(), &other).await,
        Err(CacheError::NotFound(_))
    ));
    let original = up.record.lock().unwrap().clone().unwrap();
    cache.metadata().put(&original, now_ms()).await.unwrap();
    up.down.store(false, Ordering::SeqCst);
    let mut r = up.record.lock().unwrap().clone().unwrap();
    r.status = ImageStatus::Deactivated;
    *up.record.lock().unwrap() = Some(r.clone());
    let admin = RequestContext::admin();
    let fresh = cache_over(
        up.clone(),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
    )
    .await;
    // As Glance: a deactivated image's data is refused to everyone but admins.
    assert!(matches!(
        fresh.data(&id(), None, &owner).await,
        Err(CacheError::Deactivated(_))
    ));
    body(fresh.data(&id(), None, &admin).await.unwrap())
        .await
        .unwrap();
    r.status = ImageStatus::Queued;
    *up.record.lock().unwrap() = Some(r);
    let fresh = cache_over(
        up.clone(),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
    )
    .await;
    assert!(matches!(
        fresh.data(&id(), None, &admin).await,
        Err(CacheError::NoData(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_do_not_erase_known_members() {
    let up = Scripted::new(10, Visibility::Shared, 0);
    let cache = cache_over(
        up.clone(),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
    )
    .await;
    let mut shared = up.record.lock().unwrap().clone().unwrap();
    shared.members = vec!["member-project".into()];
    cache.metadata().put(&shared, now_ms()).await.unwrap();
    let mut listed = shared.clone();
    listed.members.clear();
    cache.inner.records.record_seen(&[listed]).await.unwrap();
    let stored = cache.metadata().get(&id()).await.unwrap().unwrap();
    assert_eq!(stored.record.members, vec!["member-project".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_listings_follow_the_serve_stale_rule() {
    let up = Scripted::new(10, Visibility::Public, 0);
    let cfg = CacheConfig::default()
        .freshness(Duration::ZERO)
        .max_stale(Duration::from_millis(300));
    let cache = cache_over(up.clone(), Arc::new(MemoryBlobStore::new()), cfg).await;
    let ctx = RequestContext::admin();
    let online = cache.list(&ListQuery::default(), &ctx).await.unwrap();
    assert!(!online.stale);
    assert_eq!(online.value.images.len(), 1);
    up.down.store(true, Ordering::SeqCst);
    let offline = cache.list(&ListQuery::default(), &ctx).await.unwrap();
    assert!(offline.stale);
    assert_eq!(
        offline.value.images.len(),
        1,
        "recorded by the online listing"
    );
    // An unknown marker offline is the client's fault.
    let q = ListQuery {
        marker: Some(nth(9)),
        ..ListQuery::default()
    };
    let e = cache.list(&q, &ctx).await.unwrap_err();
    assert_eq!(e.origin(), ErrorSource::Client);
    // Older than max_stale: neither shown nor listed.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(cache.image(&id(), &ctx).await.is_err());
    let offline = cache.list(&ListQuery::default(), &ctx).await.unwrap();
    assert!(offline.value.images.is_empty());
}

/// The metadata store's disk is full. Online show and list still give the central's
/// answer (the failure to record it is logged, not the caller's), and the store's
/// failure is a lasting fault of the edge's own, not "unavailable, retry".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_metadata_disk_is_a_lasting_fault_and_online_reads_still_work() {
    let up = Scripted::new(1000, Visibility::Public, 0);
    // A record too large for the pages the database already has.
    let big = serde_json::Value::String("x".repeat(64 * 1024));
    up.record
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .properties
        .insert("description".into(), big);
    let meta = Arc::new(SqliteMetadataStore::in_memory().unwrap());
    let (cache, _) = ImageCache::open(
        up.clone(),
        meta.clone(),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
        spawner(),
    )
    .await
    .unwrap();
    meta.fill_up();
    let ctx = RequestContext::admin();
    let shown = cache.image(&id(), &ctx).await.unwrap();
    assert!(!shown.stale);
    assert_eq!(shown.value.id, id());
    let listed = cache.list(&ListQuery::default(), &ctx).await.unwrap();
    assert_eq!(listed.value.images.len(), 1);
    assert!(meta.get(&id()).await.unwrap().is_none(), "nothing recorded");
    let record = up.record.lock().unwrap().clone().unwrap();
    let e = CacheError::from(meta.put(&record, 1).await.unwrap_err());
    assert!(
        matches!(e, CacheError::Meta(crate::meta::MetaError::Storage { .. })),
        "{e:?}"
    );
    assert_eq!(e.origin(), ErrorSource::Internal);
    assert!(!e.is_temporary(), "{e}");
    assert!(e.to_string().contains("full"), "{e}");
}
