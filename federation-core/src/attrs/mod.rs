//! Container attribute stores: where each container lives, and its attributes.
//!
//! Every container of the federation has one [`ContainerRecord`]: its cluster, the
//! `X-Container-Attr-*` attributes a client set, when and by which policy it was placed,
//! and a version that changes with every update. An [`AttributeStore`] keeps these
//! records; this crate has an in-memory store ([`MemoryStore`]), a SQLite one
//! ([`SqliteStore`], the default) and, with the `postgres` and `mysql` features, a
//! PostgreSQL one (`PostgresStore`) and a MySQL/MariaDB one (`MysqlStore`) that many
//! proxies share.
//!
//! Every backend must pass the same conformance suite (`attrs::conformance`, behind the
//! `conformance` feature), including races of many tasks creating one name.
//!
//! ```
//! use federation_core::attrs::{AttributeStore, CreateOutcome, MemoryStore, NewContainer};
//! use federation_core::{AccountName, ClusterId, ContainerName};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let account = AccountName::new("AUTH_test").unwrap();
//! let container = ContainerName::new("photos").unwrap();
//! let new = NewContainer::new(account.clone(), container.clone(), ClusterId::new("east").unwrap());
//! let CreateOutcome::Created(record) = store.create_if_absent(new).await.unwrap() else { panic!() };
//! assert_eq!(record.version, 1);
//! let found = store.get(&account, &container).await.unwrap().unwrap();
//! assert_eq!(found.cluster.as_str(), "east");
//! # });
//! ```

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod memory;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "mysql")]
pub use mysql::{MysqlConfig, MysqlStore};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use sql::Change;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SCHEMA_VERSION as SQLITE_SCHEMA_VERSION};

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterId;
use crate::name::{AccountName, ContainerName};

/// The attributes of a container: lower-case keys (the part after `X-Container-Attr-`).
pub type Attributes = BTreeMap<String, String>;

/// The stored record of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContainerRecord {
    /// The owning account.
    pub account: AccountName,
    /// The container's name.
    pub container: ContainerName,
    /// The cluster that holds the container and all its objects.
    pub cluster: ClusterId,
    /// The attributes a client set.
    pub attributes: Attributes,
    /// When the container was placed, in milliseconds since the Unix epoch.
    pub placed_at_ms: u64,
    /// The name of the policy that chose the cluster.
    pub policy: String,
    /// Starts at 1 and grows by one with every update.
    pub version: u64,
}

impl ContainerRecord {
    /// When the container was placed.
    pub fn placed_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.placed_at_ms)
    }
}

/// A record to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewContainer {
    /// The owning account.
    pub account: AccountName,
    /// The container's name.
    pub container: ContainerName,
    /// The chosen cluster.
    pub cluster: ClusterId,
    /// Initial attributes.
    pub attributes: Attributes,
    /// The policy that chose the cluster.
    pub policy: String,
    /// Placement time, milliseconds since the Unix epoch.
    pub placed_at_ms: u64,
}

impl NewContainer {
    /// A record with no attributes, placed now by an unnamed policy.
    pub fn new(account: AccountName, container: ContainerName, cluster: ClusterId) -> Self {
        Self {
            account,
            container,
            cluster,
            attributes: Attributes::new(),
            policy: String::new(),
            placed_at_ms: now_ms(),
        }
    }

    /// Sets the attributes.
    pub fn attributes(mut self, attributes: Attributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Sets the policy name.
    pub fn policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = policy.into();
        self
    }

    /// The record as first stored (version 1).
    pub fn into_record(self) -> ContainerRecord {
        ContainerRecord {
            account: self.account,
            container: self.container,
            cluster: self.cluster,
            attributes: self.attributes,
            placed_at_ms: self.placed_at_ms,
            policy: self.policy,
            version: 1,
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What [`AttributeStore::create_if_absent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The record was created: this caller won.
    Created(ContainerRecord),
    /// A record already existed (another caller won): here it is, unchanged.
    Existing(ContainerRecord),
}

impl CreateOutcome {
    /// The record, whoever created it.
    pub fn record(&self) -> &ContainerRecord {
        match self {
            Self::Created(r) | Self::Existing(r) => r,
        }
    }

    /// The record, whoever created it.
    pub fn into_record(self) -> ContainerRecord {
        match self {
            Self::Created(r) | Self::Existing(r) => r,
        }
    }

    /// Whether this caller created it.
    pub fn created(&self) -> bool {
        matches!(self, Self::Created(_))
    }
}

/// Errors from an attribute store. Each variant tells the caller what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record for this container: answer 404.
    #[error("no record for container {container} of account {account}")]
    NotFound {
        /// The account.
        account: AccountName,
        /// The container.
        container: ContainerName,
    },
    /// The record changed since it was read: read it again and retry, or answer 409.
    #[error("record for {account}/{container} is at version {actual}, not {expected}")]
    Conflict {
        /// The account.
        account: AccountName,
        /// The container.
        container: ContainerName,
        /// The version the caller expected.
        expected: u64,
        /// The version in the store.
        actual: u64,
    },
    /// The request itself is invalid: answer 400.
    #[error("invalid request to the attribute store: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// The store cannot be reached or is busy: retry later (503).
    #[error("attribute store unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store holds data this version cannot read (corruption, a newer schema): an
    /// operator must look; retrying will not help.
    #[error("attribute store is damaged or incompatible: {message}")]
    Internal {
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Where the federation remembers each container's cluster and attributes.
///
/// Listing order is byte order of the UTF-8 names, as Swift lists containers.
#[async_trait]
pub trait AttributeStore: Send + Sync + fmt::Debug + 'static {
    /// The record of one container, if any.
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError>;

    /// Creates the record unless one exists. Of many concurrent callers for one name,
    /// exactly one gets [`CreateOutcome::Created`]; the others get the winner's record.
    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError>;

    /// Replaces the attributes if the record is still at `expected_version`, and returns
    /// the updated record (version + 1).
    async fn update_attributes(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        attributes: Attributes,
    ) -> Result<ContainerRecord, StoreError>;

    /// Deletes the record, if it is at `expected_version` (any version when `None`), and
    /// returns what was deleted.
    async fn delete(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, StoreError>;

    /// Records that the container now lives on `cluster` (it was moved), if the record
    /// is still at `expected_version`; returns the updated record (version + 1).
    async fn relocate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        cluster: ClusterId,
    ) -> Result<ContainerRecord, StoreError>;

    /// Up to `limit` records of `account` whose names come after `marker`, in byte order.
    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError>;
}

#[async_trait]
impl<S: AttributeStore + ?Sized> AttributeStore for std::sync::Arc<S> {
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError> {
        (**self).get(account, container).await
    }
    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError> {
        (**self).create_if_absent(new).await
    }
    async fn update_attributes(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        attributes: Attributes,
    ) -> Result<ContainerRecord, StoreError> {
        (**self)
            .update_attributes(account, container, expected_version, attributes)
            .await
    }
    async fn delete(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: Option<u64>,
    ) -> Result<ContainerRecord, StoreError> {
        (**self).delete(account, container, expected_version).await
    }
    async fn relocate(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        cluster: ClusterId,
    ) -> Result<ContainerRecord, StoreError> {
        (**self)
            .relocate(account, container, expected_version, cluster)
            .await
    }
    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError> {
        (**self).list(account, marker, limit).await
    }
}
