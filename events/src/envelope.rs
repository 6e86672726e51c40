//! The stored shape of an event and the metadata every event carries.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event: the principal and the key it authenticated with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub principal_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl Actor {
    /// The actor of work the system does on its own (bootstrap, CLI on the host).
    pub fn system(name: &str) -> Self {
        Actor {
            principal_id: format!("system:{name}"),
            key_id: None,
        }
    }
}

/// Context recorded with every event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub org_id: String,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// An event as decided by the domain, before the store gives it a place in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub data: Arc<serde_json::Value>,
}

/// An event as the log holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub global_position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    /// Shared: an event's data is as big as a request body, and the log, the cache, the
    /// relay and the change feed each hold the same event.
    pub data: Arc<serde_json::Value>,
    pub metadata: Metadata,
    pub prev_hash: String,
    pub hash: String,
    #[serde(with = "micros")]
    pub recorded_at: DateTime<Utc>,
}

/// A stored event whose type or data this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type} (schema version {schema_version})")]
    UnknownType { event_type: String, schema_version: i32 },
    // `reason`, not `source`: the text already carries it, and a report of the chain
    // would name it twice.
    #[error("event {event_type} has malformed data: {reason}")]
    Malformed { event_type: String, reason: serde_json::Error },
}

/// An aggregate's event type: a stable stored name, a schema version, and the upcasting
/// decoder that reads every version ever stored.
pub trait DomainEvent: Sized {
    /// Every event type with its current schema version; `decode` reads every version from
    /// 1 to that, which is all a log of this aggregate may hold. The recorded log fixture
    /// must contain each of them.
    const EVENT_TYPES: &'static [(&'static str, i32)];

    fn event_type(&self) -> &'static str;
    fn schema_version(&self) -> i32 {
        1
    }
    fn data(&self) -> serde_json::Value;
    fn decode(event_type: &str, schema_version: i32, data: &serde_json::Value) -> Result<Self, DecodeError>;
    /// The fields of `event_type`'s data that never leave the process as stored (secrets
    /// and internal verifiers); `None` for an event type this enum does not have.
    fn redactions(event_type: &str) -> Option<crate::secret::Redactions>;
    /// Decodes straight from the stored JSON text (no intermediate `Value`), for bulk folds.
    fn decode_json(event_type: &str, schema_version: i32, json: &str) -> Result<Self, DecodeError>;

    fn to_new_event(&self, event_id: Uuid) -> NewEvent {
        NewEvent {
            event_id,
            event_type: self.event_type().to_string(),
            schema_version: self.schema_version(),
            data: Arc::new(self.data()),
        }
    }

    fn from_envelope(envelope: &EventEnvelope) -> Result<Self, DecodeError> {
        Self::decode(&envelope.event_type, envelope.schema_version, &envelope.data)
    }
}

/// Reads `data` as `T`, naming the event type when it does not fit.
pub fn decode_data<T: serde::de::DeserializeOwned>(event_type: &str, data: &serde_json::Value) -> Result<T, DecodeError> {
    T::deserialize(data).map_err(|reason| DecodeError::Malformed {
        event_type: event_type.to_string(),
        reason,
    })
}

/// Reads JSON text as `T`, naming the event type when it does not fit.
pub fn decode_text<T: serde::de::DeserializeOwned>(event_type: &str, json: &str) -> Result<T, DecodeError> {
    serde_json::from_str(json).map_err(|reason| DecodeError::Malformed {
        event_type: event_type.to_string(),
        reason,
    })
}

/// Timestamps are stored, hashed and shown with microsecond precision, which both
/// PostgreSQL and our SQLite encoding keep exactly.
pub mod micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Truncates a timestamp to the precision the log keeps.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Declares an aggregate's event enum: one variant per past-tense payload, each with its
/// stable stored name. `decode` is where upcasters go when a payload gets a new version.
///
/// After a variant's name, optionally:
/// - `version N`: new events of the variant carry schema version N, and every version
///   from 1 to N decodes into its payload type, which must read them all (e.g. a
///   [`StoredSecret`](crate::secret::StoredSecret) field reads version 1's plaintext
///   string and the sealed object that replaced it);
/// - `secret ["/ptr", …]`: JSON pointers into `data` of secret fields (sealed before they
///   reach the log; shown as `"***"` by every view out of the process);
/// - `internal ["/ptr", …]`: fields the process needs that no caller may see.
///
/// A new secret field is declared here, as such, next to its event type.
#[macro_export]
macro_rules! domain_events {
    ($(#[$meta:meta])* $enum:ident { $(
        $variant:ident($payload:ty) = $name:literal
        $(version $version:literal)?
        $(secret [$($secret:literal),* $(,)?])?
        $(internal [$($internal:literal),* $(,)?])?
    ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $enum { $($variant($payload)),* }

        impl $crate::DomainEvent for $enum {
            const EVENT_TYPES: &'static [(&'static str, i32)] = &[$(($name, $crate::__event_version!($($version)?))),*];

            fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => $name),* }
            }
            fn schema_version(&self) -> i32 {
                match self { $(Self::$variant(_) => $crate::__event_version!($($version)?)),* }
            }
            fn data(&self) -> serde_json::Value {
                match self { $(Self::$variant(p) => serde_json::to_value(p).expect("event payloads always serialize")),* }
            }
            fn decode(event_type: &str, schema_version: i32, data: &serde_json::Value) -> Result<Self, $crate::DecodeError> {
                match (event_type, schema_version) {
                    $(($name, v) if (1..=$crate::__event_version!($($version)?)).contains(&v) => Ok(Self::$variant($crate::envelope::decode_data(event_type, data)?)),)*
                    _ => Err($crate::DecodeError::UnknownType { event_type: event_type.to_string(), schema_version }),
                }
            }
            fn decode_json(event_type: &str, schema_version: i32, json: &str) -> Result<Self, $crate::DecodeError> {
                match (event_type, schema_version) {
                    $(($name, v) if (1..=$crate::__event_version!($($version)?)).contains(&v) => Ok(Self::$variant($crate::envelope::decode_text(event_type, json)?)),)*
                    _ => Err($crate::DecodeError::UnknownType { event_type: event_type.to_string(), schema_version }),
                }
            }
            fn redactions(event_type: &str) -> Option<$crate::secret::Redactions> {
                match event_type {
                    $($name => Some($crate::secret::Redactions {
                        secret: &[$($($secret),*)?],
                        internal: &[$($($internal),*)?],
                    }),)*
                    _ => None,
                }
            }
        }
    };
}

/// A variant's current schema version: the one it declares, else 1.
#[doc(hidden)]
#[macro_export]
macro_rules! __event_version {
    () => {
        1
    };
    ($version:literal) => {
        $version
    };
}
