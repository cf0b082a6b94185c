//! The proxies' shared sessions in the PostgreSQL database (table `stackfed_sessions`).

use async_trait::async_trait;

use super::{pg_error, to_i64, PostgresStore};
use crate::attrs::{now_ms, StoreError};
use crate::sessions::{SealedSession, SessionStore, TokenHash};

#[async_trait]
impl SessionStore for PostgresStore {
    async fn put_session(
        &self,
        token_hash: &TokenHash,
        session: SealedSession,
    ) -> Result<(), StoreError> {
        let now = to_i64(now_ms())?;
        let expires = to_i64(session.expires_at_ms)?;
        // The session written now is kept; of the others, the newest `max - 1`.
        let others = to_i64(self.max_sessions.max(1) - 1)?;
        self.with_client("session write", |mut client| async move {
            let tx = client.transaction().await.map_err(pg_error)?;
            tx.execute(
                "DELETE FROM stackfed_sessions WHERE expires_at_ms <= $1",
                &[&now],
            )
            .await
            .map_err(pg_error)?;
            tx.execute(
                "INSERT INTO stackfed_sessions (token_hash, sealed, created_at_ms, expires_at_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (token_hash) DO UPDATE
                   SET sealed = EXCLUDED.sealed, expires_at_ms = EXCLUDED.expires_at_ms",
                &[&token_hash.as_slice(), &session.sealed, &now, &expires],
            )
            .await
            .map_err(pg_error)?;
            // Bounded: past `max_sessions`, the oldest sessions (by creation) go, never
            // the one just written.
            tx.execute(
                "DELETE FROM stackfed_sessions WHERE token_hash IN (
                   SELECT token_hash FROM stackfed_sessions WHERE token_hash <> $2
                   ORDER BY created_at_ms DESC, token_hash DESC OFFSET $1)",
                &[&others, &token_hash.as_slice()],
            )
            .await
            .map_err(pg_error)?;
            tx.commit().await.map_err(pg_error)
        })
        .await
    }

    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SealedSession>, StoreError> {
        let now = to_i64(now_ms())?;
        self.with_client("session read", |client| async move {
            let row = client
                .query_opt(
                    "SELECT sealed, expires_at_ms FROM stackfed_sessions
                     WHERE token_hash = $1 AND expires_at_ms > $2",
                    &[&token_hash.as_slice(), &now],
                )
                .await
                .map_err(pg_error)?;
            let Some(row) = row else { return Ok(None) };
            let sealed: Vec<u8> = row.try_get(0).map_err(pg_error)?;
            let expires: i64 = row.try_get(1).map_err(pg_error)?;
            Ok(Some(SealedSession {
                sealed,
                expires_at_ms: u64::try_from(expires).unwrap_or(0),
            }))
        })
        .await
    }
}
