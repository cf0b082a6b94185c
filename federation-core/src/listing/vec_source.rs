//! An in-memory listing source with Swift's account-server algorithm.

use std::sync::Arc;

use async_trait::async_trait;

use super::{ListingEntry, ListingQuery, ListingSource, SourceError};

/// A source over an in-memory set of names, answering exactly as Swift's account
/// server does (it walks the sorted names the way Swift walks its database: skipping a
/// rolled-up group in one step, and never emitting a subdir equal to the lower marker).
///
/// Useful for tests, benchmarks, and for listing records the federation holds itself.
#[derive(Debug, Clone, Default)]
pub struct VecSource {
    names: Arc<[String]>,
    fetches: usize,
}

impl VecSource {
    /// A source over `names` (sorted and deduplicated here). Clones share the names.
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort_unstable();
        names.dedup();
        Self {
            names: names.into(),
            fetches: 0,
        }
    }

    /// How many pages were fetched from this source.
    pub fn fetches(&self) -> usize {
        self.fetches
    }

    /// One page, as Swift computes it.
    pub fn page(&self, query: &ListingQuery) -> Vec<ListingEntry<()>> {
        let (lower, upper) = query.bounds();
        let mut out: Vec<ListingEntry<()>> = Vec::new();
        // Positions in `names` of the current window [lo, hi).
        let start_of = |lower: Option<&str>| match lower {
            Some(l) => self.names.partition_point(|n| n.as_str() <= l),
            None => 0,
        };
        let end_of = |upper: Option<&str>| match upper {
            Some(u) => self.names.partition_point(|n| n.as_str() < u),
            None => self.names.len(),
        };
        let mut lo = start_of(lower);
        let mut hi = end_of(upper);
        while out.len() < query.limit && lo < hi {
            let idx = if query.reverse { hi - 1 } else { lo };
            let name = self.names[idx].as_str();
            if query.reverse {
                hi -= 1;
            } else {
                lo += 1;
            }
            if !query.admits(name) {
                continue;
            }
            match query.rollup(name) {
                Some(dir) => {
                    if Some(dir) != lower {
                        out.push(ListingEntry::Subdir {
                            name: dir.to_owned(),
                        });
                    }
                    // Skip the whole group: every name starting with `dir`.
                    if query.reverse {
                        hi = hi.min(end_of(Some(dir)));
                    } else {
                        lo = lo.max(
                            self.names
                                .partition_point(|n| n.as_str() < dir || n.starts_with(dir)),
                        );
                    }
                }
                None => out.push(ListingEntry::Item {
                    name: name.to_owned(),
                    data: (),
                }),
            }
        }
        out
    }
}

#[async_trait]
impl ListingSource for VecSource {
    type Item = ();

    async fn fetch(&mut self, query: &ListingQuery) -> Result<Vec<ListingEntry<()>>, SourceError> {
        self.fetches += 1;
        Ok(self.page(query))
    }
}
