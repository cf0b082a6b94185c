//! Serving the federation over HTTP/1.1 with graceful shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::service::FederationService;

/// Serves `service` on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (up to `drain`), and returns.
pub async fn serve(
    listener: TcpListener,
    service: FederationService,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let handler = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let svc = service.clone();
        async move { Ok::<_, std::convert::Infallible>(svc.handle(req).await) }
    });
    stackfed_http::serve(listener, handler, shutdown, drain).await
}
