//! The Swift federation proxy: one Swift endpoint over several Swift clusters.
//!
//! ```text
//! cargo run --example swift-federation-proxy -- --config proxy.toml
//! ```
//!
//! All logic lives in `swift-proto` and `federation-core`; this binary reads the
//! configuration, sets up logging and serves until Ctrl-C or SIGTERM.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod common;
use stackfed::swift_proto::config::ProxyConfig;
use stackfed::swift_proto::migrate::{AdminService, Migrations};

/// Swift cluster federation proxy.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// TOML configuration (listen, auth, store, clusters, policy).
    #[arg(long, short)]
    config: PathBuf,
    /// Override the listen address (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = ProxyConfig::from_file(&args.config).map_err(|e| e.to_string())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let (service, background) = config.build().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, clusters = config.clusters.len(), policy = service.locator().policy().name(), "listening");
    // A machine-readable line for scripts that start the proxy on port 0.
    println!("listening on http://{addr}");
    // As many request headers as Swift's own proxy reads, so that Swift's checks
    // (metadata count and size) give their answers.
    let options = stackfed::http::ServeOptions::new(Duration::from_secs(10))
        .max_headers(stackfed::swift_proto::headers::MAX_REQUEST_HEADERS)
        // Swift answers a path of raw invalid UTF-8 with 412, not the parser's 400.
        .encode_raw_target(true);
    match config.migration.clone() {
        // Live migration and the operator's admin API (`/federation/v1/...`).
        Some(m) => {
            let ttl = Duration::try_from_secs_f64(config.cache_ttl_seconds).unwrap_or_default();
            let migrations = Migrations::start(&service, m, ttl, &background);
            let admin = AdminService::new(service, migrations);
            stackfed::http::serve_with(listener, admin, stackfed::http::shutdown_signal(), options)
                .await
        }
        None => {
            stackfed::http::serve_with(
                listener,
                service,
                stackfed::http::shutdown_signal(),
                options,
            )
            .await
        }
    }
    .map_err(|e| e.to_string())?;
    background.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    common::run_main("swift-federation-proxy", run(Args::parse()))
}
