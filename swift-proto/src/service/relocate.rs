//! Co-location on demand. Swift lets an object refer to objects in any container of its
//! account (SLO segments, a DLO prefix, a static symlink's target) and a container name
//! another as its versions or history archive. A cluster can follow such a reference
//! only within itself. When two related containers live on different clusters and one
//! of them is empty (typically created a moment ago for this purpose), the proxy moves
//! the empty one to the other's cluster — the honest answer, since nothing is copied:
//! its metadata is recreated there, the record is moved (compare-and-set), and the old
//! container is deleted. A write that races the move makes the old delete fail (the
//! container is no longer empty); the move is then undone and nothing is lost.

use bytes::Bytes;
use federation_core::attrs::ContainerRecord;
use federation_core::{AccountName, ClusterId, ContainerName};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;

use super::{Call, Caller, FederationService, Result};
use crate::cluster::{swift_path, ClusterRequest};
use crate::error::SwiftError;

use super::large::MAX_MANIFEST;

const SLO_SEGMENTS: &str = "An SLO's segments";
const DLO_SEGMENTS: &str = "A DLO's segments";
const STATIC_TARGET: &str = "A static symlink's target";

/// A large object whose parts live on another cluster than its manifest: the proxy
/// stores and assembles it (see [`large`](super::large)).
pub(super) enum Apart {
    /// An SLO manifest PUT: the manifest as the client sent it.
    Slo(Bytes),
    /// A DLO manifest: `X-Object-Manifest`, decoded.
    Dlo(String),
}

