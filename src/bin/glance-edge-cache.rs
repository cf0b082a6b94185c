//! The Glance edge cache: a Glance v2 endpoint in front of one central Glance that keeps
//! serving cached images when the central is unreachable.
//!
//! ```text
//! glance-edge-cache --config edge.toml [--listen 127.0.0.1:9292] [--check-config]
//! ```
//!
//! All logic lives in `glance-proto` and `image-cache-core`; this binary reads the
//! configuration, sets up logging, the access log and metrics, serves the edge (a
//! `tower::Service`) until Ctrl-C or SIGTERM, then stops its background tasks.
#![allow(missing_docs)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod common;
use stackfed::glance_proto::config::EdgeConfig;

const NAME: &str = "glance-edge-cache";

/// Glance edge cache.
#[derive(Parser)]
#[command(name = NAME, version, long_about = None)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
}

async fn run(args: common::ServerArgs, mut config: EdgeConfig) -> Result<(), String> {
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    let metrics = common::install_metrics(config.metrics_listen)?;
    let edge = config.build().await.map_err(|e| e.to_string())?;
    tracing::info!(report = ?edge.reconciled, "cache reconciled");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let health = edge.service.clone();
    let ready = move || {
        let health = health.clone();
        Box::pin(async move { health.handle(common::healthcheck_request()).await }) as _
    };
    common::serve_metrics(metrics, ready, &edge.background).await?;
    tracing::info!(%addr, central = %config.central_url, cache_dir = %config.cache_dir.display(), "listening");
    println!("listening on http://{addr}");
    let service = tower::ServiceBuilder::new()
        .layer(stackfed::http::AccessLogLayer::new(
            "glance",
            stackfed::glance_proto::service::family,
            http::HeaderName::from_static("x-openstack-request-id"),
        ))
        .service(edge.service);
    let served = stackfed::http::serve_with(
        listener,
        service,
        stackfed::http::shutdown_signal(),
        stackfed::http::ServeOptions::new(Duration::from_secs(10))
            .body_idle_timeout(config.client_timeout),
    )
    .await;
    // Prefetch workers and fills still running stop here (a fill cut short leaves only
    // an incomplete write, cleared at the next start).
    edge.background.shutdown().await;
    served.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse().server;
    let config = match EdgeConfig::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => return common::fail(NAME, e),
    };
    if args.check_config {
        return common::check_config(
            NAME,
            &args.config,
            config.ca_file.as_deref(),
            config.check_secrets(),
        );
    }
    common::init_logging(config.log_format);
    common::run_main(NAME, run(args, config))
}
