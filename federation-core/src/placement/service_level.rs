//! Service-level matching: the container's requested labels against the clusters' labels.

use std::collections::BTreeMap;

use super::{ClusterFilter, PlacementRequest};
use crate::cluster::{ClusterStatus, Unfit};

/// The label keys a [`ServiceLevelMatch`] looks at unless configured otherwise.
pub const DEFAULT_SERVICE_LEVEL_KEYS: [&str; 3] = ["tier", "redundancy", "region"];

/// Admits only clusters whose labels match every service-level label the container asks
/// for (for example `X-Container-Attr-Tier: gold` needs a cluster labelled `tier = "gold"`).
///
/// Only the configured `keys` are service levels; other attributes a client sets are
/// recorded but do not constrain placement. A key the request does not mention does not
/// constrain either. Values compare exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLevelMatch {
    keys: Vec<String>,
}

impl ServiceLevelMatch {
    /// Matches the given label keys (lower-cased).
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            keys: keys
                .into_iter()
                .map(|k| k.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// The keys this filter matches.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

impl Default for ServiceLevelMatch {
    fn default() -> Self {
        Self::new(DEFAULT_SERVICE_LEVEL_KEYS)
    }
}

fn require(
    cluster: &ClusterStatus,
    wanted: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
) -> Result<(), Unfit> {
    for (key, want) in wanted {
        let found = cluster.spec.labels.get(key.as_ref());
        if found.map(String::as_str) != Some(want.as_ref()) {
            return Err(Unfit::LabelMismatch {
                label: key.as_ref().to_owned(),
                wanted: want.as_ref().to_owned(),
                found: found.cloned(),
            });
        }
    }
    Ok(())
}

impl ClusterFilter for ServiceLevelMatch {
    fn check(&self, request: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit> {
        require(
            cluster,
            self.keys
                .iter()
                .filter_map(|k| request.labels.get(k).map(|v| (k, v))),
        )
    }

    fn name(&self) -> &'static str {
        "service-level"
    }
}

/// Admits only clusters that carry all the given labels: an operator's fixed
/// constraint, such as "only clusters in `region = east`".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequireLabels {
    /// The labels every admitted cluster must carry.
    pub labels: BTreeMap<String, String>,
}

impl ClusterFilter for RequireLabels {
    fn check(&self, _request: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit> {
        require(cluster, &self.labels)
    }

    fn name(&self) -> &'static str {
        "require-labels"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;
    use crate::placement::{Filtered, MostFree, PlacementError, PlacementPolicy};

    #[test]
    fn requested_levels_must_all_match() {
        let clusters = [
            cluster("gold1", 100, 0, &[("tier", "gold"), ("redundancy", "2")]),
            cluster("gold3", 100, 50, &[("tier", "gold"), ("redundancy", "3")]),
            cluster(
                "silver",
                1000,
                0,
                &[("tier", "silver"), ("redundancy", "3")],
            ),
        ];
        let p = Filtered::new(vec![Box::new(ServiceLevelMatch::default())], MostFree);
        let r = request("x").label("Tier", "gold").label("redundancy", "3");
        assert_eq!(p.place_among(&r, &clusters).unwrap(), id("gold3"));
        // No level requested: every cluster qualifies, most free wins.
        assert_eq!(
            p.place_among(&request("y"), &clusters).unwrap(),
            id("silver")
        );
        // Non-service-level attributes do not constrain.
        let r = request("z").label("owner", "bob");
        assert_eq!(p.place_among(&r, &clusters).unwrap(), id("silver"));
        // Impossible level: every cluster says why.
        let r = request("w").label("tier", "platinum");
        let err = p.place_among(&r, &clusters).unwrap_err();
        let PlacementError::NoFit { rejections } = err else {
            panic!()
        };
        assert_eq!(rejections.len(), 3);
        assert!(rejections
            .iter()
            .all(|r| matches!(r.reason, Unfit::LabelMismatch { .. })));
    }

    #[test]
    fn require_labels_filters_clusters() {
        let clusters = [
            cluster("e", 100, 0, &[("region", "east")]),
            cluster("w", 1000, 0, &[("region", "west")]),
        ];
        let f = RequireLabels {
            labels: [("region".to_owned(), "east".to_owned())].into(),
        };
        let p = Filtered::new(vec![Box::new(f)], MostFree);
        assert_eq!(p.place_among(&request("x"), &clusters).unwrap(), id("e"));
    }
}
