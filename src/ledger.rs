//! The one write path every surface, the CLI and the workers use: a command is decided
//! against the stream's latest state where this process serialises the stream's writes,
//! the events are appended with the read model they produce (and its lookup rows and
//! snapshot) in one append, and the cache learns the new model before the next writer of
//! the stream decides.
//!
//! A write without a precondition never fails because another writer got there first:
//! writers of one stream in this process queue on the stream's lock, and a write that
//! loses a race to another process (the store's unique `(stream_id, stream_version)`
//! key) is decided again against the state that won. Only an `If-Match` that no longer
//! matches refuses a write.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use fleetledger_events::{DomainEvent, Metadata};
use fleetledger_projections::ReadModel;
use uuid::Uuid;

use crate::store::cache::{Cached, ReadModels};
use crate::store::{AppendRequest, Appended, EventStore, ExpectedVersion, Snapshot, StoreError, SNAPSHOT_EVERY};
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
    streams: Arc<DashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>, models: Arc<ReadModels>) -> Self {
        Ledger {
            store,
            models,
            streams: Arc::new(DashMap::new()),
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
                Some(model) => decide(model),
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
        let lock = self.streams.entry(id.to_string()).or_default().clone();
        let result = {
            let _serialised = lock.lock().await;
            self.decide_and_append(id, context, &mut decide).await
        };
        drop(lock);
        // The last writer of a stream takes its lock out of the table.
        self.streams.remove_if(id, |_, lock| Arc::strong_count(lock) == 1);
        result
    }

    async fn decide_and_append<M: ReadModel, E>(
        &self,
        id: &str,
        context: &WriteContext,
        decide: &mut impl FnMut(Option<&M>) -> Result<Vec<M::Event>, E>,
    ) -> Result<Written<M>, WriteError<E>> {
        // This process's writes are in the cache; another process's may not be yet, so a
        // miss, and every lost race, asks the store.
        let mut current = self.models.cache::<M>().get(id);
        if current.is_none() {
            current = self.models.refresh::<M>(id).await.map_err(WriteError::Store)?;
        }
        let mut lost = 0;
        loop {
            let version = current.as_ref().map_or(0, |c| c.version);
            if let Some(expected) = &context.if_match {
                if !expected.matches(version) {
                    return Err(WriteError::PreconditionFailed { current: version });
                }
            }
            let before: Option<M> = current.as_ref().map(|c| (*c.model).clone());
            let events = decide(before.as_ref()).map_err(WriteError::Rejected)?;
            if events.is_empty() {
                return Ok(Written {
                    model: before,
                    version,
                    appended: None,
                });
            }
            match self.append(id, version, before, events, context).await {
                Ok((model, appended)) => {
                    return Ok(Written {
                        version: appended.stream_version(),
                        model,
                        appended: Some(appended),
                    })
                }
                Err(StoreError::Conflict { .. }) if lost < MAX_LOST_RACES => {
                    lost += 1;
                    // Another process wrote this stream; spread out, then decide again
                    // against what it wrote.
                    let most = 200 * u64::from(lost.min(20));
                    tokio::time::sleep(Duration::from_micros(rand::random_range(0..most))).await;
                    current = self.latest::<M>(id).await.map_err(WriteError::Store)?;
                }
                Err(StoreError::DuplicateEvent) => return Err(WriteError::Duplicate),
                Err(StoreError::TooLarge { bytes, limit }) => return Err(WriteError::TooLarge { bytes, limit }),
                Err(StoreError::Unstorable(why)) => return Err(WriteError::Unstorable(why)),
                Err(e) => return Err(WriteError::Store(e)),
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

    /// Appends events decided at `expected` atomically with the read model they lead to
    /// (and its lookup rows and snapshot), then updates the cache.
    async fn append<M: ReadModel>(
        &self,
        id: &str,
        expected: i64,
        before: Option<M>,
        events: Vec<M::Event>,
        context: &WriteContext,
    ) -> Result<(Option<M>, Appended), StoreError> {
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
        let request = AppendRequest {
            stream_type: M::KIND.to_string(),
            stream_id: id.to_string(),
            expected: ExpectedVersion::Exact(expected),
            events: events
                .iter()
                .enumerate()
                .map(|(i, e)| e.to_new_event(context.event_id.filter(|_| i == 0).unwrap_or_else(Uuid::now_v7)))
                .collect(),
            metadata: context.metadata.clone(),
            read_models,
            snapshots,
        };
        let shared = after.as_ref().map(|model| Arc::new(model.clone()));
        let _offered = match (&shared, request.events.last()) {
            (Some(model), Some(last)) => Some(self.models.deciding(last.event_id, model.clone())),
            _ => None,
        };
        let appended = self.store.append(request).await?;
        if let Some(model) = shared {
            self.models.committed(id, version, model);
        }
        Ok((after, appended))
    }
}
