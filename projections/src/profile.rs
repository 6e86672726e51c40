//! The device/image profile read model and its revision history.
//!
//! A profile's `latest_revision` is not stored anywhere: it counts the config changes
//! whose `config_hash` differed from the revision before, exactly as Fleeti numbers its
//! revisions. Going back to an older config is a new revision carrying the old hash.

use chrono::{DateTime, Utc};
use fleetledger_events::profile::{ConfigChangeMode, ProfileEvent};
use fleetledger_events::{DecodeError, DomainEvent, EventEnvelope};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub fleet_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub latest_revision: i64,
    pub config_hash: String,
    pub config_schema_version: i64,
    pub config: serde_json::Value,
    pub raw_nix: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl crate::ReadModel for Profile {
    type Event = ProfileEvent;
    const KIND: &'static str = fleetledger_events::stream_type::PROFILE;

    fn evolve(state: Option<Self>, event: &ProfileEvent) -> Option<Self> {
        match (state, event) {
            (_, ProfileEvent::Created(e)) => Some(Profile {
                id: e.profile_id,
                org_id: e.org_id,
                name: e.name.clone(),
                description: e.description.clone(),
                fleet_ids: e.fleet_ids.clone(),
                created_at: e.created_at,
                latest_revision: 1,
                config_hash: e.config_hash.clone(),
                config_schema_version: e.config_schema_version,
                config: e.config.clone(),
                raw_nix: e.raw_nix.clone(),
                deleted_at: None,
            }),
            (Some(mut p), ProfileEvent::ConfigReplaced(e)) => {
                if e.config_hash != p.config_hash {
                    p.latest_revision += 1;
                    p.config_hash = e.config_hash.clone();
                    p.config_schema_version = e.config_schema_version;
                    p.config = e.config.clone();
                    p.raw_nix = e.raw_nix.clone();
                }
                Some(p)
            }
            (Some(mut p), ProfileEvent::Deleted(e)) => {
                p.deleted_at = Some(e.deleted_at);
                Some(p)
            }
            (None, _) => None,
        }
    }

    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    fn summary(event: &ProfileEvent) -> String {
        match event {
            ProfileEvent::Created(e) => format!("created profile {} (config {})", e.name, crate::short_hash(&e.config_hash)),
            ProfileEvent::ConfigReplaced(e) => {
                let mode = match e.mode {
                    ConfigChangeMode::Replace => "replace",
                    ConfigChangeMode::Patch => "patch",
                    ConfigChangeMode::Restore => "restore",
                };
                crate::config_change(
                    format!("{mode} of {}", e.fields.join(", ")),
                    &e.config_hash,
                    e.restored_from_version,
                    e.reason.as_deref(),
                )
            }
            ProfileEvent::Deleted(_) => "deleted the profile".into(),
        }
    }

    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }

    fn revision(&self) -> Option<i64> {
        Some(self.latest_revision)
    }
}

/// One config revision of a profile, as Fleeti lists them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileRevision {
    pub revision: i64,
    pub stream_version: i64,
    pub config_hash: String,
    pub config_schema_version: i64,
    pub config: serde_json::Value,
    pub raw_nix: String,
    pub created_at: DateTime<Utc>,
    pub actor: String,
}

/// Every revision of a profile, oldest first, from its stream.
pub fn revisions(envelopes: &[EventEnvelope]) -> Result<Vec<ProfileRevision>, DecodeError> {
    let mut out: Vec<ProfileRevision> = Vec::new();
    for envelope in envelopes {
        let (hash, schema, config, raw_nix, at) = match ProfileEvent::from_envelope(envelope)? {
            ProfileEvent::Created(e) => (e.config_hash, e.config_schema_version, e.config, e.raw_nix, e.created_at),
            ProfileEvent::ConfigReplaced(e) => (e.config_hash, e.config_schema_version, e.config, e.raw_nix, e.replaced_at),
            ProfileEvent::Deleted(_) => continue,
        };
        if out.last().is_some_and(|last| last.config_hash == hash) {
            continue;
        }
        out.push(ProfileRevision {
            revision: out.len() as i64 + 1,
            stream_version: envelope.stream_version,
            config_hash: hash,
            config_schema_version: schema,
            config,
            raw_nix,
            created_at: at,
            actor: envelope.metadata.actor.principal_id.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReadModel;
    use fleetledger_events::profile::{ConfigChangeMode, ProfileConfigReplaced, ProfileCreated};

    fn created() -> ProfileEvent {
        ProfileEvent::Created(ProfileCreated {
            profile_id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "p".into(),
            description: String::new(),
            fleet_ids: vec![],
            config: serde_json::json!({}),
            config_hash: "h1".into(),
            config_schema_version: 1,
            raw_nix: String::new(),
            created_at: Utc::now(),
        })
    }

    fn replaced(hash: &str) -> ProfileEvent {
        ProfileEvent::ConfigReplaced(ProfileConfigReplaced {
            mode: ConfigChangeMode::Replace,
            fields: vec!["config".into()],
            config: serde_json::json!({"h": hash}),
            config_hash: hash.into(),
            config_schema_version: 1,
            raw_nix: String::new(),
            restored_from_version: None,
            reason: None,
            replaced_at: Utc::now(),
        })
    }

    #[test]
    fn revisions_count_only_hash_changes_and_going_back_is_new() {
        let events = [created(), replaced("h1"), replaced("h2"), replaced("h2"), replaced("h1")];
        let state = events.iter().fold(None, Profile::evolve).unwrap();
        assert_eq!(state.latest_revision, 3);
        assert_eq!(state.config_hash, "h1");
    }
}
