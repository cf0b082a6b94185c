//! Which key signed a temp URL, as Swift's tempurl middleware (`tempurl.py`) decides
//! it: the proxy recomputes the signature with the account's and the container's keys
//! (read through a live session of the account) to learn the signature's **scope**. A
//! temp URL signed with an account key (`X-Account-Meta-Temp-URL-Key(-2)`) may reach
//! the whole account (a DLO's segments, a link's target in other containers); one signed
//! with a container key (`X-Container-Meta-Temp-URL-Key(-2)`) only its container.
//! The cluster holding the signed object still checks the signature itself; the proxy
//! only decides how far the authority it lends to the request's own subrequests goes.
//!
//! The checks are Swift's, in its order: `temp_url_sig` and `temp_url_expires` (an
//! integer or `%Y-%m-%dT%H:%M:%SZ`, not past), the digest (`<hex>` of sha1/sha256/sha512
//! length or `<digest>:<base64>`) among `/info`'s `tempurl.allowed_digests`, the object
//! path (or `temp_url_prefix`), `temp_url_ip_range` in the signed text; a `HEAD` is also
//! valid with a signature for `GET`, `POST` or `PUT`. The first key that matches
//! decides the scope, account keys first.

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderName, HeaderValue, Method};

use federation_core::AccountName;

use super::{Call, FederationService, Result};
use crate::path::SwiftPath;

/// How far a temp URL's signature reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Signed with an account key: the whole account.
    Account,
    /// Signed with a container key: that container.
    Container,
}

/// What a temp URL request lends its subrequests: a live session's token of the
/// account and the signature's scope. Computed once per request.
#[derive(Debug, Clone)]
pub(crate) struct Lent {
    token: String,
    scope: Scope,
}

/// The per-request memo of [`Lent`] (shared by the request's derived calls).
pub(crate) type LentCell = Arc<tokio::sync::OnceCell<Option<Lent>>>;

/// Swift's default `allowed_digests` when `/info` does not say.
const DEFAULT_DIGESTS: [&str; 2] = ["sha256", "sha512"];
/// Swift's default `methods`.
const METHODS: [&str; 5] = ["GET", "HEAD", "PUT", "POST", "DELETE"];
/// How many of the account's users (the newest live session of each) are tried to read
/// its keys (a session of a user without rights on the account cannot).
const SESSIONS_TRIED: usize = 8;

/// A temp URL's query parameters (the first value of each, decoded as `parse_qs`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TempUrlQuery {
    sig: Option<String>,
    expires: Option<String>,
    prefix: Option<String>,
    ip_range: Option<String>,
}

impl TempUrlQuery {
    /// The temp URL parameters of a query string.
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut q = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match k.as_ref() {
                "temp_url_sig" => &mut q.sig,
                "temp_url_expires" => &mut q.expires,
                "temp_url_prefix" => &mut q.prefix,
                "temp_url_ip_range" => &mut q.ip_range,
                _ => continue,
            };
            slot.get_or_insert_with(|| v.into_owned());
        }
        q
    }
}

/// Python's `int(text)` for a decimal text: surrounding whitespace, a sign, digits with
/// single underscores between them.
fn python_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let n: i64 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -n } else { n })
}

