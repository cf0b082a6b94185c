//! The federation service: one Swift endpoint over several clusters.
//!
//! Container PUT places the container (policy + create-if-absent record) and creates it
//! on the chosen cluster, rolling the record back if the cluster refuses; every other
//! container and object request goes to the container's cluster, bodies streamed both
//! ways; account GET fans out and merges; account HEAD/GET sum the usage headers;
//! account POST reaches every cluster. `X-Container-Attr-*` headers live in the
//! attribute store and never reach a backend.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use federation_core::attrs::{Attributes, ContainerRecord, StoreError};
use federation_core::listing::{
    merge_page, ListingError, ListingQuery, ListingSource, SourceError,
};
use federation_core::placement::{ClusterFilter, PlacementError, PlacementRequest};
use federation_core::{
    AccountName, ClusterId, ClusterStatus, ContainerName, LocateError, Locator, Unfit,
};
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::auth::{unavailable, AuthMode, Credentials, Session, Sessions};
use crate::body::{boxed, empty, full, Body, BoxError};
use crate::client::BackendClient;
use crate::error::SwiftError;
use crate::headers::{
    apply_changes, attribute_changes, copy_end_to_end, insert_attributes, is_hop_by_hop, sum_usage,
    CLUSTER_ATTRIBUTE, CONTAINER_ATTR_PREFIX,
};
use crate::listing::{self, AccountEntry, ListingFormat};
use crate::path::{encode_segment, SwiftPath};

/// How long a merged `/info` (and the clusters' storage policies) is reused.
const INFO_TTL: Duration = Duration::from_secs(60);
/// The largest listing, auth or info body read whole from a backend.
const MAX_COLLECTED_BODY: usize = 64 * 1024 * 1024;
/// The header that carries the request's transaction id back to the client.
const TRANS_ID: &str = "x-trans-id";

type Result<T, E = SwiftError> = std::result::Result<T, E>;

/// Storage policy names offered by each cluster.
type PoliciesByCluster = BTreeMap<ClusterId, Vec<String>>;

/// The merged `/info`, when it was fetched, and each cluster's policies.
type CachedInfo = (Instant, Value, PoliciesByCluster);

/// See the [module docs](self). Cheap to clone.
#[derive(Debug, Clone)]
pub struct FederationService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    locator: Arc<Locator>,
    client: BackendClient,
    mode: AuthMode,
    sessions: Sessions,
    info: Mutex<Option<CachedInfo>>,
    partial_listings: bool,
}

/// Who the request acts as, towards the clusters.
#[derive(Debug, Clone)]
enum Caller {
    /// No token: requests go to the clusters without one (public reads, temp URLs).
    Anonymous,
    /// A proxy session (tempauth mode).
    Session(Arc<Session>),
    /// The client's own token, forwarded (pass-through mode).
    Token(HeaderValue),
}

