//! Sandbox runtime events (the Dreadnode runtimes surface).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeCreated {
    pub runtime_id: Uuid,
    pub org_id: Uuid,
    pub workspace: String,
    pub key: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub project: Option<String>,
    /// The principal that owns the runtime; only it may change or drive it.
    pub owner: String,
    /// The normalized durable config.
    pub config: serde_json::Value,
    /// Lowercase sha256 of the config's RFC 8785 form.
    pub config_digest: String,
    pub created_at: DateTime<Utc>,
}

/// Every accepted PUT of the config, including one equal to the current config; whether
/// it made a new config version is derived by the projection from the digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfigReplaced {
    pub config: serde_json::Value,
    pub config_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub replaced_at: DateTime<Utc>,
}

/// A sandbox was materialized from the config as it was at `config_version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeStarted {
    pub sandbox_id: String,
    pub provider: String,
    pub sandbox_url: Option<String>,
    pub config_digest: String,
    pub config_version: i64,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimePaused {
    pub paused_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeResumed {
    pub resumed_at: DateTime<Utc>,
}

/// The sandbox was killed; the runtime is idle again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeReset {
    pub sandbox_id: Option<String>,
    pub reset_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeKeptAlive {
    pub extend_seconds: i64,
    pub expires_at: DateTime<Utc>,
    pub kept_alive_at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `runtime` stream.
    RuntimeEvent {
        Created(RuntimeCreated) = "runtime.created",
        ConfigReplaced(RuntimeConfigReplaced) = "runtime.config_replaced",
        Started(RuntimeStarted) = "runtime.started",
        Paused(RuntimePaused) = "runtime.paused",
        Resumed(RuntimeResumed) = "runtime.resumed",
        Reset(RuntimeReset) = "runtime.reset",
        KeptAlive(RuntimeKeptAlive) = "runtime.kept_alive",
    }
}
