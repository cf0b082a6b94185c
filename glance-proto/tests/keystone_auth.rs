//! Keystone mode in process, against a fake Keystone (the real one is exercised by
//! tests/interop/test_glance_keystone.py): validation, caching and revalidation,
//! rejections never honoured, offline grace, service-token renewal, and the edge's 401
//! and 503 answers.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use glance_proto::client::CentralClient;
use glance_proto::keystone::{AuthError, KeystoneAuth, KeystoneConfig};
use glance_proto::EdgeService;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use image_cache_core::blob::MemoryBlobStore;
use image_cache_core::engine::{CacheConfig, ImageCache, Spawner};
use image_cache_core::list::{ListQuery, Page};
use image_cache_core::meta::MemoryMetadataStore;
use image_cache_core::upstream::{
    ByteRange, RequestContext, Upstream, UpstreamData, UpstreamError,
};
use image_cache_core::{ImageId, ImageRecord, ImageStatus, Visibility};
use stackfed_http::{Background, Body, Timeouts};
use tower::ServiceExt;

/// What the fake Keystone knows and counts.
#[derive(Debug, Default)]
struct State {
    /// user token -> (project, roles, expires_at)
    tokens: HashMap<String, (String, Vec<String>, String)>,
    service_token: String,
    logins: u32,
    validations: u32,
    /// Every request, answered or not.
    requests: u32,
    /// Answer 503 to everything.
    down: bool,
    /// How long each answer takes.
    delay: Duration,
    /// When the service tokens it issues expire (default far away).
    service_expires: Option<String>,
}

type Shared = Arc<Mutex<State>>;

