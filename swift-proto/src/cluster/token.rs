//! Cluster tokens: the credentials a session logs in with, and the token it holds on each
//! cluster, renewed shortly before it expires or when a cluster refuses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::ClusterId;
use http::{HeaderMap, HeaderValue};

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

impl ClusterToken {
    fn fresh(&self) -> bool {
        self.expires > Instant::now() + RENEW_MARGIN
    }
}

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
    tokens: Mutex<HashMap<ClusterId, ClusterToken>>,
    renewal: tokio::sync::Mutex<()>,
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
            tokens: Mutex::new(tokens),
            renewal: tokio::sync::Mutex::new(()),
        }
    }

    /// A session acting as the proxy's Keystone identity (one token for every cluster).
    pub fn keystone(auth: Arc<KeystoneAuth>) -> Self {
        Self {
            login: Login::Keystone(auth),
            tokens: Mutex::new(HashMap::new()),
            renewal: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self, cluster: &ClusterId) -> Option<ClusterToken> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cluster)
            .cloned()
    }

    /// Drops the token held for `cluster` if it is still `refused` (a cluster refused it
    /// and the request could not be replayed): the next request logs in again.
    pub fn forget(&self, cluster: &ClusterId, refused: Option<&HeaderValue>) {
        if let Login::Keystone(auth) = &self.login {
            return auth.forget(refused);
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.get(cluster).map(|t| &t.token) == refused {
            tokens.remove(cluster);
        }
    }

    /// This session's token for `cluster`, obtained or renewed first when there is none,
    /// it is about to expire, or `force` says the cluster refused it. Concurrent
    /// renewals of one session wait for each other instead of logging in twice.
    pub async fn token_for(
        &self,
        cluster: &SwiftCluster,
        force: bool,
    ) -> Result<ClusterToken, ClusterError> {
        let credentials = match &self.login {
            Login::Tempauth(c) => c,
            Login::Keystone(auth) => return auth.token(cluster.id(), force).await,
        };
        if !force {
            if let Some(t) = self.cached(cluster.id()).filter(ClusterToken::fresh) {
                return Ok(t);
            }
        }
        let seen = self.cached(cluster.id()).map(|t| t.token);
        let _one_at_a_time = self.renewal.lock().await;
        // Another request may have renewed it while we waited.
        if let Some(t) = self.cached(cluster.id()).filter(ClusterToken::fresh) {
            if Some(&t.token) != seen.as_ref() || !force {
                return Ok(t);
            }
        }
        let t = cluster.login(credentials).await?;
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cluster.id().clone(), t.clone());
        Ok(t)
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
