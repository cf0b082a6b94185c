//! Bulk upload: `PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=tar|tar.gz|tar.bz2`,
//! as Swift's `handle_extract_iter` does it.
//!
//! The archive is read as it arrives, never held whole: one blocking thread (Swift's
//! `tarfile` is synchronous too) decompresses the body (`flate2`, `bzip2`), walks the
//! entries (`tar`) and hands each regular file to the service, whose bytes follow in
//! 64 KiB chunks through a channel of two: memory stays a few chunks per upload. Each
//! file becomes an object `PUT` through this service's own phases with the file's
//! size as `Content-Length` and its bytes as the body, so an object in an existing
//! container goes to that container's cluster, and a container the archive names
//! that does not exist yet (`HEAD` 404) is created by a container `PUT` first, placed
//! by the placement policy and recorded as any other. A file whose bytes end early
//! (a truncated archive, a client gone) fails its `PUT` (the body errs before its
//! length), so no truncated object is ever stored.
//!
//! Swift's rules, kept: the first path component names the container at account
//! level, the URL's container (and prefix) at container level; `./` and leading
//! slashes go, files at the top of an account-level archive are ignored, and so are
//! directories, links and every other non-regular entry; a name that is not UTF-8
//! fails with 412, a file over `max_file_size` with 413; pax `SCHILY.xattr.user.*` and
//! `LIBARCHIVE.xattr.user.*` headers give `Content-Type` (`mime_type`) and
//! `X-Object-Meta-*` (`meta.*`), the request's own `X-Object-Meta-*`,
//! `X-Delete-At` and `X-Delete-After` go to every object (not its `Content-Type`: the
//! cluster guesses each file's from its name); up to `max_containers_per_extraction`
//! new containers, and the upload stops after `max_failed_extractions` failures. A
//! caller without the right to create a container gets Swift's 401 at once; one who
//! may not write gets each file's 403 in `Errors`. The archive's errors carry Python's
//! `tarfile` messages (`Invalid Tar File: …`), including its leniency: a damaged
//! header after the first ends the archive without an error.

use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use percent_encoding::{percent_decode_str, percent_encode};
use stackfed_http::{from_stream, full, Body};
use tokio::sync::mpsc;

use super::{heartbeat_response, info_limit, negotiate, status_line, Format, Report};
use super::{MAX_PATH_LENGTH, QUOTE};
use crate::service::FederationService;

/// Swift's defaults, used when no cluster's `/info` gives them.
pub(super) const DEFAULT_MAX_CONTAINERS: u64 = 10_000;
pub(super) const DEFAULT_MAX_FAILED: u64 = 1_000;
/// Swift's `MAX_FILE_SIZE`, when `/info` does not give it.
const DEFAULT_MAX_FILE_SIZE: u64 = 5_368_709_122;
/// The bytes of a file handed over at once.
const CHUNK: usize = 64 * 1024;
/// A tar block.
const BLOCK: u64 = 512;

/// The archive's compression, from `?extract-archive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::service) enum Compression {
    None,
    Gzip,
    Bzip2,
}

/// Whether the request is a bulk upload: a `PUT` with an `extract-archive` query
/// parameter (Swift reads the last one); its compression, or `Err` for a format Swift
/// does not know.
pub(in crate::service) fn extract_archive(parts: &Parts) -> Option<Result<Compression, ()>> {
    if parts.method != Method::PUT {
        return None;
    }
    let value = url::form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .filter(|(k, _)| k == "extract-archive")
        .last()?
        .1;
    Some(match value.to_lowercase().trim_matches('.') {
        "tar" => Ok(Compression::None),
        "tar.gz" => Ok(Compression::Gzip),
        "tar.bz2" => Ok(Compression::Bzip2),
        _ => Err(()),
    })
}

/// Swift's `check_utf8`: UTF-8, no NUL.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&0) && std::str::from_utf8(name).is_ok()
}

/// The object path of an archive member (Swift's `obj_path`): `./` and leading
/// slashes dropped, under `base` (the URL's container and prefix, without trailing
/// slashes); `None` for a file at the top of an account-level upload (ignored).
fn object_path(base: &[u8], member: &[u8]) -> Option<Vec<u8>> {
    let mut name = member.strip_prefix(b"./").unwrap_or(member);
    while let [b'/', rest @ ..] = name {
        name = rest;
    }
    let mut path = base.to_vec();
    if !base.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path.contains(&b'/').then_some(path)
}

