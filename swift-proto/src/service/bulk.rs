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
//! Not done here yet: bulk upload (`PUT ?extract-archive`). At container or object
//! level it is forwarded to the container's cluster like any PUT there: a cluster
//! running the bulk middleware extracts it into that one container, a cluster without
//! it takes it for a container PUT and ignores the archive. At account level, where
//! entries may name many containers on different clusters, the proxy answers 405.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use federation_core::AccountName;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use stackfed_http::{from_stream, Body};

use super::FederationService;
use crate::path::SwiftPath;

#[cfg(feature = "fuzzing")]
pub mod fuzz;

/// The formats Swift's bulk middleware offers, in its order of preference.
const ACCEPTABLE_FORMATS: [&str; 4] = [
    "text/plain",
    "application/json",
    "application/xml",
    "text/xml",
];
/// Swift's `max_path_length` in the bulk middleware: object name, container name and
/// two slashes. The list is read in blocks of this size.
const MAX_PATH_LENGTH: usize = 1024 + 256 + 2;
/// Swift's defaults, used when no cluster's `/info` gives them.
const DEFAULT_MAX_DELETES: u64 = 10_000;
const DEFAULT_MAX_FAILED_DELETES: u64 = 1_000;
/// How often whitespace goes out while the work goes on (Swift's `yield_frequency`).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Deletes in flight at once for one bulk request.
const CONCURRENCY: usize = 4;
/// The longest item answer read (and dropped) so its connection can be reused.
const ITEM_BODY_LIMIT: usize = 64 * 1024;
/// Python's `urllib.parse.quote(name, safe='/')`.
pub(super) const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The response format (`None`: nothing acceptable, plain text under `text/html`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Plain,
    Json,
    Xml(&'static str),
}

impl Format {
    pub(super) fn content_type(self) -> &'static str {
        match self {
            Self::Plain => "text/plain",
            Self::Json => "application/json",
            Self::Xml(ct) => ct,
        }
    }
}

/// Whether the request is a bulk delete: `POST` or `DELETE` with a `bulk-delete`
/// query parameter, at any level under an account (as Swift's middleware checks it).
pub(super) fn is_bulk_delete(parts: &Parts) -> bool {
    (parts.method == Method::POST || parts.method == Method::DELETE)
        && parts.uri.query().is_some_and(|q| {
            url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "bulk-delete")
        })
}

/// The account a path is under, if any.
pub(super) fn account_of(path: &SwiftPath) -> Option<&AccountName> {
    match path {
        SwiftPath::Account { account }
        | SwiftPath::Container { account, .. }
        | SwiftPath::Object { account, .. } => Some(account),
        _ => None,
    }
}

