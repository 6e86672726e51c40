//! The one write path every surface, the CLI and the workers use: a command is decided
//! against the stream's latest state where this process serialises the stream's writes,
//! the events are appended with the read model they produce (and its lookup rows and
//! snapshot) in one append, and the cache learns the new model when it commits.
//!
//! Writes to one stream are pipelined: the next writer decides against the state the
//! previous one's append leads to as soon as that append is queued for the writer, not
//! after it committed, so appends to a hot stream share group commits instead of taking
//! one commit each. Such an append names the event it must follow
//! (`ExpectedVersion::After`): if its predecessor is refused, it is refused too, and is
//! decided again.
//!
//! A write without a precondition never fails because another writer got there first:
//! a write that loses a race (to another process, through the store's unique
//! `(stream_id, stream_version)` key, or behind a refused predecessor) waits until the
//! stream's queued appends are answered and is decided again against the state that won.
//! Only an `If-Match` that no longer matches refuses a write; it is checked against the
//! committed version, so an `If-Match` write waits for the appends queued before it.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use fleetledger_events::{DomainEvent, Metadata};
use fleetledger_projections::ReadModel;
use uuid::Uuid;

use crate::store::cache::{Cached, ReadModels};
use crate::store::{AppendRequest, Appended, EventStore, ExpectedVersion, Snapshot, StoreError, Submitted, SNAPSHOT_EVERY};
use crate::streams::model_rows;

/// A parsed `If-Match` header (RFC 9110 §13.1.1): `*`, or the stream versions of the
/// listed entity tags. A write matches when any listed tag is the stream's current one,
/// by strong comparison: weak tags (`W/"…"`) and tags this server never issues match
/// nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any existing version.
    Any,
    /// The versions the listed strong tags name (none: nothing can match).
    Versions(Vec<i64>),
}

impl IfMatch {
    pub fn parse(value: &str) -> IfMatch {
        if value.trim() == "*" {
            return IfMatch::Any;
        }
        IfMatch::Versions(
            value
                .split(',')
                .map(str::trim)
                .filter(|tag| !tag.starts_with("W/"))
                .filter_map(|tag| tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok())
                .collect(),
        )
    }

    /// The precondition for exactly `version`.
    pub fn version(version: i64) -> IfMatch {
        IfMatch::Versions(vec![version])
    }

    pub fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(versions) => versions.contains(&version),
        }
    }
}

/// What a write carries besides its decision: who, why, and what it expects.
#[derive(Clone, Debug, Default)]
pub struct WriteContext {
    pub metadata: Metadata,
    /// The version the stream must be at (`If-Match`); `None` writes whatever it is.
    pub if_match: Option<IfMatch>,
    /// The id of the first appended event, when the caller needs it fixed (a worker's
    /// outcome, so a redelivered trigger cannot record it twice).
    pub event_id: Option<Uuid>,
}

impl WriteContext {
    pub fn new(metadata: Metadata) -> Self {
        WriteContext {
            metadata,
            ..Default::default()
        }
    }
}

/// What a write did.
#[derive(Debug)]
pub struct Written<M> {
    /// The model after the write (before it, when nothing was appended).
    pub model: Option<M>,
    /// The stream version after the write.
    pub version: i64,
    /// What was appended; `None` when the decision produced no events.
    pub appended: Option<Appended>,
}

impl<M> Written<M> {
    /// The model after the write; writes to existing streams always have one.
    pub fn into_model(self) -> M {
        self.model.expect("a written stream has a model")
    }
}

/// Why a write did not commit.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The decision refused the command.
    Rejected(E),
    /// The resource does not exist.
    Missing,
    /// `If-Match` named another version than the stream's.
    PreconditionFailed {
        current: i64,
    },
    /// An event with the fixed id is already in the log (a redelivered outcome).
    Duplicate,
    /// The change would record an event larger than the log takes
    /// (`store::MAX_EVENT_DATA_BYTES`); nothing was recorded.
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    /// The log cannot hold what the change carries; nothing was recorded.
    Unstorable(&'static str),
    Store(StoreError),
}

/// Races lost to other processes before a write gives up; each is another writer's
/// success, so reaching this means something is wrong, not busy.
const MAX_LOST_RACES: u32 = 1000;

#[derive(Clone)]
pub struct Ledger {
    pub store: Arc<dyn EventStore>,
    pub models: Arc<ReadModels>,
    streams: Arc<crate::FastMap<String, Arc<StreamSlot>>>,
}

/// Where this process orders the writes of one stream.
#[derive(Default)]
struct StreamSlot {
    /// Held while a write decides and queues its append, so that appends are queued in
    /// the order they were decided.
    deciding: tokio::sync::Mutex<()>,
    /// What the last queued, not yet answered append leads to.
    pending: std::sync::Mutex<Option<Pending>>,
    /// Woken whenever `pending` is cleared.
    settled: tokio::sync::Notify,
}

/// The state a queued append leads to.
struct Pending {
    version: i64,
    last_event: Uuid,
    /// `Option<Arc<M>>` of the stream's model type.
    model: Box<dyn Any + Send + Sync>,
}