/// Python's `quote(name[:max_path_length], safe='/')`, as Swift names a failed item.
fn quoted(name: &[u8]) -> String {
    percent_encode(&name[..name.len().min(MAX_PATH_LENGTH)], QUOTE).to_string()
}

/// Swift's `pax_key_to_swift_header`: the header a pax record sets, if any.
fn pax_header(key: &str) -> Option<String> {
    const PREFIXES: [&str; 2] = ["SCHILY.xattr.user.", "LIBARCHIVE.xattr.user."];
    let rest = PREFIXES.iter().find_map(|p| key.strip_prefix(p))?;
    if rest == "mime_type" {
        return Some("Content-Type".to_owned());
    }
    rest.strip_prefix("meta.")
        .map(|m| format!("X-Object-Meta-{m}"))
}

/// What the reading thread hands over.
enum Item {
    /// A regular file: its name, size and pax records; its bytes follow on `data`
    /// (dropping the receiver skips them); `failed` is set to the status Swift gives
    /// the file's `PUT` when its bytes could not all be read.
    File {
        name: Vec<u8>,
        size: u64,
        pax: Vec<(String, Vec<u8>)>,
        data: mpsc::Receiver<io::Result<Bytes>>,
        failed: Arc<AtomicU16>,
    },
    /// The end of the archive: `None` at a proper end, else why it stopped.
    End(Option<Stop>),
}

/// Why the archive stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// Python's `tarfile` error message.
    Tar(&'static str),
    /// The request body failed (the client went away).
    Client,
}

/// What the reading thread learned of the streams under the tar reader.
#[derive(Default)]
struct Probe {
    /// Bytes of tar data (decompressed) read so far.
    total: u64,
    /// The first block of tar data (Python judges the first header by it).
    first: Vec<u8>,
    client_failed: bool,
    decompress_failed: bool,
}

type Shared = Arc<Mutex<Probe>>;

fn note(probe: &Shared, f: impl FnOnce(&mut Probe)) {
    if let Ok(mut p) = probe.lock() {
        f(&mut p);
    }
}

/// The request body, blocking; notes when it fails.
struct ClientReader<R> {
    inner: R,
    probe: Shared,
}

impl<R: Read> Read for ClientReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| {
            note(&self.probe, |p| p.client_failed = true);
        })
    }
}

/// A decompressor as Python's `_Stream` reads one: input that ends early ends the
/// output (no error); corrupt input is "invalid compressed data".
struct Decoded<R> {
    inner: R,
    probe: Shared,
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let client = self.probe.lock().map(|p| p.client_failed).unwrap_or(true);
                if !client && e.kind() == io::ErrorKind::UnexpectedEof {
                    return Ok(0);
                }
                if !client {
                    note(&self.probe, |p| p.decompress_failed = true);
                }
                Err(e)
            }
        }
    }
}

/// The tar data: counts it and keeps its first block.
struct Counted<R> {
    inner: R,
    probe: Shared,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        note(&self.probe, |p| {
            let keep = (BLOCK as usize).saturating_sub(p.first.len()).min(n);
            p.first.extend_from_slice(&buf[..keep]);
            p.total += n as u64;
        });
        Ok(n)
    }
}

/// Python's `nti` on a numeric header field: `None` where it raises.
fn python_number(field: &[u8]) -> Option<i128> {
    if let [first, rest @ ..] = field {
        if *first == 0o200 || *first == 0o377 {
            // Base-256 (GNU): Python reads it without complaint.
            let mut n: i128 = 0;
            for b in rest {
                n = n.checked_mul(256)? + i128::from(*b);
            }
            return Some(if *first == 0o377 {
                n - (1i128 << (8 * rest.len()))
            } else {
                n
            });
        }
    }
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let text = std::str::from_utf8(&field[..end]).ok()?.trim();
    if !text.is_ascii() {
        return None;
    }
    if text.is_empty() {
        return Some(0);
    }
    i128::from_str_radix(text, 8).ok()
}

