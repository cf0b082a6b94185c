//! Engine tests, one file per concern, over the scripted upstreams below.

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
    /// Answers every data request with the whole image (a store that ignores `Range`).
    ignore_range: AtomicBool,
    opens: AtomicU64,
    /// The range each data request asked for.
    ranges: Mutex<Vec<Option<ByteRange>>>,
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
            ignore_range: AtomicBool::new(false),
            opens: AtomicU64::new(0),
            ranges: Mutex::new(Vec::new()),
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
        range: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(down());
        }
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.ranges.lock().unwrap().push(range);
        let range = range.filter(|_| !self.ignore_range.load(Ordering::SeqCst));
        let mut data = self.data.clone();
        if self.corrupt.load(Ordering::SeqCst) {
            data[0] ^= 1;
        }
        let total = data.len() as u64;
        if let Some(r) = range {
            data = data[r.first as usize..=r.last as usize].to_vec();
        }
        let delay = self.chunk_delay;
        let chunks: Vec<Bytes> = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
        let stream = futures::stream::iter(chunks).then(move |c| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::io::Error>(c)
        });
        use futures::StreamExt;
        Ok(Some(UpstreamData {
            total_size: Some(total),
            first: range.map_or(0, |r| r.first),
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
            first: range.map_or(0, |r| r.first),
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

mod budget;
mod data;
mod fill;
mod metadata;
mod prefetch;
mod reconcile;
