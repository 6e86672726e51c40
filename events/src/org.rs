//! Organization events: tenancy roots and their workspaces.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgCreated {
    pub org_id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceCreated {
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `org` stream.
    OrgEvent {
        Created(OrgCreated) = "org.created",
        WorkspaceCreated(WorkspaceCreated) = "org.workspace_created",
    }
}