/// Container headers that make up a container's own settings, recreated on a move.
fn settings(head: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in head {
        let n = name.as_str();
        if n.starts_with("x-container-meta-")
            || matches!(
                n,
                "x-container-read"
                    | "x-container-write"
                    | "x-versions-location"
                    | "x-history-location"
                    | "x-versions-enabled"
                    | "x-storage-policy"
                    | "x-container-sync-to"
            )
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

impl FederationService {
    /// Moves `record`'s container to cluster `to` if it holds no object; the new record,
    /// or `None` when it could not move (not empty, refused, or a race).
    pub(super) async fn move_empty(
        &self,
        caller: &Caller,
        record: &ContainerRecord,
        to: &ClusterId,
    ) -> Result<Option<ContainerRecord>> {
        let from = self.cluster(&record.cluster)?;
        let dest = self.cluster(to)?;
        let auth = caller.auth();
        let path = swift_path(&record.account, Some(record.container.as_str()), None);
        let head = from
            .send(ClusterRequest::new(Method::HEAD, path.clone()), auth)
            .await?;
        let count = head
            .headers()
            .get("x-container-object-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if !head.status().is_success() || count != Some(0) {
            return Ok(None);
        }
        // A container that keeps old versions in an archive container (legacy
        // versioned writes) stays with it: moved alone, its cluster's versioned_writes
        // middleware would find no archive (412 on the next overwrite). (New-style
        // versioning moves: its hidden versions container is created with
        // `X-Versions-Enabled` on the new cluster, and an old one holding versions makes
        // the old container's delete fail, which undoes the move.)
        let archived = ["x-versions-location", "x-history-location"]
            .iter()
            .any(|h| head.headers().get(*h).is_some_and(|v| !v.is_empty()));
        if archived {
            return Ok(None);
        }
        let created = dest
            .send(
                ClusterRequest::new(Method::PUT, path.clone()).headers(settings(head.headers())),
                auth,
            )
            .await?;
        if !created.status().is_success() {
            return Ok(None);
        }
        let delete = || ClusterRequest::new(Method::DELETE, path.clone());
        let locator = &self.inner.locator;
        let moved = match locator
            .relocate(
                &record.account,
                &record.container,
                record.version,
                to.clone(),
            )
            .await
        {
            Ok(moved) => moved,
            Err(e) => {
                tracing::info!(account = %record.account, container = %record.container, error = %e, "a container move lost a race");
                let _ = dest.send(delete(), auth).await;
                return Ok(None);
            }
        };
        let gone = from.send(delete(), auth).await?;
        if gone.status().is_success() || gone.status() == StatusCode::NOT_FOUND {
            tracing::info!(account = %record.account, container = %record.container, from = %from.id(), to = %dest.id(), "moved an empty container");
            return Ok(Some(moved));
        }
        // Something was written to the old container meanwhile: undo.
        tracing::warn!(account = %record.account, container = %record.container, status = %gone.status(), "a container move was raced by a write; undone");
        locator
            .relocate(
                &record.account,
                &record.container,
                moved.version,
                record.cluster.clone(),
            )
            .await?;
        let _ = dest.send(delete(), auth).await;
        Ok(None)
    }

    /// Brings `record`'s container and `other` (a container it refers to, or is referred
    /// to by) onto one cluster when they are apart and one of them is empty. Returns
    /// `record` as it is afterwards, and whether the two now share a cluster.
    pub(super) async fn colocate(
        &self,
        caller: &Caller,
        record: ContainerRecord,
        other: &ContainerRecord,
        other_may_move: bool,
    ) -> Result<(ContainerRecord, bool)> {
        if record.cluster == other.cluster {
            return Ok((record, true));
        }
        if let Some(moved) = self.move_empty(caller, &record, &other.cluster).await? {
            return Ok((moved, true));
        }
        if other_may_move
            && self
                .move_empty(caller, other, &record.cluster)
                .await?
                .is_some()
        {
            return Ok((record, true));
        }
        Ok((record, false))
    }

    /// Before a container PUT or POST naming a versions or history location: the two
    /// containers must share a cluster; an empty one of them is moved to make it so,
    /// else a small archive is moved by the mover ([`Self::move_archive`]), else 409.
    pub(super) async fn colocate_archives(
        &self,
        call: &Call,
        account: &AccountName,
        mut record: ContainerRecord,
    ) -> Result<ContainerRecord> {
        for (header, name) in super::container::archive_locations(&call.parts.headers)? {
            if name == record.container {
                continue;
            }
            if let Some(archive) = self.find(&call.caller, account, &name, true).await? {
                let (now, together) = self.colocate(&call.caller, record, &archive, true).await?;
                record = now;
                if !together {
                    self.move_archive(&call.caller, &record, &archive, header)
                        .await?;
                }
            }
        }
        Ok(record)
    }

    /// An archive (versions/history location) on another cluster than the container
    /// naming it, neither empty: the mover brings the archive over when it holds at
    /// most the configured number of objects; otherwise 409 says why and what to do.
    async fn move_archive(
        &self,
        caller: &Caller,
        record: &ContainerRecord,
        archive: &ContainerRecord,
        header: &str,
    ) -> Result<()> {
        let header = if header == "x-history-location" {
            "X-History-Location"
        } else {
            "X-Versions-Location"
        };
        let name = &archive.container;
        let (here, there) = (&record.cluster, &archive.cluster);
        let Some(mover) = self.inner.archive_mover.get() else {
            return Err(SwiftError::new(
                StatusCode::CONFLICT,
                format!(
                    "{header} {name} lives on cluster {there}, this container on {here}, and \
                     neither is empty; versions live with their container, and this proxy \
                     moves no containers (no [migration] configured)."
                ),
            ));
        };
        let path = swift_path(&archive.account, Some(name.as_str()), None);
        let head = self
            .cluster(there)?
            .send(ClusterRequest::new(Method::HEAD, path), caller.auth())
            .await?;
        if !head.status().is_success() {
            return Err(SwiftError::new(head.status(), String::new()));
        }
        let count = head
            .headers()
            .get("x-container-object-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        let limit = mover.limit();
        if count > limit {
            return Err(SwiftError::new(
                StatusCode::CONFLICT,
                format!(
                    "{header} {name} lives on cluster {there} and holds {count} objects; this \
                     container lives on {here}. Versions live with their container, and an \
                     archive is moved next to it on this request only when it holds at most \
                     {limit} objects. Ask an operator to move one of the two containers to \
                     the other's cluster (POST /federation/v1/migrations), then set {header} \
                     again."
                ),
            ));
        }
        tracing::info!(account = %archive.account, archive = %name, from = %there, to = %here, count, "moving an archive next to its container");
        mover
            .move_archive(&archive.account, name, here)
            .await
            .map_err(|why| {
                SwiftError::new(
                    StatusCode::CONFLICT,
                    format!("{header} {name} lives on cluster {there}, this container on {here}; moving it here failed: {why}"),
                )
            })
    }

    /// Before an object PUT: the containers the new object refers to (SLO segments, a
    /// DLO prefix's container, a static symlink's target) must share its container's
    /// cluster; an empty container is moved to make it so, otherwise 409 explains why.
    /// An SLO manifest body is read (it is small) to find its segments and then sent on
    /// as it was.
    pub(super) async fn colocate_references(
        &self,
        call: &mut Call,
        account: &AccountName,
        record: ContainerRecord,
    ) -> Result<(ContainerRecord, Option<Apart>)> {
        // A temp URL may not create links or manifests at all: the cluster's tempurl
        // middleware says so (400), whatever the proxy could arrange.
        if super::tempurl::is_temp_url(&call.parts) {
            return Ok((record, None));
        }
        let mut refs: Vec<(ContainerName, &'static str)> = Vec::new();
        let headers = &call.parts.headers;
        if headers.contains_key("x-symlink-target-etag")
            && !headers.contains_key("x-symlink-target-account")
        {
            if let Some((c, _)) = super::copy::header_path(headers, "x-symlink-target")? {
                refs.push((c, STATIC_TARGET));
            }
        }
        let dlo = headers
            .get("x-object-manifest")
            // Raw UTF-8 as well as percent-encoded (Swift takes both).
            .map(|v| {
                percent_encoding::percent_decode(v.as_bytes())
                    .decode_utf8_lossy()
                    .into_owned()
            });
        if let Some(c) = dlo
            .as_deref()
            .and_then(|v| v.split('/').next())
            .and_then(|c| ContainerName::new(c).ok())
        {
            refs.push((c, DLO_SEGMENTS));
        }
        let slo_put = call
            .parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "multipart-manifest=put"));
        let mut manifest = None;
        if slo_put {
            let body = std::mem::replace(&mut call.body, stackfed_http::empty());
            let bytes = read_manifest(body).await?;
            refs.extend(
                segment_containers(&bytes)
                    .into_iter()
                    .map(|c| (c, SLO_SEGMENTS)),
            );
            call.body = stackfed_http::full(bytes.clone());
            manifest = Some(bytes);
        }
        let mut record = record;
        let mut apart = None;
        for (name, what) in refs {
            if name == record.container {
                continue;
            }
            let Some(other) = self.find(&call.caller, account, &name, true).await? else {
                continue; // the cluster will say what is missing
            };
            let (now, together) = self.colocate(&call.caller, record, &other, false).await?;
            record = now;
            // Large objects across clusters are assembled by the proxy (`large`).
            if !together && what == SLO_SEGMENTS {
                if let Some(m) = &manifest {
                    apart = Some(Apart::Slo(m.clone()));
                    continue;
                }
            }
            if !together && what == DLO_SEGMENTS {
                if let Some(m) = &dlo {
                    apart = Some(Apart::Dlo(m.clone()));
                    continue;
                }
            }
            // So is a static link's check (`symlink`).
            if !together && what == STATIC_TARGET {
                continue;
            }
            if !together {
                return Err(SwiftError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "{what} in container {name} live on cluster {}, this container on {}; \
                         neither is empty, so they cannot be brought onto the same cluster.",
                        other.cluster, record.cluster
                    ),
                ));
            }
        }
        Ok((record, apart))
    }
}

