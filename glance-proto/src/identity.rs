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
        for name in IDENTITY_HEADERS {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                ctx.identity_headers.push((name.to_owned(), v.to_owned()));
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
