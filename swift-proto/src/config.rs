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
use crate::cluster::{Clusters, KeystoneAuth, KeystoneConfig, Session, SwiftCluster};
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// A PostgreSQL database shared by many proxies (feature `postgres`): real
    /// compare-and-set, change notifications that keep every proxy's cache coherent,
    /// and the proxies' shared sessions. Needs [`ProxyConfig::open`].
    #[cfg(feature = "postgres")]
    Postgres(federation_core::attrs::PostgresConfig),
    /// A MySQL or MariaDB database (or Galera cluster) shared by many proxies (feature
    /// `mysql`): real compare-and-set, a polled change log that keeps every proxy's
    /// cache coherent, and the proxies' shared sessions. Needs [`ProxyConfig::open`].
    #[cfg(feature = "mysql")]
    Mysql(federation_core::attrs::MysqlConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::Sqlite {
            path: PathBuf::from("federation.db"),
        }
    }
}

/// `auth`: a mode's name (`"tempauth"`, `"pass-through"`) or a table with `kind`
/// (`{ kind = "keystone", auth_url = ..., ... }`, see [`KeystoneConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthConfig {
    /// Tempauth sessions or pass-through.
    Mode(AuthMode),
    /// Clusters behind one Keystone; the proxy's own credentials there.
    Keystone(Box<KeystoneConfig>),
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self::Mode(AuthMode::default())
    }
}

