//! The proxy's configuration, read from TOML, and the wiring it describes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use federation_core::attrs::{AttributeStore, MemoryStore, SqliteStore};
use federation_core::placement::PolicyConfig;
use federation_core::{ClusterRegistry, ClusterStatus, Locator};
use serde::Deserialize;

use stackfed_http::{Background, HttpClient, Timeouts};

use crate::cluster::health::HealthProbe;
use crate::cluster::usage::UsageProbe;
use crate::cluster::{Clusters, SwiftCluster};
use crate::registry::{SwiftAttributeStore, SwiftStoreConfig};
use crate::service::{AuthMode, FederationService};

mod cluster;
pub use cluster::ClusterConfig;
use stackfed_http::config::{duration, nonzero, LogFormat};

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
    /// The text is not a valid configuration.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is unusable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Where container records are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StoreConfig {
    /// A SQLite file (the default: `federation.db` in the working directory).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// In memory: lost at exit.
    Memory,
    /// Objects in a registry container on a Swift cluster, shared by many proxies
    /// (see [`crate::registry`]).
    Swift(SwiftStoreConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Sqlite {
            path: PathBuf::from("federation.db"),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_cache_capacity() -> usize {
    federation_core::locator::DEFAULT_CACHE_CAPACITY
}

fn default_cache_ttl() -> Duration {
    federation_core::locator::DEFAULT_CACHE_TTL
}

fn default_connect() -> Duration {
    Duration::from_secs(3)
}

fn default_response() -> Duration {
    Duration::from_secs(60)
}

/// The whole proxy configuration.
///
/// ```
/// let cfg = swift_proto::config::ProxyConfig::from_toml(r#"
///     listen = "127.0.0.1:0"
///     auth = "tempauth"
///     store = { kind = "memory" }
///     [[clusters]]
///     id = "east"
///     endpoint = "http://127.0.0.1:8081"
///     capacity_bytes = 1000000
///     [policy]
///     kind = "most-free"
/// "#).unwrap();
/// assert_eq!(cfg.clusters.len(), 1);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How credentials are handled.
    #[serde(default)]
    pub auth: AuthMode,
    /// The attribute store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Records cached by the locator.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: usize,
    /// How long a cached record is trusted (`cache_ttl`, or `cache_ttl_seconds`; a
    /// duration is seconds or a string with units such as `"10s"`).
    #[serde(
        default = "default_cache_ttl",
        alias = "cache_ttl_seconds",
        with = "duration"
    )]
    pub cache_ttl: Duration,
    /// How long to wait for a connection to a cluster (alias `connect_timeout_seconds`).
    #[serde(
        default = "default_connect",
        alias = "connect_timeout_seconds",
        with = "duration"
    )]
    pub connect_timeout: Duration,
    /// How long a cluster may take to start answering, and the longest pause inside an
    /// answer (alias `response_timeout_seconds`).
    #[serde(
        default = "default_response",
        alias = "response_timeout_seconds",
        with = "duration"
    )]
    pub response_timeout: Duration,
    /// The clusters.
    pub clusters: Vec<ClusterConfig>,
    /// Time between health probes of every cluster, 0 disables the probe (alias
    /// `probe_interval_seconds`).
    #[serde(
        default = "default_probe_interval",
        alias = "probe_interval_seconds",
        with = "duration"
    )]
    pub probe_interval: Duration,
    /// Consecutive failed probes before a cluster is marked offline (default 2: one
    /// lost probe is not an outage).
    #[serde(default = "default_probe_fall")]
    pub probe_fall: u32,
    /// Consecutive good probes before an offline cluster is back (default 1: a cluster
    /// that answers is used again at once).
    #[serde(default = "default_probe_rise")]
    pub probe_rise: u32,
    /// Time between usage refreshes of the clusters with `recon_endpoints`, 0 disables
    /// (alias `usage_interval_seconds`).
    #[serde(
        default = "default_usage_interval",
        alias = "usage_interval_seconds",
        with = "duration"
    )]
    pub usage_interval: Duration,
    /// PEM file of CA certificates trusted for `https://` clusters (and the Swift
    /// store), besides the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// When this file exists, `/healthcheck` answers 503 `DISABLED BY FILE` (Swift's
    /// `disable_path`), so load balancers drain the proxy.
    #[serde(default)]
    pub disable_path: Option<PathBuf>,
    /// Where Prometheus scrapes `/metrics` (a separate listener; none when absent).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Access log and log format: `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// With a cluster offline, answer account listings from the others and name the
    /// missing clusters in `X-Federation-Partial`, instead of 503.
    #[serde(default)]
    pub listing_partial: bool,
    /// The placement policy.
    #[serde(default)]
    pub policy: PolicyConfig,
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_probe_fall() -> u32 {
    2
}

fn default_probe_rise() -> u32 {
    1
}

fn default_usage_interval() -> Duration {
    Duration::from_secs(30)
}

