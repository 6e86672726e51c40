//! Mission Control events: OpenClaw gateways, boards, and the agents provisioned onto them.
//!
//! Board and agent updates carry typed changes whose JSON is what the log has always held:
//! the changed fields by name, in the order declared here, `null` for a field cleared (see
//! [`crate::change`]); unknown fields are refused, so a renamed field cannot silently drop
//! old changes.

use chrono::{DateTime, Utc};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::change::changed_names;
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

/// The fields a gateway PATCH changed. A new `token` is sealed (a [`StoredSecret`]) from
/// schema version 2 on; `null` clears it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub token: Option<Option<StoredSecret>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_root: Option<String>,
}

impl GatewayChanges {
    /// The changed fields' names, in stored order.
    pub fn names(&self) -> Vec<&'static str> {
        changed_names!(self; name, url, token, workspace_root)
    }

    pub fn is_empty(&self) -> bool {
        self.names().is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayUpdated {
    pub changes: GatewayChanges,
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
        Updated(GatewayUpdated) = "gateway.updated" version 2 secret ["/changes/token"],
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

/// The fields a board PATCH changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub gateway_id: Option<Option<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub objective: Option<Option<String>>,
}

impl BoardChanges {
    /// The changed fields' names, in stored order.
    pub fn names(&self) -> Vec<&'static str> {
        changed_names!(self; name, slug, description, gateway_id, objective)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoardUpdated {
    pub changes: BoardChanges,
    pub at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `board` stream.
    BoardEvent {
        Created(BoardCreated) = "board.created",
        Updated(BoardUpdated) = "board.updated",
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

/// The fields an agent PATCH changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub board_id: Option<Option<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_gateway_main: Option<bool>,
    /// Free-form: the agent's heartbeat policy.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::change::present")]
    pub heartbeat_config: Option<Value>,
    /// Free-form: what the identity templates render.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub identity_profile: Option<Option<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub identity_template: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub soul_template: Option<Option<String>>,
}

impl AgentChanges {
    /// The changed fields' names, in stored order.
    pub fn names(&self) -> Vec<&'static str> {
        changed_names!(self; name, status, board_id, gateway_id, is_gateway_main, heartbeat_config, identity_profile,
                       identity_template, soul_template)
    }
}

/// An accepted PATCH: exactly the fields it changed, and whether the agent's workspace
/// must be provisioned again (templates, board or scope changed, or `force`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdated {
    pub changes: AgentChanges,
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
    pub hashes: FileHashes,
    pub gateway: String,
    /// Files the gateway refused as unsupported (not a failure).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsupported: Vec<String>,
    pub at: DateTime<Utc>,
}

/// Hex sha256 of each file, by file name, in the order the files were written; stored as
/// a JSON object in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileHashes(pub Vec<(String, String)>);

impl Serialize for FileHashes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(file, hash)| (file, hash)))
    }
}

impl<'de> Deserialize<'de> for FileHashes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = FileHashes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of file names to sha256 hashes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileHashes, A::Error> {
                let mut hashes = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    hashes.push(entry);
                }
                Ok(FileHashes(hashes))
            }
        }
        d.deserialize_map(InOrder)
    }
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

    /// `names()` lists what the JSON holds, in the same order.
    fn names_follow_the_json<C: Serialize>(changes: &C, names: Vec<&'static str>) {
        let Value::Object(json) = serde_json::to_value(changes).unwrap() else {
            panic!("changes are an object")
        };
        assert_eq!(json.keys().map(String::as_str).collect::<Vec<_>>(), names);
    }

    #[test]
    fn every_change_is_named_in_stored_order() {
        let board = BoardChanges {
            name: Some("b".into()),
            slug: Some("b".into()),
            description: Some(None),
            gateway_id: Some(Some(Uuid::nil())),
            objective: Some(None),
        };
        names_follow_the_json(&board, board.names());
        let agent = AgentChanges {
            name: Some("a".into()),
            status: Some("active".into()),
            board_id: Some(None),
            gateway_id: Some(Uuid::nil()),
            is_gateway_main: Some(true),
            heartbeat_config: Some(json!({})),
            identity_profile: Some(None),
            identity_template: Some(Some("t".into())),
            soul_template: Some(None),
        };
        names_follow_the_json(&agent, agent.names());
    }

    #[test]
    fn file_hashes_keep_the_order_they_were_written_in() {
        let stored = r#"{"SOUL.md":"b","AGENTS.md":"a"}"#;
        let hashes: FileHashes = serde_json::from_str(stored).unwrap();
        assert_eq!(
            hashes.0,
            [("SOUL.md".to_string(), "b".to_string()), ("AGENTS.md".into(), "a".into())]
        );
        assert_eq!(serde_json::to_string(&hashes).unwrap(), stored);
    }
}
