//! The instance worker: lifecycle and live config for OpenClaw instances, in stream order.
//!
//! - `instance.created` / `instance.start_requested`: the sandbox gets the whole stored
//!   config (every override so far), then `instance.running` (or `instance.failed`).
//! - `instance.updated` while the instance runs (or is coming up, after the sandbox was
//!   made above): its paths are set in the live sandbox, then `instance.config_applied`
//!   (or `instance.config_apply_failed`), which is what a waiting PATCH answers from.
//! - `instance.terminated`: the sandbox is destroyed.
//!
//! One worker handles all of these so that a sandbox sees a stream's changes in order:
//! the final `openclaw.json` equals the final stored config.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fleetledger_events::instance::{InstanceConfigApplied, InstanceEvent, InstanceFailed, InstanceRunning};
use fleetledger_events::{stream_type, DomainEvent, EventEnvelope};
use fleetledger_projections::instance::{self as status, Instance};

use super::drivers::instance_sandbox::InstanceSandbox;
use super::{Worker, WorkerContext, WorkerError};

pub struct InstanceWorker {
    pub sandboxes: Arc<dyn InstanceSandbox>,
}

#[async_trait]
impl Worker for InstanceWorker {
    fn name(&self) -> &str {
        "instance-lifecycle"
    }

    fn stream_types(&self) -> Vec<&'static str> {
        vec![stream_type::INSTANCE]
    }

    async fn handle(&self, event: &EventEnvelope, ctx: &WorkerContext) -> Result<(), WorkerError> {
        let decoded = InstanceEvent::from_envelope(event).map_err(|e| WorkerError::Failed(e.to_string()))?;
        let Some(instance) = ctx.model_after::<Instance>(event).await? else {
            return Ok(());
        };
        let id = event.stream_id.as_str();
        let at = Utc::now();
        let outcome = match decoded {
            InstanceEvent::Created(_) | InstanceEvent::StartRequested(_) => {
                let (sandbox_id, gateway_url) = self.sandboxes.describe(id);
                Some(match self.sandboxes.provision(id, &instance.openclaw_config).await {
                    Ok(()) => InstanceEvent::Running(InstanceRunning {
                        sandbox_id,
                        gateway_url,
                        at,
                    }),
                    Err(error) => InstanceEvent::Failed(InstanceFailed { error, at }),
                })
            }
            InstanceEvent::Updated(update)
                if !update.paths.is_empty()
                    && [status::RUNNING, status::PROVISIONING, status::STARTING].contains(&instance.status.as_str()) =>
            {
                Some(match self.sandboxes.apply(id, &update.paths).await {
                    Ok(()) => InstanceEvent::ConfigApplied(InstanceConfigApplied {
                        paths: update.paths.iter().map(|p| p.path.clone()).collect(),
                        at,
                    }),
                    Err(error) => InstanceEvent::ConfigApplyFailed(InstanceFailed { error, at }),
                })
            }
            InstanceEvent::Terminated(_) => {
                if let Err(error) = self.sandboxes.destroy(id).await {
                    tracing::warn!(instance = id, %error, "could not destroy a terminated instance's sandbox");
                }
                None
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            ctx.record_model_outcome::<Instance>(event, id, outcome).await?;
        }
        Ok(())
    }
}
