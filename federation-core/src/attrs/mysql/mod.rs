//! The MySQL/MariaDB attribute store (feature `mysql`): real compare-and-set for many
//! proxies sharing one database (or one Galera cluster).
//!
//! - create-if-absent is one `INSERT … ON DUPLICATE KEY UPDATE version = version` on
//!   the primary key (account, container): the database decides the one winner of a
//!   race (1 row affected: created; 0: somebody else's record, read back);
//! - updates, relocations and deletes lock the row (`SELECT … FOR UPDATE`), check its
//!   version and change it in one short transaction, the statement itself conditional
//!   on the version too; a deadlock or a Galera certification failure is retried;
//! - names are `VARBINARY`, so listing is one ordered, paged query in byte order of the
//!   UTF-8 names whatever the server's collation; the other text columns are bytes too
//!   (no character-set conversions);
//! - the schema is versioned (`stackfed_schema`) and migrated at open under a named
//!   lock (`GET_LOCK`), so proxies starting together migrate once; every migration is
//!   idempotent (`IF NOT EXISTS`), as DDL cannot be rolled back;
//! - MySQL has no `LISTEN/NOTIFY`: triggers append every real update or delete of a
//!   record to a change log (`stackfed_changes`), which [`MysqlStore::watch`] polls
//!   every `poll_interval_ms` (see [`changes`](self::MysqlStore::watch) for why polling,
//!   and how late commits and auto-increment gaps are handled);
//! - the same database keeps the proxies' shared sessions ([`crate::sessions`]).
//!
//! Galera: every table has a primary key, nothing uses `LOCK TABLES` nor expects
//! auto-increment values without gaps. `GET_LOCK` is local to one node there: start
//! the first proxy alone (or point every proxy at one node) for a schema migration.
//! Creating the triggers needs the `TRIGGER` privilege and, with binary logging on,
//! `SUPER` or `log_bin_trust_function_creators = 1`.
//!
//! Every call is bounded by `timeout_seconds` (and the server's lock waits by the same
//! number of seconds), so a database that is down or silent is a quick
//! [`StoreError::Unavailable`] (a 503), never a hang. The one exception is the schema
//! migration at start, which may wait for another proxy's migration lock and then run
//! DDL: four times `timeout_seconds`.

mod changes;
mod sessions;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, TxOpts};
use serde::Deserialize;

pub use super::sql::Change;

use super::sql::{corrupt as corrupt_in, json, to_i64, RawRecord, COLUMNS};
use super::{AttributeStore, Attributes, ContainerRecord, CreateOutcome, NewContainer, StoreError};
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

/// Schema migrations, in order; `stackfed_schema.version` counts those applied. Each is
/// a list of statements, each idempotent.
const MIGRATIONS: &[&[&str]] = &[
    // 1: the container records; names as bytes, so ORDER BY is byte order.
    &["CREATE TABLE IF NOT EXISTS stackfed_containers (
        account      VARBINARY(256) NOT NULL,
        container    VARBINARY(256) NOT NULL,
        cluster      BLOB           NOT NULL,
        attributes   MEDIUMBLOB     NOT NULL,
        placed_at_ms BIGINT         NOT NULL,
        policy       BLOB           NOT NULL,
        version      BIGINT         NOT NULL,
        PRIMARY KEY (account, container)
    ) ENGINE=InnoDB"],
    // 2: the change log the proxies poll, written by triggers (so even an operator's
    // manual change is seen). A no-op update (a lost create race) logs nothing.
    &[
        "CREATE TABLE IF NOT EXISTS stackfed_changes (
            seq           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            account       VARBINARY(256)  NOT NULL,
            container     VARBINARY(256)  NOT NULL,
            changed_at_ms BIGINT          NOT NULL,
            PRIMARY KEY (seq),
            KEY stackfed_changes_time (changed_at_ms)
        ) ENGINE=InnoDB",
        "CREATE TRIGGER IF NOT EXISTS stackfed_containers_updated
           AFTER UPDATE ON stackfed_containers FOR EACH ROW
           INSERT INTO stackfed_changes (account, container, changed_at_ms)
           SELECT OLD.account, OLD.container, ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) FROM DUAL
           WHERE NOT (NEW.version <=> OLD.version AND NEW.cluster <=> OLD.cluster
                      AND NEW.attributes <=> OLD.attributes)",
        "CREATE TRIGGER IF NOT EXISTS stackfed_containers_deleted
           AFTER DELETE ON stackfed_containers FOR EACH ROW
           INSERT INTO stackfed_changes (account, container, changed_at_ms)
           VALUES (OLD.account, OLD.container, ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000))",
    ],
    // 3: the proxies' shared sessions: only a hash of the token, a sealed blob.
    &["CREATE TABLE IF NOT EXISTS stackfed_sessions (
        token_hash    BINARY(32) NOT NULL,
        sealed        BLOB       NOT NULL,
        created_at_ms BIGINT     NOT NULL,
        expires_at_ms BIGINT     NOT NULL,
        PRIMARY KEY (token_hash),
        KEY stackfed_sessions_expiry (expires_at_ms)
    ) ENGINE=InnoDB"],
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 3;

