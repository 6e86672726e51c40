//! The `dead_letters` table: events whose side effect still failed after every retry,
//! parked (after their failure outcome was appended) until an operator asks for a re-drive.
//! Mutable bookkeeping beside the log, like checkpoints; the log keeps every outcome.
//!
//! Written once for both backends: the SQL is the same text on PostgreSQL and SQLite
//! (`$n` parameters, which sqlx binds by number on both), and the methods are generic over
//! the database, so each backend's `EventStore` only hands its pool to [`Table`].

use chrono::{DateTime, Utc};
use fleetledger_events::EventEnvelope;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::StoreError;

/// One parked event and what its deliveries came to.
#[derive(Clone, Debug, PartialEq, serde::Serialize, FromRow)]
pub struct DeadLetter {
    pub id: i64,
    /// The worker whose delivery failed: only it re-drives the entry.
    pub worker: String,
    pub event_id: String,
    pub org_id: String,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub global_position: i64,
    /// Deliveries tried: the worker's retries and one per re-drive.
    pub attempts: i64,
    /// Re-drives that ended in a failure.
    pub redrives: i64,
    pub last_error: String,
    pub parked_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a re-drive was asked for, until a worker settles it.
    pub retry_requested_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub claimed_by: Option<String>,
    #[serde(skip)]
    pub claimed_until: Option<DateTime<Utc>>,
}

/// An event to park: `worker` tried it `attempts` times; the last try failed with `error`.
pub struct Parking<'a> {
    pub worker: &'a str,
    pub event: &'a EventEnvelope,
    pub attempts: i64,
    pub error: &'a str,
}

/// What a re-drive came to.
pub enum Redriven<'a> {
    /// Delivered: the entry is removed.
    Delivered,
    /// Failed again with this error: the entry stays, counted, and waits for another ask.
    Failed(&'a str),
}

const COLUMNS: &str = "id, worker, event_id, org_id, stream_type, stream_id, stream_version, event_type, global_position, \
    attempts, redrives, last_error, parked_at, updated_at, retry_requested_at, claimed_by, claimed_until";

/// The table on one backend's pool.
pub(super) struct Table<'a, DB: Database>(pub &'a Pool<DB>);

impl<DB> Table<'_, DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> DateTime<Utc>: Encode<'q, DB> + Type<DB>,
    for<'r> DeadLetter: FromRow<'r, DB::Row>,
    for<'r> (String, i64): FromRow<'r, DB::Row>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
{
    /// Parks an event; one already parked by this worker is left as it is (a restart
    /// between its failure outcome and its parking parks it again).
    pub(super) async fn park(&self, parking: &Parking<'_>) -> Result<(), StoreError> {
        let e = parking.event;
        sqlx::query(
            "INSERT INTO dead_letters (worker, event_id, org_id, stream_type, stream_id, stream_version, event_type, \
             global_position, attempts, last_error, parked_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT (worker, event_id) DO NOTHING",
        )
        .bind(parking.worker.to_string())
        .bind(e.event_id.to_string())
        .bind(e.metadata.org_id.clone())
        .bind(e.stream_type.clone())
        .bind(e.stream_id.clone())
        .bind(e.stream_version)
        .bind(e.event_type.clone())
        .bind(e.global_position)
        .bind(parking.attempts)
        .bind(parking.error.to_string())
        .bind(Utc::now())
        .execute(self.0)
        .await?;
        Ok(())
    }

    /// Every entry, oldest first.
    pub(super) async fn list(&self) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM dead_letters ORDER BY id"))
            .fetch_all(self.0)
            .await?)
    }

    /// Asks for a re-drive of one entry (or of all, with `None`); answers the entries asked.
    pub(super) async fn request_redrive(&self, id: Option<i64>) -> Result<Vec<DeadLetter>, StoreError> {
        // -1 stands for every entry: ids start at 1.
        Ok(sqlx::query_as(&format!(
            "UPDATE dead_letters SET retry_requested_at = $1 WHERE ($2 = -1 OR id = $2) RETURNING {COLUMNS}"
        ))
        .bind(Utc::now())
        .bind(id.unwrap_or(-1))
        .fetch_all(self.0)
        .await?)
    }

    /// Takes one entry of `worker` asked for re-drive and not held by anyone (or whose
    /// holder's claim ran out), for `holder` until `until`.
    pub(super) async fn claim(&self, worker: &str, holder: &str, lease: std::time::Duration) -> Result<Option<DeadLetter>, StoreError> {
        let now = Utc::now();
        let until = now + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        let free = "worker = $1 AND retry_requested_at IS NOT NULL AND (claimed_until IS NULL OR claimed_until < $2)";
        // A read first: workers ask often, and on SQLite an UPDATE takes the write lock
        // even when it matches nothing.
        let asked: Option<(i64,)> = sqlx::query_as(&format!("SELECT id FROM dead_letters WHERE {free} ORDER BY id LIMIT 1"))
            .bind(worker.to_string())
            .bind(now)
            .fetch_optional(self.0)
            .await?;
        let Some((id,)) = asked else { return Ok(None) };
        // The condition is checked again by the UPDATE itself: of two claimers, one wins.
        Ok(sqlx::query_as(&format!(
            "UPDATE dead_letters SET claimed_by = $3, claimed_until = $4 WHERE id = $5 AND {free} RETURNING {COLUMNS}"
        ))
        .bind(worker.to_string())
        .bind(now)
        .bind(holder.to_string())
        .bind(until)
        .bind(id)
        .fetch_optional(self.0)
        .await?)
    }

    /// Records what the re-drive of a claimed entry came to; `false` when `holder` no
    /// longer held it.
    pub(super) async fn settle(&self, id: i64, holder: &str, redriven: Redriven<'_>) -> Result<bool, StoreError> {
        // RETURNING says whether the holder still held it, the same way on both backends.
        let settled: Option<(i64,)> = match redriven {
            Redriven::Delivered => {
                sqlx::query_as("DELETE FROM dead_letters WHERE id = $1 AND claimed_by = $2 RETURNING id")
                    .bind(id)
                    .bind(holder.to_string())
                    .fetch_optional(self.0)
                    .await?
            }
            Redriven::Failed(error) => {
                sqlx::query_as(
                    "UPDATE dead_letters SET attempts = attempts + 1, redrives = redrives + 1, last_error = $3, updated_at = $4, \
                     retry_requested_at = NULL, claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND claimed_by = $2 RETURNING id",
                )
                .bind(id)
                .bind(holder.to_string())
                .bind(error.to_string())
                .bind(Utc::now())
                .fetch_optional(self.0)
                .await?
            }
        };
        Ok(settled.is_some())
    }

    /// How many entries each stream type has.
    pub(super) async fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT stream_type, count(*) FROM dead_letters GROUP BY stream_type")
                .fetch_all(self.0)
                .await?,
        )
    }
}