/// Swift's `Accept.best_match(ACCEPTABLE_FORMATS)`: `None` when no offer matches or the
/// header is malformed; the first offer when there is no header.
pub(super) fn negotiate(accept: Option<&[u8]>) -> Option<Format> {
    let to_format = |ct: &'static str| match ct {
        "application/json" => Format::Json,
        "application/xml" | "text/xml" => Format::Xml(ct),
        _ => Format::Plain,
    };
    let accept = match accept {
        None => return Some(Format::Plain),
        Some(a) => std::str::from_utf8(a).ok()?,
    };
    if accept.is_empty() {
        return Some(Format::Plain);
    }
    // (type, subtype, quality, no wildcard), in the header's order.
    let mut types: Vec<(String, String, f64, bool)> = Vec::new();
    for part in accept.split(',') {
        let (typ, subtype, params) = parse_media_range(part)?;
        let mut quality = 1.0;
        let mut seen_q = false;
        for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let mut kv = p.split('=');
            let (Some(name), Some(value), None) = (kv.next(), kv.next(), kv.next()) else {
                return None;
            };
            if name.trim() == "q" {
                if seen_q {
                    return None;
                }
                seen_q = true;
                quality = value.trim().parse::<f64>().ok()?;
            }
        }
        let exact = typ != "*" && subtype != "*";
        types.push((typ.to_owned(), subtype.to_owned(), quality, exact));
    }
    // Python's stable sort, reversed: by quality, then exact before wildcards.
    types.sort_by(|a, b| {
        (b.2, b.3)
            .partial_cmp(&(a.2, a.3))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for (typ, subtype, _, _) in &types {
        for offer in ACCEPTABLE_FORMATS {
            let (ot, os) = offer.split_once('/')?;
            if (typ == "*" || typ == ot) && (subtype == "*" || subtype == os) {
                return Some(to_format(offer));
            }
        }
    }
    None
}

/// An RFC 2616 token character, as Swift's `Accept` pattern has it.
fn is_token(c: char) -> bool {
    !c.is_control() && !c.is_whitespace() && !"()<>@,;:\\\"/[]?={}".contains(c) && c != '\x7f'
}

/// `type/subtype` and the raw parameters after it, as Swift's `Accept` pattern matches
/// one comma-separated part; `None` when it does not match.
fn parse_media_range(part: &str) -> Option<(&str, &str, &str)> {
    let s = part.trim_start();
    let slash = s.find('/')?;
    let typ = &s[..slash];
    let rest = &s[slash + 1..];
    let end = rest.find(|c: char| !is_token(c)).unwrap_or(rest.len());
    let (subtype, params) = rest.split_at(end);
    if typ.is_empty() || !typ.chars().all(is_token) || subtype.is_empty() {
        return None;
    }
    // Each parameter: `\s*;\s*token\s*=\s*(token|"quoted")`, then trailing space.
    let mut p = params;
    loop {
        p = p.trim_start();
        if p.is_empty() {
            break;
        }
        p = p.strip_prefix(';')?.trim_start();
        let n = p.find(|c: char| !is_token(c)).unwrap_or(p.len());
        if n == 0 {
            return None;
        }
        p = p[n..].trim_start().strip_prefix('=')?.trim_start();
        if let Some(q) = p.strip_prefix('"') {
            let mut chars = q.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            p = &q[close? + 1..];
        } else {
            let n = p.find(|c: char| !is_token(c)).unwrap_or(p.len());
            if n == 0 {
                return None;
            }
            p = &p[n..];
        }
    }
    Some((typ, subtype, params))
}

/// Swift's reason phrase for a status (`swob.RESPONSE_REASONS`).
pub(super) fn status_line(status: StatusCode) -> String {
    let reason = match status.as_u16() {
        202 => "Accepted",
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        416 => "Requested Range Not Satisfiable",
        422 => "Unprocessable Entity",
        499 => "Client Disconnect",
        500 => "Internal Error",
        529 => "Too Many Backend Requests",
        _ => status.canonical_reason().unwrap_or("Unknown"),
    };
    format!("{} {reason}", status.as_u16())
}

/// What a bulk delete did, as Swift's middleware reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    status: String,
    body: String,
    deleted: u64,
    not_found: u64,
    /// Quoted name and status line of every item that failed.
    errors: Vec<(String, String)>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            status: status_line(StatusCode::OK),
            body: String::new(),
            deleted: 0,
            not_found: 0,
            errors: Vec::new(),
        }
    }

    fn failed(mut self, status: StatusCode, body: &str) -> Self {
        self.status = status_line(status);
        body.clone_into(&mut self.body);
        self
    }

    /// The body as `get_heartbeat_response_body` writes it (`format` `None`: plain).
    pub(super) fn render(&self, format: Option<Format>) -> String {
        match format {
            Some(Format::Json) => {
                let errors: Vec<Value> = self
                    .errors
                    .iter()
                    .map(|(n, s)| Value::from(vec![n.as_str(), s.as_str()]))
                    .collect();
                format!(
                    "{{\"Response Status\": {}, \"Response Body\": {}, \"Number Deleted\": {}, \"Number Not Found\": {}, \"Errors\": {}}}",
                    stackfed_http::pyjson::string(&self.status),
                    stackfed_http::pyjson::string(&self.body),
                    self.deleted,
                    self.not_found,
                    json_list(&errors),
                )
            }
            Some(Format::Xml(_)) => {
                let mut out = format!(
                    "<delete>\n<number_deleted>{}</number_deleted>\n<number_not_found>{}</number_not_found>\n<response_body>{}</response_body>\n<response_status>{}</response_status>\n<errors>\n",
                    self.deleted,
                    self.not_found,
                    xml_escape(&self.body),
                    xml_escape(&self.status),
                );
                for (n, s) in &self.errors {
                    out.push_str(&format!(
                        "<object><name>{}</name><status>{}</status></object>\n",
                        xml_escape(n),
                        xml_escape(s)
                    ));
                }
                out.push_str("</errors>\n</delete>\n");
                out
            }
            Some(Format::Plain) | None => {
                let mut out = format!(
                    "Number Deleted: {}\nNumber Not Found: {}\nResponse Body: {}\nResponse Status: {}\nErrors:\n",
                    self.deleted, self.not_found, self.body, self.status
                );
                for (n, s) in &self.errors {
                    out.push_str(&format!("{n}, {s}\n"));
                }
                out
            }
        }
    }
}

