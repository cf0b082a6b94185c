//! The auth family (`/auth/v1.0`) and the proxy's sessions.
//!
//! In tempauth mode the proxy logs the client's credentials in on every cluster, keeps
//! each cluster's token in a [`ProxySession`], and hands the client one token of its
//! own; the cluster client renews a cluster's token shortly before it expires or when
//! the cluster says 401. In pass-through mode the client's token goes to every cluster
//! unchanged (for clusters sharing one Keystone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, Response, StatusCode};
use stackfed_http::{full, Body};

use super::{Call, FederationService, Result};
use crate::cluster::{ClusterError, Credentials, Session, SwiftCluster};
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

/// A client's session: a token per cluster, the storage path handed to the client and
/// when the proxy's token expires.
#[derive(Debug)]
pub struct ProxySession {
    /// The tokens on each cluster.
    pub session: Session,
    /// The storage path handed to the client (the first cluster's).
    pub storage_path: String,
    /// When the proxy's own token expires.
    pub expires: Instant,
}

/// The proxy's sessions, by proxy token.
#[derive(Debug, Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Arc<ProxySession>>>,
}

impl Sessions {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Logs in on every cluster concurrently and opens a session; returns the new proxy
    /// token and the session. Any cluster refusing the credentials is a 401.
    pub async fn login(
        &self,
        clusters: &[&SwiftCluster],
        credentials: Credentials,
    ) -> Result<(String, Arc<ProxySession>)> {
        if clusters.is_empty() {
            return Err(SwiftError::unavailable("no clusters are configured"));
        }
        let results =
            futures::future::join_all(clusters.iter().map(|c| c.login(&credentials))).await;
        // A refusal anywhere wins over an outage elsewhere: the credentials are wrong.
        if let Some(Err(e)) = results
            .iter()
            .find(|r| matches!(r, Err(ClusterError::Refused { .. })))
        {
            tracing::debug!(error = %e, "login refused");
            return Err(SwiftError::unauthorized());
        }
        let mut tokens = HashMap::new();
        let mut first_path = None;
        let mut expires = Instant::now() + Duration::from_secs(86_400);
        for (c, r) in clusters.iter().zip(results) {
            let t = r?;
            first_path.get_or_insert_with(|| t.storage_path.clone());
            expires = expires.min(t.expires);
            tokens.insert(c.id().clone(), t);
        }
        let token = new_token()?;
        let session = Arc::new(ProxySession {
            session: Session::with_tokens(credentials, tokens),
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
    pub fn get(&self, token: &str) -> Option<Arc<ProxySession>> {
        let table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// A live session's proxy token for `account` (its storage path ends in it): the
    /// account's authority that Swift's tempurl middleware lends to the segment
    /// subrequests of a large object read through a temp URL.
    pub(super) fn token_for_account(&self, account: &str) -> Option<String> {
        let table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        table
            .iter()
            .filter(|(_, s)| s.expires > now)
            .filter(|(_, s)| s.storage_path.rsplit('/').next() == Some(account))
            .max_by_key(|(_, s)| s.expires)
            .map(|(t, _)| t.clone())
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
fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|_| SwiftError::unavailable("no randomness for a token"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("AUTH_tk{hex}"))
}

impl FederationService {
    /// `GET /auth/v1.0`.
    pub(super) async fn auth_request(&self, call: &Call) -> Result<Response<Body>> {
        let parts = &call.parts;
        if parts.method != Method::GET {
            return Err(SwiftError::status(StatusCode::METHOD_NOT_ALLOWED));
        }
        // Log in where clusters answer; an offline one is logged in on first use.
        let (up, _) = self.reachable();
        let clusters: Vec<&SwiftCluster> = up
            .iter()
            .filter_map(|c| self.inner.clusters.get(c.id()))
            .collect();
        let Some(first) = clusters.first() else {
            return Err(SwiftError::unavailable("no cluster is reachable"));
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let v = |s: &str| {
            HeaderValue::from_str(s).map_err(|_| SwiftError::bad_request("Invalid Host header"))
        };
        match self.inner.mode {
            AuthMode::Tempauth => {
                let creds = Credentials::from_headers(&parts.headers)
                    .ok_or_else(SwiftError::unauthorized)?;
                let (token, session) = self.inner.sessions.login(&clusters, creds).await?;
                let url = format!("http://{host}{}", session.storage_path);
                let lifetime = session
                    .expires
                    .saturating_duration_since(Instant::now())
                    .as_secs();
                let body = serde_json::json!({"storage": {"default": "local", "local": url}});
                let mut resp = Response::new(full(body.to_string()));
                let h = resp.headers_mut();
                h.insert("x-auth-token", v(&token)?);
                h.insert("x-storage-token", v(&token)?);
                h.insert("x-storage-url", v(&url)?);
                h.insert("x-auth-token-expires", HeaderValue::from(lifetime));
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=UTF-8"),
                );
                Ok(resp)
            }
            AuthMode::PassThrough => {
                // Authenticate against the first cluster and point the client at us.
                let mut resp = self
                    .forward(first, call, "/auth/v1.0", stackfed_http::empty())
                    .await?;
                if let Some(url) = resp
                    .headers()
                    .get("x-storage-url")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|u| url::Url::parse(u).ok())
                {
                    let ours = v(&format!("http://{host}{}", url.path()))?;
                    resp.headers_mut().insert("x-storage-url", ours);
                }
                Ok(resp)
            }
        }
    }
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
}
