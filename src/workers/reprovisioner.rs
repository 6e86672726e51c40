//! The reprovisioner: on a Mission Control agent's creation, or an update that changes its
//! templates or placement (or is forced), renders the agent's workspace files and delivers
//! them through its gateway's driver, then records `mc_agent.provisioned`,
//! `mc_agent.provision_failed` or `mc_agent.provision_skipped`, caused by the trigger. A
//! heartbeat change is written to the gateway's config (`mc_agent.heartbeat_synced`), and
//! a deleted agent is removed from its gateway (`mc_agent.deprovisioned`).
//!
//! The gateway's URL and a `local` gateway's workspace root go through the boundary here
//! again, at the moment of the side effect: a gateway recorded before a rule changed (or
//! whose name now resolves elsewhere) fails its provisioning, path-free, and nothing is
//! written or sent.
//!
//! It renders the agent as it was at the triggering event (`WorkerContext::model_after`), so a
//! redelivered or late event provisions what was asked for then, and the outcome's
//! deterministic id makes a redelivery record (and provision) nothing twice. A failure
//! (gateway unreachable or refusing, a token that cannot be opened, a template that does
//! not render) is tried again by the runtime, then recorded as `mc_agent.provision_failed`.
//! The wake message carries the delivery's id as its idempotency key, so a delivery made
//! again after a crash wakes the agent once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use fleetledger_events::mission_control::{
    AgentDeprovisioned, AgentEvent, AgentHeartbeatSynced, AgentProvisionFailed, AgentProvisionSkipped, AgentProvisioned, FileHashes,
};
use fleetledger_events::secret::StoredSecret;
use fleetledger_events::{stream_type, DomainEvent, EventEnvelope};
use fleetledger_projections::mission_control::{Board, Gateway, McAgent};
use fleetledger_projections::ReadModel;
use serde_json::{json, Value};

use super::drivers::openclaw::OpenClawDriver;
use super::drivers::workspace::{self, LocalWorkspaceDriver, WorkspaceDriver, WorkspaceTarget};
use super::{Worker, WorkerContext, WorkerError};
use crate::boundary::{Boundary, GatewayUrl};
use crate::secrets::{Keyring, Plaintext, SecretsError};
use crate::store::{EventStore, StoreError};

pub struct Reprovisioner {
    /// Where `local` workspaces may go and which gateways may be reached.
    pub boundary: Arc<Boundary>,
}

/// A stored read model by id.
async fn load<M: ReadModel>(store: &dyn EventStore, id: &str) -> Result<Option<M>, StoreError> {
    let Some(row) = store.load_model(M::KIND, id).await? else {
        return Ok(None);
    };
    serde_json::from_str(&row.doc)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// What provisioning answers once the org's data key is gone (`orgs forget`).
pub const TOKEN_DESTROYED: &str = "the gateway token was destroyed (organization forgotten); set a new token";

/// The gateway's token in plaintext, for the driver that sends it: a sealed token opened
/// with its org's data key, or a legacy one (stored before tokens were sealed) as it is.
/// `Err(message)` is a failure of the delivery (tried again, then recorded: a new token
/// makes a re-drive work); a store error stops the worker until the store is back.
async fn open_token(secrets: &Keyring, gateway: &Gateway, stored: &StoredSecret) -> Result<Result<Plaintext, String>, StoreError> {
    let sealed = match stored {
        StoredSecret::Sealed(sealed) => sealed,
        StoredSecret::Legacy(plain) => return Ok(Ok(Plaintext::from(plain.expose_legacy().to_string()))),
    };
    Ok(match secrets.open(&gateway.org_id.to_string(), sealed).await {
        Ok(token) => Ok(token),
        Err(SecretsError::Destroyed) => Err(TOKEN_DESTROYED.to_string()),
        Err(SecretsError::Store(e)) => return Err(e),
        Err(other) => Err(format!("the gateway token cannot be opened: {other}")),
    })
}

/// The heartbeat policy with the defaults the templates rely on.
fn heartbeat_of(agent: &McAgent) -> Value {
    let text = |k: &str, default: &str| agent.heartbeat_config.get(k).and_then(Value::as_str).unwrap_or(default).to_string();
    json!({ "every": text("every", "10m"), "target": text("target", "last") })
}

/// What templates see.
pub fn template_context(agent: &McAgent, board: Option<&Board>, gateway: &Gateway) -> Value {
    json!({
        "agent": {
            "id": agent.id,
            "name": agent.name,
            "status": agent.status,
            "gateway_agent_id": agent.gateway_agent_id(),
            "is_gateway_main": agent.is_gateway_main,
            "board_id": agent.board_id,
        },
        "board": board.map(|b| json!({
            "id": b.id, "name": b.name, "slug": b.slug, "description": b.description, "objective": b.objective,
        })),
        "gateway": { "id": gateway.id, "name": gateway.name, "url": gateway.url },
        "identity": agent.identity_profile.clone().filter(Value::is_object).unwrap_or_else(|| json!({})),
        "heartbeat": heartbeat_of(agent),
        "session_key": agent.session_key(),
        "workspace_path": agent.workspace_path(&gateway.workspace_root),
    })
}

/// What an `mc_agent` event asks of the gateway.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Task {
    Provision { creating: bool, force: bool },
    SyncHeartbeat,
    Remove,
}

