//! Cluster capacity and usage, refreshed from the clusters' storage nodes.
//!
//! Swift's `recon` middleware on a storage node answers `GET /recon/diskusage` with one
//! entry per device: `{"device", "mounted", "size", "used", "avail"}` (bytes, from
//! `statvfs`). A [`UsageProbe`] asks every configured node of every cluster at an
//! interval, sums the mounted devices, and records the cluster's capacity and usage in
//! the registry, so spill-over placement reacts to what the clusters really hold. A
//! cluster without recon endpoints keeps its configured figures; a node that does not
//! answer leaves the cluster's last figures in place (and is logged).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use federation_core::{ClusterId, ClusterRegistry};
use http::Request;
use serde::Deserialize;
use url::Url;

use crate::body::empty;
use crate::client::BackendClient;

/// One device in a `/recon/diskusage` answer. Unmounted devices carry `""` sizes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceUsage {
    /// The device's name.
    pub device: String,
    /// `true`, `false`, or an error text.
    pub mounted: serde_json::Value,
    /// Size in bytes (absent or `""` when unmounted).
    #[serde(default, deserialize_with = "bytes_or_blank")]
    pub size: Option<u64>,
    /// Used bytes (absent or `""` when unmounted).
    #[serde(default, deserialize_with = "bytes_or_blank")]
    pub used: Option<u64>,
}

fn bytes_or_blank<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

/// The sum over the mounted devices of one or more nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of all mounted devices.
    pub capacity_bytes: u64,
    /// Bytes used on them.
    pub used_bytes: u64,
    /// How many devices were counted.
    pub devices: usize,
}

impl Usage {
    /// Adds one node's answer (the body of `/recon/diskusage`); unmounted devices and
    /// devices without figures are skipped.
    pub fn add_diskusage(&mut self, body: &[u8]) -> Result<(), serde_json::Error> {
        let devices: Vec<DeviceUsage> = serde_json::from_slice(body)?;
        for d in devices {
            if let (serde_json::Value::Bool(true), Some(size), Some(used)) =
                (&d.mounted, d.size, d.used)
            {
                self.capacity_bytes = self.capacity_bytes.saturating_add(size);
                self.used_bytes = self.used_bytes.saturating_add(used);
                self.devices += 1;
            }
        }
        Ok(())
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct UsageProbe {
    registry: Arc<ClusterRegistry>,
    client: BackendClient,
    nodes: HashMap<ClusterId, Vec<Url>>,
    interval: Duration,
}

impl UsageProbe {
    /// A probe asking `nodes` (storage nodes running recon, per cluster).
    pub fn new(
        registry: Arc<ClusterRegistry>,
        client: BackendClient,
        nodes: HashMap<ClusterId, Vec<Url>>,
        interval: Duration,
    ) -> Self {
        Self {
            registry,
            client,
            nodes,
            interval,
        }
    }

    async fn node(&self, node: &Url) -> Result<bytes::Bytes, String> {
        let url = format!("{}/recon/diskusage", node.as_str().trim_end_matches('/'));
        let req = Request::get(&url)
            .body(empty())
            .map_err(|e| e.to_string())?;
        let (parts, body) = self
            .client
            .send_collect(req, 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        if !parts.status.is_success() {
            return Err(format!("{url} answered {}", parts.status));
        }
        Ok(body)
    }

    /// One cluster's usage; `None` when a node did not answer or no device is mounted.
    pub async fn measure(&self, cluster: &ClusterId) -> Option<Usage> {
        let nodes = self.nodes.get(cluster)?;
        let answers = futures::future::join_all(nodes.iter().map(|n| self.node(n))).await;
        let mut usage = Usage::default();
        for (node, answer) in nodes.iter().zip(answers) {
            let counted = answer.and_then(|b| usage.add_diskusage(&b).map_err(|e| e.to_string()));
            if let Err(e) = counted {
                tracing::warn!(%cluster, node = %node, error = %e, "no usage from a storage node");
                return None;
            }
        }
        if usage.devices == 0 {
            tracing::warn!(%cluster, "no mounted device reported; keeping the configured capacity");
            return None;
        }
        Some(usage)
    }

    /// Measures every cluster once, concurrently, and records what it found.
    pub async fn refresh_once(&self) {
        let ids: Vec<ClusterId> = self.nodes.keys().cloned().collect();
        let found = futures::future::join_all(ids.iter().map(|id| self.measure(id))).await;
        for (id, usage) in ids.iter().zip(found) {
            let Some(u) = usage else { continue };
            let _ = self.registry.update(id, |s| {
                s.spec.capacity_bytes = u.capacity_bytes;
                s.used_bytes = u.used_bytes;
                s.last_seen = Some(SystemTime::now());
            });
            tracing::debug!(cluster = %id, capacity = u.capacity_bytes, used = u.used_bytes, "usage refreshed");
        }
    }

    /// Runs forever (until the task is dropped or aborted).
    pub async fn run(self) {
        crate::health::every(self.interval, || self.refresh_once()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_mounted_devices_only() {
        let body = br#"[
            {"device": "d1", "mounted": true, "size": 1000, "used": 100, "avail": 900},
            {"device": "d2", "mounted": false, "size": "", "used": "", "avail": ""},
            {"device": "d3", "mounted": "[Errno 2] No such file", "size": "", "used": "", "avail": ""},
            {"device": "d4", "mounted": true, "size": 500, "used": 250, "avail": 250}
        ]"#;
        let mut u = Usage::default();
        u.add_diskusage(body).unwrap();
        assert_eq!(
            u,
            Usage {
                capacity_bytes: 1500,
                used_bytes: 350,
                devices: 2
            }
        );
        assert!(u.add_diskusage(b"{\"not\": \"a list\"}").is_err());
        assert!(u.add_diskusage(b"").is_err());
        assert_eq!(u.devices, 2, "a bad answer adds nothing");
    }
}
