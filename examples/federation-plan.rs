//! Dry-run a placement policy: reads clusters and a policy from TOML, places N
//! containers (or the names given), and prints where they land and why nothing fits
//! where nothing does. Nothing is written anywhere.
//!
//! ```text
//! cargo run --example federation-plan -- examples/federation.toml [--count N] [NAME…]
//! ```
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Deserialize;
use stackfed::federation_core::placement::{PlacementRequest, PolicyConfig};
use stackfed::federation_core::{
    AccountName, ClusterId, ClusterSpec, ClusterState, ClusterStatus, ContainerName,
};

const USAGE: &str = "usage: federation-plan CONFIG.toml [--count N] [--account NAME] \
[--label KEY=VALUE]... [CONTAINER]...

Places containers with the configured policy over the configured clusters and prints
the result. CONFIG has [[clusters]] tables (id, endpoint, capacity_bytes, labels,
weight, high_water_mark, and optionally state and used_bytes) and a [policy] table.";

#[derive(Deserialize)]
struct Config {
    clusters: Vec<ClusterConfig>,
    #[serde(default)]
    policy: PolicyConfig,
}

#[derive(Deserialize)]
struct ClusterConfig {
    #[serde(flatten)]
    spec: ClusterSpec,
    #[serde(default)]
    state: ClusterState,
    #[serde(default)]
    used_bytes: u64,
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut count = 10usize;
    let mut account = "AUTH_demo".to_owned();
    let mut labels = BTreeMap::new();
    let mut names = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--count" => {
                let v = args.next().ok_or("--count needs a number")?;
                count = v
                    .parse()
                    .map_err(|_| format!("--count: not a number: {v}"))?;
            }
            "--account" => account = args.next().ok_or("--account needs a name")?,
            "--label" => {
                let v = args.next().ok_or("--label needs KEY=VALUE")?;
                let (k, val) = v.split_once('=').ok_or("--label needs KEY=VALUE")?;
                labels.insert(k.to_owned(), val.to_owned());
            }
            _ if path.is_none() => path = Some(a),
            _ => names.push(a),
        }
    }
    let path = path.ok_or(USAGE)?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let config: Config = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    config.policy.validate().map_err(|e| e.to_string())?;
    let policy = config.policy.build();
    let clusters: Vec<ClusterStatus> = config
        .clusters
        .into_iter()
        .map(|c| {
            ClusterStatus::new(c.spec)
                .with_state(c.state)
                .with_used_bytes(c.used_bytes)
        })
        .collect();
    let account = AccountName::new(account).map_err(|e| e.to_string())?;
    if names.is_empty() {
        names = (0..count).map(|i| format!("container-{i}")).collect();
    }
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for name in names {
        let container = ContainerName::new(name.as_str()).map_err(|e| e.to_string())?;
        let mut request = PlacementRequest::new(account.clone(), container);
        for (k, v) in &labels {
            if k == "cluster" {
                request = request.pin(ClusterId::new(v).map_err(|e| e.to_string())?);
            } else {
                request = request.label(k, v.clone());
            }
        }
        match policy.place_among(&request, &clusters) {
            Ok(id) => {
                println!("{name}\t{id}");
                *tally.entry(id.to_string()).or_default() += 1;
            }
            Err(e) => {
                println!("{name}\trefused: {e}");
                *tally.entry("(refused)".to_owned()).or_default() += 1;
            }
        }
    }
    println!("-- policy {}", policy.name());
    for (cluster, n) in tally {
        println!("-- {cluster}: {n}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("federation-plan: {e}");
            ExitCode::from(2)
        }
    }
}
