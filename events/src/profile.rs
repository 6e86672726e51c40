//! Device/image profile events (the Fleeti surface).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileCreated {
    pub profile_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub fleet_ids: Vec<String>,
    /// The config as Go decodes it: keys sorted, numbers float64 (see `go_json`).
    pub config: serde_json::Value,
    pub config_hash: String,
    pub config_schema_version: i64,
    pub raw_nix: String,
    pub created_at: DateTime<Utc>,
}

/// How a config change was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigChangeMode {
    Replace,
    Patch,
    Restore,
}

/// Every accepted PUT/PATCH of a profile, including ones that leave the hash unchanged;
/// whether it made a new revision is derived by the projection from the hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileConfigReplaced {
    pub mode: ConfigChangeMode,
    /// Top-level request fields the client sent.
    pub fields: Vec<String>,
    pub config: serde_json::Value,
    pub config_hash: String,
    pub config_schema_version: i64,
    pub raw_nix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub replaced_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfileDeleted {
    pub deleted_at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `profile` stream.
    ProfileEvent {
        Created(ProfileCreated) = "profile.created",
        ConfigReplaced(ProfileConfigReplaced) = "profile.config_replaced",
        Deleted(ProfileDeleted) = "profile.deleted",
    }
}
