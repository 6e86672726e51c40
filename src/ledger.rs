//! The write path shared by every surface: a decision (events decided against a state at
//! a version) is committed with the read model it produces, in one append, and the cache
//! learns the new model once the append has committed.

use std::sync::Arc;

use fleetledger_events::{DomainEvent, Metadata};
use fleetledger_projections::ReadModel;
use uuid::Uuid;

use crate::store::cache::{CacheOf, ReadModels};
use crate::store::{AppendRequest, Appended, EventStore, ExpectedVersion, IdempotencyRecord, Snapshot, StoreError, SNAPSHOT_EVERY};

/// Events decided for one stream, with the state they lead to.
pub struct Decision<M: ReadModel> {
    pub stream_id: String,
    /// The stream version the events were decided against.
    pub expected: i64,
    pub events: Vec<M::Event>,
    pub after: Option<M>,
}

impl<M: ReadModel> Decision<M> {
    /// Folds `events` onto `before` to get the state they lead to.
    pub fn new(stream_id: impl Into<String>, expected: i64, before: Option<M>, events: Vec<M::Event>) -> Self {
        let after = events.iter().fold(before, |state, e| M::evolve(state, e));
        Decision {
            stream_id: stream_id.into(),
            expected,
            events,
            after,
        }
    }

    /// The stream version once the events are appended.
    pub fn version(&self) -> i64 {
        self.expected + self.events.len() as i64
    }
}

/// Why a decide-and-commit did not commit.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The decision refused the command.
    Rejected(E),
    /// The resource does not exist.
    Missing,
    /// It kept changing under us.
    Busy,
    Store(StoreError),
}

/// Attempts at a write that keeps losing races to other writers of the same stream; each
/// lost race waits a little (random, growing) so contending writers spread out.
const WRITE_ATTEMPTS: u32 = 64;

#[derive(Clone)]
pub struct Ledger {
    pub store: Arc<dyn EventStore>,
    pub models: Arc<ReadModels>,
}

impl Ledger {
    /// Decides against the current model and commits, deciding again against the new
    /// state after a lost race. A decision with no events commits nothing. Returns the
    /// model after the write and what was appended.
    pub async fn write<M: ReadModel, E>(
        &self,
        id: &str,
        metadata: &Metadata,
        mut decide: impl FnMut(&M) -> Result<Vec<M::Event>, E>,
    ) -> Result<(M, Option<Appended>), WriteError<E>>
    where
        ReadModels: CacheOf<M>,
    {
        for attempt in 0..WRITE_ATTEMPTS {
            // The cache holds this process's writes; after a lost race, ask the store.
            let cached = if attempt == 0 { self.models.cache().get(id) } else { None };
            let current = match cached {
                Some(c) => c,
                None => self
                    .models
                    .refresh::<M>(id)
                    .await
                    .map_err(WriteError::Store)?
                    .ok_or(WriteError::Missing)?,
            };
            let before = (*current.model).clone();
            let events = decide(&before).map_err(WriteError::Rejected)?;
            if events.is_empty() {
                return Ok((before, None));
            }
            let decision = Decision::new(id.to_string(), current.version, Some(before), events);
            let after = decision.after.clone().ok_or(WriteError::Missing)?;
            match self.commit(decision, metadata.clone(), None).await {
                Ok(appended) => return Ok((after, Some(appended))),
                Err(StoreError::Conflict { .. }) => {
                    let most = 200 * u64::from(attempt.min(20) + 1);
                    tokio::time::sleep(std::time::Duration::from_micros(rand::random_range(0..most))).await;
                }
                Err(e) => return Err(WriteError::Store(e)),
            }
        }
        Err(WriteError::Busy)
    }

    /// Appends a decision atomically with its read model (and lookup rows) and the
    /// idempotency record, then updates the cache.
    pub async fn commit<M: ReadModel>(
        &self,
        decision: Decision<M>,
        metadata: Metadata,
        idempotency: Option<IdempotencyRecord>,
    ) -> Result<Appended, StoreError>
    where
        ReadModels: CacheOf<M>,
    {
        let version = decision.version();
        let read_models = match &decision.after {
            Some(model) => crate::audit::model_rows(&decision.stream_id, version, model)?,
            None => Vec::new(),
        };
        // A snapshot whenever the stream crosses a multiple of SNAPSHOT_EVERY versions.
        let snapshots = match &decision.after {
            Some(model) if decision.expected / SNAPSHOT_EVERY < version / SNAPSHOT_EVERY => vec![Snapshot {
                stream_id: decision.stream_id.clone(),
                version,
                kind: M::KIND.to_string(),
                doc: serde_json::to_string(model).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            }],
            _ => Vec::new(),
        };
        let request = AppendRequest {
            stream_type: M::KIND.to_string(),
            stream_id: decision.stream_id.clone(),
            expected: ExpectedVersion::Exact(decision.expected),
            events: decision.events.iter().map(|e| e.to_new_event(Uuid::now_v7())).collect(),
            metadata,
            read_models,
            snapshots,
            idempotency,
        };
        let appended = self.store.append(request).await?;
        if let Some(model) = decision.after {
            self.models.committed(&decision.stream_id, version, model);
        }
        Ok(appended)
    }
}