/// The name of the migration lock (`GET_LOCK`).
const MIGRATION_LOCK: &str = "stackfed_migrations";

fn default_pool_size() -> usize {
    16
}

fn default_timeout() -> f64 {
    5.0
}

fn default_max_sessions() -> u64 {
    100_000
}

fn default_poll_interval_ms() -> u64 {
    100
}

/// How to reach the database (the proxy's `store = { kind = "mysql", … }`).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MysqlConfig {
    /// A URL such as `mysql://stackfed@db.example:3306/stackfed`. Better without a
    /// password: see `password_file`.
    pub url: String,
    /// A file holding the password (its first line), kept out of the configuration.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds any one call (connect, wait for a connection, query) may take before it
    /// fails as unavailable; also the server's lock wait limit (rounded up).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// At most this many live sessions are kept; past it, the oldest are dropped.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
    /// How often the change feed polls the change log: the bound on how long another
    /// proxy's change goes unseen (one query a poll, per proxy).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

/// Where a URL points, without its credentials.
fn shown(url: &str) -> String {
    Opts::from_url(url)
        .map(|o| {
            format!(
                "{}:{} {:?}",
                o.ip_or_hostname(),
                o.tcp_port(),
                o.db_name().unwrap_or("")
            )
        })
        .unwrap_or_else(|_| "<unparsable>".to_owned())
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: show only where it points.
        f.debug_struct("MysqlConfig")
            .field("url", &shown(&self.url))
            .field("password_file", &self.password_file)
            .field("pool_size", &self.pool_size)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("max_sessions", &self.max_sessions)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .finish()
    }
}

impl MysqlConfig {
    /// A configuration with the defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password_file: None,
            pool_size: default_pool_size(),
            timeout_seconds: default_timeout(),
            max_sessions: default_max_sessions(),
            poll_interval_ms: default_poll_interval_ms(),
        }
    }

    fn timeout(&self) -> Result<Duration, StoreError> {
        super::sql::positive_timeout(self.timeout_seconds)
    }

    fn opts(&self) -> Result<Opts, StoreError> {
        let url = Opts::from_url(&self.url).map_err(|e| StoreError::InvalidInput {
            reason: format!("MySQL url: {e}"),
        })?;
        let timeout = self.timeout()?;
        let mut builder = OptsBuilder::from_opts(url);
        if let Some(path) = &self.password_file {
            builder = builder.pass(Some(super::sql::read_password(path)?));
        }
        let constraints = PoolConstraints::new(0, self.pool_size.max(1)).ok_or_else(|| {
            StoreError::InvalidInput {
                reason: "pool_size".to_owned(),
            }
        })?;
        let lock_wait = timeout.as_secs_f64().ceil().max(1.0);
        Ok(builder
            // No COM_RESET_CONNECTION when a connection goes back to the pool: it would
            // drop the prepared statements (a prepare per call). Nothing here leaves
            // session state behind (an unfinished transaction is rolled back; the
            // migration lock lives on a connection of its own).
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // Keep up to `pool_size` idle connections for a minute (with the
                    // default of 0, every connection is closed on return).
                    .with_inactive_connection_ttl(Duration::from_secs(60))
                    .with_reset_connection(false),
            )
            .tcp_keepalive(Some(Duration::from_secs(10)))
            // 0 rows affected must mean "unchanged" (a lost create race), not "found".
            .client_found_rows(false)
            .init(vec![
                // Too long or malformed values are errors, never silently truncated.
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'".to_owned(),
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
                format!("SET SESSION innodb_lock_wait_timeout = {lock_wait}"),
            ])
            .into())
    }
}

