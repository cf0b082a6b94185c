//! Why talking to a cluster failed, and where the fault lies.

use std::sync::Arc;

use federation_core::ClusterId;
use http::StatusCode;
use stackfed_http::ClientError;

/// Why an exchange with a cluster failed. The service maps each to Swift's answer in one
/// place (`From<ClusterError> for SwiftError`). Cheap to clone (a failed login is shared
/// by the requests that waited for it).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster could not be reached, broke off, or did not answer in time.
    #[error("cluster {cluster} is unavailable: {source}")]
    Transport {
        /// The cluster.
        cluster: ClusterId,
        /// What the HTTP client saw.
        #[source]
        source: Arc<ClientError>,
    },
    /// The cluster refused the credentials (the client's fault).
    #[error("cluster {cluster} refused the credentials")]
    Refused {
        /// The cluster.
        cluster: ClusterId,
    },
    /// The cluster answered authentication with an error of its own.
    #[error("cluster {cluster} answered {status} to authentication")]
    AuthFailed {
        /// The cluster.
        cluster: ClusterId,
        /// Its answer.
        status: StatusCode,
    },
    /// The cluster's answer could not be used (no token, a malformed document).
    #[error("cluster {cluster} gave an unusable answer: {message}")]
    BadAnswer {
        /// The cluster.
        cluster: ClusterId,
        /// What was wrong.
        message: String,
    },
    /// Keystone gave the proxy no token of its own (for this cluster's request): it is
    /// unreachable, refused the configured service credentials, or answered nonsense.
    #[error("no Keystone token for cluster {cluster}: {message}")]
    Identity {
        /// The cluster the token was for.
        cluster: ClusterId,
        /// What went wrong.
        message: String,
        /// Whether trying again later may help (Keystone down or overloaded).
        temporary: bool,
    },
    /// The request could not be built from the client's input (a header value that is
    /// not valid, a path that is not a URI).
    #[error("invalid request for cluster {cluster}: {message}")]
    Invalid {
        /// The cluster.
        cluster: ClusterId,
        /// What was wrong.
        message: String,
    },
}

/// Where a fault came from (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The cluster (down, slow, or answering nonsense).
    Upstream,
    /// The client's request or credentials.
    Client,
}

impl ClusterError {
    /// The cluster it concerns.
    pub fn cluster(&self) -> &ClusterId {
        match self {
            Self::Transport { cluster, .. }
            | Self::Refused { cluster }
            | Self::AuthFailed { cluster, .. }
            | Self::BadAnswer { cluster, .. }
            | Self::Identity { cluster, .. }
            | Self::Invalid { cluster, .. } => cluster,
        }
    }

    /// Whether the exchange failed because the client's own request body, streamed to
    /// the cluster, stayed silent past the proxy's `client_timeout`
    /// ([`RequestBodyTimeout`](stackfed_http::RequestBodyTimeout)): the client's fault,
    /// not the cluster's (Swift answers 408).
    pub fn is_client_body_timeout(&self) -> bool {
        matches!(self, Self::Transport { source, .. }
            if stackfed_http::RequestBodyTimeout::caused(&**source))
    }

    /// Where the fault lies.
    pub fn origin(&self) -> Origin {
        if self.is_client_body_timeout() {
            return Origin::Client;
        }
        match self {
            Self::Refused { .. } | Self::Invalid { .. } => Origin::Client,
            Self::Transport { .. }
            | Self::AuthFailed { .. }
            | Self::BadAnswer { .. }
            | Self::Identity { .. } => Origin::Upstream,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_temporary(&self) -> bool {
        match self {
            // Only a faster client helps: the same request, as slow, fails again.
            _ if self.is_client_body_timeout() => false,
            Self::Transport { source, .. } => source.is_temporary(),
            Self::AuthFailed { status, .. } => status.is_server_error(),
            Self::Identity { temporary, .. } => *temporary,
            _ => false,
        }
    }

    /// Whether the cluster was too slow (a gateway answers 504).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Transport { source, .. } if source.is_timeout())
            && !self.is_client_body_timeout()
    }
}
