//! The organization read model.

use chrono::{DateTime, Utc};
use fleetledger_events::org::OrgEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Org {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub workspaces: Vec<Workspace>,
}

impl crate::ReadModel for Org {
    type Event = OrgEvent;
    const KIND: &'static str = fleetledger_events::stream_type::ORG;
    const LOOKUPS: &'static [&'static str] = &[crate::lookup::ORG_SLUG];

    fn evolve(state: Option<Self>, event: &OrgEvent) -> Option<Self> {
        match (state, event) {
            (_, OrgEvent::Created(e)) => Some(Org {
                id: e.org_id,
                slug: e.slug.clone(),
                name: e.name.clone(),
                created_at: e.created_at,
                workspaces: Vec::new(),
            }),
            (Some(mut org), OrgEvent::WorkspaceCreated(e)) => {
                org.workspaces.push(Workspace {
                    slug: e.slug.clone(),
                    name: e.name.clone(),
                    created_at: e.created_at,
                });
                Some(org)
            }
            (None, OrgEvent::WorkspaceCreated(_)) => None,
        }
    }

    fn summary(event: &OrgEvent) -> String {
        match event {
            OrgEvent::Created(e) => format!("created organization {}", e.slug),
            OrgEvent::WorkspaceCreated(e) => format!("created workspace {}", e.slug),
        }
    }

    fn org_id(&self) -> String {
        self.id.to_string()
    }

    fn lookup_keys(&self) -> Vec<(&'static str, String)> {
        vec![(crate::lookup::ORG_SLUG, self.slug.clone())]
    }
}
