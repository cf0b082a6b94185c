//! The federation service: one Swift endpoint over several clusters.
//!
//! [`FederationService::handle`] runs every request through the same phases, each
//! written once (pingora's `ProxyHttp` is the model):
//!
//! 1. **parse** the path ([`SwiftPath`]);
//! 2. **identify the caller** once (`Caller`: anonymous, a proxy session, or a token
//!    passed through);
//! 3. **resolve the target**: one cluster (a container's, found or adopted by the
//!    locator), every cluster (account requests), local (`/info`, `/healthcheck`,
//!    `/auth`), or two (a copy across clusters);
//! 4. **edit the request** (`FederationService::cluster_request`: attribute headers
//!    stay in the proxy);
//! 5. **send** through the cluster's [`SwiftCluster`] client;
//! 6. **edit the response** (attributes, the partial marker, the transaction id);
//! 7. **map errors** to Swift's answer (`From<…> for SwiftError`, in `crate::error`);
//! 8. **log** one line.
//!
//! The request families live one per file and supply only what differs: `auth`
//! (`/auth/v1.0`), `account` (fan-out and merge), `container` (placement before a
//! PUT, bookkeeping after PUT/POST/DELETE, co-location), `object`, `copy` (across
//! clusters), `symlink` (the 404-then-follow rule, static links across clusters),
//! `tempurl` (which key signed a temp URL), `bulk` (bulk delete and upload) and `info`.

mod account;
pub mod auth;
mod bulk;
mod container;
mod copy;
#[cfg(debug_assertions)]
mod faults;
mod health;
mod info;
mod large;
pub mod migrate;
mod object;
mod relocate;
mod seal;
mod symlink;
mod tempurl;

/// Python's `urllib.parse.quote(text)` (`safe='/'`).
const QUOTE_SLASH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The service's private parsers, for the fuzz targets in `fuzz/` only (not an API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use super::bulk::fuzz as bulk;
    pub use super::large::fuzz as large;
}

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use federation_core::attrs::ContainerRecord;
use federation_core::{
    AccountName, ClusterId, ClusterState, ClusterStatus, ContainerName, ContainerProbe, Locator,
};
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use stackfed_http::{boxed, full, Body, BoxError};

use crate::cluster::{Auth, ClusterRequest, Clusters, Payload, SwiftCluster};
use crate::error::SwiftError;
use crate::headers::CONTAINER_ATTR_PREFIX;
use crate::path::SwiftPath;

pub use auth::{AuthMode, ProxySession, Sessions};
pub use health::family;

type Result<T, E = SwiftError> = std::result::Result<T, E>;

/// The header that carries the request's transaction id back to the client.
const TRANS_ID: &str = "x-trans-id";
/// The same id under the name OpenStack services share (Swift sends both).
const REQUEST_ID: &str = "x-openstack-request-id";
/// A suffix a client (or this proxy, towards its clusters) asks Swift to append to
/// the transaction id it makes, so that the logs of both correlate.
const TRANS_ID_EXTRA: &str = "x-trans-id-extra";

/// See the [module docs](self). Cheap to clone; a `tower::Service`.
#[derive(Debug, Clone)]
pub struct FederationService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    locator: Arc<Locator>,
    clusters: Clusters,
    mode: AuthMode,
    sessions: Sessions,
    info: info::InfoCache,
    partial_listings: bool,
    readiness: Option<crate::cluster::health::Readiness>,
    disable_path: Option<std::path::PathBuf>,
    inflight: Arc<migrate::Inflight>,
    drains: Arc<migrate::Drains>,
    archive_mover: std::sync::OnceLock<Arc<dyn migrate::ArchiveMover>>,
    #[cfg(debug_assertions)]
    pause: faults::PausePoint,
}

/// Who the request acts as, towards the clusters (phase 2).
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No token: requests go to the clusters without one (public reads, temp URLs).
    Anonymous,
    /// A proxy session (tempauth mode).
    Session(Arc<ProxySession>),
    /// A proxy session with a service's proxy session (`X-Service-Token`, tempauth
    /// mode): each cluster gets both sessions' tokens on it.
    WithService(Arc<ProxySession>, Arc<ProxySession>),
    /// The client's own token, forwarded (pass-through mode).
    Token(HeaderValue),
}