/// The MySQL/MariaDB store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct MysqlStore {
    pool: Pool,
    opts: Opts,
    timeout: Duration,
    max_sessions: u64,
    poll_interval: Duration,
}

impl std::fmt::Debug for MysqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlStore")
            .field("host", &self.opts.ip_or_hostname())
            .field("port", &self.opts.tcp_port())
            .field("db", &self.opts.db_name())
            .finish_non_exhaustive()
    }
}

/// Server errors worth a retry: too many connections, out of memory, shutdown, lock
/// wait timeout, deadlock (and Galera's certification failures, reported as such), a
/// Galera node not ready, a killed connection or query, a read-only server (a
/// failover), an idle connection dropped by the server.
const TRANSIENT: &[u16] = &[
    1040, 1041, 1047, 1053, 1205, 1213, 1290, 1317, 1836, 1927, 4031,
];

fn is_deadlock(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1213 || s.code == 1205)
}

fn my_error(e: mysql_async::Error) -> StoreError {
    use mysql_async::Error as E;
    match &e {
        E::Server(s) if !TRANSIENT.contains(&s.code) && !s.state.starts_with("08") => {
            StoreError::Internal {
                message: format!("MySQL: {e}"),
            }
        }
        E::Url(u) => StoreError::InvalidInput {
            reason: format!("MySQL url: {u}"),
        },
        _ => StoreError::Unavailable {
            message: format!("MySQL: {e}"),
            source: Some(Box::new(e)),
        },
    }
}

/// `work`, bounded by `timeout`.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    super::sql::bounded("MySQL", timeout, what, work).await
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    corrupt_in("MySQL", what, detail)
}

/// Column `i` of `row`, converted; a missing or unconvertible value is corruption.
fn column<T: FromValue>(row: &mut Row, i: usize, what: &str) -> Result<T, StoreError> {
    match row.take_opt::<T, usize>(i) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(corrupt(what, format!("{:?}", e.0))),
        None => Err(corrupt(what, "missing column")),
    }
}

fn row_to_record(mut row: Row) -> Result<ContainerRecord, StoreError> {
    RawRecord {
        account: column(&mut row, 0, "account")?,
        container: column(&mut row, 1, "container")?,
        cluster: column(&mut row, 2, "cluster")?,
        attributes: column(&mut row, 3, "attributes")?,
        placed_at_ms: column(&mut row, 4, "time")?,
        policy: column(&mut row, 5, "policy")?,
        version: column(&mut row, 6, "version")?,
    }
    .into_record("MySQL")
}

/// What a conditional change does to a record it found at the expected version.
enum Edit {
    Attributes(Attributes),
    Cluster(ClusterId),
    Delete,
}

/// The names as the key columns hold them.
fn key<'a>(account: &'a AccountName, container: &'a ContainerName) -> (&'a [u8], &'a [u8]) {
    (account.as_str().as_bytes(), container.as_str().as_bytes())
}

