//! Weighted random choice by free space, deterministic per name.

use super::hash::StableHasher;
use super::{admissible, PlacementError, PlacementPolicy, PlacementRequest};
use crate::cluster::{ClusterId, ClusterStatus};

/// Chooses among admissible clusters at random, with probability proportional to
/// `free_bytes × weight`. The "random" draw is a stable hash of the seed, the account and
/// the container name: the same request over the same clusters always lands in the same
/// place, while many containers spread in proportion to free space.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedFree {
    /// Seed of the draw; change it to reshuffle.
    pub seed: u64,
}

impl WeightedFree {
    /// A policy with the given seed.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl PlacementPolicy for WeightedFree {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        let (ok, rejections) = admissible(request, clusters);
        let score = |c: &ClusterStatus| u128::from(c.free_bytes()) * u128::from(c.spec.weight);
        let total: u128 = ok.iter().map(|c| score(c)).sum();
        if total == 0 {
            return Err(PlacementError::NoFit { rejections });
        }
        let draw = StableHasher::new(self.seed)
            .field(request.account.as_str())
            .field(request.container.as_str())
            .finish();
        // Scale the 64-bit draw to [0, total) without modulo bias worth mentioning.
        let mut point = (u128::from(draw) * total) >> 64;
        for c in &ok {
            let s = score(c);
            if point < s {
                return Ok(c.id().clone());
            }
            point -= s;
        }
        // Unreachable in arithmetic terms (point < total); answer the last one anyway.
        ok.last()
            .map(|c| c.id().clone())
            .ok_or(PlacementError::NoFit { rejections })
    }

    fn name(&self) -> &'static str {
        "weighted-free"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;

    #[test]
    fn deterministic_and_proportional() {
        let clusters = [cluster("a", 1000, 0, &[]), cluster("b", 3000, 0, &[])];
        let p = WeightedFree::new(1);
        let mut on_b = 0;
        for i in 0..4000 {
            let r = request(&format!("c{i}"));
            let first = p.place_among(&r, &clusters).unwrap();
            assert_eq!(first, p.place_among(&r, &clusters).unwrap());
            if first == id("b") {
                on_b += 1;
            }
        }
        // Expect 3000 of 4000; allow a wide statistical margin.
        assert!((2800..3200).contains(&on_b), "{on_b}");
    }

    #[test]
    fn seed_changes_the_draw() {
        let clusters = [cluster("a", 1000, 0, &[]), cluster("b", 1000, 0, &[])];
        let differs = (0..64).any(|i| {
            let r = request(&format!("c{i}"));
            WeightedFree::new(1).place_among(&r, &clusters).unwrap()
                != WeightedFree::new(2).place_among(&r, &clusters).unwrap()
        });
        assert!(differs);
    }
}
