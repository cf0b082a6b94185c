//! Hot paths of image-cache-core: metadata lookups and blob reads.
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

/// An upstream that is never reachable: every lookup here must be a cache hit.
#[derive(Debug)]
struct Offline;

#[async_trait]
impl Upstream for Offline {
    async fn get(
        &self,
        _: &ImageId,
        _: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        Err(offline())
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
        Err(offline())
    }
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
            Arc::new(Offline),
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
}

criterion_group!(image_cache, benches);
criterion_main!(image_cache);
