//! Listing wire formats: query parameters, content negotiation, and the JSON, XML and
//! plain-text bodies of account listings, both ways.

use federation_core::listing::{ListingEntry, ListingQuery, MAX_LISTING_LIMIT};
use serde_json::{Map, Value};

use crate::error::SwiftError;

/// What Swift says about a container in an account listing besides its name (`count`,
/// `bytes`, `last_modified`, `storage_policy`, …), kept as the backend sent it.
pub type ContainerInfo = Map<String, Value>;

/// An account listing entry.
pub type AccountEntry = ListingEntry<ContainerInfo>;

/// A listing's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingFormat {
    /// `text/plain`: one name per line; an empty listing is 204.
    Plain,
    /// `application/json`.
    Json,
    /// `application/xml` or `text/xml` (the content type the client asked for).
    Xml(&'static str),
}

impl ListingFormat {
    /// The response's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Plain => "text/plain; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
            Self::Xml("text/xml") => "text/xml; charset=utf-8",
            Self::Xml(_) => "application/xml; charset=utf-8",
        }
    }

    /// Chooses the format as Swift does: the `format` query parameter (`json`, `xml`,
    /// anything else plain) wins over the `Accept` header, whose best match among
    /// `text/plain`, `application/json`, `application/xml`, `text/xml` is taken;
    /// 406 when none is acceptable.
    pub fn negotiate(format: Option<&str>, accept: Option<&str>) -> Result<Self, SwiftError> {
        if let Some(f) = format.filter(|f| !f.is_empty()) {
            return Ok(match f.to_ascii_lowercase().as_str() {
                "json" => Self::Json,
                "xml" => Self::Xml("application/xml"),
                _ => Self::Plain,
            });
        }
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(Self::Plain);
        };
        const OFFERS: [(&str, ListingFormat); 4] = [
            ("text/plain", ListingFormat::Plain),
            ("application/json", ListingFormat::Json),
            ("application/xml", ListingFormat::Xml("application/xml")),
            ("text/xml", ListingFormat::Xml("text/xml")),
        ];
        let ranges = parse_accept(accept)?;
        let mut best: Option<(f32, usize, ListingFormat)> = None;
        for (offer, fmt) in OFFERS {
            // The most specific range that matches decides the offer's quality.
            let q = ranges
                .iter()
                .filter_map(|(range, q)| specificity(range, offer).map(|s| (s, *q)))
                .max_by_key(|(s, _)| *s)
                .map(|(_, q)| q);
            if let Some(q) = q.filter(|q| *q > 0.0) {
                if best.is_none_or(|(bq, _, _)| q > bq) {
                    best = Some((q, 0, fmt));
                }
            }
        }
        best.map(|(_, _, f)| f)
            .ok_or_else(|| SwiftError::status(http::StatusCode::NOT_ACCEPTABLE))
    }
}

fn parse_accept(accept: &str) -> Result<Vec<(String, f32)>, SwiftError> {
    let mut out = Vec::new();
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let range = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        if range.is_empty() {
            continue;
        }
        if !range.contains('/') {
            return Err(SwiftError::bad_request("Invalid Accept header"));
        }
        let mut q = 1.0f32;
        for p in pieces {
            if let Some(v) = p.trim().strip_prefix("q=") {
                q = v
                    .parse()
                    .map_err(|_| SwiftError::bad_request("Invalid Accept header"))?;
            }
        }
        out.push((range, q));
    }
    Ok(out)
}

/// How specifically `range` matches `offer` (2 exact, 1 `type/*`, 0 `*/*`), if at all.
fn specificity(range: &str, offer: &str) -> Option<u8> {
    if range == offer {
        return Some(2);
    }
    if range == "*/*" {
        return Some(0);
    }
    let (rt, rs) = range.split_once('/')?;
    let (ot, _) = offer.split_once('/')?;
    (rs == "*" && rt == ot).then_some(1)
}

fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

