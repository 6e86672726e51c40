//! Request validation in pydantic's manner, shared by the surfaces whose originals are
//! Python services: every problem is collected with its location (`loc`), message and
//! machine-readable type, and reported at once.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

/// One validation problem, as pydantic reports it. `input` is what was found there; each
/// surface decides whether to show it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FieldError {
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip)]
    pub input: Value,
}

/// Collects problems as a config is walked.
#[derive(Default)]
pub struct Problems(pub Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, loc: &[Value], kind: &str, msg: impl Into<String>) {
        self.found(loc, kind, msg, Value::Null);
    }

    /// A problem with the input found at `loc`.
    pub fn found(&mut self, loc: &[Value], kind: &str, msg: impl Into<String>, input: Value) {
        self.0.push(FieldError {
            loc: loc.to_vec(),
            msg: msg.into(),
            kind: kind.into(),
            input,
        });
    }

    pub fn value_error(&mut self, loc: &[Value], msg: impl std::fmt::Display) {
        self.add(loc, "value_error", format!("Value error, {msg}"));
    }
}

/// Values a message names, at most `most` of them and each cut to 64 characters, then how
/// many more: an error about a 100k-element list says what is wrong, not the list again.
pub fn some_of(values: &[String], most: usize) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(most)
        .map(|v| match v.char_indices().nth(64) {
            Some((at, _)) => format!("{}…", &v[..at]),
            None => v.clone(),
        })
        .collect();
    match values.len().saturating_sub(most) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

pub fn at(loc: &[Value], part: impl Into<Value>) -> Vec<Value> {
    let mut out = loc.to_vec();
    out.push(part.into());
    out
}

/// The fields of a model, or `None` (after recording why) when `value` is not an object.
/// Unknown fields are recorded as `extra_forbidden`. `null` reads as an empty model. The
/// fields are borrowed: a body's model and every model nested in it would otherwise each
/// copy their whole subtree, the body's as big as the body.
pub fn model<'v>(p: &mut Problems, loc: &[Value], value: &'v Value, known: &[&str]) -> Option<Cow<'v, Map<String, Value>>> {
    fields_of(p, loc, value, Some(known))
}

fn fields_of<'v>(p: &mut Problems, loc: &[Value], value: &'v Value, known: Option<&[&str]>) -> Option<Cow<'v, Map<String, Value>>> {
    match value {
        Value::Null => Some(Cow::Owned(Map::new())),
        Value::Object(fields) => {
            for (key, input) in fields {
                if known.is_some_and(|k| !k.contains(&key.as_str())) {
                    p.found(
                        &at(loc, key.as_str()),
                        "extra_forbidden",
                        "Extra inputs are not permitted",
                        input.clone(),
                    );
                }
            }
            Some(Cow::Borrowed(fields))
        }
        other => {
            p.found(
                loc,
                "model_type",
                "Input should be a valid dictionary or object to extract fields from",
                other.clone(),
            );
            None
        }
    }
}

/// The fields of a model that ignores unknown fields (pydantic's default).
pub fn lenient_model<'v>(p: &mut Problems, loc: &[Value], value: &'v Value) -> Option<Cow<'v, Map<String, Value>>> {
    fields_of(p, loc, value, None)
}

fn literal_message(allowed: &[&str]) -> String {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    match quoted.split_last() {
        Some((last, [])) => format!("Input should be {last}"),
        Some((last, rest)) => format!("Input should be {} or {last}", rest.join(", ")),
        None => "Input should be a literal".into(),
    }
}

/// A field that must be there: records `missing` when it is not.
pub fn required<'v>(p: &mut Problems, loc: &[Value], value: Option<&'v Value>) -> Option<&'v Value> {
    if value.is_none() {
        p.add(loc, "missing", "Field required");
    }
    value
}

/// Problems about one input: `add` records it as the input.
struct Found<'a> {
    p: &'a mut Problems,
    input: &'a Value,
}

impl Found<'_> {
    fn add(&mut self, loc: &[Value], kind: &str, msg: impl Into<String>) {
        self.p.found(loc, kind, msg, self.input.clone());
    }
}

