//! The size budget: admission, eviction, read guards.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_and_evicts_least_recently_used() {
    let up = Many::new(&[400, 400, 400]);
    let cache = budget_cache(up.clone(), 1000).await;
    let ctx = RequestContext::admin();
    for n in 0..3u8 {
        let d = cache.data(&nth(n), None, &ctx).await.unwrap();
        assert!(
            body(d).await.unwrap() == up.images[&nth(n)].1,
            "bytes differ"
        );
        assert!(used(&cache).await <= 1000, "never over budget");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Image 0 was the least recently used: it made room for image 2.
    assert_eq!(cached_ids(&cache).await, vec![nth(1), nth(2)]);
    // Reading 1 makes 2 the oldest; pulling 0 again evicts 2.
    body(cache.data(&nth(1), None, &ctx).await.unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    body(cache.data(&nth(0), None, &ctx).await.unwrap())
        .await
        .unwrap();
    assert_eq!(cached_ids(&cache).await, vec![nth(0), nth(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_and_in_use_images_are_never_evicted() {
    let up = Many::new(&[400, 400, 400]);
    let cache = budget_cache(up.clone(), 1000).await;
    let ctx = RequestContext::admin();
    cache.set_pinned(&nth(0), true).await.unwrap();
    body(cache.data(&nth(0), None, &ctx).await.unwrap())
        .await
        .unwrap();
    body(cache.data(&nth(1), None, &ctx).await.unwrap())
        .await
        .unwrap();
    // Image 1 is being read (stream open, not consumed) when image 2 asks for room.
    let reading = cache.data(&nth(1), None, &ctx).await.unwrap();
    assert_eq!(reading.source, DataSource::Cache);
    let d = cache.data(&nth(2), None, &ctx).await.unwrap();
    assert_eq!(d.source, DataSource::Upstream, "no room: streamed through");
    assert!(
        body(d).await.unwrap() == up.images[&nth(2)].1,
        "bytes differ"
    );
    assert_eq!(cached_ids(&cache).await, vec![nth(0), nth(1)]);
    assert!(
        body(reading).await.unwrap() == up.images[&nth(1)].1,
        "bytes differ"
    );
    // Reader gone: now image 1 can make room for image 2; the pinned image stays.
    body(cache.data(&nth(2), None, &ctx).await.unwrap())
        .await
        .unwrap();
    assert_eq!(cached_ids(&cache).await, vec![nth(0), nth(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn larger_than_the_budget_streams_through_verified() {
    let up = Many::new(&[1500]);
    let cache = budget_cache(up.clone(), 1000).await;
    let ctx = RequestContext::admin();
    let d = cache.data(&nth(0), None, &ctx).await.unwrap();
    assert_eq!(d.source, DataSource::Upstream);
    assert!(
        body(d).await.unwrap() == up.images[&nth(0)].1,
        "bytes differ"
    );
    assert!(cached_ids(&cache).await.is_empty());
}
