//! Metadata in SQLite (the default).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{CacheEntry, MetaError, MetadataStore, StoredRecord};
use crate::id::ImageId;
use crate::record::ImageRecord;

const SCHEMA_VERSION: u32 = 2;
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE images (
        id            TEXT PRIMARY KEY,
        record        TEXT    NOT NULL,
        fetched_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE cached (
        id             TEXT PRIMARY KEY,
        size           INTEGER NOT NULL,
        cached_at_ms   INTEGER NOT NULL,
        last_access_ms INTEGER NOT NULL,
        hits           INTEGER NOT NULL DEFAULT 0,
        pinned         INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
",
    "
    CREATE TABLE pins (id TEXT PRIMARY KEY) WITHOUT ROWID;
",
];

/// A metadata store in a SQLite database file (WAL) or in memory. Blocking calls run on
/// Tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct SqliteMetadataStore {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: rusqlite::Error) -> MetaError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        // Only another writer holding the database is temporary.
        Some(DatabaseBusy | DatabaseLocked) => MetaError::unavailable(e),
        Some(CannotOpen | DiskFull | SystemIoFailure | ReadOnly | PermissionDenied) => {
            MetaError::storage(e)
        }
        _ => MetaError::internal(e.to_string(), Some(e.into())),
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SqliteMetadataStore {
    /// Opens (creating) the database file and migrates its schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        Self::init(conn)
    }

    /// A private in-memory database.
    pub fn in_memory() -> Result<Self, MetaError> {
        Self::init(Connection::open_in_memory().map_err(err)?)
    }

    fn init(mut conn: Connection) -> Result<Self, MetaError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let tx = conn.transaction().map_err(err)?;
        let current: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if current > SCHEMA_VERSION {
            return Err(MetaError::internal(
                format!("schema version {current} is newer than this build's {SCHEMA_VERSION}"),
                None,
            ));
        }
        for m in &MIGRATIONS[current as usize..] {
            tx.execute_batch(m).map_err(err)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
            .map_err(|e| MetaError::internal("a metadata store task failed", Some(e.into())))?
    }

    /// Lets the database grow no more, as on a full disk.
    #[cfg(test)]
    pub(crate) fn fill_up(&self) {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
    }
}

fn decode(text: &str, fetched: i64) -> Result<StoredRecord, MetaError> {
    let record: ImageRecord = serde_json::from_str(text)
        .map_err(|e| MetaError::internal(format!("corrupt record: {e}"), Some(e.into())))?;
    Ok(StoredRecord {
        record,
        fetched_at_ms: unms(fetched),
    })
}

fn entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, i64, i64, i64, bool)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn to_entry(t: (String, i64, i64, i64, i64, bool)) -> Result<CacheEntry, MetaError> {
    Ok(CacheEntry {
        id: ImageId::parse(&t.0)
            .ok_or_else(|| MetaError::internal(format!("corrupt id {:?}", t.0), None))?,
        size: unms(t.1),
        cached_at_ms: unms(t.2),
        last_access_ms: unms(t.3),
        hits: unms(t.4),
        pinned: t.5,
    })
}

const ENTRY: &str = "SELECT c.id, c.size, c.cached_at_ms, c.last_access_ms, c.hits,
                            EXISTS (SELECT 1 FROM pins p WHERE p.id = c.id)
                     FROM cached c";

#[async_trait]
impl MetadataStore for SqliteMetadataStore {
    async fn put(&self, record: &ImageRecord, fetched_at_ms: u64) -> Result<(), MetaError> {
        let text = serde_json::to_string(record)
            .map_err(|e| MetaError::internal(format!("unstorable record: {e}"), Some(e.into())))?;
        let id = record.id.as_str().to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT INTO images (id, record, fetched_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET record = ?2, fetched_at_ms = ?3",
                params![id, text, ms(fetched_at_ms)],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn get(&self, id: &ImageId) -> Result<Option<StoredRecord>, MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            let row: Option<(String, i64)> = c
                .query_row(
                    "SELECT record, fetched_at_ms FROM images WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            row.map(|(t, f)| decode(&t, f)).transpose()
        })
        .await
    }

    async fn list(&self) -> Result<Vec<StoredRecord>, MetaError> {
        self.run(|c| {
            let mut st = c
                .prepare_cached("SELECT record, fetched_at_ms FROM images ORDER BY id")
                .map_err(err)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(err)?;
            rows.map(|r| r.map_err(err).and_then(|(t, f)| decode(&t, f)))
                .collect()
        })
        .await
    }

