//! How both backends decode stored rows. The columns are the same on PostgreSQL and
//! SQLite with types adapted (`jsonb`/`timestamptz`/`uuid` there, text here), and sqlx
//! decodes either into these types, so a row becomes an envelope in one place.

use chrono::{DateTime, Utc};
use fleetledger_events::{EventEnvelope, Metadata};
use serde_json::value::RawValue;
use sqlx::types::Json;
use uuid::Uuid;

use super::write::{Tail, Tails};
use super::{headers_from_json, FoldEvent, IdempotencyRecord, Latest};

/// The columns of an event row, in `EventRow`'s order.
pub(super) const EVENT_COLUMNS: &str = "global_position, event_id, stream_type, stream_id, stream_version, event_type, \
    schema_version, data, metadata, prev_hash, hash, recorded_at";

/// An event row. `Id` is how the backend stores event ids: `Uuid` on PostgreSQL, the
/// hyphenated text form on SQLite.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow<Id> {
    global_position: i64,
    event_id: Id,
    stream_type: String,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i32,
    data: Json<serde_json::Value>,
    metadata: Json<Metadata>,
    prev_hash: String,
    hash: String,
    recorded_at: DateTime<Utc>,
}

impl<Id: Into<Uuid>> From<EventRow<Id>> for EventEnvelope {
    fn from(r: EventRow<Id>) -> Self {
        EventEnvelope {
            global_position: r.global_position,
            event_id: r.event_id.into(),
            stream_type: r.stream_type,
            stream_id: r.stream_id,
            stream_version: r.stream_version,
            event_type: r.event_type,
            schema_version: r.schema_version,
            data: r.data.0.into(),
            metadata: r.metadata.0,
            prev_hash: r.prev_hash,
            hash: r.hash,
            recorded_at: r.recorded_at,
        }
    }
}

/// A stream's last event as the writer checks an append against it.
#[derive(sqlx::FromRow)]
pub(super) struct TailRow<Id> {
    stream_id: String,
    stream_version: i64,
    hash: String,
    event_id: Id,
}

/// Tail rows by stream id.
pub(super) fn tails<Id: Into<Uuid>>(rows: Vec<TailRow<Id>>) -> Tails {
    rows.into_iter()
        .map(|r| {
            let tail = Tail {
                version: r.stream_version,
                hash: r.hash,
                event_id: r.event_id.into(),
            };
            (r.stream_id, tail)
        })
        .collect()
}

/// A stream's last event and its read model's name (`latest_in_org`).
#[derive(sqlx::FromRow)]
pub(super) struct LatestRow<Id> {
    #[sqlx(flatten)]
    event: EventRow<Id>,
    name: Option<String>,
}

impl<Id: Into<Uuid>> From<LatestRow<Id>> for Latest {
    fn from(r: LatestRow<Id>) -> Self {
        Latest {
            event: r.event.into(),
            name: r.name,
        }
    }
}

/// The columns folding reads, in `FoldRow`'s order.
pub(super) const FOLD_COLUMNS: &str = "global_position, stream_type, stream_id, stream_version, event_type, schema_version, data";

/// What `read_all_for_fold` reads: a tuple, decoded by position, because rebuild reads
/// millions of them.
pub(super) type FoldRow = (i64, String, String, i64, String, i32, Json<Box<RawValue>>);

impl From<FoldRow> for FoldEvent {
    fn from((global_position, stream_type, stream_id, stream_version, event_type, schema_version, data): FoldRow) -> Self {
        FoldEvent {
            global_position,
            stream_type,
            stream_id,
            stream_version,
            event_type,
            schema_version,
            data: data.0,
        }
    }
}

/// An idempotency record's stored columns, in `IdempotencyRow`'s order.
pub(super) const IDEMPOTENCY_COLUMNS: &str = "request_hash, status, headers, body, created_at";

#[derive(sqlx::FromRow)]
pub(super) struct IdempotencyRow {
    request_hash: String,
    status: i32,
    headers: String,
    body: Vec<u8>,
    created_at: DateTime<Utc>,
}

impl IdempotencyRow {
    pub(super) fn into_record(self, org_id: &str, key: &str) -> IdempotencyRecord {
        IdempotencyRecord {
            org_id: org_id.to_string(),
            key: key.to_string(),
            request_hash: self.request_hash,
            status: self.status as u16,
            headers: headers_from_json(&self.headers),
            body: self.body,
            created_at: self.created_at,
        }
    }
}
