//! Serde forms for change payloads, which record exactly the fields an update changed: a
//! field that is absent was not changed, a field present with `null` was set to null.
//!
//! A changed field is `Option<T>` with `#[serde(default, skip_serializing_if =
//! "Option::is_none")]`; a field that can be null is `Option<Option<T>>` with
//! `with = "crate::change::nullable"` as well, and a free-form document (a JSON `Value`,
//! where `null` is a value like any other) uses `deserialize_with = "crate::change::present"`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `Option<Option<T>>`: absent → `None` (unchanged), `null` → `Some(None)` (cleared),
/// a value → `Some(Some(value))`.
pub mod nullable {
    use super::*;

    pub fn serialize<S: Serializer, T: Serialize>(value: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(s),
            // Unreachable with `skip_serializing_if = "Option::is_none"`; an unchanged field
            // has no stored form.
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// A present field is `Some`, whatever it holds: a document set to `null` stays a change.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The names of a change payload's changed fields, in stored order: the fields are listed
/// in their declaration order, which is the order their JSON keys are written in.
macro_rules! changed_names {
    ($changes:expr; $($field:ident),* $(,)?) => {{
        let changes = $changes;
        let mut names: Vec<&'static str> = Vec::new();
        $(if changes.$field.is_some() {
            names.push(stringify!($field));
        })*
        names
    }};
}
pub(crate) use changed_names;

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{json, Value};

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Changes {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
        parent: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::change::present")]
        doc: Option<Value>,
    }

    #[test]
    fn absent_is_unchanged_and_null_is_a_change() {
        let cases = [
            (json!({}), Changes::default()),
            (
                json!({"parent": null, "doc": null}),
                Changes {
                    parent: Some(None),
                    doc: Some(Value::Null),
                    ..Default::default()
                },
            ),
            (
                json!({"name": "n", "parent": "p", "doc": {"a": 1}}),
                Changes {
                    name: Some("n".into()),
                    parent: Some(Some("p".into())),
                    doc: Some(json!({"a": 1})),
                },
            ),
        ];
        for (stored, typed) in cases {
            assert_eq!(serde_json::from_value::<Changes>(stored.clone()).unwrap(), typed);
            assert_eq!(serde_json::to_string(&typed).unwrap(), stored.to_string());
        }
        assert_eq!(
            changed_names!(&Changes { parent: Some(None), ..Default::default() }; name, parent, doc),
            ["parent"]
        );
        assert!(
            serde_json::from_value::<Changes>(json!({"renamed": 1})).is_err(),
            "an unknown field is refused"
        );
    }
}
