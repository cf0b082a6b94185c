//! Symlinks across clusters. Swift's symlink middleware follows a link on its own
//! cluster; a dynamic link whose target container lives elsewhere comes back as 404
//! (403 when the target is in another account the cluster cannot see) with
//! `Content-Location` naming the target, and the proxy follows it to the target's
//! cluster (the 404-then-follow rule). Static links are verified by the cluster that
//! stores them, so their target must be on the same cluster.

use federation_core::{AccountName, ClusterId};
use http::{header, HeaderValue, Response, StatusCode};
use stackfed_http::{empty, Body};

use super::copy::{header_account, header_path, unfollowed};
use super::{Call, Caller, FederationService, Result};
use crate::error::SwiftError;
use crate::path::SwiftPath;

/// How many symlinks the proxy follows across clusters for one read (Swift's default
/// `symloop_max`).
const SYMLINK_HOPS: usize = 2;

impl FederationService {
    /// Follows a read's 404 (or 403) with `Content-Location` to the target's cluster, at
    /// most [`SYMLINK_HOPS`] times. Any other answer, and `?symlink=get`, pass through
    /// unchanged.
    pub(super) async fn follow_symlink(
        &self,
        call: &Call,
        home: &ClusterId,
        mut resp: Response<Body>,
    ) -> Result<Response<Body>> {
        if super::copy::link_itself(&call.parts) {
            return Ok(resp);
        }
        let mut at = home.clone();
        for _ in 0..SYMLINK_HOPS {
            let Some(target) = resp
                .headers()
                .get(header::CONTENT_LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok(resp);
            };
            let Ok(SwiftPath::Object {
                account, container, ..
            }) = SwiftPath::parse(&target)
            else {
                return Ok(resp);
            };
            let Some(record) = self.find(&call.caller, &account, &container, false).await? else {
                return Ok(resp);
            };
            if record.cluster == at {
                return Ok(resp);
            }
            let next = self.cluster(&record.cluster)?;
            // Through a temp URL, the target is read with the account's authority.
            let lent = match self.lent_token(call, &account, container.as_str()) {
                Some(t) => self.inner.sessions.get(&t).await?,
                None => None,
            };
            resp = match lent {
                Some(session) => {
                    let borrowed = Call {
                        parts: call.parts.clone(),
                        body: empty(),
                        caller: Caller::Session(session),
                    };
                    self.forward(next, &borrowed, &target, empty()).await?
                }
                None => self.forward(next, call, &target, empty()).await?,
            };
            if let Ok(v) = HeaderValue::from_str(&target) {
                resp.headers_mut()
                    .entry(header::CONTENT_LOCATION)
                    .or_insert(v);
            }
            if !unfollowed(&resp) {
                return Ok(resp);
            }
            at = record.cluster;
        }
        Ok(resp)
    }

    /// A static link (`X-Symlink-Target-Etag`) must target its own cluster: 409 with
    /// advice otherwise. Dynamic links may point anywhere (they are resolved when read).
    pub(super) async fn check_static_link(
        &self,
        call: &Call,
        account: &AccountName,
        home: &ClusterId,
    ) -> Result<()> {
        let headers = &call.parts.headers;
        if !headers.contains_key("x-symlink-target-etag") {
            return Ok(());
        }
        let Some((target, _)) = header_path(headers, "X-Symlink-Target")? else {
            return Ok(());
        };
        let target_account =
            header_account(headers, "x-symlink-target-account")?.unwrap_or_else(|| account.clone());
        match self
            .find(&call.caller, &target_account, &target, false)
            .await?
        {
            Some(r) if r.cluster != *home => Err(SwiftError::new(
                StatusCode::CONFLICT,
                format!(
                    "A static symlink (X-Symlink-Target-Etag) needs its target on the same \
                     cluster; container {target} is on cluster {}, this one on {home}. \
                     Use a dynamic symlink (no X-Symlink-Target-Etag).",
                    r.cluster
                ),
            )),
            _ => Ok(()),
        }
    }
}
