//! Explicit pin to a named cluster.

use super::{PlacementError, PlacementPolicy, PlacementRequest};
use crate::cluster::{ClusterId, ClusterStatus};

/// Honours [`PlacementRequest::pin`]: the named cluster if it can take the container,
/// otherwise a [`PlacementError::PinRefused`] that says why (draining, offline, full), or
/// [`PlacementError::UnknownCluster`]. Never falls back to another cluster. Without a pin
/// the policy does not apply ([`PlacementError::NotApplicable`]), so it composes as
/// `first-of = [pin, …]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pin;

impl PlacementPolicy for Pin {
    fn place(
        &self,
        request: &PlacementRequest,
        clusters: &[&ClusterStatus],
    ) -> Result<ClusterId, PlacementError> {
        let Some(pinned) = &request.pin else {
            return Err(PlacementError::NotApplicable {
                policy: "pin",
                reason: "no cluster is pinned",
            });
        };
        let cluster = clusters.iter().find(|c| c.id() == pinned).ok_or_else(|| {
            PlacementError::UnknownCluster {
                cluster: pinned.clone(),
            }
        })?;
        cluster
            .admits(request.expected_bytes)
            .map_err(|reason| PlacementError::PinRefused {
                cluster: pinned.clone(),
                reason,
            })?;
        Ok(pinned.clone())
    }

    fn name(&self) -> &'static str {
        "pin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterState, Unfit};
    use crate::placement::testing::*;

    #[test]
    fn honours_or_refuses() {
        let clusters = [
            cluster("a", 100, 0, &[]),
            state(cluster("b", 100, 0, &[]), ClusterState::Draining),
            cluster("c", 100, 100, &[]),
        ];
        let r = request("x");
        assert!(matches!(
            Pin.place_among(&r, &clusters),
            Err(PlacementError::NotApplicable { .. })
        ));
        assert_eq!(
            Pin.place_among(&r.clone().pin(id("a")), &clusters).unwrap(),
            id("a")
        );
        assert_eq!(
            Pin.place_among(&r.clone().pin(id("b")), &clusters),
            Err(PlacementError::PinRefused {
                cluster: id("b"),
                reason: Unfit::Draining
            })
        );
        assert!(matches!(
            Pin.place_among(&r.clone().pin(id("c")), &clusters),
            Err(PlacementError::PinRefused {
                reason: Unfit::Full { .. },
                ..
            })
        ));
        assert_eq!(
            Pin.place_among(&r.pin(id("zz")), &clusters),
            Err(PlacementError::UnknownCluster { cluster: id("zz") })
        );
    }
}
