//! The object family: forwarded to the container's cluster, bodies streamed both ways.
//! A copy whose two containers live on different clusters goes to [`copy`](super::copy);
//! a read that may be a link to another cluster to [`symlink`](super::symlink).

use federation_core::{AccountName, ContainerName};
use http::{Method, Response, StatusCode};
use stackfed_http::{empty, Body};

use super::copy::copy_endpoints;
use super::{Call, FederationService, Result};
use crate::error::SwiftError;
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
        let Some((record, cluster)) = self.target(&call.caller, account, container, false).await?
        else {
            return self.unheld(call).await;
        };
        if let Some((src, dst)) = copy_endpoints(&call.parts, container, object)? {
            let caller = &call.caller;
            let find = |c| async move {
                self.find(caller, account, c, false)
                    .await?
                    .ok_or_else(SwiftError::not_found)
            };
            let src_rec = find(&src.0).await?;
            let dst_rec = find(&dst.0).await?;
            if src_rec.cluster != dst_rec.cluster {
                return self
                    .copy_across(
                        &call,
                        account,
                        (&src_rec.cluster, &src),
                        (&dst_rec.cluster, &dst),
                    )
                    .await;
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
        // Only a 404 to a read can be a link to another cluster.
        let reads = call.parts.method == Method::GET || call.parts.method == Method::HEAD;
        if reads && resp.status() == StatusCode::NOT_FOUND {
            return self.follow_symlink(&call, cluster.id(), resp).await;
        }
        Ok(resp)
    }
}
