//! The OpenClaw instance read model. `openclaw_config` is the deep merge of every
//! override: each `instance.updated` applies its paths (`config_paths`; version 1 events
//! carried the merged result instead); the status follows the lifecycle.

use chrono::{DateTime, Utc};
use fleetledger_events::instance::InstanceEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub const PROVISIONING: &str = "provisioning";
pub const STARTING: &str = "starting";
pub const RUNNING: &str = "running";
pub const STOPPED: &str = "stopped";
pub const ERROR: &str = "error";
pub const TERMINATED: &str = "terminated";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub status: String,
    pub model_provider: String,
    pub openclaw_version: String,
    pub openclaw_config: Value,
    pub region: Option<String>,
    pub sandbox_id: Option<String>,
    pub gateway_url: Option<String>,
    pub error_message: Option<String>,
    /// Why the last live config change did not reach the sandbox, until one does.
    pub last_apply_error: Option<String>,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl crate::ReadModel for Instance {
    type Event = InstanceEvent;
    const KIND: &'static str = fleetledger_events::stream_type::INSTANCE;

    fn evolve(state: Option<Self>, event: &InstanceEvent) -> Option<Self> {
        let set_status = |mut i: Instance, status: &str, at: DateTime<Utc>| {
            i.status = status.to_string();
            i.updated_at = at;
            Some(i)
        };
        match (state, event) {
            (_, InstanceEvent::Created(e)) => Some(Instance {
                id: e.instance_id,
                org_id: e.org_id,
                name: e.name.clone(),
                status: PROVISIONING.into(),
                model_provider: e.model_provider.clone(),
                openclaw_version: e.openclaw_version.clone(),
                openclaw_config: e.openclaw_config.clone(),
                region: e.region.clone(),
                sandbox_id: None,
                gateway_url: None,
                error_message: None,
                last_apply_error: None,
                revision: 1,
                created_at: e.created_at,
                updated_at: e.created_at,
            }),
            (Some(mut i), InstanceEvent::Updated(e)) => {
                if let Some(name) = &e.name {
                    i.name = name.clone();
                }
                match &e.openclaw_config {
                    Some(merged) => i.openclaw_config = merged.clone(),
                    // Paths are checked before they are recorded, so they all apply.
                    None => {
                        let _ = crate::config_paths::apply_paths(&mut i.openclaw_config, &e.paths);
                    }
                }
                i.revision += 1;
                i.updated_at = e.updated_at;
                Some(i)
            }
            (Some(mut i), InstanceEvent::Running(e)) => {
                i.sandbox_id = Some(e.sandbox_id.clone());
                i.gateway_url = Some(e.gateway_url.clone());
                i.error_message = None;
                i.last_apply_error = None;
                set_status(i, RUNNING, e.at)
            }
            (Some(mut i), InstanceEvent::Failed(e)) => {
                i.error_message = Some(e.error.clone());
                set_status(i, ERROR, e.at)
            }
            (Some(i), InstanceEvent::StartRequested(e)) => set_status(i, STARTING, e.at),
            (Some(i), InstanceEvent::Stopped(e)) => set_status(i, STOPPED, e.at),
            (Some(i), InstanceEvent::Terminated(e)) => set_status(i, TERMINATED, e.at),
            (Some(mut i), InstanceEvent::ConfigApplied(_)) => {
                i.last_apply_error = None;
                Some(i)
            }
            (Some(mut i), InstanceEvent::ConfigApplyFailed(e)) => {
                i.last_apply_error = Some(e.error.clone());
                Some(i)
            }
            // The instance stays terminated either way; a sandbox left behind shows as its
            // error until a re-drive destroys it.
            (Some(mut i), InstanceEvent::SandboxDestroyed(_)) => {
                i.error_message = None;
                Some(i)
            }
            (Some(mut i), InstanceEvent::DestroyFailed(e)) => {
                i.error_message = Some(format!("sandbox not destroyed: {}", e.error));
                Some(i)
            }
            (None, _) => None,
        }
    }

    /// A terminated instance's sandbox is destroyed; it was terminated when last updated.
    fn deleted_at(&self) -> Option<DateTime<Utc>> {
        (self.status == TERMINATED).then_some(self.updated_at)
    }

    fn summary(event: &InstanceEvent) -> String {
        match event {
            InstanceEvent::Created(e) => format!("created instance {}", e.name),
            InstanceEvent::Updated(e) => {
                let paths: Vec<&str> = e.paths.iter().map(|p| p.path.as_str()).collect();
                match &e.name {
                    Some(name) if paths.is_empty() => format!("renamed to {name}"),
                    Some(name) => format!("renamed to {name}; set {}", paths.join(", ")),
                    None => format!("set {}", paths.join(", ")),
                }
            }
            InstanceEvent::Running(e) => format!("running in sandbox {}", e.sandbox_id),
            InstanceEvent::Failed(e) => format!("failed: {}", e.error),
            InstanceEvent::StartRequested(_) => "start requested".into(),
            InstanceEvent::Stopped(_) => "stopped".into(),
            InstanceEvent::Terminated(_) => "terminated (sandbox destroyed)".into(),
            InstanceEvent::ConfigApplied(_) => "config applied to the live sandbox".into(),
            InstanceEvent::ConfigApplyFailed(e) => format!("config not applied: {}", e.error),
            InstanceEvent::SandboxDestroyed(_) => "sandbox destroyed".into(),
            InstanceEvent::DestroyFailed(e) => format!("sandbox not destroyed: {}", e.error),
        }
    }

    fn org_id(&self) -> String {
        self.org_id.to_string()
    }

    fn revision(&self) -> Option<i64> {
        Some(self.revision)
    }
}
