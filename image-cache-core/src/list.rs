//! Listing cached images with Glance's filters, sorting, marker and limit semantics.

use std::cmp::Ordering;

use serde_json::Value;

use crate::id::ImageId;
use crate::record::{ImageRecord, Visibility};

/// Glance's default page size.
pub const DEFAULT_LIMIT: usize = 25;
/// Glance's largest page size.
pub const MAX_LIMIT: usize = 1000;

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// A listing query.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Field equality filters (`name`, `status`, `owner`, `disk_format`, custom properties…).
    pub filters: Vec<(String, String)>,
    /// `visibility=`; `None` lists all but community images, `"all"` everything.
    pub visibility: Option<String>,
    /// Images carrying every one of these tags.
    pub tags: Vec<String>,
    /// Minimum size in bytes.
    pub size_min: Option<u64>,
    /// Maximum size in bytes.
    pub size_max: Option<u64>,
    /// Whether hidden images (`os_hidden`) are listed instead of the others.
    pub os_hidden: bool,
    /// `member_status=` (shared images by the caller's membership status): passed to the
    /// upstream; the cache itself knows accepted members only and ignores it.
    pub member_status: Option<String>,
    /// Sort keys, most significant first (default `created_at` descending).
    pub sort: Vec<(String, SortDir)>,
    /// List after this image.
    pub marker: Option<ImageId>,
    /// Page size.
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            filters: Vec::new(),
            visibility: None,
            tags: Vec::new(),
            size_min: None,
            size_max: None,
            os_hidden: false,
            member_status: None,
            sort: Vec::new(),
            marker: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The images, in the query's order.
    pub images: Vec<ImageRecord>,
    /// Whether more follow (the next page starts after the last image).
    pub more: bool,
}

/// A query that cannot be answered (Glance answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The marker is not an image in this listing.
    #[error("marker {0} not found")]
    UnknownMarker(ImageId),
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => as_text(x).cmp(&as_text(y)),
    }
}

impl ListQuery {
    fn matches(&self, r: &ImageRecord) -> bool {
        let vis_ok = match self.visibility.as_deref() {
            None => r.visibility != Visibility::Community,
            Some("all") => true,
            Some(v) => r.visibility.as_str() == v,
        };
        let hidden = matches!(r.properties.get("os_hidden"), Some(Value::Bool(true)));
        vis_ok
            && hidden == self.os_hidden
            && self
                .filters
                .iter()
                .all(|(k, want)| r.field(k).is_some_and(|v| as_text(&v) == *want))
            && self.tags.iter().all(|t| {
                r.properties
                    .get("tags")
                    .and_then(Value::as_array)
                    .is_some_and(|tags| tags.iter().any(|x| x.as_str() == Some(t)))
            })
            && self.size_min.is_none_or(|m| r.size.is_some_and(|s| s >= m))
            && self.size_max.is_none_or(|m| r.size.is_some_and(|s| s <= m))
    }

    fn keys(&self) -> Vec<(String, SortDir)> {
        let mut keys = if self.sort.is_empty() {
            vec![("created_at".to_owned(), SortDir::Desc)]
        } else {
            self.sort.clone()
        };
        // Glance breaks ties by id, in the direction of the last key.
        if !keys.iter().any(|(k, _)| k == "id") {
            let dir = keys.last().map_or(SortDir::Desc, |(_, d)| *d);
            keys.push(("id".to_owned(), dir));
        }
        keys
    }

