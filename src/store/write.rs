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

use super::{AppendRequest, Appended, ExpectedVersion, ReadModelWrite, Snapshot, StoreError, Submitted};
use crate::domain::validation::json_measure;

/// Rows per multi-row statement. PostgreSQL binds at most 65,535 parameters per statement
/// and SQLite 32,766; an event row has 12, so 1,000 rows stay well inside both.
const ROWS_PER_STATEMENT: usize = 1000;

/// A stream's last event: its version, hash and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Tail {
    pub version: i64,
    pub hash: String,
    pub event_id: uuid::Uuid,
}

/// The tails of some streams, by stream id.
pub(super) type Tails = HashMap<String, Tail>;

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
    /// The tail of each of these streams that has events.
    async fn tails(&self, tx: &mut Self::Tx, stream_ids: &[&str]) -> Result<Tails, sqlx::Error>;
    /// The tail of each of these streams that has events, read outside any transaction
    /// (what is committed now; it may be stale by the time it is used).
    async fn committed_tails(&self, stream_ids: &[&str]) -> Result<Tails, sqlx::Error>;
    /// Commits events placed after position 0 (positions 1, 2, …) with their read models
    /// and snapshots after whatever the head is, moving the head past them; returns the
    /// head they were placed after and sets their positions. `commit_in_transaction` is
    /// the statement-by-statement way; a backend may do it in fewer round trips.
    async fn commit_placed(
        &self,
        events: &mut [EventEnvelope],
        models: &[&ReadModelWrite],
        snapshots: &[&Snapshot],
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error>;
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

/// The sending half of a group-commit writer, and what it committed last.
#[derive(Clone)]
pub(super) struct WriterHandle {
    jobs: mpsc::Sender<Job>,
    recent: Arc<Recent>,
}

impl WriterHandle {
    /// Starts the writer task of a store; it announces every commit's head on `commits`.
    pub(super) fn start<B: Backend>(backend: B, commits: Arc<watch::Sender<i64>>) -> Self {
        let (jobs, queue) = mpsc::channel(4096);
        let recent = Arc::new(Recent::default());
        tokio::spawn(run_writer(backend, queue, commits, recent.clone()));
        WriterHandle { jobs, recent }
    }

    /// The events after `after` through `head`, when this writer committed all of them
    /// recently (see `EventStore::recent`).
    pub(super) fn recent(&self, after: i64, head: i64) -> Option<Vec<EventEnvelope>> {
        self.recent.between(after, head)
    }

    /// Checks what the log cannot take, then queues the append (see `EventStore::submit`).
    pub(super) async fn submit(&self, request: AppendRequest) -> Result<Submitted, StoreError> {
        for event in &request.events {
            let (bytes, nul) = json_measure(&event.data);
            if bytes > super::MAX_EVENT_DATA_BYTES {
                return Err(StoreError::TooLarge {
                    bytes,
                    limit: super::MAX_EVENT_DATA_BYTES,
                });
            }
            if nul {
                return Err(StoreError::Unstorable(super::NUL_IN_TEXT));
            }
        }
        if json_measure(&request.metadata).1 {
            return Err(StoreError::Unstorable(super::NUL_IN_TEXT));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs.send((request, reply)).await.map_err(|_| StoreError::WriterStopped)?;
        Ok(Submitted(answer))
    }
}

/// The group-commit loop: takes whatever appends are queued, commits them in one
/// transaction, then answers every caller and announces the new head.
async fn run_writer<B: Backend>(backend: B, mut jobs: mpsc::Receiver<Job>, commits: Arc<watch::Sender<i64>>, recent: Arc<Recent>) {
    let mut tails = RememberedTails::default();
    while let Some(batch) = next_batch(&mut jobs).await {
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match commit_batch(&backend, &requests, &mut tails).await {
            Ok((results, head)) => {
                let appended: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|a| a.events.len()).sum();
                metrics::counter!("fleetledger_appends_total").increment(appended as u64);
                recent.committed(&results);
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

/// The events this writer committed last, contiguous in global order, so that what
/// follows the log in this process (the read-model cache, the relay) takes a commit it
/// was woken for from memory instead of reading it back. Another process's commit in
/// between breaks the run, and then only the log has the events.
#[derive(Default)]
struct Recent {
    events: std::sync::Mutex<std::collections::VecDeque<EventEnvelope>>,
}

/// Events kept in `Recent`: a few batches' worth.
const RECENT_EVENTS: usize = 4096;

impl Recent {
    fn committed(&self, results: &[Result<Appended, StoreError>]) {
        let mut committed: Vec<&EventEnvelope> = results.iter().filter_map(|r| r.as_ref().ok()).flat_map(|a| &a.events).collect();
        committed.sort_unstable_by_key(|e| e.global_position);
        let Some(first) = committed.first() else {
            return;
        };
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.back().is_some_and(|last| last.global_position + 1 != first.global_position) {
            events.clear();
        }
        events.extend(committed.into_iter().cloned());
        let excess = events.len().saturating_sub(RECENT_EVENTS);
        events.drain(..excess);
    }

    fn between(&self, after: i64, head: i64) -> Option<Vec<EventEnvelope>> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let first = events.front()?.global_position;
        let last = events.back()?.global_position;
        if after < first - 1 || head > last || after > head {
            return None;
        }
        let from = (after + 1 - first) as usize;
        let to = (head + 1 - first) as usize;
        Some(events.range(from..to).cloned().collect())
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

/// The tails of the streams this writer has committed, so that appending to a stream
/// written before needs no read of its tail. A remembered tail can only lag
/// the log (another process may have appended since), never lead it: appending after a
/// stale tail runs into the unique `(stream_id, stream_version)` key, and the batch is
/// then appended one by one over tails read under the head lock.
#[derive(Default)]
struct RememberedTails {
    by_stream: Tails,
}

/// Streams whose tails are remembered at most; past it the memory starts over.
const MAX_TAILS: usize = 1_000_000;

impl RememberedTails {
    fn remember(&mut self, results: &[Result<Appended, StoreError>]) {
        if self.by_stream.len() > MAX_TAILS {
            self.by_stream.clear();
        }
        for last in results.iter().filter_map(|r| r.as_ref().ok()?.events.last()) {
            self.by_stream.insert(last.stream_id.clone(), Tail::of(last));
        }
    }

    fn forget(&mut self, requests: &[AppendRequest]) {
        for request in requests {
            self.by_stream.remove(&request.stream_id);
        }
    }
}

/// Commits a batch in one transaction. The set-based path comes first; anything it does
/// not expect (a stale tail, a duplicate event id) undoes it, and the batch is appended
/// one by one instead, where a refusal fails only its own append.
async fn commit_batch<B: Backend>(backend: &B, requests: &[AppendRequest], tails: &mut RememberedTails) -> BatchResult {
    let done = match commit_set_based(backend, requests, tails).await {
        Ok(done) => done,
        Err(error) => {
            tracing::debug!(%error, "set-based batch failed; appending one by one");
            tails.forget(requests);
            commit_one_by_one(backend, requests).await?
        }
    };
    tails.remember(&done.0);
    Ok(done)
}

/// A batch in a fixed number of statements: the tails the writer does not know in one
/// query, then every event, read model and snapshot committed together (one statement
/// on PostgreSQL). Expected versions are checked against the tails before committing, so
/// no statement is expected to fail.
async fn commit_set_based<B: Backend>(backend: &B, requests: &[AppendRequest], tails: &RememberedTails) -> BatchResult {
    let mut known = Tails::new();
    let mut ask: Vec<&str> = Vec::new();
    for request in requests {
        let id = request.stream_id.as_str();
        if known.contains_key(id) || ask.contains(&id) {
            continue;
        }
        match tails.by_stream.get(id) {
            // A remembered tail that refuses the expectation may only be stale: the store
            // decides.
            Some(tail) if refusal(request, Some(tail)).is_none() => {
                known.insert(id.to_string(), tail.clone());
            }
            _ => ask.push(id),
        }
    }
    if !ask.is_empty() {
        known.extend(backend.committed_tails(&ask).await?);
    }
    let now = Utc::now();
    let mut placed_through = 0;
    let mut placed = Vec::new();
    let mut models = Vec::new();
    let mut snapshots = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        match place_events(request, placed_through, known.get(&request.stream_id).cloned(), now) {
            Ok(events) => {
                if let Some(last) = events.last() {
                    known.insert(request.stream_id.clone(), Tail::of(last));
                    placed_through = last.global_position;
                }
                placed.extend(events.iter().cloned());
                models.extend(&request.read_models);
                snapshots.extend(&request.snapshots);
                results.push(Ok(Appended { events }));
            }
            Err(error) => results.push(Err(error)),
        }
    }
    if placed.is_empty() {
        return Ok((results, 0));
    }
    let start = backend.commit_placed(&mut placed, &latest_rows(models), &snapshots, now).await?;
    for appended in results.iter_mut().filter_map(|r| r.as_mut().ok()) {
        for event in &mut appended.events {
            event.global_position += start;
        }
    }
    Ok((results, start + placed_through))
}

/// `Backend::commit_placed` statement by statement in one transaction under the head lock.
pub(super) async fn commit_in_transaction<B: Backend>(
    backend: &B,
    events: &mut [EventEnvelope],
    models: &[&ReadModelWrite],
    snapshots: &[&Snapshot],
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let (mut tx, start) = backend.begin().await?;
    for event in events.iter_mut() {
        event.global_position += start;
    }
    write_rows(backend, &mut tx, events, models, snapshots, now).await?;
    finish(backend, tx, start, start + events.len() as i64).await?;
    Ok(start)
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

impl Tail {
    fn of(event: &EventEnvelope) -> Tail {
        Tail {
            version: event.stream_version,
            hash: event.hash.clone(),
            event_id: event.event_id,
        }
    }
}

/// Why an append cannot go after `tail` (`None`: the stream has no events): the conflict
/// it runs into, if any.
fn refusal(request: &AppendRequest, tail: Option<&Tail>) -> Option<StoreError> {
    let actual = tail.map_or(0, |t| t.version);
    let admitted = match request.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::Exact(expected) => expected == actual,
        ExpectedVersion::After { version, event_id } => tail.is_some_and(|t| t.version == version && t.event_id == event_id),
    };
    (!admitted).then(|| StoreError::Conflict {
        stream_id: request.stream_id.clone(),
        expected: request.expected.version().unwrap_or(actual),
        actual,
    })
}

/// Gives an append's events their places: checks the expectation against the stream's
/// tail, then assigns positions, versions and the hash chain.
fn place_events(request: &AppendRequest, head: i64, tail: Option<Tail>, now: DateTime<Utc>) -> Result<Vec<EventEnvelope>, StoreError> {
    if let Some(conflict) = refusal(request, tail.as_ref()) {
        return Err(conflict);
    }
    let (actual, mut prev_hash) = tail.map_or_else(|| (0, chain::GENESIS.to_string()), |t| (t.version, t.hash));
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

/// Writes exported events right after the head, in one transaction under the head lock,
/// so a failed import leaves the log as it was and no append can slip in first. A log
/// starts at position 1, so it goes only into an empty store; a large one may go in as
/// consecutive parts, each continuing the last.
pub(super) async fn import_events<B: Backend>(backend: &B, events: &[EventEnvelope]) -> Result<(), StoreError> {
    let (mut tx, start) = backend.begin().await?;
    if start != 0 && events.first().is_some_and(|e| e.global_position == 1) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(positions: std::ops::RangeInclusive<i64>) -> Vec<Result<Appended, StoreError>> {
        let events = positions
            .map(|p| EventEnvelope {
                global_position: p,
                event_id: uuid::Uuid::now_v7(),
                stream_type: "test".into(),
                stream_id: "s".into(),
                stream_version: p,
                event_type: "test.happened".into(),
                schema_version: 1,
                data: serde_json::json!({}).into(),
                metadata: Default::default(),
                prev_hash: String::new(),
                hash: String::new(),
                recorded_at: Utc::now(),
            })
            .collect();
        vec![Ok(Appended { events }), Err(StoreError::DuplicateEvent)]
    }

    fn positions(events: Option<Vec<EventEnvelope>>) -> Option<Vec<i64>> {
        events.map(|e| e.iter().map(|e| e.global_position).collect())
    }

    #[test]
    fn recent_commits_answer_only_for_a_run_they_hold_whole() {
        let recent = Recent::default();
        assert_eq!(positions(recent.between(0, 0)), None, "nothing held yet");
        recent.committed(&committed(1..=3));
        recent.committed(&committed(4..=5));
        assert_eq!(positions(recent.between(0, 5)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(positions(recent.between(3, 5)), Some(vec![4, 5]));
        assert_eq!(positions(recent.between(5, 5)), Some(vec![]));
        assert_eq!(positions(recent.between(2, 6)), None, "another process's commit is only in the log");
        // Another process committed 6; this writer's next commit starts a new run.
        recent.committed(&committed(7..=8));
        assert_eq!(positions(recent.between(5, 8)), None);
        assert_eq!(positions(recent.between(6, 8)), Some(vec![7, 8]));
    }

    #[test]
    fn recent_commits_keep_a_bounded_window() {
        let recent = Recent::default();
        let total = RECENT_EVENTS as i64 + 100;
        recent.committed(&committed(1..=total));
        assert_eq!(positions(recent.between(0, total)), None, "the oldest fell out of memory");
        assert_eq!(recent.between(100, total).map(|e| e.len()), Some(RECENT_EVENTS));
    }
}
