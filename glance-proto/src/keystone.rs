//! Keystone mode: the edge validates each request's `X-Auth-Token` as keystonemiddleware's
//! `auth_token` does — by asking Keystone (`GET /v3/auth/tokens` with the edge's own
//! service token in `X-Auth-Token` and the caller's in `X-Subject-Token`) — and derives
//! the caller's project, user and roles from the answer.
//!
//! - Validations are cached (a [`moka`] cache keyed by the SHA-256 of the token, never the
//!   token itself) and re-checked with Keystone after `cache_seconds`, so a revoked token
//!   is refused at the latest that long after its revocation.
//! - A token Keystone rejected is remembered for `negative_cache_seconds` and never
//!   honoured, online or offline: its earlier validation is dropped with the rejection.
//! - While Keystone cannot be reached, a token validated before keeps working until it
//!   expires, but no longer than `offline_seconds` after its last validation; an unknown
//!   or expired token is then a 401, as Glance answers: its paste file runs `auth_token`
//!   with `delay_auth_decision = true`, which makes a token Keystone cannot check an
//!   invalid one (measured with Glance 33: not `auth_token`'s own 503).
//! - The service token is obtained with the edge's service user (password from a file,
//!   the environment or the configuration) or an application credential, by the shared
//!   [`TokenSource`] (renewed before it expires, or at once when Keystone answers 401 to
//!   a validation; one login however many validations wait for it).
//!
//! An invalid, expired or missing token is answered as Glance behind `auth_token`
//! answers it: 401 with webob's page ("This server could not verify that you are
//! authorized to access the document you requested. …") in the format the `Accept`
//! header asks for, and `WWW-Authenticate: Keystone uri="…"`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use image_cache_core::upstream::RequestContext;
use moka::future::Cache;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use stackfed_http::keystone::{
    parse_time, CredentialSettings, Credentials, KeystoneError, Secret, Token, TokenSource,
};
use stackfed_http::{BoxError, ClientError, HttpClient, Timeouts};
use url::Url;

use crate::error::GlanceError;

/// The most a Keystone answer may weigh (a token with a large catalog).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Renew the service token this long before it expires (or half-way, if later).
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// How the edge identifies itself to the central Glance in Keystone mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CentralAuth {
    /// The caller's own token goes on to the central (both sites share one Keystone, or
    /// synchronised ones): the central decides who sees what online, the edge learns.
    #[default]
    Forward,
    /// The edge's service token goes to the central (which must make the edge's service
    /// user an admin); the edge enforces Glance's visibility rules itself, online too.
    /// Writes still carry the caller's token, so the central decides them.
    Service,
}

fn default_domain() -> String {
    "default".into()
}
fn default_service_project() -> String {
    "service".into()
}
fn default_cache_seconds() -> f64 {
    300.0
}
fn default_offline_seconds() -> f64 {
    3600.0
}
fn default_negative_seconds() -> f64 {
    10.0
}
fn default_capacity() -> u64 {
    100_000
}
fn default_timeout() -> f64 {
    5.0
}
fn default_retry() -> f64 {
    5.0
}

