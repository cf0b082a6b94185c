//! The listing merge against a naive model: collect every name, filter, roll up, sort.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use federation_core::listing::{merge_page, ListingEntry, ListingQuery, VecSource};
use proptest::prelude::*;

/// The model: what one Swift account holding all `names` answers to `q`.
fn model(names: &BTreeSet<String>, q: &ListingQuery) -> Vec<(String, bool)> {
    let (lower, _) = q.bounds();
    let mut out: BTreeSet<(String, bool)> = BTreeSet::new();
    for n in names.iter().filter(|n| q.admits(n)) {
        match q.rollup(n) {
            Some(dir) if Some(dir) == lower => {}
            Some(dir) => {
                out.insert((dir.to_owned(), true));
            }
            None => {
                out.insert((n.clone(), false));
            }
        }
    }
    let mut v: Vec<(String, bool)> = out.into_iter().collect();
    // Byte order: String's Ord is byte order of UTF-8.
    v.sort();
    if q.reverse {
        v.reverse();
    }
    v.truncate(q.limit);
    v
}

fn flat(page: &[ListingEntry<()>]) -> Vec<(String, bool)> {
    page.iter()
        .map(|e| (e.name().to_owned(), e.is_subdir()))
        .collect()
}

fn name() -> impl Strategy<Value = String> {
    // A small alphabet so names share prefixes and delimiters often; multi-byte
    // characters whose byte order differs from their code point order in UTF-16.
    let ch = prop::sample::select(vec!['a', 'b', '/', '-', '0', 'é', '中', '𝄞', '\u{7f}', '~']);
    prop::collection::vec(ch, 1..6).prop_map(|cs| cs.into_iter().collect())
}

fn maybe_text() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.4,
        prop::collection::vec(
            prop::sample::select(vec!['a', 'b', '/', '-', 'é', '中', '𝄞']),
            0..4,
        )
        .prop_map(|cs| cs.into_iter().collect::<String>()),
    )
}

fn query() -> impl Strategy<Value = ListingQuery> {
    (
        prop_oneof![0usize..12, Just(10_000usize)],
        maybe_text(),
        maybe_text(),
        maybe_text(),
        prop::option::weighted(0.5, prop::sample::select(vec!['/', '-', 'é'])),
        any::<bool>(),
    )
        .prop_map(|(limit, marker, end_marker, prefix, delimiter, reverse)| {
            let mut q = ListingQuery::new().limit(limit).reverse(reverse);
            if let Some(m) = marker {
                q = q.marker(m);
            }
            if let Some(e) = end_marker {
                q = q.end_marker(e);
            }
            if let Some(p) = prefix {
                q = q.prefix(p);
            }
            if let Some(d) = delimiter {
                q = q.delimiter(d);
            }
            q
        })
}

/// Names spread over 1–5 sources; some names sit on two sources at once (a container
/// name present on two clusters must still be listed once).
fn sources() -> impl Strategy<Value = (BTreeSet<String>, Vec<Vec<String>>)> {
    (1usize..=5).prop_flat_map(|k| {
        prop::collection::vec((name(), 0..k, prop::option::weighted(0.1, 0..k)), 0..60).prop_map(
            move |items| {
                let mut all = BTreeSet::new();
                let mut parts = vec![Vec::new(); k];
                for (n, i, dup) in items {
                    all.insert(n.clone());
                    if let Some(j) = dup {
                        parts[j].push(n.clone());
                    }
                    parts[i].push(n);
                }
                (all, parts)
            },
        )
    })
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// One page of the merge equals the model's page.
    #[test]
    fn merged_page_equals_model((all, parts) in sources(), q in query()) {
        let mut srcs: Vec<VecSource> = parts.iter().map(|p| VecSource::new(p.clone())).collect();
        let page = run(merge_page(&mut srcs, &q)).unwrap();
        prop_assert_eq!(flat(&page), model(&all, &q));
    }

    /// Each source alone answers like the model over its own names: the in-memory source
    /// really behaves like one Swift account.
    #[test]
    fn single_source_equals_model((all, _) in sources(), q in query()) {
        let src = VecSource::new(all.iter().cloned());
        prop_assert_eq!(flat(&src.page(&q)), model(&all, &q));
    }

    /// Paging through with marker = last name of the previous page visits exactly the
    /// model's full listing, whatever the page size.
    #[test]
    fn paging_visits_everything_once((all, parts) in sources(), q in query(), page in 1usize..7) {
        let mut full = q.clone();
        full.limit = 10_000;
        let expected = model(&all, &full);
        let mut srcs: Vec<VecSource> = parts.iter().map(|p| VecSource::new(p.clone())).collect();
        let mut seen = Vec::new();
        let mut cur = q.clone();
        cur.limit = page;
        loop {
            let got = run(merge_page(&mut srcs, &cur)).unwrap();
            prop_assert!(got.len() <= page);
            let done = got.len() < page;
            if let Some(last) = got.last() {
                cur.marker = Some(last.name().to_owned());
            }
            seen.extend(flat(&got));
            if done || seen.len() > expected.len() {
                break;
            }
        }
        prop_assert_eq!(seen, expected);
    }
}

#[test]
fn limit_over_maximum_is_refused() {
    let mut srcs = vec![VecSource::new(["a"])];
    let q = ListingQuery::new().limit(10_001);
    assert!(run(merge_page(&mut srcs, &q)).is_err());
    assert_eq!(srcs[0].fetches(), 0, "nothing was fetched");
}

#[test]
fn sources_are_pulled_lazily() {
    // A page of 10 from two sources of 1,000 names: each source is asked once, for 10.
    let a: Vec<String> = (0..1000).map(|i| format!("a{i:04}")).collect();
    let b: Vec<String> = (0..1000).map(|i| format!("b{i:04}")).collect();
    let mut srcs = vec![VecSource::new(a), VecSource::new(b)];
    let page = run(merge_page(&mut srcs, &ListingQuery::new().limit(10))).unwrap();
    assert_eq!(page.len(), 10);
    assert!(page.iter().all(|e| e.name().starts_with('a')));
    assert_eq!(srcs[0].fetches(), 1);
    assert_eq!(srcs[1].fetches(), 1);
}

#[test]
fn swift_examples() {
    // Hand-checked against Swift's account server semantics.
    let all: BTreeSet<String> = ["a/b", "a/c", "a-x", "a0", "b"].map(String::from).into();
    let mut srcs = vec![
        VecSource::new(["a/b", "a0"]),
        VecSource::new(["a/c", "a-x", "b"]),
    ];
    let q = ListingQuery::new().delimiter('/');
    let page = run(merge_page(&mut srcs, &q)).unwrap();
    assert_eq!(
        flat(&page),
        vec![
            ("a-x".to_owned(), false),
            ("a/".to_owned(), true),
            ("a0".to_owned(), false),
            ("b".to_owned(), false)
        ]
    );
    assert_eq!(flat(&page), model(&all, &q));
    // A marker inside a rolled-up group still shows the group's subdir (as Swift does).
    let q = ListingQuery::new().delimiter('/').marker("a/b");
    let page = run(merge_page(&mut srcs, &q)).unwrap();
    assert_eq!(page[0].name(), "a/");
    // Reverse with markers swapped: below "b", above "a-x".
    let q = ListingQuery::new()
        .reverse(true)
        .marker("b")
        .end_marker("a-x");
    let page = run(merge_page(&mut srcs, &q)).unwrap();
    let names: Vec<&str> = page.iter().map(ListingEntry::name).collect();
    assert_eq!(names, ["a0", "a/c", "a/b"]);
}
