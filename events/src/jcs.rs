//! RFC 8785 (JCS) for JSON values, written in one pass into a buffer: members sorted by
//! their keys' UTF-16 code units, numbers as ECMAScript prints the double they denote,
//! strings with only the escapes JSON requires.
//!
//! The byte output is that of `serde_json_canonicalizer`, which the log's hashes were
//! first computed with (a test compares the two over random values); that crate buffers
//! every member of every object and parses each key back, which made hashing the largest
//! cost of appending a big event.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Appends the canonical form of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => write_members(out, members.iter().map(|(k, v)| (k.as_str(), v)).collect()),
    }
}

/// Appends an object of the given members (keys distinct) in canonical order.
pub fn write_members(out: &mut Vec<u8>, mut members: Vec<(&str, &Value)>) {
    members.sort_unstable_by(|a, b| utf16_order(a.0, b.0));
    out.push(b'{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Keys compare by UTF-16 code units (RFC 8785 §3.2.3). UTF-8 byte order is the same
/// except where a character above U+FFFF meets one in U+E000..=U+FFFF, so only strings
/// that both hold non-ASCII text are compared the slow way.
fn utf16_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() || b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Every JSON number is the double it denotes, printed as ECMAScript does.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    let double = match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i as f64,
        (_, Some(u)) => u as f64,
        // Without arbitrary precision a number is an i64, a u64 or a finite f64.
        _ => n.as_f64().unwrap_or(0.0),
    };
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(double).as_bytes());
}

/// serde_json's string escapes are JCS's: `\"`, `\\`, `\b \f \n \r \t`, other controls as
/// lowercase `\u00xx`, everything else (`/` and DEL included) as it is.
fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use serde_json::json;

    fn canonical(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(&mut out, value);
        out
    }

    #[test]
    fn the_rfc_examples_come_out_as_the_rfc_shows() {
        // RFC 8785 §3.2.2 and §3.2.3.
        let value: Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],
                "string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals":[null,true,false]}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let sorted = json!({"\u{20ac}": "Euro Sign", "\r": "Carriage Return", "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\u{1f600}": "Emoji: Grinning Face", "\u{0080}": "Control", "\u{00f6}": "Latin Small Letter O With Diaeresis"});
        let keys: Vec<String> = serde_json::from_slice::<serde_json::Map<String, Value>>(&canonical(&sorted))
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["\r", "1", "\u{0080}", "\u{00f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"]);
    }

    /// A random value of bounded depth, with the characters and numbers where encoders
    /// differ: controls, `/`, DEL, non-ASCII on both sides of U+FFFF, huge and tiny
    /// numbers, integers past 2^53, negative zero.
    fn random_value(rng: &mut rand::rngs::ThreadRng, depth: u32) -> Value {
        const ALPHABET: &[char] = &[
            'a',
            'b',
            'Z',
            '0',
            '"',
            '\\',
            '/',
            '\u{1}',
            '\u{1f}',
            '\n',
            '\t',
            '\u{7f}',
            'é',
            '\u{e000}',
            '\u{ffff}',
            '\u{10000}',
            '😀',
            '€',
            ' ',
        ];
        let text = |rng: &mut rand::rngs::ThreadRng| -> String {
            let n = rng.random_range(0..6);
            (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect()
        };
        let pick = if depth == 0 {
            rng.random_range(0..5)
        } else {
            rng.random_range(0..7)
        };
        match pick {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => match rng.random_range(0..6) {
                0 => json!(rng.random::<i64>()),
                1 => json!(rng.random::<u64>()),
                2 => json!(rng.random_range(-1000..1000)),
                3 => json!(f64::from_bits(
                    rng.random::<u64>() & !(0x7ff << 52) | (rng.random_range(0..0x7ffu64) << 52)
                )),
                4 => json!(-0.0),
                _ => json!(rng.random::<f64>() * 1e21),
            },
            3 | 4 => Value::String(text(rng)),
            5 => Value::Array((0..rng.random_range(0..5)).map(|_| random_value(rng, depth - 1)).collect()),
            _ => Value::Object(
                (0..rng.random_range(0..6))
                    .map(|_| (text(rng), random_value(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn bytes_equal_the_canonicalizer_the_log_was_hashed_with() {
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let value = random_value(&mut rng, 4);
            let expected = serde_json_canonicalizer::to_vec(&value).unwrap();
            assert_eq!(
                String::from_utf8(canonical(&value)).unwrap(),
                String::from_utf8(expected).unwrap(),
                "{value}"
            );
        }
    }
}
