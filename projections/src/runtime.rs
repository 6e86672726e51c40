//! The sandbox runtime read model.
//!
//! `config_version` counts config changes whose digest differed from the version before,
//! so replacing a config with an equal one records the request but keeps the version.
//! A sandbox keeps the digest it was materialized from: when that differs from the
//! runtime's current digest, the sandbox is stale until it is reset and started again.

use chrono::{DateTime, Utc};
use fleetledger_events::runtime::RuntimeEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeStatus {
    Idle,
    Running,
    Paused,
}

impl RuntimeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuntimeStatus::Idle => "idle",
            RuntimeStatus::Running => "running",
            RuntimeStatus::Paused => "paused",
        }
    }
}

/// The sandbox currently backing a runtime.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub provider: String,
    pub sandbox_url: Option<String>,
    pub config_digest: String,
    pub config_version: i64,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runtime {
    pub id: Uuid,
    pub org_id: Uuid,
    pub workspace: String,
    pub key: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub project: Option<String>,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub config: serde_json::Value,
    pub config_digest: String,
    pub config_version: i64,
    pub status: RuntimeStatus,
    pub sandbox: Option<Sandbox>,
}

impl Runtime {
    /// Whether the running sandbox predates the current config.
    pub fn materialization_stale(&self) -> bool {
        self.sandbox.as_ref().is_some_and(|s| s.config_digest != self.config_digest)
    }
}

impl crate::ReadModel for Runtime {
    type Event = RuntimeEvent;
    const KIND: &'static str = fleetledger_events::stream_type::RUNTIME;

    fn evolve(state: Option<Self>, event: &RuntimeEvent) -> Option<Self> {
        match (state, event) {
            (_, RuntimeEvent::Created(e)) => Some(Runtime {
                id: e.runtime_id,
                org_id: e.org_id,
                workspace: e.workspace.clone(),
                key: e.key.clone(),
                name: e.name.clone(),
                description: e.description.clone(),
                project: e.project.clone(),
                owner: e.owner.clone(),
                created_at: e.created_at,
                updated_at: e.created_at,
                config: crate::in_key_order(&e.config),
                config_digest: e.config_digest.clone(),
                config_version: 1,
                status: RuntimeStatus::Idle,
                sandbox: None,
            }),
            (Some(mut r), RuntimeEvent::ConfigReplaced(e)) => {
                if e.config_digest != r.config_digest {
                    r.config_version += 1;
                    r.config_digest = e.config_digest.clone();
                    r.config = crate::in_key_order(&e.config);
                }
                r.updated_at = e.replaced_at;
                Some(r)
            }
            (Some(mut r), RuntimeEvent::Started(e)) => {
                r.status = RuntimeStatus::Running;
                r.sandbox = Some(Sandbox {
                    id: e.sandbox_id.clone(),
                    provider: e.provider.clone(),
                    sandbox_url: e.sandbox_url.clone(),
                    config_digest: e.config_digest.clone(),
                    config_version: e.config_version,
                    started_at: e.started_at,
                    expires_at: e.expires_at,
                });
                r.updated_at = e.started_at;
                Some(r)
            }
            (Some(mut r), RuntimeEvent::Paused(e)) => {
                r.status = RuntimeStatus::Paused;
                r.updated_at = e.paused_at;
                Some(r)
            }
            (Some(mut r), RuntimeEvent::Resumed(e)) => {
                r.status = RuntimeStatus::Running;
                r.updated_at = e.resumed_at;
                Some(r)
            }
            (Some(mut r), RuntimeEvent::Reset(e)) => {
                r.status = RuntimeStatus::Idle;
                r.sandbox = None;
                r.updated_at = e.reset_at;
                Some(r)
            }
            (Some(mut r), RuntimeEvent::KeptAlive(e)) => {
                if let Some(s) = r.sandbox.as_mut() {
                    s.expires_at = e.expires_at;
                }
                r.updated_at = e.kept_alive_at;
                Some(r)
            }
            (None, _) => None,
        }
    }

    fn summary(event: &RuntimeEvent) -> String {
        match event {
            RuntimeEvent::Created(e) => format!("created runtime {} (config {})", e.key, crate::short_hash(&e.config_digest)),
            RuntimeEvent::ConfigReplaced(e) => crate::config_change(
                "replaced the config".into(),
                &e.config_digest,
                e.restored_from_version,
                e.reason.as_deref(),
            ),
            RuntimeEvent::Started(e) => format!("started sandbox {}", e.sandbox_id),
            RuntimeEvent::Paused(_) => "paused the sandbox".into(),
            RuntimeEvent::Resumed(_) => "resumed the sandbox".into(),
            RuntimeEvent::Reset(_) => "reset the runtime (sandbox killed)".into(),
            RuntimeEvent::KeptAlive(e) => format!(
                "kept the sandbox alive until {}",
                e.expires_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }

    fn revision(&self) -> Option<i64> {
        Some(self.config_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReadModel;
    use fleetledger_events::runtime::{RuntimeConfigReplaced, RuntimeCreated, RuntimeReset, RuntimeStarted};

    fn created() -> RuntimeEvent {
        RuntimeEvent::Created(RuntimeCreated {
            runtime_id: Uuid::nil(),
            org_id: Uuid::nil(),
            workspace: "w".into(),
            key: "k".into(),
            name: None,
            description: None,
            project: None,
            owner: "o".into(),
            config: serde_json::json!({}),
            config_digest: "d1".into(),
            created_at: Utc::now(),
        })
    }

    fn replaced(digest: &str) -> RuntimeEvent {
        RuntimeEvent::ConfigReplaced(RuntimeConfigReplaced {
            config: serde_json::json!({ "d": digest }),
            config_digest: digest.into(),
            restored_from_version: None,
            reason: None,
            replaced_at: Utc::now(),
        })
    }

    fn started(digest: &str, version: i64) -> RuntimeEvent {
        RuntimeEvent::Started(RuntimeStarted {
            sandbox_id: "s".into(),
            provider: "local".into(),
            sandbox_url: None,
            config_digest: digest.into(),
            config_version: version,
            started_at: Utc::now(),
            expires_at: Utc::now(),
        })
    }

    #[test]
    fn equal_configs_keep_the_version_and_a_changed_config_makes_the_sandbox_stale() {
        let events = [created(), replaced("d1"), started("d1", 1), replaced("d2"), replaced("d2")];
        let state = events.iter().fold(None, Runtime::evolve).unwrap();
        assert_eq!(state.config_version, 2);
        assert_eq!(state.status, RuntimeStatus::Running);
        assert!(state.materialization_stale());
        let reset = RuntimeEvent::Reset(RuntimeReset {
            sandbox_id: Some("s".into()),
            reset_at: Utc::now(),
        });
        let state = Runtime::evolve(Some(state), &reset).unwrap();
        assert_eq!(state.status, RuntimeStatus::Idle);
        assert!(!state.materialization_stale());
    }
}
