//! The fleet read model.

use chrono::{DateTime, Utc};
use fleetledger_events::fleet::FleetEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    pub id: String,
    pub org_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl crate::ReadModel for Fleet {
    type Event = FleetEvent;
    const KIND: &'static str = fleetledger_events::stream_type::FLEET;

    fn evolve(_state: Option<Self>, event: &FleetEvent) -> Option<Self> {
        match event {
            FleetEvent::Created(e) => Some(Fleet {
                id: e.fleet_id.clone(),
                org_id: e.org_id,
                name: e.name.clone(),
                created_at: e.created_at,
            }),
        }
    }

    fn summary(event: &FleetEvent) -> String {
        match event {
            FleetEvent::Created(e) => format!("created fleet {} ({})", e.fleet_id, e.name),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }
}
