//! Merged listings: one Swift listing page from several sorted sources.
//!
//! Each cluster lists its own share of an account's containers in byte order. A
//! federation must answer an account `GET` exactly as one Swift account would: the same
//! `limit`, `marker`, `end_marker`, `prefix`, `delimiter` (with `subdir` roll-ups, each
//! once) and `reverse` semantics. [`merge_page`] does that over any number of
//! [`ListingSource`]s, asking each for one page concurrently and holding no more.
//!
//! ```
//! use federation_core::listing::{merge_page, ListingEntry, ListingQuery, VecSource};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut sources = vec![
//!     VecSource::new(["logs/2024", "photos", "zeta"]),
//!     VecSource::new(["alpha", "logs/2025"]),
//! ];
//! let query = ListingQuery::new().delimiter('/').limit(3);
//! let page = merge_page(&mut sources, &query).await.unwrap();
//! let names: Vec<&str> = page.iter().map(ListingEntry::name).collect();
//! assert_eq!(names, ["alpha", "logs/", "photos"]);
//! # });
//! ```

mod merge;
mod query;
mod vec_source;

pub use merge::merge_page;
pub use query::{ListingQuery, DEFAULT_LISTING_LIMIT, MAX_LISTING_LIMIT};
pub use vec_source::VecSource;

use async_trait::async_trait;

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingEntry<T> {
    /// A real item (a container in an account listing) with its details.
    Item {
        /// The item's name.
        name: String,
        /// Whatever the source knows about it (counts, bytes, timestamps…).
        data: T,
    },
    /// A roll-up of names sharing a prefix up to the delimiter (`"logs/"`).
    Subdir {
        /// The common prefix, delimiter included.
        name: String,
    },
}

impl<T> ListingEntry<T> {
    /// The name the entry sorts by.
    pub fn name(&self) -> &str {
        match self {
            Self::Item { name, .. } | Self::Subdir { name } => name,
        }
    }

    /// Whether this is a subdir roll-up.
    pub fn is_subdir(&self) -> bool {
        matches!(self, Self::Subdir { .. })
    }
}

/// A boxed error from a source.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Errors from a merged listing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListingError {
    /// The query is invalid (Swift answers 412 for a limit over 10,000, 400 otherwise).
    #[error("invalid listing query: {reason}")]
    InvalidQuery {
        /// What is wrong.
        reason: String,
    },
    /// A source failed: the listing would be incomplete (503, or a partial answer if
    /// the caller allows it).
    #[error("listing source {index} failed: {source}")]
    Source {
        /// The index of the failed source.
        index: usize,
        /// Its error.
        #[source]
        source: SourceError,
    },
}

/// A source of one sorted listing, such as one cluster's account listing.
///
/// `fetch` answers one page for `query` exactly as a Swift account server would: names
/// in byte order (descending when `reverse`), filtered by the markers and prefix, rolled
/// up at the delimiter, at most `query.limit` entries. Fewer than `limit` entries means
/// the source has nothing more.
#[async_trait]
pub trait ListingSource: Send {
    /// What an item carries besides its name.
    type Item: Send;

    /// One page of the listing.
    async fn fetch(
        &mut self,
        query: &ListingQuery,
    ) -> Result<Vec<ListingEntry<Self::Item>>, SourceError>;
}
