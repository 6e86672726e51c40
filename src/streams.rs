//! The stream-type registry: every stream type the log holds, declared once, with what the
//! service knows about it — its read model (projection, cache, rebuild, time travel and
//! one-line summaries, from `fleetledger_projections::ReadModel`), the surface it belongs
//! to, and how the audit API renders and restores it (`Audited`, implemented next to the
//! surface that owns the resource). Everything that must know every stream type — the
//! cache, `rebuild`, the audit API, the ledger's views (`views`, from each event type's
//! declared redactions) — iterates [`all`] or asks [`get`].
//!
//! Adding a stream type: its events (`events/`), its read model (`projections/`), an
//! `Audited` impl in its surface module, one line in [`REGISTRY`], and recorded events of
//! each of its event types appended to the log fixture (`tests/api/log_fixture.rs`).

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::Response;
use fleetledger_events::secret::Redactions;
use fleetledger_events::{DecodeError, DomainEvent, EventEnvelope, NewEvent};
use fleetledger_projections::container::{ContainerAgent, ContainerProfile, Skill};
use fleetledger_projections::instance::Instance;
use fleetledger_projections::mission_control::{Board, Gateway, McAgent};
use fleetledger_projections::{fleet::Fleet, key::Key, org::Org, profile::Profile, runtime::Runtime, ReadModel};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::api::{RequestMeta, Surface};
use crate::auth::Principal;
use crate::state::AppState;
use crate::store::cache::{ModelCache, ModelCacheOps, ReadModels};
use crate::store::{FoldEvent, ReadModelWrite, Snapshot, StoreError, SNAPSHOT_EVERY};

/// Every stream type, once. The order is the order `rebuild` reports and lists show.
static REGISTRY: &[&dyn StreamType] = &[
    &Registered::<Org>(PhantomData),
    &Registered::<Key>(PhantomData),
    &Registered::<Fleet>(PhantomData),
    &Registered::<Profile>(PhantomData),
    &Registered::<Runtime>(PhantomData),
    &Registered::<Gateway>(PhantomData),
    &Registered::<Board>(PhantomData),
    &Registered::<McAgent>(PhantomData),
    &Registered::<Instance>(PhantomData),
    &Registered::<Skill>(PhantomData),
    &Registered::<ContainerProfile>(PhantomData),
    &Registered::<ContainerAgent>(PhantomData),
];

/// Every registered stream type.
pub fn all() -> &'static [&'static dyn StreamType] {
    REGISTRY
}

/// The stream type of this name, if there is one.
pub fn get(name: &str) -> Option<&'static dyn StreamType> {
    REGISTRY.iter().copied().find(|s| s.name() == name)
}

/// Every stream type's name, for messages that list the valid ones.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|s| s.name()).collect()
}

/// A one-line, human description of any event (its type when the stream type or the
/// event cannot be read).
pub fn summary(e: &EventEnvelope) -> String {
    get(&e.stream_type).map_or_else(|| e.event_type.clone(), |s| s.summary(e))
}

/// Why a restore was refused: a status and a message for the caller.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub detail: String,
}

impl Refusal {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "restore failed");
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "the restore could not be recorded")
    }
}

/// A request to put back what a resource was at an older version.
pub struct RestoreRequest<'a> {
    pub state: &'a AppState,
    pub principal: &'a Principal,
    pub meta: &'a RequestMeta,
    pub id: &'a str,
    /// The version whose configuration comes back.
    pub version: i64,
    pub reason: Option<String>,
}

/// How the audit API shows and restores a resource: implemented next to the surface
/// that owns it.
pub trait Audited: ReadModel {
    /// The surface the resource belongs to.
    const SURFACE: Surface;

    /// Whether only the org's admins may read its streams on the ledger (key material).
    const ADMIN_ONLY: bool = false;

