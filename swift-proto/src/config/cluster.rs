//! One `[[clusters]]` table: every key known, every value checked.

use std::collections::BTreeMap;

use federation_core::{ClusterId, ClusterSpec, ClusterState};
use serde::Deserialize;

/// One cluster in the configuration: its spec and the state it has when healthy.
///
/// Unknown keys are refused (`weigth = 2` is an error naming `weigth`), and so are
/// values that would be silently reinterpreted (`high_water_mark = 90`, an `ftp://`
/// endpoint).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawCluster")]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The cluster.
    pub spec: ClusterSpec,
    /// `online` (default) or `draining` (serves, takes no new containers).
    pub state: ClusterState,
    /// Bytes used, as configured (until measured from `recon_endpoints`).
    pub used_bytes: u64,
    /// Storage nodes running Swift's `recon` middleware (base URLs, such as the object
    /// servers'): when given, the cluster's capacity and usage are refreshed from their
    /// `/recon/diskusage` every `usage_interval`, replacing the configured
    /// `capacity_bytes` and `used_bytes`.
    pub recon_endpoints: Vec<url::Url>,
}

fn default_weight() -> u32 {
    1
}

fn default_high_water_mark() -> f64 {
    0.9
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    id: ClusterId,
    endpoint: url::Url,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    capacity_bytes: u64,
    #[serde(default)]
    used_bytes: u64,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default = "default_high_water_mark")]
    high_water_mark: f64,
    #[serde(default)]
    state: ClusterState,
    #[serde(default)]
    recon_endpoints: Vec<url::Url>,
}

impl TryFrom<RawCluster> for ClusterConfig {
    type Error = String;

    fn try_from(r: RawCluster) -> Result<Self, String> {
        let mut spec = ClusterSpec::new(r.id.clone(), r.endpoint, r.capacity_bytes)
            .weight(r.weight)
            .high_water_mark(r.high_water_mark);
        spec.labels = r.labels;
        spec.validate()
            .map_err(|e| format!("cluster {}: {e}", r.id))?;
        for u in &r.recon_endpoints {
            stackfed_http::config::http_endpoint("recon_endpoints", u)
                .map_err(|e| format!("cluster {}: {e}", r.id))?;
        }
        if r.state == ClusterState::Offline {
            return Err(format!(
                "cluster {}: state = \"offline\" is not a configured state (online or draining; the health probe decides offline)",
                r.id
            ));
        }
        Ok(Self {
            spec,
            state: r.state,
            used_bytes: r.used_bytes,
            recon_endpoints: r.recon_endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<ClusterConfig, String> {
        let text =
            format!("id = \"a\"\nendpoint = \"http://127.0.0.1:1\"\ncapacity_bytes = 100\n{extra}");
        toml::from_str::<ClusterConfig>(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_mistakes_naming_them() {
        assert!(parse("").is_ok());
        let e = parse("weigth = 2").unwrap_err();
        assert!(e.contains("weigth"), "{e}");
        let e = parse("recon_endpoint = \"http://x:6200\"").unwrap_err();
        assert!(e.contains("recon_endpoint"), "{e}");
        let e = parse("high_water_mark = 90").unwrap_err();
        assert!(e.contains("high_water_mark"), "{e}");
        let e = parse("recon_endpoints = [\"ftp://x:6200\"]").unwrap_err();
        assert!(e.contains("ftp://"), "{e}");
        let c = parse("used_bytes = 40\nstate = \"draining\"").unwrap();
        assert_eq!(c.used_bytes, 40);
        assert_eq!(c.state, ClusterState::Draining);
    }
}
