//! The shared Keystone login against an in-process fake Keystone (the real one is
//! exercised by tests/interop: test_swift_keystone.py, test_glance_keystone.py):
//! expiry-driven renewal, 401-driven renewal exactly once, single flight under 50
//! concurrent callers (logins counted), a failed login shared rather than repeated, a
//! refused login backed off (doubling to a cap, counted and logged once), and the secret
//! never in `Debug` output, errors or logs.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use stackfed_http::keystone::{Credentials, KeystoneError, Origin, Secret, TokenSource};
use stackfed_http::{Body, HttpClient, Timeouts};

const SECRET: &str = "pa55-w0rd-never-shown";

#[derive(Debug, Default)]
struct State {
    /// Login requests received.
    logins: u32,
    /// How long tokens live.
    lifetime: Duration,
    /// How long a login takes.
    delay: Duration,
    /// Answer this to logins instead of a token.
    refuse: Option<StatusCode>,
    /// The last login document.
    last_body: serde_json::Value,
}

type Shared = Arc<Mutex<State>>;

async fn answer(state: Shared, req: Request<stackfed_http::RequestBody>) -> Response<Body> {
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let (n, delay, lifetime, refuse) = {
        let mut s = state.lock().unwrap();
        s.logins += 1;
        s.last_body = serde_json::from_slice(&body).unwrap_or_default();
        (s.logins, s.delay, s.lifetime, s.refuse)
    };
    tokio::time::sleep(delay).await;
    let mut r = Response::new(stackfed_http::full(String::new()));
    if let Some(status) = refuse {
        *r.status_mut() = status;
        *r.body_mut() = stackfed_http::full(
            r#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#,
        );
        return r;
    }
    let expires = humantime::format_rfc3339_micros(SystemTime::now() + lifetime).to_string();
    *r.status_mut() = StatusCode::CREATED;
    r.headers_mut()
        .insert("x-subject-token", format!("token-{n}").parse().unwrap());
    *r.body_mut() = stackfed_http::full(
        serde_json::json!({"token": {"expires_at": expires,
            "user": {"id": "u1"}, "project": {"id": "p1"}}})
        .to_string(),
    );
    r
}