/// The `[keystone]` table of the edge's configuration.
///
/// ```
/// let cfg: glance_proto::keystone::KeystoneConfig = toml::from_str(r#"
///     auth_url = "http://keystone.example:5000/v3"
///     username = "stackfed-edge"
///     password_file = "/etc/stackfed/edge-password"
/// "#).unwrap();
/// assert_eq!(cfg.project_name, None); // "service"
/// assert!(cfg.check().is_ok());
/// assert_eq!(cfg.cache_seconds, 300.0);
/// // Or an application credential of that user; secrets as the proxy spells them too:
/// let cfg: glance_proto::keystone::KeystoneConfig = toml::from_str(r#"
///     auth_url = "http://keystone.example:5000/v3"
///     application_credential_id = "2a2ac1c4d7e94a4f8d8c9a1c5c8b0f00"
///     application_credential_secret = { file = "/etc/stackfed/edge-app-cred" }
/// "#).unwrap();
/// assert!(cfg.check().is_ok());
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KeystoneConfig {
    /// Keystone's identity endpoint (`http://host:5000/v3`; `/v3` is added when missing):
    /// the central site's, or a Keystone at the edge site that serves the same users.
    pub auth_url: Url,
    /// The edge's service user (needs the `service` role to validate tokens; also
    /// `user`, as the proxy spells it), or the owner of an application credential given
    /// by name.
    #[serde(default, alias = "user")]
    pub username: Option<String>,
    /// Its password: inline, `{ file = "…" }` or `{ env = "…" }` (as the proxy's).
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file holding its password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding its password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The service user's domain id.
    #[serde(default = "default_domain")]
    pub user_domain_id: String,
    /// The project the service token is scoped to (also `project`; default `service`;
    /// not with an application credential, whose project is its own).
    #[serde(default, alias = "project")]
    pub project_name: Option<String>,
    /// That project's domain id.
    #[serde(default = "default_domain")]
    pub project_domain_id: String,
    /// An application credential's id (instead of a password; its project is the one it
    /// was created in).
    #[serde(default)]
    pub application_credential_id: Option<String>,
    /// An application credential's name (with `username`; instead of its id).
    #[serde(default)]
    pub application_credential_name: Option<String>,
    /// The application credential's secret: inline, `{ file = "…" }` or `{ env = "…" }`.
    #[serde(default)]
    pub application_credential_secret: Option<Secret>,
    /// A validation is trusted this long, then checked with Keystone again (as
    /// `auth_token`'s `token_cache_time`): the longest a revoked token still works.
    #[serde(default = "default_cache_seconds")]
    pub cache_seconds: f64,
    /// While Keystone is unreachable, a token validated within this long keeps working
    /// (never past its own expiry).
    #[serde(default = "default_offline_seconds")]
    pub offline_seconds: f64,
    /// How long a token Keystone rejected is refused without asking again.
    #[serde(default = "default_negative_seconds")]
    pub negative_cache_seconds: f64,
    /// The most validations kept.
    #[serde(default = "default_capacity")]
    pub cache_capacity: u64,
    /// Seconds to connect to Keystone and for it to answer.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// After Keystone failed to answer, it is not asked again for this long: earlier
    /// validations are used at once, unknown tokens get a 401 at once (no request waits
    /// for a timeout again and again while the link is down).
    #[serde(default = "default_retry")]
    pub retry_seconds: f64,
    /// Where clients are told to authenticate (`WWW-Authenticate` of a 401); default
    /// `auth_url`.
    #[serde(default)]
    pub www_authenticate_uri: Option<Url>,
    /// How the edge identifies itself to the central.
    #[serde(default)]
    pub central_auth: CentralAuth,
}

impl std::fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &self.auth_url.as_str())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .field("application_credential_id", &self.application_credential_id)
            .field(
                "application_credential_name",
                &self.application_credential_name,
            )
            .field(
                "application_credential_secret",
                &self.application_credential_secret,
            )
            .field("project_name", &self.project_name)
            .field("cache_seconds", &self.cache_seconds)
            .field("offline_seconds", &self.offline_seconds)
            .field("central_auth", &self.central_auth)
            .finish_non_exhaustive()
    }
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("keystone.{name} must be a non-negative number of seconds"))
}

impl KeystoneConfig {
    /// Checks the values that do not need the outside world.
    pub fn check(&self) -> Result<(), String> {
        secs("cache_seconds", self.cache_seconds)?;
        secs("offline_seconds", self.offline_seconds)?;
        secs("negative_cache_seconds", self.negative_cache_seconds)?;
        secs("timeout_seconds", self.timeout_seconds)?;
        secs("retry_seconds", self.retry_seconds)?;
        self.credentials().map(|_| ())
    }

    /// The login these settings describe (secrets not read yet), checked as the
    /// proxy's are.
    pub fn credentials(&self) -> Result<Credentials, String> {
        let passwords = [
            self.password.clone(),
            self.password_file.clone().map(|file| Secret::File { file }),
            self.password_env.clone().map(|env| Secret::Env { env }),
        ];
        Credentials::from_settings(CredentialSettings {
            user: self.username.clone(),
            user_domain_id: self.user_domain_id.clone(),
            passwords: passwords.into_iter().flatten().collect(),
            project: self.project_name.clone(),
            default_project: Some(default_service_project()),
            project_domain_id: self.project_domain_id.clone(),
            application_credential_id: self.application_credential_id.clone(),
            application_credential_name: self.application_credential_name.clone(),
            application_credential_secret: self.application_credential_secret.clone(),
        })
        .map_err(|e| format!("keystone: {e}"))
    }

