//! An in-process fake Swift cluster: a real hyper HTTP/1.1 server on `127.0.0.1:0`
//! inside the test process, its state in memory behind a mutex.
//!
//! It speaks the parts of Swift the federation proxy uses: tempauth (`/auth/v1.0`),
//! accounts, containers and objects (listings with `limit`, `marker`, `end_marker`,
//! `prefix`, `delimiter`, `reverse`; single byte ranges; copies within the cluster), the
//! symlink middleware (followed on this cluster only, a missing target is a 404 with
//! `Content-Location`), `/info`, `/healthcheck` and `/recon/diskusage`.
//!
//! Test controls: a request log, [`FakeCluster::forget_tokens`],
//! [`FakeCluster::set_down`] (connections are closed without an answer),
//! [`FakeCluster::shutdown`] (the port stops listening), [`FakeCluster::set_delay`],
//! and direct helpers that create containers and objects behind the proxy's back.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The user every fake cluster knows unless told otherwise.
pub const DEFAULT_USER: &str = "test:tester";
/// Its key.
pub const DEFAULT_KEY: &str = "testing";
/// The account of [`DEFAULT_USER`].
pub const DEFAULT_ACCOUNT: &str = "AUTH_test";
/// Seconds a token lives (`X-Auth-Token-Expires`).
pub const TOKEN_LIFETIME_SECS: u64 = 86_399;
/// Swift's `symloop_max`, as `/info` advertises it.
pub const SYMLOOP_MAX: usize = 2;
/// The only storage policy.
pub const POLICY: &str = "gold";

const MAX_LISTING: usize = 10_000;

/// One request as the cluster saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// The method.
    pub method: Method,
    /// The path, as sent (percent-encoded).
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Whether it carried `X-Auth-Token` or `X-Storage-Token` (valid or not).
    pub token: bool,
    /// All its headers.
    pub headers: HeaderMap,
    /// The status answered; `None` when the connection was closed instead.
    pub status: Option<StatusCode>,
}

/// Where a symlink points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkTarget {
    /// `X-Symlink-Target-Account`, when given.
    pub account: Option<String>,
    /// The target container.
    pub container: String,
    /// The target object.
    pub object: String,
    /// `X-Symlink-Target-Etag` (a static link), when given.
    pub etag: Option<String>,
}

/// An object as stored.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The data.
    pub body: Bytes,
    /// `Content-Type`.
    pub content_type: String,
    /// MD5 of the data, hex.
    pub etag: String,
    /// `x-object-meta-*` headers (lower-case names) and their values.
    pub meta: BTreeMap<String, String>,
    /// Set for a symlink.
    pub symlink: Option<SymlinkTarget>,
    /// When it was written (seconds since the epoch).
    pub timestamp: f64,
}

/// A container as stored.
#[derive(Debug, Clone, Default)]
pub struct StoredContainer {
    /// Metadata headers (lower-case names): `x-container-meta-*`, `x-versions-location`,
    /// `x-history-location`, `x-container-read`, …
    pub meta: BTreeMap<String, String>,
    /// The objects by name.
    pub objects: BTreeMap<String, StoredObject>,
    /// When it was created.
    pub timestamp: f64,
}

impl StoredContainer {
    fn bytes(&self) -> u64 {
        self.objects.values().map(|o| o.body.len() as u64).sum()
    }
}

#[derive(Debug, Default)]
struct AccountState {
    meta: BTreeMap<String, String>,
    containers: BTreeMap<String, StoredContainer>,
}

#[derive(Debug)]
struct State {
    users: HashMap<String, String>,
    /// Token → the account it was issued for.
    tokens: HashMap<String, String>,
    accounts: BTreeMap<String, AccountState>,
    log: Vec<LoggedRequest>,
    down: bool,
    delay: Duration,
    disk: (u64, u64),
    /// `bulk_delete.max_deletes_per_request` advertised in `/info`, if any.
    bulk_delete_max: Option<u64>,
}

impl State {
    fn account(&mut self, name: &str) -> &mut AccountState {
        self.accounts.entry(name.to_owned()).or_default()
    }

    fn container(&self, account: &str, container: &str) -> Option<&StoredContainer> {
        self.accounts.get(account)?.containers.get(container)
    }

    fn container_mut(&mut self, account: &str, container: &str) -> Option<&mut StoredContainer> {
        self.accounts
            .get_mut(account)?
            .containers
            .get_mut(container)
    }

    fn object(&self, account: &str, container: &str, object: &str) -> Option<&StoredObject> {
        self.container(account, container)?.objects.get(object)
    }
}

#[derive(Debug)]
struct Inner {
    name: String,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error a service returns to make hyper close the connection without an answer.
#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the fake cluster is down")
    }
}

impl std::error::Error for Down {}

/// A running fake cluster. Cheap to clone: clones share the cluster.
#[derive(Debug, Clone)]
pub struct FakeCluster {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl FakeCluster {
    /// Starts a cluster named `name` that knows [`DEFAULT_USER`].
    pub async fn start(name: &str) -> Self {
        Self::start_with_users(name, &[(DEFAULT_USER, DEFAULT_KEY)]).await
    }

