//! The in-memory attribute store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{AttributeStore, Attributes, ContainerRecord, CreateOutcome, NewContainer, StoreError};
use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

type Key = (String, String);

/// An attribute store in process memory: for tests, examples and single-process
/// deployments that can afford to forget on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<Key, ContainerRecord>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, ContainerRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes a record at `expected_version` and bumps its version.
    fn modify(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, StoreError> {
        let mut records = self.lock();
        let record =
            records
                .get_mut(&key(account, container))
                .ok_or_else(|| StoreError::NotFound {
                    account: account.clone(),
                    container: container.clone(),
                })?;
        check_version(record, Some(expected_version))?;
        change(record);
        record.version += 1;
        Ok(record.clone())
    }
}

fn key(account: &AccountName, container: &ContainerName) -> Key {
    (account.as_str().to_owned(), container.as_str().to_owned())
}

fn check_version(record: &ContainerRecord, expected: Option<u64>) -> Result<(), StoreError> {
    match expected {
        Some(v) if v != record.version => Err(StoreError::Conflict {
            account: record.account.clone(),
            container: record.container.clone(),
            expected: v,
            actual: record.version,
        }),
        _ => Ok(()),
    }
}

#[async_trait]
impl AttributeStore for MemoryStore {
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError> {
        Ok(self.lock().get(&key(account, container)).cloned())
    }

    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError> {
        let mut records = self.lock();
        let k = key(&new.account, &new.container);
        if let Some(existing) = records.get(&k) {
            return Ok(CreateOutcome::Existing(existing.clone()));
        }
        let record = new.into_record();
        records.insert(k, record.clone());
        Ok(CreateOutcome::Created(record))
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
    }

    async fn delete(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, StoreError> {
        let mut records = self.lock();
        let k = key(account, container);
        let record = records.get(&k).ok_or_else(|| StoreError::NotFound {
            account: account.clone(),
            container: container.clone(),
        })?;
        check_version(record, expected_version)?;
        records.remove(&k).ok_or_else(|| StoreError::Internal {
            message: "record vanished under the lock".to_owned(),
        })
    }

    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError> {
        let records = self.lock();
        let acct = account.as_str().to_owned();
        let start = match marker {
            Some(m) => Bound::Excluded((acct.clone(), m.to_owned())),
            None => Bound::Included((acct.clone(), String::new())),
        };
        Ok(records
            .range((start, Bound::Unbounded))
            .take_while(|((a, _), _)| *a == acct)
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conformance() {
        let store = std::sync::Arc::new(MemoryStore::new());
        crate::attrs::conformance::run_all(store, "mem").await;
    }
}