/// `timegm(strptime(text, '%Y-%m-%dT%H:%M:%SZ'))`: strptime takes one or two digits
/// for the fields after the year (up to four for the year); the padded text is
/// RFC 3339, which `humantime` reads.
fn iso8601(text: &str) -> Option<i64> {
    fn field(s: &str, max_len: usize) -> Option<u32> {
        if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([y, m, day], [h, mi, sec]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    let padded = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        field(y, 4)?,
        field(m, 2)?,
        field(day, 2)?,
        field(h, 2)?,
        field(mi, 2)?,
        field(sec, 2)?
    );
    let at = humantime::parse_rfc3339(&padded).ok()?;
    i64::try_from(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// `normalize_temp_url_expires`: the expiry as a Unix time, `None` when it does not
/// parse or is past (Swift's 0).
pub(crate) fn normalize_expires(value: &str, now: i64) -> Option<i64> {
    let at = python_int(value).or_else(|| iso8601(value))?;
    (at >= now && at != 0).then_some(at)
}

/// A supported digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

impl Digest {
    fn named(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Whether `tag` is the HMAC of `message` under `key` (constant time).
    fn verifies(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        fn check<M: Mac + KeyInit>(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(message);
                    mac.verify_slice(tag).is_ok()
                }
                Err(_) => false,
            }
        }
        match self {
            Self::Sha1 => check::<Hmac<sha1::Sha1>>(key, message, tag),
            Self::Sha256 => check::<Hmac<sha2::Sha256>>(key, message, tag),
            Self::Sha512 => check::<Hmac<sha2::Sha512>>(key, message, tag),
        }
    }

    /// The HMAC of `message` under `key`, in hex.
    #[cfg(test)]
    pub(crate) fn hex_hmac(self, key: &[u8], message: &[u8]) -> String {
        fn mac<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(message);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        let bytes = match self {
            Self::Sha1 => mac::<Hmac<sha1::Sha1>>(key, message),
            Self::Sha256 => mac::<Hmac<sha2::Sha256>>(key, message),
            Self::Sha512 => mac::<Hmac<sha2::Sha512>>(key, message),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `extract_digest_and_algorithm`: the digest and the signature's bytes.
pub(crate) fn extract_digest(sig: &str) -> Option<(Option<Digest>, Vec<u8>)> {
    if let Some((algo, value)) = sig.split_once(':') {
        let value = if (value.contains('-') || value.contains('_'))
            && !(value.contains('+') || value.contains('/'))
        {
            value.replace('-', "+").replace('_', "/")
        } else {
            value.to_owned()
        };
        // `strict_b64decode(value + '==')`: standard alphabet, padding optional.
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(value.trim_end_matches('='))
            .ok()?;
        return Some((Digest::named(algo), bytes));
    }
    if !sig.len().is_multiple_of(2) || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..sig.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sig[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    let digest = match sig.len() {
        40 => Digest::Sha1,
        64 => Digest::Sha256,
        128 => Digest::Sha512,
        _ => return None,
    };
    Some((Some(digest), bytes))
}

/// A request signed as a temp URL: what the signature covers.
#[derive(Debug, Clone)]
pub(crate) struct Signed<'a> {
    /// The request's method.
    pub(crate) method: &'a str,
    /// Account, container and object, decoded (the object may be empty).
    pub(crate) account: &'a str,
    pub(crate) container: &'a str,
    pub(crate) object: &'a str,
    /// The temp URL parameters.
    pub(crate) query: &'a TempUrlQuery,
}

/// The scope of the key that signed `req` (account keys tried first), or `None` when
/// none does (or the temp URL is not valid), as Swift's tempurl middleware decides.
pub(crate) fn scope_of(
    req: &Signed<'_>,
    keys: &[(String, Scope)],
    allowed: &[String],
    now: i64,
) -> Option<Scope> {
    let q = req.query;
    let sig = q.sig.as_deref().filter(|s| !s.is_empty())?;
    let expires = normalize_expires(q.expires.as_deref()?, now)?;
    let (digest, tag) = extract_digest(sig)?;
    let digest = digest.filter(|d| allowed.iter().any(|a| a == d.name()))?;
    if !METHODS.contains(&req.method) {
        return None;
    }
    let container_root = matches!(req.method, "GET" | "HEAD") && q.prefix.as_deref() == Some("");
    if req.object.is_empty() && !container_root {
        return None;
    }
    let (account, container, object) = (req.account, req.container, req.object);
    let path = match &q.prefix {
        None => format!("/v1/{account}/{container}/{object}"),
        Some(prefix) if object.starts_with(prefix.as_str()) => {
            format!("prefix:/v1/{account}/{container}/{prefix}")
        }
        Some(_) => return None,
    };
    let methods: &[&str] = if req.method == "HEAD" {
        &["HEAD", "GET", "POST", "PUT"]
    } else {
        std::slice::from_ref(&req.method)
    };
    for method in methods {
        let message = match q.ip_range.as_deref().filter(|r| !r.is_empty()) {
            Some(ip) => format!("ip={ip}\n{method}\n{expires}\n{path}"),
            None => format!("{method}\n{expires}\n{path}"),
        };
        for (key, scope) in keys {
            if digest.verifies(key.as_bytes(), message.as_bytes(), &tag) {
                return Some(*scope);
            }
        }
    }
    None
}

/// Whether a request is signed as a temp URL (`temp_url_sig` in its query).
pub(super) fn is_temp_url(parts: &http::request::Parts) -> bool {
    parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("temp_url_sig=")))
}

/// Python's `ip_network(text)` (strict: no host bits set): the network's first
/// address and prefix length; a netmask after the `/` is taken as Python takes it.
fn ip_network(text: &str) -> Option<(std::net::IpAddr, u32)> {
    use std::net::IpAddr;
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => bits,
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            l.parse().ok().filter(|n| *n <= bits)?
        }
        Some(l) => match (addr, l.parse::<IpAddr>().ok()?) {
            (IpAddr::V4(_), IpAddr::V4(mask)) => {
                // A netmask (1s then 0s), else a hostmask (0s then 1s) inverted, as
                // Python's `_prefix_from_ip_string` reads it.
                let is_netmask = |m: u32| m.leading_ones() + m.trailing_zeros() == 32;
                let m = u32::from(mask);
                let m = if is_netmask(m) { m } else { !m };
                if !is_netmask(m) {
                    return None;
                }
                m.leading_ones()
            }
            _ => return None,
        },
    };
    (masked(addr, len) == addr).then_some((addr, len))
}

/// `addr` with all but its first `len` bits cleared.
fn masked(addr: std::net::IpAddr, len: u32) -> std::net::IpAddr {
    use std::net::IpAddr;
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Whether `client` may use a temp URL restricted to `range` (`temp_url_ip_range`), as
/// Swift decides it: an address of the network (`ip_network`, strict), no client
/// address or a range that does not parse refused.
pub(crate) fn ip_allowed(range: &str, client: Option<std::net::IpAddr>) -> bool {
    let (Some((net, len)), Some(client)) = (ip_network(range), client) else {
        return false;
    };
    net.is_ipv4() == client.is_ipv4() && masked(client, len) == net
}

/// Swift's answer to a temp URL restricted to addresses the client's is not among
/// (`temp_url_ip_range`): the proxy judges it, as only it sees the client's address
/// (the clusters see the proxy's). `None` for any other request.
pub(super) fn ip_refusal(
    parts: &http::request::Parts,
) -> Option<http::Response<stackfed_http::Body>> {
    if parts.method == Method::OPTIONS {
        return None;
    }
    let q = TempUrlQuery::parse(parts.uri.query());
    let range = q.ip_range.as_deref().filter(|r| !r.is_empty())?;
    if q.sig.is_none() && q.expires.is_none() {
        return None;
    }
    let client = parts
        .extensions
        .get::<stackfed_http::observe::PeerAddr>()
        .map(|p| p.0.ip());
    if ip_allowed(range, client) {
        return None;
    }
    let head = parts.method == Method::HEAD;
    let mut resp = crate::error::SwiftError::new(
        http::StatusCode::UNAUTHORIZED,
        "401 Unauthorized: Temp URL invalid\n",
    )
    .into_response(head);
    let h = resp.headers_mut();
    if head {
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    }
    h.insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Swift realm=\"unknown\""),
    );
    Some(resp)
}

