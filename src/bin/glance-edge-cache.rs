//! The Glance edge cache: a Glance v2 endpoint in front of one central Glance that keeps
//! serving cached images when the central is unreachable.
//!
//! ```text
//! cargo run --example glance-edge-cache -- --config edge.toml
//! ```
//!
//! All logic lives in `glance-proto` and `image-cache-core`; this binary reads the
//! configuration, sets up logging, serves the edge (a `tower::Service`) with
//! `stackfed_http::serve` until Ctrl-C or SIGTERM, then stops its background tasks.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod common;
use stackfed::glance_proto::config::EdgeConfig;

/// Glance edge cache.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// TOML configuration (listen, central_url, cache_dir, freshness_seconds, max_stale_seconds, identity).
    #[arg(long, short)]
    config: PathBuf,
    /// Override the listen address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = EdgeConfig::from_file(&args.config).map_err(|e| e.to_string())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    let edge = config.build().await.map_err(|e| e.to_string())?;
    tracing::info!(report = ?edge.reconciled, "cache reconciled");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, central = %config.central_url, cache_dir = %config.cache_dir.display(), "listening");
    println!("listening on http://{addr}");
    let served = stackfed::http::serve(
        listener,
        edge.service,
        stackfed::http::shutdown_signal(),
        Duration::from_secs(10),
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
    common::run_main("glance-edge-cache", run(Args::parse()))
}
