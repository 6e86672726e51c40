//! API keys: issuing and revoking.

use chrono::{DateTime, Utc};
use fleetledger_events::key::{KeyEvent, KeyIssued, KeyRevoked, KeyScope};
use fleetledger_projections::key::Key;
use uuid::Uuid;

use super::DomainError;

pub const ROLES: [&str; 3] = ["admin", "member", "viewer"];
pub const PERMISSIONS: [&str; 5] = ["read", "interact", "configure", "files", "channels"];

#[derive(Clone)]
pub struct IssueKey {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub principal_id: String,
    pub name: String,
    pub role: String,
    pub scopes: Vec<KeyScope>,
    pub expires_at: Option<DateTime<Utc>>,
    pub key_hash: String,
    pub key_prefix: String,
    pub now: DateTime<Utc>,
}

pub fn issue_key(state: Option<&Key>, cmd: IssueKey) -> Result<Vec<KeyEvent>, DomainError> {
    if state.is_some() {
        return Err(DomainError::AlreadyExists("key already exists".into()));
    }
    if !ROLES.contains(&cmd.role.as_str()) {
        return Err(DomainError::invalid(format!("role must be one of {}", ROLES.join(", "))));
    }
    for scope in &cmd.scopes {
        if let Some(bad) = scope.permissions.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
            return Err(DomainError::invalid(format!(
                "unknown permission {bad}; use {}",
                PERMISSIONS.join(", ")
            )));
        }
    }
    if cmd.expires_at.is_some_and(|t| t <= cmd.now) {
        return Err(DomainError::invalid("expires_at must be in the future"));
    }
    Ok(vec![KeyEvent::Issued(KeyIssued {
        key_id: cmd.key_id,
        org_id: cmd.org_id,
        principal_id: cmd.principal_id,
        name: cmd.name,
        role: cmd.role,
        scopes: cmd.scopes,
        expires_at: cmd.expires_at,
        key_hash: cmd.key_hash,
        key_prefix: cmd.key_prefix,
        created_at: cmd.now,
    })])
}

/// Revoking an already revoked key changes nothing and records nothing.
pub fn revoke_key(state: Option<&Key>, now: DateTime<Utc>) -> Result<Vec<KeyEvent>, DomainError> {
    match state {
        None => Err(DomainError::NotFound),
        Some(key) if key.revoked_at.is_some() => Ok(vec![]),
        Some(_) => Ok(vec![KeyEvent::Revoked(KeyRevoked { revoked_at: now })]),
    }
}