async fn fake_keystone(lifetime: Duration) -> (url::Url, Shared) {
    let state: Shared = Arc::new(Mutex::new(State {
        lifetime,
        ..State::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = state.clone();
    let svc = tower::service_fn(move |req| {
        let s = s.clone();
        async move { Ok::<_, Infallible>(answer(s, req).await) }
    });
    tokio::spawn(stackfed_http::serve(
        listener,
        svc,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    (format!("http://{addr}/v3").parse().unwrap(), state)
}

fn password() -> Credentials {
    Credentials::Password {
        user: "stackfed".into(),
        user_domain_id: "default".into(),
        password: Secret::Inline(SECRET.into()),
        project: "service".into(),
        project_domain_id: "default".into(),
    }
}

fn source(url: &url::Url, margin: Duration) -> Arc<TokenSource> {
    let http = HttpClient::new(Timeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_secs(5),
        idle: Duration::from_secs(5),
    });
    Arc::new(
        TokenSource::new(url, &password(), http)
            .unwrap()
            .with_identity("test")
            .with_renew_margin(margin),
    )
}

#[tokio::test]
async fn renewed_before_expiry_not_on_every_call() {
    // A 2 s token with a 1.5 s margin: renewed half-way (1 s), as the margin would
    // leave it only 0.5 s of use.
    let (url, ks) = fake_keystone(Duration::from_secs(2)).await;
    let src = source(&url, Duration::from_millis(1500));
    let first = src.token().await.unwrap();
    assert_eq!(first.project_id.as_deref(), Some("p1"));
    for _ in 0..5 {
        assert_eq!(src.token().await.unwrap().value, first.value);
    }
    assert_eq!(ks.lock().unwrap().logins, 1, "one login while fresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = src.token().await.unwrap();
    assert_ne!(second.value, first.value, "renewed once due");
    assert_eq!(ks.lock().unwrap().logins, 2);
    assert_eq!(src.logins(), 2);
    // The login document: a project-scoped password login.
    let body = ks.lock().unwrap().last_body.clone();
    assert_eq!(body["auth"]["identity"]["methods"][0], "password");
    assert_eq!(body["auth"]["scope"]["project"]["name"], "service");
}

#[tokio::test]
async fn a_refused_token_is_renewed_exactly_once() {
    let (url, ks) = fake_keystone(Duration::from_secs(3600)).await;
    let src = source(&url, Duration::from_secs(60));
    let first = src.token().await.unwrap();
    // 50 requests meet a 401 with the first token at once: one login between them.
    let renewed: Vec<_> = futures::future::join_all((0..50).map(|_| {
        let src = src.clone();
        let refused = first.value.clone();
        async move { src.renew(&refused).await.unwrap().value }
    }))
    .await;
    assert!(renewed
        .iter()
        .all(|t| *t == renewed[0] && *t != first.value));
    assert_eq!(ks.lock().unwrap().logins, 2);
    // A late 401 for the old token does not log in again; one for the new token does.
    assert_eq!(src.renew(&first.value).await.unwrap().value, renewed[0]);
    assert_eq!(ks.lock().unwrap().logins, 2);
    let third = src.renew(&renewed[0]).await.unwrap();
    assert_ne!(third.value, renewed[0]);
    assert_eq!(ks.lock().unwrap().logins, 3);
    // forget: the next caller logs in.
    src.forget(&third.value);
    src.token().await.unwrap();
    assert_eq!(ks.lock().unwrap().logins, 4);
}

#[tokio::test]
async fn fifty_concurrent_first_callers_make_one_login() {
    let (url, ks) = fake_keystone(Duration::from_secs(3600)).await;
    ks.lock().unwrap().delay = Duration::from_millis(200);
    let src = source(&url, Duration::from_secs(60));
    let tokens: Vec<_> = futures::future::join_all((0..50).map(|_| {
        let src = src.clone();
        async move { src.token().await.unwrap().value }
    }))
    .await;
    assert!(tokens.iter().all(|t| *t == tokens[0]));
    assert_eq!(ks.lock().unwrap().logins, 1, "single flight");
}

#[tokio::test]
async fn a_failed_login_is_shared_by_those_who_waited_and_says_whose_fault() {
    let (url, ks) = fake_keystone(Duration::from_secs(3600)).await;
    {
        let mut s = ks.lock().unwrap();
        s.delay = Duration::from_millis(200);
        s.refuse = Some(StatusCode::UNAUTHORIZED);
    }
    let src = source(&url, Duration::from_secs(60));
    let started = std::time::Instant::now();
    let errors: Vec<KeystoneError> = futures::future::join_all((0..50).map(|_| {
        let src = src.clone();
        async move { src.token().await.unwrap_err() }
    }))
    .await;
    assert_eq!(
        ks.lock().unwrap().logins,
        1,
        "waiters take the failure, not a turn each"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for e in &errors {
        assert!(matches!(e, KeystoneError::Refused { status, .. } if *status == 401));
        assert_eq!(e.origin(), Origin::Client);
        assert!(!e.is_temporary());
        assert!(e.to_string().contains("requires authentication"), "{e}");
    }
    // Keystone failing: upstream, temporary. A later caller (past the back-off that
    // follows a refusal) tries again.
    ks.lock().unwrap().refuse = Some(StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(stackfed_http::keystone::LOGIN_BACKOFF).await;
    let e = src.token().await.unwrap_err();
    assert_eq!(e.origin(), Origin::Upstream);
    assert!(e.is_temporary());
    assert_eq!(ks.lock().unwrap().logins, 2);
    // Keystone gone: unreachable, temporary.
    let gone: url::Url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v3", l.local_addr().unwrap())
            .parse()
            .unwrap()
    };
    let e = source(&gone, Duration::from_secs(60))
        .token()
        .await
        .unwrap_err();
    assert!(matches!(e, KeystoneError::Unreachable(_)), "{e:?}");
    assert!(e.is_temporary());
}

#[tokio::test]
async fn a_held_token_serves_while_renewal_fails_until_it_expires() {
    let (url, ks) = fake_keystone(Duration::from_secs(2)).await;
    let src = source(&url, Duration::from_secs(60));
    let first = src.token().await.unwrap();
    ks.lock().unwrap().refuse = Some(StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Due (half-way) but not expired: the renewal fails, the old token still serves.
    assert_eq!(src.token().await.unwrap().value, first.value);
    // Refused by a peer: it is not offered again.
    assert!(src.renew(&first.value).await.is_err());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(src.token().await.is_err(), "expired: never used");
}

#[test]
fn application_credentials_by_id_or_by_name() {
    let secret = Secret::Inline(SECRET.into());
    let by_id = Credentials::ApplicationCredential {
        id: Some("ac-id".into()),
        name: None,
        user: None,
        user_domain_id: "default".into(),
        secret: secret.clone(),
    };
    let body = by_id.auth_body().unwrap();
    let ac = &body["auth"]["identity"]["application_credential"];
    assert_eq!(ac["id"], "ac-id");
    assert_eq!(ac["secret"], SECRET);
    assert!(
        body["auth"].get("scope").is_none(),
        "its project is its own"
    );
    let by_name = Credentials::ApplicationCredential {
        id: None,
        name: Some("backup".into()),
        user: Some("stackfed".into()),
        user_domain_id: "default".into(),
        secret: secret.clone(),
    };
    let body = by_name.auth_body().unwrap();
    let ac = &body["auth"]["identity"]["application_credential"];
    assert_eq!(ac["name"], "backup");
    assert_eq!(ac["user"]["name"], "stackfed");
    let neither = Credentials::ApplicationCredential {
        id: None,
        name: Some("backup".into()),
        user: None,
        user_domain_id: "default".into(),
        secret,
    };
    let e = neither.auth_body().unwrap_err();
    assert_eq!(e.origin(), Origin::Internal);
}

/// A tracing writer into a buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_secret_is_never_in_debug_output_errors_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut shown = String::new();
    rt.block_on(async {
        let (url, ks) = fake_keystone(Duration::from_secs(3600)).await;
        let src = source(&url, Duration::from_secs(60));
        let token = src.token().await.unwrap();
        shown += &format!("{src:?} {token:?} {:?} {:?}", password(), token.value);
        ks.lock().unwrap().refuse = Some(StatusCode::UNAUTHORIZED);
        let e = src.renew(&token.value).await.unwrap_err();
        shown += &format!("{e} {e:?}");
    });
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("logged in to Keystone"),
        "the logs were captured: {logs}"
    );
    assert!(logs.contains("Keystone login failed"), "{logs}");
    for text in [&shown, &logs] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("token-1"), "tokens neither: {text}");
    }
}

/// A `metrics` recorder that keeps counters by name and labels, for the login counts.
#[derive(Clone, Default)]
struct Counters(Arc<Mutex<Vec<(metrics::Key, Cell)>>>);

type Cell = Arc<std::sync::atomic::AtomicU64>;

struct CounterCell(Arc<std::sync::atomic::AtomicU64>);

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0
            .fetch_add(value, std::sync::atomic::Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, std::sync::atomic::Ordering::Relaxed);
    }
}

impl metrics::Recorder for Counters {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut all = self.0.lock().unwrap();
        let cell = match all.iter().find(|(k, _)| k == key) {
            Some((_, c)) => c.clone(),
            None => {
                let c = Arc::new(std::sync::atomic::AtomicU64::new(0));
                all.push((key.clone(), c.clone()));
                c
            }
        };
        metrics::Counter::from_arc(Arc::new(CounterCell(cell)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

impl Counters {
    /// `stackfed_keystone_logins_total{identity, outcome}`.
    fn logins(&self, identity: &str, outcome: &str) -> u64 {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(k, _)| k.name() == "stackfed_keystone_logins_total")
            .filter(|(k, _)| {
                let labels: Vec<_> = k.labels().map(|l| (l.key(), l.value())).collect();
                labels.contains(&("identity", identity)) && labels.contains(&("outcome", outcome))
            })
            .map(|(_, c)| c.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

/// Runs `test` on a current-thread runtime with this thread's metrics counted in the
/// [`Counters`] it is given and its log lines (INFO and up) captured: the log, as text.
fn observed<F>(test: impl FnOnce(Arc<Counters>) -> F) -> String
where
    F: std::future::Future<Output = ()>,
{
    let counters = Arc::new(Counters::default());
    let _recorder = metrics::set_default_local_recorder(&*counters);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test(counters.clone()));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    text
}

#[test]
fn a_refused_login_backs_off_instead_of_hammering_keystone() {
    // A wrong password and a caller asking every 20 ms for 1.5 s: Keystone sees the
    // first attempt and one after the first back-off period (1 s), not one per call.
    let logs = observed(|counters| async move {
        let (url, ks) = fake_keystone(Duration::from_secs(3600)).await;
        ks.lock().unwrap().refuse = Some(StatusCode::UNAUTHORIZED);
        let src = source(&url, Duration::from_secs(60));
        let started = std::time::Instant::now();
        let mut calls = 0;
        while started.elapsed() < Duration::from_millis(1500) {
            let e = src.token().await.unwrap_err();
            // Every caller still learns why, at once.
            assert!(
                matches!(e, KeystoneError::Refused { status, .. } if status == 401),
                "{e:?}"
            );
            calls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attempts = ks.lock().unwrap().logins;
        assert!(calls > 30, "{calls}");
        assert!(
            (1..=2).contains(&attempts),
            "{attempts} logins for {calls} calls"
        );
        assert_eq!(
            src.logins(),
            u64::from(attempts),
            "only real attempts are counted"
        );
        assert_eq!(counters.logins("test", "failed"), u64::from(attempts));
        assert_eq!(counters.logins("test", "ok"), 0);
    });
    assert_eq!(
        logs.matches("Keystone login failed").count(),
        1,
        "the same failure is logged once: {logs}"
    );
}

#[test]
fn the_back_off_doubles_to_its_cap_ends_with_a_login_and_spares_temporary_failures() {
    let logs = observed(|counters| async move {
        let (url, ks) = fake_keystone(Duration::from_secs(3600)).await;
        ks.lock().unwrap().refuse = Some(StatusCode::UNAUTHORIZED);
        let src = source(&url, Duration::from_secs(60));
        let src = Arc::new(
            Arc::into_inner(src)
                .unwrap()
                .with_login_backoff(Duration::from_millis(100), Duration::from_millis(400)),
        );
        // Asking every 10 ms for 1.3 s: attempts at about 0, 100, 300, 700 and 1100 ms.
        let started = std::time::Instant::now();
        let mut seen = 0;
        let mut at = Vec::new();
        while started.elapsed() < Duration::from_millis(1300) {
            assert!(src.token().await.is_err());
            let n = ks.lock().unwrap().logins;
            if n != seen {
                seen = n;
                at.push(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let gaps: Vec<_> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let expected = [100, 200, 400, 400];
        assert_eq!(gaps.len(), expected.len(), "attempts at {at:?}");
        for (gap, ms) in gaps.iter().zip(expected) {
            let ms = Duration::from_millis(ms);
            assert!(
                *gap >= ms && *gap < ms + Duration::from_millis(150),
                "{at:?}"
            );
        }
        assert_eq!(counters.logins("test", "failed"), 5);
        // The password is fixed in Keystone: the first call past the back-off logs in.
        ks.lock().unwrap().refuse = None;
        tokio::time::sleep(Duration::from_millis(450)).await;
        let token = src.token().await.unwrap();
        assert_eq!(counters.logins("test", "ok"), 1);
        // A success ends the back-off: the next refusal waits the first period again.
        ks.lock().unwrap().refuse = Some(StatusCode::UNAUTHORIZED);
        assert!(src.renew(&token.value).await.is_err());
        assert!(src.renew(&token.value).await.is_err());
        assert_eq!(
            ks.lock().unwrap().logins,
            7,
            "one attempt, then the back-off"
        );
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert!(src.renew(&token.value).await.is_err());
        assert_eq!(ks.lock().unwrap().logins, 8, "100 ms, not 400 ms");
        // Keystone failing (5xx) is temporary: no back-off, every renewal asks.
        tokio::time::sleep(Duration::from_millis(210)).await;
        ks.lock().unwrap().refuse = Some(StatusCode::SERVICE_UNAVAILABLE);
        for _ in 0..3 {
            let e = src.renew(&token.value).await.unwrap_err();
            assert!(e.is_temporary(), "{e:?}");
        }
        assert_eq!(ks.lock().unwrap().logins, 11);
        assert_eq!(counters.logins("test", "failed"), 10);
        assert_eq!(counters.logins("test", "ok"), 1);
    });
    // Logged: the refusal, the login, the refusal after it, the first 503; repeats not.
    assert_eq!(logs.matches("Keystone login failed").count(), 3, "{logs}");
    assert_eq!(logs.matches("logged in to Keystone").count(), 1, "{logs}");
    // A refusal names its back-off; a temporary failure (not backed off) says the next
    // request tries again, not "0ns".
    assert!(logs.contains("in 100ms"), "{logs}");
    assert!(logs.contains("with the next request"), "{logs}");
    assert!(!logs.contains("0ns"), "{logs}");
}

#[test]
fn credentials_from_settings_as_both_servers_give_them() {
    use stackfed_http::keystone::CredentialSettings;
    let base = CredentialSettings {
        user_domain_id: "default".into(),
        project_domain_id: "default".into(),
        ..CredentialSettings::default()
    };
    let pw = Secret::Inline(SECRET.into());
    let password = CredentialSettings {
        user: Some("stackfed".into()),
        passwords: vec![pw.clone()],
        project: Some("service".into()),
        ..base.clone()
    };
    assert_eq!(
        Credentials::from_settings(password.clone()).unwrap(),
        self::password()
    );
    // The edge's default project stands in when none is given; the proxy has none.
    let no_project = CredentialSettings {
        project: None,
        ..password.clone()
    };
    let e = Credentials::from_settings(no_project.clone()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "project is missing (the token is project-scoped)"
    );
    assert_eq!(e.origin(), Origin::Internal);
    let defaulted = CredentialSettings {
        default_project: Some("service".into()),
        ..no_project
    };
    assert_eq!(
        Credentials::from_settings(defaulted).unwrap(),
        self::password()
    );
    let app = CredentialSettings {
        application_credential_id: Some("ac".into()),
        application_credential_secret: Some(pw.clone()),
        default_project: Some("service".into()),
        ..base.clone()
    };
    assert!(matches!(
        Credentials::from_settings(app.clone()).unwrap(),
        Credentials::ApplicationCredential { id: Some(ref id), .. } if id == "ac"
    ));
    let refused = |s: CredentialSettings| Credentials::from_settings(s).unwrap_err().to_string();
    let either = "give either user, password and project, or an application credential \
                  (application_credential_id, or application_credential_name with user, and \
                  application_credential_secret)";
    // Mistakes, each named.
    for (settings, message) in [
        (base.clone(), either.to_owned()),
        (
            CredentialSettings {
                passwords: vec![],
                ..password.clone()
            },
            either.to_owned(),
        ),
        (
            CredentialSettings {
                user: None,
                ..password.clone()
            },
            either.to_owned(),
        ),
        (
            CredentialSettings {
                passwords: vec![pw.clone(), Secret::Env { env: "X".into() }],
                ..password.clone()
            },
            "give one password: password, password_file or password_env".to_owned(),
        ),
        (
            CredentialSettings {
                passwords: vec![pw.clone()],
                ..app.clone()
            },
            format!("{either}, not both"),
        ),
        (
            CredentialSettings {
                project: Some("service".into()),
                ..app.clone()
            },
            format!("{either}, not both"),
        ),
        (
            CredentialSettings {
                application_credential_secret: None,
                ..app.clone()
            },
            "application_credential_secret is missing".to_owned(),
        ),
        (
            CredentialSettings {
                application_credential_id: None,
                application_credential_name: Some("backup".into()),
                ..app.clone()
            },
            "application_credential_name needs user (the credential's owner)".to_owned(),
        ),
    ] {
        assert_eq!(refused(settings.clone()), message, "{settings:?}");
    }
}

#[tokio::test]
async fn an_auth_url_that_is_not_keystone_is_named_as_the_likely_mistake() {
    // A web server (or Swift, or Glance) at auth_url: 404 with an HTML page.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|_req: Request<stackfed_http::RequestBody>| async {
        let mut r = Response::new(stackfed_http::full("<html><h1>Not Found</h1></html>"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        Ok::<_, Infallible>(r)
    });
    tokio::spawn(stackfed_http::serve(
        listener,
        svc,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let url: url::Url = format!("http://{addr}/v3").parse().unwrap();
    let e = source(&url, Duration::from_secs(60))
        .token()
        .await
        .unwrap_err();
    assert!(
        matches!(e, KeystoneError::Refused { status, .. } if status == 404),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("is not Keystone's"), "{text}");
    assert!(
        text.contains(&format!("POST http://{addr}/v3/auth/tokens")),
        "{text}"
    );
    assert!(text.contains("is auth_url a Keystone endpoint?"), "{text}");
}
