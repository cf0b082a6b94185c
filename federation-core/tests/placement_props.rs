//! Placement invariants over random clusters and requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use federation_core::placement::{
    AccountAffinity, FirstOf, MostFree, Pin, PlacementError, PlacementPolicy, PlacementRequest,
    PolicyConfig, Rendezvous, WeightedFree,
};
use federation_core::{
    AccountName, ClusterId, ClusterSpec, ClusterState, ClusterStatus, ContainerName,
};
use proptest::prelude::*;

fn cluster_strategy(i: usize) -> impl Strategy<Value = ClusterStatus> {
    (
        0u64..2000,
        0u64..2400,
        prop::sample::select(vec![
            ClusterState::Online,
            ClusterState::Online,
            ClusterState::Draining,
            ClusterState::Offline,
        ]),
        0u32..4,
        prop::sample::select(vec![0.5, 0.8, 0.9, 1.0]),
        prop::sample::select(vec!["gold", "silver"]),
        prop::sample::select(vec!["2", "3"]),
    )
        .prop_map(move |(cap, used, state, weight, hwm, tier, red)| {
            let spec = ClusterSpec::new(
                ClusterId::new(format!("c{i}")).unwrap(),
                "http://127.0.0.1:1".parse().unwrap(),
                cap,
            )
            .weight(weight)
            .high_water_mark(hwm)
            .label("tier", tier)
            .label("redundancy", red);
            ClusterStatus::new(spec)
                .with_state(state)
                .with_used_bytes(used)
        })
}

fn clusters() -> impl Strategy<Value = Vec<ClusterStatus>> {
    (1usize..9).prop_flat_map(|n| (0..n).map(cluster_strategy).collect::<Vec<_>>())
}

fn request(n_clusters: usize) -> impl Strategy<Value = PlacementRequest> {
    (
        "[a-z]{1,8}",
        prop::option::of(prop::sample::select(vec!["gold", "silver", "platinum"])),
        prop::option::of(prop::sample::select(vec!["2", "3"])),
        prop::option::weighted(0.3, 0..n_clusters + 1),
        0u64..300,
        prop::collection::btree_map(0..n_clusters + 1, 0u64..5, 0..4),
    )
        .prop_map(|(name, tier, red, pin, expected, fp)| {
            let mut r = PlacementRequest::new(
                AccountName::new("AUTH_p").unwrap(),
                ContainerName::new(name).unwrap(),
            )
            .expected_bytes(expected)
            .footprint(
                fp.into_iter()
                    .map(|(i, n)| (ClusterId::new(format!("c{i}")).unwrap(), n))
                    .collect::<BTreeMap<_, _>>(),
            );
            if let Some(t) = tier {
                r = r.label("tier", t);
            }
            if let Some(x) = red {
                r = r.label("redundancy", x);
            }
            if let Some(p) = pin {
                // Index n_clusters names a cluster that does not exist.
                r = r.pin(ClusterId::new(format!("c{p}")).unwrap());
            }
            r
        })
}

fn scenario() -> impl Strategy<Value = (Vec<ClusterStatus>, PlacementRequest)> {
    clusters().prop_flat_map(|cs| {
        let n = cs.len();
        (Just(cs), request(n))
    })
}

fn policies() -> Vec<Box<dyn PlacementPolicy>> {
    vec![
        Box::new(MostFree),
        Box::new(WeightedFree::new(7)),
        Box::new(Rendezvous { seed: 3 }),
        Box::new(AccountAffinity::new(0.7)),
        Box::new(Pin),
        Box::new(FirstOf::new(vec![Box::new(Pin), Box::new(MostFree)])),
        PolicyConfig::default().build(),
        PolicyConfig::from_toml(
            r#"kind = "service-level"
               then = { kind = "rendezvous" }"#,
        )
        .unwrap()
        .build(),
    ]
}

fn find<'a>(cs: &'a [ClusterStatus], id: &ClusterId) -> &'a ClusterStatus {
    cs.iter().find(|c| c.id() == id).unwrap()
}

fn matches_levels(c: &ClusterStatus, r: &PlacementRequest) -> bool {
    r.labels
        .iter()
        .all(|(k, v)| c.spec.labels.get(k) == Some(v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Every policy: never a draining, offline, weightless or full cluster; deterministic;
    /// a "nothing fits" answer names every cluster.
    #[test]
    fn never_places_on_an_unfit_cluster((cs, r) in scenario()) {
        for p in policies() {
            let first = p.place_among(&r, &cs);
            prop_assert_eq!(&first, &p.place_among(&r, &cs), "{} is deterministic", p.name());
            match first {
                Ok(id) => {
                    let c = find(&cs, &id);
                    prop_assert!(c.admits(r.expected_bytes).is_ok(),
                        "{} chose {} which is {:?}", p.name(), id, c.admits(r.expected_bytes));
                    prop_assert_eq!(c.state, ClusterState::Online);
                }
                Err(PlacementError::NoFit { rejections }) => {
                    for c in &cs {
                        prop_assert!(rejections.iter().any(|x| x.cluster == *c.id()),
                            "{} left {} unexplained", p.name(), c.id());
                    }
                }
                Err(_) => {}
            }
        }
    }

    /// Ranking policies answer NoFit only when truly nothing admits the container, and
    /// most-free picks a cluster with the most free space.
    #[test]
    fn rankers_fail_only_when_nothing_admits((cs, r) in scenario()) {
        let any_fit = cs.iter().any(|c| c.admits(r.expected_bytes).is_ok());
        for p in [&MostFree as &dyn PlacementPolicy, &WeightedFree::new(1), &Rendezvous::default(), &AccountAffinity::new(0.8)] {
            let got = p.place_among(&r, &cs);
            prop_assert_eq!(got.is_ok(), any_fit, "{}: {:?}", p.name(), got);
        }
        if let Ok(id) = MostFree.place_among(&r, &cs) {
            let best = cs.iter().filter(|c| c.admits(r.expected_bytes).is_ok())
                .map(ClusterStatus::free_bytes).max().unwrap();
            prop_assert_eq!(find(&cs, &id).free_bytes(), best);
        }
    }

    /// Service levels are respected, and fail only when no admissible cluster matches.
    #[test]
    fn service_levels_are_respected((cs, r) in scenario()) {
        let p = PolicyConfig::from_toml(r#"kind = "service-level""#).unwrap().build();
        let possible = cs.iter().any(|c| c.admits(r.expected_bytes).is_ok() && matches_levels(c, &r));
        match p.place_among(&r, &cs) {
            Ok(id) => prop_assert!(matches_levels(find(&cs, &id), &r)),
            Err(e) => {
                prop_assert!(!possible, "refused although possible: {}", e);
                let is_no_fit = matches!(e, PlacementError::NoFit { .. });
                prop_assert!(is_no_fit);
            }
        }
    }

    /// A pin is honoured when the cluster can take the container, else refused with the
    /// reason; it never silently lands elsewhere.
    #[test]
    fn pins_are_honoured_or_refused((cs, r) in scenario()) {
        let p = PolicyConfig::default().build();
        let got = p.place_among(&r, &cs);
        if let Some(pin) = &r.pin {
            match cs.iter().find(|c| c.id() == pin) {
                None => prop_assert_eq!(got, Err(PlacementError::UnknownCluster { cluster: pin.clone() })),
                Some(c) => match c.admits(r.expected_bytes) {
                    Ok(()) => prop_assert_eq!(got, Ok(pin.clone())),
                    Err(reason) => prop_assert_eq!(got, Err(PlacementError::PinRefused { cluster: pin.clone(), reason })),
                },
            }
        }
    }
}