    /// A validator for this configuration (reads the password now), trusting the
    /// system's CAs for an https Keystone.
    pub fn build(&self) -> Result<KeystoneAuth, String> {
        self.build_with_ca_file(None)
    }

    /// A validator for this configuration that also trusts the CA certificates of a
    /// PEM file (the edge's `ca_file`: a private CA that signed Keystone's certificate).
    pub fn build_with_ca_file(
        &self,
        ca_file: Option<&std::path::Path>,
    ) -> Result<KeystoneAuth, String> {
        let credentials = self.credentials()?;
        let timeout = secs("timeout_seconds", self.timeout_seconds)?;
        let http = HttpClient::with_ca_file(
            Timeouts {
                connect: timeout,
                response: timeout,
                idle: timeout,
            },
            ca_file,
        )
        .map_err(|e| format!("keystone: {e}"))?;
        let source = TokenSource::new(&self.auth_url, &credentials, http.clone())
            .map_err(|e| format!("keystone: {e}"))?
            .with_identity("edge")
            .with_renew_margin(RENEW_MARGIN);
        let tokens_url = source.tokens_url().clone();
        let www = self.www_authenticate_uri.as_ref().map_or_else(
            || {
                let t = tokens_url.to_string();
                t.trim_end_matches("/auth/tokens").to_owned()
            },
            |u| u.as_str().trim_end_matches('/').to_owned(),
        );
        let www_authenticate = HeaderValue::from_str(&format!("Keystone uri=\"{www}\""))
            .map_err(|_| "keystone.www_authenticate_uri is not a valid header value")?;
        let cache_for = secs("cache_seconds", self.cache_seconds)?;
        let offline_for = secs("offline_seconds", self.offline_seconds)?;
        let negative_for = secs("negative_cache_seconds", self.negative_cache_seconds)?;
        let retry_after = secs("retry_seconds", self.retry_seconds)?;
        let cache = Cache::builder()
            .max_capacity(self.cache_capacity)
            .expire_after(Lifetime {
                keep_valid: cache_for.max(offline_for),
                keep_rejected: negative_for,
            })
            .build();
        Ok(KeystoneAuth {
            inner: Arc::new(Inner {
                http,
                tokens_url,
                www_authenticate,
                source,
                cache,
                cache_for,
                offline_for,
                retry_after,
                unreachable_since: std::sync::Mutex::new(None),
                central_auth: self.central_auth,
            }),
        })
    }
}

/// Who a token belongs to, as Keystone validated it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The user's id.
    pub user_id: String,
    /// The project the token is scoped to (none for an unscoped or domain token).
    pub project_id: Option<String>,
    /// The role names in that scope.
    pub roles: Vec<String>,
    /// When the token expires.
    pub expires_at: SystemTime,
}

impl TokenInfo {
    fn expired(&self) -> bool {
        SystemTime::now() >= self.expires_at
    }

    /// Whether the roles make the caller an admin (Glance's `context_is_admin`:
    /// `role:admin`).
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case("admin"))
    }

    /// Whether Glance's secure-RBAC defaults let the caller read images at all: an admin,
    /// or a `reader` (which Keystone's implied roles give every `member`) of a project.
    /// An unscoped token, or one with only other roles, may not (Glance: 403 on the
    /// list, 404 for an image).
    pub fn may_read(&self) -> bool {
        self.is_admin()
            || (self.project_id.is_some()
                && self
                    .roles
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case("reader") || r.eq_ignore_ascii_case("member")))
    }
}

/// Why a token was not accepted. [`is_temporary`](Self::is_temporary) says whether
/// asking again later may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no token.
    #[error("the request carries no token")]
    Missing,
    /// Keystone says the token is invalid, expired or revoked (or it is known expired).
    #[error("the token is invalid or expired")]
    Invalid,
    /// Keystone could not be asked (unreachable, slow, failing, or an unreadable answer);
    /// the token is not known from before.
    #[error("Keystone could not validate the token: {source}")]
    Unavailable {
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Keystone refused the edge's own service user (credentials or roles): a
    /// configuration fault of the edge's.
    #[error("Keystone refused the edge's service user: {0}")]
    Service(String),
}

