//! The one Keystone v3 login both servers use for their own identity: the federation
//! proxy's project-scoped token (its Swift-backed registry and other work of its own) and
//! the edge's service token (to validate callers' tokens).
//!
//! - [`Secret`]: a password or application-credential secret given inline, in a file or
//!   in an environment variable; its `Debug` never shows the value.
//! - [`Credentials`]: a password login (user and domain, scoped to a project and
//!   domain) or an application credential (by id, or by name and user).
//! - [`TokenSource`]: logs in when a token is first needed, renews it before it expires
//!   (at `renew_margin` before, or half-way for short-lived tokens) and once when a peer
//!   refuses it ([`TokenSource::renew`] with the refused token); renewal is single-flight:
//!   concurrent callers wait for one login, and share its failure rather than each
//!   trying again in turn.
//! - [`Lease`]: that single-flight renewal for any expiring credential (the proxy's
//!   tempauth tokens use it too).
//! - [`KeystoneError`]: where a failure lies ([`Origin`]) and whether a retry helps.
//!
//! A login that cannot succeed by being tried again (Keystone refused the credentials,
//! or answered something unusable) is not tried again before a back-off period
//! ([`LOGIN_BACKOFF`], doubling after each further such failure up to
//! [`LOGIN_BACKOFF_CAP`]); meanwhile callers get that failure at once. A failure is
//! logged when it differs from the previous one (a repeat goes to `debug`), so a wrong
//! password neither hammers Keystone (which may lock the user out) nor floods the log.
//!
//! Each login attempt is counted in `stackfed_keystone_logins_total{identity, outcome}`
//! (not the calls answered from the back-off).
//!
//! ```
//! use stackfed_http::keystone::{Credentials, Secret, TokenSource};
//! let creds = Credentials::Password {
//!     user: "stackfed".into(),
//!     user_domain_id: "default".into(),
//!     password: Secret::Env { env: "STACKFED_KEYSTONE_PASSWORD".into() },
//!     project: "service".into(),
//!     project_domain_id: "default".into(),
//! };
//! // Secrets are read when the source is built: a missing variable is an error naming it.
//! let url = "http://keystone.example:5000".parse().unwrap();
//! let http = stackfed_http::HttpClient::new(Default::default());
//! # if std::env::var("STACKFED_KEYSTONE_PASSWORD").is_err() {
//! let err = TokenSource::new(&url, &creds, http).unwrap_err().to_string();
//! assert!(err.contains("STACKFED_KEYSTONE_PASSWORD"), "{err}");
//! # }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{json, Value};
use url::Url;

use crate::body::full;
use crate::client::{ClientError, HttpClient};

/// The largest token document read (a token with its catalog).
const MAX_TOKEN_BODY: usize = 4 * 1024 * 1024;

/// A secret in the configuration: given inline, read from a file (its content without the
/// trailing newline), or from an environment variable.
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
    /// The secret's value; an error names where it was looked for (never the value).
    pub fn resolve(&self) -> Result<String, KeystoneError> {
        let value = match self {
            Self::Inline(s) => s.clone(),
            Self::File { file } => std::fs::read_to_string(file)
                .map_err(|e| {
                    KeystoneError::Config(format!(
                        "cannot read secret file {}: {e}",
                        file.display()
                    ))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            Self::Env { env } => std::env::var(env).map_err(|_| {
                KeystoneError::Config(format!("environment variable {env} is not set"))
            })?,
        };
        if value.is_empty() {
            return Err(KeystoneError::Config(format!("{self:?} is empty")));
        }
        Ok(value)
    }
}

/// How a service logs in to Keystone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// A user's password, the token scoped to a project.
    Password {
        /// The user's name.
        user: String,
        /// The user's domain id.
        user_domain_id: String,
        /// The password.
        password: Secret,
        /// The project's name.
        project: String,
        /// The project's domain id.
        project_domain_id: String,
    },
    /// An application credential (its project is the one it was created in).
    ApplicationCredential {
        /// Its id; or
        id: Option<String>,
        /// its name, with the user who owns it:
        name: Option<String>,
        /// the owner's name,
        user: Option<String>,
        /// and the owner's domain id.
        user_domain_id: String,
        /// Its secret.
        secret: Secret,
    },
}