impl Caller {
    fn auth(&self) -> Auth<'_> {
        match self {
            Self::Anonymous => Auth::Anonymous,
            Self::Session(s) => Auth::Session(&s.session),
            Self::WithService(user, service) => Auth::WithService {
                user: &user.session,
                service: &service.session,
            },
            Self::Token(t) => Auth::Token(t),
        }
    }
}

/// A parsed request with its caller: what every family receives.
pub(crate) struct Call {
    parts: Parts,
    body: Body,
    caller: Caller,
    /// What a temp URL lends the request's subrequests, once known.
    lent: tempurl::LentCell,
}

impl Call {
    fn path_and_query(&self) -> &str {
        self.parts
            .uri
            .path_and_query()
            .map_or_else(|| self.parts.uri.path(), |pq| pq.as_str())
    }
}

/// For the mover: `content_type` marked as a DLO the proxy assembles (its segments in
/// `manifest`, `container/prefix`, live on another cluster than the manifest).
pub(crate) fn federated_dlo_type(content_type: &str, manifest: &str) -> String {
    large::mark(
        content_type,
        &large::Marked::Dlo {
            manifest: manifest.to_owned(),
        },
    )
}

/// For the mover: a listed content type without the proxy's marker (what a client sees).
pub(crate) fn unmarked_type(content_type: &str) -> String {
    large::unmark(content_type).0
}

impl FederationService {
    /// A service over `clusters`, whose states and capacities `locator`'s registry
    /// holds.
    pub fn new(locator: Arc<Locator>, clusters: Clusters, mode: AuthMode) -> Self {
        Self {
            inner: Arc::new(Inner {
                locator,
                clusters,
                mode,
                sessions: Sessions::new(),
                info: info::InfoCache::default(),
                partial_listings: false,
                readiness: None,
                disable_path: None,
                inflight: Arc::default(),
                drains: Arc::default(),
                archive_mover: std::sync::OnceLock::new(),
                #[cfg(debug_assertions)]
                pause: faults::PausePoint::from_env(),
            }),
        }
    }

