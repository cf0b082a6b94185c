//! What the example binaries share: logging to stderr (`RUST_LOG`, default `info`), a
//! multi-threaded runtime, and an exit code with the error on stderr.

use std::future::Future;
use std::process::ExitCode;

/// Runs `job` to completion and turns its outcome into an exit code.
pub(crate) fn run_main<F>(name: &str, job: F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(job));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