fn task_of(event: &EventEnvelope) -> Option<Task> {
    // Another build's event type is not ours to act on.
    match AgentEvent::from_envelope(event).ok()? {
        AgentEvent::Created(_) => Some(Task::Provision {
            creating: true,
            force: false,
        }),
        AgentEvent::Updated(u) if u.reprovision => Some(Task::Provision {
            creating: false,
            force: u.force,
        }),
        AgentEvent::Updated(u) if u.changes.heartbeat_config.is_some() => Some(Task::SyncHeartbeat),
        AgentEvent::Deleted(_) => Some(Task::Remove),
        _ => None,
    }
}

impl Reprovisioner {
    /// The outcome of `task` for `agent` (as it was at the trigger); `None` when the
    /// gateway has nothing to do.
    async fn perform(
        &self,
        store: &dyn EventStore,
        secrets: &Keyring,
        agent: &McAgent,
        task: Task,
        delivery: &str,
    ) -> Result<Option<AgentEvent>, WorkerError> {
        let at = Utc::now();
        let failed = WorkerError::Failed;
        let Some(gateway) = load::<Gateway>(store, &agent.gateway_id.to_string()).await? else {
            return Err(failed(format!("gateway {} not found", agent.gateway_id)));
        };
        let url = gateway.url.trim().to_string();
        let gateway_url = self.boundary.gateway_url(&url);
        // Only the driver that sends the token gets it opened (below).
        let sends_token = matches!(gateway_url, Ok(GatewayUrl::Remote(_)));
        let driver: Box<dyn WorkspaceDriver> = match gateway_url {
            Ok(GatewayUrl::Unset) => {
                return Ok(matches!(task, Task::Provision { .. }).then(|| {
                    AgentEvent::ProvisionSkipped(AgentProvisionSkipped {
                        reason: "the gateway has no URL".into(),
                        at,
                    })
                }))
            }
            Ok(GatewayUrl::Local) => Box::new(LocalWorkspaceDriver {
                boundary: self.boundary.clone(),
            }),
            Ok(GatewayUrl::Remote(_)) => Box::new(OpenClawDriver {
                creating: matches!(task, Task::Provision { creating: true, .. }),
                boundary: self.boundary.clone(),
            }),
            Err(refused) => return Err(failed(format!("the gateway's URL is not allowed on this server: {refused}"))),
        };
        // The token is opened now from the stored read model (never from a bus message),
        // with the org's data key read afresh.
        let token = match gateway.token.as_ref().filter(|_| sends_token) {
            Some(stored) => match open_token(secrets, &gateway, stored).await? {
                Ok(token) => Some(token),
                Err(error) => return Err(failed(error)),
            },
            None => None,
        };
        let target = WorkspaceTarget {
            gateway_url: url.clone(),
            token,
            gateway_agent_id: agent.gateway_agent_id(),
            session_key: agent.session_key(),
            org_id: gateway.org_id,
            workspace_root: gateway.workspace_root.clone(),
            workspace_path: agent.workspace_path(&gateway.workspace_root),
            agent_name: agent.name.clone(),
            heartbeat: agent.heartbeat_config.clone(),
            delivery: delivery.to_string(),
        };
        let force = match task {
            Task::Provision { force, .. } => force,
            Task::SyncHeartbeat => {
                return match driver.sync_heartbeat(&target).await {
                    Ok(true) => Ok(Some(AgentEvent::HeartbeatSynced(AgentHeartbeatSynced { gateway: url, at }))),
                    Ok(false) => Ok(None),
                    Err(error) => Err(failed(error)),
                }
            }
            Task::Remove => {
                return match driver.remove(&target).await {
                    Ok(true) => Ok(Some(AgentEvent::Deprovisioned(AgentDeprovisioned { gateway: url, at }))),
                    Ok(false) => Ok(None),
                    Err(error) => Err(failed(error)),
                }
            }
        };
        let board = match agent.board_id {
            Some(id) => load::<Board>(store, &id.to_string()).await?,
            None => None,
        };
        let context = template_context(agent, board.as_ref(), &gateway);
        let files = match workspace::render(&context, agent.soul_template.as_deref(), agent.identity_template.as_deref(), force) {
            Ok(files) => files,
            Err(error) => return Err(failed(format!("template {error}"))),
        };
        match driver.deliver(&target, files).await {
            Ok(delivered) => {
                let hashes = FileHashes(delivered.written.iter().map(|f| (f.name.clone(), f.sha256())).collect());
                Ok(Some(AgentEvent::Provisioned(AgentProvisioned {
                    files: delivered.written.iter().map(|f| f.name.clone()).collect(),
                    hashes,
                    gateway: url,
                    unsupported: delivered.unsupported,
                    at,
                })))
            }
            Err(error) => Err(failed(error)),
        }
    }
}

