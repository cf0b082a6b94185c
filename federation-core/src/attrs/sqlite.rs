//! The SQLite attribute store (the default).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::{AttributeStore, Attributes, ContainerRecord, CreateOutcome, NewContainer, StoreError};
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

/// Schema migrations, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the container records.
    "CREATE TABLE containers (
        account      TEXT    NOT NULL,
        container    TEXT    NOT NULL,
        cluster      TEXT    NOT NULL,
        attributes   TEXT    NOT NULL,
        placed_at_ms INTEGER NOT NULL,
        policy       TEXT    NOT NULL,
        version      INTEGER NOT NULL,
        PRIMARY KEY (account, container)
    ) WITHOUT ROWID;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// An attribute store in a SQLite database: a file (WAL mode, so readers never wait for
/// the writer, and other processes may open the same file) or an in-memory database.
///
/// Blocking SQLite calls run on Tokio's blocking pool, never on the async worker threads,
/// so this store must be used from within a Tokio runtime.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
        )
    );
    if retryable {
        StoreError::Unavailable {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    } else {
        StoreError::Internal {
            message: e.to_string(),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(unavailable)?;
        Self::init(conn, Some(path))
    }

    /// A private in-memory database, gone when the store is dropped.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(unavailable)?;
        Self::init(conn, None)
    }

    /// The database file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        if path.is_some() {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(unavailable)?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(unavailable)?;
        }
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            message: format!("SQLite worker failed: {e}"),
            source: None,
        })?
    }

    /// Changes a record at `expected_version` (its attributes or cluster) and bumps its
    /// version, in one immediate transaction.
    async fn modify(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        change: impl FnOnce(&mut ContainerRecord) + Send + 'static,
    ) -> Result<ContainerRecord, StoreError> {
        let (account, container) = (account.clone(), container.clone());
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let mut record = current(&tx, &account, &container, Some(expected_version))?;
            change(&mut record);
            record.version += 1;
            tx.execute(
                "UPDATE containers SET attributes = ?1, cluster = ?2, version = ?3
                 WHERE account = ?4 AND container = ?5",
                params![
                    json(&record.attributes)?,
                    record.cluster.as_str(),
                    to_i64(record.version)?,
                    account.as_str(),
                    container.as_str()
                ],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(record)
        })
        .await
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let current: u32 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unavailable)?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Internal {
            message: format!(
                "database schema version {current} is newer than this build's {SCHEMA_VERSION}"
            ),
        });
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql).map_err(unavailable)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

const SELECT: &str = "SELECT account, container, cluster, attributes, placed_at_ms, policy, version
                      FROM containers";

fn corrupt(what: &str, detail: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("corrupt {what}: {detail}").into())
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRecord> {
    let account: String = row.get(0)?;
    let container: String = row.get(1)?;
    let cluster: String = row.get(2)?;
    let attributes: String = row.get(3)?;
    let placed_at_ms: i64 = row.get(4)?;
    let version: i64 = row.get(6)?;
    Ok(ContainerRecord {
        account: AccountName::new(account).map_err(|e| corrupt("account", e))?,
        container: ContainerName::new(container).map_err(|e| corrupt("container", e))?,
        cluster: ClusterId::new(cluster).map_err(|e| corrupt("cluster", e))?,
        attributes: serde_json::from_str(&attributes).map_err(|e| corrupt("attributes", e))?,
        placed_at_ms: u64::try_from(placed_at_ms).map_err(|e| corrupt("time", e))?,
        policy: row.get(5)?,
        version: u64::try_from(version).map_err(|e| corrupt("version", e))?,
    })
}

fn read(
    conn: &Connection,
    account: &str,
    container: &str,
) -> Result<Option<ContainerRecord>, StoreError> {
    conn.prepare_cached(&format!("{SELECT} WHERE account = ?1 AND container = ?2"))
        .and_then(|mut st| {
            st.query_row(params![account, container], row_to_record)
                .optional()
        })
        .map_err(unavailable)
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        reason: format!("{v} does not fit in SQLite's integer"),
    })
}

fn json(attributes: &Attributes) -> Result<String, StoreError> {
    serde_json::to_string(attributes).map_err(|e| StoreError::InvalidInput {
        reason: e.to_string(),
    })
}

/// Loads the record for a conditional write and checks its version.
fn current(
    tx: &Connection,
    account: &AccountName,
    container: &ContainerName,
    expected: Option<u64>,
) -> Result<ContainerRecord, StoreError> {
    let record =
        read(tx, account.as_str(), container.as_str())?.ok_or_else(|| StoreError::NotFound {
            account: account.clone(),
            container: container.clone(),
        })?;
    match expected {
        Some(v) if v != record.version => Err(StoreError::Conflict {
            account: account.clone(),
            container: container.clone(),
            expected: v,
            actual: record.version,
        }),
        _ => Ok(record),
    }
}