/// Parses listing parameters from a query string as Swift's account server does: a
/// limit over 10,000 is a 412 `Maximum limit is 10000`, a limit that is not all digits
/// (`-1`, `abc`) means the default (10,000), and any delimiter is taken, several
/// characters too.
pub fn parse_query(query: Option<&str>) -> Result<(ListingQuery, Option<String>), SwiftError> {
    let mut q = ListingQuery::new();
    let mut format = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            // Swift's constrain_req_limit: only digits count; anything else (`-1`,
            // `abc`, empty) is the default limit.
            "limit" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                let n = v.parse::<usize>().unwrap_or(usize::MAX);
                if n > MAX_LISTING_LIMIT {
                    return Err(SwiftError::precondition_failed(format!(
                        "Maximum limit is {MAX_LISTING_LIMIT}"
                    )));
                }
                q = q.limit(n);
            }
            "marker" => q = q.marker(v.into_owned()),
            "end_marker" => q = q.end_marker(v.into_owned()),
            "prefix" => q = q.prefix(v.into_owned()),
            // The account server takes any delimiter, several characters too.
            "delimiter" => q = q.delimiter(v.into_owned()),
            "reverse" => q = q.reverse(truthy(&v)),
            "format" => format = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok((q, format))
}

/// The query string that asks a backend for `query` as JSON.
pub fn backend_query(query: &ListingQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("format", "json");
    s.append_pair("limit", &query.limit.to_string());
    if let Some(m) = &query.marker {
        s.append_pair("marker", m);
    }
    if let Some(m) = &query.end_marker {
        s.append_pair("end_marker", m);
    }
    if let Some(p) = &query.prefix {
        s.append_pair("prefix", p);
    }
    if let Some(d) = &query.delimiter {
        s.append_pair("delimiter", d);
    }
    if query.reverse {
        s.append_pair("reverse", "true");
    }
    s.finish()
}

/// A listing body that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed listing: {0}")]
pub struct MalformedListing(pub String);

/// Decodes a JSON account listing (as Swift's `format=json` sends it).
pub fn decode_json(body: &[u8]) -> Result<Vec<AccountEntry>, MalformedListing> {
    let items: Vec<Map<String, Value>> =
        serde_json::from_slice(body).map_err(|e| MalformedListing(e.to_string()))?;
    items
        .into_iter()
        .map(|mut item| {
            if let Some(Value::String(s)) = item.remove("subdir") {
                return Ok(ListingEntry::Subdir { name: s });
            }
            match item.remove("name") {
                Some(Value::String(name)) => Ok(ListingEntry::Item { name, data: item }),
                _ => Err(MalformedListing(
                    "an entry has neither name nor subdir".into(),
                )),
            }
        })
        .collect()
}

/// Decodes a plain-text listing (one name per line; subdirs cannot be told apart from
/// names there, so they come back as items).
pub fn decode_plain(body: &str) -> Vec<AccountEntry> {
    body.lines()
        .filter(|l| !l.is_empty())
        .map(|l| ListingEntry::Item {
            name: l.to_owned(),
            data: Map::new(),
        })
        .collect()
}

/// Decodes an XML account listing as Swift writes it.
pub fn decode_xml(body: &str) -> Result<Vec<AccountEntry>, MalformedListing> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let next = match (rest.find("<container>"), rest.find("<subdir ")) {
            (None, None) => return Ok(out),
            (Some(ci), Some(si)) if si < ci => Err(si),
            (Some(ci), _) => Ok(ci),
            (None, Some(si)) => Err(si),
        };
        match next {
            Ok(ci) => {
                let end = rest[ci..]
                    .find("</container>")
                    .ok_or_else(|| MalformedListing("unclosed <container>".into()))?;
                let inner = &rest[ci + "<container>".len()..ci + end];
                let mut name = None;
                let mut data = Map::new();
                for field in ["name", "count", "bytes", "last_modified", "storage_policy"] {
                    let open = format!("<{field}>");
                    let close = format!("</{field}>");
                    if let Some(a) = inner.find(&open) {
                        let b = inner[a..]
                            .find(&close)
                            .ok_or_else(|| MalformedListing(format!("unclosed <{field}>")))?;
                        let text = xml_unescape(&inner[a + open.len()..a + b]);
                        match field {
                            "name" => name = Some(text),
                            "count" | "bytes" => {
                                let n: u64 = text
                                    .parse()
                                    .map_err(|_| MalformedListing(format!("bad {field}")))?;
                                data.insert(field.into(), Value::from(n));
                            }
                            _ => {
                                data.insert(field.into(), Value::String(text));
                            }
                        }
                    }
                }
                let name = name.ok_or_else(|| MalformedListing("container without name".into()))?;
                out.push(ListingEntry::Item { name, data });
                rest = &rest[ci + end..];
            }
            Err(si) => {
                let tail = &rest[si..];
                let a = tail
                    .find("name=\"")
                    .ok_or_else(|| MalformedListing("subdir without name".into()))?;
                let b = tail[a + 6..]
                    .find('"')
                    .ok_or_else(|| MalformedListing("unclosed subdir name".into()))?;
                out.push(ListingEntry::Subdir {
                    name: xml_unescape(&tail[a + 6..a + 6 + b]),
                });
                rest = &tail[a + 6 + b..];
            }
        }
    }
}

