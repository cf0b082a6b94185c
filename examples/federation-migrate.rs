//! The operator's CLI for live container migration: calls the proxy's admin API.
//!
//! ```text
//! federation-migrate --proxy http://127.0.0.1:8080 --user admin:admin --key admin \
//!     move AUTH_test photos [--to east] [--wait]
//! federation-migrate ... drain AUTH_test west [--concurrency 4] [--wait]
//! federation-migrate ... rebalance 80% AUTH_test [AUTH_other ...] [--concurrency 4] [--wait]
//! federation-migrate ... cancel ID
//! federation-migrate ... status [ID]
//! ```
#![allow(missing_docs)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use http::{Method, Request};

use stackfed::http::{full, HttpClient, Timeouts};

#[derive(Parser)]
#[command(
    version,
    about = "Move containers between the clusters of a Swift federation"
)]
struct Args {
    /// The federation proxy.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    proxy: String,
    /// The operator (`account:user`, the proxy's `[migration] operator_user`).
    #[arg(long)]
    user: String,
    /// The operator's key.
    #[arg(long)]
    key: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Move one container (and what stays with it).
    Move {
        account: String,
        container: String,
        /// The destination (default: the placement policy's choice).
        #[arg(long)]
        to: Option<String>,
        /// Wait for it to finish, printing progress.
        #[arg(long)]
        wait: bool,
    },
    /// Move every container of an account off a cluster.
    Drain {
        account: String,
        cluster: String,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long)]
        wait: bool,
    },
    /// Move containers of the accounts until every cluster is under the fill target
    /// (a fraction such as 0.8 or a percentage such as 80%).
    Rebalance {
        fill_target: String,
        #[arg(required = true)]
        accounts: Vec<String>,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a migration before its switch (rolled back).
    Cancel { id: String },
    /// One migration's state, or all.
    Status { id: Option<String> },
}

struct Api {
    http: HttpClient,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("x-auth-token", &self.token)
            .header("content-type", "application/json")
            .body(full(body.map(|b| b.to_string()).unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let resp = self.http.send(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = self
            .http
            .read_body(resp.into_body(), 16 << 20)
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{status}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{status}: {v}"));
        }
        Ok(v)
    }

    async fn wait(&self, ids: &[String]) -> Result<(), String> {
        loop {
            let mut open = 0;
            for id in ids {
                let v = self
                    .call(
                        Method::GET,
                        &format!("/federation/v1/migrations/{id}"),
                        None,
                    )
                    .await?;
                let p = &v["progress"];
                let state = v["entry"]["state"].clone();
                println!(
                    "{id}: {} {}/{} objects, {}/{} bytes, {:.1} objects/s, eta {:.0} s {}",
                    p["phase"],
                    p["objects_done"],
                    p["objects_total"],
                    p["bytes_done"],
                    p["bytes_total"],
                    p["objects_per_second"].as_f64().unwrap_or(0.0),
                    p["eta_seconds"].as_f64().unwrap_or(0.0),
                    p["error"].as_str().unwrap_or("")
                );
                if state == serde_json::json!("running")
                    || state == serde_json::json!("cancelling")
                    || state.is_null()
                {
                    open += 1;
                }
                if state.get("failed").is_some() {
                    return Err(format!("{id} failed: {state}"));
                }
            }
            if open == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let http = HttpClient::new(Timeouts {
        connect: Duration::from_secs(3),
        response: Duration::from_secs(60),
        idle: Duration::from_secs(60),
    });
    let base = args.proxy.trim_end_matches('/').to_owned();
    let login = Request::builder()
        .uri(format!("{base}/federation/v1/auth"))
        .header("x-auth-user", &args.user)
        .header("x-auth-key", &args.key)
        .body(full(""))
        .map_err(|e| e.to_string())?;
    let resp = http.send(login).await.map_err(|e| e.to_string())?;
    let token = resp
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("login refused: {}", resp.status()))?
        .to_owned();
    let api = Api { http, base, token };
    match args.command {
        Command::Move {
            account,
            container,
            to,
            wait,
        } => {
            let v = api
                .call(
                    Method::POST,
                    "/federation/v1/migrations",
                    Some(serde_json::json!({"account": account, "container": container, "to": to})),
                )
                .await?;
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            println!("{id}");
            if wait {
                api.wait(&[id]).await?;
            }
        }
        Command::Drain {
            account,
            cluster,
            concurrency,
            wait,
        } => {
            let v = api
                .call(Method::POST, "/federation/v1/drains", Some(serde_json::json!({"account": account, "cluster": cluster, "concurrency": concurrency})))
                .await?;
            let ids: Vec<String> = v["migrations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            println!("{}", ids.join("\n"));
            if wait {
                api.wait(&ids).await?;
            }
        }
        Command::Rebalance {
            fill_target,
            accounts,
            concurrency,
            wait,
        } => {
            // A percentage stays a string; anything else is sent as a number.
            let target = if fill_target.trim_end().ends_with('%') {
                serde_json::json!(fill_target)
            } else {
                serde_json::json!(fill_target
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{fill_target}: not a fraction or a percentage"))?)
            };
            let v = api
                .call(Method::POST, "/federation/v1/rebalances", Some(serde_json::json!({"fill_target": target, "accounts": accounts, "concurrency": concurrency})))
                .await?;
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            println!("{id}");
            if wait {
                loop {
                    let r = api
                        .call(
                            Method::GET,
                            &format!("/federation/v1/rebalances/{id}"),
                            None,
                        )
                        .await?;
                    for c in r["clusters"].as_array().into_iter().flatten() {
                        println!(
                            "  {}: {:.1}% ({} of {} bytes)",
                            c["cluster"].as_str().unwrap_or(""),
                            c["fill"].as_f64().unwrap_or(0.0) * 100.0,
                            c["used_bytes"],
                            c["capacity_bytes"]
                        );
                    }
                    for m in r["moves"].as_array().into_iter().flatten() {
                        println!(
                            "  {}/{} {} -> {}: {}",
                            m["account"].as_str().unwrap_or(""),
                            m["container"].as_str().unwrap_or(""),
                            m["from"].as_str().unwrap_or(""),
                            m["to"].as_str().unwrap_or(""),
                            m["phase"].as_str().unwrap_or("")
                        );
                    }
                    match r["state"].as_str() {
                        Some("running") => tokio::time::sleep(Duration::from_secs(1)).await,
                        Some("done") => break,
                        _ => return Err(format!("rebalance stopped: {}", r["reason"])),
                    }
                }
            }
        }
        Command::Cancel { id } => {
            let v = api
                .call(
                    Method::DELETE,
                    &format!("/federation/v1/migrations/{id}"),
                    None,
                )
                .await?;
            println!("{id}: {}", v["state"]);
        }
        Command::Status { id } => {
            let path = id.map_or_else(
                || "/federation/v1/migrations".to_owned(),
                |i| format!("/federation/v1/migrations/{i}"),
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&api.call(Method::GET, &path, None).await?)
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(run(Args::parse())));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("federation-migrate: {e}");
            ExitCode::FAILURE
        }
    }
}
