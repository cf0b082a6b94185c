//! Glance list query parameters, both ways, and the `first`/`next` links of a page.

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
            "member_status" => q.member_status = Some(v),
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

/// The query string that asks a Glance for `q` (what [`parse_list_query`] read, in
/// Glance's own syntax: filters verbatim, so operators such as `in:` reach the central).
pub fn to_query_string(q: &ListQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &q.filters {
        s.append_pair(k, v);
    }
    if let Some(v) = &q.visibility {
        s.append_pair("visibility", v);
    }
    for t in &q.tags {
        s.append_pair("tag", t);
    }
    if let Some(n) = q.size_min {
        s.append_pair("size_min", &n.to_string());
    }
    if let Some(n) = q.size_max {
        s.append_pair("size_max", &n.to_string());
    }
    if q.os_hidden {
        s.append_pair("os_hidden", "true");
    }
    if let Some(m) = &q.member_status {
        s.append_pair("member_status", m);
    }
    if !q.sort.is_empty() {
        let keys: Vec<String> = q
            .sort
            .iter()
            .map(|(k, d)| {
                let dir = match d {
                    SortDir::Asc => "asc",
                    SortDir::Desc => "desc",
                };
                format!("{k}:{dir}")
            })
            .collect();
        s.append_pair("sort", &keys.join(","));
    }
    if let Some(m) = &q.marker {
        s.append_pair("marker", m.as_str());
    }
    s.append_pair("limit", &q.limit.to_string());
    s.finish()
}

/// The `first` link of a listing answered for the client's `query`, and its `next` link
/// when more follow `last`: the client's own parameters with `marker` replaced.
pub fn page_links(query: Option<&str>, more_after: Option<&ImageId>) -> (String, Option<String>) {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k != "marker")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let link = |marker: Option<&ImageId>| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            s.append_pair(k, v);
        }
        if let Some(m) = marker {
            s.append_pair("marker", m.as_str());
        }
        let q = s.finish();
        if q.is_empty() {
            "/v2/images".to_owned()
        } else {
            format!("/v2/images?{q}")
        }
    };
    (link(None), more_after.map(|m| link(Some(m))))
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
        assert_eq!(
            to_query_string(&q),
            "os_distro=ubuntu&visibility=all&tag=a&sort=name%3Aasc%2Csize%3Adesc&limit=5"
        );
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

    #[test]
    fn links_keep_the_clients_parameters() {
        let id = ImageId::parse("9b2c1f4e-3a5d-4c6b-8e7f-0123456789ab").unwrap();
        let (first, next) = page_links(Some("limit=2&sort=name:asc&marker=x"), Some(&id));
        assert_eq!(first, "/v2/images?limit=2&sort=name%3Aasc");
        assert_eq!(
            next.unwrap(),
            format!("/v2/images?limit=2&sort=name%3Aasc&marker={id}")
        );
        assert_eq!(page_links(None, None), ("/v2/images".to_owned(), None));
    }
}
