//! `GET /v2/images/{id}` answers with a record's encoding made once per version and
//! shared by every request: pinned against the encoder the edge used for every show
//! before (`to_json` written compactly, with the same headers), for arbitrary records,
//! and a record written again (a listing, a refresh) is answered in its new version.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use glance_proto::client::CentralClient;
use glance_proto::image::{from_json, to_json};
use glance_proto::{EdgeService, IdentityMode};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use image_cache_core::blob::MemoryBlobStore;
use image_cache_core::engine::{CacheConfig, ImageCache, Spawner};
use image_cache_core::list::{ListQuery, Page};
use image_cache_core::meta::SqliteMetadataStore;
use image_cache_core::upstream::{
    ByteRange, RequestContext, Upstream, UpstreamData, UpstreamError,
};
use image_cache_core::{ImageId, ImageRecord, ImageStatus, Visibility};
use proptest::prelude::*;
use serde_json::{json, Value};
use stackfed_http::{Background, Body, Timeouts};
use tower::ServiceExt;

const ID: &str = "f09a978d-f227-45bd-a53e-ab114ac61d30";

/// A central whose one image can be changed; its listing is that image.
#[derive(Debug)]
struct Central(Mutex<ImageRecord>);

#[async_trait]
impl Upstream for Central {
    async fn get(
        &self,
        _: &ImageId,
        _: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        Ok(Some(self.0.lock().unwrap().clone()))
    }
    async fn list(&self, _: &ListQuery, _: &RequestContext) -> Result<Page, UpstreamError> {
        Ok(Page {
            images: vec![self.0.lock().unwrap().clone()],
            ..Page::default()
        })
    }
    async fn open(
        &self,
        _: &ImageId,
        _: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        Ok(None)
    }
}

/// A record as a real Glance (33.0.0) shows it.
fn real_glance_record() -> ImageRecord {
    from_json(json!({"os_distro": "ubuntu", "name": "x", "disk_format": "raw", "container_format": "bare",
        "visibility": "public", "size": 100000, "virtual_size": 100000, "status": "active",
        "checksum": "1af6d6f2f682f76f80e606aeaaee1680", "protected": false, "min_ram": 0, "min_disk": 0,
        "owner": null, "os_hidden": false, "os_hash_algo": "sha512", "os_hash_value": "c766",
        "id": ID, "created_at": "2026-11-22T03:50:08Z",
        "updated_at": "2026-11-22T03:50:08Z", "tags": ["a", "b"], "self": format!("/v2/images/{ID}"),
        "file": format!("/v2/images/{ID}/file"), "schema": "/v2/schemas/image", "stores": "fs"}))
    .unwrap()
}

async fn show(service: &EdgeService) -> Response<Bytes> {
    let req = Request::get(format!("/v2/images/{ID}"))
        .body(String::new())
        .unwrap();
    let resp: Response<Body> = service.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// What the edge answered for `record` before versions were shared: `to_json` written
/// compactly, `Content-Type: application/json; charset=UTF-8`, its length.
fn assert_answers(resp: &Response<Bytes>, record: &ImageRecord) -> Result<(), TestCaseError> {
    let expected = to_json(record).to_string();
    prop_assert_eq!(resp.status(), StatusCode::OK);
    prop_assert_eq!(std::str::from_utf8(resp.body()).unwrap(), expected.as_str());
    let h = resp.headers();
    prop_assert_eq!(
        h["content-type"].to_str().unwrap(),
        "application/json; charset=UTF-8"
    );
    prop_assert_eq!(
        h["content-length"].to_str().unwrap(),
        expected.len().to_string()
    );
    prop_assert!(h.get("x-edge-stale").is_none());
    prop_assert!(h.contains_key("x-openstack-request-id"));
    prop_assert_eq!(h.len(), 3, "{:?}", h);
    Ok(())
}

/// Shows the image twice (the second from the cached version), then lets a listing
/// record `changed` and shows it again: every answer is the current encoder's.
async fn shows_then_changes(
    first: ImageRecord,
    changed: ImageRecord,
    recent_records: usize,
) -> Result<(), TestCaseError> {
    let background = Background::new();
    let owner = background.clone();
    let spawner: Arc<dyn Spawner> = Arc::new(move |name, task| owner.spawn(name, task));
    let central = Arc::new(Central(Mutex::new(first.clone())));
    let (cache, _) = ImageCache::open(
        central.clone(),
        Arc::new(SqliteMetadataStore::in_memory().unwrap()),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default()
            .freshness(Duration::from_secs(3600))
            .recent_records(recent_records),
        spawner,
    )
    .await
    .unwrap();
    let nowhere = "http://127.0.0.1:9".parse().unwrap();
    let service = EdgeService::new(
        cache,
        CentralClient::new(nowhere, Timeouts::default()),
        IdentityMode::NoAuth,
    );
    let one = show(&service).await;
    assert_answers(&one, &first)?;
    let two = show(&service).await;
    assert_answers(&two, &first)?;
    *central.0.lock().unwrap() = changed.clone();
    let req = Request::get("/v2/images").body(String::new()).unwrap();
    let listed = service.clone().oneshot(req).await.unwrap();
    prop_assert_eq!(listed.status(), StatusCode::OK);
    assert_answers(&show(&service).await, &changed)?;
    background.shutdown().await;
    Ok(())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn record() -> impl Strategy<Value = ImageRecord> {
    (
        prop::sample::select(vec![
            Visibility::Public,
            Visibility::Private,
            Visibility::Shared,
            Visibility::Community,
        ]),
        prop::sample::select(vec![
            "active",
            "queued",
            "deactivated",
            "importing",
            "something_new",
        ]),
        any::<Option<u64>>(),
        prop::option::of("[0-9a-f]{32}"),
        prop::option::of(any::<String>()),
        any::<String>(),
        prop::collection::btree_map("[a-z_:]{1,20}", json_value(), 0..12),
    )
        .prop_map(
            |(visibility, status, size, checksum, owner, updated_at, properties)| {
                let mut r = ImageRecord::new(ImageId::parse(ID).unwrap(), visibility);
                r.status = ImageStatus::parse(status);
                r.size = size;
                r.checksum = checksum;
                r.owner = owner;
                r.updated_at = updated_at;
                r.properties = properties.into_iter().collect::<BTreeMap<_, _>>();
                r
            },
        )
}

#[test]
fn a_real_glance_record_is_answered_as_before_and_its_change_is_seen() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let first = real_glance_record();
    let mut changed = first.clone();
    changed
        .properties
        .insert("name".into(), Value::from("renamed"));
    changed.updated_at = "2026-11-22T04:00:00Z".into();
    // Kept in memory (the default), and with `recent_records = 0`: every read from the store.
    for recent_records in [4096, 0] {
        rt.block_on(shows_then_changes(
            first.clone(),
            changed.clone(),
            recent_records,
        ))
        .unwrap();
    }
    let config = |extra: &str| {
        glance_proto::config::EdgeConfig::from_toml(&format!(
            "central_url = \"http://127.0.0.1:9\"\ncache_dir = \"/nonexistent\"\n{extra}"
        ))
        .unwrap()
        .recent_records
    };
    assert_eq!(config(""), 4096);
    assert_eq!(config("recent_records = 0"), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_record_is_answered_as_the_encoder_writes_it(first in record(), changed in record()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(shows_then_changes(first, changed, 4096))?;
    }
}