    /// The stored model without what must never leave the process (its `PRIVATE_FIELDS`:
    /// secrets, key hashes): what `replay` prints and what `render` starts from by default.
    fn public(&self) -> Value {
        without_private::<Self>(serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// The resource as its own surface shows it, for time travel and diffs.
    fn render(&self, _state: &AppState) -> Value {
        self.public()
    }

    /// Appends a new revision whose configuration is `target`'s (the state at
    /// `request.version`) through the surface's own rules, answering like its write.
    fn restore(request: RestoreRequest<'_>, target: Self) -> BoxFuture<'_, Result<Response, Refusal>> {
        let _ = (request, target);
        Box::pin(async {
            Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{} resources have no configuration to restore", Self::KIND),
            ))
        })
    }
}

/// A model's JSON without the fields it declares private.
fn without_private<M: ReadModel>(mut value: Value) -> Value {
    if let Some(fields) = value.as_object_mut() {
        for name in M::PRIVATE_FIELDS {
            fields.remove(*name);
        }
    }
    value
}

/// One event of a stream with the revision and summary it leads to.
pub struct Step {
    pub envelope: EventEnvelope,
    pub revision: Option<i64>,
    pub summary: String,
}

/// What the service knows about one stream type, without naming its Rust types.
pub trait StreamType: Send + Sync {
    fn name(&self) -> &'static str;
    fn surface(&self) -> Surface;
    fn admin_only(&self) -> bool;
    /// The `read_models` kinds its projection owns: its own and its lookups'.
    fn kinds(&self) -> Vec<&'static str>;
    fn summary(&self, e: &EventEnvelope) -> String;
    /// Where `event_type`'s data keeps secret and internal fields (`None` for an event type
    /// the stream does not have): what `views` redacts.
    fn redactions(&self, event_type: &str) -> Option<Redactions>;
    /// Every event type with its current schema version; its decoder reads every version
    /// from 1 to that.
    fn event_types(&self) -> &'static [(&'static str, i32)];
    /// A stored event decoded and encoded again, as appending that event today would
    /// store it (an upcast event comes back at its current schema version).
    fn reencode(&self, e: &EventEnvelope) -> Result<NewEvent, DecodeError>;
    /// The stored model after `events`, from a snapshot doc (or nothing), without secrets.
    fn public_state(&self, snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Option<Value>, DecodeError>;
    /// The resource as its surface shows it after `events` (`null` before it exists).
    fn rendered(&self, state: &AppState, snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Value, DecodeError>;
    /// Whether the resource is deleted now, as this process's cache knows it.
    fn is_deleted(&self, models: &ReadModels, id: &str) -> bool;
    /// The state, revision and summary after each of `events`.
    fn timeline(&self, snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Vec<Step>, DecodeError>;
    /// Restores the state after `events` (folded from `snapshot`).
    fn restore<'a>(
        &self,
        request: RestoreRequest<'a>,
        snapshot: Option<&str>,
        events: &[EventEnvelope],
    ) -> Result<BoxFuture<'a, Result<Response, Refusal>>, DecodeError>;
    /// An empty cache of its read models.
    fn new_cache(&self) -> Box<dyn ModelCacheOps>;
    /// An empty in-memory fold of its read models, for `rebuild`.
    fn new_fold(&self) -> Box<dyn RebuildFold>;
}

struct Registered<M>(PhantomData<fn() -> M>);

/// A state says so when its resource is deleted: `"deleted": true` and when.
fn marked<M: ReadModel>(model: &M, mut state: Value) -> Value {
    if let (Some(at), Some(fields)) = (model.deleted_at(), state.as_object_mut()) {
        fields.insert("deleted".into(), true.into());
        fields.insert("deleted_at".into(), fleetledger_events::envelope::micros::format(&at).into());
    }
    state
}

/// The model a fold starts from: a snapshot's doc, or nothing.
fn start<M: ReadModel>(snapshot: Option<&str>) -> Result<Option<M>, DecodeError> {
    snapshot
        .map(|doc| {
            serde_json::from_str(doc).map_err(|reason| DecodeError::Malformed {
                event_type: "snapshot".into(),
                reason,
            })
        })
        .transpose()
}

fn fold<M: ReadModel>(snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Option<M>, DecodeError> {
    let mut state = start::<M>(snapshot)?;
    for e in events {
        state = M::evolve(state, &M::Event::from_envelope(e)?);
    }
    Ok(state)
}

impl<M: Audited> StreamType for Registered<M> {
    fn name(&self) -> &'static str {
        M::KIND
    }

    fn surface(&self) -> Surface {
        M::SURFACE
    }

    fn admin_only(&self) -> bool {
        M::ADMIN_ONLY
    }

    fn kinds(&self) -> Vec<&'static str> {
        std::iter::once(M::KIND).chain(M::LOOKUPS.iter().copied()).collect()
    }

    fn summary(&self, e: &EventEnvelope) -> String {
        M::Event::from_envelope(e).map_or_else(|_| e.event_type.clone(), |event| M::summary(&event))
    }

    fn redactions(&self, event_type: &str) -> Option<Redactions> {
        M::Event::redactions(event_type)
    }

    fn event_types(&self) -> &'static [(&'static str, i32)] {
        M::Event::EVENT_TYPES
    }

    fn reencode(&self, e: &EventEnvelope) -> Result<NewEvent, DecodeError> {
        Ok(M::Event::from_envelope(e)?.to_new_event(e.event_id))
    }

    fn public_state(&self, snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Option<Value>, DecodeError> {
        Ok(fold::<M>(snapshot, events)?.map(|m| marked(&m, m.public())))
    }

    fn rendered(&self, state: &AppState, snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Value, DecodeError> {
        // A surface's own rendering drops the private fields too, whatever it shows.
        Ok(fold::<M>(snapshot, events)?.map_or(Value::Null, |m| marked(&m, without_private::<M>(m.render(state)))))
    }

    fn is_deleted(&self, models: &ReadModels, id: &str) -> bool {
        models.cache::<M>().get(id).is_some_and(|c| c.model.is_deleted())
    }

    fn timeline(&self, snapshot: Option<&str>, events: &[EventEnvelope]) -> Result<Vec<Step>, DecodeError> {
        let mut state = start::<M>(snapshot)?;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let event = M::Event::from_envelope(e)?;
            let summary = M::summary(&event);
            state = M::evolve(state, &event);
            out.push(Step {
                envelope: e.clone(),
                revision: state.as_ref().and_then(ReadModel::revision),
                summary,
            });
        }
        Ok(out)
    }

    fn restore<'a>(
        &self,
        request: RestoreRequest<'a>,
        snapshot: Option<&str>,
        events: &[EventEnvelope],
    ) -> Result<BoxFuture<'a, Result<Response, Refusal>>, DecodeError> {
        Ok(match fold::<M>(snapshot, events)? {
            Some(target) => M::restore(request, target),
            None => {
                let detail = format!("{}/{} has no state at version {}", M::KIND, request.id, request.version);
                Box::pin(async move { Err(Refusal::new(StatusCode::NOT_FOUND, detail)) })
            }
        })
    }

    fn new_cache(&self) -> Box<dyn ModelCacheOps> {
        Box::new(ModelCache::<M>::default())
    }

    fn new_fold(&self) -> Box<dyn RebuildFold> {
        Box::new(Folded::<M>::default())
    }
}