async fn read_manifest(mut body: stackfed_http::Body) -> Result<Bytes> {
    // A frame loop rather than `Limited`: see `stackfed_http::HttpClient::read_body`.
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            SwiftError::new(StatusCode::BAD_REQUEST, format!("Unreadable manifest: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_MANIFEST {
                return Err(SwiftError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Manifest File > {MAX_MANIFEST} bytes"),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The containers an SLO manifest's segments live in (its `path` entries).
fn segment_containers(manifest: &[u8]) -> Vec<ContainerName> {
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(manifest) else {
        return Vec::new(); // the cluster answers Swift's own error
    };
    let mut out: Vec<ContainerName> = Vec::new();
    for item in items {
        let Some(path) = item.get("path").and_then(|p| p.as_str()) else {
            continue;
        };
        let Some(c) = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .and_then(|c| ContainerName::new(c).ok())
        else {
            continue;
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_containers_are_found_once_in_order() {
        let m = br#"[{"path": "/segs/a", "etag": null}, {"data": "eA=="},
                     {"path": "segs/b"}, {"path": "/other/c"}, {"path": 7}]"#;
        let names: Vec<String> = segment_containers(m)
            .into_iter()
            .map(ContainerName::into_string)
            .collect();
        assert_eq!(names, ["segs", "other"]);
        assert!(segment_containers(b"not json").is_empty());
    }
}
