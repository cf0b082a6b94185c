//! Fills: single flight, verification and quarantine, and where a failed fill's fault lies.

use super::*;
use crate::hash::VerifyPolicy;

/// A blob store on a disk that fails: `create` (a read-only or full disk) or `write`
/// (after `ok_writes` writes).
#[derive(Debug)]
struct FailingDisk<S = MemoryBlobStore> {
    inner: S,
    fail_create: bool,
    ok_writes: usize,
}

fn disk_error() -> BlobError {
    BlobError::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "read-only file system",
    ))
}

struct FailingWriter(Box<dyn BlobWriter>, usize);

#[async_trait]
impl BlobWriter for FailingWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        if self.1 == 0 {
            return Err(disk_error());
        }
        self.1 -= 1;
        self.0.write(data).await
    }
    fn tap(&self) -> Arc<dyn crate::blob::BlobTap> {
        self.0.tap()
    }
    async fn commit(self: Box<Self>) -> Result<(), BlobError> {
        self.0.commit().await
    }
    async fn abort(self: Box<Self>, quarantine: bool) -> Result<(), BlobError> {
        self.0.abort(quarantine).await
    }
}

#[async_trait]
impl<S: BlobStore + std::fmt::Debug> BlobStore for FailingDisk<S> {
    async fn create(&self, id: &ImageId) -> Result<Box<dyn BlobWriter>, BlobError> {
        if self.fail_create {
            return Err(disk_error());
        }
        Ok(Box::new(FailingWriter(
            self.inner.create(id).await?,
            self.ok_writes,
        )))
    }
    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>, BlobError> {
        self.inner.open(id, range).await
    }
    async fn remove(&self, id: &ImageId) -> Result<(), BlobError> {
        self.inner.remove(id).await
    }
    async fn list(&self) -> Result<Vec<(ImageId, u64)>, BlobError> {
        self.inner.list().await
    }
    async fn clear_incomplete(&self) -> Result<usize, BlobError> {
        self.inner.clear_incomplete().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_make_one_fetch_and_all_get_the_bytes() {
    let up = Scripted::new(2 * 1024 * 1024 + 3, Visibility::Public, 5);
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(
        up.clone(),
        Arc::new(FsBlobStore::open(dir.path()).unwrap()),
        CacheConfig::default(),
    )
    .await;
    let ctx = RequestContext::admin();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, ctx) = (cache.clone(), ctx.clone());
            tokio::spawn(async move {
                body(cache.data(&id(), None, &ctx).await.unwrap())
                    .await
                    .unwrap()
            })
        })
        .collect();
    // While the fill runs, a range joins it rather than going upstream.
    while cache.upstream_data_fetches() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ranged = cache
        .data(
            &id(),
            Some(RangeSpec::From {
                first: 100_000,
                last: Some(1_500_000),
            }),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(ranged.source, DataSource::Fill);
    assert!(
        body(ranged).await.unwrap() == up.data[100_000..=1_500_000],
        "ranged bytes differ"
    );
    for t in tasks {
        assert!(t.await.unwrap() == up.data, "bytes differ");
    }
    assert_eq!(up.opens.load(Ordering::SeqCst), 1, "one upstream fetch");
    assert_eq!(cache.upstream_data_fetches(), 1);
    // Now a hit: served from the blob, no new fetch.
    let d = cache
        .data(&id(), Some(RangeSpec::Suffix(10)), &ctx)
        .await
        .unwrap();
    assert_eq!(d.source, DataSource::Cache);
    assert!(body(d).await.unwrap() == up.data[up.data.len() - 10..]);
    assert_eq!(up.opens.load(Ordering::SeqCst), 1);
    assert!(matches!(
        cache
            .data(
                &id(),
                Some(RangeSpec::From {
                    first: 10_000_000,
                    last: None
                }),
                &ctx
            )
            .await,
        Err(CacheError::BadRange { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_data_is_quarantined_and_never_served() {
    let up = Scripted::new(300_000, Visibility::Public, 0);
    up.corrupt.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(
        up.clone(),
        Arc::new(FsBlobStore::open(dir.path()).unwrap()),
        CacheConfig::default(),
    )
    .await;
    let ctx = RequestContext::admin();
    let d = cache.data(&id(), None, &ctx).await.unwrap();
    assert!(
        body(d).await.is_err(),
        "the stream breaks instead of completing"
    );
    // Give the fill task a moment to finish its bookkeeping.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(cache.metadata().cache_entry(&id()).await.unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(dir.path().join("images"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("quarantine"))
            .unwrap()
            .count(),
        1
    );
    // The next request tries again and, with good data, succeeds.
    up.corrupt.store(false, Ordering::SeqCst);
    let d = cache.data(&id(), None, &ctx).await.unwrap();
    assert!(body(d).await.unwrap() == up.data, "bytes differ");
}

/// Which checksums a fill verifies (`verify`): under `strongest` the multihash alone when
/// the image has one, as glanceclient, so a wrong MD5 beside a right SHA-512 is cached;
/// under `all` that image is refused. Without a multihash the MD5 still decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_policy_chooses_the_checked_hashes() {
    // One image, its record edited, its data corrupted or not, filled under `policy`:
    // whether it is served complete (and then right) and cached.
    async fn fill(policy: VerifyPolicy, corrupt: bool, edit: fn(&mut ImageRecord)) -> bool {
        let up = Scripted::new(300_000, Visibility::Public, 0);
        if let Some(r) = up.record.lock().unwrap().as_mut() {
            edit(r);
        }
        up.corrupt.store(corrupt, Ordering::SeqCst);
        let config = CacheConfig::default().verify(policy);
        let cache = cache_over(up.clone(), Arc::new(MemoryBlobStore::new()), config).await;
        let ctx = RequestContext::admin();
        let served = body(cache.data(&id(), None, &ctx).await.unwrap()).await;
        if let Ok(b) = &served {
            assert!(*b == up.data, "bytes differ");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let entry = cache.metadata().cache_entry(&id()).await.unwrap();
        assert_eq!(entry.is_some(), served.is_ok(), "{policy:?}");
        served.is_ok()
    }
    let wrong_md5 = |r: &mut ImageRecord| r.checksum = Some("0".repeat(32));
    assert!(fill(VerifyPolicy::Strongest, false, wrong_md5).await);
    assert!(!fill(VerifyPolicy::All, false, wrong_md5).await);
    // No multihash: corrupt data fails on its MD5 under either policy.
    let md5_only = |r: &mut ImageRecord| {
        r.os_hash_algo = None;
        r.os_hash_value = None;
    };
    for policy in [VerifyPolicy::Strongest, VerifyPolicy::All] {
        assert!(!fill(policy, true, md5_only).await, "{policy:?}");
        assert!(fill(policy, false, md5_only).await, "{policy:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_error_during_a_fill_is_the_caches_fault_not_the_upstreams() {
    let ctx = RequestContext::admin();
    // The blob cannot be created: the request is answered with that error.
    let up = Scripted::new(300_000, Visibility::Public, 0);
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: true,
        ok_writes: 0,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let e = cache.data(&id(), None, &ctx).await.unwrap_err();
    assert!(
        matches!(
            e.kind(),
            CacheError::Blob {
                source: BlobError::Io(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.origin(), ErrorSource::Internal);
    assert!(!e.is_temporary());
    let text = e.to_string();
    assert!(
        text.contains("image store") && text.contains("read-only"),
        "{text}"
    );
    assert!(!text.contains("upstream"), "{text}");
    // Writes fail after the fill started: the client streaming from it gets the
    // image from the upstream instead.
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: false,
        ok_writes: 0,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let d = cache.data(&id(), None, &ctx).await.unwrap();
    assert!(body(d).await.unwrap() == up.data, "bytes differ");
    assert!(cache.metadata().cache_entry(&id()).await.unwrap().is_none());
}

/// The disk fills up in the middle of a fill, after the first bytes were streamed:
/// every client streaming from the fill still gets the whole image (the rest from the
/// upstream, verified), and the next request streams through rather than filling into
/// the full disk again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disk_that_fills_up_during_a_fill_cuts_nobody_off_and_is_not_refilled() {
    let ctx = RequestContext::admin();
    // Three write batches; the second fails.
    let up = Scripted::new(3 * 1024 * 1024 - 5, Visibility::Public, 2);
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: false,
        ok_writes: 1,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let whole = {
        let (cache, ctx) = (cache.clone(), ctx.clone());
        tokio::spawn(async move {
            let d = cache.data(&id(), None, &ctx).await.unwrap();
            assert_eq!(d.source, DataSource::Fill);
            body(d).await
        })
    };
    while cache.upstream_data_fetches() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ranged = cache
        .data(
            &id(),
            Some(RangeSpec::From {
                first: 1000,
                last: Some(2_500_000),
            }),
            &ctx,
        )
        .await
        .unwrap();
    let ranged = body(ranged).await.unwrap();
    assert!(ranged == up.data[1000..=2_500_000], "ranged bytes differ");
    let whole = whole.await.unwrap().unwrap();
    assert_eq!(whole.len(), up.data.len());
    assert!(whole == up.data, "bytes differ");
    // Each client's rest was asked with a range from where it was, never the whole
    // image again: the fill's request, the client's range on the miss (answered from
    // the fill), and one resume per client, each from a byte past 0 to its last byte.
    let ranges = up.ranges.lock().unwrap().clone();
    assert_eq!(ranges[0], None, "{ranges:?}");
    let resumes: Vec<ByteRange> = ranges[1..].iter().map(|r| r.expect("a range")).collect();
    assert_eq!(resumes.len(), 2, "{ranges:?}");
    let size = up.data.len() as u64;
    assert!(
        resumes.iter().any(|r| r.first > 0 && r.last == size - 1),
        "{ranges:?}"
    );
    assert!(
        resumes
            .iter()
            .any(|r| r.first >= 1000 && r.last == 2_500_000),
        "{ranges:?}"
    );
    assert!(cache.metadata().cache_entry(&id()).await.unwrap().is_none());
    // The disk is failing: the next request streams through, starting no fill.
    let opens = up.opens.load(Ordering::SeqCst);
    let d = cache.data(&id(), None, &ctx).await.unwrap();
    assert_eq!(d.source, DataSource::Upstream);
    assert!(body(d).await.unwrap() == up.data, "bytes differ");
    assert_eq!(up.opens.load(Ordering::SeqCst), opens + 1);
    assert!(cache.metadata().cache_entry(&id()).await.unwrap().is_none());
}

/// The rest of a client's image after its fill failed on the disk comes with a range;
/// the whole image is still verified (the bytes sent before hashed from the fill's
/// blob): data that does not match its checksums never arrives complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ranged_fallback_still_verifies_the_whole_image() {
    let ctx = RequestContext::admin();
    let up = Scripted::new(3 * 1024 * 1024 - 5, Visibility::Public, 1);
    up.corrupt.store(true, Ordering::SeqCst);
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: false,
        ok_writes: 1,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let d = cache.data(&id(), None, &ctx).await.unwrap();
    assert_eq!(d.source, DataSource::Fill);
    let mut stream = d.stream;
    let mut got = 0usize;
    let mut failed = false;
    while let Some(item) = futures::StreamExt::next(&mut stream).await {
        match item {
            Ok(b) => got += b.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed && got < up.data.len(),
        "{got} bytes, failed: {failed}"
    );
    let ranges = up.ranges.lock().unwrap().clone();
    assert!(
        matches!(ranges[..], [None, Some(r)] if r.first > 0),
        "{ranges:?}"
    );
}

/// Files under `dir` this process holds open although they were removed (space the
/// disk cannot free: `df` full, `du` empty).
fn removed_but_open(dir: &std::path::Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .filter(|t| t.starts_with(&dir) && t.ends_with("(deleted)"))
                .collect()
        })
        .unwrap_or_default()
}

/// A disk that filled during a fill is not kept full by the clients getting their rest
/// from the upstream: once their fallback began, nobody holds the removed partial blob
/// open, however slowly they read the rest (a full disk freed only when the slowest
/// client of the fill finishes refuses every other fill meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_on_a_fallback_do_not_hold_the_failed_blob_open() {
    let ctx = RequestContext::admin();
    let up = Scripted::new(3 * 1024 * 1024 - 5, Visibility::Public, 1);
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(FailingDisk {
        inner: crate::blob::FsBlobStore::open(dir.path()).unwrap(),
        fail_create: false,
        ok_writes: 1,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let d = cache.data(&id(), None, &ctx).await.unwrap();
        assert_eq!(d.source, DataSource::Fill);
        streams.push(d.stream);
    }
    // The clients read in turn, a piece each, until each one's rest was asked from the
    // upstream; then they stop reading (slow clients).
    let mut got = vec![0usize; streams.len()];
    let resumes = || up.ranges.lock().unwrap().iter().flatten().count();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while resumes() < streams.len() {
        assert!(std::time::Instant::now() < deadline, "{:?}", up.ranges);
        for (s, n) in streams.iter_mut().zip(got.iter_mut()) {
            if let Some(item) = futures::StreamExt::next(s).await {
                *n += item.unwrap().len();
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        removed_but_open(dir.path()).is_empty(),
        "removed blobs held open by clients on their fallback: {:?}",
        removed_but_open(dir.path())
    );
    // They still get the whole image.
    for (mut s, n) in streams.into_iter().zip(got) {
        let mut rest = Vec::new();
        while let Some(item) = futures::StreamExt::next(&mut s).await {
            rest.extend_from_slice(&item.unwrap());
        }
        assert!(rest == up.data[n..], "bytes differ");
    }
}

/// The disk fills up mid-fill and the central ignores `Range` (answers every request
/// with the whole image): each client, whole or ranged, still gets exactly its bytes,
/// the whole one verified; the prefix the central sends again is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fallback_from_a_central_that_ignores_range_skips_the_prefix() {
    let ctx = RequestContext::admin();
    let up = Scripted::new(3 * 1024 * 1024 - 5, Visibility::Public, 2);
    up.ignore_range.store(true, Ordering::SeqCst);
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: false,
        ok_writes: 1,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let whole = cache.data(&id(), None, &ctx).await.unwrap();
    assert_eq!(whole.source, DataSource::Fill);
    let ranged = cache
        .data(
            &id(),
            Some(RangeSpec::From {
                first: 70_000,
                last: Some(2_000_000),
            }),
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(ranged.source, DataSource::Fill);
    let (whole, ranged) = tokio::join!(body(whole), body(ranged));
    assert!(whole.unwrap() == up.data, "whole bytes differ");
    assert!(
        ranged.unwrap() == up.data[70_000..=2_000_000],
        "ranged bytes differ"
    );
    let ranges = up.ranges.lock().unwrap().clone();
    assert_eq!(ranges.iter().flatten().count(), 2, "{ranges:?}");
}
