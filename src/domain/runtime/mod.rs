//! Sandbox runtimes: ensure-style creation, durable config replacement, and the sandbox
//! lifecycle (`idle` → `running` ⇄ `paused`, reset back to `idle`).
//!
//! A running sandbox is never changed by a config change; it keeps the digest it was
//! materialized from and the read model reports it stale until reset + start.

pub mod config;
pub mod egress;

use chrono::{DateTime, Duration, Utc};
use fleetledger_events::runtime::{
    RuntimeConfigReplaced, RuntimeCreated, RuntimeEvent, RuntimeKeptAlive, RuntimePaused, RuntimeReset, RuntimeResumed, RuntimeStarted,
};
use fleetledger_projections::runtime::{Runtime, RuntimeStatus};
use serde_json::Value;
use uuid::Uuid;

use super::DomainError;

/// How long a sandbox lives when its config names no timeout.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
const MAX_KEY_CHARS: usize = 128;

#[derive(Clone)]
pub struct CreateRuntime {
    pub runtime_id: Uuid,
    pub org_id: Uuid,
    pub workspace: String,
    /// The requested key; `None` takes the project's key or a generated one.
    pub key: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub project: Option<String>,
    pub owner: String,
    /// The normalized config, and whether the client sent one.
    pub config: Value,
    pub config_given: bool,
    pub now: DateTime<Utc>,
}

/// The key a new runtime gets: the one asked for, else its project's, else a fresh one.
pub fn runtime_key(requested: Option<&str>, project: Option<&str>, runtime_id: Uuid) -> Result<String, DomainError> {
    let key = match requested.or(project) {
        Some(k) => k.trim().to_string(),
        None => {
            let hex = runtime_id.simple().to_string();
            return Ok(format!("runtime-{}", &hex[hex.len() - 12..]));
        }
    };
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(DomainError::invalid(format!("key must be 1 to {MAX_KEY_CHARS} characters")));
    }
    if key.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(DomainError::invalid("key must not contain whitespace or '/'"));
    }
    if Uuid::parse_str(&key).is_ok() {
        return Err(DomainError::invalid("key must not be a UUID (runtimes are addressed by id or key)"));
    }
    Ok(key)
}

/// A runtime's id follows from its key, so two concurrent creations of one key meet on
/// one stream and the log lets only one of them through.
pub fn runtime_id_for_key(org_id: Uuid, workspace: &str, key: &str) -> Uuid {
    Uuid::new_v5(&org_id, format!("runtime/{workspace}/{key}").as_bytes())
}

/// What ensuring a runtime with a key comes to.
#[derive(Debug, PartialEq)]
pub enum Ensured {
    Created(Vec<RuntimeEvent>),
    /// The runtime already exists with this config (or none was asked for).
    Existing,
}

/// Ensure semantics: a new key creates the runtime; an existing key answers the existing
/// runtime when the asked-for durable config equals its config, and is a conflict
/// otherwise.
pub fn ensure_runtime(existing: Option<&Runtime>, cmd: CreateRuntime, key: String) -> Result<Ensured, DomainError> {
    let digest = config::digest(&cmd.config);
    if let Some(runtime) = existing {
        if !cmd.config_given || runtime.config_digest == digest {
            return Ok(Ensured::Existing);
        }
        return Err(DomainError::AlreadyExists(format!(
            "Runtime '{}' already exists with a different config",
            runtime.key
        )));
    }
    Ok(Ensured::Created(vec![RuntimeEvent::Created(RuntimeCreated {
        runtime_id: cmd.runtime_id,
        org_id: cmd.org_id,
        workspace: cmd.workspace,
        key,
        name: cmd.name,
        description: cmd.description,
        project: cmd.project,
        owner: cmd.owner,
        config: cmd.config,
        config_digest: digest,
        created_at: cmd.now,
    })]))
}

