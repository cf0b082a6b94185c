//! The bulk family: `POST` (or `DELETE`) `?bulk-delete` under an account, as Swift's
//! bulk middleware (`swift/common/middleware/bulk.py`) answers it.
//!
//! The body names objects (`/container/object`) and containers (`/container`) of the
//! account, one URL-encoded name a line, in any number of containers, which may live on
//! different clusters. Each name becomes one `DELETE` subrequest that runs through this
//! service's own phases, exactly as the bulk middleware sends its subrequests through
//! the rest of Swift's pipeline: the item's container is found through the locator (and
//! the item goes to that container's cluster), a container no cluster holds gets the
//! cluster's own 404, and a container deleted this way loses its federation record as
//! any container `DELETE` does. Objects go first, then containers (a container emptied
//! by the same request can then be deleted), a few at a time.
//!
//! Per-item `DELETE`s rather than one bulk request per cluster: every item's status is
//! known exactly (Swift's counts and `Errors` are made from them, nothing is parsed out
//! of a cluster's heartbeat-padded answer), the container bookkeeping is the one the
//! container family already does, and clusters without the bulk middleware (the
//! federation's own `/info` advertises `bulk_delete` either way) work the same.
//!
//! The answer is Swift's: always `200 OK`, the result in the body as the `Accept`
//! header negotiates it (plain, JSON or XML; `?format` does not count, as in Swift),
//! with whitespace sent every ten seconds while the work goes on. The list is read as
//! a stream and refused past `bulk_delete.max_deletes_per_request` of `/info` (Swift's
//! default when no cluster says), so memory stays bounded.
//!
//! Bulk upload (`PUT ?extract-archive`) is the sibling module `extract`.

use bytes::{Bytes, BytesMut};
use federation_core::AccountName;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use percent_encoding::{percent_decode, percent_encode};
use stackfed_http::Body;

use super::{
    heartbeat_response, info_limit, negotiate, status_line, BoxFuture, Format, Report,
    MAX_PATH_LENGTH, QUOTE,
};
use crate::service::FederationService;

#[cfg(feature = "fuzzing")]
pub mod fuzz;

/// Swift's defaults, used when no cluster's `/info` gives them.
pub(super) const DEFAULT_MAX_DELETES: u64 = 10_000;
pub(super) const DEFAULT_MAX_FAILED_DELETES: u64 = 1_000;
/// Deletes in flight at once for one bulk request.
const CONCURRENCY: usize = 4;
/// The counts of a bulk delete's report, in Swift's order.
const COUNTS: [&str; 2] = ["Number Deleted", "Number Not Found"];
const DELETED: usize = 0;
const NOT_FOUND: usize = 1;

/// What a bulk delete did.
pub(in crate::service) type Outcome = Report;

impl Report {
    /// A bulk delete's report, `200 OK` so far.
    fn delete() -> Self {
        Self::new("delete", StatusCode::OK, &COUNTS)
    }
}

/// Whether the request is a bulk delete: `POST` or `DELETE` with a `bulk-delete`
/// query parameter, at any level under an account (as Swift's middleware checks it).
pub(in crate::service) fn is_bulk_delete(parts: &Parts) -> bool {
    (parts.method == Method::POST || parts.method == Method::DELETE)
        && parts.uri.query().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "bulk-delete")
        })
}

/// Reads a request body in blocks of a fixed size, as Swift reads `wsgi.input`.
struct BlockReader {
    body: Body,
    pending: BytesMut,
    done: bool,
}

impl BlockReader {
    fn new(body: Body) -> Self {
        Self {
            body,
            pending: BytesMut::new(),
            done: false,
        }
    }

    /// Up to `n` bytes: fewer only at the end of the body; empty at the end.
    async fn read(&mut self, n: usize) -> Result<Bytes, StatusCode> {
        while self.pending.len() < n && !self.done {
            match self.body.frame().await {
                None => self.done = true,
                Some(Err(_)) => return Err(StatusCode::from_u16(499).unwrap_or_default()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend_from_slice(&data);
                    }
                }
            }
        }
        let take = n.min(self.pending.len());
        Ok(self.pending.split_to(take).freeze())
    }
}