/// Python's message for a first header the tar reader refused (`TarFile.next` at
/// offset 0).
fn first_header_error(block: &[u8]) -> &'static str {
    if block.is_empty() {
        return "empty file";
    }
    if (block.len() as u64) < BLOCK {
        return "truncated header";
    }
    let Some(sum) = python_number(&block[148..156]) else {
        return "invalid header";
    };
    let spaces = |b: &[u8]| -> (i128, i128) {
        b.iter().enumerate().fold((0, 0), |(u, s), (i, byte)| {
            let byte = if (148..156).contains(&i) { b' ' } else { *byte };
            (u + i128::from(byte), s + i128::from(byte as i8))
        })
    };
    let (unsigned, signed) = spaces(block);
    if sum != unsigned && sum != signed {
        return "bad checksum";
    }
    match block[156] {
        b'x' | b'g' | b'L' | b'K' => "missing or bad subsequent header",
        _ => "invalid header",
    }
}

/// Reads the archive from `body` on a blocking thread, handing each regular file to
/// `items` (see [`Item`]); stops when the receiver is gone.
fn read_archive(
    body: Body,
    compression: Compression,
    items: &mpsc::Sender<Item>,
    handle: tokio::runtime::Handle,
) {
    let probe: Shared = Arc::default();
    let stream = http_body_util::BodyDataStream::new(body).map(|r| r.map_err(io::Error::other));
    let bridge = tokio_util::io::SyncIoBridge::new_with_handle(
        tokio_util::io::StreamReader::new(stream),
        handle,
    );
    let mut raw = ClientReader {
        inner: bridge,
        probe: probe.clone(),
    };
    let end = |stop: Stop| {
        let _ = items.blocking_send(Item::End(Some(stop)));
    };
    let data: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => {
            // Python reads the gzip header itself, with its own messages.
            let mut head = Vec::new();
            if (&mut raw).take(3).read_to_end(&mut head).is_err() {
                return end(Stop::Client);
            }
            if head.len() < 2 || head[..2] != [0x1f, 0x8b] {
                return end(Stop::Tar("not a gzip file"));
            }
            if head.get(2) != Some(&8) {
                return end(Stop::Tar("unsupported compression method"));
            }
            Box::new(Decoded {
                inner: flate2::read::GzDecoder::new(io::Cursor::new(head).chain(raw)),
                probe: probe.clone(),
            })
        }
        Compression::Bzip2 => Box::new(Decoded {
            inner: bzip2::read::BzDecoder::new(raw),
            probe: probe.clone(),
        }),
    };
    let mut archive = tar::Archive::new(Counted {
        inner: data,
        probe: probe.clone(),
    });
    let why = |first: bool, next_header: u64| -> Option<Stop> {
        let p = probe.lock().ok()?;
        if p.client_failed {
            Some(Stop::Client)
        } else if p.decompress_failed {
            Some(Stop::Tar("invalid compressed data"))
        } else if first {
            Some(Stop::Tar(first_header_error(&p.first)))
        } else if p.total < next_header {
            Some(Stop::Tar("unexpected end of data"))
        } else {
            // Python's `tarfile` takes a bad header after the first for the end.
            None
        }
    };
    let Ok(entries) = archive.entries() else {
        return end(Stop::Tar("invalid header"));
    };
    let mut first = true;
    let mut next_header = 0;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) => {
                let _ = items.blocking_send(Item::End(why(first, next_header)));
                return;
            }
        };
        first = false;
        next_header = entry.raw_file_position() + entry.size().div_ceil(BLOCK) * BLOCK;
        let header = entry.header();
        let name = entry.path_bytes().into_owned();
        // Python: a regular file (`0`, NUL or `7`), but a NUL-typed one named with
        // a trailing slash is an old-style directory.
        let regular = matches!(header.as_bytes()[156], b'0' | b'7')
            || (header.as_bytes()[156] == 0 && !name.ends_with(b"/"));
        if !regular {
            continue;
        }
        let size = entry.size();
        let mut pax = Vec::new();
        if let Ok(Some(records)) = entry.pax_extensions() {
            for r in records.flatten() {
                if let Ok(k) = r.key() {
                    pax.push((k.to_owned(), r.value_bytes().to_vec()));
                }
            }
        }
        let (tx, data) = mpsc::channel(2);
        let failed = Arc::new(AtomicU16::new(0));
        let item = Item::File {
            name,
            size,
            pax,
            data,
            failed: failed.clone(),
        };
        if items.blocking_send(item).is_err() {
            return;
        }
        let mut left = size;
        let mut buf = vec![0; CHUNK];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(CHUNK));
            match entry.read(&mut buf[..want]) {
                Ok(0) => {
                    // The archive ends inside the file: Python's "unexpected end of
                    // data" fails the object PUT with 500.
                    failed.store(500, Ordering::SeqCst);
                    let _ = tx.blocking_send(Err(io::ErrorKind::UnexpectedEof.into()));
                    break;
                }
                Ok(n) => {
                    left -= n as u64;
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break; // skipped: the tar reader skips the rest
                    }
                }
                Err(e) => {
                    let client = probe.lock().map(|p| p.client_failed).unwrap_or(true);
                    failed.store(if client { 499 } else { 500 }, Ordering::SeqCst);
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    }
    let stop = if first && probe.lock().is_ok_and(|p| p.total == 0) {
        Some(Stop::Tar("empty file"))
    } else {
        None
    };
    let _ = items.blocking_send(Item::End(stop));
}