/// What Swift's tempurl middleware does to a successful `GET`/`HEAD` answer it lets
/// through, for an answer the proxy assembled from another cluster (a link's target):
/// `X-Object-Meta-*` removed (but `X-Object-Meta-Public-*`, its default
/// `outgoing_remove_headers`/`outgoing_allow_headers`), `Content-Disposition` from
/// `filename`/`inline` or the object's name, and `Expires`.
pub(super) fn temp_url_answer(
    parts: &http::request::Parts,
    resp: &mut http::Response<stackfed_http::Body>,
) {
    let get = parts.method == Method::GET || parts.method == Method::HEAD;
    if !get || !is_temp_url(parts) || !resp.status().is_success() {
        return;
    }
    let mut filename = None;
    let mut inline = false;
    for (k, v) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "filename" => {
                filename.get_or_insert_with(|| v.into_owned());
            }
            "inline" => inline = true,
            _ => {}
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let expires = TempUrlQuery::parse(parts.uri.query())
        .expires
        .and_then(|e| normalize_expires(&e, now));
    let h = resp.headers_mut();
    let meta: Vec<HeaderName> = h
        .keys()
        .filter(|k| {
            k.as_str().starts_with("x-object-meta-")
                && !k.as_str().starts_with("x-object-meta-public-")
        })
        .cloned()
        .collect();
    for k in meta {
        h.remove(k);
    }
    let existing = h.remove(http::header::CONTENT_DISPOSITION);
    let format = |kind: &str, name: &str| {
        use percent_encoding::utf8_percent_encode;
        const LOOSE: &percent_encoding::AsciiSet = &super::QUOTE_SLASH.remove(b' ');
        format!(
            "{kind}; filename=\"{}\"; filename*=UTF-8''{}",
            utf8_percent_encode(name, LOOSE),
            utf8_percent_encode(name, super::QUOTE_SLASH)
        )
    };
    let value = match (inline, filename, existing) {
        (true, Some(f), _) => format("inline", &f),
        (true, None, _) => "inline".to_owned(),
        (false, Some(f), _) => format("attachment", &f),
        (false, None, Some(v)) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        (false, None, None) => {
            let path = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy();
            let name = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            format("attachment", &name)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&value.replace('\n', "%0A")) {
        h.insert(http::header::CONTENT_DISPOSITION, v);
    }
    if let Some(at) = expires.and_then(|e| u64::try_from(e).ok()) {
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at);
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(when)) {
            h.insert(http::header::EXPIRES, v);
        }
    }
}

