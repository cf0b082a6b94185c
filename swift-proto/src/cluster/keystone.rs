//! The proxy's own identity in Keystone: the service credentials from the configuration
//! (a user with a password, or an application credential), the project-scoped token
//! they obtain (one token for every cluster, since the clusters share the Keystone),
//! renewed shortly before it expires or when a cluster refuses it.
//!
//! Clients' tokens never come here: they go to the clusters as they came, and the
//! clusters' `authtoken` validates them (see the README's Keystone section).

use federation_core::ClusterId;
use http::HeaderValue;
use serde::Deserialize;
pub use stackfed_http::keystone::Secret;
use stackfed_http::keystone::{CredentialSettings, Credentials, KeystoneError, Token, TokenSource};
use stackfed_http::HttpClient;
use url::Url;

use super::{ClusterError, ClusterToken};

/// Renew the token this long before it expires.
const RENEW_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// The proxy's user (password login; also `username`, as the edge spells it), or
    /// the owner of an application credential given by name.
    #[serde(default, alias = "username")]
    pub user: Option<String>,
    /// The user's domain id.
    #[serde(default = "default_domain")]
    pub user_domain_id: String,
    /// The user's password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The project the token is scoped to (password login); the proxy's own account is
    /// `<reseller_prefix><its id>` (also `project_name`, as the edge spells it).
    #[serde(default, alias = "project_name")]
    pub project: Option<String>,
    /// The project's domain id.
    #[serde(default = "default_domain")]
    pub project_domain_id: String,
    /// An application credential's id (instead of user and password).
    #[serde(default)]
    pub application_credential_id: Option<String>,
    /// An application credential's name (with `user`; instead of its id).
    #[serde(default)]
    pub application_credential_name: Option<String>,
    /// The application credential's secret.
    #[serde(default)]
    pub application_credential_secret: Option<Secret>,
    /// The clusters' keystoneauth `reseller_prefix`.
    #[serde(default = "default_reseller_prefix")]
    pub reseller_prefix: String,
}

impl KeystoneConfig {
    /// The login these settings describe (checked as the edge's are).
    fn credentials(&self) -> Result<Credentials, String> {
        Credentials::from_settings(CredentialSettings {
            user: self.user.clone(),
            user_domain_id: self.user_domain_id.clone(),
            passwords: self.password.clone().into_iter().collect(),
            project: self.project.clone(),
            default_project: None,
            project_domain_id: self.project_domain_id.clone(),
            application_credential_id: self.application_credential_id.clone(),
            application_credential_name: self.application_credential_name.clone(),
            application_credential_secret: self.application_credential_secret.clone(),
        })
        .map_err(|e| e.to_string())
    }
}

/// See the module docs. Shared (in an `Arc`) by every session that acts as the proxy.
#[derive(Debug)]
pub struct KeystoneAuth {
    source: TokenSource,
    reseller_prefix: String,
}

impl KeystoneAuth {
    /// Checks the configuration and reads its secrets; nothing is contacted until the
    /// first token is needed.
    pub fn new(config: &KeystoneConfig, http: HttpClient) -> Result<Self, String> {
        let credentials = config.credentials()?;
        let source = TokenSource::new(&config.auth_url, &credentials, http)
            .map_err(|e| e.to_string())?
            .with_identity("proxy")
            .with_renew_margin(RENEW_MARGIN);
        Ok(Self {
            source,
            reseller_prefix: config.reseller_prefix.clone(),
        })
    }

    /// The login underneath (its count of logins, for tests and diagnostics).
    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// Drops the token if it is still `refused` (a cluster said 401 to it).
    pub fn forget(&self, refused: Option<&HeaderValue>) {
        if let Some(refused) = refused {
            self.source.forget(refused);
        }
    }

    /// The proxy's token (for `cluster`, which only names the errors), obtained or
    /// renewed first when there is none, it is about to expire, or it is `refused` (a
    /// cluster answered 401 to it). Renewal is single-flight.
    pub async fn token(
        &self,
        cluster: &ClusterId,
        refused: Option<&HeaderValue>,
    ) -> Result<ClusterToken, ClusterError> {
        let token = match refused {
            Some(r) => self.source.renew(r).await,
            None => self.source.token().await,
        };
        token
            .map_err(|e| identity_error(cluster, &e))
            .and_then(|t| self.cluster_token(cluster, t))
    }

    fn cluster_token(&self, cluster: &ClusterId, t: Token) -> Result<ClusterToken, ClusterError> {
        let project = t.project_id.ok_or_else(|| ClusterError::Identity {
            cluster: cluster.clone(),
            message: "the proxy's token is not scoped to a project".into(),
            temporary: false,
        })?;
        Ok(ClusterToken {
            token: t.value,
            storage_path: format!("/v1/{}{}", self.reseller_prefix, project),
            expires: t.expires,
        })
    }
}

fn identity_error(cluster: &ClusterId, e: &KeystoneError) -> ClusterError {
    ClusterError::Identity {
        cluster: cluster.clone(),
        message: e.to_string(),
        temporary: e.is_temporary(),
    }
}