/// The credential keys of a service's configuration, as both servers read them (the
/// proxy's `auth` table, the edge's `[keystone]`): [`Credentials::from_settings`] makes
/// the login they describe, with the same checks and messages for both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialSettings {
    /// `user` (or `username`): the password login's user, or an application
    /// credential's owner when it is given by name.
    pub user: Option<String>,
    /// `user_domain_id`.
    pub user_domain_id: String,
    /// Every password key given (`password`; the edge's `password_file`,
    /// `password_env`): at most one may be.
    pub passwords: Vec<Secret>,
    /// `project` (or `project_name`), when given.
    pub project: Option<String>,
    /// The project of a password login when none is given (`None`: one must be).
    pub default_project: Option<String>,
    /// `project_domain_id`.
    pub project_domain_id: String,
    /// `application_credential_id`.
    pub application_credential_id: Option<String>,
    /// `application_credential_name`.
    pub application_credential_name: Option<String>,
    /// `application_credential_secret`.
    pub application_credential_secret: Option<Secret>,
}

impl Credentials {
    /// The login `settings` describe: a password login (user, one password, a project),
    /// or an application credential (its id, or its name with its user, and its secret;
    /// no password nor project then). Secrets are not read yet. The error says which
    /// keys to give (its origin is [`Origin::Internal`]).
    pub fn from_settings(settings: CredentialSettings) -> Result<Self, KeystoneError> {
        const EITHER: &str = "give either user, password and project, or an application \
                              credential (application_credential_id, or \
                              application_credential_name with user, and \
                              application_credential_secret)";
        let s = settings;
        let mut passwords = s.passwords.into_iter();
        let (password, more) = (passwords.next(), passwords.next().is_some());
        if more {
            return Err(KeystoneError::Config(
                "give one password: password, password_file or password_env".into(),
            ));
        }
        if s.application_credential_id.is_some() || s.application_credential_name.is_some() {
            if password.is_some() || s.project.is_some() {
                return Err(KeystoneError::Config(format!("{EITHER}, not both")));
            }
            let secret = s.application_credential_secret.ok_or_else(|| {
                KeystoneError::Config("application_credential_secret is missing".into())
            })?;
            if s.application_credential_name.is_some() && s.user.is_none() {
                return Err(KeystoneError::Config(
                    "application_credential_name needs user (the credential's owner)".into(),
                ));
            }
            return Ok(Self::ApplicationCredential {
                id: s.application_credential_id,
                name: s.application_credential_name,
                user: s.user,
                user_domain_id: s.user_domain_id,
                secret,
            });
        }
        let (Some(user), Some(password)) = (s.user, password) else {
            return Err(KeystoneError::Config(EITHER.into()));
        };
        let project = s.project.or(s.default_project).ok_or_else(|| {
            KeystoneError::Config("project is missing (the token is project-scoped)".into())
        })?;
        Ok(Self::Password {
            user,
            user_domain_id: s.user_domain_id,
            password,
            project,
            project_domain_id: s.project_domain_id,
        })
    }

    /// The `POST /v3/auth/tokens` document, with the secret read now.
    pub fn auth_body(&self) -> Result<Value, KeystoneError> {
        Ok(match self {
            Self::Password {
                user,
                user_domain_id,
                password,
                project,
                project_domain_id,
            } => json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": {"id": user_domain_id},
                    "password": password.resolve()?}}},
                "scope": {"project": {"name": project, "domain": {"id": project_domain_id}}}}}),
            Self::ApplicationCredential {
                id,
                name,
                user,
                user_domain_id,
                secret,
            } => {
                let credential = match (id, name, user) {
                    (Some(id), None, _) => json!({"id": id, "secret": secret.resolve()?}),
                    (None, Some(name), Some(user)) => json!({
                        "name": name, "secret": secret.resolve()?,
                        "user": {"name": user, "domain": {"id": user_domain_id}}}),
                    _ => {
                        return Err(KeystoneError::Config(
                            "an application credential needs its id, or its name and its \
                             user's name"
                                .into(),
                        ))
                    }
                };
                json!({"auth": {"identity": {
                    "methods": ["application_credential"],
                    "application_credential": credential}}})
            }
        })
    }
}

