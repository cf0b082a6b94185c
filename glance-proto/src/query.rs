//! Glance list query parameters.

use image_cache_core::list::{ListQuery, SortDir, DEFAULT_LIMIT, MAX_LIMIT};
use image_cache_core::ImageId;

use crate::error::GlanceError;

/// The sort keys Glance accepts.
pub const SORT_KEYS: [&str; 8] = [
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
];

fn sort_key(k: &str) -> Result<String, GlanceError> {
    if SORT_KEYS.contains(&k) {
        Ok(k.to_owned())
    } else {
        Err(GlanceError::bad_request(format!(
            "Invalid sort key: {k}. It must be one of the following: {}.",
            SORT_KEYS.join(", ")
        )))
    }
}

fn sort_dir(d: &str) -> Result<SortDir, GlanceError> {
    match d {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(GlanceError::bad_request(format!(
            "Invalid sort direction: {other}"
        ))),
    }
}

/// Parses a list query string as Glance does; refuses what Glance refuses (400).
/// Filters compare exactly (Glance's `in:`/`gte:` operators are not supported offline).
pub fn parse_list_query(query: Option<&str>) -> Result<ListQuery, GlanceError> {
    let mut q = ListQuery::default();
    let mut keys: Vec<String> = Vec::new();
    let mut dirs: Vec<SortDir> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| GlanceError::bad_request("limit param must be an integer"))?;
                if n < 0 {
                    return Err(GlanceError::bad_request("limit param must be positive"));
                }
                q.limit = usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
            }
            "marker" => {
                q.marker = Some(ImageId::parse(&v).ok_or_else(|| {
                    GlanceError::bad_request(format!("No image found with ID {v}"))
                })?)
            }
            "sort_key" => keys.push(sort_key(&v)?),
            "sort_dir" => dirs.push(sort_dir(&v)?),
            "sort" => {
                for part in v.split(',').filter(|p| !p.is_empty()) {
                    let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
                    q.sort.push((sort_key(k.trim())?, sort_dir(d.trim())?));
                }
            }
            "visibility" => {
                if !matches!(
                    v.as_str(),
                    "public" | "private" | "shared" | "community" | "all"
                ) {
                    return Err(GlanceError::bad_request(format!(
                        "Invalid visibility value: {v}"
                    )));
                }
                q.visibility = Some(v);
            }
            "tag" => q.tags.push(v),
            "size_min" | "size_max" => {
                let n: u64 = v.parse().map_err(|_| {
                    GlanceError::bad_request(format!(
                        "Unable to filter on a range with a non-numeric value: {v}"
                    ))
                })?;
                if k == "size_min" {
                    q.size_min = Some(n);
                } else {
                    q.size_max = Some(n);
                }
            }
            "os_hidden" => q.os_hidden = v.eq_ignore_ascii_case("true"),
            "member_status" => {}
            key => q.filters.push((key.to_owned(), v)),
        }
    }
    if !keys.is_empty() && !q.sort.is_empty() {
        return Err(GlanceError::bad_request(
            "Old and new sorting syntax cannot be combined",
        ));
    }
    if dirs.len() > keys.len().max(1) {
        return Err(GlanceError::bad_request(
            "Number of sort dirs does not match the number of sort keys",
        ));
    }
    for (i, k) in keys.into_iter().enumerate() {
        let d = dirs
            .get(i)
            .or(dirs.last())
            .copied()
            .unwrap_or(SortDir::Desc);
        q.sort.push((k, d));
    }
    if q.limit == 0 && query.is_some_and(|s| !s.contains("limit=")) {
        q.limit = DEFAULT_LIMIT;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_like_glance() {
        let q = parse_list_query(Some(
            "limit=5&sort=name:asc,size&os_distro=ubuntu&tag=a&visibility=all",
        ))
        .unwrap();
        assert_eq!(q.limit, 5);
        assert_eq!(
            q.sort,
            vec![
                ("name".into(), SortDir::Asc),
                ("size".into(), SortDir::Desc)
            ]
        );
        assert_eq!(q.filters, vec![("os_distro".into(), "ubuntu".into())]);
        assert_eq!(q.tags, vec!["a".to_owned()]);
        let q = parse_list_query(Some("sort_key=name&sort_dir=asc&limit=5000")).unwrap();
        assert_eq!(q.sort, vec![("name".into(), SortDir::Asc)]);
        assert_eq!(q.limit, 1000);
        assert_eq!(parse_list_query(None).unwrap().limit, 25);
        for bad in [
            "limit=abc",
            "limit=-1",
            "sort_key=bogus",
            "sort_dir=up",
            "marker=nope",
            "visibility=x",
            "size_min=big",
        ] {
            assert_eq!(
                parse_list_query(Some(bad)).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }
}
