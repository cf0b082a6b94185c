//! The proxy's own identity in Keystone: the service credentials from the configuration
//! (a user with a password, or an application credential), the project-scoped token
//! they obtain (one token for every cluster, since the clusters share the Keystone),
//! renewed shortly before it expires or when a cluster refuses it.
//!
//! Clients' tokens never come here: they go to the clusters as they came, and the
//! clusters' `authtoken` validates them (see the README's Keystone section).

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use federation_core::ClusterId;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use serde::Deserialize;
use stackfed_http::{full, HttpClient};
use url::Url;

use super::{ClusterError, ClusterToken};

/// The largest token document read (a token with its catalog).
const MAX_TOKEN_BODY: usize = 4 * 1024 * 1024;
/// Renew the token this long before it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// A secret in the configuration: given inline (tests), read from a file (its content
/// without the trailing newline), or from an environment variable.
///
/// ```toml
/// password = { file = "/etc/stackfed/keystone-password" }
/// password = { env = "STACKFED_KEYSTONE_PASSWORD" }
/// password = "inline"
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
#[non_exhaustive]
pub enum Secret {
    /// The secret itself.
    Inline(String),
    /// A file holding it.
    File {
        /// The file.
        file: PathBuf,
    },
    /// An environment variable holding it.
    Env {
        /// The variable's name.
        env: String,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Secret(inline, redacted)"),
            Self::File { file } => write!(f, "Secret(file {})", file.display()),
            Self::Env { env } => write!(f, "Secret(env {env})"),
        }
    }
}

impl Secret {
    /// The secret's value; an error names where it was looked for.
    pub fn resolve(&self) -> Result<String, String> {
        let value = match self {
            Self::Inline(s) => s.clone(),
            Self::File { file } => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read secret file {}: {e}", file.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            Self::Env { env } => {
                std::env::var(env).map_err(|_| format!("environment variable {env} is not set"))?
            }
        };
        if value.is_empty() {
            return Err(format!("{self:?} is empty"));
        }
        Ok(value)
    }
}

fn default_domain() -> String {
    "default".to_owned()
}

fn default_reseller_prefix() -> String {
    "AUTH_".to_owned()
}

/// `auth = { kind = "keystone", ... }`: the Keystone the clusters share, and the
/// proxy's own credentials there (for its registry and other work of its own).
///
/// ```toml
/// auth = { kind = "keystone", auth_url = "http://keystone:5000/v3", user = "stackfed",
///          password = { env = "STACKFED_KEYSTONE_PASSWORD" }, project = "service" }
/// # or
/// auth = { kind = "keystone", auth_url = "http://keystone:5000/v3",
///          application_credential_id = "…",
///          application_credential_secret = { file = "/etc/stackfed/app-cred" } }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeystoneConfig {
    /// Keystone's v3 endpoint (`…/v3`).
    pub auth_url: Url,
    /// The proxy's user (password login).
    #[serde(default)]
    pub user: Option<String>,
    /// The user's domain id.
    #[serde(default = "default_domain")]
    pub user_domain_id: String,
    /// The user's password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The project the token is scoped to (password login); the proxy's own account is
    /// `<reseller_prefix><its id>`.
    #[serde(default)]
    pub project: Option<String>,
    /// The project's domain id.
    #[serde(default = "default_domain")]
    pub project_domain_id: String,
    /// An application credential's id (instead of user and password).
    #[serde(default)]
    pub application_credential_id: Option<String>,
    /// The application credential's secret.
    #[serde(default)]
    pub application_credential_secret: Option<Secret>,
    /// The clusters' keystoneauth `reseller_prefix`.
    #[serde(default = "default_reseller_prefix")]
    pub reseller_prefix: String,
}

impl KeystoneConfig {
    /// The authentication request's JSON, with the secrets resolved.
    fn auth_body(&self) -> Result<String, String> {
        let body = match (&self.application_credential_id, &self.user) {
            (Some(id), None) => {
                let secret = self
                    .application_credential_secret
                    .as_ref()
                    .ok_or("application_credential_secret is missing")?
                    .resolve()?;
                serde_json::json!({"auth": {"identity": {
                    "methods": ["application_credential"],
                    "application_credential": {"id": id, "secret": secret}}}})
            }
            (None, Some(user)) => {
                let password = self
                    .password
                    .as_ref()
                    .ok_or("password is missing")?
                    .resolve()?;
                let project = self
                    .project
                    .as_ref()
                    .ok_or("project is missing (the proxy's token is project-scoped)")?;
                serde_json::json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": {
                        "name": user, "domain": {"id": self.user_domain_id},
                        "password": password}}},
                    "scope": {"project": {"name": project,
                                          "domain": {"id": self.project_domain_id}}}}})
            }
            _ => {
                return Err("give either user, password and project, or \
                            application_credential_id and application_credential_secret"
                    .into())
            }
        };
        Ok(body.to_string())
    }
}

