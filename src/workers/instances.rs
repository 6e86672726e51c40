//! The instance worker: lifecycle and live config for OpenClaw instances, in stream order.
//!
//! - `instance.created` / `instance.start_requested`: the sandbox gets the whole stored
//!   config (every override so far), then `instance.running` (or, once every try failed,
//!   `instance.failed`).
//! - `instance.updated` while the instance runs (or is coming up, after the sandbox was
//!   made above): its paths are set in the live sandbox, then `instance.config_applied`
//!   (or `instance.config_apply_failed`), which is what a waiting PATCH answers from.
//! - `instance.terminated`: the sandbox is destroyed, then `instance.sandbox_destroyed` (or
//!   `instance.destroy_failed`).
//!
//! One worker handles all of these so that a sandbox sees a stream's changes in order:
//! the final `openclaw.json` equals the final stored config. A re-drive from the
//! dead-letter table keeps that true: it acts on the instance as it is now (a sandbox is
//! made only while the instance still waits for one), and a live change re-driven writes
//! the whole current config rather than its own paths, which later changes may have
//! replaced.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fleetledger_events::instance::{InstanceAt, InstanceConfigApplied, InstanceEvent, InstanceFailed, InstanceRunning};
use fleetledger_events::{stream_type, DomainEvent, EventEnvelope};
use fleetledger_projections::instance::{self as status, Instance};

use super::drivers::instance_sandbox::InstanceSandbox;
use super::{Worker, WorkerContext, WorkerError};
use crate::store::StoreError;

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
        let failed = WorkerError::Failed;
        let outcome = match decoded {
            // At the trigger the instance is provisioning or starting; a re-drive finds it
            // `error` if nothing made its sandbox since, and anything else means it is moot.
            InstanceEvent::Created(_) | InstanceEvent::StartRequested(_)
                if [status::PROVISIONING, status::STARTING, status::ERROR].contains(&instance.status.as_str()) =>
            {
                let (sandbox_id, gateway_url) = self.sandboxes.describe(id);
                self.sandboxes.provision(id, &instance.openclaw_config).await.map_err(failed)?;
                Some(InstanceEvent::Running(InstanceRunning {
                    sandbox_id,
                    gateway_url,
                    at,
                }))
            }
            InstanceEvent::Updated(update)
                if !update.paths.is_empty()
                    && [status::RUNNING, status::PROVISIONING, status::STARTING].contains(&instance.status.as_str()) =>
            {
                match ctx.redriving() {
                    false => self.sandboxes.apply(id, &update.paths).await,
                    true => self.sandboxes.provision(id, &instance.openclaw_config).await,
                }
                .map_err(failed)?;
                Some(InstanceEvent::ConfigApplied(InstanceConfigApplied {
                    paths: update.paths.iter().map(|p| p.path.clone()).collect(),
                    at,
                }))
            }
            InstanceEvent::Terminated(_) => {
                self.sandboxes.destroy(id).await.map_err(failed)?;
                Some(InstanceEvent::SandboxDestroyed(InstanceAt { at }))
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            ctx.record_model_outcome::<Instance>(event, id, outcome).await?;
        }
        Ok(())
    }

    /// A sandbox that could not be made is `instance.failed` (status `error`); a live
    /// change that could not be applied is `instance.config_apply_failed` (the instance's
    /// `last_apply_error`); a sandbox that could not be destroyed is
    /// `instance.destroy_failed` (the terminated instance's `error_message`).
    async fn record_failure(&self, event: &EventEnvelope, ctx: &WorkerContext, error: &str) -> Result<(), StoreError> {
        let failure = InstanceFailed {
            error: error.to_string(),
            at: Utc::now(),
        };
        let outcome = match InstanceEvent::from_envelope(event) {
            Ok(InstanceEvent::Updated(_)) => InstanceEvent::ConfigApplyFailed(failure),
            Ok(InstanceEvent::Terminated(_)) => InstanceEvent::DestroyFailed(failure),
            _ => InstanceEvent::Failed(failure),
        };
        ctx.record_model_outcome::<Instance>(event, &event.stream_id, outcome).await?;
        Ok(())
    }
}
