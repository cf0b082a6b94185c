//! The object family: forwarded to the container's cluster, bodies streamed both ways.
//! A copy whose two containers live on different clusters goes to [`copy`](super::copy);
//! a read that may be a link to another cluster to [`symlink`](super::symlink).

use federation_core::{AccountName, ContainerName};
use http::{Method, Response};
use stackfed_http::{empty, Body};

use super::copy::{copy_endpoints, unfollowed};
use super::{Call, FederationService, Result};
use crate::path::SwiftPath;

impl FederationService {
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
        let copy = copy_endpoints(&call.parts, account, container, object)?;
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
                    return self.forward(at, &call, call.path_and_query(), body).await;
                }
            }
            return self.unheld(call).await;
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
                    return self
                        .copy_across(&call, copy, &src.cluster, &dst.cluster)
                        .await;
                }
                sides = Some((src.cluster, dst.cluster));
            }
        }
        let cluster = if call.parts.method == Method::PUT {
            let record = self.colocate_references(&mut call, account, record).await?;
            self.check_static_link(&call, account, &record.cluster)
                .await?;
            self.cluster(&record.cluster)?
        } else {
            cluster
        };
        let body = std::mem::replace(&mut call.body, empty());
        let resp = self
            .forward(cluster, &call, call.path_and_query(), body)
            .await?;
        if !unfollowed(&resp) {
            return Ok(resp);
        }
        // A copy within one cluster whose source is a link to another: the proxy
        // follows the link and carries the bytes.
        if let (Some(copy), Some((src, dst))) = (&copy, &sides) {
            if self.link_elsewhere(&call, &resp, src).await? {
                return self.copy_across(&call, copy, src, dst).await;
            }
        }
        // Only a 404 (or 403) to a read can be a link to another cluster.
        let reads = call.parts.method == Method::GET || call.parts.method == Method::HEAD;
        if reads {
            return self.follow_symlink(&call, cluster.id(), resp).await;
        }
        Ok(resp)
    }
}