    /// Keeps the proxy's sessions (tempauth mode) in `store` as well, sealed (see
    /// `seal.rs`), so that a token this proxy issues works on every proxy sharing the
    /// store. Call before the service is cloned.
    pub fn with_shared_sessions(
        mut self,
        store: Arc<dyn federation_core::sessions::SessionStore>,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.sessions = Sessions::shared(store);
        }
        self
    }

    /// With a cluster offline, account listings are answered from the others, naming
    /// the missing clusters in `X-Federation-Partial`, instead of 503.
    pub fn with_partial_listings(mut self, partial: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.partial_listings = partial;
        }
        self
    }

    /// `/healthcheck` answers 503 while the last probe found the proxy not ready (see
    /// [`HealthProbe::with_readiness`](crate::cluster::health::HealthProbe::with_readiness)),
    /// and 503 `DISABLED BY FILE` while `disable_path` exists.
    pub fn with_health(
        mut self,
        readiness: Option<crate::cluster::health::Readiness>,
        disable_path: Option<std::path::PathBuf>,
    ) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.readiness = readiness;
            inner.disable_path = disable_path;
        }
        self
    }

    /// The locator.
    pub fn locator(&self) -> &Arc<Locator> {
        &self.inner.locator
    }

    /// The clusters.
    pub fn clusters(&self) -> &Clusters {
        &self.inner.clusters
    }

    /// Client writes in flight to moving containers (shared with the mover).
    pub fn inflight(&self) -> &Arc<migrate::Inflight> {
        &self.inner.inflight
    }

    /// The (account, cluster) pairs being drained: new containers of the account are
    /// not placed there (shared with the mover).
    pub fn drains(&self) -> &Arc<migrate::Drains> {
        &self.inner.drains
    }

    /// Lets a client's `X-Versions-Location`/`X-History-Location` on an existing
    /// container bring a small archive on another cluster next to it (once; later
    /// calls are ignored).
    pub fn set_archive_mover(&self, mover: Arc<dyn migrate::ArchiveMover>) {
        let _ = self.inner.archive_mover.set(mover);
    }

    /// Answers one request. Never fails: errors become Swift-style responses.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        let method = parts.method.clone();
        let path = parts.uri.path().to_owned();
        let extra = parts
            .headers
            .get(TRANS_ID_EXTRA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let trans_id = new_trans_id(extra.as_deref());
        let trans_value = HeaderValue::from_str(&trans_id).ok();
        // What Swift's server refuses before Swift sees the request (the head as the
        // client sent it).
        let within_limits = crate::headers::check_request_head(
            &parts.method,
            &crate::headers::request_target(&parts.uri),
            &parts.headers,
        );
        // The clusters append it to their own ids (Swift keeps its first 32 bytes).
        if let Some(v) = &trans_value {
            parts
                .headers
                .insert(HeaderName::from_static(TRANS_ID_EXTRA), v.clone());
        }
        let keep_alive = asks_keep_alive(&parts.headers);
        let answer = match within_limits {
            Ok(()) => self.process(parts, boxed(body)).await,
            Err(e) => Err(e),
        };
        let mut resp = answer.unwrap_or_else(|e| e.into_response(head));
        let h = resp.headers_mut();
        if let Some(v) = trans_value {
            h.insert(HeaderName::from_static(TRANS_ID), v.clone());
            h.insert(HeaderName::from_static(REQUEST_ID), v);
        }
        // Swift's server echoes a client's keep-alive; hyper keeps the connection
        // either way and says `close` itself when it closes.
        if keep_alive {
            h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
        tracing::debug!(
            %method,
            %path,
            status = resp.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            %trans_id,
            "request"
        );
        resp
    }

    /// Phases 1 to 6: parse, identify, and hand the request to its family.
    async fn process(&self, parts: Parts, body: Body) -> Result<Response<Body>> {
        let path = SwiftPath::parse_request(&parts.method, parts.uri.path())?;
        if let Some(refused) = tempurl::ip_refusal(&parts) {
            return Ok(refused);
        }
        // Bulk deletes answer 200 whoever asks; each item is a request of its own.
        if let Some(account) = bulk::account_of(&path).filter(|_| bulk::is_bulk_delete(&parts)) {
            return Ok(Box::pin(self.bulk_delete(parts, body, account.clone())).await);
        }
        // So do bulk uploads: each file (and container) is a request of its own.
        if let Some(kind) = account_of_extract(&path, &parts) {
            return Ok(Box::pin(self.bulk_extract(parts, body, kind)).await);
        }
        let manifest = parts
            .uri
            .query()
            .is_some_and(|q| q.contains("multipart-manifest"));
        if parts.method == Method::PUT && matches!(path, SwiftPath::Object { .. }) && !manifest {
            // Before the body is read (and `100 Continue` sent): what Swift refuses on
            // the request head alone.
            let (info, _) = Box::pin(self.info()).await;
            crate::headers::check_object_creation(&parts.headers, &info)?;
        }
        let caller = match path {
            SwiftPath::Healthcheck | SwiftPath::Info | SwiftPath::Auth => Caller::Anonymous,
            _ => self.identify(&parts.headers).await?,
        };
        let call = Call {
            parts,
            body,
            caller,
            lent: tempurl::LentCell::default(),
        };
        // A future is as large as its largest branch, and the service's is allocated and
        // moved whole for every request: the families other than objects (the hot path)
        // are boxed, so that they cost their size only when taken (see `object_request`).
        match path {
            SwiftPath::Healthcheck => Ok(self.healthcheck()),
            SwiftPath::Info => Box::pin(self.info_request(&call)).await,
            SwiftPath::Auth => Box::pin(self.auth_request(&call)).await,
            SwiftPath::Account { account } => Box::pin(self.account_request(call, &account)).await,
            SwiftPath::Container { account, container } => {
                Box::pin(self.container_request(call, &account, &container)).await
            }
            SwiftPath::Object {
                account,
                container,
                object,
            } => {
                self.object_request(call, &account, &container, &object)
                    .await
            }
        }
    }

    /// Phase 2: who the request acts as.
    async fn identify(&self, headers: &HeaderMap) -> Result<Caller> {
        let token = headers
            .get("x-auth-token")
            .or_else(|| headers.get("x-storage-token"));
        let Some(token) = token else {
            return Ok(Caller::Anonymous);
        };
        match self.inner.mode {
            // Each cluster validates the token (they share the Keystone); X-Service-Token
            // goes on unchanged too.
            AuthMode::PassThrough | AuthMode::Keystone => Ok(Caller::Token(token.clone())),
            AuthMode::Tempauth => {
                let sessions = &self.inner.sessions;
                let user = match token.to_str() {
                    Ok(t) => sessions.get(t).await?,
                    Err(_) => None,
                }
                .ok_or_else(SwiftError::unauthorized)?;
                // A service token the proxy does not know goes on as it came: the
                // cluster refuses it as it would.
                let service = match headers.get("x-service-token").and_then(|v| v.to_str().ok()) {
                    Some(t) => sessions.get(t).await?,
                    None => None,
                };
                Ok(match service {
                    Some(service) => Caller::WithService(user, service),
                    None => Caller::Session(user),
                })
            }
        }
    }

    // ----- phase 3: targets ---------------------------------------------------------

    /// A container's cluster; 503 at once when it is offline.
    fn cluster(&self, id: &ClusterId) -> Result<&SwiftCluster> {
        // The state read in place: a status cloned per request (its spec's URL and
        // labels) was an allocation or two on the hot path.
        let snapshot = self.inner.locator.registry().snapshot();
        let state = snapshot.iter().find(|s| s.id() == id).map(|s| s.state);
        let cluster = self.inner.clusters.get(id);
        match (state, cluster) {
            (Some(ClusterState::Offline), _) => Err(SwiftError::unavailable(format!(
                "cluster {id} holding this container is offline"
            ))),
            (Some(_), Some(c)) => Ok(c),
            _ => Err(SwiftError::unavailable(format!(
                "cluster {id} is no longer configured"
            ))),
        }
    }

    /// The clusters that are not offline, and the offline ones.
    fn reachable(&self) -> (Vec<ClusterStatus>, Vec<ClusterId>) {
        let snapshot = self.inner.locator.registry().snapshot();
        let (up, down): (Vec<ClusterStatus>, Vec<ClusterStatus>) = snapshot
            .iter()
            .cloned()
            .partition(|c| c.state != ClusterState::Offline);
        (up, down.into_iter().map(|c| c.id().clone()).collect())
    }

    /// The container's record; on a miss, the reachable clusters are asked and a
    /// container found on exactly one is adopted (see
    /// [`federation_core::locator::adopt`]). `fresh` reads the store past the cache
    /// (another proxy sharing the store may have changed the record).
    async fn find(
        &self,
        caller: &Caller,
        account: &AccountName,
        container: &ContainerName,
        fresh: bool,
    ) -> Result<Option<ContainerRecord>> {
        // The ids straight from the snapshot (the statuses are not cloned: this runs
        // for every request).
        let ids: Vec<ClusterId> = self
            .inner
            .locator
            .registry()
            .snapshot()
            .iter()
            .filter(|c| c.state != ClusterState::Offline)
            .map(|c| c.id().clone())
            .collect();
        let probe = Holds {
            clusters: &self.inner.clusters,
            caller,
        };
        Ok(self
            .inner
            .locator
            .locate_or_adopt(account, container, fresh, &ids, &probe)
            .await?)
    }

    /// [`find`](Self::find), with the container's cluster (503 when it is offline).
    async fn target(
        &self,
        caller: &Caller,
        account: &AccountName,
        container: &ContainerName,
        fresh: bool,
    ) -> Result<Option<(ContainerRecord, &SwiftCluster)>> {
        let Some(record) = self.find(caller, account, container, fresh).await? else {
            return Ok(None);
        };
        let cluster = self.cluster(&record.cluster)?;
        Ok(Some((record, cluster)))
    }

    /// The answer for a container no cluster holds, or for an account request the proxy
    /// does not handle itself (OPTIONS, PUT, unknown methods): Swift's own, from the first
    /// reachable cluster (404, or the 401/403 a caller gets for an account it may not
    /// see), passed on as that cluster gives it.
    async fn unheld(&self, mut call: Call) -> Result<Response<Body>> {
        let (up, _) = self.reachable();
        let Some(cluster) = up.first().and_then(|c| self.inner.clusters.get(c.id())) else {
            return Err(SwiftError::not_found());
        };
        let body = std::mem::replace(&mut call.body, stackfed_http::empty());
        self.forward(cluster, &call, call.path_and_query(), body)
            .await
    }

    // ----- phases 4 and 5: the request to a cluster, sent ----------------------------

    /// The client's request as it goes to a cluster: the same method and headers, but
    /// `X-Container-Attr-*` stays in the proxy.
    fn cluster_request(parts: &Parts, path_and_query: &str, body: Body) -> ClusterRequest {
        let mut headers = parts.headers.clone();
        let attrs: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with(CONTAINER_ATTR_PREFIX))
            .cloned()
            .collect();
        for n in attrs {
            headers.remove(n);
        }
        ClusterRequest::new(parts.method.clone(), path_and_query)
            .headers(headers)
            .body(Payload::Stream(body))
    }

    /// Sends the client's request (its method, headers and body) to `cluster` at
    /// `path_and_query`, streaming the answer back.
    async fn forward(
        &self,
        cluster: &SwiftCluster,
        call: &Call,
        path_and_query: &str,
        body: Body,
    ) -> Result<Response<Body>> {
        let req = Self::cluster_request(&call.parts, path_and_query, body);
        Ok(cluster.send(req, call.caller.auth()).await?)
    }
}

