//! The read-model cache: every read model held in memory at its stream version, filled
//! from `read_models` at start and kept current from the log, so writes made by another
//! process or replica appear here within the follow interval.
//!
//! Applying an event is idempotent: a model at or past the event's stream version ignores
//! it, the next version is folded in, and a gap reloads the row from the store.

use std::any::Any;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::FastMap;
use fleetledger_events::{DomainEvent, EventEnvelope};
use fleetledger_projections::ReadModel;
use futures::future::BoxFuture;

use super::{EventStore, StoreError};

/// A model at the stream version it reflects.
pub struct Cached<M> {
    pub version: i64,
    pub model: Arc<M>,
}

impl<M> Clone for Cached<M> {
    fn clone(&self) -> Self {
        Cached {
            version: self.version,
            model: self.model.clone(),
        }
    }
}

/// One read model kind, by id.
pub struct ModelCache<M> {
    by_id: FastMap<String, Cached<M>>,
}

impl<M: ReadModel> Default for ModelCache<M> {
    fn default() -> Self {
        ModelCache { by_id: FastMap::default() }
    }
}

impl<M: ReadModel> ModelCache<M> {
    pub fn get(&self, id: &str) -> Option<Cached<M>> {
        self.by_id.get(id).map(|c| c.clone())
    }

    pub fn all(&self) -> Vec<Cached<M>> {
        self.by_id.iter().map(|c| c.clone()).collect()
    }

    /// Keeps the newer of what is cached and `model`.
    fn put(&self, id: &str, version: i64, model: Arc<M>) -> bool {
        let cached = Cached { version, model };
        match self.by_id.entry(id.to_string()) {
            dashmap::Entry::Occupied(mut entry) if version > entry.get().version => {
                entry.insert(cached);
                true
            }
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(entry) => {
                entry.insert(cached);
                true
            }
        }
    }

    fn version_of(&self, id: &str) -> i64 {
        self.by_id.get(id).map(|c| c.version).unwrap_or(0)
    }
}

/// What every model cache does, without naming its model type: load its rows, and apply
/// an event from the log.
pub trait ModelCacheOps: Any + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn load<'a>(&'a self, models: &'a ReadModels) -> BoxFuture<'a, Result<(), StoreError>>;
    fn apply<'a>(&'a self, models: &'a ReadModels, envelope: &'a EventEnvelope) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<M: ReadModel> ModelCacheOps for ModelCache<M> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn load<'a>(&'a self, models: &'a ReadModels) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for row in models.store.list_models(M::KIND).await? {
                let model: M = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(format!("{} {}: {e}", row.kind, row.id)))?;
                models.remember(self, &row.id, row.version, Arc::new(model));
            }
            Ok(())
        })
    }

    fn apply<'a>(&'a self, models: &'a ReadModels, envelope: &'a EventEnvelope) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let id = envelope.stream_id.as_str();
            let cached = self.version_of(id);
            if cached >= envelope.stream_version {
                return Ok(());
            }
            // This process decided the event: its writer's model is the state it leads to.
            if let Some(model) = models.take_decided::<M>(envelope.event_id) {
                models.remember(self, id, envelope.stream_version, model);
                return Ok(());
            }
            if cached == envelope.stream_version - 1 {
                let event = M::Event::from_envelope(envelope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let before = self.get(id).map(|c| (*c.model).clone());
                if let Some(model) = M::evolve(before, &event) {
                    models.remember(self, id, envelope.stream_version, Arc::new(model));
                }
                return Ok(());
            }
            if let Some(row) = models.store.load_model(M::KIND, id).await? {
                let model: M = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                models.remember(self, id, row.version, Arc::new(model));
            }
            Ok(())
        })
    }
}

