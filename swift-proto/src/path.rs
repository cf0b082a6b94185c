//! Request paths: what a request is addressed to, validated.

use federation_core::{AccountName, ContainerName};
use http::{Method, StatusCode};
use percent_encoding::percent_decode_str;

use crate::error::SwiftError;

/// The longest object name Swift accepts, in bytes.
pub const MAX_OBJECT_NAME_LENGTH: usize = 1024;

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwiftPath {
    /// `/info`: the cluster's capabilities.
    Info,
    /// `/healthcheck`.
    Healthcheck,
    /// `/auth/v1.0` (or `/auth/v1`, `/v1.0`): tempauth-style authentication.
    Auth,
    /// `/v1/{account}`.
    Account {
        /// The account.
        account: AccountName,
    },
    /// `/v1/{account}/{container}`.
    Container {
        /// The account.
        account: AccountName,
        /// The container (valid for Swift, at most 256 bytes).
        container: ContainerName,
    },
    /// `/v1/{account}/{container}/{object}`.
    Object {
        /// The account.
        account: AccountName,
        /// The container.
        container: ContainerName,
        /// The object's name: non-empty UTF-8, may contain `/`.
        object: String,
    },
}

/// Why a path is refused, with the answer Swift gives.
fn invalid_utf8() -> SwiftError {
    SwiftError::precondition_failed("Invalid UTF8 or contains NULL")
}

/// `s.splitn(N, '/')` into `buf`, returning how many parts: the same parts, found by a
/// byte loop (a `char` pattern's searcher cost about 120 instructions a part on the
/// short segments of a request path).
pub(crate) fn split_slashes<'a, const N: usize>(s: &'a str, buf: &mut [&'a str; N]) -> usize {
    let mut rest = s;
    let mut n = 0;
    while n + 1 < N {
        // `/` is ASCII: its index is a `char` boundary.
        let Some(i) = rest.bytes().position(|b| b == b'/') else {
            break;
        };
        buf[n] = &rest[..i];
        rest = &rest[i + 1..];
        n += 1;
    }
    if let Some(last) = buf.get_mut(n) {
        *last = rest;
        n += 1;
    }
    n
}

impl SwiftPath {
    /// Parses the path of a request URI (still percent-encoded), as Swift's proxy does:
    /// decode, require UTF-8 without NUL (else 412 `Invalid UTF8 or contains NULL`),
    /// then split as Swift's `split_path(path, 1, 4, True)`: an empty segment before the
    /// last one (`/v1//c/o`, `/`) is a 404, a version other than `v1`/`v1.0` with an
    /// account a 400, a path without an account (`/v1/`, `/v1`, `/info asdf`) a 412
    /// `Bad URL`. A container name over 256 bytes is a 400 with Swift's message.
    pub fn parse(raw: &str) -> Result<Self, SwiftError> {
        Self::parse_inner(raw, None)
    }

    /// [`parse`](Self::parse) for a request with `method`: a container name too long
    /// for Swift is refused with 400 only where Swift checks it, on a container `PUT`;
    /// any other request cannot find such a container (404, as Swift answers).
    pub fn parse_request(method: &Method, raw: &str) -> Result<Self, SwiftError> {
        Self::parse_inner(raw, Some(method))
    }

