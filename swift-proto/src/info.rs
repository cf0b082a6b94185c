//! `/info`: the federation's capabilities, from its clusters'.

use serde_json::{Map, Value};

/// Merges the clusters' `/info` documents: for every numeric `max_*` or `*_limit`
/// constraint of the `swift` section the smallest (strictest) value; storage policies the
/// union by name; other sections from the first cluster that has them. Adds a
/// `federation` section.
pub fn merge(infos: &[Value], federation: Value) -> Value {
    let mut out = Map::new();
    for info in infos {
        let Some(obj) = info.as_object() else {
            continue;
        };
        for (section, value) in obj {
            match out.get_mut(section) {
                None => {
                    out.insert(section.clone(), value.clone());
                }
                Some(existing) if section == "swift" => merge_swift(existing, value),
                Some(_) => {}
            }
        }
    }
    out.insert("federation".into(), federation);
    Value::Object(out)
}

fn is_limit(key: &str) -> bool {
    key.starts_with("max_") || key.ends_with("_limit")
}

fn merge_swift(into: &mut Value, other: &Value) {
    let (Some(into), Some(other)) = (into.as_object_mut(), other.as_object()) else {
        return;
    };
    for (k, v) in other {
        match (into.get_mut(k), v) {
            (Some(Value::Number(a)), Value::Number(b)) if is_limit(k) => {
                if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                    *a = x.min(y).into();
                }
            }
            (Some(Value::Array(a)), Value::Array(b)) if k == "policies" => {
                for p in b {
                    let name = p.get("name");
                    if !a.iter().any(|q| q.get("name") == name) {
                        let mut p = p.clone();
                        if let Some(m) = p.as_object_mut() {
                            m.remove("default");
                        }
                        a.push(p);
                    }
                }
            }
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// The storage policy names a cluster's `/info` lists.
pub fn policy_names(info: &Value) -> Vec<String> {
    info.pointer("/swift/policies")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strictest_limits_and_union_of_policies() {
        let a = json!({"swift": {"max_file_size": 100, "container_listing_limit": 10000,
                        "policies": [{"name": "gold", "default": true}], "version": "2.38"},
                       "tempauth": {}});
        let b = json!({"swift": {"max_file_size": 50, "container_listing_limit": 20000,
                        "policies": [{"name": "gold", "default": true}, {"name": "cold", "default": true}]},
                       "slo": {"max_manifest_segments": 1000}});
        let m = merge(&[a, b], json!({"clusters": 2}));
        assert_eq!(m["swift"]["max_file_size"], 50);
        assert_eq!(m["swift"]["container_listing_limit"], 10000);
        assert_eq!(m["swift"]["version"], "2.38");
        assert_eq!(policy_names(&m), ["gold", "cold"]);
        assert_eq!(m["swift"]["policies"][1].get("default"), None);
        assert!(m.get("slo").is_some());
        assert_eq!(m["federation"]["clusters"], 2);
    }
}
