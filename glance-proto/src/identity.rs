//! Who is asking: the caller's identity from the request headers, as the configured
//! [`IdentityMode`] says, and the headers that carry it on to the central.

use http::{HeaderMap, StatusCode};
use image_cache_core::upstream::RequestContext;

use crate::error::GlanceError;

/// How requests are identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMode {
    /// No authentication: every request is an admin (as Glance's `noauth` context).
    #[default]
    NoAuth,
    /// Identity from trusted headers set by an authenticating front end
    /// (`X-Identity-Status: Confirmed`, `X-Project-Id`, `X-Roles`), forwarded to the central.
    TrustedHeaders,
    /// Each request's `X-Auth-Token` validated by Keystone (the `[keystone]` table; see
    /// [`crate::keystone`]).
    Keystone,
}

/// The headers that carry identity; forwarded to the central as the caller sent them.
pub const IDENTITY_HEADERS: [&str; 7] = [
    "x-auth-token",
    "x-identity-status",
    "x-project-id",
    "x-tenant-id",
    "x-user-id",
    "x-roles",
    "x-domain-id",
];

impl IdentityMode {
    /// The caller of a request with these headers; 401 when trusted headers are expected
    /// and the identity is not confirmed.
    pub fn identify(self, headers: &HeaderMap) -> Result<RequestContext, GlanceError> {
        let mut ctx = RequestContext::default();
        // In the order of IDENTITY_HEADERS; one pass over what the request carries
        // (usually a few headers) rather than a lookup per identity header.
        // The first value of each counts (as `HeaderMap::get`), if it is text.
        let mut found: [Option<Option<&str>>; IDENTITY_HEADERS.len()] = Default::default();
        for (name, value) in headers {
            if let Some(i) = IDENTITY_HEADERS.iter().position(|n| name == n) {
                if found[i].is_none() {
                    found[i] = Some(value.to_str().ok());
                }
            }
        }
        for (name, value) in IDENTITY_HEADERS.iter().zip(found) {
            if let Some(Some(v)) = value {
                ctx.identity_headers
                    .push(((*name).to_owned(), v.to_owned()));
            }
        }
        match self {
            Self::NoAuth => ctx.is_admin = true,
            // Identified by `KeystoneAuth::identify`; without a validator nobody is.
            Self::Keystone => {
                return Err(GlanceError::new(
                    StatusCode::UNAUTHORIZED,
                    "The request you have made requires authentication.",
                ))
            }
            Self::TrustedHeaders => {
                let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                if get("x-identity-status") != Some("Confirmed") {
                    return Err(GlanceError::new(
                        StatusCode::UNAUTHORIZED,
                        "This server could not verify that you are authorized to access the document you requested.",
                    ));
                }
                ctx.project_id = get("x-project-id")
                    .or_else(|| get("x-tenant-id"))
                    .map(str::to_owned);
                ctx.is_admin = get("x-roles")
                    .is_some_and(|r| r.split(',').any(|x| x.trim().eq_ignore_ascii_case("admin")));
            }
        }
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;

    /// The identity headers as a lookup per name finds them (the model).
    fn looked_up(headers: &HeaderMap) -> Vec<(String, String)> {
        IDENTITY_HEADERS
            .iter()
            .filter_map(|n| {
                let v = headers.get(*n)?.to_str().ok()?;
                Some(((*n).to_owned(), v.to_owned()))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn identity_headers_are_found_as_a_lookup_per_name_finds_them(
            entries in prop::collection::vec(
                (prop::sample::select(vec![
                    "x-auth-token", "x-identity-status", "x-project-id", "x-tenant-id", "x-user-id",
                    "x-roles", "x-domain-id", "host", "accept", "x-roles-extra", "x-openstack-request-id",
                ]), prop::collection::vec(prop_oneof![32u8..127, 128u8..=255], 0..12)),
                0..12,
            )
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in entries {
                headers.append(HeaderName::from_static(name), HeaderValue::from_bytes(&value).unwrap());
            }
            for mode in [IdentityMode::NoAuth, IdentityMode::TrustedHeaders] {
                if let Ok(ctx) = mode.identify(&headers) {
                    prop_assert_eq!(ctx.identity_headers, looked_up(&headers));
                }
            }
        }
    }
}
