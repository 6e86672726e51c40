//! Audit and replay across stream types: a resource's timeline, its state at a version,
//! diffs between versions, restore, verification, and rebuilding every read model from
//! the log. What differs per stream type comes from the registry (`crate::streams`).
//!
//! The reads and the restore here are what both the audit API (`api::audit`) and the web
//! console (`api::console`) call, so the two answer from the same rules: a caller reaches
//! only streams of its org that `Principal::may_read_stream` lets it read, restores with
//! `may_restore`, and sees states as the registry renders them (private fields dropped).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Response;
use chrono::{DateTime, Utc};
use fleetledger_events::{DecodeError, EventEnvelope};
use serde_json::Value;

use crate::api::RequestMeta;
use crate::auth::{Principal, Role};
use crate::state::AppState;
use crate::store::{self, EventStore, FoldEvent, ReadModelWrite, Snapshot, StoreError, Verification};
use crate::streams::{self, RebuildFold, Refusal, RestoreRequest, Step, StreamType};

/// Why an audit read or a restore did not happen; each caller says it in its own way
/// (problem+json on the API, a page in the console).
#[derive(Debug)]
pub enum AuditError {
    BadRequest(String),
    /// Not a readable stream of the caller's org, or no such version.
    NotFound(String),
    Forbidden(String),
    Conflict(String),
    /// The org's whole-log verifications are used up: retry after this long.
    TooMany(Duration),
    /// The resource's surface refused the restore.
    Refused(Refusal),
    Store(StoreError),
}

impl From<StoreError> for AuditError {
    fn from(error: StoreError) -> Self {
        AuditError::Store(error)
    }
}

fn corrupt(e: impl std::fmt::Display) -> AuditError {
    AuditError::Store(StoreError::Corrupt(e.to_string()))
}

fn not_found(stream_type: &str, id: &str) -> AuditError {
    AuditError::NotFound(format!("no resource {stream_type}/{id}"))
}

/// A stream of the caller's org it may read, and its current version; `NotFound` for
/// anything else (another org's stream is indistinguishable from none).
pub async fn readable_stream(store: &dyn EventStore, principal: &Principal, stream_type: &str, id: &str) -> Result<i64, AuditError> {
    let first = store.read_stream_between(id, 1, 1).await?;
    let org = principal.org_id.to_string();
    match first.first() {
        Some(e) if e.stream_type == stream_type && e.metadata.org_id == org && principal.may_read_stream(stream_type, id) => {
            Ok(store.stream_version(id).await?)
        }
        _ => Err(not_found(stream_type, id)),
    }
}

/// A resource the caller may read: its registered stream type and current version.
#[derive(Clone)]
pub struct Resource {
    pub kind: &'static dyn StreamType,
    pub id: String,
    pub current: i64,
}

impl Resource {
    /// The resource `stream_type`/`id` as `principal` may see it.
    pub async fn find(store: &dyn EventStore, principal: &Principal, stream_type: &str, id: &str) -> Result<Resource, AuditError> {
        let current = readable_stream(store, principal, stream_type, id).await?;
        let kind = streams::get(stream_type).ok_or_else(|| AuditError::NotFound(format!("{stream_type} streams have no read model")))?;
        Ok(Resource {
            kind,
            id: id.to_string(),
            current,
        })
    }

    fn no_version(&self, version: i64) -> AuditError {
        AuditError::NotFound(format!(
            "{}/{} has no version {version} (it is at {})",
            self.kind.name(),
            self.id,
            self.current
        ))
    }

    /// `version` when the resource has it.
    pub fn version(&self, version: i64) -> Result<i64, AuditError> {
        match (1..=self.current).contains(&version) {
            true => Ok(version),
            false => Err(self.no_version(version)),
        }
    }

    /// The newest snapshot at or below `version`, and the events after it through `last`
    /// (from version 1 when there is none).
    async fn folded_from(
        &self,
        store: &dyn EventStore,
        version: i64,
        last: i64,
    ) -> Result<(Option<Snapshot>, Vec<EventEnvelope>), AuditError> {
        let snapshot = store.snapshot_at(&self.id, version).await?.filter(|s| s.kind == self.kind.name());
        let from = snapshot.as_ref().map_or(1, |s| s.version + 1);
        let events = store.read_stream_between(&self.id, from, last).await?;
        Ok((snapshot, events))
    }