fn reply(status: StatusCode, headers: &[(&str, &str)], body: String) -> Response<Body> {
    let mut r = Response::new(stackfed_http::full(body));
    *r.status_mut() = status;
    for (k, v) in headers {
        r.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

fn token_body(user: &str, project: &str, roles: &[String], expires: &str) -> String {
    let roles: Vec<_> = roles
        .iter()
        .map(|r| serde_json::json!({"name": r}))
        .collect();
    serde_json::json!({"token": {"user": {"id": user}, "project": {"id": project},
        "roles": roles, "expires_at": expires}})
    .to_string()
}

async fn keystone_answer(
    state: Shared,
    req: Request<stackfed_http::RequestBody>,
) -> Response<Body> {
    let delay = state.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut s = state.lock().unwrap();
    s.requests += 1;
    if s.down {
        return reply(StatusCode::SERVICE_UNAVAILABLE, &[], String::new());
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    match (req.method().as_str(), req.uri().path()) {
        ("POST", "/v3/auth/tokens") => {
            s.logins += 1;
            s.service_token = format!("service-{}", s.logins);
            let token = s.service_token.clone();
            let expires = s
                .service_expires
                .clone()
                .unwrap_or_else(|| "2099-01-01T00:00:00Z".into());
            let body = token_body("edge", "service", &["service".into()], &expires);
            reply(StatusCode::CREATED, &[("x-subject-token", &token)], body)
        }
        ("GET", "/v3/auth/tokens") => {
            if header("x-auth-token") != s.service_token {
                return reply(StatusCode::UNAUTHORIZED, &[], String::new());
            }
            s.validations += 1;
            match s.tokens.get(&header("x-subject-token")) {
                Some((project, roles, expires)) => reply(
                    StatusCode::OK,
                    &[],
                    token_body("u", project, roles, expires),
                ),
                None => reply(StatusCode::NOT_FOUND, &[], "{}".into()),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, &[], String::new()),
    }
}

/// A fake Keystone on a free port; stops when the test's runtime ends.
async fn fake_keystone() -> (url::Url, Shared) {
    let state: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = state.clone();
    let svc = tower::service_fn(move |req| {
        let s = s.clone();
        async move { Ok::<_, Infallible>(keystone_answer(s, req).await) }
    });
    tokio::spawn(stackfed_http::serve(
        listener,
        svc,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    (format!("http://{addr}/v3").parse().unwrap(), state)
}

fn add(state: &Shared, token: &str, project: &str, roles: &[&str]) {
    add_expiring(state, token, project, roles, "2099-01-01T00:00:00.000000Z");
}

fn add_expiring(state: &Shared, token: &str, project: &str, roles: &[&str], expires: &str) {
    state.lock().unwrap().tokens.insert(
        token.into(),
        (
            project.into(),
            roles.iter().map(|r| (*r).to_owned()).collect(),
            expires.into(),
        ),
    );
}

fn auth(url: &url::Url, extra: &str) -> KeystoneAuth {
    let cfg: KeystoneConfig = toml::from_str(&format!(
        "auth_url = \"{url}\"\nusername = \"edge\"\npassword = \"pw\"\n{extra}"
    ))
    .unwrap();
    cfg.build().unwrap()
}

#[tokio::test]
async fn validations_are_cached_then_checked_again_and_revocation_is_seen() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "alice-token", "alpha", &["member", "reader"]);
    let v = auth(&url, "cache_seconds = 0.3\nnegative_cache_seconds = 60");
    let info = v.validate("alice-token").await.unwrap();
    assert_eq!(info.project_id.as_deref(), Some("alpha"));
    assert_eq!(info.roles, ["member", "reader"]);
    assert!(!info.is_admin());
    v.validate("alice-token").await.unwrap();
    assert_eq!(
        ks.lock().unwrap().validations,
        1,
        "the second one is cached"
    );
    // Revoked: honoured until the cached validation is due, refused after.
    ks.lock().unwrap().tokens.remove("alice-token");
    v.validate("alice-token").await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(
        v.validate("alice-token").await,
        Err(AuthError::Invalid)
    ));
    assert_eq!(ks.lock().unwrap().validations, 2);
    // The rejection is remembered: neither asked again, nor honoured with Keystone down.
    ks.lock().unwrap().down = true;
    assert!(matches!(
        v.validate("alice-token").await,
        Err(AuthError::Invalid)
    ));
    assert_eq!(ks.lock().unwrap().validations, 2);
    assert_eq!(ks.lock().unwrap().logins, 1, "one service login");
}

#[tokio::test]
async fn concurrent_first_validations_of_one_token_ask_keystone_once() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "new-token", "alpha", &["member"]);
    ks.lock().unwrap().delay = Duration::from_millis(100);
    let v = auth(&url, "");
    let all = futures::future::join_all((0..100).map(|_| v.validate("new-token"))).await;
    assert!(all
        .iter()
        .all(|r| r.as_ref().unwrap().project_id.as_deref() == Some("alpha")));
    assert_eq!(ks.lock().unwrap().validations, 1, "one GET /v3/auth/tokens");
    assert_eq!(ks.lock().unwrap().logins, 1, "one service login");
    // A rejected token: one call too, all refused.
    let all = futures::future::join_all((0..100).map(|_| v.validate("unknown"))).await;
    assert!(all.iter().all(|r| matches!(r, Err(AuthError::Invalid))));
    assert_eq!(ks.lock().unwrap().validations, 2);
    // Keystone failing: the 100 share one failure (a 503 each), and nothing is cached.
    add(&ks, "third", "alpha", &["member"]);
    ks.lock().unwrap().down = true;
    let asked = ks.lock().unwrap().requests;
    let all = futures::future::join_all((0..100).map(|_| v.validate("third"))).await;
    assert!(all
        .iter()
        .all(|r| r.as_ref().is_err_and(AuthError::is_temporary)));
    assert_eq!(ks.lock().unwrap().requests, asked + 1);
}

#[tokio::test]
async fn a_rejected_token_is_never_honoured_offline() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "t", "alpha", &["member"]);
    let v = auth(&url, "cache_seconds = 0\nnegative_cache_seconds = 0.1");
    v.validate("t").await.unwrap();
    ks.lock().unwrap().tokens.remove("t");
    assert!(matches!(v.validate("t").await, Err(AuthError::Invalid)));
    // Past the negative cache and with Keystone down, the old validation is gone: the
    // token is unknown (503), not valid.
    tokio::time::sleep(Duration::from_millis(150)).await;
    ks.lock().unwrap().down = true;
    let e = v.validate("t").await.unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
}

