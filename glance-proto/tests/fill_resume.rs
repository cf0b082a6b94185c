//! Fills against a central that stalls or breaks in the middle of an image: the real
//! `CentralClient` and `ImageCache` over loopback against an in-process HTTP/1.1 central
//! whose every image-data answer follows a script (stall after so many bytes, ignore
//! `Range`, refuse it as a store without random access does, corrupt the rest).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use glance_proto::client::CentralClient;
use image_cache_core::blob::FsBlobStore;
use image_cache_core::engine::{CacheConfig, ImageCache, Spawner};
use image_cache_core::meta::MemoryMetadataStore;
use image_cache_core::upstream::RequestContext;
use image_cache_core::ImageId;
use md5::Digest;
use stackfed_http::Timeouts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ID: &str = "5c1e0f2a-7b3d-4e8f-9a6b-0c1d2e3f4a5b";
const SIZE: usize = 300_000;

/// How the central answers one image-data request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// As Glance does: 200 whole, 206 with `Content-Range` for a range.
    Normal,
    /// As `Normal`, but nothing more after this many body bytes (the connection open).
    StallAfter(usize),
    /// 200 with the whole image whatever the `Range`.
    IgnoreRange,
    /// A range answered 400, as Glance does for a store without random access
    /// (`StoreRandomGetNotSupported`); a whole request answered normally.
    RefuseRange,
    /// As `Normal`, with one byte of the answer changed.
    Corrupt,
}

#[derive(Debug, Default)]
struct Script {
    answers: VecDeque<Answer>,
    /// Once the script ran out: `Normal` when `None`.
    then: Option<Answer>,
    /// The `Range` of each image-data request.
    ranges: Vec<Option<String>>,
}