/// The temp URL keys among an account's or container's answer headers.
fn keys_in(
    resp: &http::Response<stackfed_http::Body>,
    kind: &str,
    scope: Scope,
) -> Vec<(String, Scope)> {
    ["", "-2"]
        .iter()
        .filter_map(|n| {
            let name = format!("x-{kind}-meta-temp-url-key{n}");
            resp.headers()
                .get(name.as_str())
                .map(|v| (String::from_utf8_lossy(v.as_bytes()).into_owned(), scope))
        })
        .collect()
}

impl FederationService {
    /// For a request through a temp URL (no token): a live proxy session's token of
    /// `account` whose authority the proxy lends to what the request reaches beyond the
    /// signed object in `container` (segments, a link's target), as Swift's tempurl
    /// middleware lends its subrequests the key's: the whole account when an account
    /// key signed the URL, the signed object's container when a container key did,
    /// nothing when no key matches (the cluster then answers as it would).
    pub(super) async fn lent_token(
        &self,
        call: &Call,
        account: &AccountName,
        container: &str,
    ) -> Result<Option<String>> {
        let token = call.parts.headers.contains_key("x-auth-token")
            || call.parts.headers.contains_key("x-storage-token");
        if !is_temp_url(&call.parts) || token {
            return Ok(None);
        }
        let Ok(SwiftPath::Object {
            account: a,
            container: c,
            object,
        }) = SwiftPath::parse(call.parts.uri.path())
        else {
            return Ok(None);
        };
        if a != *account {
            return Ok(None);
        }
        let lent = call
            .lent
            .get_or_init(|| self.temp_url_scope(call, &a, c.as_str(), &object))
            .await;
        Ok(match lent {
            Some(Lent {
                token,
                scope: Scope::Account,
            }) => Some(token.clone()),
            Some(Lent {
                token,
                scope: Scope::Container,
            }) if c.as_str() == container => Some(token.clone()),
            _ => None,
        })
    }