impl MysqlStore {
    /// Connects (checking that the database answers) and brings the schema up to date.
    pub async fn open(config: &MysqlConfig) -> Result<Self, StoreError> {
        let opts = config.opts()?;
        let timeout = config.timeout()?;
        let store = Self {
            pool: Pool::new(opts.clone()),
            opts,
            timeout,
            max_sessions: config.max_sessions.max(1),
            poll_interval: Duration::from_millis(config.poll_interval_ms.max(1)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs `f` with a pooled connection, bounded by the configured timeout.
    async fn with_conn<T, F, Fut>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        bounded(self.timeout, what, async {
            let conn = self.pool.get_conn().await.map_err(my_error)?;
            f(conn).await
        })
        .await
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let opts = self.opts.clone();
        let wait = self.timeout.as_secs().max(1);
        let work = async move {
            // A connection of its own, closed at the end: the named lock goes with it
            // whatever happens (a pooled connection would keep it).
            let mut conn = Conn::new(opts).await.map_err(my_error)?;
            let result = Self::migrate_locked(&mut conn, wait).await;
            let _ = conn.disconnect().await;
            result
        };
        bounded(self.timeout * 4, "migration", work).await
    }

    async fn migrate_locked(conn: &mut Conn, wait: u64) -> Result<(), StoreError> {
        let locked: Option<Option<i64>> = conn
            .exec_first("SELECT GET_LOCK(?, ?)", (MIGRATION_LOCK, wait))
            .await
            .map_err(my_error)?;
        if locked.flatten() != Some(1) {
            return Err(StoreError::Unavailable {
                message: "another proxy holds the MySQL migration lock; try again".to_owned(),
                source: None,
            });
        }
        conn.query_drop(
            "CREATE TABLE IF NOT EXISTS stackfed_schema (
               id      TINYINT UNSIGNED NOT NULL PRIMARY KEY,
               version INT              NOT NULL
             ) ENGINE=InnoDB",
        )
        .await
        .map_err(my_error)?;
        conn.query_drop("INSERT IGNORE INTO stackfed_schema (id, version) VALUES (1, 0)")
            .await
            .map_err(my_error)?;
        let current: Option<i32> = conn
            .query_first("SELECT version FROM stackfed_schema WHERE id = 1")
            .await
            .map_err(my_error)?;
        let current = current.ok_or_else(|| corrupt("schema version", "no row"))?;
        if !(0..=SCHEMA_VERSION).contains(&current) {
            return Err(StoreError::Internal {
                message: format!(
                    "database schema version {current} is not one this build \
                     ({SCHEMA_VERSION}) can use"
                ),
            });
        }
        // DDL commits at once: each step is recorded when done, and re-running a step
        // cut short is harmless (IF NOT EXISTS).
        for (done, step) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            for sql in *step {
                conn.query_drop(*sql).await.map_err(my_error)?;
            }
            conn.exec_drop(
                "UPDATE stackfed_schema SET version = ? WHERE id = 1",
                (done + 1,),
            )
            .await
            .map_err(my_error)?;
        }
        conn.exec_drop("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
            .await
            .map_err(my_error)
    }

    async fn read(
        conn: &mut Conn,
        account: &[u8],
        container: &[u8],
    ) -> Result<Option<ContainerRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM stackfed_containers WHERE account = ? AND container = ?"
        );
        let row: Option<Row> = conn
            .exec_first(sql, (account, container))
            .await
            .map_err(my_error)?;
        row.map(row_to_record).transpose()
    }

    /// Locks the record, checks its version, applies `edit`, commits. `Ok(Err(_))`:
    /// the record is missing or at another version (rolled back).
    async fn edit_once(
        conn: &mut Conn,
        account: &AccountName,
        container: &ContainerName,
        expected: Option<u64>,
        edit: &Edit,
    ) -> Result<Result<ContainerRecord, StoreError>, mysql_async::Error> {
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let verdict = Self::edit_in(&mut tx, account, container, expected, edit).await?;
        if verdict.is_ok() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(verdict)
    }

    async fn edit_in(
        tx: &mut mysql_async::Transaction<'_>,
        account: &AccountName,
        container: &ContainerName,
        expected: Option<u64>,
        edit: &Edit,
    ) -> Result<Result<ContainerRecord, StoreError>, mysql_async::Error> {
        let (a, c) = key(account, container);
        let row: Option<Row> = tx
            .exec_first(
                format!(
                    "SELECT {COLUMNS} FROM stackfed_containers
                     WHERE account = ? AND container = ? FOR UPDATE"
                ),
                (a, c),
            )
            .await?;
        let mut record = match row.map(row_to_record).transpose() {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Ok(Err(StoreError::NotFound {
                    account: account.clone(),
                    container: container.clone(),
                }))
            }
            Err(e) => return Ok(Err(e)),
        };
        if let Some(v) = expected.filter(|v| *v != record.version) {
            return Ok(Err(super::sql::miss(
                account,
                container,
                v,
                Ok(Some(record)),
            )));
        }
        let version = match to_i64(record.version) {
            Ok(v) => v,
            Err(_) => return Ok(Err(corrupt("version", record.version))),
        };
        match edit {
            Edit::Delete => {
                tx.exec_drop(
                    "DELETE FROM stackfed_containers
                     WHERE account = ? AND container = ? AND version = ?",
                    (a, c, version),
                )
                .await?;
            }
            Edit::Attributes(attributes) => {
                let text = match json(attributes) {
                    Ok(t) => t,
                    Err(e) => return Ok(Err(e)),
                };
                tx.exec_drop(
                    "UPDATE stackfed_containers SET attributes = ?, version = version + 1
                     WHERE account = ? AND container = ? AND version = ?",
                    (text.as_bytes(), a, c, version),
                )
                .await?;
                record.attributes = attributes.clone();
                record.version += 1;
            }
            Edit::Cluster(cluster) => {
                tx.exec_drop(
                    "UPDATE stackfed_containers SET cluster = ?, version = version + 1
                     WHERE account = ? AND container = ? AND version = ?",
                    (cluster.as_str().as_bytes(), a, c, version),
                )
                .await?;
                record.cluster = cluster.clone();
                record.version += 1;
            }
        }
        if tx.affected_rows() != 1 {
            // Cannot happen under the row lock; say so rather than guess.
            return Ok(Err(StoreError::Unavailable {
                message: "the record changed under its lock; try again".to_owned(),
                source: None,
            }));
        }
        Ok(Ok(record))
    }

    /// A conditional change: a few tries if the database reports a deadlock (or a
    /// Galera certification conflict), then the verdict.
    async fn edit(
        &self,
        what: &'static str,
        account: &AccountName,
        container: &ContainerName,
        expected: Option<u64>,
        edit: Edit,
    ) -> Result<ContainerRecord, StoreError> {
        if let Some(v) = expected {
            to_i64(v)?;
        }
        self.with_conn(what, |mut conn| async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match Self::edit_once(&mut conn, account, container, expected, &edit).await {
                    Ok(verdict) => return verdict,
                    Err(e) if is_deadlock(&e) && attempt < 4 => {
                        tracing::debug!(error = %e, "MySQL: retrying a conditional change")
                    }
                    Err(e) => return Err(my_error(e)),
                }
            }
        })
        .await
    }
}