    fn parse_inner(raw: &str, method: Option<&Method>) -> Result<Self, SwiftError> {
        // Borrowed unless the path has escapes.
        let path = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| invalid_utf8())?;
        if path.as_bytes().contains(&0) {
            return Err(invalid_utf8());
        }
        match &*path {
            "/info" => return Ok(Self::Info),
            "/healthcheck" => return Ok(Self::Healthcheck),
            "/auth/v1.0" | "/auth/v1.0/" | "/auth/v1" | "/v1.0" => return Ok(Self::Auth),
            _ => {}
        }
        // Swift's split_path(path, 1, 4, rest_with_last=True).
        let mut buf = [""; 5];
        let n = split_slashes(&path, &mut buf);
        let segs = &buf[..n];
        let (Some(&""), Some(version)) = (segs.first(), segs.get(1).filter(|v| !v.is_empty()))
        else {
            return Err(SwiftError::not_found());
        };
        let segs = &segs[1..];
        if segs[..segs.len() - 1].iter().any(|s| s.is_empty()) {
            return Err(SwiftError::not_found());
        }
        let part = |i: usize| segs.get(i).copied().filter(|s| !s.is_empty());
        let (account, container, object) = (part(1), part(2), part(3));
        let Some(account) = account else {
            return Err(SwiftError::precondition_failed("Bad URL"));
        };
        if !matches!(*version, "v1" | "v1.0") {
            return Err(SwiftError::status(StatusCode::BAD_REQUEST));
        }
        let account = AccountName::new(account).map_err(|_| SwiftError::not_found())?;
        let Some(container) = container else {
            return Ok(Self::Account { account });
        };
        let checked = method.is_none_or(|m| *m == Method::PUT && object.is_none());
        let container = ContainerName::new(container).map_err(|e| match e {
            federation_core::NameError::TooLong { len, max, .. } if checked => {
                SwiftError::bad_request(format!("Container name length of {len} longer than {max}"))
            }
            _ => SwiftError::not_found(),
        })?;
        match object {
            None => Ok(Self::Container { account, container }),
            Some(object) => Ok(Self::Object {
                account,
                container,
                object: object.to_owned(),
            }),
        }
    }

    /// Checks the object name's length, as Swift does on PUT (400 with its message).
    pub fn check_object_name(object: &str) -> Result<(), SwiftError> {
        if object.len() > MAX_OBJECT_NAME_LENGTH {
            return Err(SwiftError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Object name length of {} longer than {MAX_OBJECT_NAME_LENGTH}",
                    object.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Percent-encodes a path segment for a backend request (everything but unreserved
/// characters; `/` kept when `keep_slash`, for object names).
pub fn encode_segment(segment: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(segment.len());
    push_encoded_segment(&mut out, segment, keep_slash);
    out
}

/// [`encode_segment`], appended to `out` (no `String` of its own, no formatting
/// machinery: this runs for every forwarded request).
pub fn push_encoded_segment(out: &mut String, segment: &str, keep_slash: bool) {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    const OBJECT: &AsciiSet = &SEGMENT.remove(b'/');
    for piece in utf8_percent_encode(segment, if keep_slash { OBJECT } else { SEGMENT }) {
        out.push_str(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<SwiftPath, SwiftError> {
        SwiftPath::parse(s)
    }

    #[test]
    fn parses_levels() {
        assert_eq!(p("/info").unwrap(), SwiftPath::Info);
        assert_eq!(p("/auth/v1.0").unwrap(), SwiftPath::Auth);
        assert!(matches!(
            p("/v1/AUTH_t").unwrap(),
            SwiftPath::Account { .. }
        ));
        assert!(matches!(
            p("/v1/AUTH_t/").unwrap(),
            SwiftPath::Account { .. }
        ));
        assert!(matches!(
            p("/v1/AUTH_t/c").unwrap(),
            SwiftPath::Container { .. }
        ));
        let SwiftPath::Object {
            container, object, ..
        } = p("/v1/AUTH_t/c%20x/a/b//c").unwrap()
        else {
            panic!()
        };
        assert_eq!(container.as_str(), "c x");
        assert_eq!(object, "a/b//c");
        // An encoded slash in the container position splits like a real one (Swift
        // decodes before splitting).
        let SwiftPath::Object {
            container, object, ..
        } = p("/v1/AUTH_t/c%2Fd").unwrap()
        else {
            panic!()
        };
        assert_eq!((container.as_str(), object.as_str()), ("c", "d"));
    }

    #[test]
    fn refuses_like_swift() {
        assert_eq!(p("/v1/AUTH_t/%FF").unwrap_err().status, 412);
        assert_eq!(p("/v1/AUTH_t/a%00b").unwrap_err().status, 412);
        // Swift's split_path rules, values from a real cluster.
        assert_eq!(p("/v2/AUTH_t").unwrap_err().status, 400);
        let bad_url = p("/v1/").unwrap_err();
        assert_eq!(bad_url.status, 412);
        assert_eq!(bad_url.message.as_deref(), Some("Bad URL"));
        assert_eq!(p("/v1").unwrap_err().status, 412);
        assert_eq!(p("/info asdf").unwrap_err().status, 412);
        assert_eq!(p("/").unwrap_err().status, 404);
        assert_eq!(p("//v1/AUTH_t").unwrap_err().status, 404);
        assert_eq!(p("/v1/AUTH_t//o").unwrap_err().status, 404);
        assert_eq!(p("/v1//c/o").unwrap_err().status, 404);
        assert_eq!(p("/v1///o").unwrap_err().status, 404);
        assert!(matches!(
            p("/v1/AUTH_t/c/").unwrap(),
            SwiftPath::Container { .. }
        ));
        let long = "x".repeat(257);
        let e = p(&format!("/v1/AUTH_t/{long}")).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message.as_deref(),
            Some("Container name length of 257 longer than 256")
        );
        // Swift checks the length on a container PUT only; elsewhere it is not found.
        let path = format!("/v1/AUTH_t/{long}");
        assert_eq!(
            SwiftPath::parse_request(&Method::PUT, &path)
                .unwrap_err()
                .status,
            400
        );
        for m in [Method::GET, Method::HEAD, Method::POST, Method::DELETE] {
            assert_eq!(SwiftPath::parse_request(&m, &path).unwrap_err().status, 404);
        }
        let obj = format!("/v1/AUTH_t/{long}/o");
        assert_eq!(
            SwiftPath::parse_request(&Method::PUT, &obj)
                .unwrap_err()
                .status,
            404
        );
        assert!(SwiftPath::check_object_name(&"o".repeat(1025)).is_err());
        assert!(SwiftPath::check_object_name(&"o".repeat(1024)).is_ok());
    }

    #[test]
    fn encodes_segments_round_trip() {
        let name = "a b/ü?#%&+";
        let enc = encode_segment(name, true);
        assert_eq!(enc, "a%20b/%C3%BC%3F%23%25%26%2B");
        let back: Vec<u8> = percent_decode_str(&enc).collect();
        assert_eq!(String::from_utf8(back).unwrap(), name);
        assert_eq!(encode_segment("a/b", false), "a%2Fb");
    }

    proptest::proptest! {
        #[test]
        fn split_slashes_is_splitn(s in "[/a-cé]{0,12}") {
            let mut five = [""; 5];
            let n = split_slashes(&s, &mut five);
            let expected: Vec<&str> = s.splitn(5, '/').collect();
            proptest::prop_assert_eq!(&five[..n], expected.as_slice());
            let mut three = [""; 3];
            let n = split_slashes(&s, &mut three);
            let expected: Vec<&str> = s.splitn(3, '/').collect();
            proptest::prop_assert_eq!(&three[..n], expected.as_slice());
        }
    }

    proptest::proptest! {
        /// The appending encoder writes what the crate's own `Display` of the encoding
        /// writes (the form the proxy used before), for any name.
        #[test]
        fn appended_encoding_is_the_crates_own(
            prefix in "[a-z/]{0,4}",
            segment in "\\PC{0,24}",
            keep_slash: bool,
        ) {
            use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
            const SEGMENT: &AsciiSet =
                &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
            const OBJECT: &AsciiSet = &SEGMENT.remove(b'/');
            let set = if keep_slash { OBJECT } else { SEGMENT };
            let mut out = prefix.clone();
            push_encoded_segment(&mut out, &segment, keep_slash);
            proptest::prop_assert_eq!(out, format!("{prefix}{}", utf8_percent_encode(&segment, set)));
        }
    }
}
