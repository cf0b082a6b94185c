//! Composition: filters in front of a ranking policy, and the first policy that applies.

use std::fmt;

use super::{PlacementError, PlacementPolicy, PlacementRequest, Rejection};
use crate::cluster::{ClusterId, ClusterStatus, Unfit};

/// A yes/no test of one cluster for one request, used in front of a ranking policy.
pub trait ClusterFilter: Send + Sync + fmt::Debug {
    /// `Ok` if the cluster may take the container, else why not.
    fn check(&self, request: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit>;

    /// A short name for logs.
    fn name(&self) -> &'static str;
}

/// Filters, then a ranking policy over the clusters that passed them. When nothing fits,
/// the error carries the filters' rejections as well as the ranker's.
#[derive(Debug)]
pub struct Filtered {
    filters: Vec<Box<dyn ClusterFilter>>,
    then: Box<dyn PlacementPolicy>,
    name: &'static str,
}

impl Filtered {
    /// Applies `filters` in order, then `then`.
    pub fn new(filters: Vec<Box<dyn ClusterFilter>>, then: impl PlacementPolicy + 'static) -> Self {
        Self {
            filters,
            then: Box::new(then),
            name: "filtered",
        }
    }

    /// Sets the name recorded with placements.
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
}

impl PlacementPolicy for Filtered {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        let mut passed = Vec::with_capacity(clusters.len());
        let mut rejections = Vec::new();
        'clusters: for c in clusters {
            for f in &self.filters {
                if let Err(reason) = f.check(request, c) {
                    rejections.push(Rejection {
                        cluster: c.id().clone(),
                        reason,
                    });
                    continue 'clusters;
                }
            }
            passed.push(*c);
        }
        match self.then.place(request, &passed) {
            Err(PlacementError::NoFit { rejections: more }) => {
                rejections.extend(more);
                Err(PlacementError::NoFit { rejections })
            }
            other => other,
        }
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn needs_footprint(&self) -> bool {
        self.then.needs_footprint()
    }
}

/// Asks each policy in turn and returns the first answer; a policy that does not apply
/// ([`PlacementError::NotApplicable`]) passes to the next. Any other error is final:
/// a refused pin or an unmet service level is never silently overridden.
#[derive(Debug)]
pub struct FirstOf {
    policies: Vec<Box<dyn PlacementPolicy>>,
}

impl FirstOf {
    /// Tries `policies` in order.
    pub fn new(policies: Vec<Box<dyn PlacementPolicy>>) -> Self {
        Self { policies }
    }
}

impl PlacementPolicy for FirstOf {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        for p in &self.policies {
            match p.place(request, clusters) {
                Err(PlacementError::NotApplicable { .. }) => continue,
                other => return other,
            }
        }
        Err(PlacementError::NotApplicable {
            policy: "first-of",
            reason: "none of the policies applies",
        })
    }

    fn name(&self) -> &'static str {
        "first-of"
    }

    fn needs_footprint(&self) -> bool {
        self.policies.iter().any(|p| p.needs_footprint())
    }
}

/// Admits only one cluster: the one a related container lives on (a container and its
/// `_segments`, a container and its versions location). Refusals name the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SameClusterAs {
    /// The cluster.
    pub cluster: ClusterId,
    /// Why, for errors (`"segments live with their container"`).
    pub reason: &'static str,
}

impl ClusterFilter for SameClusterAs {
    fn check(&self, _: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit> {
        if cluster.id() == &self.cluster {
            Ok(())
        } else {
            Err(Unfit::NotPinned {
                pinned: self.cluster.clone(),
            })
        }
    }

    fn name(&self) -> &'static str {
        self.reason
    }
}

/// Admits the clusters that offer a capability named in a request (for example a Swift
/// storage policy, which only some clusters define), from what each cluster says it
/// offers. Matching ignores ASCII case.
#[derive(Debug, Clone)]
pub struct Offers {
    /// What is offered (`"storage-policy"`), for errors.
    pub label: &'static str,
    /// The value the request wants.
    pub wanted: String,
    /// What each cluster offers.
    pub offered: std::collections::BTreeMap<ClusterId, Vec<String>>,
}

impl ClusterFilter for Offers {
    fn check(&self, _: &PlacementRequest, cluster: &ClusterStatus) -> Result<(), Unfit> {
        let has = self
            .offered
            .get(cluster.id())
            .is_some_and(|vs| vs.iter().any(|v| v.eq_ignore_ascii_case(&self.wanted)));
        if has {
            Ok(())
        } else {
            Err(Unfit::LabelMismatch {
                label: self.label.into(),
                wanted: self.wanted.clone(),
                found: None,
            })
        }
    }

    fn name(&self) -> &'static str {
        self.label
    }
}

/// Admits a cluster only if every filter does (the per-request filters of one
/// placement, applied together). An empty list admits every cluster.
#[derive(Debug, Default)]
pub struct AllOf<'a>(pub Vec<&'a dyn ClusterFilter>);

impl ClusterFilter for AllOf<'_> {
    fn check(&self, r: &PlacementRequest, c: &ClusterStatus) -> Result<(), Unfit> {
        self.0.iter().try_for_each(|f| f.check(r, c))
    }

    fn name(&self) -> &'static str {
        "all-of"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterState;
    use crate::placement::testing::*;
    use crate::placement::{MostFree, Pin};

    #[test]
    fn first_of_falls_through_only_when_not_applicable() {
        let clusters = [
            cluster("a", 100, 0, &[]),
            state(cluster("b", 1000, 0, &[]), ClusterState::Draining),
            cluster("c", 500, 0, &[]),
        ];
        let p = FirstOf::new(vec![Box::new(Pin), Box::new(MostFree)]);
        assert_eq!(p.place_among(&request("x"), &clusters).unwrap(), id("c"));
        assert_eq!(
            p.place_among(&request("x").pin(id("a")), &clusters)
                .unwrap(),
            id("a")
        );
        assert!(matches!(
            p.place_among(&request("x").pin(id("b")), &clusters),
            Err(PlacementError::PinRefused { .. })
        ));
        let only_pin = FirstOf::new(vec![Box::new(Pin)]);
        assert!(matches!(
            only_pin.place_among(&request("x"), &clusters),
            Err(PlacementError::NotApplicable { .. })
        ));
    }

    #[test]
    fn per_request_filters_combine() {
        let a = cluster("a", 100, 0, &[]);
        let b = cluster("b", 100, 0, &[]);
        let r = request("x");
        let same = SameClusterAs {
            cluster: id("b"),
            reason: "segments live with their container",
        };
        assert!(same.check(&r, &a).is_err());
        assert!(same.check(&r, &b).is_ok());
        let offers = Offers {
            label: "storage-policy",
            wanted: "GOLD".into(),
            offered: [(id("a"), vec!["gold".to_owned()]), (id("b"), vec![])].into(),
        };
        assert!(offers.check(&r, &a).is_ok(), "case is ignored");
        assert!(matches!(
            offers.check(&r, &b),
            Err(Unfit::LabelMismatch { found: None, .. })
        ));
        assert!(AllOf::default().check(&r, &a).is_ok());
        let both = AllOf(vec![&same, &offers]);
        assert!(
            both.check(&r, &a).is_err(),
            "offers, but not the same cluster"
        );
        assert!(both.check(&r, &b).is_err(), "same cluster, but no offer");
    }
}
