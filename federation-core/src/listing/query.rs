//! Listing query parameters.

use super::ListingError;

/// The default page size of a Swift listing.
pub const DEFAULT_LISTING_LIMIT: usize = 10_000;
/// The largest page size Swift accepts.
pub const MAX_LISTING_LIMIT: usize = 10_000;

/// The parameters of a Swift listing request.
///
/// Empty `marker`, `end_marker` and `prefix` mean "none", as in Swift. With `reverse`,
/// the listing runs downwards: `marker` is then the upper bound and `end_marker` the
/// lower one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListingQuery {
    /// At most this many entries (default and maximum 10,000).
    pub limit: usize,
    /// Only names after this one (before it when `reverse`).
    pub marker: Option<String>,
    /// Only names before this one (after it when `reverse`).
    pub end_marker: Option<String>,
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Roll names up into `subdir` entries at the first delimiter after the prefix (any
    /// non-empty string, as Swift allows in account listings).
    pub delimiter: Option<String>,
    /// List in descending byte order.
    pub reverse: bool,
}

impl Default for ListingQuery {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LISTING_LIMIT,
            marker: None,
            end_marker: None,
            prefix: None,
            delimiter: None,
            reverse: false,
        }
    }
}

fn non_empty(s: impl Into<String>) -> Option<String> {
    Some(s.into()).filter(|s| !s.is_empty())
}

impl ListingQuery {
    /// The default query: everything, 10,000 at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets the marker (empty means none).
    pub fn marker(mut self, marker: impl Into<String>) -> Self {
        self.marker = non_empty(marker);
        self
    }

    /// Sets the end marker (empty means none).
    pub fn end_marker(mut self, end_marker: impl Into<String>) -> Self {
        self.end_marker = non_empty(end_marker);
        self
    }

    /// Sets the prefix (empty means none).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = non_empty(prefix);
        self
    }

    /// Sets the delimiter (a character or a longer string; empty means none).
    pub fn delimiter(mut self, delimiter: impl Into<String>) -> Self {
        let d: String = delimiter.into();
        self.delimiter = (!d.is_empty()).then_some(d);
        self
    }

    /// Lists in descending order.
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }

    /// Checks the limit.
    pub fn validate(&self) -> Result<(), ListingError> {
        if self.limit > MAX_LISTING_LIMIT {
            return Err(ListingError::InvalidQuery {
                reason: format!(
                    "limit {} is over the maximum of {MAX_LISTING_LIMIT}",
                    self.limit
                ),
            });
        }
        Ok(())
    }

    /// The exclusive (lower, upper) bounds in byte order, after `reverse` swaps them.
    pub fn bounds(&self) -> (Option<&str>, Option<&str>) {
        let (m, e) = (self.marker.as_deref(), self.end_marker.as_deref());
        if self.reverse {
            (e, m)
        } else {
            (m, e)
        }
    }

    /// Whether `name` passes the prefix and both markers (before any roll-up).
    pub fn admits(&self, name: &str) -> bool {
        let (lower, upper) = self.bounds();
        self.prefix.as_deref().is_none_or(|p| name.starts_with(p))
            && lower.is_none_or(|l| name > l)
            && upper.is_none_or(|u| name < u)
    }

    /// The subdir `name` rolls up into under this query's prefix and delimiter, if any.
    pub fn rollup<'n>(&self, name: &'n str) -> Option<&'n str> {
        let d = self.delimiter.as_deref()?;
        let start = self.prefix.as_deref().map_or(0, str::len);
        let tail = name.get(start..)?;
        tail.find(d).map(|i| &name[..start + i + d.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_of_several_characters_roll_up_as_swift_does() {
        // Swift's account listing: `?delimiter=ab` cuts after the first "ab" past the
        // prefix (the subdir keeps the whole delimiter).
        let q = ListingQuery::new().delimiter("ab");
        assert_eq!(q.rollup("xxabyyab"), Some("xxab"));
        assert_eq!(q.rollup("xxa"), None);
        let q = ListingQuery::new().delimiter("ab").prefix("ab");
        assert_eq!(q.rollup("abab"), Some("abab"));
        assert_eq!(q.rollup("abcab"), Some("abcab"));
        assert_eq!(ListingQuery::new().delimiter("").delimiter, None);
        assert_eq!(ListingQuery::new().delimiter('/').rollup("a/b"), Some("a/"));
    }
}