    /// Starts a cluster named `name` that knows `users` (`account:user`, key).
    pub async fn start_with_users(name: &str, users: &[(&str, &str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            state: Mutex::new(State {
                users: users
                    .iter()
                    .map(|(u, k)| ((*u).to_owned(), (*k).to_owned()))
                    .collect(),
                tokens: HashMap::new(),
                accounts: BTreeMap::new(),
                log: Vec::new(),
                down: false,
                delay: Duration::ZERO,
                disk: (1 << 40, 1 << 30),
                bulk_delete_max: None,
            }),
        });
        let task = tokio::spawn(serve(listener, inner.clone()));
        Self {
            inner,
            addr,
            server: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> url::Url {
        format!("http://{}", self.addr)
            .parse()
            .expect("a loopback URL")
    }

    // ----- controls -----------------------------------------------------------------

    /// Every request seen so far (oldest first).
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.inner.lock().log.clone()
    }

    /// Empties the request log.
    pub fn clear_log(&self) {
        self.inner.lock().log.clear();
    }

    /// How many logged requests had this method and path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.inner
            .lock()
            .log
            .iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .count()
    }

    /// How many logged requests had a path under `prefix` (any method).
    pub fn count_under(&self, prefix: &str) -> usize {
        self.inner
            .lock()
            .log
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .count()
    }

    /// How many times somebody logged in (`/auth/v1.0`).
    pub fn logins(&self) -> usize {
        self.count("GET", "/auth/v1.0")
    }

    /// Makes every issued token invalid (as if the cluster's token cache was flushed).
    pub fn forget_tokens(&self) {
        self.inner.lock().tokens.clear();
    }

    /// While down, every connection is closed without an answer (the port still
    /// accepts).
    pub fn set_down(&self, down: bool) {
        self.inner.lock().down = down;
    }

    /// Delays every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().delay = delay;
    }

    /// Advertises Swift's bulk middleware in `/info` with this `max_deletes_per_request`
    /// (`None`: not at all, the default). The fake does no bulk deletes itself.
    pub fn set_bulk_delete_max(&self, max: Option<u64>) {
        self.inner.lock().bulk_delete_max = max;
    }

    /// What `/recon/diskusage` reports: one device of `size` bytes with `used` used.
    pub fn set_disk_usage(&self, size: u64, used: u64) {
        self.inner.lock().disk = (size, used);
    }

    /// Stops listening for good: the accept loop and every open connection are aborted
    /// and the listener dropped, so connecting is refused.
    pub async fn shutdown(&self) {
        let task = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            // Wait until the listener and connections are really gone.
            let _ = task.await;
        }
    }

    // ----- direct access to the state ---------------------------------------------------

    /// Creates a container behind the proxy's back (as an existing cluster would hold
    /// it); no-op if it exists.
    pub fn put_container_direct(&self, account: &str, container: &str) {
        let mut s = self.inner.lock();
        s.account(account)
            .containers
            .entry(container.to_owned())
            .or_insert_with(|| StoredContainer {
                timestamp: now(),
                ..StoredContainer::default()
            });
    }

    /// Removes a container behind the proxy's back (as if it was never created here).
    pub fn remove_container_direct(&self, account: &str, container: &str) {
        self.inner
            .lock()
            .account(account)
            .containers
            .remove(container);
    }

    /// Writes an object behind the proxy's back (its container is created if missing).
    pub fn put_object_direct(&self, account: &str, container: &str, object: &str, body: &[u8]) {
        self.put_container_direct(account, container);
        let mut s = self.inner.lock();
        if let Some(c) = s.container_mut(account, container) {
            c.objects.insert(
                object.to_owned(),
                StoredObject {
                    body: Bytes::copy_from_slice(body),
                    content_type: "application/octet-stream".into(),
                    etag: md5_hex(body),
                    meta: BTreeMap::new(),
                    symlink: None,
                    timestamp: now(),
                },
            );
        }
    }

    /// Changes an object's `Content-Type` behind the proxy's back.
    pub fn set_content_type_direct(&self, account: &str, container: &str, object: &str, ct: &str) {
        let mut s = self.inner.lock();
        if let Some(o) = s
            .container_mut(account, container)
            .and_then(|c| c.objects.get_mut(object))
        {
            o.content_type = ct.to_owned();
        }
    }

    /// Whether the container exists here.
    pub fn has_container(&self, account: &str, container: &str) -> bool {
        self.inner.lock().container(account, container).is_some()
    }

    /// A copy of the container, if it exists here.
    pub fn container(&self, account: &str, container: &str) -> Option<StoredContainer> {
        self.inner.lock().container(account, container).cloned()
    }

    /// A copy of the object, if it exists here.
    pub fn object(&self, account: &str, container: &str, object: &str) -> Option<StoredObject> {
        self.inner
            .lock()
            .object(account, container, object)
            .cloned()
    }

    /// The account's `x-account-meta-*` headers.
    pub fn account_meta(&self, account: &str) -> BTreeMap<String, String> {
        self.inner
            .lock()
            .accounts
            .get(account)
            .map(|a| a.meta.clone())
            .unwrap_or_default()
    }
}

// ----- the server -------------------------------------------------------------------------

async fn serve(listener: TcpListener, inner: Arc<Inner>) {
    // Connections live in this set: aborting this task aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if inner.lock().down {
                    drop(stream);
                    continue;
                }
                let inner = inner.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| answer(inner.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Down> {
    let delay = inner.lock().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = req.into_parts();
    let mut entry = LoggedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        token: token_of(&parts.headers).is_some(),
        headers: parts.headers.clone(),
        status: None,
    };
    if inner.lock().down {
        inner.lock().log.push(entry);
        return Err(Down);
    }
    let head = parts.method == Method::HEAD;
    let out = route(&inner, parts, body).await;
    entry.status = Some(out.status);
    inner.lock().log.push(entry);
    Ok(out.into_response(head))
}

fn token_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-auth-token")
        .or_else(|| headers.get("x-storage-token"))
        .and_then(|v| v.to_str().ok())
}