    /// One page of `records`.
    pub fn apply(&self, records: Vec<ImageRecord>) -> Result<Page, ListError> {
        let mut rows: Vec<ImageRecord> = records.into_iter().filter(|r| self.matches(r)).collect();
        let keys = self.keys();
        rows.sort_by(|a, b| {
            for (k, dir) in &keys {
                let o = compare(a.field(k).as_ref(), b.field(k).as_ref());
                let o = if *dir == SortDir::Desc {
                    o.reverse()
                } else {
                    o
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        let start = match &self.marker {
            None => 0,
            Some(m) => {
                rows.iter()
                    .position(|r| &r.id == m)
                    .ok_or_else(|| ListError::UnknownMarker(m.clone()))?
                    + 1
            }
        };
        let limit = self.limit.min(MAX_LIMIT);
        let more = rows.len() > start + limit;
        let images = rows.into_iter().skip(start).take(limit).collect();
        Ok(Page { images, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(n: u8, name: &str, created: &str, vis: Visibility, size: u64) -> ImageRecord {
        let mut r = ImageRecord::new(
            ImageId::parse(&format!("{n:08x}-0000-4000-8000-000000000000")).unwrap(),
            vis,
        );
        r.created_at = created.into();
        r.size = Some(size);
        r.properties.insert("name".into(), json!(name));
        r.properties.insert(
            "os_distro".into(),
            json!(if n.is_multiple_of(2) {
                "ubuntu"
            } else {
                "cirros"
            }),
        );
        r.properties.insert(
            "tags".into(),
            json!(if n == 1 { vec!["gold"] } else { vec![] }),
        );
        r
    }

    fn all() -> Vec<ImageRecord> {
        vec![
            rec(1, "b", "2026-01-01T00:00:01Z", Visibility::Public, 10),
            rec(2, "a", "2026-01-01T00:00:02Z", Visibility::Private, 20),
            rec(3, "c", "2026-01-01T00:00:03Z", Visibility::Community, 30),
            rec(4, "a", "2026-01-01T00:00:04Z", Visibility::Shared, 40),
        ]
    }

    fn names(v: &[ImageRecord]) -> Vec<String> {
        v.iter().map(|r| as_text(&r.properties["name"])).collect()
    }

    #[test]
    fn defaults_newest_first_without_community() {
        let Page { images: page, more } = ListQuery::default().apply(all()).unwrap();
        assert_eq!(names(&page), ["a", "a", "b"]);
        assert!(!more);
        let q = ListQuery {
            visibility: Some("all".into()),
            ..ListQuery::default()
        };
        assert_eq!(q.apply(all()).unwrap().images.len(), 4);
    }

    #[test]
    fn filters_sort_marker_limit() {
        let q = ListQuery {
            filters: vec![("os_distro".into(), "ubuntu".into())],
            ..ListQuery::default()
        };
        assert_eq!(q.apply(all()).unwrap().images.len(), 2);
        let q = ListQuery {
            tags: vec!["gold".into()],
            ..ListQuery::default()
        };
        assert_eq!(names(&q.apply(all()).unwrap().images), ["b"]);
        let q = ListQuery {
            size_min: Some(15),
            size_max: Some(40),
            ..ListQuery::default()
        };
        assert_eq!(q.apply(all()).unwrap().images.len(), 2);
        let q = ListQuery {
            sort: vec![
                ("name".into(), SortDir::Asc),
                ("size".into(), SortDir::Desc),
            ],
            visibility: Some("all".into()),
            limit: 2,
            ..ListQuery::default()
        };
        let Page { images: page, more } = q.clone().apply(all()).unwrap();
        assert_eq!(
            page.iter().map(|r| r.size.unwrap()).collect::<Vec<_>>(),
            [40, 20]
        );
        assert!(more);
        let next = ListQuery {
            marker: Some(page[1].id.clone()),
            ..q.clone()
        };
        let Page {
            images: page2,
            more: more2,
        } = next.apply(all()).unwrap();
        assert_eq!(
            page2.iter().map(|r| r.size.unwrap()).collect::<Vec<_>>(),
            [10, 30]
        );
        assert!(!more2);
        let bad = ListQuery {
            marker: Some(ImageId::parse("ffffffff-0000-4000-8000-000000000000").unwrap()),
            ..q
        };
        assert!(bad.apply(all()).is_err());
    }
}