    /// Its events after version `after` through `last`, each with the revision and
    /// summary it leads to.
    pub async fn timeline(&self, store: &dyn EventStore, after: i64, last: i64) -> Result<Vec<Step>, AuditError> {
        let (snapshot, events) = self.folded_from(store, after, last).await?;
        let steps = self
            .kind
            .timeline(snapshot.as_ref().map(|s| s.doc.as_str()), &events)
            .map_err(corrupt)?;
        Ok(steps.into_iter().filter(|s| s.envelope.stream_version > after).collect())
    }

    /// The resource as its surface shows it at `version`, and the event that made it.
    pub async fn at(&self, state: &AppState, version: i64) -> Result<(Value, EventEnvelope), AuditError> {
        let version = self.version(version)?;
        let (snapshot, events) = self.folded_from(state.ledger.store.as_ref(), version - 1, version).await?;
        let rendered = self
            .kind
            .rendered(state, snapshot.as_ref().map(|s| s.doc.as_str()), &events)
            .map_err(corrupt)?;
        let event = events.last().cloned().ok_or_else(|| self.no_version(version))?;
        Ok((rendered, event))
    }

    /// The last version recorded at or before `at` (0 when none).
    pub async fn version_at(&self, store: &dyn EventStore, at: DateTime<Utc>) -> Result<i64, AuditError> {
        Ok(store.version_at(&self.id, at).await?)
    }

    /// What changed from version `from` to version `to`.
    pub async fn diff(&self, state: &AppState, from: i64, to: i64) -> Result<Diff, AuditError> {
        self.version(from)?;
        self.version(to)?;
        let (before, _) = self.at(state, from).await?;
        let (after, _) = self.at(state, to).await?;
        let patch = json_patch::diff(&before, &after);
        Ok(Diff { before, after, patch })
    }

    /// Appends a new revision whose configuration is version `version`'s, through the
    /// resource's own surface rules (`Audited::restore`), answering like its write.
    pub async fn restore(
        &self,
        state: &AppState,
        principal: &Principal,
        meta: &RequestMeta,
        version: i64,
        reason: Option<String>,
    ) -> Result<Response, AuditError> {
        if !may_restore(principal, &self.id) {
            return Err(AuditError::Forbidden("restoring needs a member or admin key".into()));
        }
        self.version(version)?;
        if self.kind.is_deleted(&state.ledger.models, &self.id) {
            // None of the surfaces can bring a deleted resource back (its sandbox, container
            // or workspace is gone, or the product has no undelete): say so, rather than 404.
            return Err(AuditError::Conflict(format!(
                "{}/{} is deleted; a deleted resource cannot be restored (create a new one from this version's state)",
                self.kind.name(),
                self.id
            )));
        }
        let (snapshot, events) = self.folded_from(state.ledger.store.as_ref(), version - 1, version).await?;
        let request = RestoreRequest {
            state,
            principal,
            meta,
            id: &self.id,
            version,
            reason,
        };
        let restored = self
            .kind
            .restore(request, snapshot.as_ref().map(|s| s.doc.as_str()), &events)
            .map_err(corrupt)?;
        restored.await.map_err(AuditError::Refused)
    }
}

/// Whether `principal` may restore a version of the resource `id`: the rule of every write.
pub fn may_restore(principal: &Principal, id: &str) -> bool {
    principal.may(id, "configure")
}

/// Two versions of a resource as its surface shows them, and the RFC 6902 patch between.
pub struct Diff {
    pub before: Value,
    pub after: Value,
    pub patch: json_patch::Patch,
}

impl Diff {
    /// One line per operation: what happened at which JSON pointer.
    pub fn summary(&self) -> Vec<String> {
        self.patch
            .0
            .iter()
            .map(|op| match op {
                json_patch::PatchOperation::Add(o) => format!("added {}", o.path),
                json_patch::PatchOperation::Remove(o) => format!("removed {}", o.path),
                json_patch::PatchOperation::Replace(o) => format!("changed {}", o.path),
                json_patch::PatchOperation::Move(o) => format!("moved {} to {}", o.from, o.path),
                json_patch::PatchOperation::Copy(o) => format!("copied {} to {}", o.from, o.path),
                json_patch::PatchOperation::Test(o) => format!("tested {}", o.path),
            })
            .collect()
    }
}