/// A response under construction.
#[derive(Debug)]
struct Out {
    status: StatusCode,
    /// Set in order; a later value for a name replaces an earlier one.
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Out {
    fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn header(mut self, name: &str, value: impl ToString) -> Self {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value.to_string()),
        ) {
            self.headers.push((n, v));
        }
        self
    }

    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The response; a HEAD answer keeps the `Content-Length` of the body it omits.
    fn into_response(self, head: bool) -> Response<Full<Bytes>> {
        let len = self.body.len();
        let mut r = Response::new(Full::new(if head { Bytes::new() } else { self.body }));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        for (n, v) in self.headers {
            h.insert(n, v);
        }
        if self.status != StatusCode::NO_CONTENT {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        r
    }
}

/// Swift's error answer: a short HTML body.
fn error(status: StatusCode) -> Out {
    let (title, text) = match status.as_u16() {
        400 => ("Bad Request", "The server could not comply with the request since it is either malformed or otherwise incorrect."),
        401 => ("Unauthorized", "This server could not verify that you are authorized to access the document you requested."),
        403 => ("Forbidden", "Access was denied to this resource."),
        404 => ("Not Found", "The resource could not be found."),
        405 => ("Method Not Allowed", "The method is not allowed for this resource."),
        409 => ("Conflict", "There was a conflict when trying to complete your request."),
        412 => ("Precondition Failed", "A precondition for this request was not met."),
        416 => ("Requested Range Not Satisfiable", "The Range requested is not available."),
        _ => ("Error", "The request could not be completed."),
    };
    message(
        status,
        format!("<html><h1>{title}</h1><p>{text}</p></html>"),
    )
}

fn message(status: StatusCode, text: impl Into<String>) -> Out {
    Out::new(status)
        .header("content-type", "text/html; charset=UTF-8")
        .body(text.into())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn x_timestamp(t: f64) -> String {
    format!("{t:.5}")
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Year, month, day, hour, minute, second and weekday (0 = Monday) of a Unix time.
fn civil(secs: u64) -> (i64, u64, u64, u64, u64, u64, usize) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    // 1970-01-01 was a Thursday.
    let weekday = ((days + 3).rem_euclid(7)) as usize;
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, weekday)
}

fn http_date(t: f64) -> String {
    let (y, m, d, hh, mm, ss, wd) = civil(t as u64);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} GMT",
        DAYS[wd],
        MONTHS[(m - 1) as usize]
    )
}

fn iso_date(t: f64) -> String {
    let (y, m, d, hh, mm, ss, _) = civil(t as u64);
    let micros = ((t.fract()) * 1e6) as u64;
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{micros:06}")
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn query_param(parts: &Parts, key: &str) -> Option<String> {
    let q = parts.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// `c/o` from a header such as `X-Copy-From`, `Destination` or `X-Symlink-Target`.
fn container_object(value: &str) -> Option<(String, String)> {
    let decoded = decode(value.trim());
    let (c, o) = decoded.trim_start_matches('/').split_once('/')?;
    (!c.is_empty() && !o.is_empty()).then(|| (c.to_owned(), o.to_owned()))
}

// ----- routing --------------------------------------------------------------------------

/// What a `/v1` path names.
enum Target {
    Account(String),
    Container(String, String),
    Object(String, String, String),
}

fn parse_v1(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v1/")?;
    let mut it = rest.splitn(3, '/');
    let account = decode(it.next().filter(|a| !a.is_empty())?);
    let container = it.next().filter(|c| !c.is_empty()).map(decode);
    let object = it.next().filter(|o| !o.is_empty()).map(decode);
    Some(match (container, object) {
        (None, _) => Target::Account(account),
        (Some(c), None) => Target::Container(account, c),
        (Some(c), Some(o)) => Target::Object(account, c, o),
    })
}

async fn route(inner: &Inner, parts: Parts, body: Incoming) -> Out {
    let path = parts.uri.path().to_owned();
    match path.as_str() {
        "/auth/v1.0" | "/auth/v1.0/" => return auth(inner, &parts),
        "/info" => return info_with_bulk(inner, &parts),
        "/healthcheck" => return Out::new(StatusCode::OK).body("OK"),
        "/recon/diskusage" => {
            let (size, used) = inner.lock().disk;
            let v = json!([{
                "device": "sdb1", "mounted": true,
                "size": size, "used": used, "avail": size.saturating_sub(used),
            }]);
            return Out::new(StatusCode::OK)
                .header("content-type", "application/json")
                .body(v.to_string());
        }
        _ => {}
    }
    let Some(target) = parse_v1(&path) else {
        return error(StatusCode::NOT_FOUND);
    };
    let account = match &target {
        Target::Account(a) | Target::Container(a, _) | Target::Object(a, _, _) => a.clone(),
    };
    // Tempauth: a token is always needed; it must be one we issued, for this account.
    {
        let s = inner.lock();
        if token_of(&parts.headers).is_none() {
            if let Some(out) = staticweb_redirect(&s, &parts, &target) {
                return out;
            }
        }
        match token_of(&parts.headers).and_then(|t| s.tokens.get(t)) {
            None => return error(StatusCode::UNAUTHORIZED),
            Some(a) if *a != account && !acl_allows(&s, a, &parts.method, &target) => {
                return error(StatusCode::FORBIDDEN)
            }
            Some(_) => {}
        }
    }
    // Authorized: now the body may be read.
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST),
    };
    let mut s = inner.lock();
    match target {
        Target::Account(a) => account_request(&mut s, &parts, &a),
        Target::Container(a, c) => container_request(&mut s, &parts, &a, &c),
        Target::Object(a, c, o) => object_request(&mut s, &parts, &a, &c, &o, body),
    }
}

