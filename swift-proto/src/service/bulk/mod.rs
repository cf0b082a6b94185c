//! The bulk family, as Swift's bulk middleware (`swift/common/middleware/bulk.py`)
//! answers it, in front of clusters that may not run that middleware:
//!
//! - `delete`: `POST` (or `DELETE`) `?bulk-delete`, a list of names in many
//!   containers;
//! - `extract`: `PUT ?extract-archive=tar|tar.gz|tar.bz2`, an archive whose files
//!   become objects, in containers created on demand.
//!
//! Both run every item as a request of its own through this service's phases (as the
//! middleware sends its subrequests through the rest of Swift's pipeline), so each
//! item goes to its container's cluster, new containers are placed and recorded as any
//! container `PUT`, and each item is authorised as the caller. Both answer in the one
//! format this module writes ([`Report`], Swift's `get_heartbeat_response_body`):
//! always `200 OK`, the result in the body as the `Accept` header negotiates it, with
//! whitespace sent every ten seconds while the work goes on ([`heartbeat_response`]).

mod delete;
mod extract;

/// The bulk-delete parsers, for the fuzz targets (`fuzz/`, feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub use delete::fuzz;

pub(super) use delete::is_bulk_delete;
pub(super) use extract::{extract_archive, Compression};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use federation_core::AccountName;
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use stackfed_http::{from_stream, Body};

use super::FederationService;
use crate::path::SwiftPath;

/// The formats Swift's bulk middleware offers, in its order of preference.
const ACCEPTABLE_FORMATS: [&str; 4] = [
    "text/plain",
    "application/json",
    "application/xml",
    "text/xml",
];
/// Swift's `max_path_length` in the bulk middleware: object name, container name and
/// two slashes.
const MAX_PATH_LENGTH: usize = 1024 + 256 + 2;
/// How often whitespace goes out while the work goes on (Swift's `yield_frequency`).
const HEARTBEAT: Duration = Duration::from_secs(10);
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

/// `xml.sax.saxutils.escape`.
pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What a bulk request did, as Swift's middleware reports it: its `resp_dict` (status,
/// body and counts) and the failed items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Report {
    /// The XML root element: `delete` or `extract`.
    root: &'static str,
    status: String,
    body: String,
    /// The counts, in the order Swift's `resp_dict` has them.
    counts: Vec<(&'static str, u64)>,
    /// Quoted name and status line of every item that failed.
    errors: Vec<(String, String)>,
}

impl Report {
    /// A report whose status is `status`, with the counts at zero.
    fn new(root: &'static str, status: StatusCode, counts: &[&'static str]) -> Self {
        Self {
            root,
            status: status_line(status),
            body: String::new(),
            counts: counts.iter().map(|k| (*k, 0)).collect(),
            errors: Vec::new(),
        }
    }

    /// Adds one to the count at `index`.
    fn count(&mut self, index: usize) {
        if let Some((_, n)) = self.counts.get_mut(index) {
            *n += 1;
        }
    }

    /// The count at `index`.
    fn counted(&self, index: usize) -> u64 {
        self.counts.get(index).map_or(0, |(_, n)| *n)
    }

    /// Sets the status, as Swift's `resp_dict['Response Status']`.
    fn set_status(&mut self, status: StatusCode) {
        self.status = status_line(status);
    }

    /// The answer of an `HTTPException` raised in the middle: its status and body.
    fn failed(mut self, status: StatusCode, body: &str) -> Self {
        self.status = status_line(status);
        body.clone_into(&mut self.body);
        self
    }

    /// Swift's `get_heartbeat_response_body` (`format` `None`: plain).
    pub(super) fn render(&self, format: Option<Format>) -> String {
        use stackfed_http::pyjson::string as js;
        use std::fmt::Write as _;
        // Plain text and XML list the keys sorted; JSON keeps the dict's order.
        let mut sorted: Vec<(&str, String)> = self
            .counts
            .iter()
            .map(|(k, n)| (*k, n.to_string()))
            .chain([
                ("Response Body", self.body.clone()),
                ("Response Status", self.status.clone()),
            ])
            .collect();
        sorted.sort();
        let mut out = String::new();
        match format {
            Some(Format::Json) => {
                let _ = write!(
                    out,
                    "{{\"Response Status\": {}, \"Response Body\": {}",
                    js(&self.status),
                    js(&self.body)
                );
                for (k, n) in &self.counts {
                    let _ = write!(out, ", {}: {n}", js(k));
                }
                let errors: Vec<String> = self
                    .errors
                    .iter()
                    .map(|(n, s)| format!("[{}, {}]", js(n), js(s)))
                    .collect();
                let _ = write!(out, ", \"Errors\": [{}]}}", errors.join(", "));
            }
            Some(Format::Xml(_)) => {
                let _ = writeln!(out, "<{}>", self.root);
                for (k, v) in &sorted {
                    let tag = k.replace(' ', "_").to_lowercase();
                    let _ = writeln!(out, "<{tag}>{}</{tag}>", xml_escape(v));
                }
                out.push_str("<errors>\n");
                for (n, s) in &self.errors {
                    let _ = writeln!(
                        out,
                        "<object><name>{}</name><status>{}</status></object>",
                        xml_escape(n),
                        xml_escape(s)
                    );
                }
                let _ = writeln!(out, "</errors>\n</{}>", self.root);
            }
            Some(Format::Plain) | None => {
                for (k, v) in &sorted {
                    let _ = writeln!(out, "{k}: {v}");
                }
                out.push_str("Errors:\n");
                for (n, s) in &self.errors {
                    let _ = writeln!(out, "{n}, {s}");
                }
            }
        }
        out
    }
}