/// Swift's `get_objs_to_delete`: the names of the list, each stripped and unquoted
/// (raw bytes: not yet known to be UTF-8). Blank lines count towards `max`.
async fn read_names(body: Body, max: u64) -> Result<Vec<Vec<u8>>, Outcome> {
    let mut reader = BlockReader::new(body);
    let mut line: Vec<u8> = Vec::new();
    let mut names: Vec<Vec<u8>> = Vec::new();
    let unquote = |raw: &[u8]| -> Vec<u8> { percent_decode(raw.trim_ascii()).collect() };
    loop {
        let mut more = true;
        if let Some(nl) = line.iter().position(|b| *b == b'\n') {
            let rest = line.split_off(nl + 1);
            names.push(unquote(&line[..nl]));
            line = rest;
        } else {
            let data = reader
                .read(MAX_PATH_LENGTH)
                .await
                .map_err(|s| Outcome::delete().failed(s, ""))?;
            if data.is_empty() {
                more = false;
                let name = unquote(&line);
                if !name.is_empty() {
                    names.push(name);
                }
            } else {
                line.extend_from_slice(&data);
            }
        }
        if names.len() as u64 > max {
            return Err(Outcome::delete().failed(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Maximum Bulk Deletes: {max} per request"),
            ));
        }
        if line.len() > MAX_PATH_LENGTH * 2 {
            return Err(Outcome::delete().failed(StatusCode::BAD_REQUEST, "Invalid File Name"));
        }
        if !more {
            return Ok(names);
        }
    }
}

/// `name.strip('/')` contains a slash: an object, deleted before the containers.
fn is_object(name: &[u8]) -> bool {
    let mut s = name;
    while let [b'/', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'/'] = s {
        s = rest;
    }
    s.contains(&b'/')
}

impl FederationService {
    /// Answers a bulk delete (see the [module docs](self)): `200` once the list is read,
    /// whitespace while the items are deleted, then the result.
    pub(in crate::service) async fn bulk_delete(
        &self,
        parts: Parts,
        body: Body,
        account: AccountName,
    ) -> Response<Body> {
        let format = negotiate(parts.headers.get(header::ACCEPT).map(HeaderValue::as_bytes));
        // The list is read before the answer starts, as Swift reads it before its first
        // byte: a client that sent `Expect: 100-continue` gets its 100 first.
        let work: BoxFuture<Outcome> = match self.bulk_delete_list(&parts, body, format).await {
            Err(refused) => Box::pin(std::future::ready(refused)),
            Ok((names, max_failed)) => {
                let token = parts.headers.get("x-auth-token").cloned();
                Box::pin(
                    self.clone()
                        .bulk_delete_items(names, account, token, max_failed, None),
                )
            }
        };
        heartbeat_response(format, work).await
    }

