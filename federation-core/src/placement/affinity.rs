//! Account affinity with spill-over.

use super::{admissible, MostFree, PlacementError, PlacementPolicy, PlacementRequest};
use crate::cluster::{ClusterId, ClusterStatus};

/// Keeps an account's new containers together: among the clusters below `fill_threshold`
/// (used / capacity), the one that already holds most of the account's containers wins.
/// Once that cluster passes the threshold the account spills over: to the next cluster
/// that holds the most of it, or, for an account with nothing below the threshold, to the
/// choice of the `spill` policy (most free space by default) among clusters below the
/// threshold, and only when every cluster is past the threshold, among all admissible ones.
///
/// The footprint is counted in containers ([`PlacementRequest::footprint`]).
#[derive(Debug)]
pub struct AccountAffinity {
    /// Fill ratio (0.0–1.0) past which the account spills over to another cluster.
    pub fill_threshold: f64,
    spill: Box<dyn PlacementPolicy>,
}

impl AccountAffinity {
    /// Affinity with the given threshold, spilling over by most free space.
    pub fn new(fill_threshold: f64) -> Self {
        Self::with_spill(fill_threshold, Box::new(MostFree))
    }

    /// Affinity that uses `spill` to choose where an account goes when it has no home.
    pub fn with_spill(fill_threshold: f64, spill: Box<dyn PlacementPolicy>) -> Self {
        Self {
            fill_threshold,
            spill,
        }
    }
}

impl PlacementPolicy for AccountAffinity {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        let (ok, rejections) = admissible(request, clusters);
        if ok.is_empty() {
            return Err(PlacementError::NoFit { rejections });
        }
        let below: Vec<&ClusterStatus> = ok
            .iter()
            .copied()
            .filter(|c| c.fill_ratio() < self.fill_threshold)
            .collect();
        let mut home: Option<(&ClusterStatus, u64)> = None;
        for c in &below {
            let n = request.footprint.get(c.id()).copied().unwrap_or(0);
            if n > 0 && home.is_none_or(|(_, best)| n > best) {
                home = Some((c, n));
            }
        }
        if let Some((c, _)) = home {
            return Ok(c.id().clone());
        }
        let pool = if below.is_empty() { &ok } else { &below };
        self.spill.place(request, pool)
    }

    fn name(&self) -> &'static str {
        "account-affinity"
    }

    fn needs_footprint(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;

    #[test]
    fn stays_home_then_spills_over() {
        let p = AccountAffinity::new(0.8);
        let fp = |pairs: &[(&str, u64)]| pairs.iter().map(|(c, n)| (id(c), *n)).collect();
        // Home is "small" although "big" has more free space.
        let clusters = [cluster("small", 100, 10, &[]), cluster("big", 1000, 0, &[])];
        let r = request("x").footprint(fp(&[("small", 5), ("big", 1)]));
        assert_eq!(p.place_among(&r, &clusters).unwrap(), id("small"));
        // New account: most free.
        assert_eq!(p.place_among(&request("y"), &clusters).unwrap(), id("big"));
        // Home passes the threshold: the account goes to where it has the most next.
        let clusters = [
            cluster("small", 100, 85, &[]),
            cluster("big", 1000, 0, &[]),
            cluster("mid", 500, 0, &[]),
        ];
        let r = request("x").footprint(fp(&[("small", 5), ("mid", 1)]));
        assert_eq!(p.place_among(&r, &clusters).unwrap(), id("mid"));
        // Everything past the threshold but not full: still placed, by most free.
        let clusters = [cluster("a", 100, 85, &[]), cluster("b", 100, 90, &[])];
        let r = request("x").footprint(fp(&[("b", 9)]));
        assert_eq!(p.place_among(&r, &clusters).unwrap(), id("a"));
    }
}
