//! Client writes to a container that is moving (see [`federation_core::migration`]):
//! held while the mover switches it, counted while in flight so the mover can wait for
//! them before its last pass.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::attrs::ContainerRecord;
use federation_core::migration::{MoveMark, WriteRoute};
use federation_core::{AccountName, ContainerName};

use super::{FederationService, Result};
use crate::error::SwiftError;

/// How often a held write reads the record again.
const HOLD_POLL: Duration = Duration::from_millis(50);

/// Writes in flight to moving containers, per (account, container), in this process.
#[derive(Debug)]
pub struct Inflight {
    counts: Mutex<HashMap<(String, String), usize>>,
    max_hold_ms: AtomicU64,
}

impl Default for Inflight {
    fn default() -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
            max_hold_ms: AtomicU64::new(30_000),
        }
    }
}

impl Inflight {
    /// How long a write may be held before it is answered 503 (the mover gives up a
    /// switch well before that).
    pub fn set_max_hold(&self, max: Duration) {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        self.max_hold_ms.store(ms, Ordering::Relaxed);
    }

    /// The longest hold.
    pub fn max_hold(&self) -> Duration {
        Duration::from_millis(self.max_hold_ms.load(Ordering::Relaxed))
    }

    /// How many writes to the container are in flight.
    pub fn count(&self, account: &str, container: &str) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(account.to_owned(), container.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn enter(self: &Arc<Self>, account: &str, container: &str) -> InflightGuard {
        let key = (account.to_owned(), container.to_owned());
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_insert(0) += 1;
        InflightGuard {
            table: self.clone(),
            key,
        }
    }
}

/// A write in flight; counted until dropped.
#[derive(Debug)]
pub(crate) struct InflightGuard {
    table: Arc<Inflight>,
    key: (String, String),
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl FederationService {
    /// Before a client write to `record`'s container: when it is moving, the record
    /// as it is now (read past the cache), after waiting out a switch, and a guard that
    /// counts the write until it is done. Containers that are not moving pass at once.
    pub(super) async fn write_gate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        record: ContainerRecord,
    ) -> Result<(ContainerRecord, Option<InflightGuard>)> {
        if MoveMark::of(&record).is_none() {
            return Ok((record, None));
        }
        let table = &self.inner.inflight;
        let deadline = Instant::now() + table.max_hold();
        loop {
            // Counted first, then read: a switch that begins after this read waits for
            // this write (see the mover's switch).
            let guard = table.enter(account.as_str(), container.as_str());
            let Some(now) = self.inner.locator.locate_fresh(account, container).await? else {
                return Err(SwiftError::not_found());
            };
            let route = MoveMark::of(&now).map_or(WriteRoute::Proceed, |m| m.write_route(&now));
            if route == WriteRoute::Proceed {
                return Ok((now, Some(guard)));
            }
            drop(guard);
            if Instant::now() >= deadline {
                return Err(SwiftError::unavailable(
                    "The container is switching clusters; retry",
                ));
            }
            tokio::time::sleep(HOLD_POLL).await;
        }
    }
}