/// A string field; `None` when absent, `null` (for optional fields) or invalid.
pub fn string(p: &mut Problems, loc: &[Value], value: Option<&Value>, nullable: bool, min_len: usize) -> Option<String> {
    match value {
        None => None,
        Some(Value::Null) if nullable => None,
        Some(Value::String(s)) if s.chars().count() < min_len => {
            let unit = if min_len == 1 { "character" } else { "characters" };
            p.found(
                loc,
                "string_too_short",
                format!("String should have at least {min_len} {unit}"),
                json!(s),
            );
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            p.found(loc, "string_type", "Input should be a valid string", other.clone());
            None
        }
    }
}

pub fn literal(p: &mut Problems, loc: &[Value], value: Option<&Value>, allowed: &[&str]) -> Option<String> {
    match value {
        None => None,
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Some(s.clone()),
        Some(other) => {
            p.found(loc, "literal_error", literal_message(allowed), other.clone());
            None
        }
    }
}

/// An integer as pydantic's lax mode reads one: a whole number, or a string of one.
pub fn integer(p: &mut Problems, loc: &[Value], value: Option<&Value>, min: Option<i64>, max: Option<i64>) -> Option<i64> {
    let input = value?.clone();
    let mut p = Found { p, input: &input };
    let p = &mut p;
    let n = match &input {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => f as i64,
            (None, Some(f)) if f.fract() != 0.0 => {
                p.add(
                    loc,
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                );
                return None;
            }
            _ => {
                p.add(loc, "int_type", "Input should be a valid integer");
                return None;
            }
        },
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(i) => i,
            Err(_) => {
                p.add(
                    loc,
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                );
                return None;
            }
        },
        _ => {
            p.add(loc, "int_type", "Input should be a valid integer");
            return None;
        }
    };
    if let Some(min) = min.filter(|m| n < *m) {
        p.add(loc, "greater_than_equal", format!("Input should be greater than or equal to {min}"));
        return None;
    }
    if let Some(max) = max.filter(|m| n > *m) {
        p.add(loc, "less_than_equal", format!("Input should be less than or equal to {max}"));
        return None;
    }
    Some(n)
}

pub fn boolean(p: &mut Problems, loc: &[Value], value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(b) => Some(*b),
        other => {
            p.found(loc, "bool_type", "Input should be a valid boolean", other.clone());
            None
        }
    }
}

pub fn list<'v>(p: &mut Problems, loc: &[Value], value: Option<&'v Value>) -> Option<&'v [Value]> {
    match value? {
        Value::Null => None,
        Value::Array(items) => Some(items),
        other => {
            p.found(loc, "list_type", "Input should be a valid list", other.clone());
            None
        }
    }
}

/// A `dict[str, str]`.
pub fn string_map(p: &mut Problems, loc: &[Value], value: Option<&Value>) -> Map<String, Value> {
    match value {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(s) = string(p, &at(loc, k.as_str()), Some(v), false, 0) {
                    out.insert(k.clone(), Value::String(s));
                }
            }
            out
        }
        Some(other) => {
            p.found(loc, "dict_type", "Input should be a valid dictionary", other.clone());
            Map::new()
        }
    }
}

/// The length of a value's JSON, and whether any of its text holds NUL, without keeping
/// the text. serde_json writes an escape in one piece, so `\u0000` is seen whole.
pub fn json_measure(value: &impl serde::Serialize) -> (usize, bool) {
    #[derive(Default)]
    struct Count(usize, bool);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            self.1 |= buf == b"\\u0000";
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count::default();
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    (count.0, count.1)
}

#[cfg(test)]
mod tests {
    use super::some_of;

    #[test]
    fn some_of_names_a_few_values_and_counts_the_rest() {
        let few: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(some_of(&few, 10), "a, b");
        let many: Vec<String> = (0..100_000).map(|i| format!("m{i}")).collect();
        assert_eq!(some_of(&many, 3), "m0, m1, m2 and 99997 more");
        let long = vec!["é".repeat(100)];
        assert_eq!(some_of(&long, 3), format!("{}…", "é".repeat(64)));
    }
}
