//! Glance v2 image JSON: a flat object, custom properties at the top level.

use image_cache_core::{ImageId, ImageRecord, ImageStatus, Visibility};
use serde_json::{Map, Value};

/// Why an image document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image document: {0}")]
pub struct InvalidImage(pub String);

fn opt_str(m: &mut Map<String, Value>, k: &str) -> Option<String> {
    match m.remove(k) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Reads an image object as Glance sends it.
pub fn from_json(doc: Value) -> Result<ImageRecord, InvalidImage> {
    let Value::Object(mut m) = doc else {
        return Err(InvalidImage("not an object".into()));
    };
    let id = opt_str(&mut m, "id")
        .and_then(|s| ImageId::parse(&s))
        .ok_or_else(|| InvalidImage("missing or invalid id".into()))?;
    let visibility = opt_str(&mut m, "visibility")
        .and_then(|v| Visibility::parse(&v))
        .unwrap_or(Visibility::Shared);
    let mut r = ImageRecord::new(id, visibility);
    r.status = ImageStatus::parse(&opt_str(&mut m, "status").unwrap_or_default());
    r.size = m.remove("size").and_then(|v| v.as_u64());
    r.checksum = opt_str(&mut m, "checksum");
    r.os_hash_algo = opt_str(&mut m, "os_hash_algo");
    r.os_hash_value = opt_str(&mut m, "os_hash_value");
    r.owner = opt_str(&mut m, "owner");
    r.created_at = opt_str(&mut m, "created_at").unwrap_or_default();
    r.updated_at = opt_str(&mut m, "updated_at").unwrap_or_default();
    r.properties = m.into_iter().collect();
    Ok(r)
}

/// The images of a list response (`{"images": [...]}`); unreadable entries are skipped.
pub fn images_of(doc: &Value) -> Vec<ImageRecord> {
    doc.get("images")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|i| from_json(i.clone()).ok()).collect())
        .unwrap_or_default()
}

/// Writes an image object as Glance does (typed fields with `null` where unknown, every
/// other property at the top level, `self`/`file`/`schema` links).
pub fn to_json(r: &ImageRecord) -> Value {
    let mut m: Map<String, Value> = r.properties.clone().into_iter().collect();
    let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    m.insert("id".into(), Value::String(r.id.as_str().to_owned()));
    m.insert("status".into(), Value::String(r.status.as_str().to_owned()));
    m.insert(
        "visibility".into(),
        Value::String(r.visibility.as_str().to_owned()),
    );
    m.insert("size".into(), r.size.map_or(Value::Null, Value::from));
    m.insert("checksum".into(), s(&r.checksum));
    m.insert("os_hash_algo".into(), s(&r.os_hash_algo));
    m.insert("os_hash_value".into(), s(&r.os_hash_value));
    m.insert("owner".into(), s(&r.owner));
    m.insert("created_at".into(), Value::String(r.created_at.clone()));
    m.insert("updated_at".into(), Value::String(r.updated_at.clone()));
    let id = r.id.as_str();
    m.entry("self")
        .or_insert_with(|| Value::String(format!("/v2/images/{id}")));
    m.entry("file")
        .or_insert_with(|| Value::String(format!("/v2/images/{id}/file")));
    m.entry("schema")
        .or_insert_with(|| Value::String("/v2/schemas/image".into()));
    Value::Object(m)
}

/// An image's answer body as the edge sends it: [`to_json`] encoded (compact, keys in
/// order), the same bytes for every caller allowed to see the image.
pub fn encode_image(r: &ImageRecord) -> bytes::Bytes {
    bytes::Bytes::from(to_json(r).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_a_real_glance_document() {
        let doc = json!({"os_distro": "ubuntu", "name": "x", "disk_format": "raw", "container_format": "bare",
            "visibility": "public", "size": 100000, "virtual_size": 100000, "status": "active",
            "checksum": "1af6d6f2f682f76f80e606aeaaee1680", "protected": false, "min_ram": 0, "min_disk": 0,
            "owner": null, "os_hidden": false, "os_hash_algo": "sha512", "os_hash_value": "c766",
            "id": "f09a978d-f227-45bd-a53e-ab114ac61d30", "created_at": "2026-11-22T03:50:08Z",
            "updated_at": "2026-11-22T03:50:08Z", "tags": [], "self": "/v2/images/f09a978d-f227-45bd-a53e-ab114ac61d30",
            "file": "/v2/images/f09a978d-f227-45bd-a53e-ab114ac61d30/file", "schema": "/v2/schemas/image", "stores": "fs"});
        let r = from_json(doc.clone()).unwrap();
        assert_eq!(r.size, Some(100000));
        assert_eq!(r.properties["os_distro"], "ubuntu");
        assert_eq!(to_json(&r), doc);
        assert!(from_json(json!({"id": "../etc"})).is_err());
        assert!(from_json(json!([])).is_err());
    }
}