/// Replaces the durable config (already normalized). An equal config is still recorded.
pub fn replace_config(
    state: Option<&Runtime>,
    config: Value,
    restored_from_version: Option<i64>,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Vec<RuntimeEvent>, DomainError> {
    state.ok_or(DomainError::NotFound)?;
    Ok(vec![RuntimeEvent::ConfigReplaced(RuntimeConfigReplaced {
        config_digest: config::digest(&config),
        config,
        restored_from_version,
        reason,
        replaced_at: now,
    })])
}

/// What `start` has to do.
#[derive(Debug, PartialEq, Eq)]
pub enum StartAction {
    /// A sandbox is running: answer it as it is, never rebuild.
    AlreadyRunning,
    /// A paused sandbox: resume it.
    Resume,
    /// No sandbox: materialize the current config into a new one.
    Materialize,
}

pub fn start_action(runtime: &Runtime) -> StartAction {
    match runtime.status {
        RuntimeStatus::Running => StartAction::AlreadyRunning,
        RuntimeStatus::Paused => StartAction::Resume,
        RuntimeStatus::Idle => StartAction::Materialize,
    }
}

/// A sandbox a driver has just materialized.
pub struct MaterializedSandbox {
    pub sandbox_id: String,
    pub provider: String,
    pub sandbox_url: Option<String>,
}

/// The configured sandbox timeout of a config.
pub fn timeout_seconds(config: &Value) -> i64 {
    config["sandbox"]["timeout_seconds"].as_i64().unwrap_or(DEFAULT_TIMEOUT_SECONDS)
}

pub fn started(state: Option<&Runtime>, sandbox: MaterializedSandbox, now: DateTime<Utc>) -> Result<Vec<RuntimeEvent>, DomainError> {
    let runtime = state.ok_or(DomainError::NotFound)?;
    if runtime.status != RuntimeStatus::Idle {
        return Err(DomainError::Conflict("Runtime already has a sandbox".into()));
    }
    Ok(vec![RuntimeEvent::Started(RuntimeStarted {
        sandbox_id: sandbox.sandbox_id,
        provider: sandbox.provider,
        sandbox_url: sandbox.sandbox_url,
        config_digest: runtime.config_digest.clone(),
        config_version: runtime.config_version,
        started_at: now,
        expires_at: now + Duration::seconds(timeout_seconds(&runtime.config)),
    })])
}

fn with_sandbox<'r>(state: Option<&'r Runtime>, action: &str) -> Result<&'r Runtime, DomainError> {
    let runtime = state.ok_or(DomainError::NotFound)?;
    if runtime.sandbox.is_none() {
        return Err(DomainError::Conflict(format!("Runtime has no sandbox to {action}; start it first")));
    }
    Ok(runtime)
}

/// Pausing a paused runtime changes nothing.
pub fn pause(state: Option<&Runtime>, now: DateTime<Utc>) -> Result<Vec<RuntimeEvent>, DomainError> {
    let runtime = with_sandbox(state, "pause")?;
    Ok(match runtime.status {
        RuntimeStatus::Paused => vec![],
        _ => vec![RuntimeEvent::Paused(RuntimePaused { paused_at: now })],
    })
}

/// Resuming a running runtime changes nothing.
pub fn resume(state: Option<&Runtime>, now: DateTime<Utc>) -> Result<Vec<RuntimeEvent>, DomainError> {
    let runtime = with_sandbox(state, "resume")?;
    Ok(match runtime.status {
        RuntimeStatus::Paused => vec![RuntimeEvent::Resumed(RuntimeResumed { resumed_at: now })],
        _ => vec![],
    })
}

/// Kills the sandbox; an idle runtime stays as it is.
pub fn reset(state: Option<&Runtime>, now: DateTime<Utc>) -> Result<Vec<RuntimeEvent>, DomainError> {
    let runtime = state.ok_or(DomainError::NotFound)?;
    Ok(match &runtime.sandbox {
        None => vec![],
        Some(s) => vec![RuntimeEvent::Reset(RuntimeReset {
            sandbox_id: Some(s.id.clone()),
            reset_at: now,
        })],
    })
}