fn xml_escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' if attr => out.push_str("&#13;"),
            '\t' if attr => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let ent = &tail[1..end];
        let decoded = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A container listing in XML as Swift's `listing_formats` renders it from the JSON
/// listing (ElementTree's `tostring`): `<subdir name=…><name>…</name></subdir>` for a
/// subdirectory, and each object's `name`, `hash`, `bytes`, `content_type` and
/// `last_modified` only (so no `slo_etag` or symlink fields).
pub fn container_xml<'a, I>(container: &str, entries: I) -> String
where
    I: IntoIterator<Item = &'a [(String, Value)]>,
{
    let mut out = container_xml_start(container);
    let mut empty = true;
    for fields in entries {
        container_xml_entry(fields, empty, &mut out);
        empty = false;
    }
    out.push_str(container_xml_end(empty));
    out
}

/// The beginning of [`container_xml`]'s document, up to the container's name.
pub fn container_xml_start(container: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"");
    out.push_str(&xml_escape(container, true));
    out.push('"');
    out
}

/// One entry of [`container_xml`] (`first`: none before it).
pub fn container_xml_entry(fields: &[(String, Value)], first: bool, out: &mut String) {
    if first {
        out.push('>');
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| value_text(v))
    };
    if let Some(name) = get("subdir") {
        out.push_str("<subdir name=\"");
        out.push_str(&xml_escape(&name, true));
        out.push_str("\"><name>");
        out.push_str(&xml_escape(&name, false));
        out.push_str("</name></subdir>");
        return;
    }
    out.push_str("<object>");
    for field in ["name", "hash", "bytes", "content_type", "last_modified"] {
        out.push_str(&format!(
            "<{field}>{}</{field}>",
            xml_escape(&get(field).unwrap_or_default(), false)
        ));
    }
    out.push_str("</object>");
}

/// The end of [`container_xml`]'s document (`empty`: no entry was written).
pub fn container_xml_end(empty: bool) -> &'static str {
    if empty {
        " />"
    } else {
        "</container>"
    }
}

/// A listing field's text in XML: Python's `str()` of the JSON value, as Swift's
/// `listing_formats` writes it (`None`, `True`, `False`).
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// An account listing entry as its JSON object: `{"subdir": …}`, or the entry's
/// details with `name` in its place among their keys (byte order, as the
/// `serde_json::Map` the entry was decoded into orders them; a `name` among the
/// details wins, as it did when the object was assembled as a `Map`).
struct JsonEntry<'a>(&'a AccountEntry);

impl serde::Serialize for JsonEntry<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            ListingEntry::Subdir { name } => {
                let mut m = ser.serialize_map(Some(1))?;
                m.serialize_entry("subdir", name)?;
                m.end()
            }
            ListingEntry::Item { name, data } => {
                let own_name = !data.contains_key("name");
                let mut m = ser.serialize_map(Some(data.len() + usize::from(own_name)))?;
                let mut pending = own_name.then_some(name);
                for (k, v) in data {
                    if let Some(n) = pending.filter(|_| k.as_str() > "name") {
                        m.serialize_entry("name", n)?;
                        pending = None;
                    }
                    m.serialize_entry(k, v)?;
                }
                if let Some(n) = pending {
                    m.serialize_entry("name", n)?;
                }
                m.end()
            }
        }
    }
}