impl StreamSlot {
    fn pending_lock(&self) -> std::sync::MutexGuard<'_, Option<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state the last queued append leads to, to decide the next write against.
    fn pending<M: ReadModel>(&self) -> Option<Base<M>> {
        let pending = self.pending_lock();
        let p = pending.as_ref()?;
        let model = p.model.downcast_ref::<Option<Arc<M>>>()?.clone();
        Some(Base {
            version: p.version,
            model,
            after: Some(p.last_event),
        })
    }

    /// Waits until no queued append of the stream is unanswered (the caller holds
    /// `deciding`, so none is added meanwhile).
    async fn settle(&self) {
        loop {
            let settled = self.settled.notified();
            if self.pending_lock().is_none() {
                return;
            }
            settled.await;
        }
    }

    fn clear(&self) {
        self.pending_lock().take();
        self.settled.notify_waiters();
    }
}

/// Marks a queued append as the stream's pending state until it is answered (or its
/// writer is dropped), unless a later append has taken its place.
struct PendingGuard<'a> {
    slot: &'a StreamSlot,
    last_event: Uuid,
}

impl<'a> PendingGuard<'a> {
    fn set<M: ReadModel>(slot: &'a StreamSlot, version: i64, last_event: Uuid, model: Option<Arc<M>>) -> Self {
        *slot.pending_lock() = Some(Pending {
            version,
            last_event,
            model: Box::new(model),
        });
        PendingGuard { slot, last_event }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.slot.pending_lock();
        if pending.as_ref().is_some_and(|p| p.last_event == self.last_event) {
            *pending = None;
            drop(pending);
            self.slot.settled.notify_waiters();
        }
    }
}

/// A stream's slot while a write holds it; the last holder takes it out of the table.
struct SlotRef<'a> {
    streams: &'a crate::FastMap<String, Arc<StreamSlot>>,
    id: &'a str,
    slot: Arc<StreamSlot>,
}

impl Drop for SlotRef<'_> {
    fn drop(&mut self) {
        // The table's and this one: no other writer holds the slot.
        self.streams.remove_if(self.id, |_, slot| Arc::strong_count(slot) == 2);
    }
}

/// The state a write is decided against: committed (`after` is `None`) or the state a
/// queued append leads to.
struct Base<M> {
    version: i64,
    model: Option<Arc<M>>,
    after: Option<Uuid>,
}

impl<M> From<Option<Cached<M>>> for Base<M> {
    fn from(cached: Option<Cached<M>>) -> Self {
        Base {
            version: cached.as_ref().map_or(0, |c| c.version),
            model: cached.map(|c| c.model),
            after: None,
        }
    }
}

