//! The container family: placement before a PUT, bookkeeping after PUT, POST and
//! DELETE, co-location of related containers, and attributes on HEAD/GET.

use std::collections::BTreeMap;

use federation_core::attrs::{Attributes, ContainerRecord, StoreError};
use federation_core::placement::{AllOf, ClusterFilter, Offers, PlacementRequest, SameClusterAs};
use federation_core::{AccountName, ClusterId, ContainerName, LocateError};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use stackfed_http::{empty, Body};

use super::info::PoliciesByCluster;
use super::{Call, Caller, FederationService, Result};
use crate::cluster::{swift_path, ClusterRequest};
use crate::error::SwiftError;
use crate::headers::{
    apply_changes, attribute_changes, insert_attributes, CLUSTER_ATTRIBUTE, CONTAINER_ATTR_PREFIX,
};

/// Attribute changes asked for by a request (`X-Container-Attr-*`).
type Changes = BTreeMap<String, String>;

/// The versions and history locations a request names (`X-Versions-Location`,
/// `X-History-Location`, percent-decoded; empty values mean none), with the header each
/// came from. A name that is not a valid container name is a 400.
pub(super) fn archive_locations(
    headers: &http::HeaderMap,
) -> Result<Vec<(&'static str, ContainerName)>> {
    let mut out = Vec::new();
    for header in ["x-versions-location", "x-history-location"] {
        // Raw UTF-8 or percent-encoded, as Swift takes it.
        let v = headers
            .get(header)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(|s| {
                percent_encoding::percent_decode_str(s.trim())
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        if v.is_empty() {
            continue;
        }
        let name = ContainerName::new(v)
            .map_err(|e| SwiftError::bad_request(format!("Invalid {header}: {e}")))?;
        out.push((header, name));
    }
    Ok(out)
}

fn conflict(message: String) -> SwiftError {
    SwiftError::new(StatusCode::CONFLICT, message)
}

impl FederationService {
    pub(super) async fn container_request(
        &self,
        mut call: Call,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Response<Body>> {
        let changes = attribute_changes(&call.parts.headers)?;
        match call.parts.method {
            Method::PUT => self.container_put(call, account, container, changes).await,
            Method::POST => self.container_post(call, account, container, changes).await,
            Method::DELETE => self.container_delete(call, account, container).await,
            _ => {
                let Some((record, cluster)) =
                    self.target(&call.caller, account, container, false).await?
                else {
                    return self.unheld(call).await;
                };
                let body = std::mem::replace(&mut call.body, empty());
                let mut resp = self
                    .forward(cluster, &call, call.path_and_query(), body)
                    .await?;
                if resp.status().is_success() {
                    insert_attributes(
                        resp.headers_mut(),
                        &record.attributes,
                        record.cluster.as_str(),
                    );
                    if call.parts.method == Method::GET {
                        resp = self.listing(&call, cluster, resp).await?;
                    }
                }
                Ok(resp)
            }
        }
    }

    async fn container_put(
        &self,
        mut call: Call,
        account: &AccountName,
        container: &ContainerName,
        changes: Changes,
    ) -> Result<Response<Body>> {
        let locator = &self.inner.locator;
        // Swift ignores a container PUT's body: it is not sent on, so the cluster has the
        // PUT at once, whatever the client's pace or a front that buffers request bodies
        // (nginx's default) before passing them on. A record is therefore never older
        // than the orphan grace (`forget_orphan`) while its creation is still to come.
        drop(std::mem::replace(&mut call.body, empty()));
        for h in [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::EXPECT,
        ] {
            call.parts.headers.remove(h);
        }
        let body = empty();
        let pq = call.path_and_query().to_owned();
        let pin = changes
            .get(CLUSTER_ATTRIBUTE)
            .filter(|v| !v.is_empty())
            .map(|v| {
                ClusterId::new(v).map_err(|_| {
                    SwiftError::bad_request(format!(
                        "Invalid cluster name in {CONTAINER_ATTR_PREFIX}{CLUSTER_ATTRIBUTE}"
                    ))
                })
            })
            .transpose()?;
        let existing = match self.find(&call.caller, account, container, true).await? {
            // Pinned elsewhere than a record whose container its cluster does not hold:
            // the record is forgotten and the container placed as if new.
            Some(r)
                if pin.as_ref().is_some_and(|p| *p != r.cluster)
                    && self.forget_orphan(&call, &r).await =>
            {
                None
            }
            other => other,
        };
        if let Some(record) = existing {
            let (record, _inflight) = self.write_gate(account, container, None, record).await?;
            if pin.as_ref().is_some_and(|p| *p != record.cluster) {
                return Err(conflict(format!(
                    "Container exists on cluster {}; containers do not move",
                    record.cluster
                )));
            }
            let record = self.colocate_archives(&call, account, record).await?;
            self.related_cluster(&call, account, container, Some(&record.cluster))
                .await?;
            let cluster = self.cluster(&record.cluster)?;
            let resp = self.forward(cluster, &call, &pq, body).await?;
            if resp.status().is_success() {
                self.update_attributes(account, container, &changes).await?;
                self.reserve_archives(&call, account, &record.cluster)
                    .await?;
            }
            return Ok(resp);
        }
        let attributes: Attributes = changes
            .iter()
            .filter(|(k, v)| !v.is_empty() && k.as_str() != CLUSTER_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut request = PlacementRequest::new(account.clone(), container.clone());
        for (k, v) in &attributes {
            request = request.label(k, v.clone());
        }
        if let Some(p) = &pin {
            request = request.pin(p.clone());
        }
        let policy = self.storage_policy_filter(&call.parts).await?;
        let related = self
            .related_cluster(&call, account, container, pin.as_ref())
            .await?;
        // A related container goes where its base is (a drain moves it afterwards);
        // any other new container stays off a cluster its account is drained from.
        let draining = related
            .is_none()
            .then(|| self.inner.drains.filter(account))
            .flatten();
        let mut filters: Vec<&dyn ClusterFilter> = Vec::new();
        if let Some(p) = &policy {
            filters.push(p);
        }
        if let Some(r) = &related {
            filters.push(r);
        }
        if let Some(d) = &draining {
            filters.push(d);
        }
        let all = AllOf(filters);
        let placement = locator
            .place_filtered(
                request,
                attributes,
                (!all.0.is_empty()).then_some(&all as _),
            )
            .await?;
        let cluster = self.cluster(&placement.record.cluster)?;
        if !placement.created {
            // Somebody else placed it first: the PUT goes to their choice, unless the
            // client pinned another cluster (then the answer is the same 409 as for a
            // container that exists, whatever the timing of the race).
            if pin.as_ref().is_some_and(|p| *p != placement.record.cluster) {
                return Err(conflict(format!(
                    "Container exists on cluster {}; containers do not move",
                    placement.record.cluster
                )));
            }
            let resp = self.forward(cluster, &call, &pq, body).await?;
            if resp.status().is_success() {
                self.reserve_archives(&call, account, cluster.id()).await?;
            }
            return Ok(resp);
        }
        #[cfg(debug_assertions)]
        self.inner.pause.at("container-recorded").await;
        let result = self.forward(cluster, &call, &pq, body).await;
        let mut keep = matches!(&result, Ok(r) if r.status().is_success());
        if keep {
            self.reserve_archives(&call, account, cluster.id()).await?;
        }
        if !keep {
            // A concurrent PUT that lost the race to this one went to the same cluster
            // and may have created the container there: then the record stays, so that
            // no container is left without one.
            keep = matches!(
                cluster
                    .holds_container(account, container, call.caller.auth())
                    .await,
                Ok(true)
            );
        }
        if !keep {
            // The cluster refused or was unreachable: no orphan record.
            if let Err(e) = locator
                .forget(account, container, Some(placement.record.version))
                .await
            {
                tracing::warn!(%account, %container, error = %e, "could not roll back a container record");
            }
        }
        tracing::info!(%account, %container, cluster = %cluster.id(), created = keep, "container placed");
        result
    }

    /// Forgets `record` when its cluster answers 404 for its container and the record is
    /// older than any creation still in flight can be: a proxy stopped (`kill -9`, a
    /// crash) between recording a new container and the cluster's `PUT`, or before
    /// rolling back a `PUT` the cluster refused, leaves such a record. Everything else
    /// already treats it as absent, as one cluster treats a container never created:
    /// `HEAD`/`GET` 404 (the cluster's answer), account listings (the clusters'), `DELETE`
    /// 404 and forgotten, an unpinned `PUT` creates it where it was placed. Only a `PUT`
    /// pinned to another cluster needs this, else it would be refused with 409
    /// ("containers do not move"). Another proxy's creation in flight is never taken for
    /// one: its record is younger than twice its cluster request's connect and response
    /// timeouts. Whether the record was forgotten (conditional on its version).
    async fn forget_orphan(&self, call: &Call, record: &ContainerRecord) -> bool {
        let Ok(cluster) = self.cluster(&record.cluster) else {
            return false;
        };
        let t = cluster.http().timeouts();
        let grace = (t.connect + t.response) * 2;
        let age = std::time::SystemTime::now()
            .duration_since(record.placed_at())
            .unwrap_or_default();
        if age < grace {
            return false;
        }
        let head = ClusterRequest::new(
            Method::HEAD,
            swift_path(&record.account, Some(record.container.as_str()), None),
        );
        match cluster.send(head, call.caller.auth()).await {
            Ok(r) if r.status() == StatusCode::NOT_FOUND => {}
            _ => return false,
        }
        let (account, container) = (&record.account, &record.container);
        match self
            .inner
            .locator
            .forget(account, container, Some(record.version))
            .await
        {
            Ok(_) => {
                tracing::warn!(%account, %container, cluster = %record.cluster, "forgot a record whose container its cluster does not hold (left by a proxy stopped while creating it)");
                metrics::counter!("stackfed_swift_orphan_records_forgotten_total").increment(1);
                true
            }
            Err(e) => {
                tracing::info!(%account, %container, error = %e, "a record without its container changed meanwhile; kept");
                false
            }
        }
    }

    async fn container_post(
        &self,
        mut call: Call,
        account: &AccountName,
        container: &ContainerName,
        changes: Changes,
    ) -> Result<Response<Body>> {
        let Some((record, cluster)) = self.target(&call.caller, account, container, true).await?
        else {
            return self.unheld(call).await;
        };
        let (record, _inflight) = self.write_gate(account, container, None, record).await?;
        let cluster = if record.cluster == *cluster.id() {
            cluster
        } else {
            self.cluster(&record.cluster)?
        };
        if let Some(p) = changes.get(CLUSTER_ATTRIBUTE).filter(|v| !v.is_empty()) {
            if p != record.cluster.as_str() {
                return Err(conflict(format!(
                    "Container is on cluster {}; containers do not move",
                    record.cluster
                )));
            }
        }
        // Validate before anything is written anywhere.
        apply_changes(&record.attributes, &changes)?;
        let (record, cluster) = if call.parts.headers.contains_key("x-versions-location")
            || call.parts.headers.contains_key("x-history-location")
        {
            let record = self.colocate_archives(&call, account, record).await?;
            self.related_cluster(&call, account, container, Some(&record.cluster))
                .await?;
            let cluster = self.cluster(&record.cluster)?;
            (record, cluster)
        } else {
            (record, cluster)
        };
        let body = std::mem::replace(&mut call.body, empty());
        let resp = self
            .forward(cluster, &call, call.path_and_query(), body)
            .await?;
        if resp.status().is_success() {
            self.update_attributes(account, container, &changes).await?;
            self.reserve_archives(&call, account, &record.cluster)
                .await?;
        }
        Ok(resp)
    }

    async fn container_delete(
        &self,
        call: Call,
        account: &AccountName,
        container: &ContainerName,
    ) -> Result<Response<Body>> {
        let Some((record, _)) = self.target(&call.caller, account, container, true).await? else {
            return self.unheld(call).await;
        };
        let (record, _inflight) = self.write_gate(account, container, None, record).await?;
        let cluster = self.cluster(&record.cluster)?;
        let resp = self
            .forward(cluster, &call, call.path_and_query(), empty())
            .await?;
        // The record goes only once the cluster confirms the container is gone.
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            match self.inner.locator.forget(account, container, None).await {
                Ok(_) | Err(LocateError::Store(StoreError::NotFound { .. })) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(resp)
    }

    /// Applies attribute changes with compare-and-set, retrying on concurrent updates.
    async fn update_attributes(
        &self,
        account: &AccountName,
        container: &ContainerName,
        changes: &Changes,
    ) -> Result<()> {
        let changes: Changes = changes
            .iter()
            .filter(|(k, _)| k.as_str() != CLUSTER_ATTRIBUTE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let locator = &self.inner.locator;
        for _ in 0..8 {
            let Some(record) = locator.locate_fresh(account, container).await? else {
                return Err(SwiftError::not_found());
            };
            let next = apply_changes(&record.attributes, &changes)?;
            if next == record.attributes {
                return Ok(());
            }
            match locator
                .update_attributes(account, container, record.version, next)
                .await
            {
                Ok(_) => return Ok(()),
                Err(LocateError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(
            "Attributes are being changed concurrently; retry".into(),
        ))
    }

    /// The clusters that offer the storage policy the request names (from their
    /// `/info`), if it names one.
    async fn storage_policy_filter(&self, parts: &Parts) -> Result<Option<Offers>> {
        // An empty X-Storage-Policy asks for the default policy, as no header does.
        let Some(policy) = parts
            .headers
            .get("x-storage-policy")
            .filter(|v| !v.as_bytes().trim_ascii().is_empty())
        else {
            return Ok(None);
        };
        let wanted = policy
            .to_str()
            .map_err(|_| SwiftError::bad_request("Invalid X-Storage-Policy"))?
            .trim()
            .to_owned();
        let offered = PoliciesByCluster::clone(&self.info().await.1);
        Ok(Some(Offers {
            label: "storage-policy",
            wanted,
            offered,
        }))
    }

    /// The cluster a container must share with related containers, if any: its
    /// segments container (`<name>_segments`) or the container it is the segments of,
    /// and the versions/history location it names. Related containers on two different
    /// clusters, or a location that does not exist yet, are refused (409).
    async fn related_cluster(
        &self,
        call: &Call,
        account: &AccountName,
        container: &ContainerName,
        own: Option<&ClusterId>,
    ) -> Result<Option<SameClusterAs>> {
        let caller: &Caller = &call.caller;
        let mut found: Option<SameClusterAs> = None;
        let mut consider = |cluster: ClusterId, reason: &'static str| -> Result<()> {
            let clash = found
                .as_ref()
                .map(|f| &f.cluster)
                .or(own)
                .filter(|c| **c != cluster);
            if let Some(other) = clash {
                return Err(conflict(format!(
                    "{reason}: the related container is on cluster {cluster}, this one is on {other}; containers do not move"
                )));
            }
            found = Some(SameClusterAs { cluster, reason });
            Ok(())
        };
        let name = container.as_str();
        let mut related: Vec<(String, &'static str)> = Vec::new();
        if let Some(base) = name.strip_suffix("_segments").filter(|b| !b.is_empty()) {
            related.push((base.to_owned(), "segments live with their container"));
        }
        related.push((
            format!("{name}_segments"),
            "a container lives with its segments",
        ));
        for (n, reason) in related {
            let Ok(other) = ContainerName::new(n) else {
                continue;
            };
            if let Some(r) = self.find(caller, account, &other, true).await? {
                consider(r.cluster, reason)?;
            }
        }
        for (_, location) in archive_locations(&call.parts.headers)? {
            // A location that does not exist yet is recorded on this container's
            // cluster once this container's request succeeds (`reserve_archives`).
            if let Some(r) = self.find(caller, account, &location, true).await? {
                consider(r.cluster, "versions live with their container")?;
            }
        }
        Ok(found)
    }

    /// After a container PUT or POST naming a versions or history location that does not
    /// exist yet (Swift accepts it; the archive is written to once it exists): the
    /// location is recorded on the container's cluster, so that the client's later PUT
    /// of it lands there and the cluster's versioned_writes middleware finds it. Only
    /// the record is written (the container is not created: a listing or HEAD shows
    /// nothing until the client creates it, as on one cluster).
    async fn reserve_archives(
        &self,
        call: &Call,
        account: &AccountName,
        cluster: &ClusterId,
    ) -> Result<()> {
        for (_, location) in archive_locations(&call.parts.headers)? {
            if self
                .find(&call.caller, account, &location, true)
                .await?
                .is_some()
            {
                continue;
            }
            let placed = self
                .inner
                .locator
                .adopt(account, &location, cluster.clone())
                .await?;
            tracing::info!(%account, container = %location, %cluster, created = placed.created, "reserved a versions location on its container's cluster");
        }
        Ok(())
    }
}