#[async_trait]
impl AttributeStore for SqliteStore {
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError> {
        let (a, c) = (account.as_str().to_owned(), container.as_str().to_owned());
        self.with_conn(move |conn| read(conn, &a, &c)).await
    }

    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError> {
        self.with_conn(move |conn| {
            let record = new.into_record();
            let attributes = json(&record.attributes)?;
            let placed = to_i64(record.placed_at_ms)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let inserted = tx
                .execute(
                    "INSERT INTO containers
                       (account, container, cluster, attributes, placed_at_ms, policy, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
                     ON CONFLICT (account, container) DO NOTHING",
                    params![
                        record.account.as_str(),
                        record.container.as_str(),
                        record.cluster.as_str(),
                        attributes,
                        placed,
                        record.policy,
                    ],
                )
                .map_err(unavailable)?;
            let outcome = if inserted == 1 {
                CreateOutcome::Created(record)
            } else {
                let existing = read(&tx, record.account.as_str(), record.container.as_str())?
                    .ok_or_else(|| StoreError::Internal {
                        message: "insert conflicted but no row exists".to_owned(),
                    })?;
                CreateOutcome::Existing(existing)
            };
            tx.commit().map_err(unavailable)?;
            Ok(outcome)
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
        self.modify(account, container, expected_version, |r| {
            r.attributes = attributes
        })
        .await
    }

    async fn relocate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        cluster: ClusterId,
    ) -> Result<ContainerRecord, StoreError> {
        self.modify(account, container, expected_version, |r| {
            r.cluster = cluster
        })
        .await
    }

    async fn delete(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, StoreError> {
        let (account, container) = (account.clone(), container.clone());
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let record = current(&tx, &account, &container, expected_version)?;
            tx.execute(
                "DELETE FROM containers WHERE account = ?1 AND container = ?2",
                params![account.as_str(), container.as_str()],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(record)
        })
        .await
    }

    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError> {
        let account = account.as_str().to_owned();
        let marker = marker.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            // TEXT compares with the BINARY collation: byte order of UTF-8, as Swift lists.
            let sql = format!(
                "{SELECT} WHERE account = ?1 AND (?2 IS NULL OR container > ?2)
                 ORDER BY container LIMIT ?3"
            );
            let mut st = conn.prepare_cached(&sql).map_err(unavailable)?;
            let rows = st
                .query_map(params![account, marker, limit], row_to_record)
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_in_memory() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        crate::attrs::conformance::run_all(store, "sqlmem").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("attrs.db")).unwrap());
        crate::attrs::conformance::run_all(store, "sqlfile").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attrs.db");
        let a = AccountName::new("AUTH_x").unwrap();
        let c = ContainerName::new("kept").unwrap();
        let written = {
            let store = SqliteStore::open(&path).unwrap();
            let new = NewContainer::new(a.clone(), c.clone(), ClusterId::new("east").unwrap())
                .attributes([("tier".to_owned(), "gold".to_owned())].into())
                .policy("pin");
            store.create_if_absent(new).await.unwrap();
            store
                .update_attributes(&a, &c, 1, [("tier".to_owned(), "silver".to_owned())].into())
                .await
                .unwrap()
        };
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get(&a, &c).await.unwrap(), Some(written));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_handles_on_one_file_race_with_one_winner() {
        // Two independent connections (as two proxy processes would have) on one file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attrs.db");
        let one = SqliteStore::open(&path).unwrap();
        let two = SqliteStore::open(&path).unwrap();
        let a = AccountName::new("AUTH_x").unwrap();
        for round in 0..20 {
            let c = ContainerName::new(format!("c{round}")).unwrap();
            let n1 = NewContainer::new(a.clone(), c.clone(), ClusterId::new("one").unwrap());
            let n2 = NewContainer::new(a.clone(), c.clone(), ClusterId::new("two").unwrap());
            let (r1, r2) = tokio::join!(one.create_if_absent(n1), two.create_if_absent(n2));
            let (r1, r2) = (r1.unwrap(), r2.unwrap());
            assert_ne!(r1.created(), r2.created());
            assert_eq!(r1.record().cluster, r2.record().cluster);
        }
    }

    #[tokio::test]
    async fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attrs.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Internal { .. })
        ));
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attrs.db");
        let store = SqliteStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO containers VALUES ('AUTH_x', 'bad', 'east', 'not json', 0, '', 1)",
            [],
        )
        .unwrap();
        let a = AccountName::new("AUTH_x").unwrap();
        let c = ContainerName::new("bad").unwrap();
        assert!(matches!(
            store.get(&a, &c).await,
            Err(StoreError::Internal { .. })
        ));
    }
}
