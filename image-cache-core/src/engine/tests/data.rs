//! Data: ranges on a miss.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_on_a_miss_is_answered_upstream_and_schedules_a_fill() {
    let up = Many::new(&[5000]);
    let cache = budget_cache(up.clone(), 10_000).await;
    let ctx = RequestContext::admin();
    let d = cache
        .data(
            &nth(0),
            Some(RangeSpec::From {
                first: 10,
                last: Some(19),
            }),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(d.source, DataSource::Upstream);
    assert!(
        body(d).await.unwrap() == up.images[&nth(0)].1[10..20],
        "bytes differ"
    );
    for _ in 0..100 {
        if !cached_ids(&cache).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        cached_ids(&cache).await,
        vec![nth(0)],
        "the background fill cached it"
    );
    assert_eq!(
        up.opens.load(Ordering::SeqCst),
        2,
        "one ranged request, one full fill"
    );
    let d = cache
        .data(&nth(0), Some(RangeSpec::Suffix(5)), &ctx)
        .await
        .unwrap();
    assert_eq!(d.source, DataSource::Cache);
}