/// Encodes an account listing in `format`, as Swift's `listing_formats` does. Returns
/// `None` where Swift answers 204 (an empty plain-text listing).
pub fn encode(format: ListingFormat, account: &str, entries: &[AccountEntry]) -> Option<Vec<u8>> {
    match format {
        ListingFormat::Plain => {
            if entries.is_empty() {
                return None;
            }
            let mut out = String::new();
            for e in entries {
                out.push_str(e.name());
                out.push('\n');
            }
            Some(out.into_bytes())
        }
        ListingFormat::Json => {
            // Each entry written in place, as the `{"name": …, …data}` object it was
            // decoded from (keys in byte order, as a `Map` keeps them): no copy of the
            // page into `Value`s first.
            let items: Vec<JsonEntry<'_>> = entries.iter().map(JsonEntry).collect();
            serde_json::to_vec(&items).ok()
        }
        ListingFormat::Xml(_) => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            out.push_str(&format!(
                "<account name=\"{}\">\n",
                xml_escape(account, true)
            ));
            for e in entries {
                match e {
                    ListingEntry::Subdir { name } => {
                        out.push_str(&format!("<subdir name=\"{}\" />", xml_escape(name, true)));
                    }
                    ListingEntry::Item { name, data } => {
                        out.push_str("<container><name>");
                        out.push_str(&xml_escape(name, false));
                        out.push_str("</name>");
                        for field in ["count", "bytes", "last_modified", "storage_policy"] {
                            if let Some(v) = data.get(field) {
                                out.push_str(&format!(
                                    "<{field}>{}</{field}>",
                                    xml_escape(&value_text(v), false)
                                ));
                            }
                        }
                        out.push_str("</container>");
                    }
                }
                out.push('\n');
            }
            out.push_str("</account>");
            Some(out.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn xml_fields_read_as_pythons_str() {
        // Swift 2.38's listing_formats.container_to_xml of this entry (run on the
        // swift package): <hash>None</hash>, <content_type>True</content_type>.
        let fields: Vec<(String, Value)> = vec![
            ("name".into(), "a".into()),
            ("hash".into(), Value::Null),
            ("bytes".into(), 1.into()),
            ("content_type".into(), true.into()),
            ("last_modified".into(), "x".into()),
        ];
        assert_eq!(
            container_xml("c", [&fields[..]]),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\"><object>\
             <name>a</name><hash>None</hash><bytes>1</bytes><content_type>True</content_type>\
             <last_modified>x</last_modified></object></container>"
        );
    }

    fn item(name: &str, count: u64) -> AccountEntry {
        let mut data = Map::new();
        data.insert("count".into(), count.into());
        data.insert("bytes".into(), (count * 10).into());
        data.insert("last_modified".into(), "2026-11-22T03:22:46.614410".into());
        data.insert("storage_policy".into(), "standard".into());
        ListingEntry::Item {
            name: name.into(),
            data,
        }
    }

    #[test]
    fn negotiates_like_swift() {
        use ListingFormat::*;
        assert_eq!(ListingFormat::negotiate(None, None).unwrap(), Plain);
        assert_eq!(
            ListingFormat::negotiate(Some("json"), Some("text/xml")).unwrap(),
            Json
        );
        assert_eq!(ListingFormat::negotiate(Some("JSON"), None).unwrap(), Json);
        assert_eq!(
            ListingFormat::negotiate(Some("bogus"), None).unwrap(),
            Plain
        );
        assert_eq!(
            ListingFormat::negotiate(None, Some("application/json")).unwrap(),
            Json
        );
        assert_eq!(
            ListingFormat::negotiate(None, Some("text/xml")).unwrap(),
            Xml("text/xml")
        );
        assert_eq!(
            ListingFormat::negotiate(None, Some("application/xml;q=0.5, application/json;q=0.9"))
                .unwrap(),
            Json
        );
        assert_eq!(ListingFormat::negotiate(None, Some("*/*")).unwrap(), Plain);
        assert_eq!(
            ListingFormat::negotiate(None, Some("image/png"))
                .unwrap_err()
                .status,
            406
        );
        assert_eq!(
            ListingFormat::negotiate(None, Some("garbage"))
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn query_validation() {
        let (q, f) = parse_query(Some(
            "limit=3&marker=a&prefix=p&delimiter=%2F&reverse=on&format=xml",
        ))
        .unwrap();
        assert_eq!(q.limit, 3);
        assert_eq!(q.marker.as_deref(), Some("a"));
        assert_eq!(q.delimiter.as_deref(), Some("/"));
        assert!(q.reverse);
        assert_eq!(f.as_deref(), Some("xml"));
        // What a real Swift 2.38 account server answers: only a limit over 10,000 is
        // refused; other limits it cannot read are the default, any delimiter goes.
        let e = parse_query(Some("limit=10001")).unwrap_err();
        assert_eq!(e.status, 412);
        assert_eq!(e.message.as_deref(), Some("Maximum limit is 10000"));
        for tolerated in ["limit=x", "limit=-1", "limit=", "limit=1.5"] {
            let (q, _) = parse_query(Some(tolerated)).unwrap();
            assert_eq!(q.limit, MAX_LISTING_LIMIT, "{tolerated}");
        }
        for (raw, d) in [("delimiter=ab", "ab"), ("delimiter=%C4%80", "\u{100}")] {
            let (q, _) = parse_query(Some(raw)).unwrap();
            assert_eq!(q.delimiter.as_deref(), Some(d), "{raw}");
        }
        assert_eq!(parse_query(Some("delimiter=")).unwrap().0.delimiter, None);
        assert_eq!(parse_query(Some("limit=10000")).unwrap().0.limit, 10000);
    }

    /// The JSON encoding as it was built before (each entry copied into a `Value`
    /// object): the model the in-place writer must match byte for byte.
    fn json_through_values(entries: &[AccountEntry]) -> Vec<u8> {
        let items: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut m = Map::new();
                match e {
                    ListingEntry::Subdir { name } => {
                        m.insert("subdir".into(), Value::String(name.clone()));
                    }
                    ListingEntry::Item { name, data } => {
                        m.insert("name".into(), Value::String(name.clone()));
                        for (k, v) in data {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
                Value::Object(m)
            })
            .collect();
        serde_json::to_vec(&items).unwrap()
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ]
    }

    fn any_entry() -> impl Strategy<Value = AccountEntry> {
        // Keys around "name" in byte order (and "name" itself, which a decoded entry
        // never has but a built one may).
        let key = prop_oneof![
            Just("bytes".to_owned()),
            Just("count".to_owned()),
            Just("last_modified".to_owned()),
            Just("name".to_owned()),
            Just("n".to_owned()),
            Just("namf".to_owned()),
            Just("storage_policy".to_owned()),
            "\\PC{0,8}",
        ];
        prop_oneof![
            "\\PC{0,16}".prop_map(|name| ListingEntry::Subdir { name }),
            (
                "\\PC{0,16}",
                proptest::collection::btree_map(key, any_value(), 0..6)
            )
                .prop_map(|(name, data)| ListingEntry::Item {
                    name,
                    data: data.into_iter().collect(),
                }),
        ]
    }

    proptest! {
        #[test]
        fn json_written_in_place_is_the_value_encoding(
            entries in proptest::collection::vec(any_entry(), 0..8)
        ) {
            let json = encode(ListingFormat::Json, "AUTH_t", &entries).unwrap();
            prop_assert_eq!(
                String::from_utf8(json).unwrap(),
                String::from_utf8(json_through_values(&entries)).unwrap()
            );
        }
    }

    #[test]
    fn formats_round_trip() {
        let entries = vec![
            item("a&b <c>", 1),
            ListingEntry::Subdir {
                name: "d\"/".into(),
            },
            item("zé", 2),
        ];
        let json = encode(ListingFormat::Json, "AUTH_t", &entries).unwrap();
        assert_eq!(decode_json(&json).unwrap(), entries);
        let xml = String::from_utf8(
            encode(ListingFormat::Xml("application/xml"), "AUTH_t", &entries).unwrap(),
        )
        .unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"AUTH_t\">\n<container><name>a&amp;b &lt;c&gt;</name><count>1</count>"), "{xml}");
        assert!(xml.contains("<subdir name=\"d&quot;/\" />"), "{xml}");
        assert_eq!(decode_xml(&xml).unwrap(), entries);
        let plain =
            String::from_utf8(encode(ListingFormat::Plain, "AUTH_t", &entries).unwrap()).unwrap();
        assert_eq!(plain, "a&b <c>\nd\"/\nzé\n");
        assert_eq!(decode_plain(&plain).len(), 3);
        assert_eq!(encode(ListingFormat::Plain, "AUTH_t", &[]), None);
        assert_eq!(encode(ListingFormat::Json, "AUTH_t", &[]).unwrap(), b"[]");
        assert!(decode_json(b"{\"not\": \"a list\"}").is_err());
        assert!(decode_json(b"[{\"count\": 1}]").is_err());
    }

    #[test]
    fn backend_query_carries_everything() {
        let q = ListingQuery::new()
            .limit(5)
            .marker("m n")
            .prefix("p")
            .delimiter('/')
            .reverse(true);
        assert_eq!(
            backend_query(&q),
            "format=json&limit=5&marker=m+n&prefix=p&delimiter=%2F&reverse=true"
        );
    }
}
