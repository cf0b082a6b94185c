//! Prefetch: the queue, prefetch by filter, workers owned by the spawner.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_prefetches_and_the_cache_api_operations_work() {
    let up = Many::new(&[300, 300, 300]);
    let cache = budget_cache(up.clone(), 10_000).await;
    let ctx = RequestContext::admin();
    for n in 0..3u8 {
        cache.queue(&nth(n), &ctx);
    }
    for _ in 0..200 {
        if cached_ids(&cache).await.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cached_ids(&cache).await.len(), 3);
    assert!(cache.queued().is_empty());
    assert!(cache.delete_cached(&nth(0)).await.unwrap());
    assert!(!cache.delete_cached(&nth(0)).await.unwrap());
    assert_eq!(cache.clear_cached().await.unwrap(), 2);
    assert!(cached_ids(&cache).await.is_empty());
    assert!(
        cache.metadata().get(&nth(1)).await.unwrap().is_some(),
        "metadata stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_by_filter_pages_through_the_upstream_or_the_cache() {
    let up = Many::new(&[100, 100, 100]);
    let cache = budget_cache(up.clone(), 10_000).await;
    let ctx = RequestContext::admin();
    let mut ids = cache
        .prefetch_matching(&[("visibility".into(), "public".into())], &ctx)
        .await
        .unwrap();
    ids.sort();
    assert_eq!(ids, vec![nth(0), nth(1), nth(2)]);
    for _ in 0..200 {
        if cached_ids(&cache).await.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cached_ids(&cache).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_workers_run_on_the_spawner_and_stop_with_it() {
    // A spawner whose owner can stop everything it runs.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = Arc::new(AtomicU64::new(0));
    let r = running.clone();
    let owned: Arc<dyn Spawner> = Arc::new(move |_: &'static str, task| {
        let (mut stopped, r) = (stopped.clone(), r.clone());
        r.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                () = task => {}
            }
            r.fetch_sub(1, Ordering::SeqCst);
        });
    });
    let up = Many::new(&[100]);
    let (cache, _) = ImageCache::open(
        up.clone(),
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default().prefetch_concurrency(3),
        owned,
    )
    .await
    .unwrap();
    assert_eq!(running.load(Ordering::SeqCst), 3, "one task per worker");
    stop.send(true).unwrap();
    for _ in 0..100 {
        if running.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(running.load(Ordering::SeqCst), 0, "the workers stopped");
    // Nobody works the queue any more.
    cache.queue(&nth(0), &RequestContext::admin());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.queued(), vec![nth(0)]);
    assert_eq!(up.opens.load(Ordering::SeqCst), 0);
}