/// The adoption probe: a container HEAD on one cluster, as the caller.
struct Holds<'a> {
    clusters: &'a Clusters,
    caller: &'a Caller,
}

#[async_trait]
impl ContainerProbe for Holds<'_> {
    async fn holds(
        &self,
        cluster: &ClusterId,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<bool, federation_core::locator::adopt::BoxError> {
        match self.clusters.get(cluster) {
            Some(c) => Ok(c
                .holds_container(account, container, self.caller.auth())
                .await?),
            None => Ok(false),
        }
    }
}

impl<B> tower::Service<Request<B>> for FederationService
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move { Ok(svc.handle(req).await) })
    }
}

/// A bulk upload under an account: its compression (`Err`: a format Swift refuses).
fn account_of_extract(
    path: &SwiftPath,
    parts: &Parts,
) -> Option<std::result::Result<bulk::Compression, ()>> {
    bulk::account_of(path).and(bulk::extract_archive(parts))
}

/// A plain-text answer the proxy makes itself.
fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Whether the client's `Connection` header asks for keep-alive.
fn asks_keep_alive(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
}

/// A transaction id in Swift's form, `tx<21 hex>-<10 hex digits of the time>`, with
/// `-<extra>` (its first 32 bytes, percent-encoded) when the client sent
/// `X-Trans-Id-Extra`. Public for the benches; one per request.
pub fn new_trans_id(extra: Option<&str>) -> String {
    // Hex digits by hand: `write!` per byte was most of this function's cost.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |nibble: u64| char::from(HEX[(nibble & 0xf) as usize]);
    let mut b = [0u8; 11];
    let mut id = String::with_capacity(64);
    id.push_str("tx");
    if getrandom::fill(&mut b).is_err() {
        b = [0; 11];
    }
    for x in b {
        id.push(hex(u64::from(x >> 4)));
        id.push(hex(u64::from(x)));
    }
    id.truncate(2 + 21);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // `{now:010x}`: at least 10 digits, more when the time needs them.
    id.push('-');
    let digits = (64 - now.leading_zeros()).div_ceil(4).max(10);
    for i in (0..digits).rev() {
        id.push(hex(now >> (4 * i)));
    }
    if let Some(extra) = extra.filter(|e| !e.is_empty()) {
        let mut end = extra.len().min(32);
        while !extra.is_char_boundary(end) {
            end -= 1;
        }
        id.push('-');
        id.push_str(&crate::path::encode_segment(&extra[..end], true));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trans_ids_have_swifts_form() {
        let id = new_trans_id(None);
        assert_eq!(id.len(), 2 + 21 + 1 + 10, "{id}");
        assert!(id.starts_with("tx"));
        assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        assert_eq!(id.as_bytes()[23], b'-');
        let with = new_trans_id(Some("my job/1"));
        assert!(with.ends_with("-my%20job/1"), "{with}");
        let long = new_trans_id(Some(&"x".repeat(40)));
        assert!(long.ends_with(&format!("-{}", "x".repeat(32))), "{long}");
        assert_ne!(new_trans_id(None), new_trans_id(None));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let time = u64::from_str_radix(&id[24..34], 16).unwrap();
        assert!(time.abs_diff(now) < 60, "{id} at {now:010x}");
    }
}
