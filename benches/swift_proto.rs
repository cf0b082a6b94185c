//! The federation proxy's per-request hot path: parsing and validating the path, the
//! transaction id, the request-line check, stripping an answer's hop-by-hop headers,
//! reading attribute headers, account listings both ways, and a merged account listing
//! (issue 13: two clusters' answers decoded, merged and encoded).
//!
//! Run with `cargo bench --bench swift_proto`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use stackfed::federation_core::listing::{
    merge_page, ListingEntry, ListingQuery, ListingSource, SourceError,
};
use stackfed::http::headers::strip_hop_by_hop;
use stackfed::swift_proto::headers::{attribute_changes, request_target};
use stackfed::swift_proto::listing::{
    decode_json, encode, parse_query, AccountEntry, ContainerInfo, ListingFormat,
};
use stackfed::swift_proto::path::SwiftPath;
use stackfed::swift_proto::service::new_trans_id;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    g.bench_function("SwiftPath::parse object path", |b| {
        b.iter(|| SwiftPath::parse("/v1/AUTH_test/photos%202024/trips/rome/IMG_0042.jpg").unwrap())
    });
    g.bench_function("SwiftPath::parse object path, no escapes", |b| {
        b.iter(|| SwiftPath::parse("/v1/AUTH_test/bench/small").unwrap())
    });
    g.bench_function("new_trans_id", |b| b.iter(|| new_trans_id(None)));
    let uri: http::Uri = "/v1/AUTH_test/bench/small?multipart-manifest=get"
        .parse()
        .unwrap();
    g.bench_function("request_target (origin form)", |b| {
        b.iter(|| request_target(&uri).len())
    });
    // What a cluster (here nginx) answers a small GET with: one hop-by-hop header.
    let mut answer = HeaderMap::new();
    for (k, v) in [
        ("server", "nginx/1.22.1"),
        ("date", "Mon, 30 Nov 2026 14:35:28 GMT"),
        ("content-type", "application/octet-stream"),
        ("content-length", "1024"),
        ("last-modified", "Mon, 30 Nov 2026 14:35:00 GMT"),
        ("connection", "keep-alive"),
        ("etag", "\"6543a1c4-400\""),
        ("accept-ranges", "bytes"),
    ] {
        answer.insert(k, HeaderValue::from_static(v));
    }
    g.bench_function("strip_hop_by_hop (8 answer headers)", |b| {
        b.iter_batched(
            || answer.clone(),
            |mut h| {
                strip_hop_by_hop(&mut h);
                h
            },
            BatchSize::SmallInput,
        )
    });
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("x-auth-token", "AUTH_tk0123456789abcdef0123456789abcdef"),
        ("content-type", "application/octet-stream"),
        ("x-container-meta-color", "blue"),
        ("x-container-attr-tier", "gold"),
        ("x-container-attr-redundancy", "3"),
        ("user-agent", "python-swiftclient-4.11.0"),
    ] {
        headers.insert(k, HeaderValue::from_static(v));
    }
    g.bench_function("attribute_changes (6 headers)", |b| {
        b.iter(|| attribute_changes(&headers).unwrap())
    });
    g.bench_function("parse_query (listing)", |b| {
        b.iter(|| {
            parse_query(Some(
                "format=json&limit=1000&marker=abc&prefix=a&delimiter=-&reverse=true",
            ))
            .unwrap()
        })
    });
    g.finish();

    let entries: Vec<_> = (0..1000)
        .map(|i| {
            let mut data = serde_json::Map::new();
            data.insert("count".into(), (i * 3).into());
            data.insert("bytes".into(), (i * 1024).into());
            data.insert("last_modified".into(), "2026-11-22T03:22:46.614410".into());
            data.insert("storage_policy".into(), "standard".into());
            ListingEntry::Item {
                name: format!("container-{i:05}"),
                data,
            }
        })
        .collect();
    let json = encode(ListingFormat::Json, "AUTH_test", &entries).unwrap();
    let mut g = c.benchmark_group("account listing, 1000 containers");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode json (from a cluster)", |b| {
        b.iter(|| decode_json(&json).unwrap())
    });
    g.bench_function("encode json", |b| {
        b.iter(|| encode(ListingFormat::Json, "AUTH_test", &entries).unwrap())
    });
    g.bench_function("encode xml", |b| {
        b.iter(|| encode(ListingFormat::Xml("application/xml"), "AUTH_test", &entries).unwrap())
    });
    g.finish();

    // Issue 13's merged listing: two clusters' JSON answers of 100 containers each,
    // decoded, merged into one page and encoded for the client (the proxy's own work
    // between the clusters' answers and its response).
    let answer = |cluster: &str| {
        let page: Vec<_> = entries
            .iter()
            .take(100)
            .map(|e| match e {
                ListingEntry::Item { name, data } => ListingEntry::Item {
                    name: format!("{name}-{cluster}"),
                    data: data.clone(),
                },
                other => other.clone(),
            })
            .collect();
        encode(ListingFormat::Json, "AUTH_test", &page).unwrap()
    };
    let answers = [answer("east"), answer("west")];
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("merged account listing, 2 x 100 containers");
    g.throughput(Throughput::Elements(200));
    g.bench_function("decode both, merge, encode json", |b| {
        b.to_async(&rt).iter(|| async {
            let mut sources: Vec<_> = answers.iter().map(|a| Answer(a.as_slice())).collect();
            let page = merge_page(&mut sources, &ListingQuery::new())
                .await
                .unwrap();
            encode(ListingFormat::Json, "AUTH_test", &page).unwrap()
        })
    });
    g.finish();
}

/// A cluster's JSON account listing, decoded when the merge asks for it.
struct Answer<'a>(&'a [u8]);

#[async_trait::async_trait]
impl ListingSource for Answer<'_> {
    type Item = ContainerInfo;

    async fn fetch(&mut self, _: &ListingQuery) -> Result<Vec<AccountEntry>, SourceError> {
        Ok(decode_json(self.0)?)
    }
}

criterion_group!(swift_proto, benches);
criterion_main!(swift_proto);
