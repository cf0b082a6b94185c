//! The edge cache's configuration, read from TOML, and the wiring it describes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use image_cache_core::blob::FsBlobStore;
use image_cache_core::engine::{CacheConfig, ImageCache, Reconciled, Spawner};
use image_cache_core::hash::VerifyPolicy;
use image_cache_core::meta::SqliteMetadataStore;
use image_cache_core::upstream::RequestContext;
use image_cache_core::ImageId;
use serde::Deserialize;
use stackfed_http::config::{duration, nonzero, LogFormat};
use stackfed_http::{Background, BoxError, HttpClient, Timeouts};
use url::Url;

use crate::client::CentralClient;
use crate::identity::IdentityMode;
use crate::keystone::KeystoneConfig;
use crate::service::EdgeService;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid configuration.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is unusable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The cache could not be opened.
    #[error("cannot open the {what}: {source}")]
    Open {
        /// What could not be opened.
        what: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
}

fn open_error(what: &'static str) -> impl FnOnce(BoxError) -> ConfigError {
    move |source| ConfigError::Open { what, source }
}

/// What [`EdgeConfig::build`] makes.
#[derive(Debug)]
#[non_exhaustive]
pub struct Edge {
    /// The service, ready to serve (`stackfed_http::serve`) or to wrap in layers.
    pub service: EdgeService,
    /// The owner of every background task the edge runs (prefetch workers, fills that
    /// continue after their client left, configured prefetches): call
    /// [`Background::shutdown`] after serving ends.
    pub background: Background,
    /// What reconciling the cache at start found and fixed.
    pub reconciled: Reconciled,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9292))
}
fn default_freshness() -> Duration {
    Duration::from_secs(30)
}
fn default_max_stale() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_connect() -> Duration {
    Duration::from_secs(2)
}
fn default_client_timeout() -> Duration {
    stackfed_http::DEFAULT_CLIENT_TIMEOUT
}

fn default_response() -> Duration {
    Duration::from_secs(30)
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(5)
}

/// The edge cache's configuration.
///
/// ```
/// let cfg = glance_proto::config::EdgeConfig::from_toml(r#"
///     central_url = "http://127.0.0.1:9292"
///     cache_dir = "/var/cache/glance-edge"
/// "#).unwrap();
/// assert_eq!(cfg.freshness.as_secs(), 30);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EdgeConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The central Glance.
    pub central_url: Url,
    /// Where metadata (`metadata.db`) and image data (`blobs/`) are kept.
    pub cache_dir: PathBuf,
    /// Metadata younger than this is served without asking the central (alias
    /// `freshness_seconds`; a duration is seconds or a string with units, `"30s"`).
    #[serde(
        default = "default_freshness",
        alias = "freshness_seconds",
        with = "duration"
    )]
    pub freshness: Duration,
    /// While the central is unreachable, metadata confirmed within this long is served
    /// (alias `max_stale_seconds`).
    #[serde(
        default = "default_max_stale",
        alias = "max_stale_seconds",
        with = "duration"
    )]
    pub max_stale: Duration,
    /// How requests are identified.
    #[serde(default)]
    pub identity: IdentityMode,
    /// Keystone, for `identity = "keystone"`.
    #[serde(default)]
    pub keystone: Option<KeystoneConfig>,
    /// How long to wait for a connection to the central (alias
    /// `connect_timeout_seconds`).
    #[serde(
        default = "default_connect",
        alias = "connect_timeout_seconds",
        with = "duration"
    )]
    pub connect_timeout: Duration,
    /// How long the central may take to start answering, and the longest pause in the
    /// middle of an answer unless `read_timeout` is set (a central that stalls longer is
    /// treated as unreachable; alias `response_timeout_seconds`).
    #[serde(
        default = "default_response",
        alias = "response_timeout_seconds",
        with = "duration"
    )]
    pub response_timeout: Duration,
    /// The longest silence while the central sends a body (image data, a document):
    /// each read waits this long at most, so a central that stops sending in the middle
    /// of an image fails the fill instead of holding it and its clients (default: the
    /// `response_timeout`).
    #[serde(default, deserialize_with = "duration::some")]
    pub read_timeout: Option<Duration>,
    /// When the central's image data breaks off or stalls in the middle of a fill, how
    /// many times in a row the fill asks for the rest (`Range: bytes=<have>-`, keeping
    /// the bytes it has) without receiving a byte before it gives up (default 3; 0:
    /// never).
    #[serde(default = "default_fill_resume_attempts")]
    pub fill_resume_attempts: u32,
    /// The wait before a fill's first resume, doubling with each attempt in a row
    /// (default 1 s).
    #[serde(default = "default_fill_resume_backoff", with = "duration")]
    pub fill_resume_backoff: Duration,
    /// After a fill fails on the edge's own disk (full, read-only, failing), how long
    /// misses stream through from the central uncached before a fill is tried again
    /// (default 60 s).
    #[serde(default = "default_local_fault_pause", with = "duration")]
    pub local_fault_pause: Duration,
    /// Which checksums image data is verified against before it is cached or its last
    /// byte sent: `strongest` (default; glanceclient's rule: the image's `os_hash_value`
    /// with `os_hash_algo` when it has one of a known algorithm, else its MD5
    /// `checksum`) or `all` (both).
    #[serde(default)]
    pub verify: VerifyPolicy,
    /// How long a client's request body (an image upload or stage forwarded to the
    /// central) may stay silent (Swift's and Glance's `client_timeout`, default 60 s):
    /// then the request is answered 408 and the upload to the central aborted.
    #[serde(default = "default_client_timeout", with = "duration")]
    pub client_timeout: Duration,
    /// The most bytes of image data to keep (no limit when absent). Enforced before
    /// anything is written: least recently used unpinned images are evicted; an image
    /// that cannot fit streams through uncached.
    #[serde(default)]
    pub max_cache_bytes: Option<u64>,
    /// How many prefetches run at once.
    #[serde(default = "default_prefetch_concurrency")]
    pub prefetch_concurrency: usize,
    /// How many image records the edge keeps in memory in front of its metadata database
    /// (the most recently read or written; each version encoded once and served to every
    /// caller allowed to see it). 0 keeps none.
    #[serde(default = "default_recent_records")]
    pub recent_records: usize,
    /// Images to fetch into the cache at start: `{ id = "…" }` or
    /// `{ properties = { visibility = "public", os_distro = "ubuntu" } }`.
    #[serde(default)]
    pub prefetch: Vec<PrefetchSpec>,
    /// Time between background probes of the central's reachability (what
    /// `/healthcheck` reports without asking the central itself).
    #[serde(default = "default_probe_interval", with = "duration")]
    pub probe_interval: Duration,
    /// PEM file of CA certificates trusted for an `https://` central and Keystone,
    /// besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// When this file exists, `/healthcheck` answers 503 `DISABLED BY FILE`, so load
    /// balancers drain the edge.
    #[serde(default)]
    pub disable_path: Option<PathBuf>,
    /// Where Prometheus scrapes `/metrics` (a separate listener; none when absent).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Access log and log format: `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_local_fault_pause() -> Duration {
    Duration::from_secs(60)
}

