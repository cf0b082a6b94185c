//! Hot paths of image-cache-core: metadata lookups, blob reads, verification and the
//! cache-filling first download.
//!
//! Run with `cargo bench --bench image_cache`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::TryStreamExt;
use stackfed::image_cache_core::blob::{BlobStore, FsBlobStore};
use stackfed::image_cache_core::engine::{CacheConfig, ImageCache, Spawner};
use stackfed::image_cache_core::list::{ListQuery, Page};
use stackfed::image_cache_core::meta::{MetadataStore, SqliteMetadataStore};
use stackfed::image_cache_core::upstream::{
    ByteRange, RequestContext, Upstream, UpstreamData, UpstreamError,
};
use stackfed::image_cache_core::{ImageId, ImageRecord, Visibility};

/// The central: `None` is never reachable (every lookup must then be a cache hit);
/// otherwise one image held in memory, answered at once and sent in network-sized
/// frames (64 KiB slices of one buffer, no copies), so that a fill's own cost shows.
#[derive(Debug)]
struct Central {
    image: Option<(ImageRecord, bytes::Bytes)>,
}

#[async_trait]
impl Upstream for Central {
    async fn get(
        &self,
        id: &ImageId,
        _: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        let (record, _) = self.image.as_ref().ok_or_else(offline)?;
        Ok((*id == record.id).then(|| record.clone()))
    }
    async fn list(&self, _: &ListQuery, _: &RequestContext) -> Result<Page, UpstreamError> {
        Err(offline())
    }
    async fn open(
        &self,
        _: &ImageId,
        _: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        let (_, data) = self.image.as_ref().ok_or_else(offline)?;
        let frames: Vec<_> = (0..data.len())
            .step_by(64 << 10)
            .map(|at| Ok(data.slice(at..(at + (64 << 10)).min(data.len()))))
            .collect();
        Ok(Some(UpstreamData {
            total_size: Some(data.len() as u64),
            first: 0,
            stream: Box::pin(futures::stream::iter(frames)),
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn offline() -> UpstreamError {
    UpstreamError::Unreachable {
        source: "offline".into(),
    }
}

fn id(n: u32) -> ImageId {
    ImageId::parse(&format!("{n:08x}-0000-4000-8000-000000000000")).unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqliteMetadataStore::open(dir.path().join("meta.db")).unwrap());
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
    let data = bytes::Bytes::from(vec![7u8; 16 << 20]);
    rt.block_on(async {
        for n in 0..1000 {
            let mut r = ImageRecord::new(id(n), Visibility::Public);
            r.size = Some(1);
            r.properties
                .insert("name".into(), format!("image-{n}").into());
            meta.put(&r, u64::MAX / 2).await.unwrap();
        }
        let mut w = blobs.create(&id(0)).await.unwrap();
        w.write(data.clone()).await.unwrap();
        w.commit().await.unwrap();
        meta.set_cached(&id(0), data.len() as u64, 1).await.unwrap();
    });
    // Background work (none here: every read is a hit) has an owner that stops it.
    let background = stackfed::http::Background::new();
    let owner = background.clone();
    let spawner: Arc<dyn Spawner> = Arc::new(move |name, task| owner.spawn(name, task));
    let (cache, _) = rt
        .block_on(ImageCache::open(
            Arc::new(Central { image: None }),
            meta.clone(),
            blobs.clone(),
            CacheConfig::default().freshness(Duration::from_secs(u64::MAX / 4_000_000)),
            spawner,
        ))
        .unwrap();
    let ctx = RequestContext::admin();

    let mut g = c.benchmark_group("metadata");
    let mut n = 0u32;
    g.bench_function("engine image() hit (SQLite, 1000 images)", |b| {
        b.to_async(&rt).iter(|| {
            n = (n + 7) % 1000;
            let (cache, ctx, i) = (&cache, &ctx, id(n));
            async move { cache.image(&i, ctx).await.unwrap() }
        })
    });
    g.bench_function("SqliteMetadataStore::get", |b| {
        b.to_async(&rt).iter(|| {
            n = (n + 7) % 1000;
            let (meta, i) = (&meta, id(n));
            async move { meta.get(&i).await.unwrap().unwrap() }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("blob read");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function(
        BenchmarkId::new("engine data() hit, whole", "16 MiB"),
        |b| {
            b.to_async(&rt).iter(|| async {
                let d = cache.data(&id(0), None, &ctx).await.unwrap();
                d.stream
                    .try_fold(0usize, |n, c| async move { Ok(n + c.len()) })
                    .await
                    .unwrap()
            })
        },
    );
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function(BenchmarkId::new("FsBlobStore::open, range", "1 MiB"), |b| {
        b.to_async(&rt).iter(|| async {
            let r = ByteRange {
                first: 5 << 20,
                last: (6 << 20) - 1,
            };
            let read = blobs.open(&id(0), Some(r)).await.unwrap().unwrap();
            read.stream
                .try_fold(0usize, |n, c| async move { Ok(n + c.len()) })
                .await
                .unwrap()
        })
    });
    g.finish();
    rt.block_on(background.shutdown());
    fill(c, &rt);
}

/// The first download of a 64 MiB image: fetched from a central that answers at once,
/// written to an `FsBlobStore`, MD5 and SHA-512 verified, fsynced and committed, and
/// streamed to the client meanwhile; the cached copy is deleted before each round.
fn fill(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use md5::Digest as _;
    let size = 64usize << 20;
    let mut data = vec![0u8; size];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let data = bytes::Bytes::from(data);

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("MD5", "64 MiB"), |b| {
        b.iter(|| md5::Md5::digest(&data))
    });
    g.bench_function(BenchmarkId::new("SHA-512", "64 MiB"), |b| {
        b.iter(|| sha2::Sha512::digest(&data))
    });
    g.bench_function(BenchmarkId::new("SHA-512 (ring)", "64 MiB"), |b| {
        b.iter(|| ring::digest::digest(&ring::digest::SHA512, &data))
    });
    g.finish();

    let mut record = ImageRecord::new(id(1), Visibility::Public);
    record.size = Some(size as u64);
    record.checksum = Some(hex(&md5::Md5::digest(&data)));
    record.os_hash_algo = Some("sha512".into());
    record.os_hash_value = Some(hex(&sha2::Sha512::digest(&data)));
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(SqliteMetadataStore::open(dir.path().join("meta.db")).unwrap());
    let blobs = Arc::new(FsBlobStore::open(dir.path().join("blobs")).unwrap());
    let background = stackfed::http::Background::new();
    let owner = background.clone();
    let spawner: Arc<dyn Spawner> = Arc::new(move |name, task| owner.spawn(name, task));
    let (cache, _) = rt
        .block_on(ImageCache::open(
            Arc::new(Central {
                image: Some((record.clone(), data)),
            }),
            meta,
            blobs,
            CacheConfig::default().freshness(Duration::from_secs(u64::MAX / 4_000_000)),
            spawner,
        ))
        .unwrap();
    let ctx = RequestContext::admin();
    let mut g = c.benchmark_group("fill");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.bench_function(
        BenchmarkId::new("first download (fill, verify, fsync)", "64 MiB"),
        |b| {
            b.to_async(rt).iter(|| async {
                cache.delete_cached(&record.id).await.unwrap();
                let d = cache.data(&record.id, None, &ctx).await.unwrap();
                let n = d
                    .stream
                    .try_fold(0usize, |n, c| async move { Ok(n + c.len()) })
                    .await
                    .unwrap();
                assert_eq!(n, size);
            })
        },
    );
    g.finish();
    rt.block_on(background.shutdown());
}

criterion_group!(image_cache, benches);
criterion_main!(image_cache);