fn locate_error(e: LocateError) -> SwiftError {
    match e {
        LocateError::Store(e) => store_error(e),
        LocateError::Placement(e) => placement_error(e),
        other => SwiftError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

fn store_error(e: StoreError) -> SwiftError {
    match e {
        StoreError::NotFound { .. } => SwiftError::not_found(),
        StoreError::Conflict { .. } => SwiftError::new(StatusCode::CONFLICT, e.to_string()),
        StoreError::InvalidInput { .. } => SwiftError::bad_request(e.to_string()),
        StoreError::Unavailable { .. } => SwiftError::unavailable(e.to_string()),
        other => SwiftError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

fn placement_error(e: PlacementError) -> SwiftError {
    let text = e.to_string();
    match &e {
        PlacementError::UnknownCluster { .. } => SwiftError::bad_request(text),
        // A service level no cluster offers will not appear by retrying.
        PlacementError::NoFit { rejections }
            if !rejections.is_empty()
                && rejections
                    .iter()
                    .all(|r| matches!(r.reason, Unfit::LabelMismatch { .. })) =>
        {
            SwiftError::bad_request(text)
        }
        PlacementError::NoFit { rejections }
            if !rejections.is_empty()
                && rejections.iter().all(|r| {
                    matches!(r.reason, Unfit::Full { .. } | Unfit::LabelMismatch { .. })
                }) =>
        {
            SwiftError::new(StatusCode::INSUFFICIENT_STORAGE, text)
        }
        _ => SwiftError::unavailable(text),
    }
}

/// Admits only one cluster: the one a related container lives on.
#[derive(Debug)]
struct SameClusterAs {
    cluster: ClusterId,
    reason: &'static str,
}

impl ClusterFilter for SameClusterAs {
    fn check(&self, _: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit> {
        if cluster.id() == &self.cluster {
            Ok(())
        } else {
            Err(Unfit::NotPinned {
                pinned: self.cluster.clone(),
            })
        }
    }

    fn name(&self) -> &'static str {
        self.reason
    }
}

/// Two filters, both of which must admit a cluster.
#[derive(Debug)]
struct Both<'a>(&'a dyn ClusterFilter, &'a dyn ClusterFilter);

impl ClusterFilter for Both<'_> {
    fn check(&self, r: &PlacementRequest, c: &ClusterStatus) -> Result<(), Unfit> {
        self.0.check(r, c)?;
        self.1.check(r, c)
    }

    fn name(&self) -> &'static str {
        "both"
    }
}

/// Admits clusters that offer a storage policy (from their `/info`).
#[derive(Debug)]
struct OffersPolicy {
    policy: String,
    offered: BTreeMap<ClusterId, Vec<String>>,
}

impl ClusterFilter for OffersPolicy {
    fn check(&self, _: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit> {
        let has = self
            .offered
            .get(cluster.id())
            .is_some_and(|ps| ps.iter().any(|p| p.eq_ignore_ascii_case(&self.policy)));
        if has {
            Ok(())
        } else {
            Err(Unfit::LabelMismatch {
                label: "storage-policy".into(),
                wanted: self.policy.clone(),
                found: None,
            })
        }
    }

    fn name(&self) -> &'static str {
        "storage-policy"
    }
}

impl FederationService {
    /// A service over the clusters of `locator`'s registry.
    pub fn new(locator: Arc<Locator>, client: BackendClient, mode: AuthMode) -> Self {
        Self {
            inner: Arc::new(Inner {
                locator,
                client,
                mode,
                sessions: Sessions::new(),
                info: Mutex::new(None),
                partial_listings: false,
            }),
        }
    }

    /// With a cluster offline, account listings are answered from the others, naming
    /// the missing clusters in `X-Federation-Partial`, instead of 503.
    pub fn with_partial_listings(mut self, partial: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.partial_listings = partial;
        }
        self
    }

    /// The clusters an account-wide request goes to, and the offline ones left out.
    /// Without partial listings an offline cluster is a 503.
    fn reachable_clusters(&self, partial_ok: bool) -> Result<(Vec<ClusterStatus>, Vec<ClusterId>)> {
        let (up, down) = self.reachable_clusters_any();
        let allowed = down.is_empty() || (partial_ok && self.inner.partial_listings);
        if !allowed {
            return Err(SwiftError::unavailable(format!(
                "cluster(s) {} offline: the account cannot be answered completely",
                down.iter()
                    .map(ClusterId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok((up, down))
    }

    /// The locator.
    pub fn locator(&self) -> &Arc<Locator> {
        &self.inner.locator
    }

    /// Answers one request. Never fails: errors become Swift-style responses.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let head = parts.method == Method::HEAD;
        let trans_id = new_trans_id();
        let mut resp = match self.route(parts, boxed(body)).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(status = %e.status, error = %e, "request refused");
                e.into_response(head)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&trans_id) {
            resp.headers_mut()
                .entry(HeaderName::from_static(TRANS_ID))
                .or_insert(v);
        }
        resp
    }

    async fn route(&self, parts: Parts, body: Body) -> Result<Response<Body>> {
        match SwiftPath::parse(parts.uri.path())? {
            SwiftPath::Healthcheck => Ok(text(StatusCode::OK, "OK")),
            SwiftPath::Info => self.info_response(&parts).await,
            SwiftPath::Auth => self.auth(&parts).await,
            SwiftPath::Account { account } => self.account(parts, body, &account).await,
            SwiftPath::Container { account, container } => {
                self.container(parts, body, &account, &container).await
            }
            SwiftPath::Object {
                account,
                container,
                object,
            } => {
                if parts.method == Method::PUT {
                    SwiftPath::check_object_name(&object)?;
                }
                self.object(parts, body, &account, &container).await
            }
        }
    }

    // ----- auth -------------------------------------------------------------------

    async fn caller(&self, headers: &HeaderMap) -> Result<Caller> {
        let token = headers
            .get("x-auth-token")
            .or_else(|| headers.get("x-storage-token"));
        let Some(token) = token else {
            return Ok(Caller::Anonymous);
        };
        match self.inner.mode {
            AuthMode::PassThrough => Ok(Caller::Token(token.clone())),
            AuthMode::Tempauth => token
                .to_str()
                .ok()
                .and_then(|t| self.inner.sessions.get(t))
                .map(Caller::Session)
                .ok_or_else(SwiftError::unauthorized),
        }
    }

    async fn auth(&self, parts: &Parts) -> Result<Response<Body>> {
        if parts.method != Method::GET {
            return Err(SwiftError::status(StatusCode::METHOD_NOT_ALLOWED));
        }
        // Log in where clusters answer; an offline one is authenticated on first use.
        let clusters: Vec<ClusterStatus> = self
            .inner
            .locator
            .registry()
            .snapshot()
            .iter()
            .filter(|c| c.state != federation_core::ClusterState::Offline)
            .cloned()
            .collect();
        let Some(first) = clusters.first() else {
            return Err(SwiftError::unavailable("no cluster is reachable"));
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        match self.inner.mode {
            AuthMode::Tempauth => {
                let creds = Credentials::from_headers(&parts.headers)
                    .ok_or_else(SwiftError::unauthorized)?;
                let (token, session) = self
                    .inner
                    .sessions
                    .login(&self.inner.client, &clusters, creds)
                    .await?;
                let url = format!("http://{host}{}", session.storage_path);
                let lifetime = session
                    .expires
                    .saturating_duration_since(Instant::now())
                    .as_secs();
                let body = serde_json::json!({"storage": {"default": "local", "local": url}});
                let mut resp = Response::new(full(body.to_string()));
                let h = resp.headers_mut();
                let v = |s: &str| {
                    HeaderValue::from_str(s)
                        .map_err(|_| SwiftError::bad_request("Invalid Host header"))
                };
                h.insert("x-auth-token", v(&token)?);
                h.insert("x-storage-token", v(&token)?);
                h.insert("x-storage-url", v(&url)?);
                h.insert("x-auth-token-expires", HeaderValue::from(lifetime));
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=UTF-8"),
                );
                Ok(resp)
            }
            AuthMode::PassThrough => {
                // Authenticate against the first cluster and point the client at us.
                let mut resp = self
                    .forward(
                        first,
                        &Caller::Anonymous,
                        parts,
                        "/auth/v1.0",
                        empty(),
                        false,
                    )
                    .await?;
                if let Some(url) = resp
                    .headers()
                    .get("x-storage-url")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|u| url::Url::parse(u).ok())
                {
                    if let Ok(v) = HeaderValue::from_str(&format!("http://{host}{}", url.path())) {
                        resp.headers_mut().insert("x-storage-url", v);
                    }
                }
                Ok(resp)
            }
        }
    }

    // ----- forwarding ---------------------------------------------------------------

    async fn token(
        &self,
        caller: &Caller,
        cluster: &ClusterStatus,
        force: bool,
    ) -> Result<Option<HeaderValue>> {
        Ok(match caller {
            Caller::Anonymous => None,
            Caller::Token(t) => Some(t.clone()),
            Caller::Session(s) => Some(s.token_for(&self.inner.client, cluster, force).await?),
        })
    }

    fn backend_request(
        &self,
        cluster: &ClusterStatus,
        parts: &Parts,
        path_and_query: &str,
        body: Body,
        token: Option<HeaderValue>,
        method: Option<Method>,
    ) -> Result<Request<Body>> {
        let base = cluster.spec.endpoint.as_str().trim_end_matches('/');
        let mut req = Request::new(body);
        *req.method_mut() = method.unwrap_or_else(|| parts.method.clone());
        *req.uri_mut() = format!("{base}{path_and_query}")
            .parse()
            .map_err(|_| SwiftError::bad_request("Invalid path"))?;
        let h = req.headers_mut();
        for (name, value) in &parts.headers {
            let n = name.as_str();
            if is_hop_by_hop(name)
                || name == header::HOST
                || n == "x-auth-token"
                || n == "x-storage-token"
                || n.starts_with(CONTAINER_ATTR_PREFIX)
            {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if let Some(t) = token {
            h.insert("x-auth-token", t);
        }
        Ok(req)
    }

    /// Sends the request to `cluster` and streams the answer back. A 401 to a request
    /// without a body renews the cluster token and tries once more.
    async fn forward(
        &self,
        cluster: &ClusterStatus,
        caller: &Caller,
        parts: &Parts,
        path_and_query: &str,
        body: Body,
        renewable: bool,
    ) -> Result<Response<Body>> {
        let bodiless = hyper::body::Body::size_hint(&body).exact() == Some(0);
        let token = self.token(caller, cluster, false).await?;
        let req = self.backend_request(cluster, parts, path_and_query, body, token, None)?;
        let resp = self
            .inner
            .client
            .send(req)
            .await
            .map_err(|e| unavailable(cluster.id(), &e))?;
        let resp = if resp.status() == StatusCode::UNAUTHORIZED
            && bodiless
            && renewable
            && matches!(caller, Caller::Session(_))
        {
            let token = self.token(caller, cluster, true).await?;
            let req = self.backend_request(cluster, parts, path_and_query, empty(), token, None)?;
            self.inner
                .client
                .send(req)
                .await
                .map_err(|e| unavailable(cluster.id(), &e))?
        } else {
            resp
        };
        let (p, b) = resp.into_parts();
        let mut out = Response::new(boxed(b));
        *out.status_mut() = p.status;
        copy_end_to_end(&p.headers, out.headers_mut());
        Ok(out)
    }

    /// Sends a bodiless request to `cluster` and reads the (small) answer whole; a 401
    /// renews the cluster token and tries once more, as [`forward`](Self::forward) does.
    async fn collect(
        &self,
        cluster: &ClusterStatus,
        caller: &Caller,
        parts: &Parts,
        path_and_query: &str,
        method: Method,
        strip_accept: bool,
    ) -> Result<(http::response::Parts, Bytes)> {
        let mut force = false;
        loop {
            let token = self.token(caller, cluster, force).await?;
            let mut req = self.backend_request(
                cluster,
                parts,
                path_and_query,
                empty(),
                token,
                Some(method.clone()),
            )?;
            if strip_accept {
                req.headers_mut().remove(header::ACCEPT);
            }
            let (p, b) = self
                .inner
                .client
                .send_collect(req, MAX_COLLECTED_BODY)
                .await
                .map_err(|e| unavailable(cluster.id(), &e))?;
            if p.status == StatusCode::UNAUTHORIZED
                && !force
                && matches!(caller, Caller::Session(_))
            {
                force = true;
                continue;
            }
            return Ok((p, b));
        }
    }

    fn path_and_query(parts: &Parts) -> String {
        parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned())
    }

    /// The container's cluster; 503 at once when it is offline.
    fn cluster(&self, id: &ClusterId) -> Result<ClusterStatus> {
        let c = self.inner.locator.registry().get(id).ok_or_else(|| {
            SwiftError::unavailable(format!("cluster {id} is no longer configured"))
        })?;
        if c.state == federation_core::ClusterState::Offline {
            return Err(SwiftError::unavailable(format!(
                "cluster {id} holding this container is offline"
            )));
        }
        Ok(c)
    }

    /// The container's record; on a miss, asks the reachable clusters whether one
    /// already holds the container (a cluster that joined with containers of its own)
    /// and adopts it. Two clusters holding one name is a 409 that names them: an
    /// operator must decide, the proxy never picks one silently. `fresh` reads the store
    /// past the cache (another proxy sharing the store may have changed the record).
    async fn find(
        &self,
        caller: &Caller,
        account: &AccountName,
        container: &ContainerName,
        fresh: bool,
    ) -> Result<Option<ContainerRecord>> {
        let locator = &self.inner.locator;
        let known = if fresh {
            locator.locate_fresh(account, container).await
        } else {
            locator.locate(account, container).await
        };
        if let Some(r) = known.map_err(locate_error)? {
            return Ok(Some(r));
        }
        let path = format!(
            "/v1/{}/{}",
            encode_segment(account.as_str(), false),
            encode_segment(container.as_str(), false)
        );
        let (clusters, _) = self.reachable_clusters_any();
        let probes = clusters.iter().map(|c| {
            let path = path.clone();
            async move {
                let token = self.token(caller, c, false).await.ok().flatten();
                let uri = format!("{}{path}", c.spec.endpoint.as_str().trim_end_matches('/'));
                let mut req = Request::head(uri).body(empty()).ok()?;
                if let Some(t) = token {
                    req.headers_mut().insert("x-auth-token", t);
                }
                let resp = self.inner.client.send(req).await.ok()?;
                resp.status().is_success().then(|| c.id().clone())
            }
        });
        let holders: Vec<ClusterId> = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        match holders.as_slice() {
            [] => Ok(None),
            [one] => {
                let placed = locator
                    .adopt(account, container, one.clone())
                    .await
                    .map_err(locate_error)?;
                if placed.created {
                    tracing::info!(%account, %container, cluster = %one, "adopted an existing container");
                }
                Ok(Some(placed.record))
            }
            many => {
                let names = many
                    .iter()
                    .map(ClusterId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::error!(%account, %container, clusters = %names, "one container name on several clusters");
                Err(SwiftError::new(
                    StatusCode::CONFLICT,
                    format!("Container {container} exists on clusters {names}; an operator must resolve this"),
                ))
            }
        }
    }

    /// The clusters that are not offline, and the offline ones.
    fn reachable_clusters_any(&self) -> (Vec<ClusterStatus>, Vec<ClusterId>) {
        let snapshot = self.inner.locator.registry().snapshot();
        let (up, down): (Vec<ClusterStatus>, Vec<ClusterStatus>) = snapshot
            .iter()
            .cloned()
            .partition(|c| c.state != federation_core::ClusterState::Offline);
        (up, down.into_iter().map(|c| c.id().clone()).collect())
    }

    // ----- objects ---------------------------------------------------------------------

    async fn object(
        &self,
        parts: Parts,
        body: Body,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Response<Body>> {
        let caller = self.caller(&parts.headers).await?;
        let record = self
            .find(&caller, account, container, false)
            .await?
            .ok_or_else(SwiftError::not_found)?;
        let cluster = self.cluster(&record.cluster)?;
        // Server-side copy between clusters: the proxy carries the bytes.
        let copy = match parts.method.as_str() {
            "PUT" => header_path(&parts.headers, "x-copy-from")?
                .map(|src| (src, (container.clone(), object_of(&parts)))),
            "COPY" => header_path(&parts.headers, "destination")?
                .map(|dst| ((container.clone(), object_of(&parts)), dst)),
            _ => None,
        };
        if let Some((src, dst)) = copy {
            let src_rec = self
                .find(&caller, account, &src.0, false)
                .await?
                .ok_or_else(SwiftError::not_found)?;
            let dst_rec = self
                .find(&caller, account, &dst.0, false)
                .await?
                .ok_or_else(SwiftError::not_found)?;
            if src_rec.cluster != dst_rec.cluster {
                return self
                    .copy_across(
                        &parts,
                        &caller,
                        account,
                        (&src_rec.cluster, &src),
                        (&dst_rec.cluster, &dst),
                    )
                    .await;
            }
        }
        if parts.method == Method::PUT {
            self.check_static_link(&parts, &caller, account, &record.cluster)
                .await?;
        }
        let pq = Self::path_and_query(&parts);
        let resp = self
            .forward(&cluster, &caller, &parts, &pq, body, true)
            .await?;
        // Only a 404 to a read can be a link to another cluster.
        let reads = parts.method == Method::GET || parts.method == Method::HEAD;
        let link_itself = || {
            parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "symlink=get"))
        };
        if reads && resp.status() == StatusCode::NOT_FOUND && !link_itself() {
            return self.follow_symlink(&parts, &caller, &cluster, resp).await;
        }
        Ok(resp)
    }

    /// A symlink whose target container lives on another cluster is resolved here: the
    /// cluster holding the link follows it on itself, finds nothing, and answers 404
    /// with `Content-Location` naming the target (Swift's symlink middleware); the proxy
    /// then asks the target's cluster, at most [`SYMLINK_HOPS`] times (Swift's
    /// `symloop_max`). Any other 404 passes through unchanged.
    async fn follow_symlink(
        &self,
        parts: &Parts,
        caller: &Caller,
        cluster: &ClusterStatus,
        mut resp: Response<Body>,
    ) -> Result<Response<Body>> {
        let mut at = cluster.id().clone();
        for _ in 0..SYMLINK_HOPS {
            let Some(target) = resp
                .headers()
                .get(header::CONTENT_LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok(resp);
            };
            let Ok(SwiftPath::Object {
                account, container, ..
            }) = SwiftPath::parse(&target)
            else {
                return Ok(resp);
            };
            let Some(record) = self.find(caller, &account, &container, false).await? else {
                return Ok(resp);
            };
            if record.cluster == at {
                return Ok(resp);
            }
            let next = self.cluster(&record.cluster)?;
            resp = self
                .forward(&next, caller, parts, &target, empty(), true)
                .await?;
            if let Ok(v) = HeaderValue::from_str(&target) {
                resp.headers_mut()
                    .entry(header::CONTENT_LOCATION)
                    .or_insert(v);
            }
            if resp.status() != StatusCode::NOT_FOUND {
                return Ok(resp);
            }
            at = record.cluster;
        }
        Ok(resp)
    }

    /// A static link (`X-Symlink-Target-Etag`) is checked by the cluster that stores it,
    /// against its own objects: its target must be on the same cluster. Dynamic links
    /// may point anywhere (they are resolved when read).
    async fn check_static_link(
        &self,
        parts: &Parts,
        caller: &Caller,
        account: &AccountName,
        home: &ClusterId,
    ) -> Result<()> {
        if !parts.headers.contains_key("x-symlink-target-etag") {
            return Ok(());
        }
        let Some((target, _)) = header_path(&parts.headers, "x-symlink-target")? else {
            return Ok(());
        };
        let target_account = match parts.headers.get("x-symlink-target-account") {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|a| AccountName::new(a).ok())
                .ok_or_else(|| {
                    SwiftError::precondition_failed("Invalid X-Symlink-Target-Account")
                })?,
            None => account.clone(),
        };
        match self.find(caller, &target_account, &target, false).await? {
            Some(r) if r.cluster != *home => Err(SwiftError::new(
                StatusCode::CONFLICT,
                format!(
                    "A static symlink (X-Symlink-Target-Etag) needs its target on the same \
                     cluster; container {target} is on cluster {}, this one on {home}. \
                     Use a dynamic symlink (no X-Symlink-Target-Etag).",
                    r.cluster
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Copies an object from one cluster to another: GET from the source's cluster,
    /// streamed into a PUT on the destination's, with the source's content type and
    /// `X-Object-Meta-*` (unless `X-Fresh-Metadata: true`), the request's own headers
    /// taking precedence, as Swift's copy does.
    async fn copy_across(
        &self,
        parts: &Parts,
        caller: &Caller,
        account: &AccountName,
        (src_cluster, src): (&ClusterId, &(ContainerName, String)),
        (dst_cluster, dst): (&ClusterId, &(ContainerName, String)),
    ) -> Result<Response<Body>> {
        let path = |c: &ContainerName, o: &str| {
            format!(
                "/v1/{}/{}/{}",
                encode_segment(account.as_str(), false),
                encode_segment(c.as_str(), false),
                encode_segment(o, true)
            )
        };
        let from = self.cluster(src_cluster)?;
        let to = self.cluster(dst_cluster)?;
        let mut get = Request::get(format!(
            "{}{}",
            from.spec.endpoint.as_str().trim_end_matches('/'),
            path(&src.0, &src.1)
        ))
        .body(empty())
        .map_err(|e| SwiftError::bad_request(e.to_string()))?;
        if let Some(t) = self.token(caller, &from, false).await? {
            get.headers_mut().insert("x-auth-token", t);
        }
        let source = self
            .inner
            .client
            .send(get)
            .await
            .map_err(|e| unavailable(from.id(), &e))?;
        if !source.status().is_success() {
            let (p, b) = source.into_parts();
            let mut r = Response::new(boxed(b));
            *r.status_mut() = p.status;
            copy_end_to_end(&p.headers, r.headers_mut());
            return Ok(r);
        }
        let (sp, sb) = source.into_parts();
        let fresh = parts
            .headers
            .get("x-fresh-metadata")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut put = Request::put(format!(
            "{}{}",
            to.spec.endpoint.as_str().trim_end_matches('/'),
            path(&dst.0, &dst.1)
        ))
        .body(boxed(sb))
        .map_err(|e| SwiftError::bad_request(e.to_string()))?;
        let h = put.headers_mut();
        for (k, v) in &sp.headers {
            let n = k.as_str();
            if n == "content-type"
                || n == "content-length"
                || (!fresh && n.starts_with("x-object-meta-"))
            {
                h.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &parts.headers {
            let n = k.as_str();
            if n.starts_with("x-object-meta-")
                || n == "content-type"
                || n == "x-delete-at"
                || n == "x-delete-after"
            {
                h.insert(k.clone(), v.clone());
            }
        }
        if let Some(t) = self.token(caller, &to, false).await? {
            h.insert("x-auth-token", t);
        }
        let done = self
            .inner
            .client
            .send(put)
            .await
            .map_err(|e| unavailable(to.id(), &e))?;
        let (dp, db) = done.into_parts();
        let mut r = Response::new(boxed(db));
        *r.status_mut() = dp.status;
        copy_end_to_end(&dp.headers, r.headers_mut());
        if dp.status.is_success() {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{}/{}",
                encode_segment(src.0.as_str(), false),
                encode_segment(&src.1, true)
            )) {
                r.headers_mut().insert("x-copied-from", v);
            }
        }
        tracing::info!(%account, from = %from.id(), to = %to.id(), status = %dp.status, "copied an object across clusters");
        Ok(r)
    }

    // ----- containers -----------------------------------------------------------------

    async fn container(
        &self,
        parts: Parts,
        body: Body,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Response<Body>> {
        let caller = self.caller(&parts.headers).await?;
        let changes = attribute_changes(&parts.headers)?;
        match parts.method {
            Method::PUT => {
                self.container_put(parts, body, &caller, account, container, changes)
                    .await
            }
            Method::POST => {
                self.container_post(parts, body, &caller, account, container, changes)
                    .await
            }
            Method::DELETE => {
                self.container_delete(parts, &caller, account, container)
                    .await
            }
            _ => {
                let record = self
                    .find(&caller, account, container, false)
                    .await?
                    .ok_or_else(SwiftError::not_found)?;
                let cluster = self.cluster(&record.cluster)?;
                let pq = Self::path_and_query(&parts);
                let mut resp = self
                    .forward(&cluster, &caller, &parts, &pq, body, true)
                    .await?;
                if resp.status().is_success() {
                    insert_attributes(
                        resp.headers_mut(),
                        &record.attributes,
                        record.cluster.as_str(),
                    );
                }
                Ok(resp)
            }
        }
    }

    async fn storage_policy_filter(&self, parts: &Parts) -> Result<Option<OffersPolicy>> {
        let Some(policy) = parts.headers.get("x-storage-policy") else {
            return Ok(None);
        };
        let policy = policy
            .to_str()
            .map_err(|_| SwiftError::bad_request("Invalid X-Storage-Policy"))?
            .trim()
            .to_owned();
        let (_, offered) = self.info().await;
        Ok(Some(OffersPolicy { policy, offered }))
    }

    /// The cluster a container must share with related containers, if any: its
    /// segments container (`<name>_segments`) or the container it is the segments of,
    /// and the versions/history location it names. Related containers on two different
    /// clusters, or a location that does not exist yet, are refused (409).
    async fn related_cluster(
        &self,
        caller: &Caller,
        parts: &Parts,
        account: &AccountName,
        container: &ContainerName,
        own: Option<&ClusterId>,
    ) -> Result<Option<SameClusterAs>> {
        let mut found: Option<SameClusterAs> = None;
        let mut consider = |cluster: ClusterId, reason: &'static str| -> Result<()> {
            let clash = found
                .as_ref()
                .map(|f| &f.cluster)
                .or(own)
                .filter(|c| **c != cluster);
            if let Some(other) = clash {
                return Err(SwiftError::new(
                    StatusCode::CONFLICT,
                    format!("{reason}: the related container is on cluster {cluster}, this one is on {other}; containers do not move"),
                ));
            }
            found = Some(SameClusterAs { cluster, reason });
            Ok(())
        };
        let name = container.as_str();
        let mut related: Vec<(String, &'static str)> = Vec::new();
        if let Some(base) = name.strip_suffix("_segments").filter(|b| !b.is_empty()) {
            related.push((base.to_owned(), "segments live with their container"));
        }
        related.push((
            format!("{name}_segments"),
            "a container lives with its segments",
        ));
        for (n, reason) in related {
            let Ok(other) = ContainerName::new(n) else {
                continue;
            };
            if let Some(r) = self.find(caller, account, &other, true).await? {
                consider(r.cluster, reason)?;
            }
        }
        for header in ["x-versions-location", "x-history-location"] {
            let Some(v) = parts.headers.get(header) else {
                continue;
            };
            let v = v
                .to_str()
                .ok()
                .map(|s| {
                    percent_encoding::percent_decode_str(s.trim())
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            if v.is_empty() {
                continue;
            }
            let location = ContainerName::new(v.clone())
                .map_err(|e| SwiftError::bad_request(format!("Invalid {header}: {e}")))?;
            match self.find(caller, account, &location, true).await? {
                Some(r) => consider(r.cluster, "versions live with their container")?,
                None => {
                    return Err(SwiftError::new(
                        StatusCode::CONFLICT,
                        format!("Create the {header} container {v} first: it must live on this container's cluster"),
                    ))
                }
            }
        }
        Ok(found)
    }

    async fn container_put(
        &self,
        parts: Parts,
        body: Body,
        caller: &Caller,
        account: &AccountName,
        container: &ContainerName,
        changes: BTreeMap<String, String>,
    ) -> Result<Response<Body>> {
        let locator = &self.inner.locator;
        let pin = changes
            .get(CLUSTER_ATTRIBUTE)
            .filter(|v| !v.is_empty())
            .map(|v| {
                ClusterId::new(v).map_err(|_| {
                    SwiftError::bad_request(format!(
                        "Invalid cluster name in {CONTAINER_ATTR_PREFIX}{CLUSTER_ATTRIBUTE}"
                    ))
                })
            })
            .transpose()?;
        let pq = Self::path_and_query(&parts);
        if let Some(record) = self.find(caller, account, container, true).await? {
            if pin.as_ref().is_some_and(|p| *p != record.cluster) {
                return Err(SwiftError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "Container exists on cluster {}; containers do not move",
                        record.cluster
                    ),
                ));
            }
            self.related_cluster(caller, &parts, account, container, Some(&record.cluster))
                .await?;
            let cluster = self.cluster(&record.cluster)?;
            let resp = self
                .forward(&cluster, caller, &parts, &pq, body, true)
                .await?;
            if resp.status().is_success() {
                self.update_attributes(account, container, &changes).await?;
            }
            return Ok(resp);
        }
        let attributes: Attributes = changes
            .iter()
            .filter(|(k, v)| !v.is_empty() && k.as_str() != CLUSTER_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut request = PlacementRequest::new(account.clone(), container.clone());
        for (k, v) in &attributes {
            request = request.label(k, v.clone());
        }
        if let Some(p) = &pin {
            request = request.pin(p.clone());
        }
        let policy_filter = self.storage_policy_filter(&parts).await?;
        let related = self
            .related_cluster(caller, &parts, account, container, pin.as_ref())
            .await?;
        let combined;
        let filter: Option<&dyn ClusterFilter> = match (&policy_filter, &related) {
            (Some(p), Some(r)) => {
                combined = Both(p, r);
                Some(&combined)
            }
            (Some(p), None) => Some(p),
            (None, Some(r)) => Some(r),
            (None, None) => None,
        };
        let placement = locator
            .place_filtered(request, attributes, filter)
            .await
            .map_err(locate_error)?;
        let cluster = self.cluster(&placement.record.cluster)?;
        if !placement.created {
            // Somebody else placed it first: the PUT goes to their choice.
            return self
                .forward(&cluster, caller, &parts, &pq, body, true)
                .await;
        }
        let result = self
            .forward(&cluster, caller, &parts, &pq, body, true)
            .await;
        let keep = matches!(&result, Ok(r) if r.status().is_success());
        if !keep {
            // The cluster refused or was unreachable: no orphan record.
            if let Err(e) = locator
                .forget(account, container, Some(placement.record.version))
                .await
            {
                tracing::warn!(%account, %container, error = %e, "could not roll back a container record");
            }
        }
        tracing::info!(%account, %container, cluster = %cluster.id(), created = keep, "container placed");
        result
    }

    /// Applies attribute changes with compare-and-set, retrying on concurrent updates.
    async fn update_attributes(
        &self,
        account: &AccountName,
        container: &ContainerName,
        changes: &BTreeMap<String, String>,
    ) -> Result<()> {
        let changes: BTreeMap<String, String> = changes
            .iter()
            .filter(|(k, _)| k.as_str() != CLUSTER_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let locator = &self.inner.locator;
        for _ in 0..8 {
            locator.invalidate(account, container);
            let Some(record) = locator
                .locate(account, container)
                .await
                .map_err(locate_error)?
            else {
                return Err(SwiftError::not_found());
            };
            let next = apply_changes(&record.attributes, &changes)?;
            if next == record.attributes {
                return Ok(());
            }
            match locator
                .update_attributes(account, container, record.version, next)
                .await
            {
                Ok(_) => return Ok(()),
                Err(LocateError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(locate_error(e)),
            }
        }
        Err(SwiftError::new(
            StatusCode::CONFLICT,
            "Attributes are being changed concurrently; retry",
        ))
    }

    async fn container_post(
        &self,
        parts: Parts,
        body: Body,
        caller: &Caller,
        account: &AccountName,
        container: &ContainerName,
        changes: BTreeMap<String, String>,
    ) -> Result<Response<Body>> {
        let record = self
            .find(caller, account, container, true)
            .await?
            .ok_or_else(SwiftError::not_found)?;
        if let Some(p) = changes.get(CLUSTER_ATTRIBUTE).filter(|v| !v.is_empty()) {
            if p != record.cluster.as_str() {
                return Err(SwiftError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "Container is on cluster {}; containers do not move",
                        record.cluster
                    ),
                ));
            }
        }
        // Validate before anything is written anywhere.
        apply_changes(&record.attributes, &changes)?;
        if parts.headers.contains_key("x-versions-location")
            || parts.headers.contains_key("x-history-location")
        {
            self.related_cluster(caller, &parts, account, container, Some(&record.cluster))
                .await?;
        }
        let cluster = self.cluster(&record.cluster)?;
        let pq = Self::path_and_query(&parts);
        let resp = self
            .forward(&cluster, caller, &parts, &pq, body, true)
            .await?;
        if resp.status().is_success() {
            self.update_attributes(account, container, &changes).await?;
        }
        Ok(resp)
    }

    async fn container_delete(
        &self,
        parts: Parts,
        caller: &Caller,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Response<Body>> {
        let locator = &self.inner.locator;
        let record = self
            .find(caller, account, container, true)
            .await?
            .ok_or_else(SwiftError::not_found)?;
        let cluster = self.cluster(&record.cluster)?;
        let pq = Self::path_and_query(&parts);
        let resp = self
            .forward(&cluster, caller, &parts, &pq, empty(), true)
            .await?;
        // The record goes only once the cluster confirms the container is gone.
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            match locator.forget(account, container, None).await {
                Ok(_) | Err(LocateError::Store(StoreError::NotFound { .. })) => {}
                Err(e) => return Err(locate_error(e)),
            }
        }
        Ok(resp)
    }

    // ----- accounts ---------------------------------------------------------------------

    async fn account(
        &self,
        parts: Parts,
        body: Body,
        account: &AccountName,
    ) -> Result<Response<Body>> {
        drop(body);
        let caller = self.caller(&parts.headers).await?;
        match parts.method {
            Method::GET => self.account_get(&parts, &caller, account).await,
            Method::HEAD => self.account_head(&parts, &caller).await,
            Method::POST => self.account_post(&parts, &caller).await,
            _ => Err(SwiftError::status(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    /// Sends a body-less request to every cluster at once and reads the answers whole.
    async fn fan_out(
        &self,
        parts: &Parts,
        caller: &Caller,
        path_and_query: &str,
        method: Method,
        partial_ok: bool,
    ) -> Result<(
        Vec<(ClusterStatus, http::response::Parts, Bytes)>,
        Vec<ClusterId>,
    )> {
        let (clusters, down) = self.reachable_clusters(partial_ok)?;
        let calls = clusters.iter().map(|c| {
            let method = method.clone();
            async move {
                let (p, b) = self
                    .collect(c, caller, parts, path_and_query, method, false)
                    .await?;
                Ok::<_, SwiftError>((c.clone(), p, b))
            }
        });
        let answers: Vec<_> = futures::future::join_all(calls)
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        Ok((answers, down))
    }

    /// The first failure among fanned-out answers, passed on as the cluster said it.
    fn first_failure(
        answers: &[(ClusterStatus, http::response::Parts, Bytes)],
    ) -> Option<Response<Body>> {
        answers
            .iter()
            .find(|(_, p, _)| !p.status.is_success())
            .map(|(_, p, b)| {
                let mut r = Response::new(full(b.clone()));
                *r.status_mut() = p.status;
                copy_end_to_end(&p.headers, r.headers_mut());
                r
            })
    }

    async fn account_head(&self, parts: &Parts, caller: &Caller) -> Result<Response<Body>> {
        let pq = Self::path_and_query(parts);
        let (answers, down) = self.fan_out(parts, caller, &pq, Method::HEAD, true).await?;
        if let Some(fail) = Self::first_failure(&answers) {
            return Ok(fail);
        }
        let mut headers = answers
            .first()
            .map(|(_, p, _)| p.headers.clone())
            .unwrap_or_default();
        sum_usage(&mut headers, answers.iter().map(|(_, p, _)| &p.headers));
        let mut resp = Response::new(empty());
        *resp.status_mut() = answers
            .first()
            .map_or(StatusCode::NO_CONTENT, |(_, p, _)| p.status);
        copy_end_to_end(&headers, resp.headers_mut());
        mark_partial(&mut resp, &down);
        Ok(resp)
    }

    async fn account_post(&self, parts: &Parts, caller: &Caller) -> Result<Response<Body>> {
        let pq = Self::path_and_query(parts);
        let (answers, _) = self
            .fan_out(parts, caller, &pq, Method::POST, false)
            .await?;
        if let Some(fail) = Self::first_failure(&answers) {
            return Ok(fail);
        }
        let mut resp = Response::new(empty());
        if let Some((_, p, _)) = answers.first() {
            *resp.status_mut() = p.status;
            copy_end_to_end(&p.headers, resp.headers_mut());
        }
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        Ok(resp)
    }

    async fn account_get(
        &self,
        parts: &Parts,
        caller: &Caller,
        account: &AccountName,
    ) -> Result<Response<Body>> {
        let (query, format) = listing::parse_query(parts.uri.query())?;
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let fmt = ListingFormat::negotiate(format.as_deref(), accept)?;
        let (clusters, down) = self.reachable_clusters(true)?;
        let mut sources: Vec<ClusterSource<'_>> = clusters
            .iter()
            .map(|c| ClusterSource {
                service: self,
                cluster: c,
                caller,
                parts,
                headers: None,
            })
            .collect();
        let page = match merge_page(&mut sources, &query).await {
            Ok(page) => page,
            Err(ListingError::Source { source, .. }) => {
                return match source.downcast::<FailedAnswer>() {
                    Ok(answer) => Ok(answer.into_response()),
                    Err(other) => match other.downcast::<SwiftError>() {
                        Ok(e) => Err(*e),
                        Err(other) => Err(SwiftError::unavailable(other.to_string())),
                    },
                };
            }
            Err(e) => return Err(SwiftError::precondition_failed(e.to_string())),
        };
        let all: Vec<&HeaderMap> = sources.iter().filter_map(|s| s.headers.as_ref()).collect();
        let mut headers = all.first().map(|h| (*h).clone()).unwrap_or_default();
        sum_usage(&mut headers, all.iter().copied());
        drop(sources);
        let body = listing::encode(fmt, account.as_str(), &page);
        let mut resp = Response::new(match &body {
            Some(b) => full(b.clone()),
            None => empty(),
        });
        *resp.status_mut() = if body.is_some() {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        };
        copy_end_to_end(&headers, resp.headers_mut());
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(fmt.content_type()),
        );
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(body.as_ref().map_or(0, Vec::len)),
        );
        if format.is_none() {
            h.insert(header::VARY, HeaderValue::from_static("Accept"));
        } else {
            h.remove(header::VARY);
        }
        mark_partial(&mut resp, &down);
        Ok(resp)
    }

    // ----- info -------------------------------------------------------------------------

    /// The merged `/info` and each cluster's storage policies (cached for a minute).
    async fn info(&self) -> (Value, BTreeMap<ClusterId, Vec<String>>) {
        if let Some((at, v, p)) = self
            .inner
            .info
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if at.elapsed() < INFO_TTL {
                return (v.clone(), p.clone());
            }
        }
        let clusters = self.inner.locator.registry().snapshot();
        let calls = clusters.iter().map(|c| async move {
            let url = format!("{}/info", c.spec.endpoint.as_str().trim_end_matches('/'));
            let req = Request::get(url).body(empty()).ok()?;
            let (p, b) = self.inner.client.send_collect(req, 1 << 20).await.ok()?;
            if !p.status.is_success() {
                return None;
            }
            serde_json::from_slice::<Value>(&b)
                .ok()
                .map(|v| (c.id().clone(), v))
        });
        let infos: Vec<(ClusterId, Value)> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        let policies: BTreeMap<ClusterId, Vec<String>> = infos
            .iter()
            .map(|(id, v)| (id.clone(), crate::info::policy_names(v)))
            .collect();
        let federation = serde_json::json!({
            "clusters": clusters.iter().map(|c| serde_json::json!({
                "id": c.id().as_str(),
                "state": c.state.to_string(),
                "labels": c.spec.labels,
                "storage_policies": policies.get(c.id()),
            })).collect::<Vec<_>>(),
            "placement_policy": self.inner.locator.policy().name(),
            "attribute_prefix": "X-Container-Attr-",
        });
        let merged = crate::info::merge(
            &infos.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            federation,
        );
        if infos.len() == clusters.len() {
            *self
                .inner
                .info
                .lock()
                .unwrap_or_else(PoisonError::into_inner) =
                Some((Instant::now(), merged.clone(), policies.clone()));
        }
        (merged, policies)
    }

    async fn info_response(&self, parts: &Parts) -> Result<Response<Body>> {
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return Err(SwiftError::status(StatusCode::METHOD_NOT_ALLOWED));
        }
        let (mut info, _) = self.info().await;
        // The capabilities may be cached; the clusters' states and usage are always current.
        let snapshot = self.inner.locator.registry().snapshot();
        if let Some(list) = info
            .pointer_mut("/federation/clusters")
            .and_then(Value::as_array_mut)
        {
            for entry in list {
                let id = entry.get("id").and_then(Value::as_str).map(str::to_owned);
                if let Some(c) = snapshot
                    .iter()
                    .find(|c| Some(c.id().as_str()) == id.as_deref())
                {
                    entry["state"] = Value::String(c.state.to_string());
                    entry["capacity_bytes"] = Value::from(c.spec.capacity_bytes);
                    entry["used_bytes"] = Value::from(c.used_bytes);
                }
            }
        }
        let body = info.to_string();
        let len = body.len();
        let mut resp = Response::new(if parts.method == Method::HEAD {
            empty()
        } else {
            full(body)
        });
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        Ok(resp)
    }
}

/// A cluster's non-success answer during a listing, passed on to the client.
#[derive(Debug)]
struct FailedAnswer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl FailedAnswer {
    fn into_response(self) -> Response<Body> {
        let mut r = Response::new(full(self.body));
        *r.status_mut() = self.status;
        copy_end_to_end(&self.headers, r.headers_mut());
        r
    }
}

impl std::fmt::Display for FailedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster answered {}", self.status)
    }
}

impl std::error::Error for FailedAnswer {}

/// One cluster's account listing as a merge source.
struct ClusterSource<'a> {
    service: &'a FederationService,
    cluster: &'a ClusterStatus,
    caller: &'a Caller,
    parts: &'a Parts,
    /// The headers of the cluster's answer (usage counters, metadata).
    headers: Option<HeaderMap>,
}

#[async_trait]
impl ListingSource for ClusterSource<'_> {
    type Item = listing::ContainerInfo;

    async fn fetch(&mut self, query: &ListingQuery) -> Result<Vec<AccountEntry>, SourceError> {
        let pq = format!(
            "{}?{}",
            self.parts.uri.path(),
            listing::backend_query(query)
        );
        let (p, b) = self
            .service
            .collect(
                self.cluster,
                self.caller,
                self.parts,
                &pq,
                Method::GET,
                true,
            )
            .await?;
        if !p.status.is_success() {
            return Err(Box::new(FailedAnswer {
                status: p.status,
                headers: p.headers,
                body: b,
            }));
        }
        let entries = if p.status == StatusCode::NO_CONTENT || b.is_empty() {
            Vec::new()
        } else {
            listing::decode_json(&b)?
        };
        self.headers = Some(p.headers);
        Ok(entries)
    }
}

/// How many symlinks the proxy follows across clusters for one read (Swift's default
/// `symloop_max`).
const SYMLINK_HOPS: usize = 2;

/// The object name of an object request.
fn object_of(parts: &Parts) -> String {
    match SwiftPath::parse(parts.uri.path()) {
        Ok(SwiftPath::Object { object, .. }) => object,
        _ => String::new(),
    }
}

/// A `/container/object` path from a header (`X-Copy-From`, `Destination`), decoded and
/// validated; `None` when the header is absent.
fn header_path(headers: &HeaderMap, name: &str) -> Result<Option<(ContainerName, String)>> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let bad = || {
        SwiftError::precondition_failed(format!(
            "{name} header must be of the form <container name>/<object name>"
        ))
    };
    let text = v.to_str().map_err(|_| bad())?;
    let decoded = percent_encoding::percent_decode_str(text.trim())
        .decode_utf8()
        .map_err(|_| SwiftError::precondition_failed("Invalid UTF8 or contains NULL"))?;
    let (c, o) = decoded
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(bad)?;
    if o.is_empty() {
        return Err(bad());
    }
    let c = ContainerName::new(c).map_err(|_| bad())?;
    SwiftPath::check_object_name(o)?;
    Ok(Some((c, o.to_owned())))
}

/// Names the clusters an account answer left out (partial listings only).
fn mark_partial(resp: &mut Response<Body>, down: &[ClusterId]) {
    if down.is_empty() {
        return;
    }
    let names = down
        .iter()
        .map(ClusterId::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(v) = HeaderValue::from_str(&names) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-federation-partial"), v);
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn new_trans_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return "tx-federation".to_owned();
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("txf{hex}")
}