/// One stream type's read models folded in memory by `rebuild`.
pub trait RebuildFold: Send {
    /// Folds one event in; a snapshot is taken at every multiple of `SNAPSHOT_EVERY`.
    fn apply(&mut self, e: &FoldEvent, snapshots: &mut Vec<Snapshot>) -> Result<(), DecodeError>;
    /// The `read_models` rows of everything folded.
    fn rows(&self, out: &mut Vec<ReadModelWrite>) -> Result<(), StoreError>;
}

struct Folded<M>(HashMap<String, (i64, M)>);

impl<M> Default for Folded<M> {
    fn default() -> Self {
        Folded(HashMap::new())
    }
}

impl<M: ReadModel> RebuildFold for Folded<M> {
    fn apply(&mut self, e: &FoldEvent, snapshots: &mut Vec<Snapshot>) -> Result<(), DecodeError> {
        let event = M::Event::decode_json(&e.event_type, e.schema_version, e.data.get())?;
        let before = self.0.remove(&e.stream_id).map(|(_, m)| m);
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
            self.0.insert(e.stream_id.clone(), (e.stream_version, after));
        }
        Ok(())
    }

    fn rows(&self, out: &mut Vec<ReadModelWrite>) -> Result<(), StoreError> {
        for (id, (version, model)) in &self.0 {
            out.extend(model_rows(id, *version, model)?);
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_type_is_registered_once_with_its_own_kind() {
        let names = names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a stream type is registered twice: {names:?}");
        for stream in all() {
            assert_eq!(stream.kinds()[0], stream.name());
            assert!(get(stream.name()).is_some());
        }
        assert!(get("bogus").is_none());
    }
}
