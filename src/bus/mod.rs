//! Change events leaving the log: subjects and CloudEvents, the feed (tailing the log from
//! a position, which is the in-process bus), the JetStream publisher, and the relay that
//! moves the log onto JetStream in global order.
//!
//! The log is the record; JetStream is a fast notification channel. Consumers check the
//! `sequence` extension (the global position) for contiguity and backfill from the log.

pub mod feed;
pub mod nats;
pub mod relay;

use fleetledger_events::envelope::micros;
use fleetledger_events::EventEnvelope;
use serde::Serialize;

use crate::views::PublicEvent;

/// Subject prefix of the production stream.
pub const DEFAULT_SUBJECT_PREFIX: &str = "fleetledger";
pub const DEFAULT_STREAM: &str = "FLEETLEDGER";

/// A NATS subject token: no dots, spaces or wildcards.
fn token(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars()
        .map(|c| {
            if matches!(c, '.' | ' ' | '*' | '>' | '\t' | '\r' | '\n') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// `<prefix>.<org_id>.<stream_type>.<stream_id>.<event_type>`; the event type keeps its dots.
pub fn subject(prefix: &str, e: &EventEnvelope) -> String {
    format!(
        "{prefix}.{}.{}.{}.{}",
        token(&e.metadata.org_id),
        token(&e.stream_type),
        token(&e.stream_id),
        e.event_type
    )
}

/// A CloudEvents 1.0 JSON event carrying the envelope's public view as `data` (secrets
/// `"***"`, internal fields dropped; see `views`), with the global position as the
/// `sequence` extension. (Eight fixed fields; the SDK crate would bring a transport stack
/// we do not use.)
#[derive(Serialize)]
pub struct CloudEvent<'a> {
    pub specversion: &'static str,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    pub subject: &'a str,
    pub time: String,
    pub datacontenttype: &'static str,
    pub data: &'a PublicEvent,
    pub sequence: i64,
    pub streamversion: i64,
}

impl<'a> CloudEvent<'a> {
    pub fn of(public: &'a PublicEvent) -> Self {
        let e = public.envelope();
        CloudEvent {
            specversion: "1.0",
            id: e.event_id.to_string(),
            source: format!("/fleetledger/{}", e.metadata.org_id),
            event_type: &e.event_type,
            subject: &e.stream_id,
            time: micros::format(&e.recorded_at),
            datacontenttype: "application/json",
            data: public,
            sequence: e.global_position,
            streamversion: e.stream_version,
        }
    }

    /// The CloudEvent of an event's public view: what SSE clients and NATS subscribers get.
    pub fn to_json(e: &EventEnvelope) -> String {
        serde_json::to_string(&CloudEvent::of(&crate::views::public(e))).expect("a cloud event serializes")
    }
}

/// The key of the `data` that stands in for an event too large for a NATS message.
const OMITTED: &str = "$fleetledger_omitted";

/// An event as the bus carries it when its message would exceed what NATS takes: the
/// envelope (position, stream, version, type, hash) without its data, which stays in the
/// log for the ledger API and for workers to read.
pub fn without_data(e: &EventEnvelope, bytes: usize) -> EventEnvelope {
    let mut stub = e.clone();
    stub.data = serde_json::json!({ OMITTED: "the event is too large for the bus; read it from the ledger", "bytes": bytes }).into();
    stub
}

/// Whether a message's event had its data left out (`without_data`).
pub fn data_omitted(e: &EventEnvelope) -> bool {
    e.data.get(OMITTED).is_some()
}

/// Reads the envelope back out of a CloudEvent. Its `data` is the public view: a consumer
/// that needs a secret reads the stored read model, never the message.
pub fn envelope_of(payload: &[u8]) -> Option<EventEnvelope> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        data: EventEnvelope,
    }
    serde_json::from_slice::<Wrapper>(payload).ok().map(|w| w.data)
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("nats: {0}")]
    Nats(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl BusError {
    pub fn nats(e: impl std::fmt::Display) -> Self {
        BusError::Nats(e.to_string())
    }
}