/// Pushes the sandbox's expiry back by `extend_seconds` from now or its current expiry,
/// whichever is later, never past `max_seconds` from now.
pub fn keepalive(
    state: Option<&Runtime>,
    extend_seconds: i64,
    max_seconds: i64,
    now: DateTime<Utc>,
) -> Result<Vec<RuntimeEvent>, DomainError> {
    let runtime = with_sandbox(state, "keep alive")?;
    let current = runtime.sandbox.as_ref().map(|s| s.expires_at).unwrap_or(now);
    let expires_at = (current.max(now) + Duration::seconds(extend_seconds)).min(now + Duration::seconds(max_seconds));
    Ok(vec![RuntimeEvent::KeptAlive(RuntimeKeptAlive {
        extend_seconds,
        expires_at,
        kept_alive_at: now,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;
    use fleetledger_projections::ReadModel;
    use serde_json::json;

    fn limits() -> config::ConfigLimits {
        config::ConfigLimits {
            max_timeout_seconds: 86_400,
            provider: "docker".into(),
        }
    }

    fn create(config: Value, given: bool) -> CreateRuntime {
        CreateRuntime {
            runtime_id: Uuid::now_v7(),
            org_id: Uuid::nil(),
            workspace: "main".into(),
            key: Some("agent".into()),
            name: None,
            description: None,
            project: None,
            owner: "alice".into(),
            config,
            config_given: given,
            now: Utc::now(),
        }
    }

    fn runtime() -> Runtime {
        let cmd = create(config::default_config(&limits()), false);
        match ensure_runtime(None, cmd, "agent".into()).unwrap() {
            Ensured::Created(events) => events.iter().fold(None, Runtime::evolve).unwrap(),
            Ensured::Existing => unreachable!(),
        }
    }

    fn apply(r: Runtime, events: Vec<RuntimeEvent>) -> Runtime {
        events.iter().fold(Some(r), Runtime::evolve).unwrap()
    }

    fn sandbox() -> MaterializedSandbox {
        MaterializedSandbox {
            sandbox_id: "sb".into(),
            provider: "local".into(),
            sandbox_url: None,
        }
    }

    #[test]
    fn ensuring_an_existing_key_is_idempotent_only_for_an_equal_config() {
        let r = runtime();
        let same = create(config::default_config(&limits()), true);
        assert_eq!(ensure_runtime(Some(&r), same, "agent".into()), Ok(Ensured::Existing));
        let omitted = create(json!(null), false);
        assert_eq!(ensure_runtime(Some(&r), omitted, "agent".into()), Ok(Ensured::Existing));
        let other = config::normalize(&json!({"resources": {"cpu_cores": 4}}), &[], &limits()).unwrap();
        given(Some(r))
            .when(|s| ensure_runtime(s, create(other, true), "agent".into()).map(|_| vec![()]))
            .then_err(DomainError::AlreadyExists(
                "Runtime 'agent' already exists with a different config".into(),
            ));
    }

    #[test]
    fn keys_default_to_the_project_and_never_look_like_ids() {
        let id = Uuid::now_v7();
        assert_eq!(runtime_key(None, Some("proj"), id).unwrap(), "proj");
        assert!(runtime_key(None, None, id).unwrap().starts_with("runtime-"));
        assert!(runtime_key(Some(&Uuid::nil().to_string()), None, id).is_err());
        assert!(runtime_key(Some("a b"), None, id).is_err());
    }

    #[test]
    fn lifecycle_needs_a_sandbox_and_start_never_rebuilds() {
        let r = runtime();
        given(Some(r.clone()))
            .when(|s| pause(s, Utc::now()))
            .then_err(DomainError::Conflict("Runtime has no sandbox to pause; start it first".into()));
        given(Some(r.clone()))
            .when(|s| resume(s, Utc::now()))
            .then_err(DomainError::Conflict("Runtime has no sandbox to resume; start it first".into()));
        assert_eq!(start_action(&r), StartAction::Materialize);
        let running = apply(r.clone(), started(Some(&r), sandbox(), Utc::now()).unwrap());
        assert_eq!(start_action(&running), StartAction::AlreadyRunning);
        given(Some(running.clone()))
            .when(|s| started(s, sandbox(), Utc::now()))
            .then_err(DomainError::Conflict("Runtime already has a sandbox".into()));
        let paused = apply(running.clone(), pause(Some(&running), Utc::now()).unwrap());
        assert_eq!(paused.status, RuntimeStatus::Paused);
        assert_eq!(start_action(&paused), StartAction::Resume);
        assert!(pause(Some(&paused), Utc::now()).unwrap().is_empty());
        let idle = apply(paused.clone(), reset(Some(&paused), Utc::now()).unwrap());
        assert_eq!((idle.status, idle.sandbox.is_none()), (RuntimeStatus::Idle, true));
        assert!(reset(Some(&idle), Utc::now()).unwrap().is_empty());
    }

    #[test]
    fn keepalive_extends_from_the_later_of_now_and_expiry_up_to_the_limit() {
        let now = Utc::now();
        let r = apply(runtime(), started(Some(&runtime()), sandbox(), now).unwrap());
        let expiry = r.sandbox.as_ref().unwrap().expires_at;
        let extended = apply(r.clone(), keepalive(Some(&r), 300, 86_400, now).unwrap());
        assert_eq!(extended.sandbox.unwrap().expires_at, expiry + Duration::seconds(300));
        let capped = apply(r.clone(), keepalive(Some(&r), 300, 600, now).unwrap());
        assert_eq!(capped.sandbox.unwrap().expires_at, now + Duration::seconds(600));
    }
}