/// A JSON list of `[name, status]` pairs with Python's separators.
fn json_list(items: &[Value]) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|v| {
            let pair: Vec<String> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| stackfed_http::pyjson::string(s.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            format!("[{}]", pair.join(", "))
        })
        .collect();
    format!("[{}]", inner.join(", "))
}

/// `xml.sax.saxutils.escape`.
pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
                .map_err(|s| Outcome::new().failed(s, ""))?;
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
            return Err(Outcome::new().failed(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Maximum Bulk Deletes: {max} per request"),
            ));
        }
        if line.len() > MAX_PATH_LENGTH * 2 {
            return Err(Outcome::new().failed(StatusCode::BAD_REQUEST, "Invalid File Name"));
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

/// Adds `bulk_delete` to the federation's `/info` when no cluster advertised it: the
/// proxy does bulk deletes itself, with Swift's default limits.
pub(super) fn advertise(info: &mut Value) {
    if let Some(map) = info.as_object_mut() {
        map.entry("bulk_delete").or_insert_with(|| {
            serde_json::json!({
                "max_deletes_per_request": DEFAULT_MAX_DELETES,
                "max_failed_deletes": DEFAULT_MAX_FAILED_DELETES,
            })
        });
    }
}

impl FederationService {
    /// Answers a bulk delete (see the [module docs](self)): `200` once the list is read,
    /// whitespace while the items are deleted, then the result.
    pub(super) async fn bulk_delete(
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
                        .bulk_delete_items(names, account, token, max_failed),
                )
            }
        };
        let xml = matches!(format, Some(Format::Xml(_)));
        let stream = futures::stream::unfold(Some((work, false)), move |state| async move {
            let (mut work, beaten) = state?;
            tokio::select! {
                outcome = &mut work => {
                    let mut out = String::new();
                    if beaten {
                        out.push_str("\r\n\r\n");
                    }
                    out.push_str(&outcome.render(format));
                    Some((Ok::<_, std::convert::Infallible>(Bytes::from(out)), None))
                }
                () = tokio::time::sleep(HEARTBEAT) => {
                    let beat: &'static [u8] = if xml && !beaten {
                        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    } else {
                        b" "
                    };
                    Some((Ok(Bytes::from_static(beat)), Some((work, true))))
                }
            }
        });
        let mut resp = Response::new(from_stream(stream));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(
                format.map_or("text/html; charset=UTF-8", Format::content_type),
            ),
        );
        resp
    }

    /// The checks of Swift's `handle_delete_iter` and the list it reads; the names and
    /// `max_failed_deletes`, or the refusal.
    async fn bulk_delete_list(
        &self,
        parts: &Parts,
        body: Body,
        format: Option<Format>,
    ) -> Result<(Vec<Vec<u8>>, u64), Outcome> {
        let refused = |status| Outcome::new().failed(status, "");
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
        let limit = |key: &str, default: u64| {
            info.pointer(&format!("/bulk_delete/{key}"))
                .and_then(Value::as_u64)
                .unwrap_or(default)
        };
        let max_deletes = limit("max_deletes_per_request", DEFAULT_MAX_DELETES);
        let max_failed = limit("max_failed_deletes", DEFAULT_MAX_FAILED_DELETES);
        Ok((read_names(body, max_deletes).await?, max_failed))
    }

    /// The deletes of an SLO's `?multipart-manifest=delete` (its segments, then the
    /// manifest), with Swift's default failure limit.
    pub(super) async fn delete_in_order(
        self,
        names: Vec<Vec<u8>>,
        account: AccountName,
        token: Option<HeaderValue>,
    ) -> Outcome {
        self.bulk_delete_items(names, account, token, DEFAULT_MAX_FAILED_DELETES)
            .await
    }

    /// The deletes of Swift's `handle_delete_iter`, objects first, and the result.
    async fn bulk_delete_items(
        self,
        names: Vec<Vec<u8>>,
        account: AccountName,
        token: Option<HeaderValue>,
        max_failed: u64,
    ) -> Outcome {
        let mut outcome = Outcome::new();
        let mut bad_gateway = false;
        let mut aborted = false;
        for objects in [true, false] {
            let mut pending = FuturesOrdered::new();
            let mut items = names
                .iter()
                .filter(|n| !n.is_empty() && is_object(n) == objects);
            loop {
                while !aborted && pending.len() < CONCURRENCY {
                    let Some(name) = items.next() else { break };
                    let quoted = percent_encode(name, QUOTE).to_string();
                    let item = match std::str::from_utf8(name) {
                        Ok(n) if !n.contains('\0') => {
                            let path = format!(
                                "{}/{}",
                                crate::cluster::swift_path(&account, None, None),
                                percent_encode(n.trim_start_matches('/').as_bytes(), QUOTE)
                            );
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
                    200..=299 => outcome.deleted += 1,
                    404 => outcome.not_found += 1,
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
            outcome.status = status_line(status);
        } else if outcome.deleted == 0 && outcome.not_found == 0 {
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
        let mut req = Request::new(());
        *req.method_mut() = Method::DELETE;
        let Ok(uri) = path.parse() else {
            return StatusCode::PRECONDITION_FAILED;
        };
        *req.uri_mut() = uri;
        if let Some(t) = token {
            req.headers_mut().insert("x-auth-token", t);
        }
        // Through the service's named (boxed) future: the item runs every phase.
        let mut svc = self;
        let call = tower::Service::call(
            &mut svc,
            req.map(|()| http_body_util::Empty::<Bytes>::new()),
        );
        let Ok(resp) = call.await;
        let status = resp.status();
        // Read the (short) answer so its connection can be reused; never more.
        let mut body = resp.into_body();
        let mut read = 0;
        while read <= ITEM_BODY_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_swob_does() {
        let n = |a: &str| negotiate(Some(a.as_bytes()));
        assert_eq!(negotiate(None), Some(Format::Plain));
        assert_eq!(n(""), Some(Format::Plain));
        assert_eq!(n("application/json"), Some(Format::Json));
        assert_eq!(n("text/xml"), Some(Format::Xml("text/xml")));
        assert_eq!(n("*/*"), Some(Format::Plain));
        assert_eq!(n("application/*"), Some(Format::Json));
        assert_eq!(
            n("text/plain;q=0.5, application/xml;q=0.9"),
            Some(Format::Xml("application/xml"))
        );
        assert_eq!(n("*/*;q=0.9, application/json"), Some(Format::Json));
        assert_eq!(n("image/png"), None);
        assert_eq!(n("garbage"), None);
        assert_eq!(n("application/json;q=x"), None);
        assert_eq!(n("application/json; q=1; q=1"), None);
    }

    #[test]
    fn objects_and_containers() {
        assert!(is_object(b"/c/o"));
        assert!(is_object(b"c/o/"));
        assert!(!is_object(b"/c/"));
        assert!(!is_object(b"/"));
    }

    #[test]
    fn renders_as_swift_does() {
        let mut o = Outcome::new();
        o.deleted = 2;
        o.not_found = 3;
        o.status = status_line(StatusCode::BAD_REQUEST);
        o.errors
            .push(("/full".into(), status_line(StatusCode::CONFLICT)));
        assert_eq!(
            o.render(Some(Format::Json)),
            r#"{"Response Status": "400 Bad Request", "Response Body": "", "Number Deleted": 2, "Number Not Found": 3, "Errors": [["/full", "409 Conflict"]]}"#
        );
        assert_eq!(
            o.render(Some(Format::Plain)),
            "Number Deleted: 2\nNumber Not Found: 3\nResponse Body: \nResponse Status: 400 Bad Request\nErrors:\n/full, 409 Conflict\n"
        );
        assert_eq!(
            o.render(Some(Format::Xml("text/xml"))),
            "<delete>\n<number_deleted>2</number_deleted>\n<number_not_found>3</number_not_found>\n<response_body></response_body>\n<response_status>400 Bad Request</response_status>\n<errors>\n<object><name>/full</name><status>409 Conflict</status></object>\n</errors>\n</delete>\n"
        );
        assert_eq!(
            status_line(StatusCode::PAYLOAD_TOO_LARGE),
            "413 Request Entity Too Large"
        );
    }
}
