//! The operator's admin API, in front of the Swift service.
//!
//! Every path under `/federation/` is the admin API's; nothing else is. Swift's own
//! paths start with `/v1`, `/v1.0`, `/auth`, `/info` or `/healthcheck`, and a Swift
//! cluster answers `/federation/…` with 400 (not an API version), so the prefix can
//! never hide a Swift request.
//!
//! - `GET /federation/v1/auth` with `X-Auth-User`/`X-Auth-Key` of the configured
//!   operator: `X-Auth-Token` for the rest (an hour);
//! - `POST /federation/v1/migrations` `{"account", "container", "to"?}`: 202 `{"id"}`
//!   (404 for a container not in the account, as Swift answers; 409 when it cannot
//!   move);
//! - `GET /federation/v1/migrations`, `GET /federation/v1/migrations/{id}`: the journal
//!   entry and the progress (objects and bytes done/total, rate, ETA);
//! - `DELETE /federation/v1/migrations/{id}` (or `POST …/{id}/cancel`): cancels a
//!   migration before its switch (202, rolled back: the records never leave the source,
//!   the destination's copy is deleted, the journal says `cancelled`); 409 once the
//!   switch is committed (move it back with a new migration), 404 for no such id;
//! - `POST /federation/v1/drains` `{"account", "cluster", "concurrency"?}`: 202
//!   `{"id", "migrations": [planned ids]}` (see [`super::drain`]); `GET
//!   /federation/v1/drains[/{id}]` shows each drain's state and moves; a planned id
//!   answers `GET …/migrations/{planned}` for its migration once started;
//! - `POST /federation/v1/rebalances` `{"fill_target", "accounts", "concurrency"?}`:
//!   202 `{"id"}` (see [`super::rebalance`]); `fill_target` a fraction (`0.8`) or a
//!   percentage string (`"80%"`); `GET /federation/v1/rebalances[/{id}]`.
//!
//! On a proxy without `[migration]` every admin path answers 501 saying so (its
//! configuration holds no operator credentials to open the API with).
//!
//! Errors are JSON `{"error": "…"}`. A method a known path does not answer is 405 with
//! an `Allow` header naming those it does; a path the API does not have is 404.

use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use federation_core::migration::FillTarget;
use federation_core::{AccountName, ClusterId, ContainerName};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use stackfed_http::{full, Body, BoxError};

use super::{random_hex, Migrations, MoveError, RebalanceRequest};
use crate::FederationService;

/// The admin prefix.
pub(super) const PREFIX: &str = "/federation/";
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const MAX_REQUEST: usize = 64 * 1024;

