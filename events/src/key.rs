//! API key events. Issuing and revoking keys are events so that access changes are audited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A permission on a set of resources, for keys narrower than their role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyScope {
    pub resource_id: String,
    pub permissions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyIssued {
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub principal_id: String,
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub scopes: Vec<KeyScope>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Hex sha256 of the bearer token; the token itself is never stored.
    pub key_hash: String,
    /// The first characters of the token, enough to recognise it in a list.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRevoked {
    pub revoked_at: DateTime<Utc>,
}

crate::domain_events! {
    /// Events of the `key` stream.
    KeyEvent {
        // The hash stays in the log (rebuild and authentication need it) but never leaves
        // the process: it is a verifier of the bearer token.
        Issued(KeyIssued) = "key.issued" internal ["/key_hash"],
        Revoked(KeyRevoked) = "key.revoked",
    }
}
