//! Server-side copy across clusters (`COPY` with `Destination`, `PUT` with
//! `X-Copy-From`): when the two containers live on different clusters, the proxy
//! carries the bytes, streaming a GET from one into a PUT on the other.

use federation_core::{AccountName, ClusterId, ContainerName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use stackfed_http::Body;

use super::{Call, FederationService, Result};
use crate::error::SwiftError;
use crate::path::{encode_segment, SwiftPath};

/// An object: its container and name.
pub(super) type ObjectRef = (ContainerName, String);

/// The source and destination of a copy, when the request is one.
pub(super) fn copy_endpoints(
    parts: &Parts,
    container: &ContainerName,
    object: &str,
) -> Result<Option<(ObjectRef, ObjectRef)>> {
    let here = || (container.clone(), object.to_owned());
    Ok(match parts.method.as_str() {
        "PUT" => header_path(&parts.headers, "x-copy-from")?.map(|src| (src, here())),
        "COPY" => header_path(&parts.headers, "destination")?.map(|dst| (here(), dst)),
        _ => None,
    })
}

/// A `/container/object` path from a header (`X-Copy-From`, `Destination`,
/// `X-Symlink-Target`), decoded and validated; `None` when the header is absent.
pub(super) fn header_path(headers: &HeaderMap, name: &str) -> Result<Option<ObjectRef>> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let bad = || {
        SwiftError::precondition_failed(format!(
            "{name} header must be of the form <container name>/<object name>"
        ))
    };
    let text = v.to_str().map_err(|_| bad())?;
    let decoded = percent_encoding::percent_decode_str(text.trim())
        .decode_utf8()
        .map_err(|_| SwiftError::precondition_failed("Invalid UTF8 or contains NULL"))?;
    let (c, o) = decoded
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(bad)?;
    if o.is_empty() {
        return Err(bad());
    }
    let c = ContainerName::new(c).map_err(|_| bad())?;
    SwiftPath::check_object_name(o)?;
    Ok(Some((c, o.to_owned())))
}

impl FederationService {
    /// Copies an object from one cluster to another: GET from the source's cluster,
    /// streamed into a PUT on the destination's, with the source's content type and
    /// `X-Object-Meta-*` (unless `X-Fresh-Metadata: true`), the request's own headers
    /// taking precedence, as Swift's copy does.
    pub(super) async fn copy_across(
        &self,
        call: &Call,
        account: &AccountName,
        (src_cluster, src): (&ClusterId, &ObjectRef),
        (dst_cluster, dst): (&ClusterId, &ObjectRef),
    ) -> Result<Response<Body>> {
        let from = self.cluster(src_cluster)?;
        let to = self.cluster(dst_cluster)?;
        let auth = call.caller.auth();
        let source = from.get_object(account, &src.0, &src.1, auth).await?;
        if !source.status().is_success() {
            return Ok(source);
        }
        // The PUT streams the source's body and cannot be replayed: make sure the
        // destination accepts the caller's token first (renewing it on a 401), and that
        // the container is there.
        if !to.holds_container(account, &dst.0, auth).await? {
            return Err(SwiftError::not_found());
        }
        let (sp, sb) = source.into_parts();
        let parts = &call.parts;
        let fresh = parts
            .headers
            .get("x-fresh-metadata")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut h = HeaderMap::new();
        for (k, v) in &sp.headers {
            let n = k.as_str();
            if n == "content-type"
                || n == "content-length"
                || (!fresh && n.starts_with("x-object-meta-"))
            {
                h.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &parts.headers {
            let n = k.as_str();
            if n.starts_with("x-object-meta-")
                || n == "content-type"
                || n == "x-delete-at"
                || n == "x-delete-after"
            {
                h.insert(k.clone(), v.clone());
            }
        }
        let mut done = to.put_object(account, &dst.0, &dst.1, h, sb, auth).await?;
        let status: StatusCode = done.status();
        if status.is_success() {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{}/{}",
                encode_segment(src.0.as_str(), false),
                encode_segment(&src.1, true)
            )) {
                done.headers_mut().insert("x-copied-from", v);
            }
        }
        tracing::info!(%account, from = %from.id(), to = %to.id(), %status, "copied an object across clusters");
        Ok(done)
    }
}
