//! Serving the edge over HTTP/1.1 with graceful shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::service::EdgeService;

/// Serves `service` on `listener` until `shutdown` completes, then lets in-flight
/// requests finish (up to `drain`).
pub async fn serve(
    listener: TcpListener,
    service: EdgeService,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let handler = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let svc = service.clone();
        async move { Ok::<_, std::convert::Infallible>(svc.handle(req).await) }
    });
    stackfed_http::serve(listener, handler, shutdown, drain).await
}