/// All read models of this process: one cache per registered stream type.
pub struct ReadModels {
    store: Arc<dyn EventStore>,
    /// By kind. A dozen kinds, named by constants: a scan beats hashing the name, which
    /// every cached read paid.
    caches: Vec<(&'static str, Box<dyn ModelCacheOps>)>,
    /// By lookup kind (each model type's `LOOKUPS`), then key; the value is a model's id.
    lookups: Vec<(&'static str, FastMap<String, String>)>,
    followed: AtomicI64,
    /// The models this process's writes lead to, by the id of the event that leads there,
    /// while the write is in flight: whichever of the writer and the follower gets to the
    /// cache first takes the model, so the follower never decodes and folds again an event
    /// this process just decided (for a big body, as costly as the write). Only ids this
    /// process made are offered: a fixed id (a worker's outcome) may be committed by another
    /// process, after another state.
    decided: FastMap<uuid::Uuid, Box<dyn Any + Send + Sync>>,
}

/// Keeps a decided model offered to the follower until the write is done (or dropped).
pub struct Deciding<'a> {
    models: &'a ReadModels,
    event_id: uuid::Uuid,
}

impl Drop for Deciding<'_> {
    fn drop(&mut self) {
        self.models.decided.remove(&self.event_id);
    }
}

impl ReadModels {
    /// Loads every stored read model; the cache then follows the log from the head seen
    /// before loading, so nothing committed meanwhile is missed.
    pub async fn load(store: Arc<dyn EventStore>) -> Result<Arc<Self>, StoreError> {
        let head = store.head().await?;
        let models = Arc::new(ReadModels {
            store: store.clone(),
            caches: crate::streams::all().iter().map(|s| (s.name(), s.new_cache())).collect(),
            lookups: crate::streams::all()
                .iter()
                .flat_map(|s| s.kinds().into_iter().filter(move |kind| *kind != s.name()))
                .map(|kind| (kind, FastMap::default()))
                .collect(),
            followed: AtomicI64::new(head),
            decided: FastMap::default(),
        });
        for (_, cache) in &models.caches {
            cache.load(&models).await?;
        }
        Ok(models)
    }

    /// The cache of one read model type.
    ///
    /// # Panics
    /// When `M` is not in the stream-type registry (a programming error the registry's
    /// tests rule out).
    pub fn cache<M: ReadModel>(&self) -> &ModelCache<M> {
        self.caches
            .iter()
            .find(|(kind, _)| *kind == M::KIND)
            .and_then(|(_, c)| c.as_any().downcast_ref::<ModelCache<M>>())
            .unwrap_or_else(|| panic!("read model {} is not in the stream-type registry", M::KIND))
    }

    fn remember<M: ReadModel>(&self, cache: &ModelCache<M>, id: &str, version: i64, model: Arc<M>) {
        let lookups = model.lookup_keys();
        if cache.put(id, version, model) {
            for (kind, key) in lookups {
                self.lookups_of(kind).insert(key, id.to_string());
            }
        }
    }

    /// The id a lookup key (an org slug, a key hash) points to.
    pub fn lookup(&self, kind: &'static str, key: &str) -> Option<String> {
        self.lookups_of(kind).get(key).map(|id| id.clone())
    }

    /// The cached model a lookup key points to (what `lookup` and `cache().get` give,
    /// without copying the id out between the two).
    pub fn looked_up<M: ReadModel>(&self, kind: &'static str, key: &str) -> Option<Cached<M>> {
        let id = self.lookups_of(kind).get(key)?;
        self.cache::<M>().get(id.as_str())
    }

