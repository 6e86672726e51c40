//! Container agent events (the Hill90 surface): skills, container profiles, and agents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A resource's fields as first recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Defined {
    pub id: Uuid,
    pub org_id: Uuid,
    pub fields: Map<String, Value>,
    pub created_by: String,
    pub at: DateTime<Utc>,
}

/// Exactly the fields an update changed (possibly none: the attempt is still recorded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub changes: Map<String, Value>,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    pub at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `skill` stream.
    SkillEvent {
        Created(Defined) = "skill.created",
        Updated(Changed) = "skill.updated",
        Deleted(Removed) = "skill.deleted",
    }
}

crate::domain_events! {
    /// Events of the `container_profile` stream.
    ContainerProfileEvent {
        Created(Defined) = "container_profile.created",
        Updated(Changed) = "container_profile.updated",
        Deleted(Removed) = "container_profile.deleted",
    }
}

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
        Created(Defined) = "container_agent.created",
        Updated(Changed) = "container_agent.updated",
        Started(ContainerStarted) = "container_agent.started",
        StartFailed(ContainerFailed) = "container_agent.start_failed",
        Stopped(ContainerStopped) = "container_agent.stopped",
        Deleted(Removed) = "container_agent.deleted",
    }
}
