//! The edge service in process: its error answers, its life as a `tower::Service`, and
//! the background work it owns.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use glance_proto::client::CentralClient;
use glance_proto::config::EdgeConfig;
use glance_proto::{EdgeService, IdentityMode};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use image_cache_core::blob::{BlobError, BlobRead, BlobStore, BlobWriter, MemoryBlobStore};
use image_cache_core::engine::{CacheConfig, ImageCache, Spawner};
use image_cache_core::list::{ListQuery, Page};
use image_cache_core::meta::MemoryMetadataStore;
use image_cache_core::upstream::{
    ByteRange, RequestContext, Upstream, UpstreamData, UpstreamError,
};
use image_cache_core::{ImageId, ImageRecord, ImageStatus, Visibility};
use stackfed_http::{Background, Body, Timeouts};
use tower::ServiceExt;

const ID: &str = "9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab";

fn id() -> ImageId {
    ImageId::parse(ID).unwrap()
}

/// A central with one active image of 1000 bytes.
#[derive(Debug)]
struct OneImage;

#[async_trait]
impl Upstream for OneImage {
    async fn get(
        &self,
        _: &ImageId,
        _: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        let mut r = ImageRecord::new(id(), Visibility::Public);
        r.status = ImageStatus::Active;
        r.size = Some(1000);
        r.checksum = Some("0123456789abcdef0123456789abcdef".into());
        Ok(Some(r))
    }
    async fn list(&self, _: &ListQuery, _: &RequestContext) -> Result<Page, UpstreamError> {
        Ok(Page::default())
    }
    async fn open(
        &self,
        _: &ImageId,
        _: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        let chunk = Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 1000]));
        Ok(Some(UpstreamData {
            total_size: Some(1000),
            first: 0,
            stream: Box::pin(futures::stream::iter([chunk])),
        }))
    }
}

/// A blob store on a disk that refuses every new blob (read-only).
#[derive(Debug, Default)]
struct ReadOnlyDisk(MemoryBlobStore);

#[async_trait]
impl BlobStore for ReadOnlyDisk {
    async fn create(&self, _: &ImageId) -> Result<Box<dyn BlobWriter>, BlobError> {
        Err(BlobError::Io(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "read-only file system",
        )))
    }
    async fn open(
        &self,
        id: &ImageId,
        range: Option<ByteRange>,
    ) -> Result<Option<BlobRead>, BlobError> {
        self.0.open(id, range).await
    }
    async fn remove(&self, id: &ImageId) -> Result<(), BlobError> {
        self.0.remove(id).await
    }
    async fn list(&self) -> Result<Vec<(ImageId, u64)>, BlobError> {
        self.0.list().await
    }
    async fn clear_incomplete(&self) -> Result<usize, BlobError> {
        self.0.clear_incomplete().await
    }
}

/// A central address where nothing listens.
fn nowhere() -> url::Url {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}").parse().unwrap()
}

fn owned_by(background: &Background) -> Arc<dyn Spawner> {
    let owner = background.clone();
    Arc::new(move |name, task| owner.spawn(name, task))
}

async fn call(service: &EdgeService, uri: &str) -> (StatusCode, String) {
    // Any body type will do: here a `String`.
    let req = Request::get(uri).body(String::new()).unwrap();
    let resp: Response<Body> = service.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_disk_error_during_a_fill_is_a_500_that_says_what_failed() {
    let background = Background::new();
    let (cache, _) = ImageCache::open(
        Arc::new(OneImage),
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(ReadOnlyDisk::default()),
        CacheConfig::default(),
        owned_by(&background),
    )
    .await
    .unwrap();
    let central = CentralClient::new(nowhere(), Timeouts::default());
    let service = EdgeService::new(cache, central, IdentityMode::NoAuth);
    let (status, body) = call(&service, &format!("/v2/images/{ID}/file")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("image store"), "{body}");
    assert!(body.contains("read-only file system"), "{body}");
    assert!(!body.contains("unreachable"), "{body}");
    background.shutdown().await;
}

/// A central that accepts connections and never answers.
async fn silent_central() -> url::Url {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}").parse().unwrap()
}

#[tokio::test]
async fn a_central_that_does_not_answer_in_time_is_a_504() {
    let background = Background::new();
    let central = CentralClient::new(
        silent_central().await,
        Timeouts {
            response: Duration::from_millis(200),
            ..Timeouts::default()
        },
    );
    let (cache, _) = ImageCache::open(
        Arc::new(central.clone()),
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
        owned_by(&background),
    )
    .await
    .unwrap();
    let service = EdgeService::new(cache, central, IdentityMode::NoAuth);
    for uri in [format!("/v2/images/{ID}"), format!("/v2/images/{ID}/file")] {
        let (status, body) = call(&service, &uri).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{uri}: {body}");
        assert!(body.contains("did not answer in time"), "{body}");
    }
    // Writes passed through take the same mapping.
    let req = Request::post("/v2/images")
        .body(String::from("{}"))
        .unwrap();
    let resp = service.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    background.shutdown().await;
}