#[tokio::test]
async fn offline_a_validated_token_works_within_the_cap_and_an_unknown_one_is_refused() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "t", "alpha", &["member"]);
    add(&ks, "new", "alpha", &["member"]);
    let v = auth(
        &url,
        "cache_seconds = 0\noffline_seconds = 0.4\nretry_seconds = 0.2",
    );
    v.validate("t").await.unwrap();
    ks.lock().unwrap().down = true;
    let asked = ks.lock().unwrap().requests;
    assert_eq!(
        v.validate("t").await.unwrap().project_id.as_deref(),
        Some("alpha")
    );
    // Keystone just failed: not asked again within retry_seconds.
    assert!(matches!(
        v.validate("new").await,
        Err(AuthError::Unavailable { .. })
    ));
    v.validate("t").await.unwrap();
    assert_eq!(ks.lock().unwrap().requests, asked + 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(matches!(
        v.validate("t").await,
        Err(AuthError::Unavailable { .. })
    ));
    assert_eq!(
        ks.lock().unwrap().requests,
        asked + 2,
        "asked again after retry_seconds"
    );
    // Keystone back: asked again (after retry_seconds), valid again.
    ks.lock().unwrap().down = false;
    tokio::time::sleep(Duration::from_millis(250)).await;
    v.validate("t").await.unwrap();
}

#[tokio::test]
async fn expired_tokens_are_refused_and_a_refused_service_token_is_renewed() {
    let (url, ks) = fake_keystone().await;
    add_expiring(&ks, "old", "alpha", &["member"], "2001-01-01T00:00:00Z");
    add(&ks, "t", "alpha", &["admin"]);
    let v = auth(&url, "");
    assert!(matches!(v.validate("old").await, Err(AuthError::Invalid)));
    assert!(matches!(v.validate("").await, Err(AuthError::Missing)));
    assert!(matches!(v.validate("nope").await, Err(AuthError::Invalid)));
    // Keystone restarted with new keys: the service token is refused once, the edge
    // logs in again and the validation succeeds.
    ks.lock().unwrap().service_token = "rotated".into();
    assert!(v.validate("t").await.unwrap().is_admin());
    assert_eq!(ks.lock().unwrap().logins, 2);
}

#[tokio::test]
async fn keystone_unreachable_is_unavailable_not_invalid() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: url::Url = format!("http://{}/v3", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let e = auth(&url, "timeout_seconds = 1")
        .validate("t")
        .await
        .unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
}

#[test]
fn the_password_comes_from_one_source_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    let cfg: KeystoneConfig = toml::from_str(&format!(
        "auth_url = \"http://127.0.0.1:1/v3\"\nusername = \"edge\"\npassword_file = {:?}",
        file.to_str().unwrap()
    ))
    .unwrap();
    let body = cfg.credentials().unwrap().auth_body().unwrap();
    assert_eq!(
        body["auth"]["identity"]["password"]["user"]["password"],
        "s3cret"
    );
    // Two sources at once is a mistake, not a silent choice.
    let both: KeystoneConfig = toml::from_str(&format!(
        "auth_url = \"http://127.0.0.1:1/v3\"\nusername = \"edge\"\npassword = \"x\"\npassword_file = {:?}",
        file.to_str().unwrap()
    ))
    .unwrap();
    assert!(both.build().is_err());
    // The proxy's spelling: `password = { file = … }`, `user`, `project`.
    let proxy_style: KeystoneConfig = toml::from_str(&format!(
        "auth_url = \"http://127.0.0.1:1/v3\"\nuser = \"edge\"\nproject = \"service\"\npassword = {{ file = {:?} }}",
        file.to_str().unwrap()
    ))
    .unwrap();
    assert_eq!(proxy_style.credentials(), cfg.credentials());
    let inline: KeystoneConfig = toml::from_str(
        "auth_url = \"http://127.0.0.1:1/v3\"\nusername = \"edge\"\npassword = \"s3cret\"",
    )
    .unwrap();
    assert!(!format!("{inline:?}").contains("s3cret"));
    let auth = inline.build().unwrap();
    assert!(!format!("{auth:?}").contains("s3cret"));
    let none: KeystoneConfig =
        toml::from_str("auth_url = \"http://127.0.0.1:1/v3\"\nusername = \"edge\"").unwrap();
    assert!(none.build().is_err());
    let env: KeystoneConfig = toml::from_str(
        "auth_url = \"http://127.0.0.1:1/v3\"\nusername = \"edge\"\npassword_env = \"STACKFED_TEST_NO_SUCH_VARIABLE\"",
    )
    .unwrap();
    assert!(env
        .build()
        .unwrap_err()
        .contains("STACKFED_TEST_NO_SUCH_VARIABLE"));
}

