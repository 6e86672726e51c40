//! Fleets, which group profiles.

use chrono::{DateTime, Utc};
use fleetledger_events::fleet::{FleetCreated, FleetEvent};
use fleetledger_projections::fleet::Fleet;
use uuid::Uuid;

use super::DomainError;

const FLEET_NAMESPACE: Uuid = Uuid::from_u128(0x666c_6565_7400_4000_8000_666c_6565_746c);

/// A fleet's stream id: its client-chosen id is unique within its org.
pub fn fleet_stream_id(org_id: Uuid, fleet_id: &str) -> String {
    Uuid::new_v5(&FLEET_NAMESPACE, format!("{org_id}/{fleet_id}").as_bytes()).to_string()
}

#[derive(Clone)]
pub struct CreateFleet {
    pub org_id: Uuid,
    pub fleet_id: String,
    pub name: String,
    pub now: DateTime<Utc>,
}

pub fn create_fleet(state: Option<&Fleet>, cmd: CreateFleet) -> Result<Vec<FleetEvent>, DomainError> {
    let fleet_id = cmd.fleet_id.trim();
    let name = cmd.name.trim();
    if fleet_id.is_empty() {
        return Err(DomainError::invalid("Fleet id is required"));
    }
    if name.is_empty() {
        return Err(DomainError::invalid("Name is required"));
    }
    if state.is_some() {
        return Err(DomainError::AlreadyExists("Fleet already exists".into()));
    }
    Ok(vec![FleetEvent::Created(FleetCreated {
        fleet_id: fleet_id.to_string(),
        org_id: cmd.org_id,
        name: name.to_string(),
        created_at: cmd.now,
    })])
}
