//! Swift-style error responses.

use std::borrow::Cow;

use http::{header, HeaderValue, Response, StatusCode};

use stackfed_http::{full, Body};

/// An error answered to the client as Swift answers it: a status and a short HTML body
/// (`text/html; charset=UTF-8`), either Swift's default text for the status or a
/// specific message such as `Invalid UTF8 or contains NULL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {}", self.body_text())]
pub struct SwiftError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A specific message, or `None` for Swift's default text.
    pub message: Option<Cow<'static, str>>,
    /// Sent as `text/plain` (as Swift sends its constraint checks' answers) rather than
    /// `text/html; charset=UTF-8`.
    plain: bool,
}

impl SwiftError {
    /// An error with Swift's default body for `status`.
    pub fn status(status: StatusCode) -> Self {
        Self {
            status,
            message: None,
            plain: false,
        }
    }

    /// An error with a specific message.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: Some(message.into()),
            plain: false,
        }
    }

    /// An error with a specific message sent as `text/plain`, as Swift answers failed
    /// constraint checks (`Missing Content-Length header.`, `Your request is too
    /// large.`, `Too many metadata items; max 90`).
    pub fn plain(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            plain: true,
            ..Self::new(status, message)
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 412 with a message.
    pub fn precondition_failed(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::status(StatusCode::NOT_FOUND)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::status(StatusCode::UNAUTHORIZED)
    }

    /// 503 with a message.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    fn body_text(&self) -> Cow<'static, str> {
        if let Some(m) = &self.message {
            return m.clone();
        }
        let (title, text) = default_text(self.status);
        format!("<html><h1>{title}</h1><p>{text}</p></html>").into()
    }

    /// The response. HEAD responses carry the headers but no body.
    pub fn into_response(self, head: bool) -> Response<Body> {
        let text = self.body_text().into_owned();
        let len = text.len();
        let mut resp = Response::new(if head {
            stackfed_http::empty()
        } else {
            full(text)
        });
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if self.plain {
                "text/plain"
            } else {
                "text/html; charset=UTF-8"
            }),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        resp
    }
}

fn default_text(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("Bad Request", "The server could not comply with the request since it is either malformed or otherwise incorrect."),
        401 => ("Unauthorized", "This server could not verify that you are authorized to access the document you requested."),
        403 => ("Forbidden", "Access was denied to this resource."),
        404 => ("Not Found", "The resource could not be found."),
        405 => ("Method Not Allowed", "The method is not allowed for this resource."),
        406 => ("Not Acceptable", "The request is not acceptable."),
        409 => ("Conflict", "There was a conflict when trying to complete your request."),
        411 => ("Length Required", "Length Required"),
        412 => ("Precondition Failed", "A precondition for this request was not met."),
        408 => ("Request Timeout", "The server has waited too long for the request to be sent by the client."),
        413 => ("Request Entity Too Large", "The body of your request was too large for this server."),
        416 => ("Requested Range Not Satisfiable", "The Range requested is not available."),
        499 => ("Client Disconnect", "The client was disconnected during request."),
        500 => ("Internal Error", "The server has either erred or is incapable of performing the requested operation."),
        501 => ("Not Implemented", "The requested method is not implemented by this server."),
        502 => ("Bad Gateway", "Bad gateway."),
        503 => ("Service Unavailable", "The server is currently unavailable. Please try again at a later time."),
        504 => ("Gateway Timeout", "A timeout has occurred speaking to a backend server."),
        507 => ("Insufficient Storage", "There was not enough space to save the resource. Drive: No cluster of the federation can take this container."),
        _ => ("Error", "The request could not be completed."),
    }
}

// ----- where internal errors become Swift's answers (the one mapping) -----------------

impl From<crate::cluster::ClusterError> for SwiftError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        use crate::cluster::ClusterError as E;
        match &e {
            E::Refused { .. } => Self::unauthorized(),
            E::Invalid { message, .. } => Self::bad_request(message.clone()),
            // The client's body stalled while it was streamed to the cluster (Swift's
            // `client_timeout`): its fault, not the cluster's.
            _ if e.is_client_body_timeout() => Self::status(StatusCode::REQUEST_TIMEOUT),
            _ if e.is_timeout() => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("cluster {} did not answer in time", e.cluster()),
            ),
            _ => Self::unavailable(e.to_string()),
        }
    }
}

impl From<federation_core::LocateError> for SwiftError {
    fn from(e: federation_core::LocateError) -> Self {
        use federation_core::LocateError as E;
        match e {
            E::Store(e) => e.into(),
            E::Placement(e) => e.into(),
            E::Ambiguous { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            E::Undecided { .. } => Self::unavailable(e.to_string()),
            other => Self::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<federation_core::attrs::StoreError> for SwiftError {
    fn from(e: federation_core::attrs::StoreError) -> Self {
        use federation_core::attrs::StoreError as E;
        match e {
            E::NotFound { .. } => Self::not_found(),
            E::Conflict { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            E::InvalidInput { .. } => Self::bad_request(e.to_string()),
            E::Unavailable { .. } => Self::unavailable(e.to_string()),
            other => Self::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<federation_core::placement::PlacementError> for SwiftError {
    fn from(e: federation_core::placement::PlacementError) -> Self {
        use federation_core::placement::PlacementError as E;
        use federation_core::Unfit;
        let text = e.to_string();
        let all = |ok: fn(&Unfit) -> bool| match &e {
            E::NoFit { rejections } => {
                !rejections.is_empty() && rejections.iter().all(|r| ok(&r.reason))
            }
            _ => false,
        };
        if matches!(e, E::UnknownCluster { .. })
            // A service level no cluster offers will not appear by retrying.
            || all(|u| matches!(u, Unfit::LabelMismatch { .. }))
        {
            Self::bad_request(text)
        } else if matches!(
            e,
            E::PinRefused {
                reason: Unfit::Full { .. },
                ..
            }
        ) || all(|u| matches!(u, Unfit::Full { .. } | Unfit::LabelMismatch { .. }))
        {
            Self::new(StatusCode::INSUFFICIENT_STORAGE, text)
        } else {
            Self::unavailable(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_specific_bodies() {
        assert_eq!(
            SwiftError::not_found().to_string(),
            "404 Not Found: <html><h1>Not Found</h1><p>The resource could not be found.</p></html>"
        );
        let e = SwiftError::precondition_failed("Invalid UTF8 or contains NULL");
        let r = e.into_response(false);
        assert_eq!(r.status(), 412);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "29");
    }
}