#[async_trait]
impl AttributeStore for MysqlStore {
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError> {
        self.with_conn("get", |mut conn| async move {
            let (a, c) = key(account, container);
            Self::read(&mut conn, a, c).await
        })
        .await
    }

    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError> {
        let record = new.into_record();
        let attributes = json(&record.attributes)?;
        let placed = to_i64(record.placed_at_ms)?;
        self.with_conn("create", |mut conn| async move {
            let (a, c) = key(&record.account, &record.container);
            // A loser's no-op update leaves 0 rows affected (and logs no change). The
            // winner's row is read in a new statement (a new snapshot); should it be
            // deleted in between, or a deadlock pick us as victim, try again: a few
            // rounds, then say so.
            for _ in 0..5 {
                let inserted = conn
                    .exec_drop(
                        "INSERT INTO stackfed_containers
                           (account, container, cluster, attributes, placed_at_ms, policy, version)
                         VALUES (?, ?, ?, ?, ?, ?, 1)
                         ON DUPLICATE KEY UPDATE version = version",
                        (
                            a,
                            c,
                            record.cluster.as_str().as_bytes(),
                            attributes.as_bytes(),
                            placed,
                            record.policy.as_bytes(),
                        ),
                    )
                    .await;
                match inserted {
                    Err(e) if is_deadlock(&e) => continue,
                    Err(e) => return Err(my_error(e)),
                    Ok(()) if conn.affected_rows() == 1 => {
                        return Ok(CreateOutcome::Created(record))
                    }
                    Ok(()) => {}
                }
                if let Some(existing) = Self::read(&mut conn, a, c).await? {
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
        json(&attributes)?;
        self.edit(
            "update",
            account,
            container,
            Some(expected_version),
            Edit::Attributes(attributes),
        )
        .await
    }

    async fn relocate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        cluster: ClusterId,
    ) -> Result<ContainerRecord, StoreError> {
        self.edit(
            "relocate",
            account,
            container,
            Some(expected_version),
            Edit::Cluster(cluster),
        )
        .await
    }

    async fn delete(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, StoreError> {
        self.edit("delete", account, container, expected_version, Edit::Delete)
            .await
    }

    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError> {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        // Every name is longer than the empty one.
        let marker = marker.unwrap_or("").as_bytes();
        self.with_conn("list", |mut conn| async move {
            // VARBINARY compares byte by byte: UTF-8 byte order, as Swift lists.
            let sql = format!(
                "SELECT {COLUMNS} FROM stackfed_containers
                 WHERE account = ? AND container > ?
                 ORDER BY container LIMIT ?"
            );
            let rows: Vec<Row> = conn
                .exec(sql, (account.as_str().as_bytes(), marker, limit))
                .await
                .map_err(my_error)?;
            rows.into_iter().map(row_to_record).collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests;