impl AuthConfig {
    /// The service's mode.
    pub fn mode(&self) -> AuthMode {
        match self {
            Self::Mode(m) => *m,
            Self::Keystone(_) => AuthMode::Keystone,
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum AuthTable {
    Tempauth,
    PassThrough,
    Keystone(Box<KeystoneConfig>),
}

impl<'de> Deserialize<'de> for AuthConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IntoDeserializer};
        // A name, or a table: decided first, so that each form reports its own errors.
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => match AuthMode::deserialize(IntoDeserializer::<
                serde::de::value::Error,
            >::into_deserializer(
                s
            )) {
                Ok(AuthMode::Keystone) => Err(D::Error::custom(
                    "auth = \"keystone\" needs a table: { kind = \"keystone\", auth_url = ... }",
                )),
                Ok(m) => Ok(Self::Mode(m)),
                Err(e) => Err(D::Error::custom(e)),
            },
            v @ toml::Value::Table(_) => {
                Ok(match AuthTable::deserialize(v).map_err(D::Error::custom)? {
                    AuthTable::Tempauth => Self::Mode(AuthMode::Tempauth),
                    AuthTable::PassThrough => Self::Mode(AuthMode::PassThrough),
                    AuthTable::Keystone(k) => Self::Keystone(k),
                })
            }
            _ => Err(D::Error::custom(
                "auth is a mode's name or a table with `kind`",
            )),
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

fn default_client_timeout() -> Duration {
    stackfed_http::DEFAULT_CLIENT_TIMEOUT
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
    /// How credentials are handled (see [`AuthConfig`]).
    #[serde(default)]
    pub auth: AuthConfig,
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
    /// How long a client's request body may stay silent (Swift's `client_timeout`,
    /// default 60 s): then the request is answered 408 and what was being written to a
    /// cluster is aborted, so no partial object appears.
    #[serde(default = "default_client_timeout", with = "duration")]
    pub client_timeout: Duration,
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
    /// Live container migration and its admin API (`[migration]`; off when absent).
    #[serde(default)]
    pub migration: Option<crate::migrate::MigrationConfig>,
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
        let mut cfg: Self = toml::from_str(text)?;
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
        nonzero("client_timeout", cfg.client_timeout).map_err(invalid)?;
        if cfg.probe_fall == 0 || cfg.probe_rise == 0 {
            return Err(ConfigError::Invalid(
                "probe_fall and probe_rise must be at least 1".into(),
            ));
        }
        if let Some(m) = &cfg.migration {
            m.validate().map_err(invalid)?;
        }
        if let StoreConfig::Swift(swift) = &cfg.store {
            stackfed_http::config::http_endpoint("store.endpoint", &swift.endpoint)
                .map_err(invalid)?;
        }
        if let AuthConfig::Keystone(k) = &mut cfg.auth {
            stackfed_http::config::http_endpoint("auth.auth_url", &k.auth_url).map_err(invalid)?;
            k.auth_url = keystone_v3(&k.auth_url);
        }
        #[cfg(feature = "postgres")]
        if let StoreConfig::Postgres(pg) = &cfg.store {
            sql_store_settings(
                pg.pool_size,
                pg.timeout_seconds,
                pg.max_sessions,
                pg.password_file.as_deref(),
            )?;
        }
        #[cfg(feature = "mysql")]
        if let StoreConfig::Mysql(my) = &cfg.store {
            sql_store_settings(
                my.pool_size,
                my.timeout_seconds,
                my.max_sessions,
                my.password_file.as_deref(),
            )?;
            if my.poll_interval_ms == 0 {
                return Err(ConfigError::Invalid(
                    "store.poll_interval_ms: must be at least 1".into(),
                ));
            }
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

    /// Reads the secrets the configuration names (the Keystone password or application
    /// credential secret, from the TOML, a file or the environment) as the start does,
    /// without contacting anything: for `--check-config`.
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        if let AuthConfig::Keystone(k) = &self.auth {
            KeystoneAuth::new(k, HttpClient::new(Timeouts::default()))
                .map_err(|e| ConfigError::Invalid(format!("auth: {e}")))?;
        }
        Ok(())
    }

    /// Builds the service this configuration describes: opens the store and, inside a
    /// Tokio runtime, starts the health and usage probes. The returned [`Background`]
    /// owns the probes: `shutdown().await` stops them. A store that must be reached
    /// over the network before it can be used (PostgreSQL) needs [`open`](Self::open).
    pub fn build(&self) -> Result<(FederationService, Background), ConfigError> {
        let client = self.client()?;
        // The proxy's own Keystone identity, for everything it does on its own behalf.
        let identity = match &self.auth {
            AuthConfig::Keystone(k) => Some(Arc::new(
                KeystoneAuth::new(k, client.clone())
                    .map_err(|e| ConfigError::Invalid(format!("auth: {e}")))?,
            )),
            AuthConfig::Mode(_) => None,
        };
        let store: Arc<dyn AttributeStore> = match &self.store {
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
            StoreConfig::Sqlite { path } => Arc::new(
                SqliteStore::open(path)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?,
            ),
            StoreConfig::Swift(swift) => match &identity {
                Some(identity) => Arc::new(SwiftAttributeStore::with_session(
                    swift.clone(),
                    client.clone(),
                    Session::keystone(identity.clone()),
                )),
                None if swift.user.is_empty() || swift.key.is_empty() => {
                    return Err(ConfigError::Invalid(
                        "store: a Swift registry needs user and key (or auth = { kind = \"keystone\", ... })".into(),
                    ))
                }
                None => Arc::new(SwiftAttributeStore::new(swift.clone(), client.clone())),
            },
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres(_) => {
                return Err(ConfigError::Invalid(
                    "a PostgreSQL store is opened with ProxyConfig::open".into(),
                ))
            }
            #[cfg(feature = "mysql")]
            StoreConfig::Mysql(_) => {
                return Err(ConfigError::Invalid(
                    "a MySQL store is opened with ProxyConfig::open".into(),
                ))
            }
        };
        let (locator, service, background) = self.assemble(store, client)?;
        drop(locator);
        Ok((service, background))
    }

    /// Like [`build`](Self::build), for every kind of store: connects to a database
    /// store (and migrates its schema) first. With PostgreSQL or MySQL, the proxy's
    /// sessions are shared through the database, and a change feed (`LISTEN`, or the
    /// polled change log), owned by the returned [`Background`], drops cached records
    /// that another proxy changed.
    pub async fn open(&self) -> Result<(FederationService, Background), ConfigError> {
        #[cfg(feature = "mysql")]
        if let StoreConfig::Mysql(my) = &self.store {
            let store = federation_core::attrs::MysqlStore::open(my)
                .await
                .map_err(|e| ConfigError::Invalid(format!("MySQL store: {e}")))?;
            return self.with_database(store, "MySQL change feed", |s, f| s.watch(f));
        }
        #[cfg(feature = "postgres")]
        if let StoreConfig::Postgres(pg) = &self.store {
            let store = federation_core::attrs::PostgresStore::open(pg)
                .await
                .map_err(|e| ConfigError::Invalid(format!("PostgreSQL store: {e}")))?;
            return self.with_database(store, "PostgreSQL change feed", |s, f| s.watch(f));
        }
        self.build()
    }

    /// The service over a database store: sessions shared through it, and its change
    /// feed (started by `watch` on the returned [`Background`]) dropping the records
    /// other proxies changed from the locator's cache.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    fn with_database<S, W, Fut>(
        &self,
        store: S,
        feed_name: &'static str,
        watch: W,
    ) -> Result<(FederationService, Background), ConfigError>
    where
        S: AttributeStore + federation_core::sessions::SessionStore + Clone,
        W: FnOnce(&S, Box<dyn Fn(federation_core::attrs::Change) + Send + Sync>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        use federation_core::attrs::Change;
        let (locator, service, background) =
            self.assemble(Arc::new(store.clone()), self.client()?)?;
        let feed = watch(
            &store,
            Box::new(move |change| match change {
                Change::Record { account, container } => locator.invalidate(&account, &container),
                // A resync (or anything this build does not know): drop everything.
                _ => locator.invalidate_all(),
            }),
        );
        background.spawn(feed_name, feed);
        Ok((service.with_shared_sessions(Arc::new(store)), background))
    }

    fn client(&self) -> Result<HttpClient, ConfigError> {
        HttpClient::with_ca_file(
            Timeouts {
                connect: self.connect_timeout,
                response: self.response_timeout,
                idle: self.response_timeout,
            },
            self.ca_file.as_deref(),
        )
        .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The locator, the service and the probes over `store`.
    fn assemble(
        &self,
        store: Arc<dyn AttributeStore>,
        client: HttpClient,
    ) -> Result<(Arc<Locator>, FederationService, Background), ConfigError> {
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
        let clusters = Clusters::new(
            self.clusters
                .iter()
                .map(|c| SwiftCluster::from_spec(&c.spec, &c.recon_endpoints, client.clone())),
        );
        let locator = Arc::new(Locator::with_cache(
            store,
            registry.clone(),
            self.policy.build().into(),
            self.cache_capacity,
            self.cache_ttl,
        ));
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
        let service = FederationService::new(locator.clone(), clusters, self.auth.mode())
            .with_partial_listings(self.listing_partial)
            .with_health(Some(readiness), self.disable_path.clone());
        Ok((locator, service, background))
    }
}

/// Keystone's v3 endpoint: `auth_url` as given when it ends in `/v3`, else with `/v3`
/// added (`http://keystone:5000`, the form keystonemiddleware's `auth_url` takes, is the
/// same Keystone; without it every login would meet a 404).
fn keystone_v3(auth_url: &url::Url) -> url::Url {
    let path = auth_url.path().trim_end_matches('/');
    if path.ends_with("/v3") {
        return auth_url.clone();
    }
    let mut v3 = auth_url.clone();
    v3.set_path(&format!("{path}/v3"));
    v3
}

/// What a SQL store's settings must be for it to work at all: checked with the rest of
/// the configuration (and by `--check-config`), not first when the store is opened.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn sql_store_settings(
    pool_size: usize,
    timeout_seconds: f64,
    max_sessions: u64,
    password_file: Option<&std::path::Path>,
) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(m));
    if pool_size == 0 {
        return bad("store.pool_size: must be at least 1".into());
    }
    if !(timeout_seconds.is_finite() && timeout_seconds > 0.0) {
        return bad("store.timeout_seconds: must be a positive number of seconds".into());
    }
    if max_sessions == 0 {
        return bad("store.max_sessions: must be at least 1".into());
    }
    if let Some(path) = password_file {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {}
            Ok(_) => return bad(format!("store.password_file: {} is empty", path.display())),
            Err(e) => {
                return bad(format!(
                    "store.password_file: cannot read {}: {e}",
                    path.display()
                ))
            }
        }
    }
    Ok(())
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

    #[cfg(feature = "postgres")]
    #[test]
    fn reads_a_postgres_store_and_hides_its_password() {
        let text = r#"
            store = { kind = "postgres", url = "postgres://fed:s3cret@db.example:5433/fed", pool_size = 4 }
            [[clusters]]
            id = "a"
            endpoint = "http://127.0.0.1:1"
            capacity_bytes = 1
        "#;
        let cfg = ProxyConfig::from_toml(text).unwrap();
        let StoreConfig::Postgres(pg) = &cfg.store else {
            panic!("{:?}", cfg.store)
        };
        assert_eq!((pg.pool_size, pg.max_sessions), (4, 100_000));
        assert!(!format!("{pg:?}").contains("s3cret"), "{pg:?}");
        assert!(
            cfg.build().is_err(),
            "a database store needs the async open()"
        );
        assert!(ProxyConfig::from_toml(&text.replace("pool_size", "pool")).is_err());
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn reads_a_mysql_store_and_hides_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("db");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let text = r#"
            store = { kind = "mysql", url = "mysql://fed:s3cret@db.example:3307/fed", password_file = "PW", poll_interval_ms = 50 }
            [[clusters]]
            id = "a"
            endpoint = "http://127.0.0.1:1"
            capacity_bytes = 1
        "#
        .replace("PW", &pw.display().to_string());
        let text = text.as_str();
        let cfg = ProxyConfig::from_toml(text).unwrap();
        let StoreConfig::Mysql(my) = &cfg.store else {
            panic!("{:?}", cfg.store)
        };
        assert_eq!(
            (my.pool_size, my.max_sessions, my.poll_interval_ms),
            (16, 100_000, 50)
        );
        assert!(!format!("{my:?}").contains("s3cret"), "{my:?}");
        assert!(
            cfg.build().is_err(),
            "a database store needs the async open()"
        );
        assert!(ProxyConfig::from_toml(&text.replace("poll_interval_ms", "poll")).is_err());
        // Settings that cannot work are refused with the configuration, naming the key.
        let missing = dir.path().join("nope").display().to_string();
        for (bad, key) in [
            (
                text.replace(&pw.display().to_string(), &missing),
                "store.password_file",
            ),
            (
                text.replace("poll_interval_ms = 50", "poll_interval_ms = 0"),
                "store.poll_interval_ms",
            ),
            (
                text.replace("poll_interval_ms = 50", "pool_size = 0"),
                "store.pool_size",
            ),
            (
                text.replace("poll_interval_ms = 50", "max_sessions = 0"),
                "store.max_sessions",
            ),
            (
                text.replace("poll_interval_ms = 50", "timeout_seconds = 0"),
                "store.timeout_seconds",
            ),
        ] {
            let err = ProxyConfig::from_toml(&bad).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        std::fs::write(&pw, "\n").unwrap();
        let err = ProxyConfig::from_toml(text).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }

    #[test]
    fn migration_durations_take_units_and_the_seconds_spellings() {
        let clusters =
            "[[clusters]]\nid = \"a\"\nendpoint = \"http://127.0.0.1:1\"\ncapacity_bytes = 1\n";
        let with = |m: &str| {
            ProxyConfig::from_toml(&format!(
                "migration = {{ operator_user = \"a:b\", operator_key = \"k\", {m} }}\n{clusters}"
            ))
        };
        let m = with("lease = \"1m\", settle = \"250ms\", max_hold = 5, resume_interval = 0.5")
            .unwrap()
            .migration
            .unwrap();
        assert_eq!(m.lease, Duration::from_secs(60));
        assert_eq!(m.settle, Some(Duration::from_millis(250)));
        assert_eq!(m.max_hold, Duration::from_secs(5));
        assert_eq!(m.resume_interval, Duration::from_millis(500));
        let m = with("lease_seconds = 3, settle_seconds = 1.5, max_hold_seconds = 20, resume_interval_seconds = 1")
            .unwrap()
            .migration
            .unwrap();
        assert_eq!(m.lease, Duration::from_secs(3));
        assert_eq!(m.settle, Some(Duration::from_millis(1500)));
        let m = with("concurrency = 2").unwrap().migration.unwrap();
        assert_eq!((m.lease, m.settle), (Duration::from_secs(30), None));
        assert_eq!(
            (m.archive_move_limit, m.archive_move_wait),
            (1000, Duration::from_secs(60))
        );
        let m = with("archive_move_limit = 5, archive_move_wait = \"2m\"")
            .unwrap()
            .migration
            .unwrap();
        assert_eq!(
            (m.archive_move_limit, m.archive_move_wait),
            (5, Duration::from_secs(120))
        );
        for bad in [
            "lease = 0",
            "max_hold = \"soon\"",
            "concurrency = 0",
            "resume_interval = -1",
            "lease_secs = 3",
            "archive_move_wait = 0",
            "archive_move_limit = -1",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
        let err = with("lease = \"0s\"").unwrap_err().to_string();
        assert!(err.contains("migration.lease"), "{err}");
    }

    #[test]
    fn reads_the_auth_forms() {
        let clusters =
            "[[clusters]]\nid = \"a\"\nendpoint = \"http://127.0.0.1:1\"\ncapacity_bytes = 1\n";
        let with = |auth: &str| ProxyConfig::from_toml(&format!("auth = {auth}\n{clusters}"));
        assert_eq!(
            with("\"tempauth\"").unwrap().auth.mode(),
            AuthMode::Tempauth
        );
        assert_eq!(
            with("\"pass-through\"").unwrap().auth.mode(),
            AuthMode::PassThrough
        );
        assert_eq!(
            with("{ kind = \"pass-through\" }").unwrap().auth.mode(),
            AuthMode::PassThrough
        );
        assert!(with("\"keystone\"").is_err(), "keystone needs its table");
        assert!(with("\"bogus\"").is_err());
        assert!(with("{ kind = \"keystone\", auth_url = \"http://k/v3\", typo = 1 }").is_err());
        let cfg = with(
            "{ kind = \"keystone\", auth_url = \"http://127.0.0.1:5000/v3\", user = \"stackfed\", \
             password = { env = \"STACKFED_TEST_NO_SUCH_VAR\" }, project = \"service\" }",
        )
        .unwrap();
        let AuthConfig::Keystone(k) = &cfg.auth else {
            panic!("{:?}", cfg.auth)
        };
        assert_eq!(k.reseller_prefix, "AUTH_");
        assert_eq!(k.user_domain_id, "default");
        // The edge's spelling of the same keys is accepted too.
        let alias = with(
            "{ kind = \"keystone\", auth_url = \"http://127.0.0.1:5000/v3\", username = \"stackfed\", \
             password = { env = \"STACKFED_TEST_NO_SUCH_VAR\" }, project_name = \"service\" }",
        )
        .unwrap();
        let AuthConfig::Keystone(a) = &alias.auth else {
            panic!("{:?}", alias.auth)
        };
        assert_eq!(a, k);
        // Keystone's root (keystonemiddleware's form of auth_url) means its v3 API.
        for (given, used) in [
            ("http://k:5000", "http://k:5000/v3"),
            ("http://k:5000/", "http://k:5000/v3"),
            ("https://k/identity", "https://k/identity/v3"),
            ("http://k:5000/v3", "http://k:5000/v3"),
            ("http://k:5000/v3/", "http://k:5000/v3/"),
        ] {
            let cfg = with(&format!(
                "{{ kind = \"keystone\", auth_url = \"{given}\", user = \"u\", password = \"p\", \
                 project = \"service\" }}"
            ))
            .unwrap();
            let AuthConfig::Keystone(k) = &cfg.auth else {
                panic!("{:?}", cfg.auth)
            };
            assert_eq!(k.auth_url.as_str(), used, "{given}");
        }
        assert!(with(
            "{ kind = \"keystone\", auth_url = \"ftp://k/v3\", user = \"u\", password = \"p\", \
             project = \"service\" }"
        )
        .is_err());
        // The secret is read when the service is built: a missing variable is an error
        // naming it, not a panic.
        let err = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { cfg.build().map(|_| ()) })
            .unwrap_err()
            .to_string();
        assert!(err.contains("STACKFED_TEST_NO_SUCH_VAR"), "{err}");
        // Inline secrets never reach the logs.
        let inline = with(
            "{ kind = \"keystone\", auth_url = \"http://k/v3\", application_credential_id = \"id\", \
             application_credential_secret = \"s3cr3t\" }",
        )
        .unwrap();
        assert!(!format!("{inline:?}").contains("s3cr3t"));
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
