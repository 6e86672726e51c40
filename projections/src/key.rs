//! The API key read model.

use chrono::{DateTime, Utc};
use fleetledger_events::key::{KeyEvent, KeyScope};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub id: Uuid,
    pub org_id: Uuid,
    pub principal_id: String,
    pub name: String,
    pub role: String,
    pub scopes: Vec<KeyScope>,
    pub expires_at: Option<DateTime<Utc>>,
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Key {
    /// Whether the key may authenticate at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

impl crate::ReadModel for Key {
    type Event = KeyEvent;
    const KIND: &'static str = fleetledger_events::stream_type::KEY;
    const LOOKUPS: &'static [&'static str] = &[crate::lookup::KEY_HASH];
    const PRIVATE_FIELDS: &'static [&'static str] = &["key_hash"];

    fn evolve(state: Option<Self>, event: &KeyEvent) -> Option<Self> {
        match (state, event) {
            (_, KeyEvent::Issued(e)) => Some(Key {
                id: e.key_id,
                org_id: e.org_id,
                principal_id: e.principal_id.clone(),
                name: e.name.clone(),
                role: e.role.clone(),
                scopes: e.scopes.clone(),
                expires_at: e.expires_at,
                key_hash: e.key_hash.clone(),
                key_prefix: e.key_prefix.clone(),
                created_at: e.created_at,
                revoked_at: None,
            }),
            (Some(mut key), KeyEvent::Revoked(e)) => {
                key.revoked_at.get_or_insert(e.revoked_at);
                Some(key)
            }
            (None, KeyEvent::Revoked(_)) => None,
        }
    }

    fn summary(event: &KeyEvent) -> String {
        match event {
            KeyEvent::Issued(e) => format!("issued {} key {}", e.role, e.name),
            KeyEvent::Revoked(_) => "revoked the key".into(),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }

    fn lookup_keys(&self) -> Vec<(&'static str, String)> {
        vec![(crate::lookup::KEY_HASH, self.key_hash.clone())]
    }
}