impl ProxyConfig {
    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)?;
        cfg.policy
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if cfg.clusters.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one cluster is needed".into(),
            ));
        }
        let invalid = |e: stackfed_http::config::Invalid| ConfigError::Invalid(e.to_string());
        nonzero("connect_timeout", cfg.connect_timeout).map_err(invalid)?;
        nonzero("response_timeout", cfg.response_timeout).map_err(invalid)?;
        if cfg.probe_fall == 0 || cfg.probe_rise == 0 {
            return Err(ConfigError::Invalid(
                "probe_fall and probe_rise must be at least 1".into(),
            ));
        }
        if let StoreConfig::Swift(swift) = &cfg.store {
            stackfed_http::config::http_endpoint("store.endpoint", &swift.endpoint)
                .map_err(invalid)?;
        }
        Ok(cfg)
    }

    /// Reads and checks a configuration file.
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let text =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?;
        Self::from_toml(&text)
    }

    /// Builds the service this configuration describes: opens the store and, inside a
    /// Tokio runtime, starts the health and usage probes. The returned [`Background`]
    /// owns the probes: `shutdown().await` stops them.
    pub fn build(&self) -> Result<(FederationService, Background), ConfigError> {
        let statuses = self
            .clusters
            .iter()
            .map(|c| {
                ClusterStatus::new(c.spec.clone())
                    .with_state(c.state)
                    .with_used_bytes(c.used_bytes)
            })
            .collect();
        let registry = Arc::new(
            ClusterRegistry::from_statuses(statuses)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?,
        );
        let client = HttpClient::with_ca_file(
            Timeouts {
                connect: self.connect_timeout,
                response: self.response_timeout,
                idle: self.response_timeout,
            },
            self.ca_file.as_deref(),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let clusters = Clusters::new(
            self.clusters
                .iter()
                .map(|c| SwiftCluster::from_spec(&c.spec, &c.recon_endpoints, client.clone())),
        );
        let store: Arc<dyn AttributeStore> = match &self.store {
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
            StoreConfig::Sqlite { path } => Arc::new(
                SqliteStore::open(path)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?,
            ),
            StoreConfig::Swift(swift) => {
                Arc::new(SwiftAttributeStore::new(swift.clone(), client.clone()))
            }
        };
        let locator = Locator::with_cache(
            store,
            registry.clone(),
            self.policy.build().into(),
            self.cache_capacity,
            self.cache_ttl,
        );
        let background = Background::new();
        let readiness = crate::cluster::health::Readiness::default();
        let runtime = || {
            tokio::runtime::Handle::try_current()
                .map_err(|_| ConfigError::Invalid("the cluster probes need a Tokio runtime".into()))
        };
        if !self.probe_interval.is_zero() {
            let probe = HealthProbe::new(
                registry.clone(),
                clusters.clone(),
                self.clusters
                    .iter()
                    .map(|c| (c.spec.id.clone(), c.state))
                    .collect(),
                Duration::from_secs(1),
            )
            .with_hysteresis(self.probe_fall, self.probe_rise)
            .with_readiness(readiness.clone(), locator.store().clone());
            background.spawn_every(
                &runtime()?,
                "health probe",
                self.probe_interval,
                move || {
                    let probe = probe.clone();
                    async move { probe.probe_once().await }
                },
            );
        }
        let usage = UsageProbe::new(registry, clusters.clone());
        if !self.usage_interval.is_zero() && usage.has_work() {
            background.spawn_every(&runtime()?, "usage probe", self.usage_interval, move || {
                let usage = usage.clone();
                async move { usage.refresh_once().await }
            });
        }
        let service = FederationService::new(Arc::new(locator), clusters, self.auth)
            .with_partial_listings(self.listing_partial)
            .with_health(Some(readiness), self.disable_path.clone());
        Ok((service, background))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_configurations() {
        assert!(ProxyConfig::from_toml("clusters = []").is_err());
        assert!(ProxyConfig::from_toml("bogus = 1\nclusters = []").is_err());
        let neg = r#"
            cache_ttl_seconds = -1
            [[clusters]]
            id = "a"
            endpoint = "http://127.0.0.1:1"
            capacity_bytes = 1
        "#;
        assert!(ProxyConfig::from_toml(neg).is_err());
    }

    #[test]
    fn reads_a_swift_store() {
        let text = r#"
            store = { kind = "swift", endpoint = "http://127.0.0.1:8081", user = "reg:admin", key = "k", settle_ms = 50 }
            [[clusters]]
            id = "a"
            endpoint = "http://127.0.0.1:1"
            capacity_bytes = 1
        "#;
        let cfg = ProxyConfig::from_toml(text).unwrap();
        let StoreConfig::Swift(swift) = &cfg.store else {
            panic!("{:?}", cfg.store)
        };
        assert_eq!(swift.user, "reg:admin");
        assert_eq!(swift.container, "federation-registry");
        assert_eq!(swift.settle_ms, 50);
        assert!(
            !format!("{swift:?}").contains("\"k\""),
            "the key is not logged"
        );
        let typo = text.replace("settle_ms", "settle");
        assert!(ProxyConfig::from_toml(&typo).is_err());
    }
}
