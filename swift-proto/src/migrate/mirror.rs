//! The mirror's cluster work: listings, one object copied (streamed), container
//! settings, deletes. Everything acts as the operator (a reseller admin on every
//! cluster), through the typed cluster client.

use std::collections::HashMap;

use federation_core::migration::Entry;
use federation_core::AccountName;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::cluster::{swift_path, Auth, ClusterError, ClusterRequest, Payload, SwiftCluster};

use super::MoveError;

/// Objects per listing page.
const PAGE: usize = 10_000;

/// One JSON listing page of a container (`path` with its query): `None` when the
/// container is gone (404), empty when the cluster lists nothing (204 or no body).
async fn listing_page(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    path: String,
    what: &str,
) -> Result<Option<Vec<serde_json::Value>>, MoveError> {
    let (parts, body) = cluster
        .collect(
            ClusterRequest::new(Method::GET, path),
            auth,
            crate::cluster::MAX_COLLECTED_BODY,
        )
        .await?;
    if parts.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !parts.status.is_success() {
        return Err(MoveError::answer(cluster, what, parts.status));
    }
    if parts.status == StatusCode::NO_CONTENT || body.is_empty() {
        return Ok(Some(Vec::new()));
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| MoveError::Cluster(format!("{}: unreadable {what}: {e}", cluster.id())))
}

/// The whole listing of a container (JSON pages), reduced to [`Entry`]s, with sizes.
pub(super) async fn list(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
) -> Result<Option<(Vec<Entry>, HashMap<String, u64>)>, MoveError> {
    let mut out = Vec::new();
    let mut sizes = HashMap::new();
    let mut marker = String::new();
    loop {
        let mut path = swift_path(account, Some(container), None);
        path.push_str(&format!("?format=json&limit={PAGE}"));
        if !marker.is_empty() {
            path.push_str("&marker=");
            path.push_str(&crate::path::encode_segment(&marker, true).replace('/', "%2F"));
        }
        let Some(items) = listing_page(cluster, auth, path, "listing").await? else {
            return Ok(None);
        };
        if items.is_empty() {
            break;
        }
        let n = items.len();
        for item in items {
            let s = |k: &str| {
                item.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let name = s("name");
            if name.is_empty() {
                continue; // a subdir: not asked for
            }
            let bytes = item
                .get("bytes")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            // An SLO's listed hash is its manifest's, which names each segment's
            // last-modified time (not preserved by a copy); slo_etag is the content's.
            let etag = Some(s("slo_etag"))
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| s("hash"));
            // A DLO the mover wrote as the proxy's (its segments stay on another
            // cluster) is listed with the proxy's marker: compared as clients see it.
            let content_type = crate::service::unmarked_type(&s("content_type"));
            let key = format!("{etag}|{bytes}|{content_type}|{}", s("symlink_path"));
            sizes.insert(name.clone(), bytes);
            marker.clone_from(&name);
            out.push(Entry {
                name,
                key,
                modified: s("last_modified"),
            });
        }
        if n < PAGE {
            break;
        }
    }
    Ok(Some((out, sizes)))
}

/// Object headers a copy keeps (as Swift's copy middleware does), besides user
/// metadata.
const KEPT: [&str; 9] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-delete-at",
    "x-object-manifest",
    "x-robots-tag",
];

/// What copying one object did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Copied {
    /// Copied: its size.
    Bytes(u64),
    /// The source no longer has it (deleted or expired meanwhile): the next pass
    /// deletes the destination's copy, if any.
    Gone,
}