fn auth(inner: &Inner, parts: &Parts) -> Out {
    if parts.method != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED);
    }
    let user = header(parts, "x-auth-user").or_else(|| header(parts, "x-storage-user"));
    let key = header(parts, "x-auth-key").or_else(|| header(parts, "x-storage-pass"));
    let (Some(user), Some(key)) = (user, key) else {
        return error(StatusCode::UNAUTHORIZED);
    };
    let mut s = inner.lock();
    if s.users.get(user).map(String::as_str) != Some(key) {
        return error(StatusCode::UNAUTHORIZED);
    }
    let Some((acct, _)) = user.split_once(':') else {
        return error(StatusCode::UNAUTHORIZED);
    };
    let account = format!("AUTH_{acct}");
    let token = format!("AUTH_tk{}", random_hex());
    s.tokens.insert(token.clone(), account.clone());
    s.account(&account);
    drop(s);
    let host = header(parts, "host").unwrap_or("127.0.0.1");
    let url = format!("http://{host}/v1/{account}");
    Out::new(StatusCode::OK)
        .header("x-auth-token", &token)
        .header("x-storage-token", &token)
        .header("x-storage-url", &url)
        .header("x-auth-token-expires", TOKEN_LIFETIME_SECS)
        .header("content-type", "application/json; charset=UTF-8")
        .body(json!({"storage": {"default": "local", "local": url}}).to_string())
}

fn info(parts: &Parts) -> Out {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED);
    }
    let v = json!({
        "swift": {
            "version": "2.35.0",
            "max_file_size": 5_368_709_122_u64,
            "max_meta_name_length": 128,
            "max_meta_value_length": 256,
            "max_meta_count": 90,
            "max_object_name_length": 1024,
            "container_listing_limit": MAX_LISTING,
            "account_listing_limit": MAX_LISTING,
            "max_container_name_length": 256,
            "max_account_name_length": 256,
            "policies": [{"name": POLICY, "aliases": POLICY, "default": true}],
        },
        "symlink": {"symloop_max": SYMLOOP_MAX, "static_links": true},
        "tempauth": {"account_acls": true},
    });
    Out::new(StatusCode::OK)
        .header("content-type", "application/json; charset=UTF-8")
        .body(v.to_string())
}

// ----- metadata -------------------------------------------------------------------------

/// Applies the metadata headers of a request: `prefix*` and the `extra` names are set
/// (an empty value removes), `x-remove-<name>` removes.
fn apply_meta(meta: &mut BTreeMap<String, String>, parts: &Parts, prefix: &str, extra: &[&str]) {
    for (name, value) in &parts.headers {
        let n = name.as_str();
        let v = value.to_str().unwrap_or_default().trim();
        if let Some(rest) = n.strip_prefix("x-remove-") {
            let target = format!("x-{rest}");
            if target.starts_with(prefix) || extra.contains(&target.as_str()) {
                meta.remove(&target);
            }
        } else if n.starts_with(prefix) || extra.contains(&n) {
            if v.is_empty() {
                meta.remove(n);
            } else {
                meta.insert(n.to_owned(), v.to_owned());
            }
        }
    }
}

const CONTAINER_EXTRA: &[&str] = &[
    "x-versions-location",
    "x-history-location",
    "x-container-read",
    "x-container-write",
    "x-container-sync-to",
    "x-container-sync-key",
];

// ----- listings -------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Plain,
}

struct ListQuery {
    limit: usize,
    marker: Option<String>,
    end_marker: Option<String>,
    prefix: String,
    delimiter: Option<String>,
    reverse: bool,
    format: Format,
}

impl ListQuery {
    fn parse(parts: &Parts) -> Result<Self, Out> {
        let limit = match query_param(parts, "limit") {
            None => MAX_LISTING,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if n <= MAX_LISTING => n,
                _ => {
                    return Err(message(
                        StatusCode::PRECONDITION_FAILED,
                        "Value of limit must be a positive integer not exceeding 10000",
                    ))
                }
            },
        };
        let format = match query_param(parts, "format").as_deref() {
            Some("json") => Format::Json,
            Some(_) => Format::Plain,
            None if header(parts, "accept").is_some_and(|a| a.contains("application/json")) => {
                Format::Json
            }
            None => Format::Plain,
        };
        let reverse = query_param(parts, "reverse").is_some_and(|r| {
            matches!(r.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
        });
        Ok(Self {
            limit,
            marker: query_param(parts, "marker").filter(|m| !m.is_empty()),
            end_marker: query_param(parts, "end_marker").filter(|m| !m.is_empty()),
            prefix: query_param(parts, "prefix").unwrap_or_default(),
            delimiter: query_param(parts, "delimiter").filter(|d| !d.is_empty()),
            reverse,
            format,
        })
    }

