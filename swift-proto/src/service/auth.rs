//! The auth family (`/auth/v1.0`) and the proxy's sessions.
//!
//! In tempauth mode the proxy logs the client's credentials in on every cluster, keeps
//! each cluster's token in a [`ProxySession`], and hands the client one token of its
//! own; the cluster client renews a cluster's token shortly before it expires or when
//! the cluster says 401. In pass-through mode the client's token goes to every cluster
//! unchanged (for clusters sharing one Keystone). Keystone mode forwards clients' tokens
//! the same way and has no `/auth/v1.0` (clients log in at Keystone, which points them
//! at the proxy through its catalog); the proxy's own work authenticates with the
//! service credentials of `auth = { kind = "keystone", ... }`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, Response, StatusCode};
use stackfed_http::{full, Body};

use federation_core::sessions::{SealedSession, SessionStore};

use super::{seal, Call, FederationService, Result};
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
    /// Clusters behind Keystone (authtoken + keystoneauth): forward the client's
    /// Keystone token unchanged, every cluster validates it; no `/auth/v1.0`.
    Keystone,
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

/// Sessions this process keeps in memory at most; past it, expired ones are dropped,
/// then all (shared ones are read again from the store on their next use).
const MAX_LOCAL_SESSIONS: usize = 100_000;

/// The proxy's sessions, by proxy token: in this process's memory, and, when shared,
/// sealed in a [`SessionStore`] that every proxy reads.
#[derive(Debug, Default)]
pub struct Sessions {
    /// Foldhash, randomly seeded (SipHash was about 290 instructions per request).
    by_token: Mutex<HashMap<String, Arc<ProxySession>, foldhash::fast::RandomState>>,
    shared: Option<Arc<dyn SessionStore>>,
}

impl Sessions {
    /// An empty table, in this process only.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table backed by a shared store.
    pub fn shared(store: Arc<dyn SessionStore>) -> Self {
        Self {
            by_token: Mutex::default(),
            shared: Some(store),
        }
    }

    fn remember(&self, token: String, session: Arc<ProxySession>) {
        let mut table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        table.retain(|_, s| s.expires > now);
        if table.len() >= MAX_LOCAL_SESSIONS {
            table.clear();
        }
        table.insert(token, session);
    }

    /// Logs in on every cluster concurrently and opens a session; returns the new proxy
    /// token and the session. Any cluster refusing the credentials is a 401. With a
    /// shared store, the session is there before the token is handed out (the store
    /// unavailable: 503, and no session exists).
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
        let storage_path = first_path.unwrap_or_default();
        if let Some(store) = &self.shared {
            let (sealed, expires_at_ms) =
                seal::seal(&token, &credentials, &storage_path, expires, &tokens)
                    .ok_or_else(|| SwiftError::unavailable("cannot seal the session"))?;
            store
                .put_session(
                    &seal::token_hash(&token),
                    SealedSession {
                        sealed,
                        expires_at_ms,
                    },
                )
                .await?;
        }
        let session = Arc::new(ProxySession {
            session: Session::with_tokens(credentials, tokens),
            storage_path,
            expires,
        });
        self.remember(token.clone(), session.clone());
        Ok((token, session))
    }

    /// The live session for a proxy token: from memory, else from the shared store
    /// (then kept in memory). A shared store that cannot be read is a 503, not a 401.
    pub async fn get(&self, token: &str) -> Result<Option<Arc<ProxySession>>> {
        if let Some(s) = self.local(token) {
            return Ok(Some(s));
        }
        let Some(store) = &self.shared else {
            return Ok(None);
        };
        let Some(found) = store.get_session(&seal::token_hash(token)).await? else {
            return Ok(None);
        };
        let Some(opened) = seal::open(token, &found.sealed) else {
            tracing::warn!("a shared session could not be opened with its token");
            return Ok(None);
        };
        if opened.expires <= Instant::now() {
            return Ok(None);
        }
        let session = Arc::new(ProxySession {
            session: Session::with_tokens(opened.credentials, opened.tokens),
            storage_path: opened.storage_path,
            expires: opened.expires,
        });
        self.remember(token.to_owned(), session.clone());
        Ok(Some(session))
    }

    fn local(&self, token: &str) -> Option<Arc<ProxySession>> {
        let table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        table
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// The live sessions' proxy tokens for `account` (their storage paths end in it),
    /// one per user (the user's longest-lived), the longest-lived first: the account's
    /// authority that Swift's tempurl middleware lends to the subrequests of a read
    /// through a temp URL (see `tempurl.rs`). One per user, so that many sessions of
    /// users who cannot read the account's keys (a user with only an ACL logging in
    /// again and again, as Swift's functional suite does from every worker) never hide
    /// the owner's.
    pub(super) fn tokens_for_account(&self, account: &str) -> Vec<String> {
        let table = self.by_token.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut found: Vec<(&String, &ProxySession)> = table
            .iter()
            .filter(|(_, s)| s.expires > now)
            .filter(|(_, s)| s.storage_path.rsplit('/').next() == Some(account))
            .map(|(t, s)| (t, s.as_ref()))
            .collect();
        found.sort_by_key(|(_, s)| std::cmp::Reverse(s.expires));
        let mut users = std::collections::HashSet::new();
        found
            .into_iter()
            .filter(|(t, s)| users.insert(s.session.user().unwrap_or(t.as_str())))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// How many sessions this process holds in memory.
    pub fn len(&self) -> usize {
        self.by_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether this process holds no session in memory.
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
            // As a Swift behind Keystone: clients log in at Keystone.
            AuthMode::Keystone => Err(SwiftError::not_found()),
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

    fn session(user: &str, path: &str, secs: u64) -> Arc<ProxySession> {
        Arc::new(ProxySession {
            session: Session::new(Credentials {
                user: user.to_owned(),
                key: "k".to_owned(),
            }),
            storage_path: path.to_owned(),
            expires: Instant::now() + Duration::from_secs(secs),
        })
    }

    #[test]
    fn an_accounts_tokens_are_one_per_user_longest_lived_first() {
        let sessions = Sessions::new();
        // The owner logged in first; a reader with an ACL logged in ten times since.
        sessions.remember("owner".into(), session("test:tester", "/v1/AUTH_test", 100));
        for i in 0..10 {
            sessions.remember(
                format!("reader{i}"),
                session("test:tester3", "/v1/AUTH_test", 200 + i),
            );
        }
        sessions.remember(
            "other".into(),
            session("test2:tester2", "/v1/AUTH_test2", 500),
        );
        sessions.remember("gone".into(), session("test:old", "/v1/AUTH_test", 0));
        assert_eq!(
            sessions.tokens_for_account("AUTH_test"),
            vec!["reader9".to_owned(), "owner".to_owned()]
        );
        assert_eq!(sessions.tokens_for_account("AUTH_test2"), vec!["other"]);
        assert!(sessions.tokens_for_account("AUTH_none").is_empty());
    }

    #[test]
    fn tokens_are_random_and_shaped() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 7 + 32);
        assert!(a.starts_with("AUTH_tk"));
    }
}
