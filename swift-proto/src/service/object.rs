//! The object family: forwarded to the container's cluster, bodies streamed both ways.
//! A copy whose two containers live on different clusters goes to [`copy`](super::copy);
//! a read that may be a link to another cluster to [`symlink`](super::symlink); a large
//! object whose parts live on other clusters to [`large`](super::large).

use federation_core::{AccountName, ContainerName};
use http::{header, Method, Response, StatusCode};
use stackfed_http::{empty, Body};

use super::copy::{copy_endpoints, unfollowed};
use super::large;
use super::relocate::Apart;
use super::symlink;
use super::{Call, FederationService, Result};
use crate::cluster::swift_path;
use crate::error::SwiftError;
use crate::path::SwiftPath;

impl FederationService {
    /// The hot path (a read or write forwarded to the container's cluster) keeps its
    /// future small: the rarer branches (copies across clusters, links, co-location,
    /// containers no cluster holds) are boxed, so that their larger futures are
    /// allocated only when taken, not moved with every request.
    pub(super) async fn object_request(
        &self,
        mut call: Call,
        account: &AccountName,
        container: &ContainerName,
        object: &str,
    ) -> Result<Response<Body>> {
        if call.parts.method == Method::PUT {
            SwiftPath::check_object_name(object)?;
        }
        let writes = call.parts.method == Method::PUT || call.parts.method == Method::POST;
        if writes && large::carries_mark(&call.parts.headers) {
            return Err(SwiftError::bad_request(
                "Content-Type parameters stackfed_slo and stackfed_dlo are reserved",
            ));
        }
        let copy = copy_endpoints(&call.parts, account, container, object)?;
        // A copy of a large object the proxy must handle (a manifest copied as such, or
        // one the proxy assembles) is a GET and a PUT through the proxy's own phases.
        if let Some(c) = &copy {
            if let Some(resp) = Box::pin(self.copy_large(&call, c)).await? {
                return Ok(resp);
            }
        }
        let Some((record, cluster)) = self.target(&call.caller, account, container, false).await?
        else {
            // Swift's copy middleware reads the source before it writes: a copy into a
            // container no cluster holds goes to the source's cluster, which reads the
            // source (403 if the caller may not) and then answers 404 for the
            // destination, as one cluster does.
            if let Some(copy) = copy.as_ref().filter(|_| call.parts.method == Method::PUT) {
                if let Some(src) = self
                    .find(&call.caller, &copy.src.account, &copy.src.container, false)
                    .await?
                {
                    let at = self.cluster(&src.cluster)?;
                    let body = std::mem::replace(&mut call.body, empty());
                    return Box::pin(self.forward(at, &call, call.path_and_query(), body)).await;
                }
            }
            return Box::pin(self.unheld(call)).await;
        };
        // A write to a moving container waits out its switch (see `migrate`).
        let (record, cluster, _inflight) =
            if call.parts.method == Method::GET || call.parts.method == Method::HEAD {
                (record, cluster, None)
            } else {
                let (record, guard) = self
                    .write_gate(account, container, Some(object), record)
                    .await?;
                let cluster = self.cluster(&record.cluster)?;
                (record, cluster, guard)
            };
        // Both sides of a copy, each in its own account. A side no cluster holds (or
        // that the caller may not see) is left to the cluster, whose answer (404, 403)
        // is Swift's.
        let mut sides = None;
        if let Some(copy) = &copy {
            let src = self
                .find(&call.caller, &copy.src.account, &copy.src.container, false)
                .await?;
            let dst = self
                .find(&call.caller, &copy.dst.account, &copy.dst.container, false)
                .await?;
            if let (Some(src), Some(dst)) = (src, dst) {
                if src.cluster != dst.cluster {
                    return Box::pin(self.copy_across(&call, copy, &src.cluster, &dst.cluster))
                        .await;
                }
                sides = Some((src.cluster, dst.cluster));
            }
        }
        let path = swift_path(account, Some(container.as_str()), Some(object));
        let cluster = if call.parts.method == Method::PUT {
            let (record, apart) =
                Box::pin(self.colocate_references(&mut call, account, record)).await?;
            if let Some(refused) =
                Box::pin(self.prepare_static_link(&mut call, account, &record.cluster)).await?
            {
                return Ok(refused);
            }
            match apart {
                Some(Apart::Slo(manifest)) => {
                    return Box::pin(self.slo_put(
                        call,
                        account,
                        container,
                        object,
                        &record.cluster,
                        manifest,
                    ))
                    .await;
                }
                Some(Apart::Dlo(manifest)) => {
                    return Box::pin(self.dlo_put(call, &record.cluster, manifest)).await;
                }
                None => {}
            }
            self.cluster(&record.cluster)?
        } else {
            cluster
        };
        let method = call.parts.method.clone();
        let at = large::ObjectHome {
            account,
            path: &path,
            home: cluster.id(),
        };
        if method == Method::POST {
            Box::pin(self.keep_mark_on_post(&mut call, &path, cluster.id())).await?;
        }
        if method == Method::DELETE && large::manifest_query(&call, "delete") {
            if let Some(head) = Box::pin(self.probe_mark(&call, &path, cluster.id())).await? {
                if let Some(m) = large::marked(&head) {
                    return Box::pin(self.large_answer(&call, at, head, m, true)).await;
                }
            }
        }
        let body = std::mem::replace(&mut call.body, empty());
        let mut resp = self
            .forward(cluster, &call, call.path_and_query(), body)
            .await?;
        if method == Method::POST {
            Box::pin(self.link_post_answer(&call, &path, cluster.id(), &mut resp)).await?;
        }
        let reads = method == Method::GET || method == Method::HEAD;
        if reads {
            symlink::link_answer(&mut resp);
            if let Some(m) = large::marked(&resp) {
                return Box::pin(self.large_answer(&call, at, resp, m, false)).await;
            }
            // What the cluster refused because it judged the manifest object itself: a
            // condition on the ETag, a part number of what it takes for a plain object.
            let conditional = call.parts.headers.contains_key(header::IF_MATCH)
                || call.parts.headers.contains_key(header::IF_NONE_MATCH);
            let refused = resp.status() == StatusCode::NOT_MODIFIED
                || resp.status() == StatusCode::PRECONDITION_FAILED;
            let part = call
                .parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("part-number=")));
            let part_refused = resp.status() == StatusCode::BAD_REQUEST
                || resp.status() == StatusCode::RANGE_NOT_SATISFIABLE;
            let dated = call.parts.headers.contains_key(header::IF_MODIFIED_SINCE)
                || call.parts.headers.contains_key(header::IF_UNMODIFIED_SINCE);
            if ((conditional || dated) && refused) || (part && part_refused) {
                if let Some(head) = Box::pin(self.probe_mark(&call, &path, cluster.id())).await? {
                    if let Some(m) = large::marked(&head) {
                        if refused && !conditional {
                            // Judged on the dates alone: the cluster's answer stands,
                            // with the large object's headers.
                            return Box::pin(self.large_answer(&call, at, resp, m, false)).await;
                        }
                        return Box::pin(self.large_answer(&call, at, head, m, true)).await;
                    }
                }
            }
        }
        if !unfollowed(&resp) {
            return Ok(resp);
        }
        // A copy within one cluster whose source is a link to another: the proxy
        // follows the link and carries the bytes.
        if let (Some(copy), Some((src, dst))) = (&copy, &sides) {
            if Box::pin(self.link_elsewhere(&call, &resp, src)).await? {
                return Box::pin(self.copy_across(&call, copy, src, dst)).await;
            }
        }
        // Only a 404 (or 403) to a read can be a link to another cluster.
        if reads {
            return Box::pin(self.follow_symlink(&call, cluster.id(), resp)).await;
        }
        Ok(resp)
    }
}