    /// One page of `names` (sorted ascending): the selected names, or subdirectories
    /// (`Err`) where a delimiter folds them.
    fn page<'a>(
        &self,
        names: impl DoubleEndedIterator<Item = &'a String>,
    ) -> Vec<Result<&'a String, String>> {
        let names: Box<dyn Iterator<Item = &'a String>> = if self.reverse {
            Box::new(names.rev())
        } else {
            Box::new(names)
        };
        let mut out: Vec<Result<&'a String, String>> = Vec::new();
        for name in names {
            if out.len() >= self.limit {
                break;
            }
            let (after_marker, before_end) = if self.reverse {
                (
                    self.marker.as_ref().is_none_or(|m| name < m),
                    self.end_marker.as_ref().is_none_or(|m| name > m),
                )
            } else {
                (
                    self.marker.as_ref().is_none_or(|m| name > m),
                    self.end_marker.as_ref().is_none_or(|m| name < m),
                )
            };
            if !after_marker || !before_end || !name.starts_with(&self.prefix) {
                continue;
            }
            let sub = self.delimiter.as_ref().and_then(|d| {
                name[self.prefix.len()..]
                    .find(d.as_str())
                    .map(|i| name[..self.prefix.len() + i + d.len()].to_owned())
            });
            match sub {
                Some(sub) => {
                    let repeat = matches!(out.last(), Some(Err(last)) if *last == sub);
                    if !repeat && self.marker.as_ref() != Some(&sub) {
                        out.push(Err(sub));
                    }
                }
                None => out.push(Ok(name)),
            }
        }
        out
    }
}

fn listing_out(q: &ListQuery, names: Vec<String>, json_items: Vec<Value>) -> Out {
    match q.format {
        Format::Json => Out::new(StatusCode::OK)
            .header("content-type", "application/json; charset=utf-8")
            .body(Value::Array(json_items).to_string()),
        Format::Plain if names.is_empty() => Out::new(StatusCode::NO_CONTENT),
        Format::Plain => {
            let mut text = names.join("\n");
            text.push('\n');
            Out::new(StatusCode::OK)
                .header("content-type", "text/plain; charset=utf-8")
                .body(text)
        }
    }
}

// ----- accounts -------------------------------------------------------------------------

fn account_headers(mut out: Out, a: &AccountState) -> Out {
    let containers = a.containers.len();
    let objects: usize = a.containers.values().map(|c| c.objects.len()).sum();
    let bytes: u64 = a.containers.values().map(StoredContainer::bytes).sum();
    out = out
        .header("x-account-container-count", containers)
        .header("x-account-object-count", objects)
        .header("x-account-bytes-used", bytes)
        .header("x-account-storage-policy-gold-container-count", containers)
        .header("x-account-storage-policy-gold-object-count", objects)
        .header("x-account-storage-policy-gold-bytes-used", bytes)
        .header("x-timestamp", x_timestamp(now()));
    for (k, v) in &a.meta {
        out = out.header(k, v);
    }
    out
}

fn account_request(s: &mut State, parts: &Parts, account: &str) -> Out {
    match parts.method {
        Method::HEAD => account_headers(Out::new(StatusCode::NO_CONTENT), s.account(account)),
        Method::GET => {
            let q = match ListQuery::parse(parts) {
                Ok(q) => q,
                Err(e) => return e,
            };
            let a = s.account(account);
            let page = q.page(a.containers.keys());
            let mut names = Vec::new();
            let mut items = Vec::new();
            for entry in page {
                match entry {
                    Ok(name) => {
                        let c = &a.containers[name];
                        names.push(name.clone());
                        items.push(json!({
                            "name": name,
                            "count": c.objects.len(),
                            "bytes": c.bytes(),
                            "last_modified": iso_date(c.timestamp),
                        }));
                    }
                    Err(sub) => {
                        items.push(json!({ "subdir": sub }));
                        names.push(sub);
                    }
                }
            }
            let out = listing_out(&q, names, items);
            account_headers(out, a)
        }
        Method::POST => {
            apply_meta(&mut s.account(account).meta, parts, "x-account-meta-", &[]);
            Out::new(StatusCode::NO_CONTENT)
        }
        // Swift's answer to a CORS preflight without Origin (from a real 2.38 cluster).
        Method::OPTIONS => Out::new(StatusCode::OK)
            .header("allow", "GET, HEAD, POST, PUT, OPTIONS, DELETE")
            .header("content-length", 0),
        _ => error(StatusCode::METHOD_NOT_ALLOWED),
    }
}

// ----- containers -----------------------------------------------------------------------

fn container_headers(mut out: Out, c: &StoredContainer) -> Out {
    out = out
        .header("x-container-object-count", c.objects.len())
        .header("x-container-bytes-used", c.bytes())
        .header("x-timestamp", x_timestamp(c.timestamp))
        .header("x-put-timestamp", x_timestamp(c.timestamp))
        .header("x-storage-policy", POLICY)
        .header("last-modified", http_date(c.timestamp));
    for (k, v) in &c.meta {
        out = out.header(k, v);
    }
    out
}

