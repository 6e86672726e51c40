//! Mission Control events: OpenClaw gateways, boards, and the agents provisioned onto them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::secret::StoredSecret;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayCreated {
    pub gateway_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// Empty (provisioning skipped), `local`, or a `ws://`/`wss://` OpenClaw gateway.
    pub url: String,
    /// Sent to the gateway; sealed from schema version 2 on, plaintext in version 1.
    pub token: Option<StoredSecret>,
    pub workspace_root: String,
    pub created_at: DateTime<Utc>,
}

/// The fields a PATCH changed, with their new values. A gateway's new `token` is sealed
/// (a [`StoredSecret`]) from schema version 2 on.
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
    /// Events of the `gateway` stream. Version 2 seals the token.
    GatewayEvent {
        Created(GatewayCreated) = "gateway.created" version 2 secret ["/token"],
        Updated(Changed) = "gateway.updated" version 2 secret ["/changes/token"],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainEvent;
    use serde_json::json;

    /// A `gateway.created` as the log stored it before tokens were sealed.
    fn stored_v1() -> Value {
        json!({
            "gateway_id": "0191b2c0-0000-7000-8000-000000000001",
            "org_id": "0191b2c0-0000-7000-8000-000000000002",
            "name": "claw",
            "url": "ws://gw:18789",
            "token": "plain-old-token",
            "workspace_root": "/w",
            "created_at": "2026-01-01T00:00:00.000000Z",
        })
    }

    #[test]
    fn a_stored_version_1_event_with_a_plaintext_token_still_decodes() {
        let text = stored_v1().to_string();
        for event in [
            GatewayEvent::decode("gateway.created", 1, &stored_v1()).unwrap(),
            GatewayEvent::decode_json("gateway.created", 1, &text).unwrap(),
        ] {
            let GatewayEvent::Created(created) = event else {
                panic!("a creation")
            };
            assert!(matches!(created.token, Some(StoredSecret::Legacy(ref p)) if p.expose_legacy() == "plain-old-token"));
        }
        let update = json!({"changes": {"token": "another"}, "at": "2026-01-01T00:00:00.000000Z"});
        assert!(GatewayEvent::decode("gateway.updated", 1, &update).is_ok());
        assert!(
            GatewayEvent::decode("gateway.created", 3, &stored_v1()).is_err(),
            "no version 3 yet"
        );
    }

    #[test]
    fn new_gateway_events_carry_version_2_and_declare_their_secrets() {
        let mut sealed = stored_v1();
        sealed["token"] = json!({"kid": "k1", "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"});
        let event = GatewayEvent::decode("gateway.created", 2, &sealed).unwrap();
        assert_eq!((event.event_type(), event.schema_version()), ("gateway.created", 2));
        assert_eq!(event.data()["token"], sealed["token"], "a sealed token writes back as it was read");
        assert_eq!(GatewayEvent::redactions("gateway.created").unwrap().secret, ["/token"]);
        assert_eq!(GatewayEvent::redactions("gateway.updated").unwrap().secret, ["/changes/token"]);
        assert!(GatewayEvent::redactions("gateway.deleted").unwrap().secret.is_empty());
        assert_eq!(GatewayEvent::redactions("gateway.renamed"), None);
        let deleted = GatewayEvent::Deleted(Deleted { at: Utc::now() });
        assert_eq!(deleted.schema_version(), 1, "undeclared variants stay at version 1");
        assert_eq!(crate::key::KeyEvent::redactions("key.issued").unwrap().internal, ["/key_hash"]);
    }
}
