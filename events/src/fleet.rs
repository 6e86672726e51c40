//! Fleet events. Fleets group device profiles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetCreated {
    pub fleet_id: String,
    pub org_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `fleet` stream.
    FleetEvent {
        Created(FleetCreated) = "fleet.created",
    }
}