const ID: &str = "9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab";

/// A central with one private image of project `alpha`; records the identity each
/// request carried.
#[derive(Debug, Default)]
struct Recording(Mutex<Vec<Vec<(String, String)>>>);

#[async_trait]
impl Upstream for Recording {
    async fn get(
        &self,
        _: &ImageId,
        ctx: &RequestContext,
    ) -> Result<Option<ImageRecord>, UpstreamError> {
        self.0.lock().unwrap().push(ctx.identity_headers.clone());
        let mut r = ImageRecord::new(ImageId::parse(ID).unwrap(), Visibility::Private);
        r.owner = Some("alpha".into());
        r.status = ImageStatus::Active;
        r.size = Some(0);
        Ok(Some(r))
    }
    async fn list(&self, _: &ListQuery, _: &RequestContext) -> Result<Page, UpstreamError> {
        Ok(Page::default())
    }
    async fn open(
        &self,
        _: &ImageId,
        _: Option<ByteRange>,
        _: &RequestContext,
    ) -> Result<Option<UpstreamData>, UpstreamError> {
        Ok(None)
    }
}

async fn edge(auth: KeystoneAuth, upstream: Arc<Recording>) -> EdgeService {
    let background = Background::new();
    let spawner: Arc<dyn Spawner> = Arc::new(move |n, t| background.spawn(n, t));
    let (cache, _) = ImageCache::open(
        upstream,
        Arc::new(MemoryMetadataStore::default()),
        Arc::new(MemoryBlobStore::default()),
        CacheConfig::default().freshness(Duration::ZERO),
        spawner,
    )
    .await
    .unwrap();
    let central = CentralClient::new("http://127.0.0.1:9".parse().unwrap(), Timeouts::default());
    EdgeService::with_keystone(cache, central, auth)
}

async fn get(
    service: &EdgeService,
    token: Option<&str>,
    accept: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::get(format!("/v2/images/{ID}")).header("accept", accept);
    if let Some(t) = token {
        req = req.header("x-auth-token", t);
    }
    let resp = service
        .clone()
        .oneshot(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into(),
    )
}

#[tokio::test]
async fn the_edge_answers_401_as_auth_token_and_forwards_the_callers_token() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "alice", "alpha", &["member"]);
    add(&ks, "bob", "beta", &["member"]);
    let upstream = Arc::new(Recording::default());
    let service = edge(auth(&url, ""), upstream.clone()).await;
    for token in [None, Some("garbage")] {
        for (accept, format) in [
            ("*/*", "text/html"),
            ("text/html", "text/html"),
            ("application/json", "application/json"),
            ("text/plain", "text/plain"),
        ] {
            let (status, headers, body) = get(&service, token, accept).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(
                headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with(format),
                "{accept}: {headers:?}"
            );
            assert_eq!(
                headers["www-authenticate"],
                format!("Keystone uri=\"{}\"", url.as_str().trim_end_matches('/'))
            );
            assert!(
                body.contains(glance_proto::keystone::UNAUTHORIZED),
                "{body}"
            );
        }
    }
    let (status, _, _) = get(&service, Some("alice"), "application/json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        upstream.0.lock().unwrap().last().unwrap(),
        &vec![("x-auth-token".to_owned(), "alice".to_owned())],
        "forward mode: the caller's own token goes to the central"
    );
    // Keystone down and a token never seen: 401 as Glance answers (its auth_token runs
    // with delay_auth_decision = true: a token Keystone cannot check is invalid), not 500.
    ks.lock().unwrap().down = true;
    let (status, _, body) = get(&service, Some("bob"), "application/json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("This server could not verify"), "{body}");
}

