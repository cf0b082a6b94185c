//! The k-way merge.

use std::collections::VecDeque;

use futures::future::join_all;

use super::{ListingEntry, ListingError, ListingQuery, ListingSource};

/// Produces one page of the merged listing of `sources`, as one Swift account holding
/// all their names would answer `query`.
///
/// Each source is asked once, concurrently, for one page of `query.limit` entries; the
/// pages are merged in byte order (descending when reversed) and entries with the same
/// name from several sources (a `subdir` present on many clusters) appear once.
///
/// One page per source is always enough: a source's page holds `limit` distinct names,
/// and every name taken from it is either emitted or equal to the name just emitted, so
/// by the time any page runs dry the merged page is full. Memory is bounded by one page
/// per source.
pub async fn merge_page<S>(
    sources: &mut [S],
    query: &ListingQuery,
) -> Result<Vec<ListingEntry<S::Item>>, ListingError>
where
    S: ListingSource,
{
    query.validate()?;
    let limit = query.limit;
    let mut out: Vec<ListingEntry<S::Item>> = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let pages = join_all(sources.iter_mut().map(|s| s.fetch(query))).await;
    let mut heads: Vec<VecDeque<ListingEntry<S::Item>>> = Vec::with_capacity(pages.len());
    for (index, page) in pages.into_iter().enumerate() {
        let page = page.map_err(|source| ListingError::Source { index, source })?;
        heads.push(page.into());
    }
    while out.len() < limit {
        // The smallest (largest when reversed) head among the sources.
        let mut best: Option<(usize, &str)> = None;
        for (i, h) in heads.iter().enumerate() {
            let Some(head) = h.front() else { continue };
            let better = match best {
                None => true,
                Some((_, cur)) if query.reverse => head.name() > cur,
                Some((_, cur)) => head.name() < cur,
            };
            if better {
                best = Some((i, head.name()));
            }
        }
        let Some((i, _)) = best else { break };
        let Some(entry) = heads[i].pop_front() else {
            break;
        };
        if out.last().is_some_and(|prev| prev.name() == entry.name()) {
            continue;
        }
        out.push(entry);
    }
    Ok(out)
}