/// Verifying an org's whole log reads and hashes all of it: admins only, and as often as
/// the org's heavy-call bucket allows.
fn may_verify_org(state: &AppState, principal: &Principal) -> Result<(), AuditError> {
    if principal.role != Role::Admin {
        return Err(AuditError::Forbidden("verifying the log needs an admin key".into()));
    }
    state.heavy.check(principal.org_id).map_err(AuditError::TooMany)
}

/// The hash chains of every stream of the caller's org, as one verdict.
pub async fn verify_org(state: &AppState, principal: &Principal) -> Result<Verification, AuditError> {
    may_verify_org(state, principal)?;
    let org = principal.org_id.to_string();
    Ok(store::verify_where(state.ledger.store.as_ref(), &org).await?)
}

/// The hash chain of each stream of the caller's org, stream by stream.
pub async fn verify_org_streams(state: &AppState, principal: &Principal) -> Result<Vec<store::StreamCheck>, AuditError> {
    may_verify_org(state, principal)?;
    let org = principal.org_id.to_string();
    Ok(store::verify_each(state.ledger.store.as_ref(), &org).await?)
}

/// A resource of an org as its list shows it: its last event and its model's name.
pub struct Listed {
    pub last: EventEnvelope,
    pub name: Option<String>,
    pub deleted: bool,
}

/// Every resource of the caller's org on the five product surfaces that it may read, newest
/// change first.
pub async fn resources(state: &AppState, principal: &Principal) -> Result<Vec<Listed>, AuditError> {
    let product: Vec<&'static dyn StreamType> = streams::all().iter().copied().filter(|s| s.surface().is_product()).collect();
    let kinds: Vec<&str> = product.iter().map(|s| s.name()).collect();
    let reader = crate::bus::feed::Filter::for_reader(principal, None, None);
    let mut out: Vec<Listed> = state
        .ledger
        .store
        .latest_in_org(&principal.org_id.to_string(), &kinds)
        .await?
        .into_iter()
        .filter(|l| reader.matches(&l.event))
        .map(|l| Listed {
            deleted: streams::get(&l.event.stream_type).is_some_and(|k| k.is_deleted(&state.ledger.models, &l.event.stream_id)),
            last: l.event,
            name: l.name,
        })
        .collect();
    out.sort_by_key(|l| std::cmp::Reverse(l.last.global_position));
    Ok(out)
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

/// Events per page when rebuilding.
const PAGE: i64 = 5000;

/// Every read model folded from the log in memory, for `rebuild`: one fold per registered
/// stream type.
pub struct Rebuilder {
    folds: HashMap<&'static str, Box<dyn RebuildFold>>,
    snapshots: Vec<Snapshot>,
    /// The last position folded in.
    pub through: i64,
}

impl Default for Rebuilder {
    fn default() -> Self {
        Rebuilder {
            folds: streams::all().iter().map(|s| (s.name(), s.new_fold())).collect(),
            snapshots: Vec::new(),
            through: 0,
        }
    }
}

impl Rebuilder {
    pub fn apply(&mut self, e: &FoldEvent) -> Result<(), DecodeError> {
        // A stream type this build does not know has no read model to rebuild.
        if let Some(fold) = self.folds.get_mut(e.stream_type.as_str()) {
            fold.apply(e, &mut self.snapshots)?;
        }
        self.through = e.global_position;
        Ok(())
    }

    /// The rows of the chosen projections.
    pub fn rows(&self, projections: &[&str]) -> Result<Vec<ReadModelWrite>, StoreError> {
        let mut out = Vec::new();
        for p in projections {
            if let Some(fold) = self.folds.get(p) {
                fold.rows(&mut out)?;
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
    let chosen: Vec<&'static dyn streams::StreamType> = streams::all()
        .iter()
        .copied()
        .filter(|s| projection.is_none_or(|p| s.name() == p))
        .collect();
    if chosen.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "no projection {:?}; known: {}",
            projection.unwrap_or_default(),
            streams::names().join(", ")
        )));
    }
    let kinds: Vec<String> = chosen.iter().flat_map(|s| s.kinds()).map(str::to_string).collect();
    let chosen: Vec<&str> = chosen.iter().map(|s| s.name()).collect();
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
