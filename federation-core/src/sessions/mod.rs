//! Shared session records: what lets a token issued by one proxy work on every proxy.
//!
//! A [`SessionStore`] keeps opaque, sealed session blobs under the hash of the token
//! they belong to, with an expiry. It never sees a token nor what the blob holds: the
//! protocol layer (`swift-proto`) hashes the token and seals the blob with a key derived
//! from the token itself, so a copy of the store reveals neither tokens nor users' keys.
//! Stores are bounded (the oldest sessions go first) and forget expired sessions.
//!
//! Backends: [`MemorySessionStore`] (one process), and the PostgreSQL and MySQL stores
//! (`attrs::PostgresStore`, feature `postgres`; `attrs::MysqlStore`, feature `mysql`),
//! which keep them beside the container records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::attrs::{now_ms, StoreError};

/// The SHA-256 of a token: the only form in which a token reaches a store.
pub type TokenHash = [u8; 32];

/// A stored session: the sealed blob and when it expires (ms since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSession {
    /// The sealed (encrypted and authenticated) session.
    pub sealed: Vec<u8>,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Where sessions are shared. See the [module docs](self).
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps a session until `session.expires_at_ms` (replacing one with the same hash).
    async fn put_session(
        &self,
        token_hash: &TokenHash,
        session: SealedSession,
    ) -> Result<(), StoreError>;

    /// The live (unexpired) session of a token hash, if any.
    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SealedSession>, StoreError>;
}

/// Sessions in this process's memory, at most `capacity` of them.
#[derive(Debug)]
pub struct MemorySessionStore {
    capacity: usize,
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    by_hash: HashMap<TokenHash, (SealedSession, u64)>,
    /// Insertion order: (sequence, hash).
    order: BTreeMap<u64, TokenHash>,
    next: u64,
}

impl MemorySessionStore {
    /// An empty store keeping at most `capacity` sessions (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(MemoryInner::default()),
        }
    }

    /// How many sessions are kept (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_hash
            .len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn put_session(
        &self,
        token_hash: &TokenHash,
        session: SealedSession,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let MemoryInner {
            by_hash,
            order,
            next,
        } = &mut *inner;
        by_hash.retain(|_, (s, seq)| {
            let live = s.expires_at_ms > now;
            if !live {
                order.remove(seq);
            }
            live
        });
        let seq = *next;
        *next += 1;
        if let Some((_, old)) = by_hash.insert(*token_hash, (session, seq)) {
            order.remove(&old);
        }
        order.insert(seq, *token_hash);
        while by_hash.len() > self.capacity {
            let Some((_, oldest)) = order.pop_first() else {
                break;
            };
            by_hash.remove(&oldest);
        }
        Ok(())
    }

    async fn get_session(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SealedSession>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(inner
            .by_hash
            .get(token_hash)
            .filter(|(s, _)| s.expires_at_ms > now_ms())
            .map(|(s, _)| s.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(byte: u8, expires_at_ms: u64) -> SealedSession {
        SealedSession {
            sealed: vec![byte; 4],
            expires_at_ms,
        }
    }

    #[tokio::test]
    async fn bounded_and_expiring() {
        let store = MemorySessionStore::new(3);
        let later = now_ms() + 60_000;
        for i in 0..5u8 {
            store.put_session(&[i; 32], sealed(i, later)).await.unwrap();
        }
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.get_session(&[0; 32]).await.unwrap(),
            None,
            "oldest gone"
        );
        assert_eq!(
            store.get_session(&[4; 32]).await.unwrap(),
            Some(sealed(4, later))
        );
        store.put_session(&[9; 32], sealed(9, 1)).await.unwrap();
        assert_eq!(store.get_session(&[9; 32]).await.unwrap(), None, "expired");
        // The expired one is swept by the next write.
        store.put_session(&[8; 32], sealed(8, later)).await.unwrap();
        assert!(store.len() <= 3);
        assert!(store.get_session(&[8; 32]).await.unwrap().is_some());
    }
}
