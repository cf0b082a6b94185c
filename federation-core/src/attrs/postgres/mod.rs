//! The PostgreSQL attribute store (feature `postgres`): real compare-and-set for many
//! proxies sharing one database.
//!
//! - create-if-absent is one `INSERT … ON CONFLICT DO NOTHING` on the primary key
//!   (account, container): the database decides the one winner of a race;
//! - updates, relocations and deletes are one statement each, conditional on the
//!   version (`… WHERE version = $n RETURNING …`);
//! - names are stored as `bytea`, so listing is one ordered, paged query in byte order
//!   of the UTF-8 names whatever the database's collation;
//! - the schema is versioned (`stackfed_schema`) and migrated at open under an advisory
//!   lock, so proxies starting together migrate once;
//! - every update or delete of a record notifies the channel [`CHANNEL`] (a trigger, so
//!   even an operator's manual change is seen); [`PostgresStore::watch`] turns these
//!   notifications into [`Change`]s, which the proxy uses to drop cached records long
//!   before their TTL;
//! - the same database keeps the proxies' shared sessions ([`crate::sessions`]).
//!
//! Connections come from a `deadpool-postgres` pool; every call is bounded by
//! `timeout_seconds`, so a database that is down or silent is a quick
//! [`StoreError::Unavailable`] (a 503), never a hang.

mod notify;
mod sessions;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use serde::Deserialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

pub use super::sql::Change;

use super::sql::{corrupt as corrupt_in, json, miss, to_i64, RawRecord, COLUMNS};
use super::{AttributeStore, Attributes, ContainerRecord, CreateOutcome, NewContainer, StoreError};
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

/// The notification channel of record changes.
pub const CHANNEL: &str = "stackfed_containers";

/// Schema migrations, in order; `stackfed_schema.version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the container records; names as bytes, so ORDER BY is byte order.
    "CREATE TABLE stackfed_containers (
        account      bytea   NOT NULL,
        container    bytea   NOT NULL,
        cluster      text    NOT NULL,
        attributes   text    NOT NULL,
        placed_at_ms bigint  NOT NULL,
        policy       text    NOT NULL,
        version      bigint  NOT NULL,
        PRIMARY KEY (account, container)
    );",
    // 2: every update or delete notifies the proxies (hex names: a payload is text).
    "CREATE FUNCTION stackfed_containers_notify() RETURNS trigger AS $$
     BEGIN
       PERFORM pg_notify('stackfed_containers',
                         encode(OLD.account, 'hex') || '/' || encode(OLD.container, 'hex'));
       RETURN NULL;
     END $$ LANGUAGE plpgsql;
     CREATE TRIGGER stackfed_containers_changed
       AFTER UPDATE OR DELETE ON stackfed_containers
       FOR EACH ROW EXECUTE FUNCTION stackfed_containers_notify();",
    // 3: the proxies' shared sessions: only a hash of the token, a sealed blob.
    "CREATE TABLE stackfed_sessions (
        token_hash    bytea  PRIMARY KEY,
        sealed        bytea  NOT NULL,
        created_at_ms bigint NOT NULL,
        expires_at_ms bigint NOT NULL
    );
    CREATE INDEX stackfed_sessions_expiry ON stackfed_sessions (expires_at_ms);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 3;

/// An arbitrary, fixed key for the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x5354_4143_4B46_4544; // "STACKFED"

fn default_pool_size() -> usize {
    16
}

fn default_timeout() -> f64 {
    5.0
}

fn default_max_sessions() -> u64 {
    100_000
}

/// How to reach the database (the proxy's `store = { kind = "postgres", … }`).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// A libpq-style URL or key/value string, such as
    /// `postgres://stackfed@db.example:5432/stackfed`. Better without a password: see
    /// `password_file`.
    pub url: String,
    /// A file holding the password (its first line), kept out of the configuration.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds any one call (connect, wait for a connection, query) may take before it
    /// fails as unavailable.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// At most this many live sessions are kept; past it, the oldest are dropped.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only where it points.
        let shown = tokio_postgres::Config::from_str(&self.url)
            .map(|c| {
                format!(
                    "{:?} {:?} {:?}",
                    c.get_hosts(),
                    c.get_ports(),
                    c.get_dbname()
                )
            })
            .unwrap_or_else(|_| "<unparsable>".to_owned());
        f.debug_struct("PostgresConfig")
            .field("url", &shown)
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("max_sessions", &self.max_sessions)
            .finish()
    }
}

impl PostgresConfig {
    /// A configuration with the defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password_file: None,
            pool_size: default_pool_size(),
            timeout_seconds: default_timeout(),
            max_sessions: default_max_sessions(),
        }
    }

    fn timeout(&self) -> Result<Duration, StoreError> {
        super::sql::positive_timeout(self.timeout_seconds)
    }

    fn pg_config(&self) -> Result<tokio_postgres::Config, StoreError> {
        let mut config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| StoreError::InvalidInput {
                reason: format!("PostgreSQL url: {e}"),
            })?;
        if let Some(path) = &self.password_file {
            config.password(super::sql::read_password(path)?.as_bytes());
        }
        config.connect_timeout(self.timeout()?);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("stackfed");
        }
        Ok(config)
    }
}

