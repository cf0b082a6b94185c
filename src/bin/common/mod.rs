//! What the two servers share: logging (text or JSON, `RUST_LOG`, default `info`), the
//! configuration check, the Prometheus exporter and its admin listener, a
//! multi-threaded runtime, and an exit code with the error on stderr.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use stackfed::http::config::LogFormat;
use stackfed::http::{full, Background, Body, Request, Response};

/// Latency buckets (seconds) for every `*_seconds` histogram.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Logs go to stderr, as text (coloured only on a terminal) or one JSON object per line;
/// the access log is the `access` target at `info`.
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: in a file or journald, escape codes would split
    // `status=503` and defeat an operator's grep (and styling each field of the access
    // line cost about 14,000 instructions per request, 11 % of a proxied GET).
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        // The default text format's lines, written without its per-field styling (the
        // access line's formatting was about 15,000 instructions of a proxied GET).
        _ => builder
            .event_format(stackfed::http::logfmt::PlainFormat::new())
            .init(),
    }
}

/// `--check-config`: the configuration was read and checked; the CA file, when one is
/// named, must hold certificates, and the secrets it names (files, environment
/// variables: `secrets`, the configuration's own check) must be readable, as the start
/// needs them. Prints the verdict; exit 0 or 1.
pub(crate) fn check_config(
    name: &str,
    path: &Path,
    ca_file: Option<&Path>,
    secrets: Result<(), impl std::fmt::Display>,
) -> ExitCode {
    if let Err(e) =
        stackfed::http::HttpClient::with_ca_file(stackfed::http::Timeouts::default(), ca_file)
    {
        eprintln!("{name}: invalid configuration {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    if let Err(e) = secrets {
        eprintln!("{name}: {e}");
        return ExitCode::FAILURE;
    }
    println!("{name}: configuration {} is valid", path.display());
    ExitCode::SUCCESS
}

/// Prints why the program cannot start; exit 1.
pub(crate) fn fail(name: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{name}: {e}");
    ExitCode::FAILURE
}

/// With `metrics_listen`, installs the Prometheus recorder behind the `metrics` facade
/// the libraries use (before the service is built, so that what it measures at start
/// is kept).
pub(crate) fn install_metrics(
    at: Option<SocketAddr>,
) -> Result<Option<(PrometheusHandle, SocketAddr)>, String> {
    let Some(at) = at else {
        return Ok(None);
    };
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("seconds".into()), BUCKETS)
        .map_err(|e| format!("metrics: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics: {e}"))?;
    Ok(Some((handle, at)))
}

/// The command line both servers take.
#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, short)]
    pub(crate) config: PathBuf,
    /// Override the listen address (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// Override the metrics listen address (`metrics_listen`).
    #[arg(long)]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Read and check the configuration, print the verdict, exit 0 (valid) or 1.
    #[arg(long)]
    pub(crate) check_config: bool,
}

/// The readiness answer of the main service (its `/healthcheck`).
type Ready =
    std::sync::Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A `GET /healthcheck` for a service's readiness.
pub(crate) fn healthcheck_request() -> Request<Body> {
    let mut req = Request::new(stackfed::http::empty());
    *req.uri_mut() = http::Uri::from_static("/healthcheck");
    req
}

/// With `metrics_listen`, serves the admin listener (see [`serve_admin`]), `/readyz`
/// answered by `ready`, and says where.
pub(crate) async fn serve_metrics<F>(
    metrics: Option<(PrometheusHandle, SocketAddr)>,
    ready: F,
    background: &Background,
) -> Result<(), String>
where
    F: Fn() -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync + 'static,
{
    let Some((handle, at)) = metrics else {
        return Ok(());
    };
    let ready: Ready = std::sync::Arc::new(ready);
    let at = serve_admin(at, handle, ready, background).await?;
    tracing::info!(%at, "metrics on /metrics, liveness /livez, readiness /readyz");
    println!("metrics on http://{at}/metrics");
    Ok(())
}

/// Serves the admin listener on `background` (stopped with it): `GET /metrics`
/// (Prometheus text format), `/livez` (200 at once: the process answers), `/readyz`
/// (the main service's `/healthcheck`). Anything else is 404.
async fn serve_admin(
    addr: SocketAddr,
    handle: PrometheusHandle,
    ready: Ready,
    background: &Background,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (metrics_listen): {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let upkeep = handle.clone();
    background.spawn("metrics upkeep", async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let service = tower::service_fn(move |req: Request<stackfed::http::RequestBody>| {
        let (handle, ready) = (handle.clone(), ready.clone());
        async move {
            let resp = match (req.method().as_str(), req.uri().path()) {
                ("GET", "/metrics") => {
                    let mut r = Response::new(full(handle.render()));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                }
                ("GET" | "HEAD", "/livez") => Response::new(full("OK")),
                ("GET" | "HEAD", "/readyz") => ready().await,
                _ => {
                    let mut r = Response::new(full("not found"));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                }
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    background.spawn("metrics listener", async move {
        // Ends when the background stops (the task is dropped then).
        let served = stackfed::http::serve(
            listener,
            service,
            std::future::pending::<()>(),
            Duration::from_secs(1),
        )
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(local)
}

/// Runs `job` to completion on a multi-threaded runtime and turns its outcome into an
/// exit code.
pub(crate) fn run_main<F>(name: &str, job: F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(job));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(name, e),
    }
}
