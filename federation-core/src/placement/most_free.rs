//! Most free space wins.

use super::{pick_max, PlacementError, PlacementPolicy, PlacementRequest};
use crate::cluster::{ClusterId, ClusterStatus};

/// Chooses the admissible cluster with the most free bytes below its high-water mark;
/// ties go to the first in configuration order.
#[derive(Debug, Clone, Copy, Default)]
pub struct MostFree;

impl PlacementPolicy for MostFree {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        pick_max(request, clusters, ClusterStatus::free_bytes)
    }

    fn name(&self) -> &'static str {
        "most-free"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterState;
    use crate::placement::testing::*;

    #[test]
    fn picks_the_freest_admissible_cluster() {
        let a = cluster("a", 100, 10, &[]);
        let b = cluster("b", 1000, 10, &[]);
        let c = state(cluster("c", 10_000, 0, &[]), ClusterState::Draining);
        let got = MostFree.place_among(&request("x"), &[a, b, c]).unwrap();
        assert_eq!(got, id("b"));
    }

    #[test]
    fn explains_when_nothing_fits() {
        let a = cluster("a", 100, 100, &[]);
        let b = state(cluster("b", 100, 0, &[]), ClusterState::Offline);
        let err = MostFree.place_among(&request("x"), &[a, b]).unwrap_err();
        let PlacementError::NoFit { rejections } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(rejections.len(), 2);
        let text = err.to_string();
        assert!(text.contains("a: full"), "{text}");
        assert!(text.contains("b: offline"), "{text}");
    }
}
