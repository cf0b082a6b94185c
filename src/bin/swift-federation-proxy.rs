//! The Swift federation proxy: one Swift endpoint over several Swift clusters.
//!
//! ```text
//! swift-federation-proxy --config proxy.toml [--listen 127.0.0.1:8080] [--check-config]
//! ```
//!
//! All logic lives in `swift-proto` and `federation-core`; this binary reads the
//! configuration, sets up logging, the access log and metrics, and serves until Ctrl-C
//! or SIGTERM.
#![allow(missing_docs)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod common;
use stackfed::swift_proto::config::ProxyConfig;
use stackfed::swift_proto::migrate::{AdminService, Migrations};

const NAME: &str = "swift-federation-proxy";

/// Swift cluster federation proxy.
#[derive(Parser)]
#[command(name = NAME, version, long_about = None)]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
}

async fn run(args: common::ServerArgs, mut config: ProxyConfig) -> Result<(), String> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    let metrics = common::install_metrics(config.metrics_listen)?;
    let (service, background) = config.open().await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let health = service.clone();
    let ready = move || {
        let health = health.clone();
        Box::pin(async move { health.handle(common::healthcheck_request()).await }) as _
    };
    common::serve_metrics(metrics, ready, &background).await?;
    tracing::info!(%addr, clusters = config.clusters.len(), policy = service.locator().policy().name(), "listening");
    // A machine-readable line for scripts that start the proxy on port 0.
    println!("listening on http://{addr}");
    // As many request headers as Swift's own proxy reads, so that Swift's checks
    // (metadata count and size) give their answers.
    let options = stackfed::http::ServeOptions::new(Duration::from_secs(10))
        .max_headers(stackfed::swift_proto::headers::MAX_REQUEST_HEADERS)
        // Swift answers a path of raw invalid UTF-8 with 412, not the parser's 400.
        .encode_raw_target(true)
        .body_idle_timeout(config.client_timeout);
    let access_log = stackfed::http::AccessLogLayer::new(
        "swift",
        stackfed::swift_proto::service::family,
        http::HeaderName::from_static("x-trans-id"),
    );
    let shutdown = stackfed::http::shutdown_signal();
    // Live migration and the operator's admin API (`/federation/v1/...`); without
    // `[migration]` the admin paths answer 501 saying it is not enabled.
    let admin = match config.migration.clone() {
        Some(m) => {
            let migrations = Migrations::start(&service, m, config.cache_ttl, &background);
            AdminService::new(service, migrations)
        }
        None => AdminService::disabled(service),
    };
    let admin = tower::ServiceBuilder::new()
        .layer(access_log)
        .service(admin);
    let served = stackfed::http::serve_with(listener, admin, shutdown, options).await;
    background.shutdown().await;
    served.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse().server;
    let config = match ProxyConfig::from_file(&args.config) {
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
