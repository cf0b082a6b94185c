//! Cluster tokens: the credentials a session logs in with, and the token it holds on each
//! cluster, renewed shortly before it expires or when a cluster refuses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::ClusterId;
use http::{HeaderMap, HeaderValue};
use stackfed_http::keystone::{Expiring, Lease};

use super::{ClusterError, KeystoneAuth, SwiftCluster};

/// Renew a cluster token this long before it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// Tempauth credentials (`X-Auth-User`/`X-Auth-Key`).
#[derive(Clone)]
pub struct Credentials {
    /// `account:user`.
    pub user: String,
    /// The key.
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads `X-Auth-User`/`X-Auth-Key` (or `X-Storage-User`/`X-Storage-Pass`).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let get = |a: &str, b: &str| {
            headers
                .get(a)
                .or_else(|| headers.get(b))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Some(Self {
            user: get("x-auth-user", "x-storage-user")?,
            key: get("x-auth-key", "x-storage-pass")?,
        })
    }
}

/// One cluster's token.
#[derive(Debug, Clone)]
pub struct ClusterToken {
    /// The token.
    pub token: HeaderValue,
    /// The path of the storage URL the cluster gave (`/v1/AUTH_test`).
    pub storage_path: String,
    /// When it expires.
    pub expires: Instant,
}

impl Expiring for ClusterToken {
    fn value(&self) -> &HeaderValue {
        &self.token
    }
    fn renew_at(&self) -> Instant {
        self.expires
            .checked_sub(RENEW_MARGIN)
            .unwrap_or(self.expires)
    }
    fn expires(&self) -> Instant {
        self.expires
    }
}

/// One cluster's token, renewed single-flight.
type ClusterLease = Arc<Lease<ClusterToken, ClusterError>>;

/// How a session logs in.
#[derive(Debug)]
enum Login {
    /// On each cluster's tempauth, a token per cluster.
    Tempauth(Credentials),
    /// In the Keystone the clusters share: one token for all of them.
    Keystone(Arc<KeystoneAuth>),
}

/// Credentials and the token they obtained on each cluster: a client's proxy session, or
/// the proxy's own identity for its registry.
#[derive(Debug)]
pub struct Session {
    login: Login,
    /// Foldhash, randomly seeded: looked up for every request.
    tokens: Mutex<HashMap<ClusterId, ClusterLease, foldhash::fast::RandomState>>,
}

impl Session {
    /// A session that logs in on each cluster when it first needs a token there.
    pub fn new(credentials: Credentials) -> Self {
        Self::with_tokens(credentials, HashMap::new())
    }

    /// A session holding tokens already obtained.
    pub fn with_tokens(credentials: Credentials, tokens: HashMap<ClusterId, ClusterToken>) -> Self {
        Self {
            login: Login::Tempauth(credentials),
            tokens: Mutex::new(
                tokens
                    .into_iter()
                    .map(|(c, t)| (c, Arc::new(Lease::new(Some(t)))))
                    .collect(),
            ),
        }
    }

    /// A session acting as the proxy's Keystone identity (one token for every cluster).
    pub fn keystone(auth: Arc<KeystoneAuth>) -> Self {
        Self {
            login: Login::Keystone(auth),
            tokens: Mutex::default(),
        }
    }

    /// The `account:user` a tempauth session logged in as (none for the proxy's
    /// Keystone identity).
    pub fn user(&self) -> Option<&str> {
        match &self.login {
            Login::Tempauth(c) => Some(c.user.as_str()),
            Login::Keystone(_) => None,
        }
    }

    fn lease(&self, cluster: &ClusterId) -> ClusterLease {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        // Looked up first: the id is cloned (a `String`) only for a lease not yet made.
        if let Some(lease) = tokens.get(cluster) {
            return lease.clone();
        }
        tokens.entry(cluster.clone()).or_default().clone()
    }

    /// Drops the token held for `cluster` if it is still `refused` (a cluster refused it
    /// and the request could not be replayed): the next request logs in again.
    pub fn forget(&self, cluster: &ClusterId, refused: Option<&HeaderValue>) {
        if let Login::Keystone(auth) = &self.login {
            return auth.forget(refused);
        }
        if let Some(refused) = refused {
            self.lease(cluster).forget(refused);
        }
    }

    /// This session's token for `cluster`, obtained or renewed first when there is none,
    /// it is about to expire, or it is `refused` (the cluster answered 401 to it; a token
    /// renewed since is used as it is). Concurrent renewals of one cluster's token wait
    /// for one login instead of logging in each.
    pub async fn token_for(
        &self,
        cluster: &SwiftCluster,
        refused: Option<&HeaderValue>,
    ) -> Result<ClusterToken, ClusterError> {
        match &self.login {
            Login::Keystone(auth) => auth.token(cluster.id(), refused).await,
            Login::Tempauth(credentials) => {
                self.lease(cluster.id())
                    .get(refused, || cluster.login(credentials))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_either_header_pair() {
        let mut h = HeaderMap::new();
        h.insert("x-storage-user", HeaderValue::from_static("test:tester"));
        h.insert("x-storage-pass", HeaderValue::from_static("testing"));
        let c = Credentials::from_headers(&h).unwrap();
        assert_eq!(c.user, "test:tester");
        assert!(
            !format!("{c:?}").contains("testing"),
            "keys never reach logs"
        );
        assert!(Credentials::from_headers(&HeaderMap::new()).is_none());
    }
}
