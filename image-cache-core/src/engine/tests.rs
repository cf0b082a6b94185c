use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::TryStreamExt;
use md5::Digest;

use super::*;
use crate::blob::{BlobError, BlobRead, BlobWriter, FsBlobStore, MemoryBlobStore};
use crate::error::ErrorSource;
use crate::meta::{MemoryMetadataStore, SqliteMetadataStore};
use crate::record::{ImageStatus, Visibility};
use crate::upstream::{ByteRange, RangeSpec, UpstreamData, UpstreamError};

/// Runs background work on the test's runtime.
fn spawner() -> Arc<dyn Spawner> {
    Arc::new(|_: &'static str, task| {
        tokio::spawn(task);
    })
}

fn down() -> UpstreamError {
    UpstreamError::Unreachable {
        source: "connection refused".into(),
    }
}

/// Every record `up` may list for `q`, as an upstream would page them.
fn page_of(records: Vec<ImageRecord>, q: &ListQuery) -> Result<Page, UpstreamError> {
    q.apply(records).map_err(|e| UpstreamError::Refused {
        status: 400,
        body: Bytes::from(e.to_string()),
        content_type: None,
    })
}

/// A scripted upstream: one image, optionally serving corrupted bytes, optionally down.
#[derive(Debug)]
struct Scripted {
    record: Mutex<Option<ImageRecord>>,
    data: Vec<u8>,
    corrupt: AtomicBool,
    down: AtomicBool,
    opens: AtomicU64,
    chunk_delay: Duration,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn id() -> ImageId {
    ImageId::parse("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee").unwrap()
}

impl Scripted {
    fn new(size: usize, visibility: Visibility, delay_ms: u64) -> Arc<Self> {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        let mut r = ImageRecord::new(id(), visibility);
        r.size = Some(size as u64);
        r.checksum = Some(hex(&md5::Md5::digest(&data)));
        r.os_hash_algo = Some("sha512".into());
        r.os_hash_value = Some(hex(&sha2::Sha512::digest(&data)));
        r.owner = Some("owner-project".into());
        Arc::new(Self {
            record: Mutex::new(Some(r)),
            data,
            corrupt: AtomicBool::new(false),
            down: AtomicBool::new(false),
            opens: AtomicU64::new(0),
            chunk_delay: Duration::from_millis(delay_ms),
        })
    }
}

#[async_trait]
impl Upstream for Scripted {
    async fn get(
        &self,
        _: &ImageId,
        _: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down());
        }
        Ok(self.record.lock().unwrap().clone())
    }

    async fn list(&self, q: &ListQuery, _: &RequestContext) -> Result<Page, UpstreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down());
        }
        page_of(self.record.lock().unwrap().clone().into_iter().collect(), q)
    }

    async fn open(
        &self,
        _: &ImageId,
        _: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down());
        }
        self.opens.fetch_add(1, Ordering::SeqCst);
        let mut data = self.data.clone();
        if self.corrupt.load(Ordering::SeqCst) {
            data[0] ^= 1;
        }
        let delay = self.chunk_delay;
        let chunks: Vec<Bytes> = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
        let stream = futures::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(c)
        });
        use futures::StreamExt;
        Ok(Some(UpstreamData {
            total_size: Some(data.len() as u64),
            stream: Box::pin(stream),
        }))
    }
}

async fn cache_over(up: Arc<Scripted>, blobs: Arc<dyn BlobStore>, cfg: CacheConfig) -> ImageCache {
    ImageCache::open(
        up,
        Arc::new(MemoryMetadataStore::new()),
        blobs,
        cfg,
        spawner(),
    )
    .await
    .unwrap()
    .0
}