    /// # Panics
    /// When no model type declares `kind` in its `LOOKUPS` (a programming error the
    /// registry's tests rule out).
    fn lookups_of(&self, kind: &str) -> &FastMap<String, String> {
        self.lookups
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, lookups)| lookups)
            .unwrap_or_else(|| panic!("lookup {kind} is not declared by any read model"))
    }

    /// Records a model this process has just committed.
    pub fn committed<M: ReadModel>(&self, id: &str, version: i64, model: Arc<M>) {
        self.remember(self.cache::<M>(), id, version, model);
    }

    /// Offers the model that event `event_id` (not yet committed) leads to, until the
    /// returned guard is dropped.
    pub fn deciding<M: ReadModel>(&self, event_id: uuid::Uuid, model: Arc<M>) -> Deciding<'_> {
        self.decided.insert(event_id, Box::new(model));
        Deciding { models: self, event_id }
    }

    fn take_decided<M: ReadModel>(&self, event_id: uuid::Uuid) -> Option<Arc<M>> {
        let (_, model) = self.decided.remove(&event_id)?;
        model.downcast::<Arc<M>>().ok().map(|m| *m)
    }

    /// Loads one model from the store into the cache (for a lookup miss that another
    /// process may have just written).
    pub async fn refresh<M: ReadModel>(&self, id: &str) -> Result<Option<Cached<M>>, StoreError> {
        if let Some(row) = self.store.load_model(M::KIND, id).await? {
            let model: M = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(format!("{} {}: {e}", row.kind, row.id)))?;
            self.remember(self.cache::<M>(), id, row.version, Arc::new(model));
        }
        Ok(self.cache::<M>().get(id))
    }

    /// A model by id as this process knows it, asking the store on a miss (a model another
    /// replica wrote a moment ago).
    pub async fn get_or_load<M: ReadModel>(&self, id: &str) -> Result<Option<Cached<M>>, StoreError> {
        match self.cache::<M>().get(id) {
            Some(cached) => Ok(Some(cached)),
            None => self.refresh::<M>(id).await,
        }
    }

    /// A model of `org` that is not deleted, by id.
    pub async fn live_in_org<M: ReadModel>(&self, org: uuid::Uuid, id: uuid::Uuid) -> Result<Option<Cached<M>>, StoreError> {
        let found = self.get_or_load::<M>(&id.to_string()).await?;
        Ok(found.filter(|c| !c.model.is_deleted() && c.model.org_id() == org.to_string()))
    }

    /// Every model of `org` that is not deleted.
    pub fn all_live_in_org<M: ReadModel>(&self, org: uuid::Uuid) -> Vec<Arc<M>> {
        let org = org.to_string();
        self.cache::<M>()
            .all()
            .into_iter()
            .map(|c| c.model)
            .filter(|m| !m.is_deleted() && m.org_id() == org)
            .collect()
    }

    /// The log position this cache reflects.
    pub fn position(&self) -> i64 {
        self.followed.load(Ordering::Acquire)
    }

    /// Applies every event committed after what the cache has seen.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let after = self.position();
            let page = self.store.read_all(after, 1000, None).await?;
            let Some(last) = page.last().map(|e| e.global_position) else {
                return Ok(());
            };
            for envelope in &page {
                self.apply(envelope).await?;
            }
            self.followed.fetch_max(last, Ordering::AcqRel);
        }
    }

    async fn apply(&self, envelope: &EventEnvelope) -> Result<(), StoreError> {
        match self.caches.iter().find(|(kind, _)| *kind == envelope.stream_type) {
            Some((_, cache)) => cache.apply(self, envelope).await,
            // A stream type this build does not know has no read model here.
            None => Ok(()),
        }
    }

    /// Follows the log until `shutdown` fires: woken by this process's commits, and
    /// polling for other processes' commits.
    pub async fn follow(self: Arc<Self>, poll: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut commits = self.store.commits();
        let mut woken_by_commit = false;
        loop {
            // This process's commits are taken from the writer's memory, on a poll too (a
            // poll that wins the race with a commit's wake-up must not read back and decode
            // what was just written); a poll, or a commit only the log has, then reads the
            // log from there.
            let taken = self.apply_recent().await;
            if !taken || !woken_by_commit {
                if let Err(error) = self.catch_up().await {
                    tracing::warn!(%error, "read-model cache could not follow the log");
                }
            }
            woken_by_commit = tokio::select! {
                _ = commits.changed() => true,
                _ = tokio::time::sleep(poll) => false,
                _ = shutdown.changed() => return,
            };
        }
    }

    /// Applies the events this process committed since the cache's position, when the
    /// store still holds them; `false` when the log must be read instead.
    async fn apply_recent(&self) -> bool {
        let after = self.position();
        let Some(events) = self.store.recent(after) else {
            return false;
        };
        for envelope in &events {
            if let Err(error) = self.apply(envelope).await {
                tracing::warn!(%error, "read-model cache could not apply a commit");
                return false;
            }
        }
        if let Some(last) = events.last() {
            self.followed.fetch_max(last.global_position, Ordering::AcqRel);
        }
        true
    }
}
