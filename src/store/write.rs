//! The write path, written once for both backends: the group-commit writer, the control
//! flow of a batch of appends, of an import and of a read-model swap. It runs over
//! `Backend`, whose methods are only the statements that differ between PostgreSQL and
//! SQLite; everything that decides what to write, and what to do when a write is refused,
//! is here.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetledger_events::chain;
use fleetledger_events::envelope::truncate_micros;
use fleetledger_events::EventEnvelope;
use tokio::sync::{mpsc, oneshot, watch};

use super::{AppendRequest, Appended, ExpectedVersion, ReadModelWrite, Snapshot, StoreError};

/// Rows per multi-row statement. PostgreSQL binds at most 65,535 parameters per statement
/// and SQLite 32,766; an event row has 12, so 1,000 rows stay well inside both.
const ROWS_PER_STATEMENT: usize = 1000;

/// Which unique key a refused insert of events ran into.
pub(super) enum Violation {
    /// `(stream_id, stream_version)`: another append took the version first.
    StreamVersion,
    /// `event_id`: the event is already in the log.
    EventId,
}

/// The statements of the write path that differ per backend. Every transaction begun
/// here holds the log's head until it ends, so positions are assigned in commit order.
#[async_trait]
pub(super) trait Backend: Send + Sync + 'static {
    /// An open transaction; dropping it rolls it back.
    type Tx: Send;

    /// Begins a transaction, locks the single `log_head` row for the rest of it and reads
    /// the head position.
    async fn begin(&self) -> Result<(Self::Tx, i64), sqlx::Error>;
    /// The last version and hash of each of these streams that has events.
    async fn tails(&self, tx: &mut Self::Tx, stream_ids: &[&str]) -> Result<HashMap<String, (i64, String)>, sqlx::Error>;
    /// One multi-row insert of placed events.
    async fn insert_events(&self, tx: &mut Self::Tx, events: &[EventEnvelope]) -> Result<(), sqlx::Error>;
    /// One multi-row upsert of read-model rows, no two of the same `(kind, id)`.
    async fn upsert_read_models(&self, tx: &mut Self::Tx, rows: &[&ReadModelWrite], now: DateTime<Utc>) -> Result<(), sqlx::Error>;
    /// One multi-row insert of snapshots; a snapshot already stored is kept.
    async fn insert_snapshots(&self, tx: &mut Self::Tx, snapshots: &[&Snapshot]) -> Result<(), sqlx::Error>;
    /// Deletes every read model and snapshot of these kinds.
    async fn delete_read_models(&self, tx: &mut Self::Tx, kinds: &[String]) -> Result<(), sqlx::Error>;
    /// Moves the head to `head`, and tells other processes where their notification
    /// channel exists (PostgreSQL's NOTIFY, delivered at commit).
    async fn advance_head(&self, tx: &mut Self::Tx, head: i64) -> Result<(), sqlx::Error>;
    /// Runs a statement that is the same SQL on every backend (the savepoint statements).
    async fn execute(&self, tx: &mut Self::Tx, statement: &'static str) -> Result<(), sqlx::Error>;
    async fn commit(&self, tx: Self::Tx) -> Result<(), sqlx::Error>;
    /// Which unique key a failed insert of events violated, when that is why it failed.
    fn violation(error: &sqlx::Error) -> Option<Violation>;
}

type Job = (AppendRequest, oneshot::Sender<Result<Appended, StoreError>>);

/// The sending half of a group-commit writer.
#[derive(Clone)]
pub(super) struct WriterHandle {
    jobs: mpsc::Sender<Job>,
}

impl WriterHandle {
    /// Starts the writer task of a store; it announces every commit's head on `commits`.
    pub(super) fn start<B: Backend>(backend: B, commits: Arc<watch::Sender<i64>>) -> Self {
        let (jobs, queue) = mpsc::channel(4096);
        tokio::spawn(run_writer(backend, queue, commits));
        WriterHandle { jobs }
    }

