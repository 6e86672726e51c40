//! What of an event may leave the process. Every way out of the log — the ledger API
//! (pages, stream reads, SSE), NATS payloads, `tail`, `replay` and `export` — renders
//! events through one of these views, driven by what each event type declares in
//! `domain_events!` (`secret [...]`, `internal [...]`), found through the stream-type
//! registry (`streams`):
//!
//! - [`public`]: secret fields become `"***"` (sealed or legacy plaintext alike) and
//!   internal fields are dropped. An event of a stream or event type this build does not
//!   know shows `"***"` as its whole `data`: unknown means undeclared, so it fails closed.
//! - [`archive`], for `export`: sealed secrets stay as stored, so `import` keeps them and
//!   their chain verifies; legacy plaintext becomes `"***"` (such an event can then no
//!   longer be verified after import: its hash covers the plaintext); internal fields
//!   stay, so an imported log still authenticates its keys.
//!
//! States folded from events (audit time travel, diffs, `replay --format json`) leave
//! through the registry's `public_state`/`rendered`, which drop each read model's
//! `PRIVATE_FIELDS`.
//!
//! The views change `data`, never `hash`: a reader can follow the chain's links, but only
//! `verify`, which reads the stored bytes, recomputes hashes.

use std::sync::Arc;

use fleetledger_events::secret::{Redactions, SealedSecret, REDACTED};
use fleetledger_events::EventEnvelope;
use serde::Serialize;
use serde_json::Value;

/// An event as any caller may see it. Only [`public`] makes one.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct PublicEvent(EventEnvelope);

impl PublicEvent {
    pub fn envelope(&self) -> &EventEnvelope {
        &self.0
    }
}

/// An event as `export` writes it. Only [`archive`] makes one.
#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct ArchivedEvent(EventEnvelope);

/// What an event's type declares, from the stream-type registry; `None` when this build
/// does not know the stream or event type.
fn redactions_of(e: &EventEnvelope) -> Option<Redactions> {
    crate::streams::get(&e.stream_type).and_then(|s| s.redactions(&e.event_type))
}

/// Splits a JSON pointer into its parent pointer and last (unescaped) token.
fn split_pointer(pointer: &str) -> Option<(&str, String)> {
    let (parent, last) = pointer.rsplit_once('/')?;
    Some((parent, last.replace("~1", "/").replace("~0", "~")))
}

/// Replaces a present, non-null secret by the marker.
fn mask(data: &mut Value, pointer: &str) {
    if let Some(value) = data.pointer_mut(pointer).filter(|v| !v.is_null()) {
        *value = REDACTED.into();
    }
}

/// Keeps a sealed secret as stored; anything else (legacy plaintext) becomes the marker.
fn mask_unsealed(data: &mut Value, pointer: &str) {
    if let Some(value) = data.pointer_mut(pointer).filter(|v| !v.is_null()) {
        if serde_json::from_value::<SealedSecret>(value.clone()).is_err() {
            *value = REDACTED.into();
        }
    }
}

fn remove(data: &mut Value, pointer: &str) {
    if let Some((parent, last)) = split_pointer(pointer) {
        if let Some(object) = data.pointer_mut(parent).and_then(Value::as_object_mut) {
            object.remove(&last);
        }
    }
}

/// The event as any caller may see it: secrets `"***"`, internal fields gone.
pub fn public(e: &EventEnvelope) -> PublicEvent {
    let mut out = e.clone();
    match redactions_of(e) {
        // Most event types declare nothing: their data stays shared with the stored event.
        Some(r) if r.secret.is_empty() && r.internal.is_empty() => {}
        Some(r) => {
            let data = Arc::make_mut(&mut out.data);
            r.secret.iter().for_each(|p| mask(data, p));
            r.internal.iter().for_each(|p| remove(data, p));
        }
        None => out.data = Arc::new(REDACTED.into()),
    }
    PublicEvent(out)
}

/// The event as `export` writes it: sealed secrets and internal fields kept, legacy
/// plaintext secrets `"***"`. Events this build does not know are written as stored.
pub fn archive(e: &EventEnvelope) -> ArchivedEvent {
    let mut out = e.clone();
    if let Some(r) = redactions_of(e).filter(|r| !r.secret.is_empty()) {
        let data = Arc::make_mut(&mut out.data);
        r.secret.iter().for_each(|p| mask_unsealed(data, p));
    }
    ArchivedEvent(out)
}