#[tokio::test]
async fn refused_before_routing_and_never_on_the_first_of_two_tokens() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "alice", "alpha", &["member"]);
    let service = edge(auth(&url, ""), Arc::new(Recording::default())).await;
    let send = |path: &str, tokens: &[&str]| {
        let mut req = Request::get(path).header("accept", "application/json");
        for t in tokens {
            req = req.header("x-auth-token", *t);
        }
        let service = service.clone();
        let req = req.body(http_body_util::Empty::<Bytes>::new()).unwrap();
        async move { service.oneshot(req).await.unwrap().status() }
    };
    // auth_token answers before Glance's router: a path naming no image is a 401 too.
    assert_eq!(
        send("/v2/images/not-an-id", &[]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send("/v2/images/not-an-id", &["garbage"]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send("/v2/images/not-an-id", &["alice"]).await,
        StatusCode::NOT_FOUND
    );
    // Two tokens, whichever is valid: refused, as Glance's joined value is.
    let list = "/v2/images";
    assert_eq!(
        send(list, &["alice", "garbage"]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(list, &["garbage", "alice"]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(list, &["alice", "alice"]).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_caller_without_a_reading_role_reads_nothing() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "alice", "alpha", &["member"]);
    add(&ks, "other", "alpha", &["service"]);
    add(&ks, "boss", "admin", &["admin"]);
    for mode in ["forward", "service"] {
        let service = edge(
            auth(&url, &format!("central_auth = \"{mode}\"")),
            Arc::new(Recording::default()),
        )
        .await;
        let (status, _, _) = get(&service, Some("alice"), "application/json").await;
        assert_eq!(status, StatusCode::OK, "{mode}");
        let (status, _, _) = get(&service, Some("boss"), "application/json").await;
        assert_eq!(status, StatusCode::OK, "{mode}");
        let (status, _, body) = get(&service, Some("other"), "application/json").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{mode}");
        assert!(body.contains("The resource could not be found."), "{body}");
        let list = Request::get("/v2/images")
            .header("x-auth-token", "other")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let resp = service.clone().oneshot(list).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{mode}");
    }
}

#[tokio::test]
async fn with_a_service_identity_the_edge_enforces_visibility_itself() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "alice", "alpha", &["member"]);
    add(&ks, "bob", "beta", &["member"]);
    let upstream = Arc::new(Recording::default());
    let service = edge(auth(&url, "central_auth = \"service\""), upstream.clone()).await;
    // The central answers the service user (who sees everything); bob is refused anyway.
    let (status, _, _) = get(&service, Some("bob"), "application/json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&service, Some("alice"), "application/json").await;
    assert_eq!(status, StatusCode::OK);
    for seen in upstream.0.lock().unwrap().iter() {
        assert_eq!(
            seen,
            &vec![("x-auth-token".to_owned(), "service-1".to_owned())]
        );
    }
}

#[tokio::test]
async fn offline_a_service_edge_serves_validated_callers_when_its_token_is_due() {
    let (url, ks) = fake_keystone().await;
    add(&ks, "alice", "alpha", &["member"]);
    // Service tokens live 4 s: the edge renews them half-way.
    let soon = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(4));
    ks.lock().unwrap().service_expires = Some(soon.to_string());
    let upstream = Arc::new(Recording::default());
    let service = edge(
        auth(&url, "central_auth = \"service\"\ncache_seconds = 60"),
        upstream.clone(),
    )
    .await;
    let (status, _, _) = get(&service, Some("alice"), "application/json").await;
    assert_eq!(status, StatusCode::OK);
    // Keystone goes away; the service token comes due for renewal, still valid.
    ks.lock().unwrap().down = true;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..3 {
        let (status, _, body) = get(&service, Some("alice"), "application/json").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(
        upstream.0.lock().unwrap().last().unwrap(),
        &vec![("x-auth-token".to_owned(), "service-1".to_owned())],
        "the current service token, not renewed"
    );
    // A caller never validated still cannot be: 401, as Glance answers.
    let (status, _, _) = get(&service, Some("bob"), "application/json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