fn container_request(s: &mut State, parts: &Parts, account: &str, container: &str) -> Out {
    match parts.method {
        Method::PUT => {
            // An empty X-Storage-Policy is the default policy, as in Swift.
            if let Some(p) = header(parts, "x-storage-policy").filter(|p| !p.trim().is_empty()) {
                if !p.trim().eq_ignore_ascii_case(POLICY) {
                    return message(StatusCode::BAD_REQUEST, format!("Invalid X-Storage-Policy '{p}'"));
                }
            }
            let a = s.account(account);
            let created = !a.containers.contains_key(container);
            let c = a
                .containers
                .entry(container.to_owned())
                .or_insert_with(|| StoredContainer {
                    timestamp: now(),
                    ..StoredContainer::default()
                });
            apply_meta(&mut c.meta, parts, "x-container-meta-", CONTAINER_EXTRA);
            Out::new(if created {
                StatusCode::CREATED
            } else {
                StatusCode::ACCEPTED
            })
            .header("content-type", "text/html; charset=UTF-8")
        }
        Method::POST => match s.container_mut(account, container) {
            None => error(StatusCode::NOT_FOUND),
            Some(c) => {
                apply_meta(&mut c.meta, parts, "x-container-meta-", CONTAINER_EXTRA);
                Out::new(StatusCode::NO_CONTENT)
            }
        },
        Method::DELETE => match s.container(account, container) {
            None => error(StatusCode::NOT_FOUND),
            Some(c) if !c.objects.is_empty() => message(
                StatusCode::CONFLICT,
                "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>",
            ),
            Some(_) => {
                s.account(account).containers.remove(container);
                Out::new(StatusCode::NO_CONTENT)
            }
        },
        Method::HEAD => match s.container(account, container) {
            None => error(StatusCode::NOT_FOUND),
            Some(c) => container_headers(Out::new(StatusCode::NO_CONTENT), c),
        },
        Method::GET => {
            let q = match ListQuery::parse(parts) {
                Ok(q) => q,
                Err(e) => return e,
            };
            let Some(c) = s.container(account, container) else {
                return error(StatusCode::NOT_FOUND);
            };
            let mut names = Vec::new();
            let mut items = Vec::new();
            for entry in q.page(c.objects.keys()) {
                match entry {
                    Ok(name) => {
                        let o = &c.objects[name];
                        let mut item = json!({
                            "name": name,
                            "hash": o.etag,
                            "bytes": o.body.len(),
                            "content_type": o.content_type,
                            "last_modified": iso_date(o.timestamp),
                        });
                        if let Some(t) = &o.symlink {
                            item["symlink_path"] = Value::String(format!(
                                "/v1/{}/{}/{}",
                                t.account.as_deref().unwrap_or(account),
                                t.container,
                                t.object
                            ));
                        }
                        names.push(name.clone());
                        items.push(item);
                    }
                    Err(sub) => {
                        items.push(json!({ "subdir": sub }));
                        names.push(sub);
                    }
                }
            }
            let out = listing_out(&q, names, items);
            container_headers(out, c)
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED),
    }
}

// ----- objects ----------------------------------------------------------------------------

fn object_headers(mut out: Out, o: &StoredObject) -> Out {
    out = out
        .header("content-type", &o.content_type)
        .header("etag", &o.etag)
        .header("x-timestamp", x_timestamp(o.timestamp))
        .header("last-modified", http_date(o.timestamp))
        .header("accept-ranges", "bytes");
    for (k, v) in &o.meta {
        out = out.header(k, v);
    }
    if let Some(t) = &o.symlink {
        out = out.header("x-symlink-target", format!("{}/{}", t.container, t.object));
        if let Some(a) = &t.account {
            out = out.header("x-symlink-target-account", a);
        }
        if let Some(e) = &t.etag {
            out = out.header("x-symlink-target-etag", e);
        }
    }
    out
}

/// Follows a symlink on this cluster as Swift's symlink middleware does: at most
/// [`SYMLOOP_MAX`] links; `Ok((account, container, object))` of the final object, or
/// the answer (404 with `Content-Location`, 409 for a loop or an etag mismatch).
fn resolve(
    s: &State,
    account: &str,
    link: &SymlinkTarget,
) -> Result<(String, String, String), Out> {
    let mut current = link.clone();
    let mut acct = account.to_owned();
    for hop in 1..=SYMLOOP_MAX {
        acct = current.account.clone().unwrap_or(acct);
        let location = format!("/v1/{acct}/{}/{}", current.container, current.object);
        let Some(o) = s.object(&acct, &current.container, &current.object) else {
            return Err(error(StatusCode::NOT_FOUND).header("content-location", location));
        };
        if let Some(etag) = &current.etag {
            if *etag != o.etag {
                return Err(message(
                    StatusCode::CONFLICT,
                    format!(
                        "Object Etag {:?} does not match X-Symlink-Target-Etag header {etag:?}",
                        o.etag
                    ),
                )
                .header("content-location", location));
            }
        }
        match &o.symlink {
            None => return Ok((acct, current.container, current.object)),
            Some(next) if hop < SYMLOOP_MAX => current = next.clone(),
            Some(_) => {
                return Err(message(
                    StatusCode::CONFLICT,
                    format!("Too many levels of symbolic links, maximum allowed is {SYMLOOP_MAX}"),
                ))
            }
        }
    }
    Err(error(StatusCode::CONFLICT))
}