/// The PostgreSQL store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    pg: tokio_postgres::Config,
    timeout: Duration,
    max_sessions: u64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("hosts", &self.pg.get_hosts())
            .field("ports", &self.pg.get_ports())
            .field("dbname", &self.pg.get_dbname())
            .finish_non_exhaustive()
    }
}

/// Whether a database error is worth a retry: connection trouble, a server shutting
/// down or starting, serialization failures, resource exhaustion.
fn transient(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08") || c.starts_with("40") || c.starts_with("53") || c.starts_with("57P")
}

/// What went wrong, in the server's words: `tokio_postgres::Error` displays only "db
/// error" or "error connecting to server"; the server's message (with its SQLSTATE) or
/// the underlying cause (e.g. "Connection refused") is in the error's details.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let message = format!("PostgreSQL: {}", describe(&e));
    match e.code() {
        Some(code) if !transient(code) => StoreError::Internal { message },
        _ => StoreError::Unavailable {
            message,
            source: Some(Box::new(e)),
        },
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable {
            message: format!("PostgreSQL pool: {other}"),
            source: Some(Box::new(other)),
        },
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    corrupt_in("PostgreSQL", what, detail)
}

fn row_to_record(row: &Row) -> Result<ContainerRecord, StoreError> {
    let bytes = |i: usize, what: &str| -> Result<Vec<u8>, StoreError> {
        row.try_get(i).map_err(|e| corrupt(what, e))
    };
    let text = |i: usize, what: &str| -> Result<Vec<u8>, StoreError> {
        row.try_get::<_, String>(i)
            .map(String::into_bytes)
            .map_err(|e| corrupt(what, e))
    };
    RawRecord {
        account: bytes(0, "account")?,
        container: bytes(1, "container")?,
        cluster: text(2, "cluster")?,
        attributes: text(3, "attributes")?,
        placed_at_ms: row.try_get(4).map_err(|e| corrupt("time", e))?,
        policy: text(5, "policy")?,
        version: row.try_get(6).map_err(|e| corrupt("version", e))?,
    }
    .into_record("PostgreSQL")
}

impl PostgresStore {
    /// Connects (checking that the database answers) and brings the schema up to date.
    pub async fn open(config: &PostgresConfig) -> Result<Self, StoreError> {
        let pg = config.pg_config()?;
        let timeout = config.timeout()?;
        let manager = Manager::from_config(
            pg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| StoreError::InvalidInput {
                reason: format!("PostgreSQL pool: {e}"),
            })?;
        let store = Self {
            pool,
            pg,
            timeout,
            max_sessions: config.max_sessions.max(1),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs `f` with a pooled connection, bounded by the configured timeout.
    async fn with_client<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        super::sql::bounded("PostgreSQL", self.timeout, what, async {
            let client = self.pool.get().await.map_err(pool_error)?;
            f(client).await
        })
        .await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.with_client("migration", |mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(pg_error)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS stackfed_schema (version integer NOT NULL)",
            )
            .await
            .map_err(pg_error)?;
            let current: i32 = match tx
                .query_opt("SELECT version FROM stackfed_schema", &[])
                .await
                .map_err(pg_error)?
            {
                Some(row) => row.try_get(0).map_err(|e| corrupt("schema version", e))?,
                None => {
                    tx.execute("INSERT INTO stackfed_schema VALUES (0)", &[])
                        .await
                        .map_err(pg_error)?;
                    0
                }
            };
            if !(0..=SCHEMA_VERSION).contains(&current) {
                return Err(StoreError::Internal {
                    message: format!(
                        "database schema version {current} is not one this build \
                         ({SCHEMA_VERSION}) can use"
                    ),
                });
            }
            for sql in MIGRATIONS
                .iter()
                .skip(usize::try_from(current).unwrap_or(0))
            {
                tx.batch_execute(sql).await.map_err(pg_error)?;
            }
            tx.execute(
                "UPDATE stackfed_schema SET version = $1",
                &[&SCHEMA_VERSION],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)
        })
        .await
    }

    /// One prepared (and cached) statement that returns at most one row.
    async fn one_row(
        client: &Object,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let st = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.query_opt(&st, params).await.map_err(pg_error)
    }

    async fn read(
        client: &Object,
        account: &[u8],
        container: &[u8],
    ) -> Result<Option<ContainerRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM stackfed_containers WHERE account = $1 AND container = $2"
        );
        Self::one_row(client, &sql, &[&account, &container])
            .await?
            .as_ref()
            .map(row_to_record)
            .transpose()
    }

    /// After a conditional statement touched no row: why (no record, or another
    /// version).
    async fn explain_miss(
        client: &Object,
        account: &AccountName,
        container: &ContainerName,
        expected: u64,
    ) -> StoreError {
        let read = Self::read(
            client,
            account.as_str().as_bytes(),
            container.as_str().as_bytes(),
        )
        .await;
        miss(account, container, expected, read)
    }

    /// One conditional `UPDATE … SET <set>, version = version + 1 WHERE … AND version =
    /// $3`; `value` is `$4`.
    async fn modify<V>(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        set: &'static str,
        value: V,
    ) -> Result<ContainerRecord, StoreError>
    where
        V: tokio_postgres::types::ToSql + Sync + Send,
    {
        let expected = to_i64(expected_version)?;
        self.with_client("update", |client| async move {
            let sql = format!(
                "UPDATE stackfed_containers SET {set} = $4, version = version + 1
                 WHERE account = $1 AND container = $2 AND version = $3
                 RETURNING {COLUMNS}"
            );
            let (a, c) = (account.as_str().as_bytes(), container.as_str().as_bytes());
            let row = Self::one_row(&client, &sql, &[&a, &c, &expected, &value]).await?;
            match row {
                Some(row) => row_to_record(&row),
                None => {
                    Err(Self::explain_miss(&client, account, container, expected_version).await)
                }
            }
        })
        .await
    }
}

