//! The edge cache's configuration, read from TOML, and the wiring it describes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use image_cache_core::blob::FsBlobStore;
use image_cache_core::engine::{CacheConfig, ImageCache, Reconciled};
use image_cache_core::meta::SqliteMetadataStore;
use serde::Deserialize;
use url::Url;

use crate::client::CentralClient;
use crate::service::{EdgeService, IdentityMode};

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
    /// A value is unusable, or the stores could not be opened.
    #[error("invalid configuration: {0}")]
    Invalid(String),
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
    /// Seconds to connect to the central.
    #[serde(default = "default_connect")]
    pub connect_timeout_seconds: f64,
    /// Seconds for the central to start answering.
    #[serde(default = "default_response")]
    pub response_timeout_seconds: f64,
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
        Ok(c)
    }

    /// Reads and checks a configuration file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let text =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?;
        Self::from_toml(&text)
    }

    /// Opens the stores (reconciling them after a crash) and builds the service.
    pub async fn build(&self) -> Result<(EdgeService, Reconciled), ConfigError> {
        std::fs::create_dir_all(&self.cache_dir)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", self.cache_dir.display())))?;
        let meta = SqliteMetadataStore::open(self.cache_dir.join("metadata.db"))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let blobs = FsBlobStore::open(self.cache_dir.join("blobs"))
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let central = CentralClient::new(
            self.central_url.clone(),
            secs("connect_timeout_seconds", self.connect_timeout_seconds)?,
            secs("response_timeout_seconds", self.response_timeout_seconds)?,
        );
        let cfg = CacheConfig::default()
            .freshness(secs("freshness_seconds", self.freshness_seconds)?)
            .max_stale(secs("max_stale_seconds", self.max_stale_seconds)?);
        let (cache, report) = ImageCache::open(
            Arc::new(central.clone()),
            Arc::new(meta),
            Arc::new(blobs),
            cfg,
        )
        .await
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok((EdgeService::new(cache, central, self.identity), report))
    }
}
