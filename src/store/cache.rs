//! The read-model cache: every read model held in memory at its stream version, filled
//! from `read_models` at start and kept current from the log, so writes made by another
//! process or replica appear here within the follow interval.
//!
//! Applying an event is idempotent: a model at or past the event's stream version ignores
//! it, the next version is folded in, and a gap reloads the row from the store.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use fleetledger_events::{stream_type, DomainEvent, EventEnvelope};
use fleetledger_projections::container::{ContainerAgent, ContainerProfile, Skill};
use fleetledger_projections::instance::Instance;
use fleetledger_projections::mission_control::{Board, Gateway, McAgent};
use fleetledger_projections::{fleet::Fleet, key::Key, org::Org, profile::Profile, runtime::Runtime, ReadModel};

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
    by_id: DashMap<String, Cached<M>>,
}

impl<M: ReadModel> Default for ModelCache<M> {
    fn default() -> Self {
        ModelCache { by_id: DashMap::new() }
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
    fn put(&self, id: &str, version: i64, model: M) -> bool {
        let mut newer = false;
        self.by_id
            .entry(id.to_string())
            .and_modify(|c| {
                if version > c.version {
                    *c = Cached {
                        version,
                        model: Arc::new(model.clone()),
                    };
                    newer = true;
                }
            })
            .or_insert_with(|| {
                newer = true;
                Cached {
                    version,
                    model: Arc::new(model.clone()),
                }
            });
        newer
    }

    fn version_of(&self, id: &str) -> i64 {
        self.by_id.get(id).map(|c| c.version).unwrap_or(0)
    }
}

/// All read models of this process.
pub struct ReadModels {
    store: Arc<dyn EventStore>,
    pub orgs: ModelCache<Org>,
    pub keys: ModelCache<Key>,
    pub fleets: ModelCache<Fleet>,
    pub profiles: ModelCache<Profile>,
    pub runtimes: ModelCache<Runtime>,
    pub gateways: ModelCache<Gateway>,
    pub boards: ModelCache<Board>,
    pub agents: ModelCache<McAgent>,
    pub instances: ModelCache<Instance>,
    pub skills: ModelCache<Skill>,
    pub container_profiles: ModelCache<ContainerProfile>,
    pub container_agents: ModelCache<ContainerAgent>,
    lookups: DashMap<(&'static str, String), String>,
    followed: AtomicI64,
}

impl ReadModels {
    /// Loads every stored read model; the cache then follows the log from the head seen
    /// before loading, so nothing committed meanwhile is missed.
    pub async fn load(store: Arc<dyn EventStore>) -> Result<Arc<Self>, StoreError> {
        let head = store.head().await?;
        let models = Arc::new(ReadModels {
            store: store.clone(),
            orgs: ModelCache::default(),
            keys: ModelCache::default(),
            fleets: ModelCache::default(),
            profiles: ModelCache::default(),
            runtimes: ModelCache::default(),
            gateways: ModelCache::default(),
            boards: ModelCache::default(),
            agents: ModelCache::default(),
            instances: ModelCache::default(),
            skills: ModelCache::default(),
            container_profiles: ModelCache::default(),
            container_agents: ModelCache::default(),
            lookups: DashMap::new(),
            followed: AtomicI64::new(head),
        });
        models.load_kind(&models.orgs).await?;
        models.load_kind(&models.keys).await?;
        models.load_kind(&models.fleets).await?;
        models.load_kind(&models.profiles).await?;
        models.load_kind(&models.runtimes).await?;
        models.load_kind(&models.gateways).await?;
        models.load_kind(&models.boards).await?;
        models.load_kind(&models.agents).await?;
        models.load_kind(&models.instances).await?;
        models.load_kind(&models.container_agents).await?;
        models.load_kind(&models.container_profiles).await?;
        models.load_kind(&models.skills).await?;
        Ok(models)
    }

    async fn load_kind<M: ReadModel>(&self, cache: &ModelCache<M>) -> Result<(), StoreError> {
        for row in self.store.list_models(M::KIND).await? {
            let model: M = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(format!("{} {}: {e}", row.kind, row.id)))?;
            self.remember(cache, &row.id, row.version, model);
        }
        Ok(())
    }

    fn remember<M: ReadModel>(&self, cache: &ModelCache<M>, id: &str, version: i64, model: M) {
        let lookups = model.lookup_keys();
        if cache.put(id, version, model) {
            for (kind, key) in lookups {
                self.lookups.insert((kind, key), id.to_string());
            }
        }
    }

    /// The id a lookup key (an org slug, a key hash) points to.
    pub fn lookup(&self, kind: &'static str, key: &str) -> Option<String> {
        self.lookups.get(&(kind, key.to_string())).map(|id| id.clone())
    }

    /// Records a model this process has just committed.
    pub fn committed<M: ReadModel>(&self, id: &str, version: i64, model: M)
    where
        Self: CacheOf<M>,
    {
        self.remember(self.cache(), id, version, model);
    }

    /// Loads one model from the store into the cache (for a lookup miss that another
    /// process may have just written).
    pub async fn refresh<M: ReadModel>(&self, id: &str) -> Result<Option<Cached<M>>, StoreError>
    where
        Self: CacheOf<M>,
    {
        if let Some(row) = self.store.load_model(M::KIND, id).await? {
            let model: M = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(format!("{} {}: {e}", row.kind, row.id)))?;
            self.remember(self.cache(), id, row.version, model);
        }
        Ok(self.cache().get(id))
    }

