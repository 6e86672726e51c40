//! The event store: one trait, two backends (PostgreSQL and SQLite) with one behaviour.
//!
//! Appends go through a group-commit writer per process: concurrent appends are batched
//! into one transaction (a refused append fails alone), and every caller is answered only
//! after that transaction commits. The transaction locks the single `log_head` row first,
//! which makes global positions contiguous and equal to commit order, so tailing
//! `read_all` can never skip an event. That control flow is written once, in `write`, over
//! the `write::Backend` statements each backend provides.
//!
//! Only this module writes SQL.

pub mod cache;
pub mod console_sessions;
pub mod data_keys;
pub mod dead_letters;
mod postgres;
mod rows;
mod sqlite;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetledger_events::chain::{ChainBreak, StreamVerifier};
use fleetledger_events::{EventEnvelope, Metadata, NewEvent};
use tokio::sync::watch;

pub use console_sessions::ConsoleSession;
pub use data_keys::{DataKey, NewDataKey};
pub use dead_letters::{DeadLetter, Parking, Redriven};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The optimistic-concurrency token of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version (used only by system bookkeeping).
    Any,
    /// The stream must be at exactly this version; 0 means it must not exist yet.
    Exact(i64),
    /// The stream must be at `version` with `event_id` as its last event: an append
    /// decided on a predecessor that was not committed yet when it was decided. The id
    /// keeps it from landing on another writer's event of the same version when the
    /// predecessor lost its race.
    After { version: i64, event_id: uuid::Uuid },
}

impl ExpectedVersion {
    /// The version the stream must be at, when one is required.
    pub fn version(&self) -> Option<i64> {
        match self {
            ExpectedVersion::Any => None,
            ExpectedVersion::Exact(version) | ExpectedVersion::After { version, .. } => Some(*version),
        }
    }
}

/// A read-model row written in the same transaction as the events it reflects.
#[derive(Clone, Debug)]
pub struct ReadModelWrite {
    pub kind: String,
    pub id: String,
    pub org_id: String,
    pub version: i64,
    pub doc: String,
}

/// What folding an event into a read model needs, without its metadata and hashes.
#[derive(Clone, Debug)]
pub struct FoldEvent {
    pub global_position: i64,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    /// The stored JSON text, decoded straight into typed events by the fold.
    pub data: Box<serde_json::value::RawValue>,
}

/// A stream's read model at a version, kept so folds can start near where they end.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Snapshot {
    pub stream_id: String,
    pub version: i64,
    pub kind: String,
    pub doc: String,
}

/// Stream versions between snapshots.
pub const SNAPSHOT_EVERY: i64 = 256;

/// What an `Idempotency-Key` is bound to: the request that first used it and, once that
/// request has been answered, its response (`status` 0 while it is in progress).
#[derive(Clone, Debug)]
pub struct IdempotencyRecord {
    pub org_id: String,
    pub key: String,
    pub request_hash: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl IdempotencyRecord {
    /// Whether the request holding the key has not been answered yet.
    pub fn in_progress(&self) -> bool {
        self.status == 0
    }
}

/// The outcome of claiming an idempotency key.
#[derive(Clone, Debug)]
pub enum IdempotencyClaim {
    /// The key was free (or its record had expired): this request holds it now.
    Claimed,
    /// Another request holds the key.
    Taken(IdempotencyRecord),
}

/// How long an idempotency record answers for its key.
pub const IDEMPOTENCY_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub stream_type: String,
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub metadata: Metadata,
    pub read_models: Vec<ReadModelWrite>,
    pub snapshots: Vec<Snapshot>,
}

/// An append handed to the writer, not yet answered.
pub struct Submitted(tokio::sync::oneshot::Receiver<Result<Appended, StoreError>>);

impl Submitted {
    /// Waits until the append committed or was refused.
    pub async fn committed(self) -> Result<Appended, StoreError> {
        self.0.await.map_err(|_| StoreError::WriterStopped)?
    }
}

#[derive(Clone, Debug)]
pub struct Appended {
    pub events: Vec<EventEnvelope>,
}

