//! An [`AttributeStore`] kept in a Swift cluster, so that many proxy processes share one
//! replicated store.
//!
//! Each container record is one small JSON object in a registry container on a
//! designated cluster, named `<account>/<hex of the container name>` (hex keeps Swift's
//! byte-ordered listing in the order of the container names, and keeps `/` out of the
//! name). A create is a `PUT` with `If-None-Match: *`.
//!
//! Swift checks `If-None-Match` when a PUT arrives and writes the object when its body
//! has been received, so two PUTs arriving within the same few milliseconds can both be
//! accepted; the object then holds the one with the newer timestamp. The store closes
//! that window by reading back: every write carries a random writer id, and after a
//! write (or a 412) the store waits `settle` and reads the object again (with
//! `X-Newest`). Only the writer whose id is read back has won; every other caller
//! adopts what it read. Updates are compare-and-set the same way (the version in the
//! record, then read-back). Swift has no conditional DELETE, so a delete reads back too:
//! an update that checked the version before the DELETE and wrote after it would
//! resurrect the record; the delete sees that newer version of the same incarnation
//! after `settle` and deletes again. The assumption, stated: a PUT that passed its
//! precondition is written within `settle` (default 200 ms; on loopback a registry PUT
//! takes a few milliseconds). What breaks it (a registry PUT slower than `settle`) can
//! lose: a create race (a container left on two clusters, the later record wins), or a
//! delete (a record resurrected that names a cluster where the container is gone:
//! reads answer 404, the next PUT creates it there again). Use PostgreSQL where
//! neither is acceptable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use stackfed_http::{HttpClient, Timeouts};
//! use swift_proto::registry::{SwiftAttributeStore, SwiftStoreConfig};
//! let config = SwiftStoreConfig::new(
//!     "http://127.0.0.1:8081".parse()?,
//!     "registry:admin",
//!     "secret",
//! );
//! let store = SwiftAttributeStore::new(config, HttpClient::new(Timeouts::default()));
//! # let _ = store; Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use federation_core::attrs::{
    AttributeStore, Attributes, ContainerRecord, CreateOutcome, NewContainer, StoreError,
};
use federation_core::{AccountName, ClusterId, ContainerName};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use stackfed_http::HttpClient;
use url::Url;

use crate::cluster::{Auth, ClusterRequest, Credentials, Payload, Session, SwiftCluster};
use crate::path::encode_segment;

/// The largest record the store reads back.
const MAX_RECORD_BYTES: usize = 256 * 1024;
/// The largest registry listing page the store reads.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;
/// Records fetched at once while listing.
const LIST_CONCURRENCY: usize = 16;
/// Attempts of a create that keeps meeting concurrent deletes.
const CREATE_ATTEMPTS: usize = 5;
/// The record format this version writes and reads.
const FORMAT: u32 = 1;

/// Where the registry lives and how to reach it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SwiftStoreConfig {
    /// The registry cluster's base URL (its tempauth answers at `/auth/v1.0`).
    pub endpoint: Url,
    /// The tempauth user, `account:user` (not with `auth = { kind = "keystone" }`: the
    /// registry is then in the proxy's own Keystone project's account).
    #[serde(default)]
    pub user: String,
    /// The tempauth key.
    #[serde(default)]
    pub key: String,
    /// The registry container in that user's account.
    #[serde(default = "default_container")]
    pub container: String,
    /// Milliseconds to wait before reading a write back (see the module docs).
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
}

impl std::fmt::Debug for SwiftStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftStoreConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("user", &self.user)
            .field("container", &self.container)
            .field("settle_ms", &self.settle_ms)
            .finish_non_exhaustive()
    }
}

fn default_container() -> String {
    "federation-registry".to_owned()
}

fn default_settle_ms() -> u64 {
    200
}