/// A single `bytes=` range over `len` bytes: `Ok(None)` for no (or an unsupported
/// multi-) range, `Err` when unsatisfiable.
fn byte_range(value: Option<&str>, len: usize) -> Result<Option<(usize, usize)>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<usize>(), b.parse::<usize>()) {
        (Ok(s), Ok(e)) if s <= e => (s, e.min(len.saturating_sub(1))),
        (Ok(s), Err(_)) if b.is_empty() => (s, len.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return Ok(None),
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn read_object(parts: &Parts, o: &StoredObject, location: Option<String>) -> Out {
    if let Some(out) = preconditions(parts, o) {
        return out;
    }
    let mut out = match byte_range(header(parts, "range"), o.body.len()) {
        Err(()) => {
            return error(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("content-range", format!("bytes */{}", o.body.len()))
        }
        Ok(None) => object_headers(Out::new(StatusCode::OK), o).body(o.body.clone()),
        Ok(Some((start, end))) => object_headers(Out::new(StatusCode::PARTIAL_CONTENT), o)
            .header(
                "content-range",
                format!("bytes {start}-{end}/{}", o.body.len()),
            )
            .body(o.body.slice(start..=end)),
    };
    if let Some(l) = location {
        out = out.header("content-location", l);
    }
    out
}

/// The object a copy reads: the object itself, or what its link resolves to.
fn copy_source(
    s: &State,
    account: &str,
    container: &str,
    object: &str,
) -> Result<StoredObject, Out> {
    let o = s
        .object(account, container, object)
        .ok_or_else(|| error(StatusCode::NOT_FOUND))?;
    match &o.symlink {
        None => Ok(o.clone()),
        Some(link) => {
            let (a, c, n) = resolve(s, account, link)?;
            s.object(&a, &c, &n)
                .cloned()
                .ok_or_else(|| error(StatusCode::NOT_FOUND))
        }
    }
}

/// Writes a copy of `source` as Swift's copy middleware does: the source's data, content
/// type and `X-Object-Meta-*` (none with `X-Fresh-Metadata: true`), the request's own
/// headers taking precedence.
fn write_copy(
    s: &mut State,
    parts: &Parts,
    source: StoredObject,
    (account, container, object): (&str, &str, &str),
    copied_from: String,
) -> Out {
    let fresh = header(parts, "x-fresh-metadata").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut meta = if fresh { BTreeMap::new() } else { source.meta };
    apply_meta(&mut meta, parts, "x-object-meta-", OBJECT_EXTRA);
    let content_type = header(parts, "content-type").map_or(source.content_type, str::to_owned);
    let Some(c) = s.container_mut(account, container) else {
        return error(StatusCode::NOT_FOUND);
    };
    let stored = StoredObject {
        etag: source.etag,
        body: source.body,
        content_type,
        meta,
        symlink: None,
        timestamp: now(),
    };
    let out = Out::new(StatusCode::CREATED)
        .header("etag", &stored.etag)
        .header("last-modified", http_date(stored.timestamp))
        .header("x-copied-from", copied_from)
        .header("content-type", "text/html; charset=UTF-8");
    c.objects.insert(object.to_owned(), stored);
    out
}

fn object_request(
    s: &mut State,
    parts: &Parts,
    account: &str,
    container: &str,
    object: &str,
    body: Bytes,
) -> Out {
    match parts.method {
        Method::PUT => put_object(s, parts, account, container, object, body),
        Method::GET | Method::HEAD => {
            let Some(o) = s.object(account, container, object) else {
                return error(StatusCode::NOT_FOUND);
            };
            let link_itself = query_param(parts, "symlink").as_deref() == Some("get");
            match &o.symlink {
                Some(link) if !link_itself => match resolve(s, account, link) {
                    Err(out) => out,
                    Ok((a, c, n)) => match s.object(&a, &c, &n) {
                        Some(target) => {
                            read_object(parts, target, Some(format!("/v1/{a}/{c}/{n}")))
                        }
                        None => error(StatusCode::NOT_FOUND),
                    },
                },
                _ => read_object(parts, o, None),
            }
        }
        Method::POST => {
            let content_type = header(parts, "content-type").map(str::to_owned);
            let Some(o) = s
                .container_mut(account, container)
                .and_then(|c| c.objects.get_mut(object))
            else {
                return error(StatusCode::NOT_FOUND);
            };
            // POST replaces the user metadata.
            o.meta.clear();
            apply_meta(&mut o.meta, parts, "x-object-meta-", &[]);
            if let Some(ct) = content_type {
                o.content_type = ct;
            }
            message(
                StatusCode::ACCEPTED,
                "<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>",
            )
        }
        Method::DELETE => match s
            .container_mut(account, container)
            .and_then(|c| c.objects.remove(object))
        {
            Some(_) => Out::new(StatusCode::NO_CONTENT),
            None => error(StatusCode::NOT_FOUND),
        },
        _ if parts.method.as_str() == "COPY" => {
            let Some((dc, dobj)) = header(parts, "destination").and_then(container_object) else {
                return message(
                    StatusCode::PRECONDITION_FAILED,
                    "Destination header must be of the form <container name>/<object name>",
                );
            };
            let dacct =
                header(parts, "destination-account").map_or(account.to_owned(), str::to_owned);
            let source = match copy_source(s, account, container, object) {
                Ok(o) => o,
                Err(out) => return out,
            };
            write_copy(
                s,
                parts,
                source,
                (&dacct, &dc, &dobj),
                format!("{container}/{object}"),
            )
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED),
    }
}

fn put_object(
    s: &mut State,
    parts: &Parts,
    account: &str,
    container: &str,
    object: &str,
    body: Bytes,
) -> Out {
    if s.container(account, container).is_none() {
        return error(StatusCode::NOT_FOUND);
    }
    if header(parts, "if-none-match").is_some_and(|v| v.trim() == "*")
        && s.object(account, container, object).is_some()
    {
        return error(StatusCode::PRECONDITION_FAILED);
    }
    if let Some(from) = header(parts, "x-copy-from") {
        let Some((sc, so)) = container_object(from) else {
            return message(
                StatusCode::PRECONDITION_FAILED,
                "X-Copy-From header must be of the form <container name>/<object name>",
            );
        };
        let sacct = header(parts, "x-copy-from-account").map_or(account.to_owned(), str::to_owned);
        let source = match copy_source(s, &sacct, &sc, &so) {
            Ok(o) => o,
            Err(out) => return out,
        };
        return write_copy(
            s,
            parts,
            source,
            (account, container, object),
            format!("{sc}/{so}"),
        );
    }
    let symlink = match header(parts, "x-symlink-target") {
        None => None,
        Some(t) => {
            let Some((c, o)) = container_object(t) else {
                return message(
                    StatusCode::PRECONDITION_FAILED,
                    "X-Symlink-Target header must be of the form <container name>/<object name>",
                );
            };
            if !body.is_empty() {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Symlink requests require a zero byte body",
                );
            }
            let link = SymlinkTarget {
                account: header(parts, "x-symlink-target-account").map(str::to_owned),
                container: c,
                object: o,
                etag: header(parts, "x-symlink-target-etag")
                    .map(|e| e.trim_matches('"').to_owned()),
            };
            if link.etag.is_some() {
                // A static link is checked against its target, here, now.
                let acct = link.account.clone().unwrap_or_else(|| account.to_owned());
                match s.object(&acct, &link.container, &link.object) {
                    Some(target) if Some(&target.etag) == link.etag.as_ref() => {}
                    _ => return error(StatusCode::CONFLICT),
                }
            }
            Some(link)
        }
    };
    let mut meta = BTreeMap::new();
    apply_meta(&mut meta, parts, "x-object-meta-", OBJECT_EXTRA);
    let default_type = if symlink.is_some() {
        "application/symlink"
    } else {
        "application/octet-stream"
    };
    let stored = StoredObject {
        etag: md5_hex(&body),
        body,
        content_type: header(parts, "content-type")
            .unwrap_or(default_type)
            .to_owned(),
        meta,
        symlink,
        timestamp: now(),
    };
    let out = Out::new(StatusCode::CREATED)
        .header("etag", &stored.etag)
        .header("last-modified", http_date(stored.timestamp))
        .header("content-type", "text/html; charset=UTF-8");
    if let Some(c) = s.container_mut(account, container) {
        c.objects.insert(object.to_owned(), stored);
    }
    out
}

// ----- copies across clusters: headers, conditions, accounts, staticweb --------------------

/// Object headers Swift's object server keeps besides user metadata (its default
/// `allowed_headers`, and a DLO's `X-Object-Manifest`), kept with the metadata.
const OBJECT_EXTRA: &[&str] = &[
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-robots-tag",
    "x-delete-at",
    "x-object-manifest",
];

/// `If-Match` (412) and `If-None-Match` (304) against the object's ETag, as Swift
/// answers them on GET and HEAD.
fn preconditions(parts: &Parts, o: &StoredObject) -> Option<Out> {
    let matches = |v: &str| {
        v.split(',')
            .map(|t| t.trim().trim_matches('"'))
            .any(|t| t == "*" || t == o.etag)
    };
    if let Some(v) = header(parts, "if-match") {
        if !matches(v) {
            return Some(error(StatusCode::PRECONDITION_FAILED).header("etag", &o.etag));
        }
    }
    if let Some(v) = header(parts, "if-none-match") {
        if matches(v) {
            return Some(Out::new(StatusCode::NOT_MODIFIED).header("etag", &o.etag));
        }
    }
    None
}

/// Tempauth's container ACLs: `X-Container-Read` lets another account's user read the
/// container's objects, `X-Container-Write` write them (entries `account`,
/// `AUTH_account` or `account:user`).
fn acl_allows(s: &State, caller: &str, method: &Method, target: &Target) -> bool {
    let (account, container) = match target {
        Target::Object(a, c, _) => (a, c),
        Target::Container(a, c) if matches!(*method, Method::GET | Method::HEAD) => (a, c),
        _ => return false,
    };
    let acl = if matches!(*method, Method::GET | Method::HEAD) {
        "x-container-read"
    } else {
        "x-container-write"
    };
    let short = caller.strip_prefix("AUTH_").unwrap_or(caller);
    s.container(account, container)
        .and_then(|c| c.meta.get(acl))
        .is_some_and(|entries| {
            entries.split(',').map(str::trim).any(|e| {
                e == caller || e == short || e.split_once(':').is_some_and(|(a, _)| a == short)
            })
        })
}

/// Swift's staticweb: an anonymous GET of a container with `X-Container-Meta-Web-Index`
/// and no trailing slash is redirected, the `Location` built from the request's `Host`.
fn staticweb_redirect(s: &State, parts: &Parts, target: &Target) -> Option<Out> {
    let Target::Container(account, container) = target else {
        return None;
    };
    let c = s.container(account, container)?;
    if parts.method != Method::GET
        || !c.meta.contains_key("x-container-meta-web-index")
        || parts.uri.path().ends_with('/')
    {
        return None;
    }
    let host = header(parts, "host")?;
    Some(
        Out::new(StatusCode::MOVED_PERMANENTLY)
            .header("location", format!("http://{host}{}/", parts.uri.path())),
    )
}

impl FakeCluster {
    /// Lets `user` (`account:user`) log in with `key` from now on.
    pub fn add_user(&self, user: &str, key: &str) {
        self.inner
            .lock()
            .users
            .insert(user.to_owned(), key.to_owned());
    }
}

#[test]
fn dates_are_formatted_as_swift_formats_them() {
    assert_eq!(http_date(0.0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(951_782_400.0), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(iso_date(1_700_000_000.5), "2023-11-14T22:13:20.500000");
}

/// `/info`, with the `bulk_delete` section when [`FakeCluster::set_bulk_delete_max`] set one.
fn info_with_bulk(inner: &Inner, parts: &Parts) -> Out {
    let out = info(parts);
    let Some(max) = inner.lock().bulk_delete_max else {
        return out;
    };
    let Ok(mut v) = serde_json::from_slice::<Value>(&out.body) else {
        return out;
    };
    v["bulk_delete"] = json!({"max_deletes_per_request": max, "max_failed_deletes": 1000});
    Out::new(StatusCode::OK)
        .header("content-type", "application/json; charset=UTF-8")
        .body(v.to_string())
}