    async fn remove(&self, id: &ImageId) -> Result<(), MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM cached WHERE id = ?1", params![id])
                .map_err(err)?;
            c.execute("DELETE FROM pins WHERE id = ?1", params![id])
                .map_err(err)?;
            c.execute("DELETE FROM images WHERE id = ?1", params![id])
                .map_err(err)?;
            Ok(())
        })
        .await
    }

    async fn set_cached(&self, id: &ImageId, size: u64, now_ms: u64) -> Result<(), MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            c.execute(
                "INSERT INTO cached (id, size, cached_at_ms, last_access_ms, hits, pinned)
                 VALUES (?1, ?2, ?3, ?3, 0, 0)
                 ON CONFLICT (id) DO UPDATE SET size = ?2, cached_at_ms = ?3, last_access_ms = ?3, hits = 0",
                params![id, ms(size), ms(now_ms)],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn clear_cached(&self, id: &ImageId) -> Result<(), MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM cached WHERE id = ?1", params![id])
                .map(drop)
                .map_err(err)
        })
        .await
    }

    async fn touch(&self, id: &ImageId, now_ms: u64) -> Result<(), MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            c.execute(
                "UPDATE cached SET hits = hits + 1, last_access_ms = ?2 WHERE id = ?1",
                params![id, ms(now_ms)],
            )
            .map(drop)
            .map_err(err)
        })
        .await
    }

    async fn cache_entry(&self, id: &ImageId) -> Result<Option<CacheEntry>, MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            c.query_row(&format!("{ENTRY} WHERE c.id = ?1"), params![id], entry)
                .optional()
                .map_err(err)?
                .map(to_entry)
                .transpose()
        })
        .await
    }

    async fn set_pinned(&self, id: &ImageId, pinned: bool) -> Result<(), MetaError> {
        self.write_pin(id, pinned).await
    }

    async fn pinned(&self) -> Result<Vec<ImageId>, MetaError> {
        self.read_pins().await
    }

    async fn cache_entries(&self) -> Result<Vec<CacheEntry>, MetaError> {
        self.run(|c| {
            let mut st = c
                .prepare_cached(&format!("{ENTRY} ORDER BY id"))
                .map_err(err)?;
            let rows = st.query_map([], entry).map_err(err)?;
            rows.map(|r| r.map_err(err).and_then(to_entry)).collect()
        })
        .await
    }
}

impl SqliteMetadataStore {
    async fn write_pin(&self, id: &ImageId, pinned: bool) -> Result<(), MetaError> {
        let id = id.as_str().to_owned();
        self.run(move |c| {
            let sql = if pinned {
                "INSERT INTO pins (id) VALUES (?1) ON CONFLICT (id) DO NOTHING"
            } else {
                "DELETE FROM pins WHERE id = ?1"
            };
            c.execute(sql, params![id]).map(drop).map_err(err)
        })
        .await
    }

    async fn read_pins(&self) -> Result<Vec<ImageId>, MetaError> {
        self.run(|c| {
            let mut st = c
                .prepare_cached("SELECT id FROM pins ORDER BY id")
                .map_err(err)?;
            let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
            rows.map(|r| {
                let t = r.map_err(err)?;
                ImageId::parse(&t)
                    .ok_or_else(|| MetaError::internal(format!("corrupt id {t:?}"), None))
            })
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        super::super::conformance::run_all(&SqliteMetadataStore::in_memory().unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        super::super::conformance::run_all(&SqliteMetadataStore::open(&path).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrates_a_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
        }
        let s = SqliteMetadataStore::open(&path).unwrap();
        let id = ImageId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        s.set_pinned(&id, true).await.unwrap();
        assert_eq!(s.pinned().await.unwrap(), vec![id]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let id = ImageId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        {
            let s = SqliteMetadataStore::open(&path).unwrap();
            s.put(
                &ImageRecord::new(id.clone(), crate::record::Visibility::Public),
                5,
            )
            .await
            .unwrap();
            s.set_cached(&id, 42, 6).await.unwrap();
        }
        let s = SqliteMetadataStore::open(&path).unwrap();
        assert_eq!(s.get(&id).await.unwrap().unwrap().fetched_at_ms, 5);
        assert_eq!(s.cache_entry(&id).await.unwrap().unwrap().size, 42);
    }
}