/// See the module docs. Shared (in an `Arc`) by every session that acts as the proxy.
pub struct KeystoneAuth {
    tokens_url: Uri,
    body: Bytes,
    reseller_prefix: String,
    http: HttpClient,
    token: Mutex<Option<ClusterToken>>,
    renewal: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeystoneAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneAuth")
            .field("tokens_url", &self.tokens_url)
            .finish_non_exhaustive()
    }
}

/// The parts of a token document the proxy reads.
#[derive(Deserialize)]
struct TokenDocument {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    project: Option<Project>,
}

#[derive(Deserialize)]
struct Project {
    id: String,
}

impl KeystoneAuth {
    /// Checks the configuration and reads its secrets; nothing is contacted until the
    /// first token is needed.
    pub fn new(config: &KeystoneConfig, http: HttpClient) -> Result<Self, String> {
        let body = config.auth_body()?;
        let base = config.auth_url.as_str().trim_end_matches('/');
        let tokens_url = format!("{base}/auth/tokens")
            .parse()
            .map_err(|_| format!("auth_url {base} is not usable"))?;
        Ok(Self {
            tokens_url,
            body: Bytes::from(body),
            reseller_prefix: config.reseller_prefix.clone(),
            http,
            token: Mutex::new(None),
            renewal: tokio::sync::Mutex::new(()),
        })
    }

    fn cached(&self) -> Option<ClusterToken> {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the token if it is still `refused` (a cluster said 401 to it).
    pub fn forget(&self, refused: Option<&HeaderValue>) {
        let mut token = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if token.as_ref().map(|t| &t.token) == refused {
            *token = None;
        }
    }

    /// The proxy's token (for `cluster`, which only names the errors), obtained or
    /// renewed first when there is none, it is about to expire, or `force` says a
    /// cluster refused it. Concurrent renewals wait for each other.
    pub async fn token(
        &self,
        cluster: &ClusterId,
        force: bool,
    ) -> Result<ClusterToken, ClusterError> {
        let fresh = |t: &ClusterToken| t.expires > Instant::now() + RENEW_MARGIN;
        if !force {
            if let Some(t) = self.cached().filter(fresh) {
                return Ok(t);
            }
        }
        let seen = self.cached().map(|t| t.token);
        let _one_at_a_time = self.renewal.lock().await;
        if let Some(t) = self.cached().filter(fresh) {
            if Some(&t.token) != seen.as_ref() || !force {
                return Ok(t);
            }
        }
        let t = self.login(cluster).await?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(t.clone());
        Ok(t)
    }

    /// `POST /v3/auth/tokens` with the configured credentials.
    async fn login(&self, cluster: &ClusterId) -> Result<ClusterToken, ClusterError> {
        let fail = |message: String, temporary: bool| ClusterError::Identity {
            cluster: cluster.clone(),
            message,
            temporary,
        };
        let mut req = Request::new(full(self.body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.tokens_url.clone();
        let h = req.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let (parts, body) = self
            .http
            .send_collect(req, MAX_TOKEN_BODY)
            .await
            .map_err(|e| {
                let temporary = e.is_temporary();
                fail(format!("Keystone is unreachable: {e}"), temporary)
            })?;
        if parts.status != StatusCode::CREATED && parts.status != StatusCode::OK {
            return Err(fail(
                format!(
                    "Keystone answered {} to the proxy's credentials",
                    parts.status
                ),
                parts.status.is_server_error(),
            ));
        }
        let token = parts
            .headers
            .get("x-subject-token")
            .cloned()
            .ok_or_else(|| fail("Keystone gave no X-Subject-Token".into(), false))?;
        let doc: TokenDocument = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("Keystone's token document: {e}"), false))?;
        let project = doc
            .token
            .project
            .ok_or_else(|| fail("the proxy's token is not scoped to a project".into(), false))?;
        let expires_at = humantime::parse_rfc3339_weak(doc.token.expires_at.trim_end_matches('Z'))
            .map_err(|e| fail(format!("Keystone's expires_at: {e}"), false))?;
        let lifetime = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Ok(ClusterToken {
            token,
            storage_path: format!("/v1/{}{}", self.reseller_prefix, project.id),
            expires: Instant::now() + lifetime,
        })
    }
}