impl AuthError {
    /// Whether asking again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable { source: e.into() }
    }

    /// The edge's own login failed: Keystone down or failing (a retry may help), or the
    /// service credentials refused or unusable (the edge's configuration).
    fn login(e: KeystoneError) -> Self {
        if e.is_temporary() {
            Self::unavailable(e)
        } else {
            Self::Service(e.to_string())
        }
    }
}

/// A cached validation.
#[derive(Debug, Clone)]
enum Entry {
    Valid {
        info: Arc<TokenInfo>,
        checked: Instant,
    },
    Rejected,
}

/// How long an entry lives: a validation until the token expires but no longer than it
/// can be used (online or offline); a rejection briefly.
struct Lifetime {
    keep_valid: Duration,
    keep_rejected: Duration,
}

impl Lifetime {
    fn of(&self, e: &Entry) -> Duration {
        match e {
            Entry::Valid { info, .. } => info
                .expires_at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(self.keep_valid),
            Entry::Rejected => self.keep_rejected,
        }
    }
}

impl moka::Expiry<[u8; 32], Entry> for Lifetime {
    fn expire_after_create(&self, _: &[u8; 32], e: &Entry, _: Instant) -> Option<Duration> {
        Some(self.of(e))
    }

    fn expire_after_update(
        &self,
        _: &[u8; 32],
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(e))
    }
}

