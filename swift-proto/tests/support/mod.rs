//! Test support: fake Swift clusters and a federation proxy in front of them, called
//! in-process through `FederationService::handle`.
//!
//! [`Federation::start_with`] is the one place that builds the service: when the
//! service's constructor changes, only it needs adapting.
#![allow(dead_code, unreachable_pub)]

pub mod fake_cluster;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use federation_core::attrs::MemoryStore;
use federation_core::placement::PolicyConfig;
use federation_core::{ClusterId, ClusterRegistry, ClusterSpec, Locator};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use stackfed_http::{HttpClient, Timeouts};
use swift_proto::cluster::health::HealthProbe;
use swift_proto::cluster::usage::UsageProbe;
use swift_proto::cluster::{Clusters, SwiftCluster};
use swift_proto::service::AuthMode;
use swift_proto::FederationService;

pub use fake_cluster::{FakeCluster, DEFAULT_ACCOUNT, DEFAULT_KEY, DEFAULT_USER};

/// The names of the clusters, in configuration order (`start(n)` uses the first `n`).
pub const CLUSTER_NAMES: [&str; 3] = ["east", "west", "north"];
/// The `Host` the test client sends to the proxy.
pub const PROXY_HOST: &str = "proxy.test";
/// Every cluster's configured capacity (equal: unpinned placement is the policy's call).
pub const CAPACITY: u64 = 1 << 40;
/// How long one call to the proxy may take before the test fails.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Timeouts for the proxy's backend client in most tests.
pub fn default_timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_secs(10),
        idle: Duration::from_secs(10),
    }
}

/// Fake clusters with a federation proxy in front.
#[derive(Debug)]
pub struct Federation {
    /// The clusters, in configuration order.
    pub clusters: Vec<FakeCluster>,
    /// The proxy.
    pub service: FederationService,
    token: Mutex<Option<String>>,
}

