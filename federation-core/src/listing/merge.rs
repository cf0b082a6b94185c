//! The k-way merge.

use std::collections::VecDeque;

use futures::future::join_all;

use super::{ListingEntry, ListingError, ListingQuery, ListingSource};

struct Cursor<T> {
    buffer: VecDeque<ListingEntry<T>>,
    /// The last name fetched: the marker of the next page.
    last: Option<String>,
    exhausted: bool,
}

/// Produces one page of the merged listing of `sources`, as one Swift account holding
/// all their names would answer `query`.
///
/// Sources are asked for pages of at most the remaining page size, concurrently, and only
/// when the merge needs their next entry; a source is asked again (with its last name as
/// the marker) only when its page ran out while it may have more. Entries with the same
/// name from several sources (a `subdir` present on many clusters) appear once.
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
    let mut cursors: Vec<Cursor<S::Item>> = sources
        .iter()
        .map(|_| Cursor {
            buffer: VecDeque::new(),
            last: None,
            exhausted: false,
        })
        .collect();
    let mut first = true;
    loop {
        // Refill every cursor whose buffer ran dry and that may have more.
        let remaining = limit - out.len();
        let wanted: Vec<usize> = cursors
            .iter()
            .enumerate()
            .filter(|(_, c)| c.buffer.is_empty() && !c.exhausted)
            .map(|(i, _)| i)
            .collect();
        if !wanted.is_empty() {
            let queries: Vec<ListingQuery> = wanted
                .iter()
                .map(|&i| {
                    let mut q = query.clone();
                    q.limit = remaining;
                    if !first {
                        q.marker = cursors[i].last.clone();
                    }
                    q
                })
                .collect();
            let fetches = sources
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| wanted.contains(i))
                .zip(queries.iter())
                .map(|((i, s), q)| async move { (i, s.fetch(q).await) });
            for (i, result) in join_all(fetches).await {
                let page = result.map_err(|source| ListingError::Source { index: i, source })?;
                let cursor = &mut cursors[i];
                cursor.exhausted = page.len() < remaining;
                if let Some(last) = page.last() {
                    cursor.last = Some(last.name().to_owned());
                }
                cursor.buffer.extend(page);
            }
        }
        first = false;

        // Take the smallest (largest when reversed) head among the cursors.
        let mut best: Option<usize> = None;
        for (i, c) in cursors.iter().enumerate() {
            let Some(head) = c.buffer.front() else {
                continue;
            };
            let better = match best.and_then(|b| cursors[b].buffer.front()) {
                None => true,
                Some(cur) if query.reverse => head.name() > cur.name(),
                Some(cur) => head.name() < cur.name(),
            };
            if better {
                best = Some(i);
            }
        }
        let Some(b) = best else {
            return Ok(out);
        };
        let Some(entry) = cursors[b].buffer.pop_front() else {
            return Ok(out);
        };
        if out.last().is_some_and(|prev| prev.name() == entry.name()) {
            continue;
        }
        out.push(entry);
        if out.len() == limit {
            return Ok(out);
        }
    }
}