#[async_trait]
impl AttributeStore for PostgresStore {
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError> {
        self.with_client("get", |client| async move {
            Self::read(
                &client,
                account.as_str().as_bytes(),
                container.as_str().as_bytes(),
            )
            .await
        })
        .await
    }

    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError> {
        let record = new.into_record();
        let attributes = json(&record.attributes)?;
        let placed = to_i64(record.placed_at_ms)?;
        self.with_client("create", |client| async move {
            let insert = client
                .prepare_cached(
                    "INSERT INTO stackfed_containers
                       (account, container, cluster, attributes, placed_at_ms, policy, version)
                     VALUES ($1, $2, $3, $4, $5, $6, 1)
                     ON CONFLICT (account, container) DO NOTHING",
                )
                .await
                .map_err(pg_error)?;
            let (a, c) = (
                record.account.as_str().as_bytes(),
                record.container.as_str().as_bytes(),
            );
            // The insert waits for a concurrent creator's transaction; losing, we read
            // the winner in a new statement (a new snapshot). Should the winner be
            // deleted in between, try again: a few rounds, then say so.
            for _ in 0..5 {
                let inserted = client
                    .execute(
                        &insert,
                        &[
                            &a,
                            &c,
                            &record.cluster.as_str(),
                            &attributes,
                            &placed,
                            &record.policy,
                        ],
                    )
                    .await
                    .map_err(pg_error)?;
                if inserted == 1 {
                    return Ok(CreateOutcome::Created(record));
                }
                if let Some(existing) = Self::read(&client, a, c).await? {
                    return Ok(CreateOutcome::Existing(existing));
                }
            }
            Err(super::sql::kept_changing())
        })
        .await
    }

    async fn update_attributes(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        attributes: Attributes,
    ) -> Result<ContainerRecord, StoreError> {
        let text = json(&attributes)?;
        self.modify(account, container, expected_version, "attributes", text)
            .await
    }

    async fn relocate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        cluster: ClusterId,
    ) -> Result<ContainerRecord, StoreError> {
        self.modify(
            account,
            container,
            expected_version,
            "cluster",
            cluster.as_str().to_owned(),
        )
        .await
    }

    async fn delete(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, StoreError> {
        let expected = expected_version.map(to_i64).transpose()?;
        self.with_client("delete", |client| async move {
            let sql = format!(
                "DELETE FROM stackfed_containers
                 WHERE account = $1 AND container = $2 AND ($3::bigint IS NULL OR version = $3)
                 RETURNING {COLUMNS}"
            );
            let (a, c) = (account.as_str().as_bytes(), container.as_str().as_bytes());
            let row = Self::one_row(&client, &sql, &[&a, &c, &expected]).await?;
            match (row, expected_version) {
                (Some(row), _) => row_to_record(&row),
                (None, Some(v)) => Err(Self::explain_miss(&client, account, container, v).await),
                (None, None) => Err(StoreError::NotFound {
                    account: account.clone(),
                    container: container.clone(),
                }),
            }
        })
        .await
    }

    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let marker = marker.map(str::as_bytes);
        self.with_client("list", |client| async move {
            // bytea compares byte by byte: UTF-8 byte order, as Swift lists.
            let sql = format!(
                "SELECT {COLUMNS} FROM stackfed_containers
                 WHERE account = $1 AND ($2::bytea IS NULL OR container > $2)
                 ORDER BY container LIMIT $3"
            );
            let st = client.prepare_cached(&sql).await.map_err(pg_error)?;
            let rows = client
                .query(&st, &[&account.as_str().as_bytes(), &marker, &limit])
                .await
                .map_err(pg_error)?;
            rows.iter().map(row_to_record).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests;