impl SwiftStoreConfig {
    /// A registry in container `federation-registry` of `user`'s account, settling 200 ms.
    pub fn new(endpoint: Url, user: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            endpoint,
            user: user.into(),
            key: key.into(),
            container: default_container(),
            settle_ms: default_settle_ms(),
        }
    }

    /// Sets the registry container.
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = container.into();
        self
    }

    /// Sets the settle time in milliseconds.
    pub fn settle_ms(mut self, ms: u64) -> Self {
        self.settle_ms = ms;
        self
    }
}

/// What is stored for each record: the record and who wrote it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    format: u32,
    writer: String,
    record: ContainerRecord,
}

/// See the module docs.
#[derive(Debug)]
pub struct SwiftAttributeStore {
    cluster: SwiftCluster,
    session: Session,
    container_segment: String,
    settle: Duration,
}

fn unavailable(message: impl Into<String>) -> StoreError {
    StoreError::Unavailable {
        message: message.into(),
        source: None,
    }
}

/// The hex of a name's UTF-8 bytes: same order as the bytes, no `/`.
pub fn hex_name(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of [`hex_name`], `None` when `hex` is not one.
pub fn unhex_name(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn object_name(account: &AccountName, container: &str) -> String {
    format!("{}/{}", account.as_str(), hex_name(container))
}

fn writer_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| unavailable("no randomness for a writer id"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl SwiftAttributeStore {
    /// A store reached through `client`. Nothing is contacted until the first call; the
    /// registry container is created when the first record is written.
    pub fn new(config: SwiftStoreConfig, client: HttpClient) -> Self {
        let session = Session::new(Credentials {
            user: config.user.clone(),
            key: config.key.clone(),
        });
        Self::with_session(config, client, session)
    }

    /// A store acting as `session` (such as the proxy's Keystone identity,
    /// [`Session::keystone`]): the registry is in that session's account.
    pub fn with_session(config: SwiftStoreConfig, client: HttpClient, session: Session) -> Self {
        let name = ClusterId::new("registry").unwrap_or_else(|_| unreachable!("a valid id"));
        Self {
            cluster: SwiftCluster::new(name, &config.endpoint, &[], client),
            session,
            container_segment: encode_segment(&config.container, false),
            settle: Duration::from_millis(config.settle_ms),
        }
    }

    /// One request to the registry container (`object` empty) or one of its objects;
    /// the cluster client renews the token once if the cluster refuses it.
    async fn call(
        &self,
        method: Method,
        object: &str,
        query: &str,
        headers: &[(&'static str, &str)],
        body: Option<Bytes>,
    ) -> Result<Answer, StoreError> {
        let account = self
            .session
            .token_for(&self.cluster, None)
            .await
            .map_err(|e| StoreError::Unavailable {
                message: format!("registry authentication failed: {e}"),
                source: Some(Box::new(e)),
            })?
            .storage_path;
        let mut path = format!("{account}/{}", self.container_segment);
        if !object.is_empty() {
            path.push('/');
            path.push_str(&encode_segment(object, true));
        }
        path.push_str(query);
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            let v = HeaderValue::from_str(v)
                .map_err(|_| unavailable(format!("bad header value for {k}")))?;
            h.insert(*k, v);
        }
        let limit = if object.is_empty() {
            MAX_LISTING_BYTES
        } else {
            MAX_RECORD_BYTES
        };
        let req = ClusterRequest::new(method, path)
            .headers(h)
            .body(body.map_or(Payload::Empty, Payload::Bytes));
        let (parts, body) = self
            .cluster
            .collect(req, Auth::Session(&self.session), limit)
            .await
            .map_err(|e| StoreError::Unavailable {
                message: format!("registry cluster: {e}"),
                source: Some(Box::new(e)),
            })?;
        Ok(Answer {
            status: parts.status,
            body,
        })
    }

    /// Compare-and-set: version check, write, settle, read-back (see the module docs).
    async fn modify(
        &self,
        account: &AccountName,
        container: &ContainerName,
        expected_version: u64,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, StoreError> {
        let (object, current) = self.current(account, container).await?;
        let conflict = |actual| StoreError::Conflict {
            account: account.clone(),
            container: container.clone(),
            expected: expected_version,
            actual,
        };
        if current.record.version != expected_version {
            return Err(conflict(current.record.version));
        }
        let mut record = current.record;
        change(&mut record);
        record.version += 1;
        let stored = Stored {
            format: FORMAT,
            writer: writer_id()?,
            record,
        };
        self.write(&object, &stored, false).await?;
        tokio::time::sleep(self.settle).await;
        match self.read(&object).await? {
            Some(s) if s.writer == stored.writer => Ok(s.record),
            Some(s) => Err(conflict(s.record.version)),
            None => Err(StoreError::NotFound {
                account: account.clone(),
                container: container.clone(),
            }),
        }
    }

    async fn create_container(&self) -> Result<(), StoreError> {
        let a = self.call(Method::PUT, "", "", &[], None).await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(unavailable(format!(
                "registry container could not be created: {}",
                a.status
            )))
        }
    }

    async fn read(&self, object: &str) -> Result<Option<Stored>, StoreError> {
        let a = self
            .call(Method::GET, object, "", &[("x-newest", "true")], None)
            .await?;
        match a.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let stored: Stored =
                    serde_json::from_slice(&a.body).map_err(|e| StoreError::Internal {
                        message: format!("registry object {object} is not a record: {e}"),
                    })?;
                if stored.format != FORMAT {
                    return Err(StoreError::Internal {
                        message: format!(
                            "registry object {object} has format {}, this version reads {FORMAT}",
                            stored.format
                        ),
                    });
                }
                Ok(Some(stored))
            }
            s => Err(unavailable(format!("registry read of {object}: {s}"))),
        }
    }

    /// Writes a record; `Ok(false)` when `If-None-Match: *` found one already.
    async fn write(
        &self,
        object: &str,
        stored: &Stored,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let body =
            Bytes::from(
                serde_json::to_vec(stored).map_err(|e| StoreError::InvalidInput {
                    reason: e.to_string(),
                })?,
            );
        let mut headers = vec![("content-type", "application/json")];
        if only_if_absent {
            headers.push(("if-none-match", "*"));
        }
        let mut created_container = false;
        loop {
            let a = self
                .call(Method::PUT, object, "", &headers, Some(body.clone()))
                .await?;
            match a.status {
                s if s.is_success() => return Ok(true),
                StatusCode::PRECONDITION_FAILED if only_if_absent => return Ok(false),
                StatusCode::NOT_FOUND if !created_container => {
                    self.create_container().await?;
                    created_container = true;
                }
                s => return Err(unavailable(format!("registry write of {object}: {s}"))),
            }
        }
    }

    async fn remove(&self, object: &str) -> Result<(), StoreError> {
        let a = self.call(Method::DELETE, object, "", &[], None).await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(unavailable(format!(
                "registry delete of {object}: {}",
                a.status
            )))
        }
    }

    async fn current(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<(String, Stored), StoreError> {
        let object = object_name(account, container.as_str());
        match self.read(&object).await? {
            Some(s) => Ok((object, s)),
            None => Err(StoreError::NotFound {
                account: account.clone(),
                container: container.clone(),
            }),
        }
    }
}

#[async_trait]
impl AttributeStore for SwiftAttributeStore {
    async fn get(
        &self,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Option<ContainerRecord>, StoreError> {
        Ok(self
            .read(&object_name(account, container.as_str()))
            .await?
            .map(|s| s.record))
    }

    async fn create_if_absent(&self, new: NewContainer) -> Result<CreateOutcome, StoreError> {
        let object = object_name(&new.account, new.container.as_str());
        let stored = Stored {
            format: FORMAT,
            writer: writer_id()?,
            record: new.into_record(),
        };
        for _ in 0..CREATE_ATTEMPTS {
            let wrote = self.write(&object, &stored, true).await?;
            // Let any PUT that passed its precondition alongside ours land, then see who
            // Swift kept.
            tokio::time::sleep(self.settle).await;
            match self.read(&object).await? {
                Some(s) if wrote && s.writer == stored.writer => {
                    return Ok(CreateOutcome::Created(s.record))
                }
                Some(s) => return Ok(CreateOutcome::Existing(s.record)),
                // Deleted in between: try again.
                None => continue,
            }
        }
        Err(unavailable(format!(
            "record {object} kept changing; gave up after {CREATE_ATTEMPTS} attempts"
        )))
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
        let (object, current) = self.current(account, container).await?;
        if let Some(expected) = expected_version {
            if current.record.version != expected {
                return Err(StoreError::Conflict {
                    account: account.clone(),
                    container: container.clone(),
                    expected,
                    actual: current.record.version,
                });
            }
        }
        self.remove(&object).await?;
        // Swift has no conditional DELETE: an update or relocation that checked the
        // version before this DELETE may write after it and resurrect the record. Such
        // a write lands within `settle` (the store's one assumption), so read back
        // once: a later version of the same incarnation (same placement time, higher
        // version) is a resurrection and goes too. A new create (version 1, its own
        // placement time) is left alone.
        tokio::time::sleep(self.settle).await;
        if let Some(back) = self.read(&object).await? {
            if back.record.placed_at_ms == current.record.placed_at_ms
                && back.record.version > current.record.version
            {
                tracing::info!(%object, version = back.record.version, "registry: a concurrent update resurrected a deleted record; deleting it again");
                self.remove(&object).await?;
            }
        }
        Ok(current.record)
    }

    async fn list(
        &self,
        account: &AccountName,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ContainerRecord>, StoreError> {
        #[derive(Deserialize)]
        struct Entry {
            name: String,
        }
        let prefix = format!("{}/", account.as_str());
        let mut swift_marker = match marker {
            Some(m) => format!("{prefix}{}", hex_name(m)),
            None => String::new(),
        };
        let mut out = Vec::new();
        // Records deleted between the listing and the read are skipped; keep listing
        // until the page is full or the registry has no more.
        while out.len() < limit {
            let want = (limit - out.len()).min(10_000);
            let query = format!(
                "?format=json&limit={want}&prefix={}&marker={}",
                encode_segment(&prefix, false),
                encode_segment(&swift_marker, false)
            );
            let a = self.call(Method::GET, "", &query, &[], None).await?;
            let entries: Vec<Entry> = match a.status {
                StatusCode::NOT_FOUND | StatusCode::NO_CONTENT => Vec::new(),
                s if s.is_success() => {
                    serde_json::from_slice(&a.body).map_err(|e| StoreError::Internal {
                        message: format!("registry listing unreadable: {e}"),
                    })?
                }
                s => return Err(unavailable(format!("registry listing: {s}"))),
            };
            let Some(last) = entries.last() else { break };
            swift_marker = last.name.clone();
            let short = entries.len() < want;
            let prefix = prefix.as_str();
            let reads = futures::stream::iter(entries.into_iter().map(|e| async move {
                let valid = e.name.strip_prefix(prefix).and_then(unhex_name).is_some();
                if valid {
                    self.read(&e.name).await
                } else {
                    Ok(None)
                }
            }))
            .buffered(LIST_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
            for r in reads {
                if let Some(s) = r? {
                    out.push(s.record);
                }
            }
            if short {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_names_sort_like_the_names(a in "\\PC{0,12}", b in "\\PC{0,12}") {
            prop_assert_eq!(hex_name(&a).cmp(&hex_name(&b)), a.as_bytes().cmp(b.as_bytes()));
            prop_assert_eq!(unhex_name(&hex_name(&a)), Some(a.clone()));
            prop_assert!(!hex_name(&a).contains('/'));
        }
    }

    #[test]
    fn unhex_refuses_what_hex_never_writes() {
        assert_eq!(unhex_name("6"), None);
        assert_eq!(unhex_name("zz"), None);
        assert_eq!(unhex_name("ff"), None); // not UTF-8
        assert_eq!(unhex_name("c3a9").as_deref(), Some("é"));
    }
}