/// Copies one object, streamed: data and ETag, content headers, user metadata,
/// `X-Delete-At`; an SLO as its manifest (`multipart-manifest=get&format=raw`, then
/// `put`), a DLO as its manifest object, a symlink as a link (`symlink=get`).
///
/// A DLO whose segments' container is not one of `moving` stays apart from them: it is
/// written as a DLO the proxy assembles (the marker in its content type, no
/// `X-Object-Manifest`, which the destination would resolve in a container of its own,
/// answering 404). An SLO whose segments the destination does not hold is refused
/// (its manifest PUT answers 400): the move is rolled back with the reason.
pub(super) async fn copy_object(
    from: &SwiftCluster,
    to: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    (container, moving): (&str, &[String]),
    name: &str,
) -> Result<Copied, MoveError> {
    let path = swift_path(account, Some(container), Some(name));
    let get = from
        .send(
            ClusterRequest::new(
                Method::GET,
                format!("{path}?multipart-manifest=get&format=raw&symlink=get"),
            ),
            auth,
        )
        .await?;
    if get.status() == StatusCode::NOT_FOUND {
        return Ok(Copied::Gone);
    }
    if !get.status().is_success() {
        return Err(MoveError::answer(from, "object GET", get.status()));
    }
    let (parts, body) = get.into_parts();
    let h = &parts.headers;
    let mut out = HeaderMap::new();
    for (n, v) in h {
        if n.as_str().starts_with("x-object-meta-") || KEPT.contains(&n.as_str()) {
            out.append(n.clone(), v.clone());
        }
    }
    let length: u64 = h
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let apart = h
        .get("x-object-manifest")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|m| {
            let c = m.split_once('/').map_or(m.as_str(), |(c, _)| c);
            !moving.iter().any(|g| g == c)
        });
    if let Some(manifest) = &apart {
        out.remove("x-object-manifest");
        let t = h
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream");
        let marked = crate::service::federated_dlo_type(t, manifest);
        let v = HeaderValue::from_str(&marked)
            .map_err(|e| MoveError::Fatal(format!("DLO {name}: {e}")))?;
        out.insert(http::header::CONTENT_TYPE, v);
    }
    let slo = h
        .get("x-static-large-object")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let link = h.get("x-symlink-target").is_some();
    let mut target = path.clone();
    let payload = if link {
        for k in [
            "x-symlink-target",
            "x-symlink-target-account",
            "x-symlink-target-etag",
        ] {
            if let Some(v) = h.get(k) {
                out.insert(HeaderName::from_static(k), v.clone());
            }
        }
        out.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        Payload::Empty
    } else {
        if slo {
            target.push_str("?multipart-manifest=put");
        } else if let Some(etag) = h.get(http::header::ETAG) {
            out.insert(http::header::ETAG, etag.clone());
        }
        out.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
        Payload::Stream(body)
    };
    let put = to
        .send(
            ClusterRequest::new(Method::PUT, target)
                .headers(out)
                .body(payload),
            auth,
        )
        .await?;
    let status = put.status();
    let (_, body) = put.into_parts();
    let said = to
        .http()
        .read_body(body, 64 * 1024)
        .await
        .unwrap_or_default();
    if status.is_success() {
        return Ok(Copied::Bytes(if slo { 0 } else { length }));
    }
    // An X-Delete-At that has passed meanwhile: the object is expiring at the source.
    if status == StatusCode::BAD_REQUEST && h.contains_key("x-delete-at") {
        return Ok(Copied::Gone);
    }
    // Retrying will not bring the segments: the move cannot keep this SLO readable.
    if status == StatusCode::BAD_REQUEST && slo {
        let said = String::from_utf8_lossy(&said[..said.len().min(300)]).into_owned();
        return Err(MoveError::Refused(format!(
            "object {name} is an SLO whose segments {} does not hold (they are in a \
             container that does not move with {container}); {} said: {}",
            to.id(),
            to.id(),
            said.trim()
        )));
    }
    Err(MoveError::answer(to, "object PUT", status))
}

/// DELETE of an object or container; 404 counts as done.
pub(super) async fn delete(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
    object: Option<&str>,
) -> Result<StatusCode, MoveError> {
    let path = swift_path(account, Some(container), object);
    let resp = cluster
        .send(ClusterRequest::new(Method::DELETE, path), auth)
        .await?;
    Ok(resp.status())
}

/// The most names one bulk delete may carry on `cluster` (its `/info`'s
/// `bulk_delete.max_deletes_per_request`), or `None` when it does not run Swift's bulk
/// middleware (or `/info` did not answer: objects are then deleted one by one).
pub(super) async fn bulk_delete_limit(cluster: &SwiftCluster) -> Option<usize> {
    let info = match cluster.info().await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(cluster = %cluster.id(), error = %e, "no /info: deleting one by one");
            return None;
        }
    };
    let limit = info
        .get("bulk_delete")?
        .get("max_deletes_per_request")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(BULK_DEFAULT_MAX);
    Some(usize::try_from(limit).unwrap_or(usize::MAX).max(1))
}

/// Swift's default `max_deletes_per_request`.
const BULK_DEFAULT_MAX: u64 = 10_000;