fn default_fill_resume_attempts() -> u32 {
    3
}
fn default_fill_resume_backoff() -> Duration {
    Duration::from_secs(1)
}

fn default_prefetch_concurrency() -> usize {
    2
}

fn default_recent_records() -> usize {
    CacheConfig::default().recent_records
}

/// What to prefetch at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PrefetchSpec {
    /// One image.
    #[serde(default)]
    pub id: Option<String>,
    /// Every image with these properties (`visibility` included).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

impl EdgeConfig {
    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text)?;
        let invalid = |e: stackfed_http::config::Invalid| ConfigError::Invalid(e.to_string());
        nonzero("connect_timeout", c.connect_timeout).map_err(invalid)?;
        nonzero("response_timeout", c.response_timeout).map_err(invalid)?;
        nonzero("client_timeout", c.client_timeout).map_err(invalid)?;
        if let Some(t) = c.read_timeout {
            nonzero("read_timeout", t).map_err(invalid)?;
        }
        nonzero("probe_interval", c.probe_interval).map_err(invalid)?;
        stackfed_http::config::http_endpoint("central_url", &c.central_url).map_err(invalid)?;
        if c.prefetch_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "prefetch_concurrency: must be at least 1".into(),
            ));
        }
        match (c.identity, &c.keystone) {
            (IdentityMode::Keystone, Some(k)) => {
                k.check().map_err(ConfigError::Invalid)?;
                stackfed_http::config::http_endpoint("keystone.auth_url", &k.auth_url)
                    .map_err(invalid)?;
                if let Some(u) = &k.www_authenticate_uri {
                    stackfed_http::config::http_endpoint("keystone.www_authenticate_uri", u)
                        .map_err(invalid)?;
                }
            }
            (IdentityMode::Keystone, None) => {
                return Err(ConfigError::Invalid(
                    "identity = \"keystone\" needs a [keystone] table".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "a [keystone] table needs identity = \"keystone\"".into(),
                ))
            }
            (_, None) => {}
        }
        for p in &c.prefetch {
            match (&p.id, p.properties.is_empty()) {
                (Some(id), true) if image_cache_core::ImageId::parse(id).is_some() => {}
                (None, false) => {}
                _ => {
                    return Err(ConfigError::Invalid(
                        "each prefetch entry needs either a valid id or properties".into(),
                    ))
                }
            }
        }
        Ok(c)
    }

    /// Reads and checks a configuration file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let text =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?;
        Self::from_toml(&text)
    }

    /// Reads the secrets the configuration names (the Keystone service user's password,
    /// from the TOML, a file or the environment) as the start does, without contacting
    /// anything: for `--check-config`.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        if let Some(k) = &self.keystone {
            k.credentials()
                .and_then(|c| c.auth_body().map_err(|e| format!("keystone: {e}")))
                .map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// Opens the stores (reconciling them after a crash), builds the service, and starts
    /// the background work (prefetch workers, configured prefetches) on a
    /// [`Background`] it returns with the service.
    pub async fn build(&self) -> Result<Edge, ConfigError> {
        // The password is read first: a missing secret fails before anything is opened.
        let keystone = self
            .keystone
            .as_ref()
            .map(|k| k.build_with_ca_file(self.ca_file.as_deref()))
            .transpose()
            .map_err(ConfigError::Invalid)?;
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| open_error("cache directory")(e.into()))?;
        let meta = SqliteMetadataStore::open(self.cache_dir.join("metadata.db"))
            .map_err(|e| open_error("metadata store")(e.into()))?;
        let blobs = FsBlobStore::open(self.cache_dir.join("blobs"))
            .map_err(|e| open_error("blob store")(e.into()))?;
        let http = HttpClient::with_ca_file(
            Timeouts {
                connect: self.connect_timeout,
                response: self.response_timeout,
                idle: self.read_timeout.unwrap_or(self.response_timeout),
            },
            self.ca_file.as_deref(),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let central = CentralClient::with_client(self.central_url.clone(), http);
        let cfg = CacheConfig::default()
            .freshness(self.freshness)
            .max_stale(self.max_stale)
            .max_bytes(self.max_cache_bytes)
            .prefetch_concurrency(self.prefetch_concurrency)
            .recent_records(self.recent_records)
            .resume(self.fill_resume_attempts, self.fill_resume_backoff)
            .local_fault_pause(self.local_fault_pause)
            .verify(self.verify);
        let background = Background::new();
        let owner = background.clone();
        let spawner: Arc<dyn Spawner> = Arc::new(move |name, task| owner.spawn(name, task));
        let (cache, reconciled) = ImageCache::open(
            Arc::new(central.clone()),
            Arc::new(meta),
            Arc::new(blobs),
            cfg,
            spawner,
        )
        .await
        .map_err(|e| open_error("cache")(e.into()))?;
        self.start_prefetch(&cache, &background);
        // What `/healthcheck` reports about the central, kept current between client
        // requests (which update it too).
        // The cache's size and budget as gauges, refreshed at the same pace.
        if let Some(budget) = self.max_cache_bytes {
            metrics::gauge!("stackfed_cache_budget_bytes").set(budget as f64);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (probe, cache) = (central.clone(), cache.clone());
            background.spawn_every(&rt, "central probe", self.probe_interval, move || {
                let (probe, cache) = (probe.clone(), cache.clone());
                async move {
                    if let Ok((images, bytes)) = cache.usage().await {
                        metrics::gauge!("stackfed_cache_images").set(images as f64);
                        metrics::gauge!("stackfed_cache_used_bytes").set(bytes as f64);
                    }
                    let _ = probe.reachable().await;
                }
            });
        }
        Ok(Edge {
            service: match keystone {
                Some(auth) => EdgeService::with_keystone(cache, central, auth),
                None => EdgeService::new(cache, central, self.identity),
            }
            .with_disable_path(self.disable_path.clone()),
            background,
            reconciled,
        })
    }

    /// Queues the configured prefetches (a filter is listed in the background; progress
    /// is logged).
    fn start_prefetch(&self, cache: &ImageCache, background: &Background) {
        let ctx = RequestContext::admin();
        for p in &self.prefetch {
            if let Some(id) = p.id.as_deref().and_then(ImageId::parse) {
                cache.queue(&id, &ctx);
                continue;
            }
            let filters: Vec<(String, String)> = p.properties.clone().into_iter().collect();
            let (cache, ctx) = (cache.clone(), ctx.clone());
            background.spawn("configured prefetch", async move {
                if let Err(e) = cache.prefetch_matching(&filters, &ctx).await {
                    tracing::warn!(error = %e, "configured prefetch failed");
                }
            });
        }
    }
}
