//! Container agent read models: skills, container profiles and agents (Hill90).
//!
//! Creation records a resource's fields; updates carry exactly the changed fields, applied
//! by name. An agent's `revision` counts its recorded updates (creation is 1).

use chrono::{DateTime, Utc};
use fleetledger_events::container::{Changed, ContainerAgentEvent, ContainerProfileEvent, Defined, SkillEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// A model from its recorded fields plus the envelope facts every resource has.
fn defined<M: DeserializeOwned>(e: &Defined, extra: Value) -> Option<M> {
    let mut fields = e.fields.clone();
    fields.insert("id".into(), json!(e.id));
    fields.insert("org_id".into(), json!(e.org_id));
    fields.insert("created_by".into(), json!(e.created_by));
    fields.insert("created_at".into(), json!(e.at));
    fields.insert("updated_at".into(), json!(e.at));
    if let Value::Object(extra) = extra {
        fields.extend(extra);
    }
    serde_json::from_value(Value::Object(fields)).ok()
}

/// `model` with the changed fields written over it, updated at the change.
fn changed<M: Serialize + DeserializeOwned + Clone>(model: M, e: &Changed) -> M {
    let mut changes = e.changes.clone();
    changes.insert("updated_at".into(), json!(e.at));
    crate::with_changes(model, &changes)
}

fn created(e: &Defined) -> String {
    format!("created {}", e.fields.get("name").and_then(Value::as_str).unwrap_or_default())
}

fn updated(e: &Changed) -> String {
    if e.changes.is_empty() {
        "update without changes".into()
    } else {
        crate::changed_fields(e.changes.keys(), false)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub scope: String,
    pub tools_config: Value,
    pub tools: Vec<Value>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl crate::ReadModel for Skill {
    type Event = SkillEvent;
    const KIND: &'static str = fleetledger_events::stream_type::SKILL;

    fn evolve(state: Option<Self>, event: &SkillEvent) -> Option<Self> {
        match (state, event) {
            (_, SkillEvent::Created(e)) => defined(e, Value::Null),
            (Some(s), SkillEvent::Updated(e)) => Some(changed(s, e)),
            (Some(s), SkillEvent::Deleted(e)) => Some(Skill {
                deleted_at: Some(e.at),
                ..s
            }),
            (None, _) => None,
        }
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    fn summary(event: &SkillEvent) -> String {
        match event {
            SkillEvent::Created(e) => created(e),
            SkillEvent::Updated(e) => updated(e),
            SkillEvent::Deleted(_) => "deleted".into(),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerProfile {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub docker_image: String,
    pub default_cpus: String,
    pub default_mem_limit: String,
    pub default_pids_limit: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl crate::ReadModel for ContainerProfile {
    type Event = ContainerProfileEvent;
    const KIND: &'static str = fleetledger_events::stream_type::CONTAINER_PROFILE;

    fn evolve(state: Option<Self>, event: &ContainerProfileEvent) -> Option<Self> {
        match (state, event) {
            (_, ContainerProfileEvent::Created(e)) => defined(e, Value::Null),
            (Some(p), ContainerProfileEvent::Updated(e)) => Some(changed(p, e)),
            (Some(p), ContainerProfileEvent::Deleted(e)) => Some(ContainerProfile {
                deleted_at: Some(e.at),
                ..p
            }),
            (None, _) => None,
        }
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    fn summary(event: &ContainerProfileEvent) -> String {
        match event {
            ContainerProfileEvent::Created(e) => created(e),
            ContainerProfileEvent::Updated(e) => updated(e),
            ContainerProfileEvent::Deleted(_) => "deleted".into(),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerAgent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: String,
    pub name: String,
    pub description: String,
    pub tools_config: Value,
    pub cpus: String,
    pub mem_limit: String,
    pub pids_limit: i64,
    pub soul_md: String,
    pub rules_md: String,
    pub autonomy_level: String,
    pub model_policy_id: Option<Uuid>,
    pub models: Vec<String>,
    pub skill_ids: Vec<Uuid>,
    pub container_profile_id: Option<Uuid>,
    pub status: String,
    pub container_id: Option<String>,
    pub error_message: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub revision: i64,
}

impl crate::ReadModel for ContainerAgent {
    type Event = ContainerAgentEvent;
    const KIND: &'static str = fleetledger_events::stream_type::CONTAINER_AGENT;

    fn evolve(state: Option<Self>, event: &ContainerAgentEvent) -> Option<Self> {
        match (state, event) {
            (_, ContainerAgentEvent::Created(e)) => defined(
                e,
                json!({"status": "stopped", "container_id": null, "error_message": null, "deleted_at": null, "revision": 1}),
            ),
            (Some(a), ContainerAgentEvent::Updated(e)) => {
                let mut a = changed(a, e);
                a.revision += 1;
                Some(a)
            }
            (Some(mut a), ContainerAgentEvent::Started(e)) => {
                a.status = "running".into();
                a.container_id = Some(e.container_id.clone());
                a.error_message = None;
                a.updated_at = e.at;
                Some(a)
            }
            (Some(mut a), ContainerAgentEvent::StartFailed(e)) => {
                a.status = "error".into();
                a.container_id = None;
                a.error_message = Some(e.error.clone());
                a.updated_at = e.at;
                Some(a)
            }
            (Some(mut a), ContainerAgentEvent::Stopped(e)) => {
                a.status = "stopped".into();
                a.container_id = None;
                a.updated_at = e.at;
                Some(a)
            }
            (Some(mut a), ContainerAgentEvent::Deleted(e)) => {
                a.deleted_at = Some(e.at);
                Some(a)
            }
            (None, _) => None,
        }
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    fn summary(event: &ContainerAgentEvent) -> String {
        match event {
            ContainerAgentEvent::Created(e) => created(e),
            ContainerAgentEvent::Updated(e) => updated(e),
            ContainerAgentEvent::Started(e) => format!("started container {} ({})", e.container_id, e.image),
            ContainerAgentEvent::StartFailed(e) => format!("start failed: {}", e.error),
            ContainerAgentEvent::Stopped(e) => match &e.removal_error {
                Some(error) => format!("stopped; the container could not be removed: {error}"),
                None => "stopped; container removed".into(),
            },
            ContainerAgentEvent::Deleted(_) => "deleted".into(),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }

    fn revision(&self) -> Option<i64> {
        Some(self.revision)
    }
}

/// The default fields of a new agent, as Hill90 creates them.
pub fn agent_defaults() -> Map<String, Value> {
    json!({
        "description": "", "cpus": "1.0", "mem_limit": "1g", "pids_limit": 200, "soul_md": "", "rules_md": "",
        "autonomy_level": "act_within_scope", "model_policy_id": null, "models": [], "skill_ids": [],
        "container_profile_id": null,
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}
