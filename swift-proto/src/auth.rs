//! Authentication: one client token that stands for a token on every cluster.
//!
//! In tempauth mode the proxy authenticates the client's credentials on every cluster,
//! keeps each cluster's token, and hands the client one token of its own. Requests carry
//! that token; the proxy sends each cluster its own, renewing a cluster's token shortly
//! before it expires (or when the cluster says 401). In pass-through mode the client's
//! token goes to every cluster unchanged (for clusters sharing one Keystone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use federation_core::{ClusterId, ClusterStatus};
use http::{HeaderMap, HeaderValue, Request, StatusCode};

use crate::body::empty;
use crate::client::{BackendClient, BackendError};
use crate::error::SwiftError;

/// How the proxy handles credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Authenticate on every cluster's tempauth and map one proxy token to theirs.
    #[default]
    Tempauth,
    /// Forward the client's token unchanged.
    PassThrough,
}

/// Renew a cluster token this long before it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// The credentials a client presented at `/auth/v1.0`.
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

/// A client's session: its credentials and a token per cluster.
#[derive(Debug)]
pub struct Session {
    credentials: Credentials,
    tokens: Mutex<HashMap<ClusterId, ClusterToken>>,
    renewal: tokio::sync::Mutex<()>,
    /// The storage path handed to the client (the first cluster's).
    pub storage_path: String,
    /// When the proxy's own token expires.
    pub expires: Instant,
}

impl Session {
    fn cached(&self, cluster: &ClusterId) -> Option<ClusterToken> {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(cluster)
            .cloned()
    }

    /// This session's token for `cluster`, renewed first when it is about to expire or
    /// `force` says the cluster refused it.
    pub async fn token_for(
        &self,
        client: &BackendClient,
        cluster: &ClusterStatus,
        force: bool,
    ) -> Result<HeaderValue, SwiftError> {
        let fresh = |t: &ClusterToken| t.expires > Instant::now() + RENEW_MARGIN;
        if !force {
            if let Some(t) = self.cached(cluster.id()).filter(fresh) {
                return Ok(t.token);
            }
        }
        let seen = self.cached(cluster.id()).map(|t| t.token);
        let _one_at_a_time = self.renewal.lock().await;
        // Another request may have renewed it while we waited.
        if let Some(t) = self.cached(cluster.id()).filter(fresh) {
            if Some(&t.token) != seen.as_ref() || !force {
                return Ok(t.token);
            }
        }
        let t = authenticate(
            client,
            cluster.id(),
            &cluster.spec.endpoint,
            &self.credentials,
        )
        .await?;
        let token = t.token.clone();
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cluster.id().clone(), t);
        Ok(token)
    }
}

/// Authenticates `credentials` on the tempauth of the cluster `cluster` at `endpoint`
/// (the name is for errors).
pub async fn authenticate(
    client: &BackendClient,
    cluster: &ClusterId,
    endpoint: &url::Url,
    credentials: &Credentials,
) -> Result<ClusterToken, SwiftError> {
    let url = format!("{}/auth/v1.0", endpoint.as_str().trim_end_matches('/'));
    let mut req = Request::get(url)
        .body(empty())
        .map_err(|e| SwiftError::bad_request(e.to_string()))?;
    let h = req.headers_mut();
    let val = |s: &str| {
        HeaderValue::from_str(s).map_err(|_| SwiftError::bad_request("Invalid credentials"))
    };
    h.insert("x-auth-user", val(&credentials.user)?);
    h.insert("x-auth-key", val(&credentials.key)?);
    let (parts, _) = client
        .send_collect(req, 64 * 1024)
        .await
        .map_err(|e| unavailable(cluster, &e))?;
    if parts.status == StatusCode::UNAUTHORIZED || parts.status == StatusCode::FORBIDDEN {
        return Err(SwiftError::unauthorized());
    }
    if !parts.status.is_success() {
        return Err(SwiftError::unavailable(format!(
            "cluster {cluster} answered {} to authentication",
            parts.status
        )));
    }
    let token = parts
        .headers
        .get("x-auth-token")
        .cloned()
        .ok_or_else(|| SwiftError::unavailable("a cluster returned no token"))?;
    let storage_url = parts
        .headers
        .get("x-storage-url")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SwiftError::unavailable("a cluster returned no storage URL"))?;
    let storage_path = url::Url::parse(storage_url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .map_err(|_| SwiftError::unavailable("a cluster returned a bad storage URL"))?;
    let lifetime = parts
        .headers
        .get("x-auth-token-expires")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(3600), Duration::from_secs_f64);
    Ok(ClusterToken {
        token,
        storage_path,
        expires: Instant::now() + lifetime,
    })
}

/// Maps a backend failure to the answer for the client.
pub fn unavailable(cluster: &ClusterId, e: &BackendError) -> SwiftError {
    match e {
        BackendError::Timeout(_) => SwiftError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("cluster {cluster} did not answer in time"),
        ),
        _ => SwiftError::unavailable(format!("cluster {cluster} is unavailable: {e}")),
    }
}

/// The proxy's sessions, by proxy token.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticates on every cluster concurrently and opens a session; returns the new
    /// proxy token and the session. Any cluster refusing the credentials is a 401.
    pub async fn login(
        &self,
        client: &BackendClient,
        clusters: &[ClusterStatus],
        credentials: Credentials,
    ) -> Result<(String, Arc<Session>), SwiftError> {
        if clusters.is_empty() {
            return Err(SwiftError::unavailable("no clusters are configured"));
        }
        let results = futures::future::join_all(
            clusters
                .iter()
                .map(|c| authenticate(client, c.id(), &c.spec.endpoint, &credentials)),
        )
        .await;
        let mut tokens = HashMap::new();
        let mut first_path = None;
        let mut expires = Instant::now() + Duration::from_secs(86_400);
        // A refusal anywhere wins over an outage elsewhere: the credentials are wrong.
        if let Some(Err(e)) = results
            .iter()
            .find(|r| matches!(r, Err(e) if e.status == StatusCode::UNAUTHORIZED))
        {
            return Err(e.clone());
        }
        for (c, r) in clusters.iter().zip(results) {
            let t = r?;
            first_path.get_or_insert_with(|| t.storage_path.clone());
            expires = expires.min(t.expires);
            tokens.insert(c.id().clone(), t);
        }
        let token = new_token()?;
        let session = Arc::new(Session {
            credentials,
            tokens: Mutex::new(tokens),
            renewal: tokio::sync::Mutex::new(()),
            storage_path: first_path.unwrap_or_default(),
            expires,
        });
        let mut table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        table.retain(|_, s| s.expires > now);
        table.insert(token.clone(), session.clone());
        Ok((token, session))
    }

    /// The live session for a proxy token.
    pub fn get(&self, token: &str) -> Option<Arc<Session>> {
        let table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A fresh proxy token: `AUTH_tk` and 32 random hex digits, like tempauth's.
fn new_token() -> Result<String, SwiftError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|_| SwiftError::unavailable("no randomness for a token"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("AUTH_tk{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_shaped() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 7 + 32);
        assert!(a.starts_with("AUTH_tk"));
    }

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
