//! Reconciliation at start.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_makes_metadata_and_files_agree() {
    let up = Scripted::new(5000, Visibility::Public, 0);
    let dir = tempfile::tempdir().unwrap();
    let meta_path = dir.path().join("meta.db");
    let blobs_dir = dir.path().join("blobs");
    {
        let meta = Arc::new(SqliteMetadataStore::open(&meta_path).unwrap());
        let blobs = Arc::new(FsBlobStore::open(&blobs_dir).unwrap());
        let (cache, _) =
            ImageCache::open(up.clone(), meta, blobs, CacheConfig::default(), spawner())
                .await
                .unwrap();
        body(
            cache
                .data(&id(), None, &RequestContext::admin())
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    }
    // A blob nobody verified (as if committed, then a crash before the bookkeeping).
    let orphan = blobs_dir
        .join("images")
        .join("bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee");
    std::fs::write(&orphan, b"unverified").unwrap();
    // A partial write.
    std::fs::write(blobs_dir.join("incomplete").join("x.1.2"), b"partial").unwrap();
    let meta = Arc::new(SqliteMetadataStore::open(&meta_path).unwrap());
    let blobs = Arc::new(FsBlobStore::open(&blobs_dir).unwrap());
    let (_, report) = ImageCache::open(
        up.clone(),
        meta.clone(),
        blobs.clone(),
        CacheConfig::default(),
        spawner(),
    )
    .await
    .unwrap();
    assert_eq!(
        report,
        Reconciled {
            incomplete_removed: 1,
            orphan_blobs_removed: 1,
            stale_entries_cleared: 0
        }
    );
    assert!(!orphan.exists());
    // A record whose blob went missing is cleared.
    std::fs::remove_file(blobs_dir.join("images").join(id().as_str())).unwrap();
    let (cache, report) =
        ImageCache::open(up.clone(), meta, blobs, CacheConfig::default(), spawner())
            .await
            .unwrap();
    assert_eq!(report.stale_entries_cleared, 1);
    let d = cache
        .data(&id(), None, &RequestContext::admin())
        .await
        .unwrap();
    assert_eq!(d.source, DataSource::Fill);
    assert!(body(d).await.unwrap() == up.data, "bytes differ");
}
