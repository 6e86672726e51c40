//! OpenClaw instance events (the Chowder instances surface).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceCreated {
    pub instance_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub model_provider: String,
    pub openclaw_version: String,
    pub openclaw_config: Value,
    pub region: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One `openclaw config set` (a value) or `config unset` (`None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigPath {
    pub path: String,
    pub value: Option<Value>,
}

/// A PATCH: the overrides as flattened paths, exactly what the sandbox is told to set and
/// unset. The read model applies them to the config before it (`config_paths`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The overrides as sent, recorded by earlier builds beside `paths`, which say the same
    /// (an empty object sets nothing): a third copy of a large body cost every reader of
    /// the event. New events leave it out; old ones still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Value>,
    #[serde(default)]
    pub paths: Vec<ConfigPath>,
    /// The whole merged config after the change, as schema version 1 recorded it: every
    /// small change of a large config stored all of it again (megabytes per event, and
    /// every read of the stream decoding them). From version 2 on it is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openclaw_config: Option<Value>,
    /// Whether the instance was running, so the change must reach its live sandbox.
    pub apply_live: bool,
    pub updated_at: DateTime<Utc>,
}

/// The lifecycle worker made the sandbox (at creation or at a start) with every stored
/// override applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRunning {
    pub sandbox_id: String,
    pub gateway_url: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceFailed {
    pub error: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceAt {
    pub at: DateTime<Utc>,
}

/// A live config change reached the sandbox. (A terminated instance's sandbox gone is
/// `instance.sandbox_destroyed`, an `InstanceAt`; one that could not be destroyed, after
/// every retry, `instance.destroy_failed`, an `InstanceFailed`.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceConfigApplied {
    pub paths: Vec<String>,
    pub at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `instance` stream.
    InstanceEvent {
        Created(InstanceCreated) = "instance.created",
        Updated(InstanceUpdated) = "instance.updated" version 2,
        Running(InstanceRunning) = "instance.running",
        Failed(InstanceFailed) = "instance.failed",
        StartRequested(InstanceAt) = "instance.start_requested",
        Stopped(InstanceAt) = "instance.stopped",
        Terminated(InstanceAt) = "instance.terminated",
        ConfigApplied(InstanceConfigApplied) = "instance.config_applied",
        ConfigApplyFailed(InstanceFailed) = "instance.config_apply_failed",
        SandboxDestroyed(InstanceAt) = "instance.sandbox_destroyed",
        DestroyFailed(InstanceFailed) = "instance.destroy_failed",
    }
}
