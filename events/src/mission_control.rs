//! Mission Control events: OpenClaw gateways, boards, and the agents provisioned onto them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayCreated {
    pub gateway_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// Empty (provisioning skipped), `local`, or a `ws://`/`wss://` OpenClaw gateway.
    pub url: String,
    /// Sent to the gateway; never shown by the API.
    pub token: Option<String>,
    pub workspace_root: String,
    pub created_at: DateTime<Utc>,
}

/// The fields a PATCH changed, with their new values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub changes: Map<String, Value>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `gateway` stream.
    GatewayEvent {
        Created(GatewayCreated) = "gateway.created",
        Updated(Changed) = "gateway.updated",
        Deleted(Deleted) = "gateway.deleted",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoardCreated {
    pub board_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub gateway_id: Option<Uuid>,
    pub objective: Option<String>,
    pub created_at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `board` stream.
    BoardEvent {
        Created(BoardCreated) = "board.created",
        Updated(Changed) = "board.updated",
        Deleted(Deleted) = "board.deleted",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentCreated {
    pub agent_id: Uuid,
    pub org_id: Uuid,
    pub gateway_id: Uuid,
    pub board_id: Option<Uuid>,
    pub name: String,
    pub status: String,
    pub heartbeat_config: Value,
    pub identity_profile: Option<Value>,
    pub identity_template: Option<String>,
    pub soul_template: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An accepted PATCH: exactly the fields it changed, and whether the agent's workspace
/// must be provisioned again (templates, board or scope changed, or `force`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdated {
    pub changes: Map<String, Value>,
    pub reprovision: bool,
    pub force: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentHeartbeat {
    pub status: Option<String>,
    pub seen_at: DateTime<Utc>,
}

/// The reprovisioner wrote the agent's workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentProvisioned {
    pub files: Vec<String>,
    /// sha256 of each file written, by name.
    pub hashes: Map<String, Value>,
    pub gateway: String,
    /// Files the gateway refused as unsupported (not a failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentProvisionFailed {
    pub error: String,
    pub at: DateTime<Utc>,
}

/// The agent's gateway has no URL: nothing to provision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentProvisionSkipped {
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The agent's heartbeat policy was written to its gateway's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentHeartbeatSynced {
    pub gateway: String,
    pub at: DateTime<Utc>,
}

/// A deleted agent was removed from its gateway (its local workspace files are kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDeprovisioned {
    pub gateway: String,
    pub at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `mc_agent` stream.
    AgentEvent {
        Created(AgentCreated) = "mc_agent.created",
        Updated(AgentUpdated) = "mc_agent.updated",
        Heartbeat(AgentHeartbeat) = "mc_agent.heartbeat",
        Deleted(Deleted) = "mc_agent.deleted",
        Provisioned(AgentProvisioned) = "mc_agent.provisioned",
        ProvisionFailed(AgentProvisionFailed) = "mc_agent.provision_failed",
        ProvisionSkipped(AgentProvisionSkipped) = "mc_agent.provision_skipped",
        HeartbeatSynced(AgentHeartbeatSynced) = "mc_agent.heartbeat_synced",
        Deprovisioned(AgentDeprovisioned) = "mc_agent.deprovisioned",
    }
}
