//! JSON text as Python's `json.dumps` writes it, for answers that must match the bytes
//! of OpenStack's Python servers (Swift's bulk responses, webob's error pages in Glance).

/// A JSON string as Python's `json.dumps` writes it: ASCII only, everything else as
/// `\uXXXX` (UTF-16 units).
///
/// ```
/// assert_eq!(stackfed_http::pyjson::string("a\"é\n"), r#""a\"\u00e9\n""#);
/// ```
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}