/// The counts of a bulk upload's report.
const COUNTS: [&str; 1] = ["Number Files Created"];

impl Report {
    /// A bulk upload's report, `201 Created` so far.
    fn extract() -> Self {
        Self::new("extract", StatusCode::CREATED, &COUNTS)
    }
}

/// The limits an upload runs under (from `/info`).
struct Limits {
    max_containers: u64,
    max_failed: u64,
    max_file_size: u64,
}

impl FederationService {
    /// Answers a bulk upload (see the [module docs](self)).
    pub(in crate::service) async fn bulk_extract(
        &self,
        parts: Parts,
        body: Body,
        compression: Result<Compression, ()>,
    ) -> Response<Body> {
        let Ok(compression) = compression else {
            let mut r = Response::new(full("Unsupported archive format"));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=UTF-8"),
            );
            return r;
        };
        let format = negotiate(parts.headers.get(header::ACCEPT).map(HeaderValue::as_bytes));
        let work = Box::pin(self.clone().extract(parts, body, compression, format));
        heartbeat_response(format, work).await
    }

    /// Swift's `handle_extract_iter`: the report.
    async fn extract(
        self,
        parts: Parts,
        body: Body,
        compression: Compression,
        format: Option<Format>,
    ) -> Report {
        let mut report = Report::extract();
        if format.is_none() {
            return report.failed(StatusCode::NOT_ACCEPTABLE, "");
        }
        let h = &parts.headers;
        let chunked = h
            .get(header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if !h.contains_key(header::CONTENT_LENGTH) && !chunked {
            return report.failed(StatusCode::LENGTH_REQUIRED, "");
        }
        // `split_path(2, 3, True)` of the decoded path: version, account, the rest.
        let path: Vec<u8> = percent_decode_str(parts.uri.path()).collect();
        let mut segs = path.splitn(4, |b| *b == b'/').skip(1);
        let (Some(version), Some(account)) = (segs.next(), segs.next()) else {
            return report.failed(StatusCode::NOT_FOUND, "");
        };
        let mut base = segs.next().unwrap_or_default();
        while let [rest @ .., b'/'] = base {
            base = rest;
        }
        let mut account_path = b"/".to_vec();
        account_path.extend_from_slice(version);
        account_path.push(b'/');
        account_path.extend_from_slice(account);
        account_path.push(b'/');
        let (info, _) = self.info().await;
        let limits = Limits {
            max_containers: info_limit(
                &info,
                "/bulk_upload/max_containers_per_extraction",
                DEFAULT_MAX_CONTAINERS,
            ),
            max_failed: info_limit(
                &info,
                "/bulk_upload/max_failed_extractions",
                DEFAULT_MAX_FAILED,
            ),
            max_file_size: info_limit(&info, "/swift/max_file_size", DEFAULT_MAX_FILE_SIZE),
        };
        let (tx, mut items) = mpsc::channel(1);
        let handle = tokio::runtime::Handle::current();
        // The thread ends with the body, or as soon as `items` is dropped.
        drop(tokio::task::spawn_blocking(move || {
            read_archive(body, compression, &tx, handle);
        }));
        let ctx = Upload {
            parts: &parts,
            account_path,
            base: base.to_vec(),
            limits,
        };
        let outcome = self.extract_items(&ctx, &mut items, &mut report).await;
        match outcome {
            // With errors, the status was set as the items went (502 after a server
            // error, else 400).
            Ok(()) if report.errors.is_empty() && report.counted(0) == 0 => {
                report.failed(StatusCode::BAD_REQUEST, "Invalid Tar File: No Valid Files")
            }
            Ok(()) => report,
            Err((status, body)) => report.failed(status, &body),
        }
    }

    /// The files of the archive, one after the other (Swift's loop); `Err` for what
    /// Swift raises in the middle (its status and body).
    async fn extract_items(
        &self,
        ctx: &Upload<'_>,
        items: &mut mpsc::Receiver<Item>,
        report: &mut Report,
    ) -> Result<(), (StatusCode, String)> {
        let mut accessed: HashSet<Vec<u8>> = HashSet::new();
        let mut created: u64 = 0;
        let mut failed_status = StatusCode::BAD_REQUEST;
        loop {
            let item = items.recv().await;
            if report.errors.len() as u64 >= ctx.limits.max_failed {
                break;
            }
            let (name, size, pax, data, failed) = match item {
                None => return Err((StatusCode::INTERNAL_SERVER_ERROR, String::new())),
                Some(Item::End(None)) => break,
                Some(Item::End(Some(Stop::Tar(msg)))) => {
                    return Err((StatusCode::BAD_REQUEST, format!("Invalid Tar File: {msg}")))
                }
                Some(Item::End(Some(Stop::Client))) => {
                    return Err((StatusCode::from_u16(499).unwrap_or_default(), String::new()))
                }
                Some(Item::File {
                    name,
                    size,
                    pax,
                    data,
                    failed,
                }) => (name, size, pax, data, failed),
            };
            let Some(obj_path) = object_path(&ctx.base, &name) else {
                continue;
            };
            let mut destination = ctx.account_path.clone();
            destination.extend_from_slice(&obj_path);
            if !valid_name(&destination) {
                report.errors.push((
                    quoted(&obj_path),
                    status_line(StatusCode::PRECONDITION_FAILED),
                ));
                continue;
            }
            if size > ctx.limits.max_file_size {
                report.errors.push((
                    quoted(&obj_path),
                    status_line(StatusCode::PAYLOAD_TOO_LARGE),
                ));
                continue;
            }
            let container = obj_path
                .split(|b| *b == b'/')
                .next()
                .unwrap_or_default()
                .to_vec();
            let mut container_failure = None;
            if !accessed.contains(&container) {
                let mut cont_path = ctx.account_path.clone();
                cont_path.extend_from_slice(&container);
                match self.clone().create_container(ctx, &cont_path).await {
                    Ok(true) => {
                        created += 1;
                        if created > ctx.limits.max_containers {
                            return Err((
                                StatusCode::BAD_REQUEST,
                                format!(
                                    "More than {} containers to create from tar.",
                                    ctx.limits.max_containers
                                ),
                            ));
                        }
                    }
                    Ok(false) => {}
                    Err(status) => {
                        // The object PUT may still succeed (ACLs).
                        container_failure = Some((quoted(&cont_path), status_line(status)));
                        if status == StatusCode::UNAUTHORIZED {
                            return Err((StatusCode::UNAUTHORIZED, String::new()));
                        }
                    }
                }
            }
            let headers = object_headers(ctx.parts, size, &pax);
            let body = from_stream(futures::stream::unfold(data, |mut rx| async move {
                rx.recv().await.map(|chunk| (chunk, rx))
            }));
            let uri = percent_encode(&destination, QUOTE).to_string();
            let mut status = self
                .clone()
                .item_request(Method::PUT, &uri, headers, body)
                .await;
            // A file whose bytes could not all be read fails as it does in Swift,
            // whatever the cluster made of the aborted PUT.
            if let Ok(s) = StatusCode::from_u16(failed.load(Ordering::SeqCst)) {
                status = s;
            }
            accessed.insert(container);
            if status.is_success() {
                report.count(0);
                continue;
            }
            if let Some(f) = container_failure {
                report.errors.push(f);
            }
            if status == StatusCode::UNAUTHORIZED {
                report
                    .errors
                    .push((quoted(&obj_path), status_line(StatusCode::UNAUTHORIZED)));
                return Err((StatusCode::UNAUTHORIZED, String::new()));
            }
            if status.is_server_error() {
                failed_status = StatusCode::BAD_GATEWAY;
            }
            report.errors.push((quoted(&obj_path), status_line(status)));
        }
        if !report.errors.is_empty() {
            report.set_status(failed_status);
        }
        Ok(())
    }

    /// Swift's `create_container`: `Ok(false)` when the container exists (`HEAD`
    /// succeeds), `Ok(true)` when a `PUT` created it, else the failing status.
    async fn create_container(
        self,
        ctx: &Upload<'_>,
        cont_path: &[u8],
    ) -> Result<bool, StatusCode> {
        let uri = percent_encode(cont_path, QUOTE).to_string();
        let status = self
            .clone()
            .item_request(Method::HEAD, &uri, ctx.token(), stackfed_http::empty())
            .await;
        if status.is_success() {
            return Ok(false);
        }
        if status != StatusCode::NOT_FOUND {
            return Err(status);
        }
        let status = self
            .item_request(Method::PUT, &uri, ctx.token(), stackfed_http::empty())
            .await;
        if status.is_success() {
            Ok(true)
        } else {
            Err(status)
        }
    }
}