/// Deletes objects of one container with one bulk delete (`POST /v1/<account>?bulk-delete`,
/// a URL-encoded `/container/object` a line, JSON report), as Swift operators empty
/// containers. Returns how many Swift could not delete (other than already gone): the
/// caller lists again.
pub(super) async fn bulk_delete(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
    names: &[String],
) -> Result<usize, MoveError> {
    let prefix = format!("/{}/", crate::path::encode_segment(container, false));
    let mut body = String::new();
    for n in names {
        body.push_str(&prefix);
        body.push_str(&crate::path::encode_segment(n, true));
        body.push('\n');
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    let path = format!("{}?bulk-delete", swift_path(account, None, None));
    let (parts, report) = cluster
        .collect(
            ClusterRequest::new(Method::POST, path)
                .headers(headers)
                .body(Payload::Bytes(body.into())),
            auth,
            crate::cluster::MAX_COLLECTED_BODY,
        )
        .await?;
    if !parts.status.is_success() {
        return Err(MoveError::answer(cluster, "bulk delete", parts.status));
    }
    let failed = read_bulk_report(&report)
        .map_err(|why| MoveError::Cluster(format!("{}: bulk delete {why}", cluster.id())))?;
    if failed > 0 {
        tracing::warn!(cluster = %cluster.id(), container, failed, "bulk delete left objects; listing again");
    }
    Ok(failed)
}

/// Reads Swift's bulk delete report (JSON, after the spaces Swift sends while it
/// works; `200` whatever happened): how many names it could not delete, or why the
/// request was refused whole (nothing deleted).
fn read_bulk_report(report: &[u8]) -> Result<usize, String> {
    let report: serde_json::Value =
        serde_json::from_slice(report).map_err(|e| format!("report unreadable: {e}"))?;
    let status = report
        .get("Response Status")
        .and_then(serde_json::Value::as_str)
        .ok_or("report without a Response Status")?;
    let failed = report
        .get("Errors")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    if failed == 0 && !status.starts_with('2') {
        let body = report
            .get("Response Body")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        return Err(format!("answered {status}: {body}"));
    }
    Ok(failed)
}

/// Removes a container's versions/history location (before it is emptied: with one,
/// versioned_writes looks for an archived version of every object deleted, and
/// restores it). A container already gone is fine.
pub(super) async fn forget_archives(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
) -> Result<(), MoveError> {
    let mut headers = HeaderMap::new();
    for k in ["x-remove-versions-location", "x-remove-history-location"] {
        headers.insert(HeaderName::from_static(k), HeaderValue::from_static("x"));
    }
    let status = container_post(cluster, auth, account, container, headers).await?;
    if status.is_success() || status == StatusCode::NOT_FOUND {
        Ok(())
    } else {
        Err(MoveError::answer(cluster, "container POST", status))
    }
}

/// A container `POST` with `headers`: its status.
async fn container_post(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
    headers: HeaderMap,
) -> Result<StatusCode, MoveError> {
    let path = swift_path(account, Some(container), None);
    Ok(cluster
        .send(
            ClusterRequest::new(Method::POST, path).headers(headers),
            auth,
        )
        .await?
        .status())
}

/// A container's HEAD: its headers, `None` when it does not exist.
pub(super) async fn head(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
) -> Result<Option<HeaderMap>, MoveError> {
    let path = swift_path(account, Some(container), None);
    let resp = cluster
        .send(ClusterRequest::new(Method::HEAD, path), auth)
        .await?;
    match resp.status() {
        s if s.is_success() => Ok(Some(resp.headers().clone())),
        StatusCode::NOT_FOUND => Ok(None),
        s => Err(MoveError::answer(cluster, "container HEAD", s)),
    }
}

/// The headers that recreate a container's settings: metadata, ACLs, quota, storage
/// policy; the versions/history location and a suspended versioning
/// (`X-Versions-Enabled: False`, on a container with no versions left: enabled, or
/// with versions, it does not move) only when `archives` (they are restored at the
/// switch: set earlier, the mirror's own overwrites would be archived).
pub(super) fn settings(head: &HeaderMap, archives: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in head {
        let n = name.as_str();
        let archive = matches!(
            n,
            "x-versions-location" | "x-history-location" | "x-versions-enabled"
        );
        if n.starts_with("x-container-meta-")
            || matches!(
                n,
                "x-container-read" | "x-container-write" | "x-storage-policy"
            )
            || (archives && archive)
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Creates (or updates) the destination container with the source's settings. The
/// storage policy rule: the source's policy when the destination offers it (a PUT
/// naming it succeeds), otherwise the destination's default.
pub(super) async fn put_container(
    to: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
    settings: HeaderMap,
) -> Result<(), MoveError> {
    let path = swift_path(account, Some(container), None);
    let send = |h: HeaderMap| {
        to.send(
            ClusterRequest::new(Method::PUT, path.clone()).headers(h),
            auth,
        )
    };
    let status = send(settings.clone()).await?.status();
    if status.is_success() {
        return Ok(());
    }
    if matches!(status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT)
        && settings.contains_key("x-storage-policy")
    {
        let mut without = settings;
        let policy = without.remove("x-storage-policy");
        tracing::warn!(cluster = %to.id(), container, ?policy, %status, "storage policy not usable on the destination; using its default");
        let again = send(without).await?.status();
        if again.is_success() {
            return Ok(());
        }
        return Err(MoveError::answer(to, "container PUT", again));
    }
    Err(MoveError::answer(to, "container PUT", status))
}

/// POSTs settings to an existing container (metadata changed during the copy, the
/// archive locations at the switch).
pub(super) async fn post_container(
    to: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
    mut settings: HeaderMap,
) -> Result<(), MoveError> {
    settings.remove("x-storage-policy");
    let status = container_post(to, auth, account, container, settings).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(MoveError::answer(to, "container POST", status))
    }
}

impl From<ClusterError> for MoveError {
    fn from(e: ClusterError) -> Self {
        Self::Cluster(e.to_string())
    }
}

/// Why a container cannot move because of new-style object versioning
/// (`X-Versions-Enabled`), or `None`. Swift keeps the versions in a hidden container
/// (a reserved name no client request can address) and makes each version id from
/// the timestamp of the write that created it, which a client cannot set: a move could
/// only re-create the versions with new ids, breaking every id a user kept. So the
/// rule is: versioning enabled, or suspended with versions still kept (an entry of
/// the `?versions` listing with an id other than `null`), refuses the move.
pub(super) async fn versioning_refusal(
    cluster: &SwiftCluster,
    auth: Auth<'_>,
    account: &AccountName,
    container: &str,
    head: &HeaderMap,
) -> Result<Option<String>, MoveError> {
    let Some(enabled) = head.get("x-versions-enabled") else {
        return Ok(None);
    };
    let why = |what: &str| {
        Some(format!(
            "container {container} {what}: a move cannot carry object versions (Swift makes \
             each version id from the time of its write, which a client cannot set, so the \
             versions would get new ids); delete its old versions and delete markers \
             (DELETE ?version-id=) and set X-Versions-Enabled: false to move it"
        ))
    };
    if enabled.as_bytes().eq_ignore_ascii_case(b"true") {
        return Ok(why(
            "has object versioning enabled (X-Versions-Enabled: true)",
        ));
    }
    let mut path = swift_path(account, Some(container), None);
    path.push_str(&format!("?format=json&versions&limit={PAGE}"));
    let Some(items) = listing_page(cluster, auth, path, "versions listing").await? else {
        return Ok(None);
    };
    let kept = items.iter().any(|i| {
        i.get("version_id")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|v| v != "null")
    });
    if kept {
        return Ok(why("keeps object versions (versioning suspended)"));
    }
    if items.len() >= PAGE {
        return Ok(why(&format!(
            "had object versioning and lists more than {PAGE} entries (not checked for versions)"
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::read_bulk_report;

    #[test]
    fn bulk_reports_as_swift_writes_them() {
        // Heartbeat spaces first, then the report (Swift 2.38's bulk middleware).
        let ok = b"  \n{\"Number Not Found\": 1, \"Response Status\": \"200 OK\", \"Response Body\": \"\", \"Errors\": [], \"Number Deleted\": 3}";
        assert_eq!(read_bulk_report(ok), Ok(0));
        let some = br#"{"Response Status": "400 Bad Request", "Response Body": "", "Number Deleted": 2, "Number Not Found": 0, "Errors": [["/c/o", "409 Conflict"], ["/c/p", "503 Service Unavailable"]]}"#;
        assert_eq!(read_bulk_report(some), Ok(2));
        let refused = br#"{"Response Status": "413 Request Entity Too Large", "Response Body": "Maximum Bulk Deletes: 10000 per request", "Number Deleted": 0, "Number Not Found": 0, "Errors": []}"#;
        let why = read_bulk_report(refused).unwrap_err();
        assert!(why.contains("413") && why.contains("10000"), "{why}");
    }

    #[test]
    fn unreadable_bulk_reports_are_errors() {
        for bad in [
            &b""[..],
            b"   ",
            b"<html><h1>Service Unavailable</h1></html>",
            b"{\"Number Deleted\": 3",
            b"{\"Errors\": []}",
            b"[1, 2]",
            b"{\"Response Status\": 200}",
        ] {
            assert!(read_bulk_report(bad).is_err(), "{bad:?}");
        }
    }
}
