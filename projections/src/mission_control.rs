//! Mission Control read models: gateways, boards and agents.
//!
//! Updates carry exactly the fields they changed: board and agent changes are typed and
//! applied field by field here; gateway changes are still a map applied by name. An
//! agent's `revision` counts its accepted changes (creation is 1); `provision_state`
//! follows the reprovisioner's outcome events.

use chrono::{DateTime, Utc};
use fleetledger_events::mission_control::{AgentEvent, BoardEvent, GatewayEvent};
use fleetledger_events::secret::StoredSecret;

use crate::{set, set_json, set_json_opt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub url: String,
    /// As the events stored it: sealed (or, from a version 1 event, legacy plaintext).
    pub token: Option<StoredSecret>,
    pub workspace_root: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl crate::ReadModel for Gateway {
    type Event = GatewayEvent;
    const KIND: &'static str = fleetledger_events::stream_type::GATEWAY;
    const PRIVATE_FIELDS: &'static [&'static str] = &["token"];

    fn evolve(state: Option<Self>, event: &GatewayEvent) -> Option<Self> {
        match (state, event) {
            (_, GatewayEvent::Created(e)) => Some(Gateway {
                id: e.gateway_id,
                org_id: e.org_id,
                name: e.name.clone(),
                url: e.url.clone(),
                token: e.token.clone(),
                workspace_root: e.workspace_root.clone(),
                created_at: e.created_at,
                updated_at: e.created_at,
                deleted_at: None,
            }),
            (Some(mut g), GatewayEvent::Updated(e)) => {
                let c = &e.changes;
                set(&mut g.name, &c.name);
                set(&mut g.url, &c.url);
                set(&mut g.token, &c.token);
                set(&mut g.workspace_root, &c.workspace_root);
                g.updated_at = e.at;
                Some(g)
            }
            (Some(g), GatewayEvent::Deleted(e)) => Some(Gateway {
                deleted_at: Some(e.at),
                ..g
            }),
            (None, _) => None,
        }
    }

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn summary(event: &GatewayEvent) -> String {
        match event {
            GatewayEvent::Created(e) => format!("created gateway {}", e.name),
            GatewayEvent::Updated(e) => crate::changed_fields(e.changes.names(), false),
            GatewayEvent::Deleted(_) => "deleted".into(),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Board {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub gateway_id: Option<Uuid>,
    pub objective: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl crate::ReadModel for Board {
    type Event = BoardEvent;
    const KIND: &'static str = fleetledger_events::stream_type::BOARD;

    fn evolve(state: Option<Self>, event: &BoardEvent) -> Option<Self> {
        match (state, event) {
            (_, BoardEvent::Created(e)) => Some(Board {
                id: e.board_id,
                org_id: e.org_id,
                name: e.name.clone(),
                slug: e.slug.clone(),
                description: e.description.clone(),
                gateway_id: e.gateway_id,
                objective: e.objective.clone(),
                created_at: e.created_at,
                updated_at: e.created_at,
                deleted_at: None,
            }),
            (Some(mut b), BoardEvent::Updated(e)) => {
                let c = &e.changes;
                set(&mut b.name, &c.name);
                set(&mut b.slug, &c.slug);
                set(&mut b.description, &c.description);
                set(&mut b.gateway_id, &c.gateway_id);
                set(&mut b.objective, &c.objective);
                b.updated_at = e.at;
                Some(b)
            }
            (Some(b), BoardEvent::Deleted(e)) => Some(Board {
                deleted_at: Some(e.at),
                ..b
            }),
            (None, _) => None,
        }
    }

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn summary(event: &BoardEvent) -> String {
        match event {
            BoardEvent::Created(e) => format!("created board {}", e.name),
            BoardEvent::Updated(e) => crate::changed_fields(e.changes.names(), false),
            BoardEvent::Deleted(_) => "deleted".into(),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionState {
    Pending,
    Provisioned,
    Failed,
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McAgent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub gateway_id: Uuid,
    pub board_id: Option<Uuid>,
    pub name: String,
    pub status: String,
    pub is_gateway_main: bool,
    pub heartbeat_config: Value,
    pub identity_profile: Option<Value>,
    pub identity_template: Option<String>,
    pub soul_template: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub revision: i64,
    pub provision_state: ProvisionState,
    pub last_provision_error: Option<String>,
}

impl McAgent {
    /// The OpenClaw session key: per agent on a board, per gateway for its main agent.
    pub fn session_key(&self) -> String {
        format!("agent:{}:main", self.gateway_agent_id())
    }

    /// The agent's id on its gateway (the session key's middle segment).
    pub fn gateway_agent_id(&self) -> String {
        if self.is_gateway_main {
            format!("mc-gateway-{}", self.gateway_id)
        } else {
            format!("mc-{}", self.id)
        }
    }

    /// `<workspace_root>/workspace-<gateway_agent_id>`.
    pub fn workspace_path(&self, workspace_root: &str) -> String {
        format!("{}/workspace-{}", workspace_root.trim_end_matches('/'), self.gateway_agent_id())
    }
}

impl crate::ReadModel for McAgent {
    type Event = AgentEvent;
    const KIND: &'static str = fleetledger_events::stream_type::MC_AGENT;

    fn evolve(state: Option<Self>, event: &AgentEvent) -> Option<Self> {
        match (state, event) {
            (_, AgentEvent::Created(e)) => Some(McAgent {
                id: e.agent_id,
                org_id: e.org_id,
                gateway_id: e.gateway_id,
                board_id: e.board_id,
                name: e.name.clone(),
                status: e.status.clone(),
                is_gateway_main: e.board_id.is_none(),
                heartbeat_config: crate::in_key_order(&e.heartbeat_config),
                identity_profile: e.identity_profile.as_ref().map(crate::in_key_order),
                identity_template: e.identity_template.clone(),
                soul_template: e.soul_template.clone(),
                last_seen_at: None,
                created_at: e.created_at,
                updated_at: e.created_at,
                deleted_at: None,
                revision: 1,
                provision_state: ProvisionState::Pending,
                last_provision_error: None,
            }),
            (Some(mut a), AgentEvent::Updated(e)) => {
                let c = &e.changes;
                set(&mut a.name, &c.name);
                set(&mut a.status, &c.status);
                set(&mut a.board_id, &c.board_id);
                set(&mut a.gateway_id, &c.gateway_id);
                set(&mut a.is_gateway_main, &c.is_gateway_main);
                set_json(&mut a.heartbeat_config, &c.heartbeat_config);
                set_json_opt(&mut a.identity_profile, &c.identity_profile);
                set(&mut a.identity_template, &c.identity_template);
                set(&mut a.soul_template, &c.soul_template);
                a.revision += 1;
                a.updated_at = e.updated_at;
                if e.reprovision {
                    a.provision_state = ProvisionState::Pending;
                }
                Some(a)
            }
            (Some(mut a), AgentEvent::Heartbeat(e)) => {
                a.last_seen_at = Some(e.seen_at);
                if let Some(status) = &e.status {
                    a.status = status.clone();
                }
                Some(a)
            }
            (Some(mut a), AgentEvent::Deleted(e)) => {
                a.deleted_at = Some(e.at);
                Some(a)
            }
            (Some(mut a), AgentEvent::Provisioned(_)) => {
                a.provision_state = ProvisionState::Provisioned;
                a.last_provision_error = None;
                Some(a)
            }
            (Some(mut a), AgentEvent::ProvisionFailed(e)) => {
                a.provision_state = ProvisionState::Failed;
                a.last_provision_error = Some(e.error.clone());
                Some(a)
            }
            (Some(a), AgentEvent::HeartbeatSynced(_) | AgentEvent::Deprovisioned(_)) => Some(a),
            (Some(mut a), AgentEvent::ProvisionSkipped(_)) => {
                a.provision_state = ProvisionState::Skipped;
                a.last_provision_error = None;
                Some(a)
            }
            (None, _) => None,
        }
    }

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn summary(event: &AgentEvent) -> String {
        match event {
            AgentEvent::Created(e) => format!("created agent {}", e.name),
            AgentEvent::Updated(e) => crate::changed_fields(e.changes.names(), e.reprovision),
            AgentEvent::Heartbeat(_) => "heartbeat".into(),
            AgentEvent::Deleted(_) => "deleted".into(),
            AgentEvent::Provisioned(e) => format!("provisioned {} files via {}", e.files.len(), e.gateway),
            AgentEvent::ProvisionFailed(e) => format!("provisioning failed: {}", e.error),
            AgentEvent::ProvisionSkipped(e) => format!("provisioning skipped: {}", e.reason),
            AgentEvent::HeartbeatSynced(e) => format!("heartbeat written to {}", e.gateway),
            AgentEvent::Deprovisioned(e) => format!("removed from {}", e.gateway),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }

    fn revision(&self) -> Option<i64> {
        Some(self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReadModel;
    use fleetledger_events::mission_control::{AgentChanges, AgentCreated, AgentProvisionFailed, AgentUpdated};
    use serde_json::json;

    #[test]
    fn a_gateway_keeps_its_token_as_stored_legacy_or_sealed() {
        use fleetledger_events::DomainEvent;
        let created = json!({
            "gateway_id": Uuid::nil(), "org_id": Uuid::nil(), "name": "g", "url": "ws://gw", "token": "old-plain",
            "workspace_root": "/w", "created_at": "2026-01-01T00:00:00Z",
        });
        let v1 = GatewayEvent::decode("gateway.created", 1, &created).unwrap();
        let gateway = Gateway::evolve(None, &v1).unwrap();
        assert!(matches!(&gateway.token, Some(StoredSecret::Legacy(p)) if p.expose_legacy() == "old-plain"));
        let sealed = json!({"kid": "k", "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"});
        let v2 = GatewayEvent::decode(
            "gateway.updated",
            2,
            &json!({"changes": {"token": sealed}, "at": "2026-01-02T00:00:00Z"}),
        )
        .unwrap();
        let gateway = Gateway::evolve(Some(gateway), &v2).unwrap();
        assert!(matches!(&gateway.token, Some(StoredSecret::Sealed(s)) if s.kid == "k"));
        assert_eq!(
            serde_json::to_value(&gateway).unwrap()["token"],
            sealed,
            "the read model stores the sealed form"
        );
    }

    #[test]
    fn updates_apply_exactly_their_fields_and_outcomes_set_the_provision_state() {
        let created = AgentEvent::Created(AgentCreated {
            agent_id: Uuid::nil(),
            org_id: Uuid::nil(),
            gateway_id: Uuid::max(),
            board_id: Some(Uuid::nil()),
            name: "a".into(),
            status: "active".into(),
            heartbeat_config: json!({}),
            identity_profile: None,
            identity_template: None,
            soul_template: None,
            created_at: Utc::now(),
        });
        let changes = AgentChanges {
            soul_template: Some(Some("be kind".into())),
            board_id: Some(None),
            is_gateway_main: Some(true),
            ..Default::default()
        };
        let updated = AgentEvent::Updated(AgentUpdated {
            changes,
            reprovision: true,
            force: false,
            updated_at: Utc::now(),
        });
        let failed = AgentEvent::ProvisionFailed(AgentProvisionFailed {
            error: "boom".into(),
            at: Utc::now(),
        });
        let agent = [created, updated, failed].iter().fold(None, McAgent::evolve).unwrap();
        assert_eq!(agent.soul_template.as_deref(), Some("be kind"));
        assert_eq!((agent.board_id, agent.is_gateway_main, agent.revision), (None, true, 2));
        assert_eq!(agent.session_key(), format!("agent:mc-gateway-{}:main", Uuid::max()));
        assert_eq!(
            (agent.provision_state, agent.last_provision_error.as_deref()),
            (ProvisionState::Failed, Some("boom"))
        );
        assert_eq!(
            agent.workspace_path("/srv/ws/"),
            format!("/srv/ws/workspace-mc-gateway-{}", Uuid::max())
        );
    }
}
