//! Canonical JSON as TUF signs it (the OLPC form python-tuf and go-tuf
//! use): object keys sorted by code point, no whitespace, strings with
//! only `"` and `\` escaped, integers only. Signatures are checked over
//! these bytes of the `signed` object as this crate parsed it, so what is
//! verified is exactly what is then read.

use serde_json::Value;

use crate::Error;

/// The canonical bytes of `value`. Floats have no canonical form and are
/// refused (TUF metadata holds none).
pub fn encode(value: &Value) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(Error::Malformed(format!(
                    "{n} is not an integer (canonical JSON has none)"
                )));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json's
            // `preserve_order` feature, switched on by any crate in the
            // build, would keep the document's order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(key, out);
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::encode;

    #[test]
    fn sorts_keys_drops_whitespace_and_escapes_only_quote_and_backslash() {
        let v = json!({"b": [1, true, null], "a": {"z": "x\"y\\z\n", "é": -3}});
        let bytes = encode(&v).expect("encodes");
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            "{\"a\":{\"z\":\"x\\\"y\\\\z\n\",\"é\":-3},\"b\":[1,true,null]}"
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(encode(&json!({"expires": 1.5})).is_err());
    }
}