struct Central {
    url: url::Url,
    data: Arc<Vec<u8>>,
    script: Arc<Mutex<Script>>,
    tasks: tokio::task::JoinSet<()>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Central {
    async fn start(answers: &[Answer], then: Option<Answer>) -> Self {
        let data: Arc<Vec<u8>> = Arc::new((0..SIZE).map(|i| (i * 31 % 253) as u8).collect());
        let script = Arc::new(Mutex::new(Script {
            answers: answers.iter().copied().collect(),
            then,
            ranges: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        let (d, s) = (data.clone(), script.clone());
        tasks.spawn(async move {
            // Connections live in this set, so they end with the central.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((conn, _)) = listener.accept().await {
                conns.spawn(serve(conn, d.clone(), s.clone()));
            }
        });
        Self {
            url,
            data,
            script,
            tasks,
        }
    }

    fn ranges(&self) -> Vec<Option<String>> {
        self.script.lock().unwrap().ranges.clone()
    }

    fn then(&self, a: Option<Answer>) {
        self.script.lock().unwrap().then = a;
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve(mut conn: TcpStream, data: Arc<Vec<u8>>, script: Arc<Mutex<Script>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let range = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("range").then(|| v.trim().to_owned())
    });
    if path == format!("/v2/images/{ID}") {
        let doc = serde_json::json!({
            "id": ID, "name": "stalling", "status": "active", "visibility": "public",
            "size": SIZE, "disk_format": "raw", "container_format": "bare",
            "checksum": hex(&md5::Md5::digest(&data[..])),
            "os_hash_algo": "sha512",
            "os_hash_value": hex(&sha2::Sha512::digest(&data[..])),
        })
        .to_string();
        let _ = conn
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                    doc.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    if path != format!("/v2/images/{ID}/file") {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    }
    let answer = {
        let mut s = script.lock().unwrap();
        s.ranges.push(range.clone());
        let then = s.then.unwrap_or(Answer::Normal);
        s.answers.pop_front().unwrap_or(then)
    };
    let first = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|f| f.parse::<usize>().ok())
        .filter(|_| answer != Answer::IgnoreRange);
    if first.is_some() && answer == Answer::RefuseRange {
        let body = "400 Bad Request\n\nThis store does not support random access.";
        let _ = conn
            .write_all(
                format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    .as_bytes(),
            )
            .await;
        return;
    }
    let mut body = data[first.unwrap_or(0)..].to_vec();
    if answer == Answer::Corrupt {
        let last = body.len() - 1;
        body[last] ^= 0xff;
    }
    let status = match first {
        Some(f) => format!(
            "206 Partial Content\r\nContent-Range: bytes {f}-{}/{SIZE}",
            SIZE - 1
        ),
        None => "200 OK".to_owned(),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if conn.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let stop = match answer {
        Answer::StallAfter(n) => n.min(body.len()),
        _ => body.len(),
    };
    for piece in body[..stop].chunks(16 * 1024) {
        if conn.write_all(piece).await.is_err() {
            return;
        }
    }
    if stop < body.len() {
        // Stalled: the connection stays open, nothing more comes.
        let _ = conn.flush().await;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

fn spawner() -> Arc<dyn Spawner> {
    Arc::new(|_: &'static str, task| {
        tokio::spawn(task);
    })
}

/// A cache over `central`, its body reads cut after 200 ms of silence.
async fn edge(central: &Central, attempts: u32, dir: &std::path::Path) -> ImageCache {
    let client = CentralClient::new(
        central.url.clone(),
        Timeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(2),
            idle: Duration::from_millis(200),
        },
    );
    ImageCache::open(
        Arc::new(client),
        Arc::new(MemoryMetadataStore::new()),
        Arc::new(FsBlobStore::open(dir.join("blobs")).unwrap()),
        CacheConfig::default().resume(attempts, Duration::from_millis(20)),
        spawner(),
    )
    .await
    .unwrap()
    .0
}

/// A whole download: the bytes that arrived, and the error that cut them, if any.
async fn download(cache: &ImageCache) -> (Vec<u8>, Option<std::io::Error>) {
    let id = ImageId::parse(ID).unwrap();
    let data = cache
        .data(&id, None, &RequestContext::admin())
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut stream = data.stream;
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

async fn is_cached(cache: &ImageCache) -> bool {
    cache
        .cached()
        .await
        .unwrap()
        .iter()
        .any(|e| e.id.as_str() == ID)
}

fn incomplete(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs").join("incomplete"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The `have` of a resume's `bytes=<have>-<last>`.
fn resumed_at(range: &Option<String>) -> usize {
    let r = range.as_deref().expect("a resume asks for a range");
    let (first, last) = r.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
    assert_eq!(last, (SIZE - 1).to_string(), "{r}");
    first.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_mid_body_resumes_with_a_range_and_the_blob_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(100_000)], None).await;
    let cache = edge(&central, 2, dir.path()).await;
    let started = Instant::now();
    let (body, err) = download(&cache).await;
    assert!(err.is_none(), "{err:?}");
    assert!(body == *central.data, "{} bytes", body.len());
    assert!(started.elapsed() >= Duration::from_millis(200));
    let ranges = central.ranges();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    assert_eq!(
        resumed_at(&ranges[1]),
        100_000,
        "every byte received is kept"
    );
    assert!(is_cached(&cache).await);
    assert_eq!(incomplete(dir.path()), 0);
    // From the blob now: the central is not asked again.
    let (again, err) = download(&cache).await;
    assert!(err.is_none() && again == *central.data);
    assert_eq!(central.ranges().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_stalls_each_resume_from_where_the_last_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(
        &[
            Answer::StallAfter(50_000),
            Answer::StallAfter(70_000),
            Answer::StallAfter(0),
            Answer::StallAfter(1),
        ],
        None,
    )
    .await;
    // Two attempts in a row without a byte are allowed: the third answer's stall
    // after 0 bytes is one, then a byte arrives and the count starts again.
    let cache = edge(&central, 2, dir.path()).await;
    let (body, err) = download(&cache).await;
    assert!(err.is_none(), "{err:?}");
    assert!(body == *central.data);
    let at: Vec<usize> = central.ranges()[1..].iter().map(resumed_at).collect();
    assert_eq!(at, [50_000, 120_000, 120_000, 120_001]);
    assert!(is_cached(&cache).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_joined_to_a_stalled_fill_see_one_continuous_body() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(120_000)], None).await;
    let cache = edge(&central, 2, dir.path()).await;
    let (a, b) = tokio::join!(download(&cache), download(&cache));
    for (body, err) in [a, b] {
        assert!(err.is_none(), "{err:?}");
        assert!(body == *central.data, "{} bytes", body.len());
    }
    assert_eq!(central.ranges().len(), 2, "one fill, one resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_stalled_for_good_cuts_the_body_then_a_later_request_refills() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(100_000)], Some(Answer::StallAfter(0))).await;
    let cache = edge(&central, 2, dir.path()).await;
    let started = Instant::now();
    let (body, err) = download(&cache).await;
    let took = started.elapsed();
    assert!(err.is_some(), "a cut body ends with an error");
    assert!(body.len() < SIZE, "never a complete-looking body");
    assert!(
        body[..] == central.data[..body.len()],
        "what arrived is right"
    );
    // The first stall, then two resumes stalled at once: three waits of 200 ms and
    // back-offs of 20 and 40 ms.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(central.ranges().len(), 3, "{:?}", central.ranges());
    assert!(!is_cached(&cache).await);
    assert_eq!(incomplete(dir.path()), 0, "the partial blob is removed");
    central.then(None);
    let (body, err) = download(&cache).await;
    assert!(err.is_none(), "{err:?}");
    assert!(body == *central.data);
    assert!(is_cached(&cache).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resume_attempts_a_stall_cuts_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(100_000)], None).await;
    let cache = edge(&central, 0, dir.path()).await;
    let (body, err) = download(&cache).await;
    assert!(err.is_some() && body.len() < SIZE);
    assert_eq!(central.ranges().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_that_ignores_range_sends_it_all_and_the_prefix_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(100_000), Answer::IgnoreRange], None).await;
    let cache = edge(&central, 2, dir.path()).await;
    let (body, err) = download(&cache).await;
    assert!(err.is_none(), "{err:?}");
    assert!(body == *central.data);
    assert_eq!(resumed_at(&central.ranges()[1]), 100_000);
    assert!(is_cached(&cache).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_range_restarts_from_the_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(100_000), Answer::RefuseRange], None).await;
    let cache = edge(&central, 2, dir.path()).await;
    let (body, err) = download(&cache).await;
    assert!(err.is_none(), "{err:?}");
    assert!(body == *central.data);
    let ranges = central.ranges();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert_eq!(resumed_at(&ranges[1]), 100_000);
    assert_eq!(ranges[2], None, "then the whole image");
    assert!(is_cached(&cache).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_bytes_that_do_not_match_fail_verification_and_are_never_served_whole() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::StallAfter(100_000), Answer::Corrupt], None).await;
    let cache = edge(&central, 2, dir.path()).await;
    let (body, err) = download(&cache).await;
    assert!(err.is_some(), "a body failing verification is cut");
    assert!(body.len() < SIZE, "{} bytes", body.len());
    assert!(!is_cached(&cache).await);
    assert_eq!(incomplete(dir.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_on_a_miss_is_exact_when_the_central_ignores_range() {
    let dir = tempfile::tempdir().unwrap();
    let central = Central::start(&[Answer::IgnoreRange], None).await;
    let cache = edge(&central, 2, dir.path()).await;
    let id = ImageId::parse(ID).unwrap();
    let spec = image_cache_core::upstream::RangeSpec::From {
        first: 1000,
        last: Some(1999),
    };
    let data = cache
        .data(&id, Some(spec), &RequestContext::admin())
        .await
        .unwrap();
    let chunks: Vec<Bytes> = data
        .stream
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(chunks.concat() == central.data[1000..2000]);
}

#[test]
fn the_read_timeout_and_resumes_are_configured_with_units() {
    use glance_proto::config::EdgeConfig;
    let base = "central_url = \"http://127.0.0.1:9292\"\ncache_dir = \"/tmp/x\"\n";
    let c = EdgeConfig::from_toml(base).unwrap();
    assert_eq!(c.read_timeout, None, "the response_timeout applies");
    assert_eq!(c.fill_resume_attempts, 3);
    assert_eq!(c.fill_resume_backoff, Duration::from_secs(1));
    let c = EdgeConfig::from_toml(&format!(
        "{base}read_timeout = \"1500ms\"\nfill_resume_attempts = 0\nfill_resume_backoff = 2\n"
    ))
    .unwrap();
    assert_eq!(c.read_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(c.fill_resume_attempts, 0);
    assert_eq!(c.fill_resume_backoff, Duration::from_secs(2));
    let zero = EdgeConfig::from_toml(&format!("{base}read_timeout = \"0s\"\n")).unwrap_err();
    assert!(zero.to_string().contains("read_timeout"), "{zero}");
    let bad = EdgeConfig::from_toml(&format!("{base}read_timeout = \"soon\"\n")).unwrap_err();
    assert!(bad.to_string().contains("soon"), "{bad}");
}
