//! Cluster capacity and usage, refreshed from the clusters' storage nodes.
//!
//! Swift's `recon` middleware on a storage node answers `GET /recon/diskusage` with one
//! entry per device: `{"device", "mounted", "size", "used", "avail"}` (bytes, from
//! `statvfs`). A [`UsageProbe`] asks every configured node of every cluster at an
//! interval, sums the mounted devices, and records the cluster's capacity and usage in
//! the registry, so spill-over placement reacts to what the clusters really hold. A
//! cluster without recon endpoints keeps its configured figures; a node that does not
//! answer leaves the cluster's last figures in place (and is logged).

use std::sync::Arc;
use std::time::SystemTime;

use federation_core::ClusterRegistry;
use serde::Deserialize;

use super::{Clusters, SwiftCluster};

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
    clusters: Clusters,
}

impl UsageProbe {
    /// A probe of the `clusters` that have recon nodes, recording in `registry`.
    pub fn new(registry: Arc<ClusterRegistry>, clusters: Clusters) -> Self {
        Self { registry, clusters }
    }

    /// Whether any cluster has recon nodes (otherwise there is nothing to probe).
    pub fn has_work(&self) -> bool {
        self.clusters.iter().any(SwiftCluster::has_recon)
    }

    /// One cluster's usage; `None` when a node did not answer or no device is mounted.
    pub async fn measure(&self, cluster: &SwiftCluster) -> Option<Usage> {
        match cluster.diskusage().await {
            Ok(u) if u.devices > 0 => Some(u),
            Ok(_) => {
                tracing::warn!(cluster = %cluster.id(), "no mounted device reported; keeping the configured capacity");
                None
            }
            Err(e) => {
                tracing::warn!(cluster = %cluster.id(), error = %e, "no usage from a storage node");
                None
            }
        }
    }

    /// Measures every cluster once, concurrently, and records what it found.
    pub async fn refresh_once(&self) {
        let with_recon: Vec<&SwiftCluster> =
            self.clusters.iter().filter(|c| c.has_recon()).collect();
        let found = futures::future::join_all(with_recon.iter().map(|c| self.measure(c))).await;
        for (c, usage) in with_recon.iter().zip(found) {
            let Some(u) = usage else { continue };
            let _ = self.registry.update(c.id(), |s| {
                s.spec.capacity_bytes = u.capacity_bytes;
                s.used_bytes = u.used_bytes;
                s.last_seen = Some(SystemTime::now());
            });
            tracing::debug!(cluster = %c.id(), capacity = u.capacity_bytes, used = u.used_bytes, "usage refreshed");
        }
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