    pub(super) async fn append(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((request, reply)).await.map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The group-commit loop: takes whatever appends are queued, commits them in one
/// transaction, then answers every caller and announces the new head.
async fn run_writer<B: Backend>(backend: B, mut jobs: mpsc::Receiver<Job>, commits: Arc<watch::Sender<i64>>) {
    while let Some(batch) = next_batch(&mut jobs).await {
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match commit_batch(&backend, &requests).await {
            Ok((results, head)) => {
                let appended: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|a| a.events.len()).sum();
                metrics::counter!("fleetledger_appends_total").increment(appended as u64);
                announce(&commits, head);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, appends = requests.len(), "append batch failed to commit");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt(format!("the append did not commit: {error}"))));
                }
            }
        }
    }
}

/// Moves the announced head forward (never back).
pub(super) fn announce(commits: &watch::Sender<i64>, head: i64) {
    commits.send_if_modified(|h| {
        let newer = head > *h;
        if newer {
            *h = head;
        }
        newer
    });
}

/// Largest number of appends committed in one transaction.
const MAX_BATCH: usize = 256;

/// Takes the next batch: waits for one job, then takes whatever else is already queued.
async fn next_batch(jobs: &mut mpsc::Receiver<Job>) -> Option<Vec<Job>> {
    let first = jobs.recv().await?;
    // Concurrent appends arrive microseconds apart; letting them queue before taking the
    // batch is what makes one commit serve many.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Each append's result, and the head after the batch.
type BatchResult = Result<(Vec<Result<Appended, StoreError>>, i64), sqlx::Error>;

/// Commits a batch in one transaction. Several appends take the set-based path; anything
/// it does not expect (a duplicate event id, say) rolls it back, and the batch is appended
/// one by one instead, where a refusal fails only its own append.
async fn commit_batch<B: Backend>(backend: &B, requests: &[AppendRequest]) -> BatchResult {
    if requests.len() > 1 {
        match commit_set_based(backend, requests).await {
            Ok(done) => return Ok(done),
            Err(error) => tracing::debug!(%error, "set-based batch failed; appending one by one"),
        }
    }
    commit_one_by_one(backend, requests).await
}

/// A batch in a fixed number of statements: every tail in one query, every event in one
/// multi-row insert, every read model in one upsert. Expected versions are checked
/// against the tails under the head lock, so no statement is expected to fail.
async fn commit_set_based<B: Backend>(backend: &B, requests: &[AppendRequest]) -> BatchResult {
    let (mut tx, start) = backend.begin().await?;
    let mut ids: Vec<&str> = requests.iter().map(|r| r.stream_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tails = backend.tails(&mut tx, &ids).await?;
    let now = Utc::now();
    let mut head = start;
    let mut placed = Vec::new();
    let mut models = Vec::new();
    let mut snapshots = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        match place_events(request, head, tails.get(&request.stream_id).cloned(), now) {
            Ok(events) => {
                if let Some(last) = events.last() {
                    tails.insert(request.stream_id.clone(), (last.stream_version, last.hash.clone()));
                    head = last.global_position;
                }
                placed.extend(events.iter().cloned());
                models.extend(&request.read_models);
                snapshots.extend(&request.snapshots);
                results.push(Ok(Appended { events }));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    write_rows(backend, &mut tx, &placed, &latest_rows(models), &snapshots, now).await?;
    finish(backend, tx, start, head).await?;
    Ok((results, head))
}

/// The savepoint statements: plain SQL, the same on both backends.
const SAVEPOINT: &str = "SAVEPOINT append";
const RELEASE: &str = "RELEASE SAVEPOINT append";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT append";

/// Appends one by one in one transaction, each under its own savepoint when there are
/// several, so a refused append is undone and the ones after it still commit.
async fn commit_one_by_one<B: Backend>(backend: &B, requests: &[AppendRequest]) -> BatchResult {
    let (mut tx, start) = backend.begin().await?;
    let now = Utc::now();
    let savepoints = requests.len() > 1;
    let mut head = start;
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        if savepoints {
            backend.execute(&mut tx, SAVEPOINT).await?;
        }
        match append_one(backend, &mut tx, request, head, now).await {
            Ok(appended) => {
                if savepoints {
                    backend.execute(&mut tx, RELEASE).await?;
                }
                head += appended.events.len() as i64;
                results.push(Ok(appended));
            }
            Err(Failure::Rejected(error)) if savepoints => {
                // ROLLBACK TO undoes the append but leaves its savepoint in place. Releasing
                // it as well means the next append's savepoint is a sibling, not nested in
                // this one: every append runs one level deep however many were refused
                // before it, instead of PostgreSQL stacking one open subtransaction (and
                // SQLite one savepoint) per refusal until the batch commits.
                backend.execute(&mut tx, ROLLBACK_TO).await?;
                backend.execute(&mut tx, RELEASE).await?;
                results.push(Err(error));
            }
            // A lone append needs no savepoint: dropping the transaction undoes it.
            Err(Failure::Rejected(error)) => return Ok((vec![Err(error)], start)),
            Err(Failure::Fatal(error)) => return Err(error),
        }
    }
    finish(backend, tx, start, head).await?;
    Ok((results, head))
}

/// Why one append of a batch did not happen: refused (only it is undone and the batch goes
/// on) or a failure of the whole transaction.
enum Failure {
    Rejected(StoreError),
    Fatal(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Failure::Fatal(error)
    }
}

async fn append_one<B: Backend>(
    backend: &B,
    tx: &mut B::Tx,
    request: &AppendRequest,
    head: i64,
    now: DateTime<Utc>,
) -> Result<Appended, Failure> {
    let mut tails = backend.tails(tx, &[request.stream_id.as_str()]).await?;
    let events = place_events(request, head, tails.remove(&request.stream_id), now).map_err(Failure::Rejected)?;
    let snapshots: Vec<&Snapshot> = request.snapshots.iter().collect();
    write_rows(backend, tx, &events, &latest_rows(&request.read_models), &snapshots, now)
        .await
        .map_err(|error| classify::<B>(error, request, &events))?;
    Ok(Appended { events })
}

/// Maps a failed write of an append's rows: the unique `(stream_id, stream_version)` key
/// is the concurrency guard, so its violation is a conflict, and a known event id is a
/// duplicate. Anything else fails the transaction.
fn classify<B: Backend>(error: sqlx::Error, request: &AppendRequest, events: &[EventEnvelope]) -> Failure {
    match B::violation(&error) {
        Some(Violation::StreamVersion) => {
            let expected = events.first().map(|e| e.stream_version - 1).unwrap_or(0);
            Failure::Rejected(StoreError::Conflict {
                stream_id: request.stream_id.clone(),
                expected,
                actual: expected + 1,
            })
        }
        Some(Violation::EventId) => Failure::Rejected(StoreError::DuplicateEvent),
        None => Failure::Fatal(error),
    }
}

/// Writes events, read-model rows and snapshots in as few statements as the parameter
/// limits allow (none for what is empty).
async fn write_rows<B: Backend>(
    backend: &B,
    tx: &mut B::Tx,
    events: &[EventEnvelope],
    models: &[&ReadModelWrite],
    snapshots: &[&Snapshot],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        backend.insert_events(tx, chunk).await?;
    }
    for chunk in models.chunks(ROWS_PER_STATEMENT) {
        backend.upsert_read_models(tx, chunk, now).await?;
    }
    for chunk in snapshots.chunks(ROWS_PER_STATEMENT) {
        backend.insert_snapshots(tx, chunk).await?;
    }
    Ok(())
}

/// Read-model rows with one row per `(kind, id)`, the last written winning: it is the
/// newest state, and a multi-row upsert may not touch one row twice (PostgreSQL refuses).
fn latest_rows<'a>(rows: impl IntoIterator<Item = &'a ReadModelWrite>) -> Vec<&'a ReadModelWrite> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut latest: Vec<&ReadModelWrite> = Vec::new();
    for row in rows {
        match index.entry((row.kind.as_str(), row.id.as_str())) {
            Entry::Occupied(at) => latest[*at.get()] = row,
            Entry::Vacant(at) => {
                at.insert(latest.len());
                latest.push(row);
            }
        }
    }
    latest
}