/// Where a failure lies (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// Keystone: down, slow, failing or answering nonsense.
    Upstream,
    /// Our credentials: Keystone refused them (wrong, disabled, revoked, expired).
    Client,
    /// Our configuration (a secret that cannot be read, an unusable URL).
    Internal,
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoneError {
    /// Keystone could not be reached, broke off, or did not answer in time.
    #[error("Keystone is unreachable: {0}")]
    Unreachable(#[source] Arc<ClientError>),
    /// Keystone refused the credentials (4xx).
    #[error("Keystone refused the credentials ({status}){detail}")]
    Refused {
        /// Its answer.
        status: StatusCode,
        /// Keystone's message, when it gave one (`": …"`).
        detail: String,
    },
    /// Keystone failed (5xx).
    #[error("Keystone answered {0} to a login")]
    Failed(StatusCode),
    /// Keystone's answer could not be used.
    #[error("Keystone's answer is unusable: {0}")]
    BadAnswer(String),
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
}

impl KeystoneError {
    /// Where the failure lies.
    pub fn origin(&self) -> Origin {
        match self {
            Self::Unreachable(_) | Self::Failed(_) | Self::BadAnswer(_) => Origin::Upstream,
            Self::Refused { .. } => Origin::Client,
            Self::Config(_) => Origin::Internal,
        }
    }

    /// Whether trying again later may succeed without changing anything here.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Unreachable(e) => e.is_temporary(),
            Self::Failed(_) => true,
            Self::Refused { .. } | Self::BadAnswer(_) | Self::Config(_) => false,
        }
    }
}

/// Keystone's UTC timestamps (`2026-11-30T15:35:49.000000Z`; fraction and zone optional).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s.strip_suffix("+00:00").unwrap_or(s);
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok()
}

/// `…/v3/auth/tokens` of Keystone at `auth_url` (`/v3` added when missing).
pub fn tokens_url(auth_url: &Url) -> Result<Uri, KeystoneError> {
    let mut base = auth_url.as_str().trim_end_matches('/').to_owned();
    if !base.ends_with("/v3") {
        base.push_str("/v3");
    }
    format!("{base}/auth/tokens")
        .parse()
        .map_err(|_| KeystoneError::Config(format!("auth_url {auth_url} is not usable")))
}

/// A credential that expires and is renewed before: what a [`Lease`] holds.
pub trait Expiring: Clone {
    /// The value peers see (a token), to recognise the one they refused.
    fn value(&self) -> &HeaderValue;
    /// From then on, a new one is obtained (the old one still serves if that fails).
    fn renew_at(&self) -> Instant;
    /// From then on, it is never used.
    fn expires(&self) -> Instant;
}

struct LeaseState<T, E> {
    current: Option<T>,
    /// Logins finished (successful or not).
    attempts: u64,
    /// The last login's failure, if it failed.
    failed: Option<E>,
}

/// One renewable credential, renewed single-flight: callers that find it due wait for
/// one login, and those that waited during a login take its outcome (its token, or its
/// failure) instead of trying again one after the other.
pub struct Lease<T, E> {
    state: Mutex<LeaseState<T, E>>,
    flight: tokio::sync::Mutex<()>,
}