impl Appended {
    pub fn stream_version(&self) -> i64 {
        self.events.last().map(|e| e.stream_version).unwrap_or(0)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredModel {
    pub kind: String,
    pub id: String,
    pub org_id: String,
    pub version: i64,
    pub doc: String,
}

/// The last event of a stream, with its read model's `name` when the model has one: a row
/// of a list of an org's resources.
#[derive(Clone, Debug)]
pub struct Latest {
    pub event: EventEnvelope,
    pub name: Option<String>,
}

/// The largest event data the log takes, in bytes of JSON: a bound on what one request can
/// make the log, every replay and every reader carry, since some changes record more than
/// their body (an instance's overrides as flattened paths, up to 4 MiB, beside the config
/// they change; a profile's config twice). An
/// event larger than a NATS message is relayed without its data (`bus::without_data`).
pub const MAX_EVENT_DATA_BYTES: usize = 8 * 1024 * 1024;

/// Why a change whose text holds NUL is refused: PostgreSQL's JSON columns cannot hold it,
/// and both backends keep the same log.
pub const NUL_IN_TEXT: &str = "The change cannot be recorded: text must not contain the NUL character (\\u0000)";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream_id} is at version {actual}, not {expected}")]
    Conflict { stream_id: String, expected: i64, actual: i64 },
    #[error("the change is too large to record: its event would hold {bytes} bytes, over the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
    /// The log cannot hold what the change carries (see `NUL_IN_TEXT`).
    #[error("{0}")]
    Unstorable(&'static str),
    #[error("the log is not empty; import needs an empty store")]
    NotEmpty,
    #[error("imported events must continue the log without gaps (expected position {expected}, got {actual})")]
    ImportGap { expected: i64, actual: i64 },
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// An event with this `event_id` is already in the log: a redelivered outcome.
    #[error("an event with this event_id is already stored")]
    DuplicateEvent,
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// Opening found no store where one must exist: `place` is the SQLite file's path, or
    /// the PostgreSQL URL with its password masked; `hint` says how to make one.
    #[error("there is no store at {place}; {hint}")]
    Missing { place: String, hint: &'static str },
    /// The PostgreSQL server did not answer; `place` is its URL with the password masked.
    #[error("cannot reach PostgreSQL at {place}: {cause}")]
    Unreachable { place: String, cause: String },
    // sqlx's errors already show their causes in their text, so these keep no source: a
    // report of the chain would name each cause twice.
    #[error("{0}")]
    Database(sqlx::Error),
    #[error("{0}")]
    Migrate(sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(error)
    }
}

/// Result of verifying hash chains.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verification {
    pub ok: bool,
    pub checked: u64,
    pub first_bad: Option<ChainBreak>,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Queues an append behind every append submitted before it and answers at once;
    /// appends commit in the order they were submitted, and the answer resolves when this
    /// one committed or was refused. Refuses at once what the log cannot take.
    async fn submit(&self, request: AppendRequest) -> Result<Submitted, StoreError>;
    /// Appends events to one stream atomically with their read models; answers only after
    /// the commit.
    async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.submit(request).await?.committed().await
    }
    /// A stream's events from `from_version` (1-based), in version order.
    async fn read_stream(&self, stream_id: &str, from_version: i64) -> Result<Vec<EventEnvelope>, StoreError>;
    /// A stream's events from `from_version` through `to_version`, in version order.
    async fn read_stream_between(&self, stream_id: &str, from_version: i64, to_version: i64) -> Result<Vec<EventEnvelope>, StoreError>;
    /// The newest snapshot of a stream at or below `version`.
    async fn snapshot_at(&self, stream_id: &str, version: i64) -> Result<Option<Snapshot>, StoreError>;
    /// The stream's last version recorded at or before `at` (0 when none).
    async fn version_at(&self, stream_id: &str, at: DateTime<Utc>) -> Result<i64, StoreError>;
    /// Up to `limit` events after `after`, in global order, optionally of one stream type.
    async fn read_all(&self, after: i64, limit: i64, stream_type: Option<&str>) -> Result<Vec<EventEnvelope>, StoreError>;
    /// Like `read_all`, only one organization's events, found through an index on the
    /// org: a reader of one org never pays for a log full of other orgs' events.
    async fn read_org(&self, after: i64, limit: i64, org_id: &str, stream_type: Option<&str>) -> Result<Vec<EventEnvelope>, StoreError>;
    /// Like `read_all`, reading only what folding needs (for `rebuild`).
    async fn read_all_for_fold(&self, after: i64, limit: i64) -> Result<Vec<FoldEvent>, StoreError>;
    /// A stream's current version, 0 when it has no events.
    async fn stream_version(&self, stream_id: &str) -> Result<i64, StoreError>;
    /// The last committed global position.
    async fn head(&self) -> Result<i64, StoreError>;
    async fn load_model(&self, kind: &str, id: &str) -> Result<Option<StoredModel>, StoreError>;
    async fn list_models(&self, kind: &str) -> Result<Vec<StoredModel>, StoreError>;
    /// The last event of every stream of `org_id` whose read model is of one of `kinds`
    /// (one indexed join of `read_models` and `events`, not a scan of the log).
    async fn latest_in_org(&self, org_id: &str, kinds: &[&str]) -> Result<Vec<Latest>, StoreError>;
    /// Binds an unused (or expired) idempotency key to a request, or says who holds it.
    async fn claim_idempotency(
        &self,
        org_id: &str,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// Takes over a claim whose holder never answered (it was claimed at `claimed_at`).
    /// `false` when someone else took it over first.
    async fn take_over_idempotency(
        &self,
        org_id: &str,
        key: &str,
        claimed_at: DateTime<Utc>,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records the response of the request holding the key.
    async fn complete_idempotency(&self, record: &IdempotencyRecord) -> Result<(), StoreError>;
    /// Frees a key whose request failed without a response worth replaying.
    async fn release_idempotency(&self, org_id: &str, key: &str, request_hash: &str) -> Result<(), StoreError>;
    /// Whether the log holds an event of the org written with this idempotency key since `since`.
    async fn idempotency_key_used(&self, org_id: &str, key: &str, since: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn record_key_usage(&self, usage: &[(String, DateTime<Utc>)]) -> Result<(), StoreError>;
    async fn key_usage(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Replaces every read model of `kinds` with `rows` in one transaction, provided the
    /// log's head is still `through` (holding appends off meanwhile). `false` when the log
    /// has moved on: fold the new events and try again.
    async fn swap_read_models(
        &self,
        kinds: &[String],
        rows: &[ReadModelWrite],
        snapshots: &[Snapshot],
        through: i64,
    ) -> Result<bool, StoreError>;
    /// Writes events exactly as exported (positions, ids, hashes, times) right after the
    /// head: a whole log into an empty store, or its next part after the parts before.
    async fn import_events(&self, events: &[EventEnvelope]) -> Result<(), StoreError>;
    /// Whether an event with this id is in the log.
    async fn event_exists(&self, event_id: uuid::Uuid) -> Result<bool, StoreError>;
    /// A consumer's last handled position (0 when it has none).
    async fn checkpoint(&self, name: &str) -> Result<i64, StoreError>;
    /// Moves a consumer's checkpoint forward (never back).
    async fn save_checkpoint(&self, name: &str, position: i64) -> Result<(), StoreError>;
    /// Tries to become the one holder of `name` across every process sharing this store.
    /// The lease lasts while the returned value is alive and `LeaderLease::alive` is true.
    async fn try_lead(&self, name: &str) -> Result<Option<LeaderLease>, StoreError>;
    /// Wakes whenever a commit is known: this process's, or (PostgreSQL) any process's via
    /// LISTEN/NOTIFY. Carries the newest head position seen.
    fn commits(&self) -> watch::Receiver<i64>;
    /// Every event after `after` through the newest head `commits` announced, when this
    /// process committed all of them a moment ago and still holds them; `None` means
    /// read the log. A follower woken by a commit takes it from here instead of reading
    /// back what was just written; polling the log still finds what this misses.
    fn recent(&self, after: i64) -> Option<Vec<EventEnvelope>>;
    fn backend(&self) -> &'static str;

    // Data keys (`data_keys`): mutable, beside the log and never in it; see `crate::secrets`.

    /// The org's live data key, if it has one.
    async fn live_data_key(&self, org_id: &str) -> Result<Option<DataKey>, StoreError>;
    /// A data key by id, live or destroyed.
    async fn data_key(&self, kid: &str) -> Result<Option<DataKey>, StoreError>;
    /// Every data key, live and destroyed.
    async fn data_keys(&self) -> Result<Vec<DataKey>, StoreError>;
    /// Adds an org's live data key, unless it has one already (the unique index settles a
    /// race) or live keys are wrapped by another master.
    async fn add_data_key(&self, key: &DataKey) -> Result<NewDataKey, StoreError>;
    /// Destroys every live data key of an org: the wrapped key is erased and the row kept
    /// as a tombstone. Returns how many were destroyed.
    async fn destroy_data_keys(&self, org_id: &str, at: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Re-wraps every live data key in one transaction (other writers to the table wait),
    /// recording `master_id` as their new master; any `rewrap` error changes nothing.
    async fn rewrap_data_keys(&self, master_id: &str, rewrap: data_keys::Rewrap<'_>) -> Result<u64, StoreError>;

    // Dead letters (`dead_letters`): events parked after their side effect failed every
    // retry; see `dead_letters` and `crate::workers`.

    /// Parks an event (nothing happens when this worker parked it already).
    async fn park(&self, parking: &Parking<'_>) -> Result<(), StoreError>;
    /// Every parked event, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    /// Asks for a re-drive of one parked event, or of all with `None`; answers those asked.
    async fn request_redrive(&self, id: Option<i64>) -> Result<Vec<DeadLetter>, StoreError>;
    /// Takes one entry of `worker` asked for re-drive and held by no one, for `holder`,
    /// for `lease` (then another may take it).
    async fn claim_redrive(&self, worker: &str, holder: &str, lease: std::time::Duration) -> Result<Option<DeadLetter>, StoreError>;
    /// Records how a claimed entry's re-drive ended; `false` when `holder` lost its claim.
    async fn settle_redrive(&self, id: i64, holder: &str, redriven: Redriven<'_>) -> Result<bool, StoreError>;
    /// Parked events per stream type.
    async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;

    // Console sessions (`console_sessions`): mutable, beside the log; see `crate::api::console`.

    /// Records a new session (and forgets sessions that have ended).
    async fn open_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;
    /// The session whose token hashes to `token_hash`, unless it has ended by `now`.
    async fn console_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<ConsoleSession>, StoreError>;
    /// Ends a session (signing out).
    async fn close_console_session(&self, token_hash: &str) -> Result<(), StoreError>;
}

/// Whether opening a store may create it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Create the SQLite file (and its directory) when missing: `serve`, `migrate`, `import`.
    CreateIfMissing,
    /// Open only a store that exists, else [`StoreError::Missing`]: every other command, so
    /// that a mistyped data dir is reported instead of answered from a new empty store.
    Existing,
}

/// Opens the store a URL names (`postgres://…` or `sqlite://path`), creating a missing
/// SQLite store, and migrates it.
pub async fn connect(url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    connect_with(url, Open::CreateIfMissing).await
}

/// Opens the store a URL names and migrates it; `open` says whether it may be created. A
/// PostgreSQL database is never created: a missing one is [`StoreError::Missing`].
pub async fn connect_with(url: &str, open: Open) -> Result<Arc<dyn EventStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match PgStore::connect(url).await {
            Ok(store) => Ok(Arc::new(store)),
            // 3D000 invalid_catalog_name: the database does not exist.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.code().as_deref() == Some("3D000") => Err(StoreError::Missing {
                place: masked_url(url),
                hint: "create the database (e.g. `createdb`), then run `fleetledger migrate`",
            }),
            // The pool only says it gave up waiting; one connection attempt says why.
            Err(StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) => {
                use sqlx::Connection;
                let cause = match sqlx::PgConnection::connect(url).await {
                    Err(sqlx::Error::Io(io)) => io.to_string(),
                    Err(other) => other.to_string(),
                    Ok(_) => "no connection within the pool's timeout".to_string(),
                };
                Err(StoreError::Unreachable {
                    place: masked_url(url),
                    cause,
                })
            }
            Err(e) => Err(e),
        }
    } else {
        Ok(Arc::new(SqliteStore::connect(url, open == Open::CreateIfMissing).await?))
    }
}

/// A database URL fit for messages: its password, if any, is `***`.
pub fn masked_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "the configured DATABASE_URL".into(),
    }
}

/// Verifies every stream's chain and that positions are contiguous, reading the log in
/// pages. Stops at the first break.
pub async fn verify_log(store: &dyn EventStore, mut progress: impl FnMut(u64)) -> Result<Verification, StoreError> {
    let mut streams: HashMap<String, StreamVerifier> = HashMap::new();
    let mut after = 0;
    let mut checked = 0;
    loop {
        let page = store.read_all(after, 1000, None).await?;
        if page.is_empty() {
            return Ok(Verification {
                ok: true,
                checked,
                first_bad: None,
            });
        }
        for e in &page {
            if e.global_position != after + 1 {
                let first_bad = ChainBreak {
                    stream: format!("{}/{}", e.stream_type, e.stream_id),
                    version: e.stream_version,
                    global_position: e.global_position,
                    event_id: e.event_id.to_string(),
                    expected: format!("position {}", after + 1),
                    actual: format!("position {}", e.global_position),
                };
                return Ok(Verification {
                    ok: false,
                    checked,
                    first_bad: Some(first_bad),
                });
            }
            if let Err(first_bad) = streams.entry(e.stream_id.clone()).or_default().check(e) {
                return Ok(Verification {
                    ok: false,
                    checked,
                    first_bad: Some(first_bad),
                });
            }
            after = e.global_position;
            checked += 1;
        }
        progress(checked);
    }
}

/// Verifies the chains of an org's streams (its events, through the org index).
pub async fn verify_where(store: &dyn EventStore, org_id: &str) -> Result<Verification, StoreError> {
    let mut streams: HashMap<String, StreamVerifier> = HashMap::new();
    let mut after = 0;
    let mut checked = 0;
    loop {
        let page = store.read_org(after, 1000, org_id, None).await?;
        let Some(last) = page.last().map(|e| e.global_position) else {
            return Ok(Verification {
                ok: true,
                checked,
                first_bad: None,
            });
        };
        for e in page.iter() {
            if let Err(first_bad) = streams.entry(e.stream_id.clone()).or_default().check(e) {
                return Ok(Verification {
                    ok: false,
                    checked,
                    first_bad: Some(first_bad),
                });
            }
            checked += 1;
        }
        after = last;
    }
}

/// One stream's verification: how many of its events matched their chain, and the first
/// that did not.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamCheck {
    pub stream_type: String,
    pub stream_id: String,
    pub checked: u64,
    pub first_bad: Option<ChainBreak>,
}

