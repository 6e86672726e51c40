//! Read models as pure folds over the log: `evolve(state, &event) -> state` for every
//! stream type, revision counting and history views. No I/O, no async, no clock.
//!
//! Layout: [`org`], [`key`], [`fleet`], [`profile`], [`runtime`], [`mission_control`],
//! [`instance`], [`container`] — the read models of each surface; [`ReadModel`] is the trait
//! the store and `rebuild` use to fold any stream generically.

pub mod config_paths;
pub mod container;
pub mod fleet;
pub mod instance;
pub mod key;
pub mod mission_control;
pub mod org;
pub mod profile;
pub mod runtime;

use fleetledger_events::{DecodeError, DomainEvent, EventEnvelope};

use serde::{de::DeserializeOwned, Serialize};

/// `value` with the members of every object in key order. A PostgreSQL log hands event
/// data back in its own member order (`jsonb`), SQLite in the order written: a model
/// that shows free-form JSON from its events puts it in this one order, so the same
/// version reads the same bytes whichever backend, replica or rebuild folded it.
pub fn in_key_order(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(members.into_iter().map(|(k, v)| (k.clone(), in_key_order(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(in_key_order).collect()),
        other => other.clone(),
    }
}

/// A read model built from one stream.
pub trait ReadModel: Sized + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    type Event: DomainEvent + Clone + Send + Sync;
    /// The `read_models.kind` this model is stored under (also its stream type).
    const KIND: &'static str;
    /// The `read_models.kind`s of its lookup rows (see `lookup_keys`).
    const LOOKUPS: &'static [&'static str] = &[];

    /// Applies one event. `None` before the stream's first event.
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;

    /// Folds a stream's envelopes, in version order, into the model.
    fn fold<'a>(envelopes: impl IntoIterator<Item = &'a EventEnvelope>) -> Result<Option<Self>, DecodeError> {
        let mut state = None;
        for envelope in envelopes {
            state = Self::evolve(state, &Self::Event::from_envelope(envelope)?);
        }
        Ok(state)
    }

    /// A one-line, human description of one of its events (revisions, `tail`, feeds).
    fn summary(event: &Self::Event) -> String;

    /// Fields of the stored model that never leave the process (secrets, verifiers): every
    /// view of a state drops them. They mirror the event types' declared redactions.
    const PRIVATE_FIELDS: &'static [&'static str] = &[];

    /// The org this resource belongs to.
    fn org_id(&self) -> String;

    /// Whether the resource is gone for its surface (deleted, terminated): reads answer
    /// 404 and lists leave it out, while its history stays.
    fn is_deleted(&self) -> bool {
        self.deleted_at().is_some()
    }

    /// When the resource was deleted (or terminated) for its surface.
    fn deleted_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// The surface's own revision number, where it has one.
    fn revision(&self) -> Option<i64> {
        None
    }

    /// Extra rows this model keeps for lookups by something other than its id, as
    /// `(kind, id)`. Their doc is the model's own id.
    fn lookup_keys(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Writes a typed change over its field: `None` (absent from the stored change) leaves the
/// field as it is.
pub(crate) fn set<T: Clone>(field: &mut T, change: &Option<T>) {
    if let Some(value) = change {
        *field = value.clone();
    }
}

/// `set` for free-form JSON, kept in key order (`in_key_order`).
pub(crate) fn set_json(field: &mut serde_json::Value, change: &Option<serde_json::Value>) {
    if let Some(value) = change {
        *field = in_key_order(value);
    }
}

/// `set_json` for JSON that may be absent.
pub(crate) fn set_json_opt(field: &mut Option<serde_json::Value>, change: &Option<Option<serde_json::Value>>) {
    if let Some(value) = change {
        *field = value.as_ref().map(in_key_order);
    }
}

/// The first characters of a config hash, enough to tell revisions apart in a summary.
pub(crate) fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or_default()
}

/// "what happened (config <hash>): reason", or the restore it was.
pub(crate) fn config_change(what: String, hash: &str, restored_from: Option<i64>, reason: Option<&str>) -> String {
    let mut s = match restored_from {
        Some(v) => format!("restored the config of version {v}"),
        None => what,
    };
    s.push_str(&format!(" (config {})", short_hash(hash)));
    if let Some(reason) = reason {
        s.push_str(&format!(": {reason}"));
    }
    s
}

/// "changed a, b" for an update that names its changed fields.
pub(crate) fn changed_fields<S: AsRef<str>>(fields: impl IntoIterator<Item = S>, reprovision: bool) -> String {
    let fields: Vec<S> = fields.into_iter().collect();
    let names: Vec<&str> = fields.iter().map(AsRef::as_ref).collect();
    let mut s = format!("changed {}", names.join(", "));
    if reprovision {
        s.push_str(" (reprovision)");
    }
    s
}

/// `read_models.kind` values that are lookups rather than models.
pub mod lookup {
    pub const KEY_HASH: &str = "key_hash";
    pub const ORG_SLUG: &str = "org_slug";
}

#[cfg(test)]
mod key_order_tests {
    #[test]
    fn members_are_put_in_key_order_at_every_depth() {
        let value = serde_json::json!({"b": 1, "a": {"z": [{"y": 1, "x": 2}], "c": null}});
        assert_eq!(
            super::in_key_order(&value).to_string(),
            r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#
        );
    }
}
