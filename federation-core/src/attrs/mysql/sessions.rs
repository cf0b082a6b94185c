//! The proxies' shared sessions in the MySQL/MariaDB database (table
//! `stackfed_sessions`): the same opaque sealed blobs as the PostgreSQL store keeps.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, TxOpts};

use super::{column, my_error, MysqlStore};
use crate::attrs::sql::to_i64;
use crate::attrs::{now_ms, StoreError};
use crate::sessions::{SealedSession, SessionStore, TokenHash};

#[async_trait]
impl SessionStore for MysqlStore {
    async fn put_session(
        &self,
        token_hash: &TokenHash,
        session: SealedSession,
    ) -> Result<(), StoreError> {
        let now = to_i64(now_ms())?;
        let expires = to_i64(session.expires_at_ms)?;
        // The session written now is kept; of the others, the newest `max - 1`.
        let others = self.max_sessions.max(1) - 1;
        self.with_conn("session write", |mut conn| async move {
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .map_err(my_error)?;
            tx.exec_drop(
                "DELETE FROM stackfed_sessions WHERE expires_at_ms <= ?",
                (now,),
            )
            .await
            .map_err(my_error)?;
            tx.exec_drop(
                "INSERT INTO stackfed_sessions (token_hash, sealed, created_at_ms, expires_at_ms)
                 VALUES (?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE sealed = VALUES(sealed), expires_at_ms = VALUES(expires_at_ms)",
                (token_hash.as_slice(), session.sealed.as_slice(), now, expires),
            )
            .await
            .map_err(my_error)?;
            // Bounded: past `max_sessions`, the oldest sessions (by creation) go, never
            // the one just written. The first one too many marks the boundary (MySQL
            // cannot DELETE … LIMIT … OFFSET).
            let first_too_many: Option<Row> = tx
                .exec_first(
                    "SELECT created_at_ms, token_hash FROM stackfed_sessions
                     WHERE token_hash <> ?
                     ORDER BY created_at_ms DESC, token_hash DESC
                     LIMIT 1 OFFSET ?",
                    (token_hash.as_slice(), others),
                )
                .await
                .map_err(my_error)?;
            if let Some(mut row) = first_too_many {
                let c: i64 = column(&mut row, 0, "session time")?;
                let h: Vec<u8> = column(&mut row, 1, "session hash")?;
                tx.exec_drop(
                    "DELETE FROM stackfed_sessions
                     WHERE token_hash <> ? AND (created_at_ms, token_hash) <= (?, ?)",
                    (token_hash.as_slice(), c, h),
                )
                .await
                .map_err(my_error)?;
            }
            tx.commit().await.map_err(my_error)
        })
        .await
    }

    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SealedSession>, StoreError> {
        let now = to_i64(now_ms())?;
        self.with_conn("session read", |mut conn| async move {
            let row: Option<Row> = conn
                .exec_first(
                    "SELECT sealed, expires_at_ms FROM stackfed_sessions
                     WHERE token_hash = ? AND expires_at_ms > ?",
                    (token_hash.as_slice(), now),
                )
                .await
                .map_err(my_error)?;
            let Some(mut row) = row else { return Ok(None) };
            let sealed: Vec<u8> = column(&mut row, 0, "session")?;
            let expires: i64 = column(&mut row, 1, "session expiry")?;
            Ok(Some(SealedSession {
                sealed,
                expires_at_ms: u64::try_from(expires).unwrap_or(0),
            }))
        })
        .await
    }
}