#[tokio::test]
async fn the_prefetch_workers_stop_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = EdgeConfig::from_toml(&format!(
        "central_url = \"{}\"\ncache_dir = \"{}\"\nprefetch_concurrency = 3\n",
        nowhere(),
        dir.path().display()
    ))
    .unwrap();
    let edge = config.build().await.unwrap();
    assert_eq!(
        edge.background.running(),
        4,
        "three prefetch workers and the central probe"
    );
    // The service answers what it can without the central.
    let (status, _) = call(&edge.service, "/versions").await;
    assert_eq!(status, StatusCode::OK);
    edge.background.shutdown().await;
    assert_eq!(edge.background.running(), 0, "every worker stopped");
    // Nothing works the queue any more.
    edge.service.cache().queue(&id(), &RequestContext::admin());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(edge.service.cache().queued(), vec![id()]);
}

#[tokio::test]
async fn served_by_stackfed_http_behind_a_tower_layer() {
    let dir = tempfile::tempdir().unwrap();
    let config = EdgeConfig::from_toml(&format!(
        "central_url = \"{}\"\ncache_dir = \"{}\"\n",
        nowhere(),
        dir.path().display()
    ))
    .unwrap();
    let edge = config.build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layered = tower::ServiceBuilder::new()
        .map_response(|mut r: Response<Body>| {
            r.headers_mut()
                .insert("x-layer", http::HeaderValue::from_static("yes"));
            r
        })
        .service(edge.service.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(stackfed_http::serve(
        listener,
        layered,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /versions HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.to_ascii_lowercase().contains("x-layer: yes"), "{out}");
    assert!(out.contains("http://edge/v2/"), "{out}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    edge.background.shutdown().await;
}

/// A central that refuses every request as Glance does: 400 in webob's JSON (what the
/// edge asks for), the message marked up for HTML.
async fn refusing_central() -> url::Url {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"message": "Invalid marker. Image 00000000-0000-0000-0000-000000000000 could not be found.<br /><br />\n\n\n", "code": "400 Bad Request", "title": "Bad Request"}"#;
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}").parse().unwrap()
}

async fn call_accepting(
    service: &EdgeService,
    uri: &str,
    accept: Option<&str>,
) -> (StatusCode, String, String) {
    let mut req = Request::get(uri);
    if let Some(a) = accept {
        req = req.header(http::header::ACCEPT, a);
    }
    let resp: Response<Body> = service
        .clone()
        .oneshot(req.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_refusal_of_the_central_is_answered_in_the_format_the_client_asked_for() {
    let background = Background::new();
    let central = CentralClient::new(refusing_central().await, Timeouts::default());
    let (cache, _) = ImageCache::open(
        Arc::new(central.clone()),
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(MemoryBlobStore::new()),
        CacheConfig::default(),
        owned_by(&background),
    )
    .await
    .unwrap();
    let service = EdgeService::new(cache, central, IdentityMode::NoAuth);
    let said = "Invalid marker. Image 00000000-0000-0000-0000-000000000000 could not be found.";
    for uri in [
        "/v2/images?marker=00000000-0000-0000-0000-000000000000".to_owned(),
        format!("/v2/images/{ID}"),
    ] {
        for (accept, format) in [
            (None, "text/plain"),
            (Some("text/plain"), "text/plain"),
            (Some("*/*"), "text/html"),
            (Some("text/html"), "text/html"),
            (Some("application/json"), "application/json"),
        ] {
            let (status, ct, body) = call_accepting(&service, &uri, accept).await;
            let what = format!("{uri} {accept:?}: {ct} {body}");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
            assert!(ct.starts_with(format), "{what}");
            assert!(body.contains(said), "{what}");
            match format {
                "application/json" => {
                    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
                    // As webob writes it (taken from the real Glance).
                    assert_eq!(
                        doc["message"],
                        format!("{said}<br /><br />\n\n\n"),
                        "{what}"
                    );
                    assert_eq!(doc["code"], "400 Bad Request", "{what}");
                }
                // The edge's own page: the markup once, its own.
                "text/html" => assert_eq!(body.matches("<br />").count(), 2, "{what}"),
                _ => assert!(!body.contains('<'), "{what}"),
            }
        }
    }
    background.shutdown().await;
}