/// The Swift service with the admin API in front. Cheap to clone; a `tower::Service`.
#[derive(Debug, Clone)]
pub struct AdminService {
    proxy: FederationService,
    /// `None` on a proxy without `[migration]`: every admin path answers 501.
    migrations: Option<Migrations>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    account: String,
    container: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    account: String,
    cluster: String,
    #[serde(default)]
    concurrency: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebalanceBody {
    fill_target: serde_json::Value,
    accounts: Vec<String>,
    #[serde(default)]
    concurrency: Option<usize>,
}

/// What every admin path answers on a proxy without `[migration]`.
const DISABLED: &str = "live migration is not enabled on this proxy (its configuration has \
    no [migration] section): the admin API (migrations, drains, rebalances, also those \
    saved by other proxies sharing the store) is served by the proxies with one";

/// Most migrations a drain or rebalance runs at once.
const MAX_CONCURRENCY: usize = 64;

/// A drain's or rebalance's concurrency: 4 unless given, 1 to [`MAX_CONCURRENCY`].
fn concurrency(asked: Option<usize>) -> Result<usize, String> {
    let c = asked.unwrap_or(4);
    if (1..=MAX_CONCURRENCY).contains(&c) {
        Ok(c)
    } else {
        Err(format!("concurrency must be 1 to {MAX_CONCURRENCY}"))
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// The methods a known admin path answers (its `Allow` header), or `None` for a path
/// the admin API does not have.
fn allowed(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["federation", "v1", "auth"] | ["federation", "v1", "drains" | "rebalances", _] => {
            Some("GET")
        }
        ["federation", "v1", "migrations" | "drains" | "rebalances"] => Some("GET, POST"),
        ["federation", "v1", "migrations", _] => Some("GET, DELETE"),
        ["federation", "v1", "migrations", _, "cancel"] => Some("POST"),
        _ => None,
    }
}

/// 405 for a method `allow` does not list (none when it does).
fn method_not_allowed(method: &Method, allow: &'static str) -> Option<Response<Body>> {
    if allow.split(", ").any(|m| m == method.as_str()) {
        return None;
    }
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed here (allowed: {allow})"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    Some(r)
}

fn move_error(e: &MoveError) -> Response<Body> {
    match e {
        MoveError::Fatal(m) | MoveError::Refused(m) => error(StatusCode::CONFLICT, m),
        MoveError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        other => error(StatusCode::SERVICE_UNAVAILABLE, &other.to_string()),
    }
}

impl AdminService {
    /// `proxy` with the admin API of `migrations` in front.
    pub fn new(proxy: FederationService, migrations: Migrations) -> Self {
        Self {
            proxy,
            migrations: Some(migrations),
        }
    }

    /// `proxy` on a proxy without `[migration]`: every admin path answers 501 saying
    /// so (there are no operator credentials to open the API with; the migrations,
    /// drains and rebalances saved in a shared store are shown by the proxies with
    /// `[migration]`).
    pub fn disabled(proxy: FederationService) -> Self {
        Self {
            proxy,
            migrations: None,
        }
    }

    /// Answers one request: the admin API's, or the Swift service's.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        if !req.uri().path().starts_with(PREFIX) {
            return self.proxy.handle(req).await;
        }
        let Some(migrations) = &self.migrations else {
            return error(StatusCode::NOT_IMPLEMENTED, DISABLED);
        };
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // A known path asked with a method it does not answer: 405 naming those it does
        // (before the token: the API's shape is no secret, and nothing is read).
        let allow = allowed(&segments);
        if let Some(r) = allow.and_then(|a| method_not_allowed(&parts.method, a)) {
            return r;
        }
        if path == "/federation/v1/auth" {
            let get = |k: &str| {
                parts
                    .headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            if !migrations.is_operator(get("x-auth-user"), get("x-auth-key")) {
                return error(StatusCode::UNAUTHORIZED, "not the operator");
            }
            let Some(token) = issue_token(migrations.operator_credentials(), unix_secs()) else {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign a token");
            };
            let mut r = json(StatusCode::OK, &serde_json::json!({}));
            if let Ok(v) = HeaderValue::from_str(&token) {
                r.headers_mut().insert("x-auth-token", v);
            }
            return r;
        }
        let authorized = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| token_is_valid(migrations.operator_credentials(), t, unix_secs()));
        if !authorized {
            return error(StatusCode::UNAUTHORIZED, "an operator token is needed");
        }
        let body = match read(body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        match (&parts.method, segments.as_slice()) {
            (&Method::POST, ["federation", "v1", "migrations"]) => {
                let req: MoveRequest = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
                };
                let (Ok(account), Ok(container)) = (
                    AccountName::new(req.account),
                    ContainerName::new(req.container),
                ) else {
                    return error(StatusCode::BAD_REQUEST, "invalid account or container name");
                };
                let to = match req.to.map(ClusterId::new).transpose() {
                    Ok(t) => t,
                    Err(_) => return error(StatusCode::BAD_REQUEST, "invalid cluster name"),
                };
                match migrations.start_move(&account, &container, to).await {
                    Ok(id) => json(StatusCode::ACCEPTED, &serde_json::json!({ "id": id })),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::POST, ["federation", "v1", "drains"]) => {
                let req: DrainRequest = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
                };
                let (Ok(account), Ok(cluster)) =
                    (AccountName::new(req.account), ClusterId::new(req.cluster))
                else {
                    return error(StatusCode::BAD_REQUEST, "invalid account or cluster name");
                };
                let concurrency = match concurrency(req.concurrency) {
                    Ok(c) => c,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                match migrations
                    .start_drain(&account, &cluster, concurrency)
                    .await
                {
                    Ok((id, ids)) => json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "id": id, "migrations": ids }),
                    ),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::DELETE, ["federation", "v1", "migrations", id])
            | (&Method::POST, ["federation", "v1", "migrations", id, "cancel"]) => {
                match migrations.cancel(id).await {
                    Ok(Some(entry)) => json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "id": entry.id, "state": entry.state }),
                    ),
                    Ok(None) => error(StatusCode::NOT_FOUND, "no such migration"),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::POST, ["federation", "v1", "rebalances"]) => {
                let req: RebalanceBody = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
                };
                let target = match FillTarget::parse_json(&req.fill_target) {
                    Ok(t) => t,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                let Ok(accounts) = req
                    .accounts
                    .into_iter()
                    .map(AccountName::new)
                    .collect::<Result<Vec<_>, _>>()
                else {
                    return error(StatusCode::BAD_REQUEST, "invalid account name");
                };
                if accounts.is_empty() {
                    return error(StatusCode::BAD_REQUEST, "accounts: name at least one");
                }
                let concurrency = match concurrency(req.concurrency) {
                    Ok(c) => c,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                match migrations
                    .start_rebalance(RebalanceRequest {
                        target,
                        accounts,
                        concurrency,
                    })
                    .await
                {
                    Ok(id) => json(StatusCode::ACCEPTED, &serde_json::json!({ "id": id })),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::GET, ["federation", "v1", "rebalances"]) => {
                match migrations.rebalances().await {
                    Ok(all) => json(StatusCode::OK, &serde_json::json!({ "rebalances": all })),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::GET, ["federation", "v1", "rebalances", id]) => {
                match migrations.rebalance(id).await {
                    Ok(Some(r)) => json(StatusCode::OK, &serde_json::json!(r)),
                    Ok(None) => error(StatusCode::NOT_FOUND, "no such rebalance"),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::GET, ["federation", "v1", "drains"]) => match migrations.drain_list().await {
                Ok(all) => json(StatusCode::OK, &serde_json::json!({ "drains": all })),
                Err(e) => move_error(&e),
            },
            (&Method::GET, ["federation", "v1", "drains", id]) => {
                match migrations.drain(id).await {
                    Ok(Some(d)) => json(StatusCode::OK, &serde_json::json!(d)),
                    Ok(None) => error(StatusCode::NOT_FOUND, "no such drain"),
                    Err(e) => move_error(&e),
                }
            }
            (&Method::GET, ["federation", "v1", "migrations"]) => match migrations.list().await {
                Ok(all) => json(StatusCode::OK, &serde_json::json!({ "migrations": all })),
                Err(e) => move_error(&e),
            },
            (&Method::GET, ["federation", "v1", "migrations", id]) => {
                match migrations.get(id).await {
                    Ok(Some(v)) => json(StatusCode::OK, &v),
                    Ok(None) => error(StatusCode::NOT_FOUND, "no such migration"),
                    Err(e) => move_error(&e),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no such admin resource"),
        }
    }
}

type TokenMac = hmac::Hmac<sha2::Sha256>;

/// Seconds since the Unix epoch.
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signature of a token's `body` (its expiry and nonce) with the operator's
/// credentials: every proxy configured with the same operator checks it, so a token
/// issued by one works on all of them (several proxies behind a load balancer).
fn token_mac((user, key): (&str, &str), body: &str) -> Option<TokenMac> {
    use hmac::{KeyInit, Mac};
    let mut secret = Vec::with_capacity(user.len() + key.len() + 1);
    secret.extend_from_slice(user.as_bytes());
    secret.push(0);
    secret.extend_from_slice(key.as_bytes());
    // HMAC takes a key of any length: this never fails.
    let mut mac = TokenMac::new_from_slice(&secret).ok()?;
    mac.update(b"stackfed operator token\0");
    mac.update(body.as_bytes());
    Some(mac)
}

/// A token valid for [`TOKEN_LIFETIME`] from `now`: `FED_tk<expiry>_<nonce>_<signature>`.
fn issue_token(operator: (&str, &str), now: u64) -> Option<String> {
    use hmac::Mac;
    let body = format!("{}_{}", now + TOKEN_LIFETIME.as_secs(), random_hex(8));
    let tag = token_mac(operator, &body)?.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("FED_tk{body}_{hex}"))
}

/// Whether `token` was issued with this operator's credentials and has not expired.
fn token_is_valid(operator: (&str, &str), token: &str, now: u64) -> bool {
    use hmac::Mac;
    let Some((body, hex)) = token
        .strip_prefix("FED_tk")
        .and_then(|t| t.rsplit_once('_'))
    else {
        return false;
    };
    let Some(until) = body
        .split_once('_')
        .and_then(|(u, _)| u.parse::<u64>().ok())
    else {
        return false;
    };
    if until <= now || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let tag: Vec<u8> = (0..32)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    token_mac(operator, body).is_some_and(|m| m.verify_slice(&tag).is_ok())
}

async fn read<B>(body: B) -> Result<Bytes, Response<Body>>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("unreadable body: {}", e.into()),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_REQUEST {
                return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "request too large"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

impl<B> tower::Service<Request<B>> for AdminService
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move { Ok(svc.handle(req).await) })
    }
}

#[cfg(test)]
mod token_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_token_is_valid_with_the_same_operator_until_it_expires() {
        let op = ("admin:admin", "admin");
        let t = issue_token(op, 1_000).unwrap();
        assert!(token_is_valid(op, &t, 1_000));
        assert!(token_is_valid(op, &t, 1_000 + TOKEN_LIFETIME.as_secs() - 1));
        assert!(!token_is_valid(op, &t, 1_000 + TOKEN_LIFETIME.as_secs()));
        assert!(!token_is_valid(("admin:admin", "other"), &t, 1_000));
        assert!(!token_is_valid(("admin:other", "admin"), &t, 1_000));
        // A later expiry written into a token voids its signature.
        let (_, rest) = t.split_at("FED_tk".len());
        let later = format!("FED_tk9{rest}");
        assert!(!token_is_valid(op, &later, 1_000));
        for bad in ["", "FED_tk", "FED_tk_", "FED_tk1_2_3", &t[..t.len() - 1]] {
            assert!(!token_is_valid(op, bad, 1_000), "{bad}");
        }
        assert_ne!(
            t,
            issue_token(op, 1_000).unwrap(),
            "each token has its own nonce"
        );
    }
}
