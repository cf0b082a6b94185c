//! Rendezvous (highest random weight) hashing.

use super::hash::{unit_interval, StableHasher};
use super::{pick_max, PlacementError, PlacementPolicy, PlacementRequest};
use crate::cluster::{ClusterId, ClusterStatus};

/// Weighted rendezvous hashing: each admissible cluster scores
/// `weight / -ln(h(cluster, account, container))` and the highest score wins.
///
/// Adding or removing a cluster moves only the containers that go to or come from it,
/// which makes the choice predictable for operators: the same name in the same account
/// lands on the same cluster while that cluster can take it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendezvous {
    /// Seed of the hash.
    pub seed: u64,
}

impl PlacementPolicy for Rendezvous {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        pick_max(request, clusters, |c| {
            let h = StableHasher::new(self.seed)
                .field(c.id().as_str())
                .field(request.account.as_str())
                .field(request.container.as_str())
                .finish();
            f64::from(c.spec.weight) / -unit_interval(h).ln()
        })
    }

    fn name(&self) -> &'static str {
        "rendezvous"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;

    #[test]
    fn adding_a_cluster_only_moves_containers_to_it() {
        let two = [cluster("a", 1000, 0, &[]), cluster("b", 1000, 0, &[])];
        let three = [
            cluster("a", 1000, 0, &[]),
            cluster("b", 1000, 0, &[]),
            cluster("c", 1000, 0, &[]),
        ];
        let p = Rendezvous::default();
        let mut moved = 0;
        for i in 0..3000 {
            let r = request(&format!("c{i}"));
            let before = p.place_among(&r, &two).unwrap();
            let after = p.place_among(&r, &three).unwrap();
            if before != after {
                assert_eq!(after, id("c"));
                moved += 1;
            }
        }
        // About a third move to the new cluster.
        assert!((800..1200).contains(&moved), "{moved}");
    }
}
