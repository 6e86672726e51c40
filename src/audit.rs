//! Audit and replay, generic over stream types: a stream's timeline (the state after each
//! event, its revision number and a one-line summary), folding to a version or a time,
//! and rebuilding every read model from the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use fleetledger_events::{stream_type, DecodeError, DomainEvent, EventEnvelope};
use fleetledger_projections::container::{ContainerAgent, ContainerProfile, Skill};
use fleetledger_projections::instance::Instance;
use fleetledger_projections::mission_control::{Board, Gateway, McAgent};
use fleetledger_projections::{fleet::Fleet, key::Key, org::Org, profile::Profile, runtime::Runtime, ReadModel};
use serde_json::Value;

use crate::store::{EventStore, FoldEvent, ReadModelWrite, Snapshot, StoreError, SNAPSHOT_EVERY};

/// The read-model rows a model is stored as: itself, and its lookup rows. The inline
/// projection and `rebuild` both write exactly these, so their bytes agree.
pub fn model_rows<M: ReadModel>(id: &str, version: i64, model: &M) -> Result<Vec<ReadModelWrite>, StoreError> {
    let org_id = model.org_id();
    let mut rows = vec![ReadModelWrite {
        kind: M::KIND.to_string(),
        id: id.to_string(),
        org_id: org_id.clone(),
        version,
        doc: serde_json::to_string(model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    }];
    for (kind, key) in model.lookup_keys() {
        rows.push(ReadModelWrite {
            kind: kind.to_string(),
            id: key,
            org_id: org_id.clone(),
            version,
            doc: id.to_string(),
        });
    }
    Ok(rows)
}

/// The projections `rebuild` knows, and the `read_models` kinds each owns.
pub const PROJECTIONS: [(&str, &[&str]); 12] = [
    (stream_type::ORG, &[stream_type::ORG, fleetledger_projections::lookup::ORG_SLUG]),
    (stream_type::KEY, &[stream_type::KEY, fleetledger_projections::lookup::KEY_HASH]),
    (stream_type::FLEET, &[stream_type::FLEET]),
    (stream_type::PROFILE, &[stream_type::PROFILE]),
    (stream_type::RUNTIME, &[stream_type::RUNTIME]),
    (stream_type::GATEWAY, &[stream_type::GATEWAY]),
    (stream_type::BOARD, &[stream_type::BOARD]),
    (stream_type::MC_AGENT, &[stream_type::MC_AGENT]),
    (stream_type::INSTANCE, &[stream_type::INSTANCE]),
    (stream_type::SKILL, &[stream_type::SKILL]),
    (stream_type::CONTAINER_PROFILE, &[stream_type::CONTAINER_PROFILE]),
    (stream_type::CONTAINER_AGENT, &[stream_type::CONTAINER_AGENT]),
];

/// One event of a stream with the revision and summary it leads to.
pub struct Step {
    pub envelope: EventEnvelope,
    pub revision: Option<i64>,
    pub summary: String,
}

/// The state a fold starts from: a snapshot's doc, or nothing.
fn start<M: ReadModel>(snapshot: Option<&str>) -> Result<Option<M>, DecodeError> {
    snapshot
        .map(|doc| {
            serde_json::from_str(doc).map_err(|source| DecodeError::Malformed {
                event_type: "snapshot".into(),
                source,
            })
        })
        .transpose()
}

fn step_states<M: ReadModel>(snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Vec<Step>, DecodeError> {
    let mut state: Option<M> = start(snapshot)?;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        state = M::evolve(state, &M::Event::from_envelope(e)?);
        out.push(Step {
            envelope: e.clone(),
            revision: state.as_ref().and_then(ReadModel::revision),
            summary: summary(e),
        });
    }
    Ok(out)
}

/// The timeline of a stream of a known type, from a snapshot (or the start) through
/// `events`; `None` for an unknown type.
pub fn timeline(stream_type: &str, snapshot: Option<&str>, events: &[EventEnvelope]) -> Option<Result<Vec<Step>, DecodeError>> {
    Some(match stream_type {
        stream_type::ORG => step_states::<Org>(snapshot, events),
        stream_type::KEY => step_states::<Key>(snapshot, events),
        stream_type::FLEET => step_states::<Fleet>(snapshot, events),
        stream_type::PROFILE => step_states::<Profile>(snapshot, events),
        stream_type::RUNTIME => step_states::<Runtime>(snapshot, events),
        stream_type::GATEWAY => step_states::<Gateway>(snapshot, events),
        stream_type::BOARD => step_states::<Board>(snapshot, events),
        stream_type::MC_AGENT => step_states::<McAgent>(snapshot, events),
        stream_type::INSTANCE => step_states::<Instance>(snapshot, events),
        stream_type::CONTAINER_AGENT => step_states::<ContainerAgent>(snapshot, events),
        stream_type::CONTAINER_PROFILE => step_states::<ContainerProfile>(snapshot, events),
        stream_type::SKILL => step_states::<Skill>(snapshot, events),
        _ => return None,
    })
}

fn state_of<M: ReadModel>(snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Option<Value>, DecodeError> {
    let mut state: Option<M> = start(snapshot)?;
    for e in events {
        state = M::evolve(state, &M::Event::from_envelope(e)?);
    }
    Ok(state.and_then(|m| serde_json::to_value(m).ok()))
}

/// A stream's read model (JSON) after `events`, starting from a snapshot (or nothing);
/// `None` for an unknown type.
pub fn state_after(stream_type: &str, snapshot: Option<&str>, events: &[EventEnvelope]) -> Option<Result<Option<Value>, DecodeError>> {
    Some(match stream_type {
        stream_type::ORG => state_of::<Org>(snapshot, events),
        stream_type::KEY => state_of::<Key>(snapshot, events),
        stream_type::FLEET => state_of::<Fleet>(snapshot, events),
        stream_type::PROFILE => state_of::<Profile>(snapshot, events),
        stream_type::RUNTIME => state_of::<Runtime>(snapshot, events),
        stream_type::GATEWAY => state_of::<Gateway>(snapshot, events),
        stream_type::BOARD => state_of::<Board>(snapshot, events),
        stream_type::MC_AGENT => state_of::<McAgent>(snapshot, events),
        stream_type::INSTANCE => state_of::<Instance>(snapshot, events),
        stream_type::CONTAINER_AGENT => state_of::<ContainerAgent>(snapshot, events),
        stream_type::CONTAINER_PROFILE => state_of::<ContainerProfile>(snapshot, events),
        stream_type::SKILL => state_of::<Skill>(snapshot, events),
        _ => return None,
    })
}

/// The last version recorded at or before `at`, 0 when none.
pub fn version_at(events: &[EventEnvelope], at: DateTime<Utc>) -> i64 {
    events
        .iter()
        .take_while(|e| e.recorded_at <= at)
        .last()
        .map(|e| e.stream_version)
        .unwrap_or(0)
}

fn text(data: &Value, key: &str) -> String {
    data.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// "what happened (config <digest>): reason", or the restore it was.
fn config_change(d: &Value, what: String, digest_field: &str) -> String {
    let mut s = match d.get("restored_from_version").and_then(Value::as_i64) {
        Some(v) => format!("restored the config of version {v}"),
        None => what,
    };
    s.push_str(&format!(" (config {})", &text(d, digest_field).get(..12).unwrap_or_default()));
    if let Some(reason) = d.get("reason").and_then(Value::as_str) {
        s.push_str(&format!(": {reason}"));
    }
    s
}

/// A one-line, human description of an event.
pub fn summary(e: &EventEnvelope) -> String {
    let d = &e.data;
    match e.event_type.as_str() {
        "org.created" => format!("created organization {}", text(d, "slug")),
        "org.workspace_created" => format!("created workspace {}", text(d, "slug")),
        "key.issued" => format!("issued {} key {}", text(d, "role"), text(d, "name")),
        "key.revoked" => "revoked the key".into(),
        "fleet.created" => format!("created fleet {} ({})", text(d, "fleet_id"), text(d, "name")),
        "profile.created" => format!(
            "created profile {} (config {})",
            text(d, "name"),
            &text(d, "config_hash").get(..12).unwrap_or_default()
        ),
        "profile.config_replaced" => {
            let fields: Vec<String> = d
                .get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            config_change(d, format!("{} of {}", text(d, "mode"), fields.join(", ")), "config_hash")
        }
        "profile.deleted" => "deleted the profile".into(),
        "runtime.created" => format!(
            "created runtime {} (config {})",
            text(d, "key"),
            &text(d, "config_digest").get(..12).unwrap_or_default()
        ),
        "runtime.config_replaced" => config_change(d, "replaced the config".into(), "config_digest"),
        "runtime.started" => format!("started sandbox {}", text(d, "sandbox_id")),
        "runtime.paused" => "paused the sandbox".into(),
        "runtime.resumed" => "resumed the sandbox".into(),
        "runtime.reset" => "reset the runtime (sandbox killed)".into(),
        "gateway.created" => format!("created gateway {}", text(d, "name")),
        "board.created" => format!("created board {}", text(d, "name")),
        "mc_agent.created" => format!("created agent {}", text(d, "name")),
        "gateway.updated" | "board.updated" | "mc_agent.updated" => {
            let fields: Vec<&String> = d
                .get("changes")
                .and_then(Value::as_object)
                .map(|c| c.keys().collect())
                .unwrap_or_default();
            let mut s = format!("changed {}", fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "));
            if d.get("reprovision").and_then(Value::as_bool) == Some(true) {
                s.push_str(" (reprovision)");
            }
            s
        }
        "gateway.deleted" | "board.deleted" | "mc_agent.deleted" => "deleted".into(),
        "mc_agent.heartbeat" => "heartbeat".into(),
        "mc_agent.provisioned" => format!(
            "provisioned {} files via {}",
            d.get("files").and_then(Value::as_array).map_or(0, Vec::len),
            text(d, "gateway")
        ),
        "mc_agent.provision_failed" => format!("provisioning failed: {}", text(d, "error")),
        "mc_agent.heartbeat_synced" => format!("heartbeat written to {}", text(d, "gateway")),
        "mc_agent.deprovisioned" => format!("removed from {}", text(d, "gateway")),
        "mc_agent.provision_skipped" => format!("provisioning skipped: {}", text(d, "reason")),
        "instance.created" => format!("created instance {}", text(d, "name")),
        "instance.updated" => {
            let paths: Vec<String> = d
                .get("paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("path").and_then(Value::as_str).map(str::to_string))
                .collect();
            match d.get("name").and_then(Value::as_str) {
                Some(name) if paths.is_empty() => format!("renamed to {name}"),
                Some(name) => format!("renamed to {name}; set {}", paths.join(", ")),
                None => format!("set {}", paths.join(", ")),
            }
        }
        "instance.running" => format!("running in sandbox {}", text(d, "sandbox_id")),
        "instance.failed" => format!("failed: {}", text(d, "error")),
        "instance.start_requested" => "start requested".into(),
        "instance.stopped" => "stopped".into(),
        "instance.terminated" => "terminated (sandbox destroyed)".into(),
        "instance.config_applied" => "config applied to the live sandbox".into(),
        "instance.config_apply_failed" => format!("config not applied: {}", text(d, "error")),
        "skill.created" | "container_profile.created" | "container_agent.created" => {
            format!("created {}", d["fields"].get("name").and_then(Value::as_str).unwrap_or_default())
        }
        "skill.updated" | "container_profile.updated" | "container_agent.updated" => {
            let fields: Vec<&String> = d
                .get("changes")
                .and_then(Value::as_object)
                .map(|c| c.keys().collect())
                .unwrap_or_default();
            if fields.is_empty() {
                "update without changes".into()
            } else {
                format!("changed {}", fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "))
            }
        }
        "skill.deleted" | "container_profile.deleted" | "container_agent.deleted" => "deleted".into(),
        "container_agent.started" => format!("started container {} ({})", text(d, "container_id"), text(d, "image")),
        "container_agent.start_failed" => format!("start failed: {}", text(d, "error")),
        "container_agent.stopped" => match d.get("removal_error").and_then(Value::as_str) {
            Some(e) => format!("stopped; the container could not be removed: {e}"),
            None => "stopped; container removed".into(),
        },
        "runtime.kept_alive" => format!("kept the sandbox alive until {}", text(d, "expires_at")),
        other => other.to_string(),
    }
}

/// Events per page when rebuilding.
const PAGE: i64 = 5000;

/// Every read model folded from the log in memory, for `rebuild`.
#[derive(Default)]
pub struct Rebuilder {
    orgs: HashMap<String, (i64, Org)>,
    keys: HashMap<String, (i64, Key)>,
    fleets: HashMap<String, (i64, Fleet)>,
    profiles: HashMap<String, (i64, Profile)>,
    runtimes: HashMap<String, (i64, Runtime)>,
    gateways: HashMap<String, (i64, Gateway)>,
    boards: HashMap<String, (i64, Board)>,
    agents: HashMap<String, (i64, McAgent)>,
    instances: HashMap<String, (i64, Instance)>,
    container_agents: HashMap<String, (i64, ContainerAgent)>,
    container_profiles: HashMap<String, (i64, ContainerProfile)>,
    skills: HashMap<String, (i64, Skill)>,
    snapshots: Vec<Snapshot>,
    /// The last position folded in.
    pub through: i64,
}

fn apply_to<M: ReadModel>(map: &mut HashMap<String, (i64, M)>, snapshots: &mut Vec<Snapshot>, e: &FoldEvent) -> Result<(), DecodeError> {
    let event = M::Event::decode_json(&e.event_type, e.schema_version, e.data.get())?;
    let before = map.remove(&e.stream_id).map(|(_, m)| m);
    if let Some(after) = M::evolve(before, &event) {
        if e.stream_version % SNAPSHOT_EVERY == 0 {
            if let Ok(doc) = serde_json::to_string(&after) {
                snapshots.push(Snapshot {
                    stream_id: e.stream_id.clone(),
                    version: e.stream_version,
                    kind: M::KIND.to_string(),
                    doc,
                });
            }
        }
        map.insert(e.stream_id.clone(), (e.stream_version, after));
    }
    Ok(())
}

fn rows_of<M: ReadModel>(map: &HashMap<String, (i64, M)>, out: &mut Vec<ReadModelWrite>) -> Result<(), StoreError> {
    for (id, (version, model)) in map {
        out.extend(model_rows(id, *version, model)?);
    }
    Ok(())
}

impl Rebuilder {
    pub fn apply(&mut self, e: &FoldEvent) -> Result<(), DecodeError> {
        match e.stream_type.as_str() {
            stream_type::ORG => apply_to(&mut self.orgs, &mut self.snapshots, e)?,
            stream_type::KEY => apply_to(&mut self.keys, &mut self.snapshots, e)?,
            stream_type::FLEET => apply_to(&mut self.fleets, &mut self.snapshots, e)?,
            stream_type::PROFILE => apply_to(&mut self.profiles, &mut self.snapshots, e)?,
            stream_type::RUNTIME => apply_to(&mut self.runtimes, &mut self.snapshots, e)?,
            stream_type::GATEWAY => apply_to(&mut self.gateways, &mut self.snapshots, e)?,
            stream_type::BOARD => apply_to(&mut self.boards, &mut self.snapshots, e)?,
            stream_type::MC_AGENT => apply_to(&mut self.agents, &mut self.snapshots, e)?,
            stream_type::INSTANCE => apply_to(&mut self.instances, &mut self.snapshots, e)?,
            stream_type::CONTAINER_AGENT => apply_to(&mut self.container_agents, &mut self.snapshots, e)?,
            stream_type::CONTAINER_PROFILE => apply_to(&mut self.container_profiles, &mut self.snapshots, e)?,
            stream_type::SKILL => apply_to(&mut self.skills, &mut self.snapshots, e)?,
            _ => {}
        }
        self.through = e.global_position;
        Ok(())
    }

    /// The rows of the chosen projections.
    pub fn rows(&self, projections: &[&str]) -> Result<Vec<ReadModelWrite>, StoreError> {
        let mut out = Vec::new();
        for p in projections {
            match *p {
                stream_type::ORG => rows_of(&self.orgs, &mut out)?,
                stream_type::KEY => rows_of(&self.keys, &mut out)?,
                stream_type::FLEET => rows_of(&self.fleets, &mut out)?,
                stream_type::PROFILE => rows_of(&self.profiles, &mut out)?,
                stream_type::RUNTIME => rows_of(&self.runtimes, &mut out)?,
                stream_type::GATEWAY => rows_of(&self.gateways, &mut out)?,
                stream_type::BOARD => rows_of(&self.boards, &mut out)?,
                stream_type::MC_AGENT => rows_of(&self.agents, &mut out)?,
                stream_type::INSTANCE => rows_of(&self.instances, &mut out)?,
                stream_type::CONTAINER_AGENT => rows_of(&self.container_agents, &mut out)?,
                stream_type::CONTAINER_PROFILE => rows_of(&self.container_profiles, &mut out)?,
                stream_type::SKILL => rows_of(&self.skills, &mut out)?,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Snapshots taken at every multiple of `SNAPSHOT_EVERY` of the chosen projections.
    pub fn snapshots(&self, projections: &[&str]) -> Vec<Snapshot> {
        self.snapshots
            .iter()
            .filter(|s| projections.contains(&s.kind.as_str()))
            .cloned()
            .collect()
    }
}

#[derive(Debug)]
pub struct RebuildReport {
    pub events: u64,
    pub models: usize,
    pub seconds: f64,
}

/// Rebuilds read models from the log and swaps them in atomically; safe while `serve`
/// runs (events committed during the fold are folded in before the swap).
pub async fn rebuild(
    store: Arc<dyn EventStore>,
    projection: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, StoreError> {
    let chosen: Vec<&str> = match projection {
        Some(p) => PROJECTIONS.iter().filter(|(name, _)| *name == p).map(|(name, _)| *name).collect(),
        None => PROJECTIONS.iter().map(|(name, _)| *name).collect(),
    };
    if chosen.is_empty() {
        let known: Vec<&str> = PROJECTIONS.iter().map(|(n, _)| *n).collect();
        return Err(StoreError::Corrupt(format!(
            "no projection {:?}; known: {}",
            projection.unwrap_or_default(),
            known.join(", ")
        )));
    }
    let kinds: Vec<String> = PROJECTIONS
        .iter()
        .filter(|(name, _)| chosen.contains(name))
        .flat_map(|(_, kinds)| kinds.iter().map(|k| k.to_string()))
        .collect();
    let started = Instant::now();
    let mut rebuilder = Rebuilder::default();
    let mut events = 0u64;
    let read_after = |after: i64| {
        let store = store.clone();
        tokio::spawn(async move { store.read_all_for_fold(after, PAGE).await })
    };
    loop {
        let head = store.head().await?;
        // The next page is read while this one is folded.
        let mut next = Some(read_after(rebuilder.through));
        while rebuilder.through < head {
            let Some(reading) = next.take() else { break };
            let page = reading.await.map_err(|e| StoreError::Corrupt(e.to_string()))??;
            let Some(last) = page.last().map(|e| e.global_position) else {
                break;
            };
            if last < head {
                next = Some(read_after(last));
            }
            for e in &page {
                rebuilder.apply(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            }
            events += page.len() as u64;
            progress(rebuilder.through as u64, head as u64);
        }
        if let Some(reading) = next {
            reading.abort();
        }
        let rows = rebuilder.rows(&chosen)?;
        if store
            .swap_read_models(&kinds, &rows, &rebuilder.snapshots(&chosen), rebuilder.through)
            .await?
        {
            return Ok(RebuildReport {
                events,
                models: rows.len(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
}
