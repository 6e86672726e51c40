//! SQLite backend of the event store: the embedded default. WAL journal with
//! `synchronous=FULL` by default, so an acknowledged append survives a crash or power loss
//! (`--sqlite-synchronous normal` syncs at checkpoints: it survives the process dying).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetledger_events::envelope::micros;
use fleetledger_events::EventEnvelope;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;
use sqlx::{QueryBuilder, Sqlite, Transaction};
use tokio::sync::watch;
use uuid::fmt::Hyphenated;

use super::rows::{self, EventRow, FoldRow, IdempotencyRow, LatestRow, TailRow, EVENT_COLUMNS, FOLD_COLUMNS, IDEMPOTENCY_COLUMNS};
use super::write::{self, Backend, Violation, WriterHandle};
use super::*;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: WriterHandle,
    commits: watch::Receiver<i64>,
    /// Leadership within this process; the embedded store has one serving process.
    leaders: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SqliteStore {
    /// Opens the database at a `sqlite://` URL or a plain path; with `create`, makes it
    /// (and its directory) when missing, else a missing one is [`StoreError::Missing`].
    pub async fn connect(url: &str, create: bool) -> Result<Self, StoreError> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        // Every commit fsync'd unless the operator chose otherwise (`--sqlite-synchronous`).
        let synchronous = match query.split('&').any(|p| p == "synchronous=normal") {
            true => SqliteSynchronous::Normal,
            false => SqliteSynchronous::Full,
        };
        if !create && !std::path::Path::new(path).exists() {
            return Err(StoreError::Missing {
                place: path.to_string(),
                hint: "`fleetledger migrate` (or `serve`) creates one; check --data-dir",
            });
        }
        if let Some(parent) = std::path::Path::new(path).parent() {
            if create && !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Corrupt(format!("cannot create {parent:?}: {e}")))?;
            }
        }
        if create && !std::path::Path::new(path).exists() {
            // Made here, readable by its owner only, like admin.key and master.key: it holds
            // key hashes and wrapped data keys. SQLite gives its -wal and -shm files the
            // database file's permissions.
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::Corrupt(format!(
                        "cannot create the database file: {}",
                        crate::boundary::io_reason(&e)
                    )))
                }
            }
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // sqlx would log a slow statement's SQL; no log line carries the server's SQL.
            .disable_statement_logging();
        // An embedded database's connection cannot be cut from under the process: no ping
        // (a hop to the connection's thread and back) before each statement.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head").fetch_one(&pool).await?;
        let (commit_tx, commits) = watch::channel(head);
        let writer = WriterHandle::start(pool.clone(), Arc::new(commit_tx));
        Ok(SqliteStore {
            pool,
            writer,
            commits,
            leaders: Default::default(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The write path's statements on SQLite; `write` holds the control flow. Lists of ids
/// are bound as one JSON array (`json_each`), so each statement's text is fixed.
/// The last event of each stream in the JSON list `?1` that has events (`TailRow`): one
/// index probe per stream (newest version first), however long the streams are.
const TAILS: &str = "SELECT tail.stream_id, tail.stream_version, tail.hash, tail.event_id FROM json_each(?1) AS ids \
     JOIN events AS tail ON tail.global_position = (SELECT global_position FROM events \
     WHERE stream_id = ids.value ORDER BY stream_version DESC LIMIT 1)";

#[async_trait]
impl Backend for SqlitePool {
    type Tx = Transaction<'static, Sqlite>;

    /// `BEGIN IMMEDIATE` takes the database's write lock at once: SQLite's equivalent of
    /// locking the `log_head` row, and no later statement can fail for a busy database.
    async fn begin(&self) -> Result<(Self::Tx, i64), sqlx::Error> {
        let mut tx = self.begin_with("BEGIN IMMEDIATE").await?;
        let head = sqlx::query_scalar("SELECT position FROM log_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        Ok((tx, head))
    }

    async fn tails(&self, tx: &mut Self::Tx, stream_ids: &[&str]) -> Result<write::Tails, sqlx::Error> {
        let rows: Vec<TailRow<Hyphenated>> = sqlx::query_as(TAILS).bind(json_list(stream_ids)).fetch_all(&mut **tx).await?;
        Ok(rows::tails(rows))
    }

    async fn committed_tails(&self, stream_ids: &[&str]) -> Result<write::Tails, sqlx::Error> {
        let rows: Vec<TailRow<Hyphenated>> = sqlx::query_as(TAILS).bind(json_list(stream_ids)).fetch_all(self).await?;
        Ok(rows::tails(rows))
    }

    /// In-process, a round trip costs nothing: the statements run one by one.
    async fn commit_placed(
        &self,
        events: &mut [EventEnvelope],
        models: &[&ReadModelWrite],
        snapshots: &[&Snapshot],
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        write::commit_in_transaction(self, events, models, snapshots, now).await
    }

    async fn insert_events(&self, tx: &mut Self::Tx, events: &[EventEnvelope]) -> Result<(), sqlx::Error> {
        let mut insert = QueryBuilder::<Sqlite>::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
        insert.push_values(events, |mut row, e| {
            row.push_bind(e.global_position)
                .push_bind(e.event_id.hyphenated())
                .push_bind(e.stream_type.as_str())
                .push_bind(e.stream_id.as_str())
                .push_bind(e.stream_version)
                .push_bind(e.event_type.as_str())
                .push_bind(e.schema_version)
                .push_bind(e.data.to_string())
                .push_bind(serde_json::to_string(&e.metadata).unwrap_or_default())
                .push_bind(e.prev_hash.as_str())
                .push_bind(e.hash.as_str())
                .push_bind(micros::format(&e.recorded_at));
        });
        insert.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn upsert_read_models(&self, tx: &mut Self::Tx, rows: &[&ReadModelWrite], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let updated_at = micros::format(&now);
        let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO read_models (kind, id, org_id, version, doc, updated_at) ");
        upsert.push_values(rows, |mut row, m| {
            row.push_bind(m.kind.as_str())
                .push_bind(m.id.as_str())
                .push_bind(m.org_id.as_str())
                .push_bind(m.version)
                .push_bind(m.doc.as_str())
                .push_bind(updated_at.as_str());
        });
        upsert.push(
            " ON CONFLICT (kind, id) DO UPDATE SET org_id = excluded.org_id, version = excluded.version, \
             doc = excluded.doc, updated_at = excluded.updated_at",
        );
        upsert.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn insert_snapshots(&self, tx: &mut Self::Tx, snapshots: &[&Snapshot]) -> Result<(), sqlx::Error> {
        let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO snapshots (stream_id, version, kind, doc) ");
        insert.push_values(snapshots, |mut row, s| {
            row.push_bind(s.stream_id.as_str())
                .push_bind(s.version)
                .push_bind(s.kind.as_str())
                .push_bind(s.doc.as_str());
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn delete_read_models(&self, tx: &mut Self::Tx, kinds: &[String]) -> Result<(), sqlx::Error> {
        let kinds = json_list(kinds);
        sqlx::query("DELETE FROM read_models WHERE kind IN (SELECT value FROM json_each(?1))")
            .bind(&kinds)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM snapshots WHERE kind IN (SELECT value FROM json_each(?1))")
            .bind(&kinds)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Only the head moves: this process's writer is the only one, and it announces its
    /// commits itself.
    async fn advance_head(&self, tx: &mut Self::Tx, head: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE log_head SET position = ?1 WHERE id = 1")
            .bind(head)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn execute(&self, tx: &mut Self::Tx, statement: &'static str) -> Result<(), sqlx::Error> {
        sqlx::query(statement).execute(&mut **tx).await?;
        Ok(())
    }

    async fn commit(&self, tx: Self::Tx) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    /// SQLite names the violated columns rather than the constraint.
    fn violation(error: &sqlx::Error) -> Option<Violation> {
        let sqlx::Error::Database(db) = error else {
            return None;
        };
        let message = db.message();
        if message.contains("events.stream_id, events.stream_version") {
            Some(Violation::StreamVersion)
        } else if message.contains("events.event_id") {
            Some(Violation::EventId)
        } else {
            None
        }
    }
}

/// A list bound as one JSON array, read back with `json_each`.
fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::to_string(&items.iter().map(AsRef::as_ref).collect::<Vec<&str>>()).unwrap_or_else(|_| "[]".into())
}

struct LocalLease(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

#[async_trait]
impl LeaseHolder for LocalLease {
    async fn alive(&mut self) -> bool {
        true
    }
}

type Row = EventRow<Hyphenated>;

fn envelopes(rows: Vec<Row>) -> Vec<EventEnvelope> {
    rows.into_iter().map(Into::into).collect()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn submit(&self, request: AppendRequest) -> Result<Submitted, StoreError> {
        self.writer.submit(request).await
    }

    async fn read_stream(&self, stream_id: &str, from_version: i64) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND stream_version >= ?2 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(from_version)
        .fetch_all(&self.pool)
        .await?;
        Ok(envelopes(rows))
    }

    async fn read_stream_between(&self, stream_id: &str, from_version: i64, to_version: i64) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND stream_version >= ?2 AND stream_version <= ?3 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(from_version)
        .bind(to_version)
        .fetch_all(&self.pool)
        .await?;
        Ok(envelopes(rows))
    }

    async fn snapshot_at(&self, stream_id: &str, version: i64) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<Snapshot> = sqlx::query_as(
            "SELECT stream_id, version, kind, doc FROM snapshots WHERE stream_id = ?1 AND version <= ?2 ORDER BY version DESC LIMIT 1",
        )
        .bind(stream_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn version_at(&self, stream_id: &str, at: DateTime<Utc>) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = ?1 AND recorded_at <= ?2")
            .bind(stream_id)
            .bind(micros::format(&at))
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn read_all(&self, after: i64, limit: i64, stream_type: Option<&str>) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > ?1 AND (?3 IS NULL OR stream_type = ?3) \
             ORDER BY global_position LIMIT ?2"
        ))
        .bind(after)
        .bind(limit)
        .bind(stream_type)
        .fetch_all(&self.pool)
        .await?;
        Ok(envelopes(rows))
    }

    async fn read_org(&self, after: i64, limit: i64, org_id: &str, stream_type: Option<&str>) -> Result<Vec<EventEnvelope>, StoreError> {
        // `json_extract(metadata, '$.org_id')` is the expression `events_org_position_idx` indexes.
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE json_extract(metadata, '$.org_id') = ?4 AND global_position > ?1 \
             AND (?3 IS NULL OR stream_type = ?3) ORDER BY global_position LIMIT ?2"
        ))
        .bind(after)
        .bind(limit)
        .bind(stream_type)
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(envelopes(rows))
    }

    async fn read_all_for_fold(&self, after: i64, limit: i64) -> Result<Vec<FoldEvent>, StoreError> {
        let rows: Vec<FoldRow> = sqlx::query_as(&format!(
            "SELECT {FOLD_COLUMNS} FROM events WHERE global_position > ?1 ORDER BY global_position LIMIT ?2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn stream_version(&self, stream_id: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = ?1")
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn head(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT position FROM log_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn load_model(&self, kind: &str, id: &str) -> Result<Option<StoredModel>, StoreError> {
        let model = sqlx::query_as("SELECT kind, id, org_id, version, doc FROM read_models WHERE kind = ?1 AND id = ?2")
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(model)
    }

    async fn list_models(&self, kind: &str) -> Result<Vec<StoredModel>, StoreError> {
        let models = sqlx::query_as("SELECT kind, id, org_id, version, doc FROM read_models WHERE kind = ?1")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        Ok(models)
    }

    async fn latest_in_org(&self, org_id: &str, kinds: &[&str]) -> Result<Vec<Latest>, StoreError> {
        // The column names of the two tables differ, so the event's need no prefix.
        let kinds = serde_json::to_string(kinds).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows: Vec<LatestRow<Hyphenated>> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS}, CAST(json_extract(r.doc, '$.name') AS TEXT) AS name FROM read_models r \
             JOIN events e ON e.stream_id = r.id AND e.stream_version = r.version \
             WHERE r.org_id = ?1 AND r.kind IN (SELECT value FROM json_each(?2))"
        ))
        .bind(org_id)
        .bind(kinds)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn claim_idempotency(
        &self,
        org_id: &str,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyClaim, StoreError> {
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (org_id, idem_key, request_hash, status, headers, body, created_at) \
             VALUES (?1, ?2, ?3, 0, '[]', x'', ?4) ON CONFLICT (org_id, idem_key) DO UPDATE SET \
             request_hash = excluded.request_hash, status = 0, headers = '[]', body = x'', created_at = excluded.created_at \
             WHERE idempotency_keys.created_at < ?5",
        )
        .bind(org_id)
        .bind(key)
        .bind(request_hash)
        .bind(micros::format(&now))
        .bind(micros::format(&(now - IDEMPOTENCY_TTL)))
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() > 0 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let row: IdempotencyRow = sqlx::query_as(&format!(
            "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE org_id = ?1 AND idem_key = ?2"
        ))
        .bind(org_id)
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        Ok(IdempotencyClaim::Taken(row.into_record(org_id, key)))
    }

    async fn take_over_idempotency(
        &self,
        org_id: &str,
        key: &str,
        claimed_at: DateTime<Utc>,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET request_hash = ?4, created_at = ?5 \
             WHERE org_id = ?1 AND idem_key = ?2 AND created_at = ?3 AND status = 0",
        )
        .bind(org_id)
        .bind(key)
        .bind(micros::format(&claimed_at))
        .bind(request_hash)
        .bind(micros::format(&now))
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() > 0)
    }

    async fn complete_idempotency(&self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = ?4, headers = ?5, body = ?6 \
             WHERE org_id = ?1 AND idem_key = ?2 AND request_hash = ?3",
        )
        .bind(&record.org_id)
        .bind(&record.key)
        .bind(&record.request_hash)
        .bind(i32::from(record.status))
        .bind(headers_to_json(&record.headers))
        .bind(&record.body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_idempotency(&self, org_id: &str, key: &str, request_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE org_id = ?1 AND idem_key = ?2 AND request_hash = ?3 AND status = 0")
            .bind(org_id)
            .bind(key)
            .bind(request_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn idempotency_key_used(&self, org_id: &str, key: &str, since: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE recorded_at >= ?3 \
             AND json_extract(metadata, '$.org_id') = ?1 AND json_extract(metadata, '$.idempotency_key') = ?2)",
        )
        .bind(org_id)
        .bind(key)
        .bind(micros::format(&since))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn record_key_usage(&self, usage: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        for (key_id, at) in usage {
            sqlx::query(
                "INSERT INTO key_usage (key_id, last_used_at) VALUES (?1, ?2) ON CONFLICT (key_id) \
                 DO UPDATE SET last_used_at = max(key_usage.last_used_at, excluded.last_used_at)",
            )
            .bind(key_id)
            .bind(micros::format(at))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn key_usage(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT key_id, last_used_at FROM key_usage")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, at)| DateTime::parse_from_rfc3339(&at).ok().map(|t| (id, t.with_timezone(&Utc))))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn swap_read_models(
        &self,
        kinds: &[String],
        rows: &[ReadModelWrite],
        snapshots: &[Snapshot],
        through: i64,
    ) -> Result<bool, StoreError> {
        write::swap_read_models(&self.pool, kinds, rows, snapshots, through).await
    }

    async fn import_events(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        write::import_events(&self.pool, events).await
    }

    async fn event_exists(&self, event_id: uuid::Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?1)")
            .bind(event_id.to_string())
            .fetch_one(&self.pool)
            .await?)
    }

    async fn checkpoint(&self, name: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn save_checkpoint(&self, name: &str, position: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) \
             DO UPDATE SET position = max(checkpoints.position, excluded.position), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(position)
        .bind(micros::format(&Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn try_lead(&self, name: &str) -> Result<Option<LeaderLease>, StoreError> {
        let lock = self
            .leaders
            .lock()
            .expect("leader map")
            .entry(name.to_string())
            .or_default()
            .clone();
        Ok(lock.try_lock_owned().ok().map(|guard| LeaderLease {
            holder: Box::new(LocalLease(guard)),
        }))
    }

    fn commits(&self) -> watch::Receiver<i64> {
        self.commits.clone()
    }

    fn recent(&self, after: i64) -> Option<Vec<EventEnvelope>> {
        self.writer.recent(after, *self.commits.borrow())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn live_data_key(&self, org_id: &str) -> Result<Option<DataKey>, StoreError> {
        data_keys::sqlite::live(&self.pool, org_id).await
    }

    async fn data_key(&self, kid: &str) -> Result<Option<DataKey>, StoreError> {
        data_keys::sqlite::by_kid(&self.pool, kid).await
    }

    async fn data_keys(&self) -> Result<Vec<DataKey>, StoreError> {
        data_keys::sqlite::all(&self.pool).await
    }

    async fn add_data_key(&self, key: &DataKey) -> Result<NewDataKey, StoreError> {
        data_keys::sqlite::add(&self.pool, key).await
    }

    async fn destroy_data_keys(&self, org_id: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        data_keys::sqlite::destroy(&self.pool, org_id, at).await
    }

    async fn rewrap_data_keys(&self, master_id: &str, rewrap: data_keys::Rewrap<'_>) -> Result<u64, StoreError> {
        data_keys::sqlite::rewrap(&self.pool, master_id, rewrap).await
    }

    async fn park(&self, parking: &Parking<'_>) -> Result<(), StoreError> {
        dead_letters::Table(&self.pool).park(parking).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        dead_letters::Table(&self.pool).list().await
    }

    async fn request_redrive(&self, id: Option<i64>) -> Result<Vec<DeadLetter>, StoreError> {
        dead_letters::Table(&self.pool).request_redrive(id).await
    }

    async fn claim_redrive(&self, worker: &str, holder: &str, lease: Duration) -> Result<Option<DeadLetter>, StoreError> {
        dead_letters::Table(&self.pool).claim(worker, holder, lease).await
    }

    async fn settle_redrive(&self, id: i64, holder: &str, redriven: Redriven<'_>) -> Result<bool, StoreError> {
        dead_letters::Table(&self.pool).settle(id, holder, redriven).await
    }

    async fn dead_letter_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dead_letters::Table(&self.pool).counts().await
    }

    async fn open_console_session(&self, session: &ConsoleSession) -> Result<(), StoreError> {
        console_sessions::sqlite::open(&self.pool, session).await
    }

    async fn console_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<ConsoleSession>, StoreError> {
        console_sessions::sqlite::find(&self.pool, token_hash, now).await
    }

    async fn close_console_session(&self, token_hash: &str) -> Result<(), StoreError> {
        console_sessions::sqlite::close(&self.pool, token_hash).await
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteStore;
    use crate::config::{SqliteSynchronous, StoreSettings};

    #[tokio::test]
    async fn every_commit_is_fsynced_unless_the_operator_chose_normal() {
        let dir = tempfile::tempdir().unwrap();
        // PRAGMA synchronous: 2 is FULL, 1 NORMAL.
        for (choice, pragma) in [(SqliteSynchronous::Full, 2), (SqliteSynchronous::Normal, 1)] {
            let settings = StoreSettings {
                data_dir: dir.path().to_path_buf(),
                database_url: None,
                master_key: None,
                sqlite_synchronous: choice,
            };
            let store = SqliteStore::connect(&settings.url(), true).await.unwrap();
            // Every connection of the pool, not only the first.
            let mut connections = Vec::new();
            for _ in 0..store.pool.options().get_max_connections() {
                connections.push(store.pool.acquire().await.unwrap());
            }
            for connection in &mut connections {
                let got: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut **connection).await.unwrap();
                assert_eq!(got, pragma, "{choice:?}");
            }
            drop(connections);
            store.pool.close().await;
        }
    }
}