/// Moves the head if anything was written, and commits.
async fn finish<B: Backend>(backend: &B, mut tx: B::Tx, start: i64, head: i64) -> Result<(), sqlx::Error> {
    if head != start {
        backend.advance_head(&mut tx, head).await?;
    }
    backend.commit(tx).await
}

/// Gives an append's events their places: checks the expected version against the
/// stream's tail, then assigns positions, versions and the hash chain.
fn place_events(
    request: &AppendRequest,
    head: i64,
    tail: Option<(i64, String)>,
    now: DateTime<Utc>,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let (actual, mut prev_hash) = tail.unwrap_or_else(|| (0, chain::GENESIS.to_string()));
    if let ExpectedVersion::Exact(expected) = request.expected {
        if expected != actual {
            return Err(StoreError::Conflict {
                stream_id: request.stream_id.clone(),
                expected,
                actual,
            });
        }
    }
    let recorded_at = truncate_micros(now);
    let mut out = Vec::with_capacity(request.events.len());
    for (i, event) in request.events.iter().enumerate() {
        let mut envelope = EventEnvelope {
            global_position: head + 1 + i as i64,
            event_id: event.event_id,
            stream_type: request.stream_type.clone(),
            stream_id: request.stream_id.clone(),
            stream_version: actual + 1 + i as i64,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            data: event.data.clone(),
            metadata: request.metadata.clone(),
            prev_hash: prev_hash.clone(),
            hash: String::new(),
            recorded_at,
        };
        envelope.hash = chain::compute_hash(&envelope);
        prev_hash = envelope.hash.clone();
        out.push(envelope);
    }
    Ok(out)
}