#[async_trait]
impl Worker for Reprovisioner {
    fn name(&self) -> &str {
        "reprovisioner"
    }

    fn stream_types(&self) -> Vec<&'static str> {
        vec![stream_type::MC_AGENT]
    }

    async fn handle(&self, event: &EventEnvelope, ctx: &WorkerContext) -> Result<(), WorkerError> {
        let Some(task) = task_of(event) else {
            return Ok(());
        };
        let agent = ctx.model_after::<McAgent>(event).await?;
        // A deleted agent is provisioned no more; its removal still reaches the gateway.
        let Some(agent) = agent.filter(|a| a.deleted_at.is_none() || task == Task::Remove) else {
            return Ok(());
        };
        let delivery = ctx.delivery_id(event).to_string();
        if let Some(outcome) = self.perform(ctx.store.as_ref(), &ctx.secrets, &agent, task, &delivery).await? {
            ctx.record_model_outcome::<McAgent>(event, &event.stream_id, outcome).await?;
        }
        Ok(())
    }

    /// Every task's failure is `mc_agent.provision_failed`, which the agent shows as its
    /// `provision_state` and `last_provision_error`.
    async fn record_failure(&self, event: &EventEnvelope, ctx: &WorkerContext, error: &str) -> Result<(), StoreError> {
        let failed = AgentEvent::ProvisionFailed(AgentProvisionFailed {
            error: error.to_string(),
            at: Utc::now(),
        });
        ctx.record_model_outcome::<McAgent>(event, &event.stream_id, failed).await?;
        Ok(())
    }
}