/// One upload's request and limits.
struct Upload<'a> {
    parts: &'a Parts,
    /// `/<version>/<account>/`, decoded.
    account_path: Vec<u8>,
    /// The container and prefix of the URL, decoded, without trailing slashes.
    base: Vec<u8>,
    limits: Limits,
}

impl Upload<'_> {
    /// The headers of a container subrequest: the caller's token only.
    fn token(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = self.parts.headers.get("x-auth-token") {
            h.insert("x-auth-token", t.clone());
        }
        h
    }
}

/// The headers of a file's object `PUT`: its length, the caller's token, the
/// request's `X-Delete-At`, `X-Delete-After` and `X-Object-Meta-*`, then the headers
/// the file's pax records set.
fn object_headers(parts: &Parts, size: u64, pax: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    for (k, v) in &parts.headers {
        let name = k.as_str();
        let meta = name
            .strip_prefix("x-object-meta-")
            .is_some_and(|m| !m.is_empty());
        if meta || name == "x-auth-token" || name == "x-delete-at" || name == "x-delete-after" {
            h.append(k.clone(), v.clone());
        }
    }
    for (key, value) in pax {
        let Some(name) = pax_header(key) else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            h.insert(n, v);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_as_swift_names_them() {
        let parts = |q: &str, m: Method| {
            let (p, ()) = http::Request::builder()
                .method(m)
                .uri(format!("/v1/a/c?{q}"))
                .body(())
                .unwrap_or_default()
                .into_parts();
            p
        };
        let x = |q: &str| extract_archive(&parts(q, Method::PUT));
        assert_eq!(x("extract-archive=tar"), Some(Ok(Compression::None)));
        assert_eq!(x("extract-archive=.TAR.GZ."), Some(Ok(Compression::Gzip)));
        assert_eq!(x("extract-archive=tar.bz2"), Some(Ok(Compression::Bzip2)));
        assert_eq!(x("extract-archive=zip"), Some(Err(())));
        assert_eq!(x("extract-archive"), Some(Err(())));
        assert_eq!(
            x("extract-archive=zip&extract-archive=tar"),
            Some(Ok(Compression::None))
        );
        assert_eq!(x("multipart-manifest=put"), None);
        assert_eq!(
            extract_archive(&parts("extract-archive=tar", Method::POST)),
            None
        );
    }

    #[test]
    fn object_paths_as_swift_builds_them() {
        assert_eq!(object_path(b"", b"c/o"), Some(b"c/o".to_vec()));
        assert_eq!(object_path(b"", b"./c/o"), Some(b"c/o".to_vec()));
        assert_eq!(object_path(b"", b"//c//o"), Some(b"c//o".to_vec()));
        assert_eq!(object_path(b"", b"top"), None);
        assert_eq!(object_path(b"", b"./top"), None);
        assert_eq!(object_path(b"c", b"top"), Some(b"c/top".to_vec()));
        assert_eq!(object_path(b"c/pre", b"./a/b"), Some(b"c/pre/a/b".to_vec()));
        assert!(!valid_name(b"/v1/a/c/\xff"));
        assert!(!valid_name(b"/v1/a/c/\0"));
        assert!(valid_name("/v1/a/c/ü".as_bytes()));
        assert_eq!(quoted(b"c5/\xff"), "c5/%FF");
        assert_eq!(quoted(&[b'o'; 2000]).len(), MAX_PATH_LENGTH);
    }

    #[test]
    fn pax_records_as_swift_maps_them() {
        assert_eq!(
            pax_header("SCHILY.xattr.user.mime_type").as_deref(),
            Some("Content-Type")
        );
        assert_eq!(
            pax_header("LIBARCHIVE.xattr.user.mime_type").as_deref(),
            Some("Content-Type")
        );
        assert_eq!(
            pax_header("SCHILY.xattr.user.meta.color").as_deref(),
            Some("X-Object-Meta-color")
        );
        assert_eq!(
            pax_header("LIBARCHIVE.xattr.user.meta.Size").as_deref(),
            Some("X-Object-Meta-Size")
        );
        assert_eq!(pax_header("SCHILY.xattr.user.other"), None);
        assert_eq!(pax_header("mtime"), None);
        assert_eq!(pax_header("SCHILY.xattr.security.meta.x"), None);
    }

    #[test]
    fn first_headers_judged_as_python_does() {
        assert_eq!(first_header_error(b""), "empty file");
        assert_eq!(first_header_error(&[b'x'; 100]), "truncated header");
        assert_eq!(first_header_error(&[b'g'; 512]), "invalid header");
        let mut block = [0u8; 512];
        block[148..155].copy_from_slice(b"0000001");
        assert_eq!(first_header_error(&block), "bad checksum");
        // A header whose checksum is right but that the reader refused otherwise.
        let mut block = [0u8; 512];
        block[156] = b'x';
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum::<u32>() + 8 * 32;
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert_eq!(
            first_header_error(&block),
            "missing or bad subsequent header"
        );
    }

    proptest! {
        /// Whatever the member's name, the object path is the base and the name
        /// without `./` and leading slashes, and a top-level file at account level
        /// is ignored.
        #[test]
        fn object_path_model(base in "[a-z/]{0,6}", name in "(\\./)?/{0,3}[a-z./]{0,12}") {
            let base = base.trim_end_matches('/');
            let mut n = name.as_str();
            n = n.strip_prefix("./").unwrap_or(n);
            let n = n.trim_start_matches('/');
            let want = if base.is_empty() { n.to_owned() } else { format!("{base}/{n}") };
            let got = object_path(base.as_bytes(), name.as_bytes());
            if want.contains('/') {
                prop_assert_eq!(got, Some(want.into_bytes()));
            } else {
                prop_assert_eq!(got, None);
            }
        }

        /// A quoted name decodes back to the name's first `MAX_PATH_LENGTH` bytes and
        /// uses only what Python's `quote(…, safe='/')` leaves.
        #[test]
        fn quoting_round_trips(name in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let q = quoted(&name);
            prop_assert!(q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b)));
            let back: Vec<u8> = percent_decode_str(&q).collect();
            prop_assert_eq!(&back[..], &name[..name.len().min(MAX_PATH_LENGTH)]);
        }

        /// Python's `nti` on octal fields: digits, NUL-ended, spaces around.
        #[test]
        fn octal_fields(n in 0u32..0o7777777, pad in 0usize..2) {
            let text = format!("{}{:o}\0", " ".repeat(pad), n);
            let mut field = [0u8; 8];
            let len = text.len().min(8);
            field[..len].copy_from_slice(&text.as_bytes()[..len]);
            prop_assume!(text.len() <= 8);
            prop_assert_eq!(python_number(&field), Some(i128::from(n)));
        }
    }
}