/// The token validator (see the [module docs](self)). Cheap to clone: clones share the
/// cache, the service token and the connection pool.
#[derive(Debug, Clone)]
pub struct KeystoneAuth {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    tokens_url: http::Uri,
    www_authenticate: HeaderValue,
    /// The edge's own service token.
    source: TokenSource,
    cache: Cache<[u8; 32], Entry>,
    cache_for: Duration,
    offline_for: Duration,
    retry_after: Duration,
    /// When Keystone last failed to answer (cleared by an answer).
    unreachable_since: std::sync::Mutex<Option<Instant>>,
    central_auth: CentralAuth,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneAuth")
            .field("tokens_url", &self.tokens_url)
            .field("cached", &self.cache.entry_count())
            .field("central_auth", &self.central_auth)
            .finish_non_exhaustive()
    }
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl KeystoneAuth {
    /// How the edge identifies itself to the central.
    pub fn central_auth(&self) -> CentralAuth {
        self.inner.central_auth
    }

    /// Validates a token: from the cache while its validation is recent, else by asking
    /// Keystone; while Keystone is unreachable, from an earlier validation within
    /// `offline_seconds`.
    pub async fn validate(&self, token: &str) -> Result<Arc<TokenInfo>, AuthError> {
        let i = &self.inner;
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let key = key(token);
        let cached = i.cache.get(&key).await;
        match &cached {
            Some(Entry::Rejected) => return Err(AuthError::Invalid),
            Some(Entry::Valid { info, .. }) if info.expired() => {
                i.cache.invalidate(&key).await;
                return Err(AuthError::Invalid);
            }
            Some(Entry::Valid { info, checked }) if checked.elapsed() < i.cache_for => {
                return Ok(info.clone());
            }
            Some(_) => {}
            None => return self.first_validation(token, key).await,
        }
        let answer = self.ask_unless_unreachable(token).await;
        match answer {
            Ok(Some(info)) if info.expired() => Err(AuthError::Invalid),
            Ok(Some(info)) => {
                let info = Arc::new(info);
                i.cache
                    .insert(
                        key,
                        Entry::Valid {
                            info: info.clone(),
                            checked: Instant::now(),
                        },
                    )
                    .await;
                Ok(info)
            }
            Ok(None) => {
                // Never honoured again, online or offline: the rejection replaces any
                // earlier validation.
                i.cache.insert(key, Entry::Rejected).await;
                Err(AuthError::Invalid)
            }
            Err(e @ AuthError::Unavailable { .. }) => match cached {
                Some(Entry::Valid { info, checked }) if checked.elapsed() < i.offline_for => {
                    tracing::debug!(error = %e, "Keystone unreachable: an earlier validation stands");
                    Ok(info)
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// A token not seen before: one request to Keystone however many callers bring it at
    /// once (moka's `try_get_with` runs one lookup per key; the others wait for it and
    /// share its outcome, a failure too).
    async fn first_validation(
        &self,
        token: &str,
        key: [u8; 32],
    ) -> Result<Arc<TokenInfo>, AuthError> {
        let entry = self
            .inner
            .cache
            .try_get_with(key, async {
                match self.ask_unless_unreachable(token).await? {
                    Some(info) if info.expired() => Err(AuthError::Invalid),
                    Some(info) => Ok(Entry::Valid {
                        info: Arc::new(info),
                        checked: Instant::now(),
                    }),
                    // Never honoured, online or offline.
                    None => Ok(Entry::Rejected),
                }
            })
            .await;
        match entry {
            Ok(Entry::Valid { info, .. }) if !info.expired() => Ok(info),
            Ok(_) => Err(AuthError::Invalid),
            Err(shared) => Err(match &*shared {
                AuthError::Missing => AuthError::Missing,
                AuthError::Invalid => AuthError::Invalid,
                AuthError::Service(m) => AuthError::Service(m.clone()),
                AuthError::Unavailable { source } => AuthError::unavailable(source.to_string()),
            }),
        }
    }

    /// Asks Keystone about a token, unless it failed to answer within `retry_seconds`;
    /// notes whether it answered.
    async fn ask_unless_unreachable(&self, token: &str) -> Result<Option<TokenInfo>, AuthError> {
        let answer = match self.recently_unreachable() {
            Some(since) => Err(AuthError::unavailable(format!(
                "Keystone did not answer {:.0?} ago; asking again after {:?}",
                since.elapsed(),
                self.inner.retry_after
            ))),
            None => self.ask(token).await,
        };
        self.note_reachability(&answer);
        answer
    }

    /// When Keystone failed to answer, if that was less than `retry_seconds` ago.
    fn recently_unreachable(&self) -> Option<Instant> {
        let since = self
            .inner
            .unreachable_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        since.filter(|s| s.elapsed() < self.inner.retry_after)
    }

    fn note_reachability<T>(&self, answer: &Result<T, AuthError>) {
        let mut since = self
            .inner
            .unreachable_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match answer {
            Err(AuthError::Unavailable { .. }) => {
                if since.is_none_or(|s| s.elapsed() >= self.inner.retry_after) {
                    tracing::warn!("Keystone is unreachable: earlier validations stand in");
                    *since = Some(Instant::now());
                }
            }
            _ => *since = None,
        }
    }

    /// The caller of a request: its token validated, its project and roles from the
    /// validation, and the identity that goes on to the central.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<RequestContext, GlanceError> {
        let mut sent = headers.get_all("x-auth-token").iter();
        let token = sent
            .next()
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or("");
        if sent.next().is_some() {
            // Glance's WSGI server joins repeated headers into one value ("a, b"), which
            // Keystone rejects: never honour the first of several tokens.
            return Err(self.refusal(&AuthError::Invalid));
        }
        let info = self.validate(token).await.map_err(|e| self.refusal(&e))?;
        let mut ctx = RequestContext {
            project_id: info.project_id.clone(),
            is_admin: info.is_admin(),
            may_not_read: !info.may_read(),
            ..RequestContext::default()
        };
        match self.inner.central_auth {
            CentralAuth::Forward => {
                ctx.identity_headers
                    .push(("x-auth-token".into(), token.to_owned()));
            }
            CentralAuth::Service => {
                let service = self
                    .service_identity()
                    .await
                    .map_err(|e| self.refusal(&AuthError::login(e)))?;
                let service = service.value.to_str().unwrap_or_default().to_owned();
                ctx.identity_headers.push(("x-auth-token".into(), service));
                ctx.enforce_locally = true;
            }
        }
        Ok(ctx)
    }

    /// The edge's service token for a request to the central. While Keystone is
    /// unreachable, the current token stands even when it is due for renewal (renewal
    /// comes well before it expires), without a login attempt per request: offline, a
    /// caller validated before is served as in forward mode instead of waiting for a
    /// login that cannot succeed.
    async fn service_identity(&self) -> Result<Token, KeystoneError> {
        if self.recently_unreachable().is_some() {
            if let Some(token) = self.inner.source.current() {
                return Ok(token);
            }
        }
        self.inner.source.token().await
    }

    /// The answer to a token that was not accepted: 401 as Glance behind `auth_token`
    /// gives it, also when Keystone could not be asked (Glance runs `auth_token` with
    /// `delay_auth_decision = true`: a token it cannot check is invalid); 503 when the
    /// edge's own service user cannot log in.
    pub fn refusal(&self, e: &AuthError) -> GlanceError {
        match e {
            AuthError::Missing | AuthError::Invalid => {
                tracing::info!(error = %e, "token refused");
                unauthorized(self.inner.www_authenticate.clone())
            }
            AuthError::Unavailable { .. } => {
                tracing::info!(error = %e, "token refused: Keystone cannot check it");
                unauthorized(self.inner.www_authenticate.clone())
            }
            AuthError::Service(_) => {
                tracing::error!(error = %e, "cannot validate a token");
                GlanceError::unavailable("The Keystone service is temporarily unavailable.")
            }
        }
    }

    /// Asks Keystone about a token: `Some` when valid, `None` when Keystone rejects it.
    async fn ask(&self, token: &str) -> Result<Option<TokenInfo>, AuthError> {
        let i = &self.inner;
        let Ok(subject) = HeaderValue::from_str(token) else {
            return Ok(None);
        };
        let mut refused: Option<HeaderValue> = None;
        for attempt in 0..2 {
            let service = match &refused {
                None => i.source.token().await,
                Some(r) => i.source.renew(r).await,
            }
            .map_err(AuthError::login)?
            .value;
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(&i.tokens_url)
                .header("x-auth-token", service.clone())
                .header("x-subject-token", subject.clone())
                .header(header::ACCEPT, "application/json")
                .body(crate::body::empty())
                .map_err(AuthError::unavailable)?;
            req.headers_mut().remove(header::HOST);
            let (parts, body) = i
                .http
                .send_collect(req, MAX_ANSWER)
                .await
                .map_err(keystone_unreachable)?;
            match parts.status {
                StatusCode::OK => return token_info(&body).map(Some),
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    tracing::info!("Keystone refused the service token: logging in again");
                    refused = Some(service);
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(AuthError::Service(format!(
                        "token validation answered {}",
                        parts.status
                    )))
                }
                s if s.is_server_error() => {
                    return Err(AuthError::unavailable(format!(
                        "token validation answered {s}"
                    )))
                }
                // A malformed subject token (400 and the like): not a valid token.
                _ => return Ok(None),
            }
        }
        Err(AuthError::Service(
            "the renewed service token was refused".into(),
        ))
    }
}

fn keystone_unreachable(e: ClientError) -> AuthError {
    AuthError::unavailable(e)
}

/// The 401 Glance answers behind `auth_token` (taken from Glance 33 with
/// keystonemiddleware 13): webob's own page, negotiated by `Accept` like every Glance
/// error, and `WWW-Authenticate: Keystone uri="…"`.
pub fn unauthorized(www_authenticate: HeaderValue) -> GlanceError {
    GlanceError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED)
        .with_header(header::WWW_AUTHENTICATE, www_authenticate)
}

/// The message of that 401.
pub const UNAUTHORIZED: &str = "This server could not verify that you are authorized to access the document you requested. Either you supplied the wrong credentials (e.g., bad password), or your browser does not understand how to supply the credentials required.";

/// The token of a validation or login answer (`{"token": {…}}`).
fn token_info(body: &[u8]) -> Result<TokenInfo, AuthError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| AuthError::unavailable(format!("Keystone's answer is not JSON: {e}")))?;
    let t = &doc["token"];
    let user_id = t["user"]["id"]
        .as_str()
        .ok_or_else(|| AuthError::unavailable("Keystone's token has no user id"))?
        .to_owned();
    let expires_at = t["expires_at"]
        .as_str()
        .and_then(parse_time)
        .ok_or_else(|| AuthError::unavailable("Keystone's token has no readable expires_at"))?;
    Ok(TokenInfo {
        user_id,
        project_id: t["project"]["id"].as_str().map(str::to_owned),
        roles: t["roles"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        expires_at,
    })
}
