//! Container agent events (the Hill90 surface): skills, container profiles, and agents.
//!
//! Creation records all of a resource's fields (`fields`), an update exactly the fields it
//! changed (`changes`), each typed per stream type. Their JSON is what the log has held
//! since these events were first written: field names as keys, in the order declared
//! here (the order the first writers inserted them), an absent change unchanged and a
//! `null` change cleared (see [`crate::change`]). Unknown fields are refused rather than
//! ignored, so a field renamed here cannot silently drop old changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::change::changed_names;

/// A resource's fields as first recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Defined<F> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub fields: F,
    pub created_by: String,
    pub at: DateTime<Utc>,
}

/// Exactly the fields an update changed (possibly none: the attempt is still recorded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changed<C> {
    pub changes: C,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    pub at: DateTime<Utc>,
}

// ---- skills ---------------------------------------------------------------------------------

/// A tool a skill brings, as the skill's writer normalized it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub install_method: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillFields {
    pub name: String,
    pub scope: String,
    /// Free-form: the agent container's tools policy.
    pub tools_config: Value,
    pub tools: Vec<Tool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::change::present")]
    pub tools_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
}

impl SkillChanges {
    /// The changed fields' names, in stored order.
    pub fn names(&self) -> Vec<&'static str> {
        changed_names!(self; name, scope, tools_config, tools)
    }
}

pub type SkillDefined = Defined<SkillFields>;
pub type SkillChanged = Changed<SkillChanges>;

crate::domain_events! {
    /// Events of the `skill` stream.
    SkillEvent {
        Created(SkillDefined) = "skill.created",
        Updated(SkillChanged) = "skill.updated",
        Deleted(Removed) = "skill.deleted",
    }
}

// ---- container profiles ---------------------------------------------------------------------

/// A profile's fields, in the order creation has always written them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerProfileFields {
    pub name: String,
    pub docker_image: String,
    pub description: String,
    pub default_cpus: String,
    pub default_mem_limit: String,
    pub default_pids_limit: i64,
}

/// A profile's changed fields, in the order updates have always written them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerProfileChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cpus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mem_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pids_limit: Option<i64>,
}

impl ContainerProfileChanges {
    /// The changed fields' names, in stored order.
    pub fn names(&self) -> Vec<&'static str> {
        changed_names!(self; name, description, docker_image, default_cpus, default_mem_limit, default_pids_limit)
    }
}

pub type ContainerProfileDefined = Defined<ContainerProfileFields>;
pub type ContainerProfileChanged = Changed<ContainerProfileChanges>;

crate::domain_events! {
    /// Events of the `container_profile` stream.
    ContainerProfileEvent {
        Created(ContainerProfileDefined) = "container_profile.created",
        Updated(ContainerProfileChanged) = "container_profile.updated",
        Deleted(Removed) = "container_profile.deleted",
    }
}

// ---- agents -----------------------------------------------------------------------------------

/// An agent's settable fields, in the order creation has always written them (Hill90's
/// defaults first, then the agent's identity and its tools config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerAgentFields {
    pub description: String,
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
    pub agent_id: String,
    pub name: String,
    /// Free-form: the agent container's tools policy.
    pub tools_config: Value,
}

/// An agent's changed fields, in the order updates have always written them. `agent_id`
/// never changes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerAgentChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::change::present")]
    pub tools_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soul_md: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_md: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonomy_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub model_policy_id: Option<Option<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill_ids: Option<Vec<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::change::nullable")]
    pub container_profile_id: Option<Option<Uuid>>,
}

impl ContainerAgentChanges {
    /// The changed fields' names, in stored order.
    pub fn names(&self) -> Vec<&'static str> {
        changed_names!(self; name, description, tools_config, cpus, mem_limit, pids_limit, soul_md, rules_md,
                       autonomy_level, model_policy_id, models, skill_ids, container_profile_id)
    }
}

pub type ContainerAgentDefined = Defined<ContainerAgentFields>;
pub type ContainerAgentChanged = Changed<ContainerAgentChanges>;

/// The container driver ran the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerStarted {
    pub container_id: String,
    pub image: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerFailed {
    pub error: String,
    pub at: DateTime<Utc>,
}

/// The agent is stopped; `removal_error` says why its container may linger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerStopped {
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removal_error: Option<String>,
    pub at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `container_agent` stream.
    ContainerAgentEvent {
        Created(ContainerAgentDefined) = "container_agent.created",
        Updated(ContainerAgentChanged) = "container_agent.updated",
        Started(ContainerStarted) = "container_agent.started",
        StartFailed(ContainerFailed) = "container_agent.start_failed",
        Stopped(ContainerStopped) = "container_agent.stopped",
        Deleted(Removed) = "container_agent.deleted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `names()` lists what the JSON holds, in the same order.
    fn names_follow_the_json<C: Serialize>(changes: &C, names: Vec<&'static str>) {
        let Value::Object(json) = serde_json::to_value(changes).unwrap() else {
            panic!("changes are an object")
        };
        assert_eq!(json.keys().map(String::as_str).collect::<Vec<_>>(), names);
    }

    #[test]
    fn every_change_is_named_in_stored_order() {
        let skill = SkillChanges {
            name: Some("s".into()),
            scope: Some("container_local".into()),
            tools_config: Some(Value::Null),
            tools: Some(vec![]),
        };
        names_follow_the_json(&skill, skill.names());
        let profile = ContainerProfileChanges {
            name: Some("p".into()),
            description: Some(String::new()),
            docker_image: Some("i".into()),
            default_cpus: Some("1".into()),
            default_mem_limit: Some("1g".into()),
            default_pids_limit: Some(1),
        };
        names_follow_the_json(&profile, profile.names());
        let agent = ContainerAgentChanges {
            name: Some("a".into()),
            description: Some(String::new()),
            tools_config: Some(json!({})),
            cpus: Some("1".into()),
            mem_limit: Some("1g".into()),
            pids_limit: Some(1),
            soul_md: Some(String::new()),
            rules_md: Some(String::new()),
            autonomy_level: Some("full_autonomy".into()),
            model_policy_id: Some(None),
            models: Some(vec![]),
            skill_ids: Some(vec![]),
            container_profile_id: Some(Some(Uuid::nil())),
        };
        names_follow_the_json(&agent, agent.names());
        names_follow_the_json(&ContainerAgentChanges::default(), vec![]);
    }

    #[test]
    fn an_agent_change_reads_null_as_cleared_and_absent_as_unchanged() {
        let stored = json!({"changes": {"model_policy_id": null, "models": []}, "at": "2026-01-01T00:00:00Z"});
        let changed: ContainerAgentChanged = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(
            changed.changes,
            ContainerAgentChanges {
                model_policy_id: Some(None),
                models: Some(vec![]),
                ..Default::default()
            }
        );
        assert_eq!(serde_json::to_value(&changed).unwrap(), stored);
    }
}