/// Whether a secret field of this event holds the marker: a legacy plaintext secret that
/// `export` redacted, which is why its hash no longer matches.
pub fn has_redacted_secret(e: &EventEnvelope) -> bool {
    redactions_of(e).is_some_and(|r| r.secret.iter().any(|p| e.data.pointer(p).and_then(Value::as_str) == Some(REDACTED)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetledger_events::{Actor, Metadata};
    use serde_json::json;

    fn event(stream_type: &str, event_type: &str, data: Value) -> EventEnvelope {
        EventEnvelope {
            global_position: 1,
            event_id: uuid::Uuid::nil(),
            stream_type: stream_type.into(),
            stream_id: "s".into(),
            stream_version: 1,
            event_type: event_type.into(),
            schema_version: 2,
            data: data.into(),
            metadata: Metadata {
                org_id: "o".into(),
                actor: Actor::system("test"),
                ..Default::default()
            },
            prev_hash: String::new(),
            hash: "h".into(),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn sealed() -> Value {
        json!({"kid": "dk_1", "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"})
    }

    #[test]
    fn public_views_mask_secrets_sealed_or_legacy_and_drop_internal_fields() {
        let created = event("gateway", "gateway.created", json!({"name": "g", "token": sealed()}));
        assert_eq!(*public(&created).envelope().data, json!({"name": "g", "token": "***"}));
        let legacy = event("gateway", "gateway.created", json!({"name": "g", "token": "plain"}));
        assert_eq!(*public(&legacy).envelope().data, json!({"name": "g", "token": "***"}));
        let none = event("gateway", "gateway.created", json!({"name": "g", "token": null}));
        assert_eq!(public(&none).envelope().data["token"], Value::Null);
        let updated = event("gateway", "gateway.updated", json!({"changes": {"token": "plain", "name": "n"}}));
        assert_eq!(*public(&updated).envelope().data, json!({"changes": {"token": "***", "name": "n"}}));
        let unrelated = event("gateway", "gateway.updated", json!({"changes": {"name": "n"}}));
        assert_eq!(*public(&unrelated).envelope().data, json!({"changes": {"name": "n"}}));
        let key = event("key", "key.issued", json!({"name": "k", "key_hash": "abc"}));
        assert_eq!(*public(&key).envelope().data, json!({"name": "k"}));
        assert_eq!(public(&key).envelope().hash, "h", "the stored hash is shown as it is");
        // Unknown means undeclared: nothing of its data leaves.
        assert_eq!(
            *public(&event("gateway", "gateway.renamed", json!({"token": "x"}))).envelope().data,
            json!("***")
        );
        assert_eq!(*public(&event("nope", "nope.done", json!({"x": 1}))).envelope().data, json!("***"));
    }

    #[test]
    fn archives_keep_sealed_secrets_and_internal_fields_but_never_plaintext() {
        let created = event("gateway", "gateway.created", json!({"token": sealed()}));
        assert_eq!(archive(&created).0.data, created.data);
        assert!(!has_redacted_secret(&archive(&created).0));
        let legacy = event("gateway", "gateway.updated", json!({"changes": {"token": "plain"}}));
        let archived = archive(&legacy).0;
        assert_eq!(*archived.data, json!({"changes": {"token": "***"}}));
        assert!(has_redacted_secret(&archived));
        let key = event("key", "key.issued", json!({"key_hash": "abc"}));
        assert_eq!(archive(&key).0.data, key.data);
    }

    #[test]
    fn states_lose_their_private_fields() {
        let gateway = crate::streams::get("gateway").unwrap();
        let created = event(
            "gateway",
            "gateway.created",
            json!({
                "gateway_id": uuid::Uuid::nil(), "org_id": uuid::Uuid::nil(), "name": "g", "url": "ws://gw",
                "token": sealed(), "workspace_root": "/w", "created_at": "2026-01-01T00:00:00Z",
            }),
        );
        let state = gateway.public_state(None, &[created]).unwrap().unwrap();
        assert_eq!(state["name"], "g");
        assert!(state.get("token").is_none(), "{state}");
    }
}