/// A `u64` limit from the federation's `/info` (`/section/key`), or Swift's default.
fn info_limit(info: &Value, pointer: &str, default: u64) -> u64 {
    info.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or(default)
}

/// Adds `bulk_delete` and `bulk_upload` to the federation's `/info` when no cluster
/// advertised them: the proxy does both itself, with Swift's default limits.
pub(super) fn advertise(info: &mut Value) {
    if let Some(map) = info.as_object_mut() {
        map.entry("bulk_delete").or_insert_with(|| {
            serde_json::json!({
                "max_deletes_per_request": delete::DEFAULT_MAX_DELETES,
                "max_failed_deletes": delete::DEFAULT_MAX_FAILED_DELETES,
            })
        });
        map.entry("bulk_upload").or_insert_with(|| {
            serde_json::json!({
                "max_containers_per_extraction": extract::DEFAULT_MAX_CONTAINERS,
                "max_failed_extractions": extract::DEFAULT_MAX_FAILED,
            })
        });
    }
}

/// Swift's bulk answer: `200 OK` whatever happens, the head sent with the first bytes
/// (whitespace every [`HEARTBEAT`] while `work` runs, or the result), as Swift's
/// server sends it with the first chunk its middleware yields; then the `work`'s
/// report.
async fn heartbeat_response(format: Option<Format>, work: BoxFuture<Report>) -> Response<Body> {
    let xml = matches!(format, Some(Format::Xml(_)));
    let mut stream = Box::pin(futures::stream::unfold(
        Some((work, false)),
        move |state| async move {
            let (mut work, beaten) = state?;
            tokio::select! {
                report = &mut work => {
                    let mut out = String::new();
                    if beaten {
                        out.push_str("\r\n\r\n");
                    }
                    out.push_str(&report.render(format));
                    Some((Bytes::from(out), None))
                }
                () = tokio::time::sleep(HEARTBEAT) => {
                    let beat: &'static [u8] = if xml && !beaten {
                        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    } else {
                        b" "
                    };
                    Some((Bytes::from_static(beat), Some((work, true))))
                }
            }
        },
    ));
    let first = stream.next().await;
    let chunks = futures::stream::iter(first)
        .chain(stream)
        .map(Ok::<_, std::convert::Infallible>);
    let mut resp = Response::new(from_stream(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.map_or("text/html; charset=UTF-8", Format::content_type)),
    );
    resp
}

impl FederationService {
    /// One item of a bulk request: `method` on `path` (quoted, from `/v1`) through this
    /// service's phases, with `headers` (Swift's subrequests carry the bulk request's
    /// `X-Auth-Token` and little else) and `body`; the answer's status, its body read
    /// (and dropped, never more than [`ITEM_BODY_LIMIT`]) so its connection is reused.
    async fn item_request(
        self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Body,
    ) -> StatusCode {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        let Ok(uri) = path.parse() else {
            return StatusCode::PRECONDITION_FAILED;
        };
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        // Through the service's named (boxed) future: the item runs every phase.
        let mut svc = self;
        let Ok(resp) = tower::Service::call(&mut svc, req).await;
        let status = resp.status();
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

    /// Answers taken from a real Swift 2.38.3 cluster with the bulk middleware.
    #[test]
    fn renders_as_swift_does() {
        let mut o = Report::new(
            "delete",
            StatusCode::BAD_REQUEST,
            &["Number Deleted", "Number Not Found"],
        );
        o.counts = vec![("Number Deleted", 2), ("Number Not Found", 3)];
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
        let mut x = Report::new("extract", StatusCode::CREATED, &["Number Files Created"]);
        x.count(0);
        assert_eq!(
            x.render(Some(Format::Json)),
            r#"{"Response Status": "201 Created", "Response Body": "", "Number Files Created": 1, "Errors": []}"#
        );
        assert_eq!(
            x.render(Some(Format::Xml("text/xml"))),
            "<extract>\n<number_files_created>1</number_files_created>\n<response_body></response_body>\n<response_status>201 Created</response_status>\n<errors>\n</errors>\n</extract>\n"
        );
        let x = Report::new("extract", StatusCode::CREATED, &["Number Files Created"])
            .failed(StatusCode::NOT_ACCEPTABLE, "");
        assert_eq!(
            x.render(None),
            "Number Files Created: 0\nResponse Body: \nResponse Status: 406 Not Acceptable\nErrors:\n"
        );
    }
}