/// Verifies the chain of every stream of an org, each on its own: a break stops its
/// stream's check, not the others'. Streams in the order they began.
pub async fn verify_each(store: &dyn EventStore, org_id: &str) -> Result<Vec<StreamCheck>, StoreError> {
    let mut order: Vec<StreamCheck> = Vec::new();
    let mut streams: HashMap<String, (usize, StreamVerifier)> = HashMap::new();
    let mut after = 0;
    loop {
        let page = store.read_org(after, 1000, org_id, None).await?;
        let Some(last) = page.last().map(|e| e.global_position) else {
            return Ok(order);
        };
        for e in page.iter() {
            let (index, verifier) = streams.entry(e.stream_id.clone()).or_insert_with(|| {
                order.push(StreamCheck {
                    stream_type: e.stream_type.clone(),
                    stream_id: e.stream_id.clone(),
                    checked: 0,
                    first_bad: None,
                });
                (order.len() - 1, StreamVerifier::default())
            });
            let check = &mut order[*index];
            if check.first_bad.is_some() {
                continue;
            }
            match verifier.check(e) {
                Ok(()) => check.checked += 1,
                Err(first_bad) => check.first_bad = Some(first_bad),
            }
        }
        after = last;
    }
}

/// Verifies one stream's chain.
pub async fn verify_stream(store: &dyn EventStore, stream_id: &str) -> Result<Verification, StoreError> {
    let events = store.read_stream(stream_id, 1).await?;
    let mut verifier = StreamVerifier::default();
    for (i, e) in events.iter().enumerate() {
        if let Err(first_bad) = verifier.check(e) {
            return Ok(Verification {
                ok: false,
                checked: i as u64,
                first_bad: Some(first_bad),
            });
        }
    }
    Ok(Verification {
        ok: true,
        checked: events.len() as u64,
        first_bad: None,
    })
}

/// Leadership of a named role (the relay). Dropping it gives the role up.
pub struct LeaderLease {
    holder: Box<dyn LeaseHolder>,
}

impl LeaderLease {
    /// Whether the lease still holds (its connection is up).
    pub async fn alive(&mut self) -> bool {
        self.holder.alive().await
    }
}

#[async_trait]
trait LeaseHolder: Send {
    async fn alive(&mut self) -> bool;
}

fn headers_to_json(headers: &[(String, String)]) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".into())
}

fn headers_from_json(text: &str) -> Vec<(String, String)> {
    serde_json::from_str(text).unwrap_or_default()
}
