//! Container agent read models: skills, container profiles and agents (Hill90).
//!
//! Creation records a resource's fields; updates carry exactly the changed fields, each
//! applied here by name in code, so a field renamed in a read model fails to compile
//! instead of silently dropping old changes. An agent's `revision` counts its recorded
//! updates (creation is 1).

use chrono::{DateTime, Utc};
use fleetledger_events::container::{
    ContainerAgentDefined, ContainerAgentEvent, ContainerProfileDefined, ContainerProfileEvent, SkillDefined, SkillEvent, Tool,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{set, set_json};

fn updated(names: Vec<&'static str>) -> String {
    if names.is_empty() {
        "update without changes".into()
    } else {
        crate::changed_fields(names, false)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skill {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub scope: String,
    pub tools_config: Value,
    pub tools: Vec<Tool>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Skill {
    fn defined(e: &SkillDefined) -> Skill {
        let f = &e.fields;
        Skill {
            id: e.id,
            org_id: e.org_id,
            name: f.name.clone(),
            scope: f.scope.clone(),
            tools_config: crate::in_key_order(&f.tools_config),
            tools: f.tools.clone(),
            created_by: e.created_by.clone(),
            created_at: e.at,
            updated_at: e.at,
            deleted_at: None,
        }
    }
}

impl crate::ReadModel for Skill {
    type Event = SkillEvent;
    const KIND: &'static str = fleetledger_events::stream_type::SKILL;

    fn evolve(state: Option<Self>, event: &SkillEvent) -> Option<Self> {
        match (state, event) {
            (_, SkillEvent::Created(e)) => Some(Skill::defined(e)),
            (Some(mut s), SkillEvent::Updated(e)) => {
                let c = &e.changes;
                set(&mut s.name, &c.name);
                set(&mut s.scope, &c.scope);
                set_json(&mut s.tools_config, &c.tools_config);
                set(&mut s.tools, &c.tools);
                s.updated_at = e.at;
                Some(s)
            }
            (Some(s), SkillEvent::Deleted(e)) => Some(Skill {
                deleted_at: Some(e.at),
                ..s
            }),
            (None, _) => None,
        }
    }

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn summary(event: &SkillEvent) -> String {
        match event {
            SkillEvent::Created(e) => format!("created {}", e.fields.name),
            SkillEvent::Updated(e) => updated(e.changes.names()),
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

impl ContainerProfile {
    fn defined(e: &ContainerProfileDefined) -> ContainerProfile {
        let f = &e.fields;
        ContainerProfile {
            id: e.id,
            org_id: e.org_id,
            name: f.name.clone(),
            description: f.description.clone(),
            docker_image: f.docker_image.clone(),
            default_cpus: f.default_cpus.clone(),
            default_mem_limit: f.default_mem_limit.clone(),
            default_pids_limit: f.default_pids_limit,
            created_by: e.created_by.clone(),
            created_at: e.at,
            updated_at: e.at,
            deleted_at: None,
        }
    }
}

impl crate::ReadModel for ContainerProfile {
    type Event = ContainerProfileEvent;
    const KIND: &'static str = fleetledger_events::stream_type::CONTAINER_PROFILE;

    fn evolve(state: Option<Self>, event: &ContainerProfileEvent) -> Option<Self> {
        match (state, event) {
            (_, ContainerProfileEvent::Created(e)) => Some(ContainerProfile::defined(e)),
            (Some(mut p), ContainerProfileEvent::Updated(e)) => {
                let c = &e.changes;
                set(&mut p.name, &c.name);
                set(&mut p.description, &c.description);
                set(&mut p.docker_image, &c.docker_image);
                set(&mut p.default_cpus, &c.default_cpus);
                set(&mut p.default_mem_limit, &c.default_mem_limit);
                set(&mut p.default_pids_limit, &c.default_pids_limit);
                p.updated_at = e.at;
                Some(p)
            }
            (Some(p), ContainerProfileEvent::Deleted(e)) => Some(ContainerProfile {
                deleted_at: Some(e.at),
                ..p
            }),
            (None, _) => None,
        }
    }

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn summary(event: &ContainerProfileEvent) -> String {
        match event {
            ContainerProfileEvent::Created(e) => format!("created {}", e.fields.name),
            ContainerProfileEvent::Updated(e) => updated(e.changes.names()),
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

impl ContainerAgent {
    fn defined(e: &ContainerAgentDefined) -> ContainerAgent {
        let f = &e.fields;
        ContainerAgent {
            id: e.id,
            org_id: e.org_id,
            agent_id: f.agent_id.clone(),
            name: f.name.clone(),
            description: f.description.clone(),
            tools_config: crate::in_key_order(&f.tools_config),
            cpus: f.cpus.clone(),
            mem_limit: f.mem_limit.clone(),
            pids_limit: f.pids_limit,
            soul_md: f.soul_md.clone(),
            rules_md: f.rules_md.clone(),
            autonomy_level: f.autonomy_level.clone(),
            model_policy_id: f.model_policy_id,
            models: f.models.clone(),
            skill_ids: f.skill_ids.clone(),
            container_profile_id: f.container_profile_id,
            status: "stopped".into(),
            container_id: None,
            error_message: None,
            created_by: e.created_by.clone(),
            created_at: e.at,
            updated_at: e.at,
            deleted_at: None,
            revision: 1,
        }
    }
}

impl crate::ReadModel for ContainerAgent {
    type Event = ContainerAgentEvent;
    const KIND: &'static str = fleetledger_events::stream_type::CONTAINER_AGENT;

    fn evolve(state: Option<Self>, event: &ContainerAgentEvent) -> Option<Self> {
        match (state, event) {
            (_, ContainerAgentEvent::Created(e)) => Some(ContainerAgent::defined(e)),
            (Some(mut a), ContainerAgentEvent::Updated(e)) => {
                let c = &e.changes;
                set(&mut a.name, &c.name);
                set(&mut a.description, &c.description);
                set_json(&mut a.tools_config, &c.tools_config);
                set(&mut a.cpus, &c.cpus);
                set(&mut a.mem_limit, &c.mem_limit);
                set(&mut a.pids_limit, &c.pids_limit);
                set(&mut a.soul_md, &c.soul_md);
                set(&mut a.rules_md, &c.rules_md);
                set(&mut a.autonomy_level, &c.autonomy_level);
                set(&mut a.model_policy_id, &c.model_policy_id);
                set(&mut a.models, &c.models);
                set(&mut a.skill_ids, &c.skill_ids);
                set(&mut a.container_profile_id, &c.container_profile_id);
                a.updated_at = e.at;
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

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn summary(event: &ContainerAgentEvent) -> String {
        match event {
            ContainerAgentEvent::Created(e) => format!("created {}", e.fields.name),
            ContainerAgentEvent::Updated(e) => updated(e.changes.names()),
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
