//! Byte-exact Go `encoding/json` output for JSON values.
//!
//! Fleeti stores and hashes configs as `json.Marshal` of the decoded `map[string]any`, so
//! reproducing its `config_hash` and response bodies needs Go's exact rules: every number
//! is a float64 printed in shortest form (`1.0` → `1`, `1e21` → `1e+21`, `1e-7` → `1e-7`),
//! map keys are sorted by bytes, and `<`, `>`, `&`, U+2028 and U+2029 are escaped.
//!
//! [`canonicalize`] turns a decoded value into the value Go would hold (keys sorted, every
//! number a float64); [`to_string`] writes any value in Go's style, keeping object order
//! so that responses can follow Go's struct field order.

use serde_json::{Map, Number, Value};

/// The value Go holds after `json.Unmarshal` into `any`: objects with keys in byte order
/// and every number a float64.
pub fn canonicalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::with_capacity(map.len());
            for k in keys {
                out.insert(k.clone(), canonicalize(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonicalize).collect()),
        Value::Number(n) => Number::from_f64(n.as_f64().unwrap_or(0.0))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Go's `json.Marshal` of `canonicalize(value)`.
pub fn canonical_string(value: &Value) -> String {
    to_string(&canonicalize(value))
}

/// Writes a value as Go's encoder would, keeping the object order it is given.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else {
        out.push_str(&format_float(n.as_f64().unwrap_or(0.0)));
    }
}

/// Go's float64 formatting in `encoding/json` (`strconv` shortest, `'e'` outside
/// [1e-6, 1e21), exponent with an explicit sign).
pub fn format_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    } else {
        format!("{f}")
    }
}

fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let code = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((code >> shift) & 0xf) as usize] as char);
                }
            }
            c if (c as u32) < 0x20 => {
                let code = c as u32;
                out.push_str("\\u00");
                out.push(HEX[(code >> 4) as usize] as char);
                out.push(HEX[(code & 0xf) as usize] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(json: &str) -> String {
        canonical_string(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn numbers_print_like_go_float64() {
        assert_eq!(
            canon("[1.0, 1e21, 1e20, 1e-7, 0.000001, 1.5e-10, -0.0, 0, 12345678901234567890, 0.1]"),
            "[1,1e+21,100000000000000000000,1e-7,0.000001,1.5e-10,-0,0,12345678901234567000,0.1]"
        );
        assert_eq!(
            canon("[123456789e15, 2.5e300, 3.0e-5]"),
            "[123456789000000000000000,2.5e+300,0.00003]".replace("123456789000000000000000", "1.23456789e+23")
        );
    }

    #[test]
    fn keys_sort_by_bytes_and_html_is_escaped() {
        assert_eq!(
            canon(r#"{"b":1,"a":{"z":"<&>","Z":"\u2028\u2029"},"é":true,"B":null}"#),
            r#"{"B":null,"a":{"Z":"\u2028\u2029","z":"\u003c\u0026\u003e"},"b":1,"é":true}"#
        );
    }

    #[test]
    fn control_characters_escape_like_go() {
        assert_eq!(
            to_string(&Value::String("a\u{1}\u{8}\u{c}\n\t\"\\".into())),
            r#""a\u0001\b\f\n\t\"\\""#
        );
    }
}