    /// A model by id as this process knows it, asking the store on a miss (a model another
    /// replica wrote a moment ago).
    pub async fn get_or_load<M: ReadModel>(&self, id: &str) -> Result<Option<Cached<M>>, StoreError>
    where
        Self: CacheOf<M>,
    {
        match self.cache().get(id) {
            Some(cached) => Ok(Some(cached)),
            None => self.refresh::<M>(id).await,
        }
    }

    /// A model of `org` that is not deleted, by id.
    pub async fn live_in_org<M: ReadModel>(&self, org: uuid::Uuid, id: uuid::Uuid) -> Result<Option<Arc<M>>, StoreError>
    where
        Self: CacheOf<M>,
    {
        let found = self.get_or_load::<M>(&id.to_string()).await?;
        Ok(found.map(|c| c.model).filter(|m| !m.is_deleted() && m.org_id() == org.to_string()))
    }

    /// Every model of `org` that is not deleted.
    pub fn all_live_in_org<M: ReadModel>(&self, org: uuid::Uuid) -> Vec<Arc<M>>
    where
        Self: CacheOf<M>,
    {
        let org = org.to_string();
        self.cache()
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
        match envelope.stream_type.as_str() {
            stream_type::ORG => self.apply_to(&self.orgs, envelope).await,
            stream_type::KEY => self.apply_to(&self.keys, envelope).await,
            stream_type::FLEET => self.apply_to(&self.fleets, envelope).await,
            stream_type::PROFILE => self.apply_to(&self.profiles, envelope).await,
            stream_type::RUNTIME => self.apply_to(&self.runtimes, envelope).await,
            stream_type::GATEWAY => self.apply_to(&self.gateways, envelope).await,
            stream_type::BOARD => self.apply_to(&self.boards, envelope).await,
            stream_type::MC_AGENT => self.apply_to(&self.agents, envelope).await,
            stream_type::INSTANCE => self.apply_to(&self.instances, envelope).await,
            stream_type::CONTAINER_AGENT => self.apply_to(&self.container_agents, envelope).await,
            stream_type::CONTAINER_PROFILE => self.apply_to(&self.container_profiles, envelope).await,
            stream_type::SKILL => self.apply_to(&self.skills, envelope).await,
            _ => Ok(()),
        }
    }

    async fn apply_to<M: ReadModel>(&self, cache: &ModelCache<M>, envelope: &EventEnvelope) -> Result<(), StoreError> {
        let id = envelope.stream_id.as_str();
        let cached = cache.version_of(id);
        if cached >= envelope.stream_version {
            return Ok(());
        }
        if cached == envelope.stream_version - 1 {
            let event = M::Event::from_envelope(envelope).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let before = cache.get(id).map(|c| (*c.model).clone());
            if let Some(model) = M::evolve(before, &event) {
                self.remember(cache, id, envelope.stream_version, model);
            }
            return Ok(());
        }
        if let Some(row) = self.store.load_model(M::KIND, id).await? {
            let model: M = serde_json::from_str(&row.doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.remember(cache, id, row.version, model);
        }
        Ok(())
    }

    /// Follows the log until `shutdown` fires: woken by this process's commits, and
    /// polling for other processes' commits.
    pub async fn follow(self: Arc<Self>, poll: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut commits = self.store.commits();
        loop {
            if let Err(error) = self.catch_up().await {
                tracing::warn!(%error, "read-model cache could not follow the log");
            }
            tokio::select! {
                _ = commits.changed() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Which cache holds a model type.
pub trait CacheOf<M> {
    fn cache(&self) -> &ModelCache<M>;
}

impl CacheOf<Org> for ReadModels {
    fn cache(&self) -> &ModelCache<Org> {
        &self.orgs
    }
}
impl CacheOf<Key> for ReadModels {
    fn cache(&self) -> &ModelCache<Key> {
        &self.keys
    }
}
impl CacheOf<Fleet> for ReadModels {
    fn cache(&self) -> &ModelCache<Fleet> {
        &self.fleets
    }
}
impl CacheOf<Profile> for ReadModels {
    fn cache(&self) -> &ModelCache<Profile> {
        &self.profiles
    }
}
impl CacheOf<Runtime> for ReadModels {
    fn cache(&self) -> &ModelCache<Runtime> {
        &self.runtimes
    }
}
impl CacheOf<Gateway> for ReadModels {
    fn cache(&self) -> &ModelCache<Gateway> {
        &self.gateways
    }
}
impl CacheOf<Board> for ReadModels {
    fn cache(&self) -> &ModelCache<Board> {
        &self.boards
    }
}
impl CacheOf<McAgent> for ReadModels {
    fn cache(&self) -> &ModelCache<McAgent> {
        &self.agents
    }
}
impl CacheOf<Instance> for ReadModels {
    fn cache(&self) -> &ModelCache<Instance> {
        &self.instances
    }
}
impl CacheOf<Skill> for ReadModels {
    fn cache(&self) -> &ModelCache<Skill> {
        &self.skills
    }
}
impl CacheOf<ContainerProfile> for ReadModels {
    fn cache(&self) -> &ModelCache<ContainerProfile> {
        &self.container_profiles
    }
}
impl CacheOf<ContainerAgent> for ReadModels {
    fn cache(&self) -> &ModelCache<ContainerAgent> {
        &self.container_agents
    }
}