    /// The checks of Swift's `handle_delete_iter` and the list it reads; the names and
    /// `max_failed_deletes`, or the refusal.
    async fn bulk_delete_list(
        &self,
        parts: &Parts,
        body: Body,
        format: Option<Format>,
    ) -> Result<(Vec<Vec<u8>>, u64), Outcome> {
        let refused = |status| Outcome::delete().failed(status, "");
        if format.is_none() {
            return Err(refused(StatusCode::NOT_ACCEPTABLE));
        }
        let h = &parts.headers;
        if let Some(ct) = h.get(header::CONTENT_TYPE) {
            if !ct.is_empty() && !ct.as_bytes().starts_with(b"text/plain") {
                return Err(refused(StatusCode::NOT_ACCEPTABLE));
            }
        }
        let chunked = h
            .get(header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if !h.contains_key(header::CONTENT_LENGTH) && !chunked {
            return Err(refused(StatusCode::LENGTH_REQUIRED));
        }
        let (info, _) = self.info().await;
        let max_deletes = info_limit(
            &info,
            "/bulk_delete/max_deletes_per_request",
            DEFAULT_MAX_DELETES,
        );
        let max_failed = info_limit(
            &info,
            "/bulk_delete/max_failed_deletes",
            DEFAULT_MAX_FAILED_DELETES,
        );
        Ok((read_names(body, max_deletes).await?, max_failed))
    }

    /// The deletes of an SLO's `?multipart-manifest=delete` (its segments, then the
    /// manifest, the last name), with Swift's default failure limit. `version` is the
    /// request's `version-id`: the manifest's DELETE carries it, as in Swift's slo
    /// middleware (the segments are deleted as they are named).
    pub(in crate::service) async fn delete_in_order(
        self,
        names: Vec<Vec<u8>>,
        account: AccountName,
        token: Option<HeaderValue>,
        version: Option<String>,
    ) -> Outcome {
        let last = version.map(|v| (names.len().saturating_sub(1), v));
        self.bulk_delete_items(names, account, token, DEFAULT_MAX_FAILED_DELETES, last)
            .await
    }

    /// The deletes of Swift's `handle_delete_iter`, objects first, and the result.
    async fn bulk_delete_items(
        self,
        names: Vec<Vec<u8>>,
        account: AccountName,
        token: Option<HeaderValue>,
        max_failed: u64,
        version: Option<(usize, String)>,
    ) -> Outcome {
        let mut outcome = Outcome::delete();
        let mut bad_gateway = false;
        let mut aborted = false;
        for objects in [true, false] {
            let mut pending = FuturesOrdered::new();
            let mut items = names
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.is_empty() && is_object(n) == objects);
            loop {
                while !aborted && pending.len() < CONCURRENCY {
                    let Some((at, name)) = items.next() else {
                        break;
                    };
                    let quoted = percent_encode(name, QUOTE).to_string();
                    let item = match std::str::from_utf8(name) {
                        Ok(n) if !n.contains('\0') => {
                            let mut path = format!(
                                "{}/{}",
                                crate::cluster::swift_path(&account, None, None),
                                percent_encode(n.trim_start_matches('/').as_bytes(), QUOTE)
                            );
                            if let Some((_, v)) = version.as_ref().filter(|(i, _)| *i == at) {
                                path = format!("{path}?version-id={v}");
                            }
                            self.clone().delete_item(path, token.clone())
                        }
                        _ => Box::pin(async { StatusCode::PRECONDITION_FAILED }),
                    };
                    pending.push_back(async move { (quoted, item.await) });
                }
                let Some((quoted, status)) = pending.next().await else {
                    break;
                };
                match status.as_u16() {
                    200..=299 => outcome.count(DELETED),
                    404 => outcome.count(NOT_FOUND),
                    s => {
                        bad_gateway |= s / 100 == 5;
                        outcome.errors.push((quoted, status_line(status)));
                    }
                }
                if outcome.errors.len() as u64 >= max_failed {
                    aborted = true;
                }
            }
            if aborted {
                return outcome.failed(StatusCode::BAD_REQUEST, "Max delete failures exceeded");
            }
        }
        if !outcome.errors.is_empty() {
            let status = if bad_gateway {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::BAD_REQUEST
            };
            outcome.set_status(status);
        } else if outcome.counted(DELETED) == 0 && outcome.counted(NOT_FOUND) == 0 {
            return outcome.failed(StatusCode::BAD_REQUEST, "Invalid bulk delete.");
        }
        outcome
    }

    /// One item: a `DELETE` of `path` through this service's phases, with the bulk
    /// request's token (Swift's subrequests carry only `X-Auth-Token`); its status.
    fn delete_item(self, path: String, token: Option<HeaderValue>) -> BoxFuture<StatusCode> {
        Box::pin(async move { self.delete_item_inner(path, token).await })
    }

    async fn delete_item_inner(self, path: String, token: Option<HeaderValue>) -> StatusCode {
        let mut headers = HeaderMap::new();
        if let Some(t) = token {
            headers.insert("x-auth-token", t);
        }
        self.item_request(Method::DELETE, &path, headers, stackfed_http::empty())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_containers() {
        assert!(is_object(b"/c/o"));
        assert!(is_object(b"c/o/"));
        assert!(!is_object(b"/c/"));
        assert!(!is_object(b"/"));
    }
}