/// An append queued for the writer, with what it leads to.
struct Queued<M> {
    submitted: Submitted,
    version: i64,
    last_event: Uuid,
    model: Option<M>,
    shared: Option<Arc<M>>,
}

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>, models: Arc<ReadModels>) -> Self {
        Ledger {
            store,
            models,
            streams: Arc::default(),
        }
    }

    /// Changes an existing stream: `decide` sees its latest state; a stream that does not
    /// exist is `Missing`.
    pub async fn write<M: ReadModel, E>(
        &self,
        id: &str,
        context: &WriteContext,
        mut decide: impl FnMut(&M) -> Result<Vec<M::Event>, E>,
    ) -> Result<Written<M>, WriteError<E>> {
        let mut missing = false;
        let written = self
            .write_stream::<M, E>(id, context, |current| match current {
                Some(model) => {
                    missing = false;
                    decide(model)
                }
                None => {
                    missing = true;
                    Ok(Vec::new())
                }
            })
            .await?;
        if missing && written.appended.is_none() {
            return Err(WriteError::Missing);
        }
        Ok(written)
    }

    /// Writes a stream that may not exist yet: `decide` sees its latest state, `None` when
    /// it has no events (creation).
    pub async fn write_stream<M: ReadModel, E>(
        &self,
        id: &str,
        context: &WriteContext,
        mut decide: impl FnMut(Option<&M>) -> Result<Vec<M::Event>, E>,
    ) -> Result<Written<M>, WriteError<E>> {
        let slot = SlotRef {
            streams: &self.streams,
            id,
            slot: self.streams.entry(id.to_string()).or_default().clone(),
        };
        // An If-Match names a committed version, so it is checked against what is
        // committed, after the appends queued before it.
        let mut settle = context.if_match.is_some();
        let mut lost = 0;
        loop {
            let deciding = slot.slot.deciding.lock().await;
            if settle {
                slot.slot.settle().await;
            }
            let base = match slot.slot.pending::<M>() {
                Some(base) => base,
                // A lost race: what won may be another process's, only in the store.
                None if lost > 0 => self.latest::<M>(id).await.map_err(WriteError::Store)?.into(),
                // This process's writes are in the cache; another process's may not be
                // yet, so a miss asks the store.
                None => match self.models.cache::<M>().get(id) {
                    Some(cached) => Some(cached).into(),
                    None => self.models.refresh::<M>(id).await.map_err(WriteError::Store)?.into(),
                },
            };
            if let Some(expected) = &context.if_match {
                if !expected.matches(base.version) {
                    return Err(WriteError::PreconditionFailed { current: base.version });
                }
            }
            let before: Option<M> = base.model.as_deref().cloned();
            let events = decide(before.as_ref()).map_err(WriteError::Rejected)?;
            if events.is_empty() {
                if base.after.is_some() {
                    // Nothing to change answers for what is committed, not for what is
                    // queued: decide again once it is.
                    settle = true;
                    continue;
                }
                return Ok(Written {
                    model: before,
                    version: base.version,
                    appended: None,
                });
            }
            let queued = self.submit(id, &base, before, events, context).await.map_err(store_error)?;
            // Offered to the cache follower only under an id this process made: a fixed id
            // (a worker's outcome) may be committed by another process, on another state.
            let _offered = match (&queued.shared, context.event_id) {
                (Some(model), None) => Some(self.models.deciding(queued.last_event, model.clone())),
                _ => None,
            };
            let _pending = PendingGuard::set(&slot.slot, queued.version, queued.last_event, queued.shared.clone());
            drop(deciding);
            match queued.submitted.committed().await {
                Ok(appended) => {
                    if let Some(model) = queued.shared {
                        self.models.committed(id, queued.version, model);
                    }
                    return Ok(Written {
                        version: appended.stream_version(),
                        model: queued.model,
                        appended: Some(appended),
                    });
                }
                Err(StoreError::Conflict { .. }) if lost < MAX_LOST_RACES => {
                    // What was queued after this append was decided on it and is refused
                    // too; nothing queued is a state to decide on any more.
                    slot.slot.clear();
                    lost += 1;
                    settle = true;
                    // Another process wrote this stream; spread out, then decide again
                    // against what it wrote.
                    let most = 200 * u64::from(lost.min(20));
                    tokio::time::sleep(Duration::from_micros(rand::random_range(0..most))).await;
                }
                Err(error) => {
                    slot.slot.clear();
                    return Err(store_error(error));
                }
            }
        }
    }

    /// The stream's latest state from the store: its read model when current, else folded.
    async fn latest<M: ReadModel>(&self, id: &str) -> Result<Option<Cached<M>>, StoreError> {
        let version = self.store.stream_version(id).await?;
        if let Some(cached) = self.models.refresh::<M>(id).await? {
            if cached.version == version {
                return Ok(Some(cached));
            }
        }
        let events = self.store.read_stream(id, 1).await?;
        let model = M::fold(&events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let version = events.last().map_or(0, |e| e.stream_version);
        Ok(model.map(|m| {
            let model = Arc::new(m);
            self.models.committed(id, version, model.clone());
            Cached { version, model }
        }))
    }

    /// Queues events decided on `base` with the read model they lead to (and its lookup
    /// rows and snapshot), to be appended atomically.
    async fn submit<M: ReadModel>(
        &self,
        id: &str,
        base: &Base<M>,
        before: Option<M>,
        events: Vec<M::Event>,
        context: &WriteContext,
    ) -> Result<Queued<M>, StoreError> {
        let expected = base.version;
        let version = expected + events.len() as i64;
        let after = events.iter().fold(before, |state, e| M::evolve(state, e));
        let read_models = match &after {
            Some(model) => model_rows(id, version, model)?,
            None => Vec::new(),
        };
        // A snapshot whenever the stream crosses a multiple of SNAPSHOT_EVERY versions.
        let snapshots = match &after {
            Some(model) if expected / SNAPSHOT_EVERY < version / SNAPSHOT_EVERY => vec![Snapshot {
                stream_id: id.to_string(),
                version,
                kind: M::KIND.to_string(),
                doc: serde_json::to_string(model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            }],
            _ => Vec::new(),
        };
        let events: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| e.to_new_event(context.event_id.filter(|_| i == 0).unwrap_or_else(Uuid::now_v7)))
            .collect();
        let last_event = events.last().map(|e| e.event_id).unwrap_or_default();
        let request = AppendRequest {
            stream_type: M::KIND.to_string(),
            stream_id: id.to_string(),
            expected: match base.after {
                Some(event_id) => ExpectedVersion::After {
                    version: expected,
                    event_id,
                },
                None => ExpectedVersion::Exact(expected),
            },
            events,
            metadata: context.metadata.clone(),
            read_models,
            snapshots,
        };
        let submitted = self.store.submit(request).await?;
        Ok(Queued {
            submitted,
            version,
            last_event,
            shared: after.as_ref().map(|model| Arc::new(model.clone())),
            model: after,
        })
    }
}

/// Why an append that was not refused by the decision did not commit.
fn store_error<E>(error: StoreError) -> WriteError<E> {
    match error {
        StoreError::DuplicateEvent => WriteError::Duplicate,
        StoreError::TooLarge { bytes, limit } => WriteError::TooLarge { bytes, limit },
        StoreError::Unstorable(why) => WriteError::Unstorable(why),
        e => WriteError::Store(e),
    }
}
