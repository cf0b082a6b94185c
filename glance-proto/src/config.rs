//! The edge cache's configuration, read from TOML, and the wiring it describes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use image_cache_core::blob::FsBlobStore;
use image_cache_core::engine::{CacheConfig, ImageCache, Reconciled, Spawner};
use image_cache_core::meta::SqliteMetadataStore;
use image_cache_core::upstream::RequestContext;
use image_cache_core::ImageId;
use serde::Deserialize;
use stackfed_http::{Background, BoxError, Timeouts};
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
fn default_freshness() -> f64 {
    30.0
}
fn default_max_stale() -> f64 {
    7.0 * 24.0 * 3600.0
}
fn default_connect() -> f64 {
    2.0
}
fn default_response() -> f64 {
    30.0
}

/// The edge cache's configuration.
///
/// ```
/// let cfg = glance_proto::config::EdgeConfig::from_toml(r#"
///     central_url = "http://127.0.0.1:9292"
///     cache_dir = "/var/cache/glance-edge"
/// "#).unwrap();
/// assert_eq!(cfg.freshness_seconds, 30.0);
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
    /// Metadata younger than this is served without asking the central.
    #[serde(default = "default_freshness")]
    pub freshness_seconds: f64,
    /// While the central is unreachable, metadata confirmed within this long is served.
    #[serde(default = "default_max_stale")]
    pub max_stale_seconds: f64,
    /// How requests are identified.
    #[serde(default)]
    pub identity: IdentityMode,
    /// Keystone, for `identity = "keystone"`.
    #[serde(default)]
    pub keystone: Option<KeystoneConfig>,
    /// Seconds to connect to the central.
    #[serde(default = "default_connect")]
    pub connect_timeout_seconds: f64,
    /// Seconds for the central to start answering, and the longest pause in the middle
    /// of an answer (a central that stalls longer is treated as unreachable).
    #[serde(default = "default_response")]
    pub response_timeout_seconds: f64,
    /// The most bytes of image data to keep (no limit when absent). Enforced before
    /// anything is written: least recently used unpinned images are evicted; an image
    /// that cannot fit streams through uncached.
    #[serde(default)]
    pub max_cache_bytes: Option<u64>,
    /// How many prefetches run at once.
    #[serde(default = "default_prefetch_concurrency")]
    pub prefetch_concurrency: usize,
    /// Images to fetch into the cache at start: `{ id = "…" }` or
    /// `{ properties = { visibility = "public", os_distro = "ubuntu" } }`.
    #[serde(default)]
    pub prefetch: Vec<PrefetchSpec>,
}

fn default_prefetch_concurrency() -> usize {
    2
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

fn secs(name: &str, v: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        ConfigError::Invalid(format!("{name} must be a non-negative number of seconds"))
    })
}

impl EdgeConfig {
    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text)?;
        secs("freshness_seconds", c.freshness_seconds)?;
        secs("max_stale_seconds", c.max_stale_seconds)?;
        secs("connect_timeout_seconds", c.connect_timeout_seconds)?;
        secs("response_timeout_seconds", c.response_timeout_seconds)?;
        match (c.identity, &c.keystone) {
            (IdentityMode::Keystone, Some(k)) => k.check().map_err(ConfigError::Invalid)?,
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

    /// Opens the stores (reconciling them after a crash), builds the service, and starts
    /// the background work (prefetch workers, configured prefetches) on a
    /// [`Background`] it returns with the service.
    pub async fn build(&self) -> Result<Edge, ConfigError> {
        // The password is read first: a missing secret fails before anything is opened.
        let keystone = self
            .keystone
            .as_ref()
            .map(KeystoneConfig::build)
            .transpose()
            .map_err(ConfigError::Invalid)?;
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| open_error("cache directory")(e.into()))?;
        let meta = SqliteMetadataStore::open(self.cache_dir.join("metadata.db"))
            .map_err(|e| open_error("metadata store")(e.into()))?;
        let blobs = FsBlobStore::open(self.cache_dir.join("blobs"))
            .map_err(|e| open_error("blob store")(e.into()))?;
        let response = secs("response_timeout_seconds", self.response_timeout_seconds)?;
        let central = CentralClient::new(
            self.central_url.clone(),
            Timeouts {
                connect: secs("connect_timeout_seconds", self.connect_timeout_seconds)?,
                response,
                idle: response,
            },
        );
        let cfg = CacheConfig::default()
            .freshness(secs("freshness_seconds", self.freshness_seconds)?)
            .max_stale(secs("max_stale_seconds", self.max_stale_seconds)?)
            .max_bytes(self.max_cache_bytes)
            .prefetch_concurrency(self.prefetch_concurrency);
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
        Ok(Edge {
            service: match keystone {
                Some(auth) => EdgeService::with_keystone(cache, central, auth),
                None => EdgeService::new(cache, central, self.identity),
            },
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