impl<T, E> std::fmt::Debug for Lease<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("held", &self.lock().current.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, E> Default for Lease<T, E> {
    fn default() -> Self {
        Self::new(None)
    }
}

impl<T, E> Lease<T, E> {
    /// A lease holding `current` (obtained before), or nothing yet.
    pub fn new(current: Option<T>) -> Self {
        Self {
            state: Mutex::new(LeaseState {
                current,
                attempts: 0,
                failed: None,
            }),
            flight: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState<T, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: Expiring, E: Clone> Lease<T, E> {
    /// The credential held, if any, even when due for renewal.
    pub fn current(&self) -> Option<T> {
        self.lock().current.clone()
    }

    /// Drops the credential if it is still `refused` (a peer refused it and the request
    /// cannot be replayed): the next caller logs in again.
    pub fn forget(&self, refused: &HeaderValue) {
        let mut s = self.lock();
        if s.current.as_ref().map(Expiring::value) == Some(refused) {
            s.current = None;
        }
    }

    /// The credential, after `login` when there is none, it is due for renewal, or it is
    /// `refused` (a peer answered 401 to it; a credential renewed since is not refused).
    /// When a renewal fails, a held credential that has not expired (and is not
    /// `refused`) still serves.
    pub async fn get<F, Fut>(&self, refused: Option<&HeaderValue>, login: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let not_refused = |t: &T| Some(t.value()) != refused;
        let due = |t: &T| Instant::now() >= t.renew_at();
        let seen = {
            let s = self.lock();
            if let Some(t) = s.current.as_ref().filter(|t| not_refused(t) && !due(t)) {
                return Ok(t.clone());
            }
            s.attempts
        };
        let _flight = self.flight.lock().await;
        {
            let s = self.lock();
            if let Some(t) = s.current.as_ref().filter(|t| not_refused(t) && !due(t)) {
                return Ok(t.clone());
            }
            if s.attempts != seen {
                if let Some(e) = &s.failed {
                    return Self::fallback(&s, refused).ok_or_else(|| e.clone());
                }
            }
        }
        let outcome = login().await;
        let mut s = self.lock();
        s.attempts += 1;
        match outcome {
            Ok(t) => {
                s.current = Some(t.clone());
                s.failed = None;
                Ok(t)
            }
            Err(e) => {
                s.failed = Some(e.clone());
                Self::fallback(&s, refused).ok_or(e)
            }
        }
    }

    /// A held credential that may still be used while it cannot be renewed.
    fn fallback(s: &LeaseState<T, E>, refused: Option<&HeaderValue>) -> Option<T> {
        s.current
            .as_ref()
            .filter(|t| Some(t.value()) != refused && Instant::now() < t.expires())
            .cloned()
    }
}

/// A token [`TokenSource`] obtained.
#[derive(Clone)]
#[non_exhaustive]
pub struct Token {
    /// The token (`X-Auth-Token`), marked sensitive.
    pub value: HeaderValue,
    /// Its project's id, when scoped to a project.
    pub project_id: Option<String>,
    /// Its user's id.
    pub user_id: Option<String>,
    /// When Keystone says it expires.
    pub expires_at: SystemTime,
    /// The same, on the monotonic clock.
    pub expires: Instant,
    /// When it is renewed.
    pub renew_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("project_id", &self.project_id)
            .field(
                "expires_at",
                &humantime::format_rfc3339_seconds(self.expires_at),
            )
            .finish_non_exhaustive()
    }
}

impl Expiring for Token {
    fn value(&self) -> &HeaderValue {
        &self.value
    }
    fn renew_at(&self) -> Instant {
        self.renew_at
    }
    fn expires(&self) -> Instant {
        self.expires
    }
}

/// The default renewal margin ([`TokenSource::with_renew_margin`]).
pub const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// After a login failure that a retry cannot mend, no login for this long; doubled after
/// each further one ([`TokenSource::with_login_backoff`]).
pub const LOGIN_BACKOFF: Duration = Duration::from_secs(1);

/// The longest back-off between logins that keep failing.
pub const LOGIN_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The login attempts' recent history: the back-off and what was logged.
#[derive(Default)]
struct Attempts {
    /// No login before then (after a failure a retry cannot mend).
    not_before: Option<Instant>,
    /// The back-off that was waited last (zero: none).
    backoff: Duration,
    /// The failure that set `not_before`, answered meanwhile.
    refusal: Option<KeystoneError>,
    /// The last failure logged (its text), until a login succeeds.
    logged: Option<String>,
}

/// A service's own Keystone token: see the [module docs](self). Shared (in an `Arc` or
/// inside a cloned owner) by everything acting as that service.
pub struct TokenSource {
    tokens_url: Uri,
    /// The login document (holds the secret).
    body: Bytes,
    http: HttpClient,
    identity: String,
    renew_margin: Duration,
    lease: Lease<Token, KeystoneError>,
    logins: AtomicU64,
    backoff: (Duration, Duration),
    attempts: Mutex<Attempts>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("tokens_url", &self.tokens_url)
            .field("identity", &self.identity)
            .field("logins", &self.logins())
            .finish_non_exhaustive()
    }
}

/// The parts of a token document read here.
#[derive(Deserialize)]
struct TokenDocument {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    #[serde(default)]
    project: Option<IdOnly>,
    #[serde(default)]
    user: Option<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl TokenSource {
    /// Reads the credentials' secret and checks the URL; nothing is contacted until the
    /// first token is needed.
    pub fn new(
        auth_url: &Url,
        credentials: &Credentials,
        http: HttpClient,
    ) -> Result<Self, KeystoneError> {
        Ok(Self {
            tokens_url: tokens_url(auth_url)?,
            body: Bytes::from(credentials.auth_body()?.to_string()),
            http,
            identity: "service".into(),
            renew_margin: RENEW_MARGIN,
            lease: Lease::default(),
            logins: AtomicU64::new(0),
            backoff: (LOGIN_BACKOFF, LOGIN_BACKOFF_CAP),
            attempts: Mutex::new(Attempts::default()),
        })
    }

    /// After a login failure a retry cannot mend, waits `first` before the next login,
    /// twice as long after each further one, at most `cap` (defaults [`LOGIN_BACKOFF`],
    /// [`LOGIN_BACKOFF_CAP`]).
    #[must_use]
    pub fn with_login_backoff(mut self, first: Duration, cap: Duration) -> Self {
        self.backoff = (first, cap.max(first));
        self
    }

    /// Names this identity in logs and metrics (`proxy`, `edge`).
    #[must_use]
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }

    /// Renews tokens this long before they expire (half-way through a token's life when
    /// that is later; default [`RENEW_MARGIN`]).
    #[must_use]
    pub fn with_renew_margin(mut self, margin: Duration) -> Self {
        self.renew_margin = margin;
        self
    }

    /// `…/v3/auth/tokens`.
    pub fn tokens_url(&self) -> &Uri {
        &self.tokens_url
    }

    /// How many logins were tried so far (calls answered from the back-off not counted).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The current token, obtained or renewed first when there is none or it is due.
    pub async fn token(&self) -> Result<Token, KeystoneError> {
        self.lease.get(None, || self.login()).await
    }

    /// The token held, without a login: `None` when there is none or it has expired
    /// (one due for renewal is still returned).
    pub fn current(&self) -> Option<Token> {
        self.lease.current().filter(|t| Instant::now() < t.expires)
    }

    /// A token other than `refused` (a peer answered 401 to it): a new one, unless
    /// another caller renewed it already.
    pub async fn renew(&self, refused: &HeaderValue) -> Result<Token, KeystoneError> {
        self.lease.get(Some(refused), || self.login()).await
    }

    /// Drops `refused` if it is still the current token: the next caller logs in.
    pub fn forget(&self, refused: &HeaderValue) {
        self.lease.forget(refused);
    }

    fn attempts(&self) -> MutexGuard<'_, Attempts> {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `POST /v3/auth/tokens` with the credentials, unless a failure a retry cannot mend
    /// happened less than the back-off ago: then that failure, without asking.
    async fn login(&self) -> Result<Token, KeystoneError> {
        {
            let a = self.attempts();
            if let (Some(until), Some(e)) = (a.not_before, &a.refusal) {
                if Instant::now() < until {
                    return Err(e.clone());
                }
            }
        }
        self.logins.fetch_add(1, Ordering::Relaxed);
        let outcome = self.try_login().await;
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        metrics::counter!("stackfed_keystone_logins_total",
            "identity" => self.identity.clone(), "outcome" => label)
        .increment(1);
        let mut a = self.attempts();
        match &outcome {
            Ok(t) => {
                *a = Attempts::default();
                tracing::info!(identity = %self.identity,
                    expires_in = ?t.expires.saturating_duration_since(Instant::now()),
                    "logged in to Keystone");
            }
            Err(e) => {
                let (first, cap) = self.backoff;
                let retry_in = if e.is_temporary() {
                    // Keystone down or failing: the next caller tries (single-flight).
                    Duration::ZERO
                } else if a.backoff.is_zero() {
                    first
                } else {
                    (a.backoff * 2).min(cap)
                };
                a.backoff = retry_in;
                a.not_before = Some(Instant::now() + retry_in).filter(|_| !retry_in.is_zero());
                a.refusal = Some(e.clone()).filter(|_| !retry_in.is_zero());
                let text = e.to_string();
                // A temporary failure is not backed off: say so rather than "0ns".
                let retry = if retry_in.is_zero() {
                    "with the next request".to_owned()
                } else {
                    format!("in {retry_in:?}")
                };
                if a.logged.as_deref() == Some(text.as_str()) {
                    tracing::debug!(identity = %self.identity, error = %e, %retry,
                        "Keystone login failed again");
                } else {
                    tracing::warn!(identity = %self.identity, error = %e,
                        temporary = e.is_temporary(), %retry, "Keystone login failed");
                    a.logged = Some(text);
                }
            }
        }
        outcome
    }

    async fn try_login(&self) -> Result<Token, KeystoneError> {
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
            .map_err(|e| KeystoneError::Unreachable(Arc::new(e)))?;
        match parts.status {
            StatusCode::CREATED | StatusCode::OK => {}
            s if s.is_server_error() => return Err(KeystoneError::Failed(s)),
            status => {
                // Keystone's `{"error": {"message": …}}` says why (never the secret).
                // Without it the server is probably not Keystone (an auth_url naming
                // Swift, Glance or a web server): say so, the operator's likely mistake.
                let detail = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(|m| format!(": {m}")))
                    .unwrap_or_else(|| {
                        format!(
                            ": the answer to POST {} is not Keystone's (no error document); \
                             is auth_url a Keystone endpoint?",
                            self.tokens_url
                        )
                    });
                return Err(KeystoneError::Refused { status, detail });
            }
        }
        let mut value = parts
            .headers
            .get("x-subject-token")
            .cloned()
            .ok_or_else(|| KeystoneError::BadAnswer("no X-Subject-Token".into()))?;
        value.set_sensitive(true);
        let doc: TokenDocument = serde_json::from_slice(&body)
            .map_err(|e| KeystoneError::BadAnswer(format!("the token document: {e}")))?;
        let expires_at = parse_time(&doc.token.expires_at).ok_or_else(|| {
            KeystoneError::BadAnswer(format!("expires_at {:?}", doc.token.expires_at))
        })?;
        let now = Instant::now();
        let life = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let renew_in = (life / 2).max(life.saturating_sub(self.renew_margin));
        Ok(Token {
            value,
            project_id: doc.token.project.map(|p| p.id),
            user_id: doc.token.user.map(|u| u.id),
            expires_at,
            expires: now + life,
            renew_at: now + renew_in,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_times() {
        let t = parse_time("2026-11-30T15:35:49.250000Z").unwrap();
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_796_052_949);
        assert_eq!(d.subsec_millis(), 250);
        assert_eq!(
            parse_time("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_time("2026-11-30T15:35:49+00:00"),
            parse_time("2026-11-30T15:35:49Z")
        );
        assert!(parse_time("2026-13-01T00:00:00Z").is_none());
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("2026-11-30T15:35").is_none());
    }

    #[test]
    fn tokens_url_adds_v3_once() {
        for u in [
            "http://k:5000",
            "http://k:5000/",
            "http://k:5000/v3",
            "http://k:5000/v3/",
        ] {
            let url: Url = u.parse().unwrap();
            assert_eq!(
                tokens_url(&url).unwrap().to_string(),
                "http://k:5000/v3/auth/tokens"
            );
        }
    }

    #[test]
    fn secrets_resolve_and_never_show() {
        let dir = std::env::temp_dir().join(format!("stackfed-ks-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        let secret = Secret::File { file: file.clone() };
        assert_eq!(secret.resolve().unwrap(), "hunter2");
        std::fs::write(&file, "").unwrap();
        assert!(secret.resolve().is_err(), "an empty secret is refused");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = secret.resolve().unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert_eq!(e.origin(), Origin::Internal);
        assert!(!e.is_temporary());
        let inline = Secret::Inline("s3cr3t".into());
        assert!(!format!("{inline:?}").contains("s3cr3t"));
        let creds = Credentials::ApplicationCredential {
            id: Some("ac".into()),
            name: None,
            user: None,
            user_domain_id: "default".into(),
            secret: inline,
        };
        assert!(!format!("{creds:?}").contains("s3cr3t"));
        let body = creds.auth_body().unwrap();
        assert_eq!(
            body["auth"]["identity"]["application_credential"]["secret"],
            "s3cr3t"
        );
    }
}