    /// Which key signed the request's temp URL, with the keys read through the live
    /// sessions of the account, until one shows a key that verifies the signature.
    async fn temp_url_scope(
        &self,
        call: &Call,
        account: &AccountName,
        container: &str,
        object: &str,
    ) -> Option<Lent> {
        let query = TempUrlQuery::parse(call.parts.uri.query());
        let (info, _) = Box::pin(self.info()).await;
        let allowed: Vec<String> = match info
            .pointer("/tempurl/allowed_digests")
            .and_then(|v| v.as_array())
        {
            Some(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            None => DEFAULT_DIGESTS.iter().map(|s| (*s).to_owned()).collect(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let account_path = crate::cluster::swift_path(account, None, None);
        let container_path = crate::cluster::swift_path(account, Some(container), None);
        for token in self
            .inner
            .sessions
            .tokens_for_account(account.as_str())
            .into_iter()
            .take(SESSIONS_TRIED)
        {
            let Ok(v) = HeaderValue::from_str(&token) else {
                continue;
            };
            let mut auth = http::HeaderMap::new();
            auth.insert(HeaderName::from_static("x-auth-token"), v);
            let acct = self
                .subrequest(Method::HEAD, &account_path, auth.clone(), 0)
                .await;
            if !acct.status().is_success() {
                continue;
            }
            let mut keys = keys_in(&acct, "account", Scope::Account);
            let cont = self
                .subrequest(Method::HEAD, &container_path, auth, 0)
                .await;
            if cont.status().is_success() {
                keys.extend(keys_in(&cont, "container", Scope::Container));
            }
            let signed = Signed {
                method: call.parts.method.as_str(),
                account: account.as_str(),
                container,
                object,
                query: &query,
            };
            // A session whose user is not the account's owner reads the account but not
            // its keys (Swift shows temp URL keys to owners only): try the next one.
            if let Some(scope) = scope_of(&signed, &keys, &allowed, now) {
                return Some(Lent { token, scope });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000;

    fn query(sig: &str, expires: &str, prefix: Option<&str>) -> TempUrlQuery {
        TempUrlQuery {
            sig: Some(sig.into()),
            expires: Some(expires.into()),
            prefix: prefix.map(Into::into),
            ip_range: None,
        }
    }

    fn keys() -> Vec<(String, Scope)> {
        vec![
            ("akey".into(), Scope::Account),
            ("ckey".into(), Scope::Container),
        ]
    }

    fn all() -> Vec<String> {
        vec!["sha1".into(), "sha256".into(), "sha512".into()]
    }

    fn check(method: &str, object: &str, q: &TempUrlQuery) -> Option<Scope> {
        let s = Signed {
            method,
            account: "AUTH_test",
            container: "c",
            object,
            query: q,
        };
        scope_of(&s, &keys(), &all(), NOW)
    }

    #[test]
    fn ip_ranges_as_python_ip_network_reads_them() {
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(ip_allowed("127.0.0.1", ip("127.0.0.1")));
        assert!(!ip_allowed("127.0.0.1", ip("127.0.0.2")));
        assert!(ip_allowed("127.0.0.0/8", ip("127.0.0.2")));
        assert!(ip_allowed("10.1.0.0/255.255.0.0", ip("10.1.2.3")));
        // A hostmask, as Python's ip_network('10.0.0.0/0.255.255.255') reads it (/8).
        assert!(ip_allowed("10.0.0.0/0.255.255.255", ip("10.1.2.3")));
        assert!(!ip_allowed("10.0.0.0/0.255.255.255", ip("11.1.2.3")));
        assert!(
            !ip_allowed("10.0.0.0/0.255.0.255", ip("10.1.2.3")),
            "neither mask"
        );
        assert!(!ip_allowed("10.0.0.1/8", ip("10.0.0.1")), "host bits set");
        assert!(!ip_allowed("10.0.0.0/33", ip("10.0.0.1")));
        assert!(!ip_allowed(" 10.0.0.1", ip("10.0.0.1")));
        assert!(!ip_allowed("::/0", ip("127.0.0.1")), "another version");
        assert!(ip_allowed("0.0.0.0/0", ip("1.2.3.4")));
        assert!(ip_allowed("::1", ip("::1")));
        assert!(!ip_allowed("127.0.0.1", None));
    }

    #[test]
    fn a_python_signature_is_recognised() {
        // Python: hmac.new(b'akey', b'GET\n1900000000\n/v1/AUTH_test/c/o',
        // sha256).hexdigest()
        let real = "65524a48cf7a9af47c88fef0c91dba44dc42027a9c60b0cffbc36f401b287422";
        assert_eq!(
            Digest::Sha256.hex_hmac(b"akey", b"GET\n1900000000\n/v1/AUTH_test/c/o"),
            real
        );
        assert_eq!(
            check("GET", "o", &query(real, "1900000000", None)),
            Some(Scope::Account)
        );
        // A HEAD is valid with a GET signature; a PUT is not.
        assert_eq!(
            check("HEAD", "o", &query(real, "1900000000", None)),
            Some(Scope::Account)
        );
        assert_eq!(check("PUT", "o", &query(real, "1900000000", None)), None);
        let c = Digest::Sha1.hex_hmac(b"ckey", b"GET\n1900000000\n/v1/AUTH_test/c/o");
        assert_eq!(
            check("GET", "o", &query(&c, "1900000000", None)),
            Some(Scope::Container)
        );
        assert_eq!(check("GET", "other", &query(&c, "1900000000", None)), None);
        // Past, or not allowed.
        let old = Digest::Sha1.hex_hmac(b"akey", b"GET\n1700000000\n/v1/AUTH_test/c/o");
        assert_eq!(check("GET", "o", &query(&old, "1700000000", None)), None);
        let s = Signed {
            method: "GET",
            account: "AUTH_test",
            container: "c",
            object: "o",
            query: &query(&c, "1900000000", None),
        };
        assert_eq!(scope_of(&s, &keys(), &["sha256".into()], NOW), None);
    }

    #[test]
    fn prefixes_and_base64_and_ip_ranges() {
        let msg = b"GET\n1900000000\nprefix:/v1/AUTH_test/c/pre";
        let hex = Digest::Sha512.hex_hmac(b"akey", msg);
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
        let sig = format!("sha512:{b64}");
        let q = query(&sig, "1900000000", Some("pre"));
        assert_eq!(check("GET", "pre/obj", &q), Some(Scope::Account));
        assert_eq!(check("GET", "other", &q), None);
        let ip =
            Digest::Sha256.hex_hmac(b"ckey", b"ip=127.0.0.1\nGET\n1900000000\n/v1/AUTH_test/c/o");
        let mut q = query(&ip, "1900000000", None);
        assert_eq!(check("GET", "o", &q), None);
        q.ip_range = Some("127.0.0.1".into());
        assert_eq!(check("GET", "o", &q), Some(Scope::Container));
        assert_eq!(extract_digest("md5:AAAA").map(|d| d.0), Some(None));
        assert!(extract_digest("abc").is_none());
        assert!(extract_digest(&"a".repeat(41)).is_none());
    }

    #[test]
    fn queries_take_the_first_value_decoded() {
        let q = TempUrlQuery::parse(Some(
            "temp_url_sig=a%3Ab&temp_url_expires=1&temp_url_sig=z&temp_url_prefix=&x=1",
        ));
        assert_eq!(q.sig.as_deref(), Some("a:b"));
        assert_eq!(q.expires.as_deref(), Some("1"));
        assert_eq!(q.prefix.as_deref(), Some(""));
        assert_eq!(q.ip_range, None);
    }

    #[test]
    fn expiry_formats_are_pythons() {
        assert_eq!(normalize_expires("1900000000", NOW), Some(1_900_000_000));
        assert_eq!(
            normalize_expires(" +1_900_000_000 ", NOW),
            Some(1_900_000_000)
        );
        assert_eq!(normalize_expires("1__9", NOW), None);
        assert_eq!(
            normalize_expires("2030-03-17T17:46:40Z", NOW),
            Some(1_900_000_000)
        );
        assert_eq!(
            normalize_expires("2030-3-17T17:46:40Z", NOW),
            Some(1_900_000_000)
        );
        assert_eq!(normalize_expires("2030-02-30T00:00:00Z", NOW), None);
        assert_eq!(normalize_expires("2030-03-17 17:46:40", NOW), None);
        assert_eq!(normalize_expires("1700000000", NOW), None);
    }

    proptest! {
        #[test]
        fn iso_dates_match_unix_seconds(t in 0i64..253_402_300_799) {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.unsigned_abs());
            let text = humantime::format_rfc3339_seconds(at).to_string();
            prop_assert_eq!(iso8601(&text), Some(t));
            // strptime's one-digit fields.
            let short = text.replace("-0", "-").replace("T0", "T").replace(":0", ":");
            prop_assert_eq!(iso8601(&short), Some(t));
            prop_assert_eq!(python_int(&t.to_string()), Some(t));
        }

        #[test]
        fn only_the_signing_key_and_text_verify(
            key in "[a-z0-9]{1,20}",
            other in "[a-z0-9]{1,20}",
            object in "[a-z0-9/]{1,20}",
            digest in prop_oneof![Just(Digest::Sha1), Just(Digest::Sha256), Just(Digest::Sha512)],
            account_key in any::<bool>(),
            head in any::<bool>(),
        ) {
            prop_assume!(key != other && key != "akey" && key != "ckey");
            let msg = format!("GET\n1900000000\n/v1/AUTH_test/c/{object}");
            let sig = digest.hex_hmac(key.as_bytes(), msg.as_bytes());
            let scope = if account_key { Scope::Account } else { Scope::Container };
            let q = query(&sig, "1900000000", None);
            let s = Signed { method: if head { "HEAD" } else { "GET" }, account: "AUTH_test", container: "c", object: &object, query: &q };
            let mut ks = vec![(other.clone(), Scope::Account), (key.clone(), scope)];
            prop_assert_eq!(scope_of(&s, &ks, &all(), NOW), Some(scope));
            ks.retain(|(k, _)| *k != key);
            prop_assert_eq!(scope_of(&s, &ks, &all(), NOW), None);
            let s2 = Signed { object: "elsewhere-x", ..s.clone() };
            let ks = vec![(key.clone(), scope)];
            prop_assert_eq!(scope_of(&s2, &ks, &all(), NOW), None);
        }
    }
}