impl Federation {
    /// `n` fake clusters (named after [`CLUSTER_NAMES`]) and a proxy over them.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, default_timeouts()).await
    }

    /// As [`start`](Self::start), with the proxy's backend client using `timeouts`.
    ///
    /// THE one place that constructs the service (tempauth, in-memory attribute store,
    /// the default placement policy: pin, else service level, else most free; no
    /// health or usage probes).
    pub async fn start_with(n: usize, timeouts: Timeouts) -> Self {
        assert!(
            (1..=CLUSTER_NAMES.len()).contains(&n),
            "1 to {} clusters",
            CLUSTER_NAMES.len()
        );
        let mut clusters = Vec::new();
        for name in &CLUSTER_NAMES[..n] {
            clusters.push(FakeCluster::start(name).await);
        }
        let specs = clusters
            .iter()
            .map(|c| {
                ClusterSpec::new(
                    ClusterId::new(c.name()).expect("a valid cluster id"),
                    c.endpoint(),
                    CAPACITY,
                )
            })
            .collect();
        let registry = Arc::new(ClusterRegistry::new(specs).expect("a valid registry"));
        let locator = Locator::new(
            Arc::new(MemoryStore::new()),
            registry,
            PolicyConfig::default().build().into(),
        );
        let http = HttpClient::new(timeouts);
        // Each fake is its own storage node too (it answers /recon/diskusage).
        let swift = Clusters::new(clusters.iter().map(|c| {
            let id = ClusterId::new(c.name()).expect("a valid cluster id");
            SwiftCluster::new(id, &c.endpoint(), &[c.endpoint()], http.clone())
        }));
        let service = FederationService::new(Arc::new(locator), swift, AuthMode::Tempauth);
        Self {
            clusters,
            service,
            token: Mutex::new(None),
        }
    }

    /// Another proxy over the same clusters and the same attribute store (as two
    /// proxy processes sharing one database), with its own caches and guards.
    pub fn another_proxy(&self) -> FederationService {
        let locator = Locator::new(
            self.service.locator().store().clone(),
            self.service.locator().registry().clone(),
            PolicyConfig::default().build().into(),
        );
        FederationService::new(
            Arc::new(locator),
            self.service.clusters().clone(),
            AuthMode::Tempauth,
        )
    }

    /// A health probe over the proxy's clusters, as `config::build` starts one (run it
    /// with `probe_once`).
    pub fn health_probe(&self) -> HealthProbe {
        HealthProbe::new(
            self.service.locator().registry().clone(),
            self.service.clusters().clone(),
            HashMap::new(),
            Duration::from_secs(1),
        )
    }

    /// A usage probe reading every cluster's `/recon/diskusage` (one node per cluster:
    /// the fake itself), as `config::build` starts one (run it with `refresh_once`).
    pub fn usage_probe(&self) -> UsageProbe {
        UsageProbe::new(
            self.service.locator().registry().clone(),
            self.service.clusters().clone(),
        )
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> &FakeCluster {
        self.clusters
            .iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
    }

    /// The names of the clusters that hold `container` of [`DEFAULT_ACCOUNT`].
    pub fn holders(&self, container: &str) -> Vec<&str> {
        self.clusters
            .iter()
            .filter(|c| c.has_container(DEFAULT_ACCOUNT, container))
            .map(FakeCluster::name)
            .collect()
    }

    /// Logs in through the proxy as [`DEFAULT_USER`]; later calls carry the token.
    pub async fn login(&self) -> Reply {
        let reply = self
            .request("GET", "/auth/v1.0")
            .anonymous()
            .header("x-auth-user", DEFAULT_USER)
            .header("x-auth-key", DEFAULT_KEY)
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login: {reply:?}");
        let token = reply
            .header("x-auth-token")
            .expect("a token from the proxy")
            .to_owned();
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
        reply
    }

    /// The proxy token from [`login`](Self::login).
    pub fn token(&self) -> Option<String> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A request to the proxy (with the session token once logged in).
    pub fn request(&self, method: &str, path: &str) -> Call<'_> {
        Call {
            fed: self,
            method: Method::from_bytes(method.as_bytes()).expect("a method"),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            body_set: false,
            anonymous: false,
        }
    }

    /// `/v1/AUTH_test/<rest>` (`/v1/AUTH_test<rest>` when `rest` is empty or a query).
    pub fn path(rest: &str) -> String {
        if rest.is_empty() || rest.starts_with('?') {
            format!("/v1/{DEFAULT_ACCOUNT}{rest}")
        } else {
            format!("/v1/{DEFAULT_ACCOUNT}/{rest}")
        }
    }

    /// Creates a container through the proxy, pinned to `pin` if given; asserts 201.
    pub async fn put_container(&self, name: &str, pin: Option<&str>) -> Reply {
        let mut call = self.request("PUT", &Self::path(name));
        if let Some(p) = pin {
            call = call.header("x-container-attr-cluster", p);
        }
        let reply = call.send().await;
        assert_eq!(reply.status, StatusCode::CREATED, "PUT {name}: {reply:?}");
        reply
    }

    /// Writes an object through the proxy; asserts 201.
    pub async fn put_object(&self, container: &str, object: &str, body: &'static [u8]) -> Reply {
        let reply = self
            .request("PUT", &Self::path(&format!("{container}/{object}")))
            .body(body)
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "PUT {container}/{object}: {reply:?}"
        );
        reply
    }
}

/// A request being built.
#[derive(Debug)]
pub struct Call<'a> {
    fed: &'a Federation,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// Whether a body (possibly empty) was given: it is sent with a Content-Length, as
    /// clients do.
    body_set: bool,
    anonymous: bool,
}

impl Call<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.body_set = true;
        self
    }

    /// Sends no token even when logged in.
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Sends it to the proxy and reads the whole answer.
    pub async fn send(self) -> Reply {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("host", PROXY_HOST);
        if self.body_set || !self.body.is_empty() {
            req = req.header("content-length", self.body.len());
        }
        if !self.anonymous {
            if let Some(t) = self.fed.token() {
                req = req.header("x-auth-token", t);
            }
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(self.body)).expect("a request");
        let what = format!("{} {}", self.method, self.path);
        let call = async {
            let resp = self.fed.service.handle(req).await;
            let (parts, body) = resp.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => panic!("{what}: the answer's body broke off: {e}"),
            };
            Reply {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(CALL_DEADLINE, call)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {CALL_DEADLINE:?}"))
    }
}

/// The proxy's whole answer.
#[derive(Clone)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its HTTP version.
    pub version: http::Version,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Reply {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `name`s of a JSON listing.
    pub fn names(&self) -> Vec<String> {
        self.json()
            .as_array()
            .expect("a JSON listing")
            .iter()
            .map(|e| {
                e.get("name")
                    .or_else(|| e.get("subdir"))
                    .and_then(|n| n.as_str())
                    .expect("a name")
                    .to_owned()
            })
            .collect()
    }
}
