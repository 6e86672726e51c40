//! The per-stream hash chain: `hash = sha256(prev_hash ‖ JCS(event without hash))`.
//!
//! The canonical form is RFC 8785 (JCS) over the envelope minus `hash` and
//! `global_position`; the position is the log's ordering, checked separately for being
//! strictly increasing, and is not known until the store commits.

use sha2::{Digest, Sha256};

use crate::envelope::{micros, EventEnvelope};

/// `prev_hash` of the first event of every stream.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// RFC 8785 (JCS) bytes of a JSON value: sorted keys, ECMAScript numbers, minimal escapes.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    crate::jcs::write_value(&mut out, value);
    out
}

/// Lowercase hex sha256 of a value's RFC 8785 form.
pub fn canonical_digest(value: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value)))
}

/// What the hash covers: the envelope without `hash` and `global_position`. `data` is
/// written beside these members as it is, so hashing an event never copies its data (as
/// big as a request body).
#[derive(serde::Serialize)]
struct Hashed<'a> {
    event_id: &'a uuid::Uuid,
    stream_type: &'a str,
    stream_id: &'a str,
    stream_version: i64,
    event_type: &'a str,
    schema_version: i32,
    metadata: &'a crate::envelope::Metadata,
    prev_hash: &'a str,
    recorded_at: String,
}

/// The hash an envelope must carry given its own content and `prev_hash`.
pub fn compute_hash(e: &EventEnvelope) -> String {
    let body = Hashed {
        event_id: &e.event_id,
        stream_type: &e.stream_type,
        stream_id: &e.stream_id,
        stream_version: e.stream_version,
        event_type: &e.event_type,
        schema_version: e.schema_version,
        metadata: &e.metadata,
        prev_hash: &e.prev_hash,
        recorded_at: micros::format(&e.recorded_at),
    };
    let serde_json::Value::Object(rest) = serde_json::to_value(&body).expect("an envelope always serializes") else {
        unreachable!("a struct serializes to an object")
    };
    let mut members: Vec<(&str, &serde_json::Value)> = rest.iter().map(|(k, v)| (k.as_str(), v)).collect();
    members.push(("data", &e.data));
    let mut canonical = Vec::with_capacity(512);
    crate::jcs::write_members(&mut canonical, members);
    let mut hasher = Sha256::new();
    hasher.update(e.prev_hash.as_bytes());
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

/// The first event in a stream whose stored hash or link does not match.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    pub stream: String,
    pub version: i64,
    pub global_position: i64,
    pub event_id: String,
    pub expected: String,
    pub actual: String,
}

/// Incremental verifier of one stream's chain; feed it events in stream order.
#[derive(Default)]
pub struct StreamVerifier {
    last_hash: Option<String>,
    last_version: i64,
}

impl StreamVerifier {
    pub fn check(&mut self, e: &EventEnvelope) -> Result<(), ChainBreak> {
        let stream = format!("{}/{}", e.stream_type, e.stream_id);
        let expected_prev = self.last_hash.clone().unwrap_or_else(|| GENESIS.to_string());
        let breaks = |expected: String, actual: String| ChainBreak {
            stream: stream.clone(),
            version: e.stream_version,
            global_position: e.global_position,
            event_id: e.event_id.to_string(),
            expected,
            actual,
        };
        if e.stream_version != self.last_version + 1 {
            return Err(breaks(
                format!("version {}", self.last_version + 1),
                format!("version {}", e.stream_version),
            ));
        }
        if e.prev_hash != expected_prev {
            return Err(breaks(expected_prev, e.prev_hash.clone()));
        }
        let computed = compute_hash(e);
        if computed != e.hash {
            return Err(breaks(computed, e.hash.clone()));
        }
        self.last_hash = Some(e.hash.clone());
        self.last_version = e.stream_version;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Actor, Metadata};
    use chrono::Utc;

    fn event(version: i64, prev: &str) -> EventEnvelope {
        let mut e = EventEnvelope {
            global_position: version,
            event_id: uuid::Uuid::now_v7(),
            stream_type: "profile".into(),
            stream_id: "p1".into(),
            stream_version: version,
            event_type: "profile.created".into(),
            schema_version: 1,
            data: serde_json::json!({"name": "x", "n": 1.5}).into(),
            metadata: Metadata {
                org_id: "o".into(),
                actor: Actor::system("test"),
                ..Default::default()
            },
            prev_hash: prev.into(),
            hash: String::new(),
            recorded_at: crate::envelope::truncate_micros(Utc::now()),
        };
        e.hash = compute_hash(&e);
        e
    }

    #[test]
    fn a_chain_verifies_and_a_flipped_byte_is_named() {
        let first = event(1, GENESIS);
        let second = event(2, &first.hash);
        let mut v = StreamVerifier::default();
        v.check(&first).unwrap();
        v.check(&second).unwrap();

        let mut tampered = second.clone();
        tampered.data = serde_json::json!({"name": "y", "n": 1.5}).into();
        let mut v = StreamVerifier::default();
        v.check(&first).unwrap();
        let err = v.check(&tampered).unwrap_err();
        assert_eq!(err.version, 2);
        assert_eq!(err.actual, second.hash);
    }

    /// The hash as it was first computed, through an intermediate `Value`.
    fn hash_through_a_value(e: &EventEnvelope) -> String {
        let body = serde_json::json!({
            "event_id": e.event_id,
            "stream_type": e.stream_type,
            "stream_id": e.stream_id,
            "stream_version": e.stream_version,
            "event_type": e.event_type,
            "schema_version": e.schema_version,
            "data": e.data,
            "metadata": e.metadata,
            "prev_hash": e.prev_hash,
            "recorded_at": micros::format(&e.recorded_at),
        });
        let mut hasher = Sha256::new();
        hasher.update(e.prev_hash.as_bytes());
        hasher.update(canonical_json(&body));
        hex::encode(hasher.finalize())
    }

    #[test]
    fn hashing_the_borrowed_envelope_is_hashing_its_value() {
        let mut e = event(3, GENESIS);
        assert_eq!(compute_hash(&e), hash_through_a_value(&e));
        e.data = serde_json::json!({"b": [1, 2.5, -0.0, 1e21, "\u{2028}<&>"], "a": {"é": null, "z": true}, "\u{10000}": 1, "\u{ffff}": 2})
            .into();
        e.metadata.request_id = Some("r".into());
        e.metadata.causation_id = Some("c".into());
        e.metadata.idempotency_key = Some("k".into());
        e.metadata.user_agent = Some("ua".into());
        assert_eq!(compute_hash(&e), hash_through_a_value(&e));
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let mut e = event(1, GENESIS);
        let h = compute_hash(&e);
        e.data = serde_json::from_str(r#"{"n": 1.5, "name": "x"}"#).unwrap();
        assert_eq!(compute_hash(&e), h);
    }
}
