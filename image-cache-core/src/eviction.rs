//! The size budget: deciding, before a fill starts, whether an image may be cached and
//! what must be evicted to make room. Pure, so it is easy to test against a model.

use crate::id::ImageId;

/// What the planner needs to know about one cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resident {
    /// The image.
    pub id: ImageId,
    /// Bytes it holds.
    pub size: u64,
    /// Last read, ms since the epoch (older goes first).
    pub last_access_ms: u64,
    /// Pinned images are never evicted.
    pub pinned: bool,
    /// Images being read are never evicted.
    pub in_use: bool,
}

/// The decision for a new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Cache it, after evicting these (least recently used first).
    Admit {
        /// Images to remove first.
        evict: Vec<ImageId>,
    },
    /// Do not cache it: stream it through (it is larger than the budget, or pinned and
    /// in-use images leave no room).
    Bypass,
}

/// Plans the admission of `need` bytes into a cache holding `residents` plus `reserved`
/// bytes of fills in progress, under `budget` bytes: evicts the fewest least recently
/// used images that are neither pinned nor in use, or bypasses when that cannot make
/// room. After an `Admit`, residents − evicted + reserved + need ≤ budget.
pub fn plan_admission(residents: &[Resident], reserved: u64, budget: u64, need: u64) -> Admission {
    let used: u64 = residents
        .iter()
        .map(|r| r.size)
        .sum::<u64>()
        .saturating_add(reserved);
    if need > budget {
        return Admission::Bypass;
    }
    let mut over = (used.saturating_add(need)).saturating_sub(budget);
    if over == 0 {
        return Admission::Admit { evict: Vec::new() };
    }
    let mut candidates: Vec<&Resident> = residents
        .iter()
        .filter(|r| !r.pinned && !r.in_use)
        .collect();
    candidates.sort_by(|a, b| {
        a.last_access_ms
            .cmp(&b.last_access_ms)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut evict = Vec::new();
    for c in candidates {
        if over == 0 {
            break;
        }
        evict.push(c.id.clone());
        over = over.saturating_sub(c.size);
    }
    if over > 0 {
        Admission::Bypass
    } else {
        Admission::Admit { evict }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: usize) -> ImageId {
        ImageId::parse(&format!("{n:08x}-0000-4000-8000-000000000000")).unwrap()
    }

    fn residents() -> impl Strategy<Value = Vec<Resident>> {
        prop::collection::vec((0u64..500, 0u64..50, any::<bool>(), any::<bool>()), 0..12).prop_map(
            |v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (size, t, pinned, in_use))| Resident {
                        id: id(i),
                        size,
                        last_access_ms: t,
                        pinned: pinned && i.is_multiple_of(3),
                        in_use: in_use && i.is_multiple_of(4),
                    })
                    .collect()
            },
        )
    }

    /// The model: take evictable images oldest first until the new image fits.
    fn model(rs: &[Resident], reserved: u64, budget: u64, need: u64) -> Option<Vec<ImageId>> {
        if need > budget {
            return None;
        }
        let mut ev: Vec<&Resident> = rs.iter().filter(|r| !r.pinned && !r.in_use).collect();
        ev.sort_by_key(|r| (r.last_access_ms, r.id.clone()));
        let mut used: u64 = rs.iter().map(|r| r.size).sum::<u64>() + reserved;
        let mut out = Vec::new();
        let mut it = ev.into_iter();
        while used + need > budget {
            let r = it.next()?;
            used -= r.size;
            out.push(r.id.clone());
        }
        Some(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn matches_the_model_and_keeps_the_invariants(
            rs in residents(), reserved in 0u64..300, budget in 0u64..3000, need in 0u64..1500,
        ) {
            let plan = plan_admission(&rs, reserved, budget, need);
            let want = model(&rs, reserved, budget, need);
            match (&plan, &want) {
                (Admission::Admit { evict }, Some(m)) => {
                    prop_assert_eq!(evict, m);
                    let freed: u64 = rs.iter().filter(|r| evict.contains(&r.id)).map(|r| r.size).sum();
                    let used: u64 = rs.iter().map(|r| r.size).sum::<u64>() + reserved;
                    prop_assert!(used - freed + need <= budget, "never over budget");
                    prop_assert!(rs.iter().filter(|r| evict.contains(&r.id)).all(|r| !r.pinned && !r.in_use));
                }
                (Admission::Bypass, None) => {
                    // Bypass only when even evicting everything evictable cannot make room.
                    let keep: u64 = rs.iter().filter(|r| r.pinned || r.in_use).map(|r| r.size).sum();
                    prop_assert!(need > budget || keep + reserved + need > budget);
                }
                _ => prop_assert!(false, "plan {:?} vs model {:?}", plan, want),
            }
        }
    }
}