/// Writes exported events into an empty log, in one transaction under the head lock, so
/// a failed import leaves the log empty and no append can slip in first.
pub(super) async fn import_events<B: Backend>(backend: &B, events: &[EventEnvelope]) -> Result<(), StoreError> {
    let (mut tx, start) = backend.begin().await?;
    if start != 0 {
        return Err(StoreError::NotEmpty);
    }
    let mut head = start;
    for e in events {
        if e.global_position != head + 1 {
            return Err(StoreError::ImportGap {
                expected: head + 1,
                actual: e.global_position,
            });
        }
        head = e.global_position;
    }
    write_rows(backend, &mut tx, events, &[], &[], Utc::now()).await?;
    finish(backend, tx, start, head).await?;
    Ok(())
}

/// Replaces every read model and snapshot of `kinds` in one transaction, provided the
/// head is still `through`; holding the head keeps appends (and their inline read-model
/// rows) out until the swap commits.
pub(super) async fn swap_read_models<B: Backend>(
    backend: &B,
    kinds: &[String],
    rows: &[ReadModelWrite],
    snapshots: &[Snapshot],
    through: i64,
) -> Result<bool, StoreError> {
    let (mut tx, head) = backend.begin().await?;
    if head != through {
        return Ok(false);
    }
    backend.delete_read_models(&mut tx, kinds).await?;
    let rows = latest_rows(rows);
    let snapshots: Vec<&Snapshot> = snapshots.iter().collect();
    write_rows(backend, &mut tx, &[], &rows, &snapshots, Utc::now()).await?;
    backend.commit(tx).await?;
    Ok(true)
}