async fn body(d: ImageData) -> Result<Vec<u8>, std::io::Error> {
    let chunks: Vec<Bytes> = d.stream.try_collect().await?;
    Ok(chunks.concat())
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
    assert!(matches!(
        fresh.data(&id(), None, &admin).await,
        Err(CacheError::Deactivated(_))
    ));
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

/// Several images, each `size` bytes.
#[derive(Debug)]
struct Many {
    images: HashMap<ImageId, (ImageRecord, Vec<u8>)>,
    opens: AtomicU64,
}

fn nth(n: u8) -> ImageId {
    ImageId::parse(&format!("{n:08x}-bbbb-4ccc-8ddd-eeeeeeeeeeee")).unwrap()
}

impl Many {
    fn new(sizes: &[usize]) -> Arc<Self> {
        let mut images = HashMap::new();
        for (i, size) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..*size).map(|j| ((j + i * 13) % 251) as u8).collect();
            let mut r = ImageRecord::new(nth(i as u8), Visibility::Public);
            r.size = Some(*size as u64);
            r.checksum = Some(hex(&md5::Md5::digest(&data)));
            images.insert(r.id.clone(), (r, data));
        }
        Arc::new(Self {
            images,
            opens: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl Upstream for Many {
    async fn get(
        &self,
        id: &ImageId,
        _: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        Ok(self.images.get(id).map(|(r, _)| r.clone()))
    }

    async fn list(&self, q: &ListQuery, _: &RequestContext) -> Result<Page, UpstreamError> {
        page_of(self.images.values().map(|(r, _)| r.clone()).collect(), q)
    }

    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let Some((_, data)) = self.images.get(id) else {
            return Ok(None);
        };
        let part = match range {
            Some(r) => data[r.first as usize..=r.last as usize].to_vec(),
            None => data.clone(),
        };
        let chunks: Vec<Result<Bytes, std::io::Error>> = part
            .chunks(100)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Ok(Some(UpstreamData {
            total_size: Some(data.len() as u64),
            stream: Box::pin(futures::stream::iter(chunks)),
        }))
    }
}

async fn budget_cache(up: Arc<Many>, budget: u64) -> ImageCache {
    ImageCache::open(
        up,
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default().max_bytes(Some(budget)),
        spawner(),
    )
    .await
    .unwrap()
    .0
}

async fn cached_ids(cache: &ImageCache) -> Vec<ImageId> {
    let mut v: Vec<ImageId> = cache
        .cached()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    v.sort();
    v
}

async fn used(cache: &ImageCache) -> u64 {
    cache.usage().await.unwrap().1
}

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

/// A blob store on a disk that fails: `create` (a read-only or full disk) or `write`.
#[derive(Debug)]
struct FailingDisk {
    inner: MemoryBlobStore,
    fail_create: bool,
}

fn disk_error() -> BlobError {
    BlobError::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "read-only file system",
    ))
}

struct FailingWriter(Box<dyn BlobWriter>);

#[async_trait]
impl BlobWriter for FailingWriter {
    async fn write(&mut self, _: Bytes) -> Result<(), BlobError> {
        Err(disk_error())
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
impl BlobStore for FailingDisk {
    async fn create(&self, id: &ImageId) -> Result<Box<dyn BlobWriter>, BlobError> {
        if self.fail_create {
            return Err(disk_error());
        }
        Ok(Box::new(FailingWriter(self.inner.create(id).await?)))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_error_during_a_fill_is_the_caches_fault_not_the_upstreams() {
    let ctx = RequestContext::admin();
    // The blob cannot be created: the request is answered with that error.
    let up = Scripted::new(300_000, Visibility::Public, 0);
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: true,
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
    // Writes fail after the fill started: the stream breaks with the same cause, and a
    // prefetch waiting for the fill learns it too.
    let disk = Arc::new(FailingDisk {
        inner: MemoryBlobStore::new(),
        fail_create: false,
    });
    let cache = cache_over(up.clone(), disk, CacheConfig::default()).await;
    let text = match cache.data(&id(), None, &ctx).await {
        Ok(d) => body(d).await.unwrap_err().to_string(),
        Err(e) => {
            assert_eq!(e.origin(), ErrorSource::Internal);
            e.to_string()
        }
    };
    assert!(
        text.contains("image store") && text.contains("writing"),
        "{text}"
    );
    assert!(cache.metadata().cache_entry(&id()).await.unwrap().is_none());
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
