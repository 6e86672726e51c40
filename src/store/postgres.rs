//! PostgreSQL backend of the event store.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fleetledger_events::EventEnvelope;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::ConnectOptions;
use sqlx::{Postgres, QueryBuilder, Transaction};
use tokio::sync::watch;
use uuid::Uuid;

use super::rows::{self, EventRow, FoldRow, IdempotencyRow, LatestRow, TailRow, EVENT_COLUMNS, FOLD_COLUMNS, IDEMPOTENCY_COLUMNS};
use super::write::{self, announce, Backend, Violation, WriterHandle};
use super::*;

/// Connections in the pool of readers and everything but the writer.
const POOL_SIZE: u32 = 10;
/// Connections of the group-commit writer, one task: a batch's, and one for a statement
/// outside its transaction.
const WRITER_POOL_SIZE: u32 = 2;

pub struct PgStore {
    pool: PgPool,
    backend: PgBackend,
    writer: WriterHandle,
    commits: watch::Receiver<i64>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // sqlx would log a slow statement's SQL; no log line carries the server's SQL.
        let options = sqlx::postgres::PgConnectOptions::from_str(url)?.disable_statement_logging();
        // Reads are planned for the values they are run with: a generic plan made while
        // the log was small (a sequential scan of `events` for "after position N") stayed
        // cached on its connection while the log grew, until statistics were refreshed,
        // and every poll of the log then scanned all of it.
        let pool = pool_options(POOL_SIZE)
            .connect_with(options.clone().options([("plan_cache_mode", "force_custom_plan")]))
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        // The writer's own connections plan its statements once: they bind arrays, so no
        // value changes the plan, and PostgreSQL re-planning the append's CTEs on every
        // execution (its default for the first executions and whenever a custom plan
        // looks cheaper) was the largest part of its CPU per append.
        let writer_pool = pool_options(WRITER_POOL_SIZE)
            .connect_with(options.options([("plan_cache_mode", "force_generic_plan")]))
            .await?;
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head").fetch_one(&pool).await?;
        let (commit_tx, commits) = watch::channel(head);
        let commit_tx = Arc::new(commit_tx);
        let origin = Uuid::new_v4().simple().to_string();
        let backend = PgBackend {
            pool: writer_pool,
            origin: origin.clone(),
        };
        let writer = WriterHandle::start(backend.clone(), commit_tx.clone());
        tokio::spawn(listen_for_commits(pool.clone(), commit_tx, origin));
        Ok(PgStore {
            pool,
            backend,
            writer,
            commits,
        })
    }

    /// The pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How long a pooled connection may sit unused before it is pinged when taken: one that
/// idled may have been cut (a database restart, a failover) and is replaced.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool of `size` connections that pings a connection when it is taken only after it
/// idled for `PING_AFTER_IDLE`. sqlx pings on every take by default: a round trip before
/// every statement, about a tenth of an append's time at one client.
fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|connection, taken| {
            Box::pin(async move {
                if taken.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// The payload of a commit's `NOTIFY fleetledger_events`: the new head and which store
/// committed it.
fn commit_note(payload: &str) -> Option<(i64, &str)> {
    let (head, origin) = payload.split_once(' ').unwrap_or((payload, ""));
    Some((head.parse().ok()?, origin))
}

/// Learns of other stores' commits from `NOTIFY fleetledger_events`, reconnecting when
/// the connection drops; pollers cover the gaps. This store's own notes are skipped: its
/// writer announces its commits once they are in `Recent`, and a note that arrived first
/// sent every follower to read back from the log what memory was about to hold.
async fn listen_for_commits(pool: PgPool, commits: Arc<watch::Sender<i64>>, origin: String) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen("fleetledger_events").await?;
            loop {
                let note = listener.recv().await?;
                match commit_note(note.payload()) {
                    Some((head, from)) if from != origin => announce(&commits, head),
                    _ => {}
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(error) = listener.await {
            tracing::debug!(%error, "commit listener reconnecting");
        }
        if commits.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The last event of each stream in `$1` that has events (`TailRow`): one index probe per
/// stream (newest version first), however long the streams are.
const TAILS: &str = "SELECT ids.stream_id, tail.stream_version, tail.hash, tail.event_id FROM unnest($1::text[]) AS ids(stream_id) \
     CROSS JOIN LATERAL (SELECT stream_version, hash, event_id FROM events WHERE events.stream_id = ids.stream_id \
     ORDER BY stream_version DESC LIMIT 1) AS tail";

/// A whole batch as one statement, so one round trip and one commit: the head row is
/// moved (and locked until commit, which keeps positions in commit order), the events are
/// inserted after the old head in array order, read models upserted, snapshots added,
/// and other processes notified at commit. Arrays bind the rows, so the statement is the
/// same (and prepared once) for any batch size.
const APPEND: &str = "WITH head AS ( \
         UPDATE log_head SET position = position + $1 WHERE id RETURNING position \
     ), inserted AS ( \
         INSERT INTO events (global_position, event_id, stream_type, stream_id, stream_version, event_type, \
             schema_version, data, metadata, prev_hash, hash, recorded_at) \
         SELECT head.position - $1 + e.ord, e.event_id, e.stream_type, e.stream_id, e.stream_version, e.event_type, \
             e.schema_version, e.data::jsonb, e.metadata::jsonb, e.prev_hash, e.hash, e.recorded_at \
         FROM head, unnest($2::uuid[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::int4[], $8::text[], \
             $9::text[], $10::text[], $11::text[], $12::timestamptz[]) WITH ORDINALITY \
             AS e(event_id, stream_type, stream_id, stream_version, event_type, schema_version, data, metadata, \
             prev_hash, hash, recorded_at, ord) \
     ), models AS ( \
         INSERT INTO read_models (kind, id, org_id, version, doc, updated_at) \
         SELECT m.kind, m.id, m.org_id, m.version, m.doc, $13 \
         FROM unnest($14::text[], $15::text[], $16::text[], $17::int8[], $18::text[]) AS m(kind, id, org_id, version, doc) \
         ON CONFLICT (kind, id) DO UPDATE SET org_id = excluded.org_id, version = excluded.version, \
             doc = excluded.doc, updated_at = excluded.updated_at \
     ), snaps AS ( \
         INSERT INTO snapshots (stream_id, version, kind, doc) \
         SELECT * FROM unnest($19::text[], $20::int8[], $21::text[], $22::text[]) ON CONFLICT DO NOTHING \
     ) \
     SELECT head.position - $1 FROM head CROSS JOIN LATERAL \
         (SELECT pg_notify('fleetledger_events', head.position::text || ' ' || $23)) AS notified";

/// The write path's statements on PostgreSQL (`write` holds the control flow), on the
/// store's pool; `origin` names the store in its commits' notes.
#[derive(Clone)]
struct PgBackend {
    pool: PgPool,
    origin: String,
}

#[async_trait]
impl Backend for PgBackend {
    type Tx = Transaction<'static, Postgres>;

    async fn begin(&self) -> Result<(Self::Tx, i64), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let head = sqlx::query_scalar("SELECT position FROM log_head WHERE id FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        Ok((tx, head))
    }

    async fn tails(&self, tx: &mut Self::Tx, stream_ids: &[&str]) -> Result<write::Tails, sqlx::Error> {
        let rows: Vec<TailRow<Uuid>> = sqlx::query_as(TAILS).bind(stream_ids).fetch_all(&mut **tx).await?;
        Ok(rows::tails(rows))
    }

    async fn committed_tails(&self, stream_ids: &[&str]) -> Result<write::Tails, sqlx::Error> {
        let rows: Vec<TailRow<Uuid>> = sqlx::query_as(TAILS).bind(stream_ids).fetch_all(&self.pool).await?;
        Ok(rows::tails(rows))
    }

    /// One statement, committed on its own: what pgbench's best case pays for one
    /// transaction, paid once per batch.
    async fn commit_placed(
        &self,
        events: &mut [EventEnvelope],
        models: &[&ReadModelWrite],
        snapshots: &[&Snapshot],
        now: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        let mut data = Vec::with_capacity(events.len());
        let mut metadata = Vec::with_capacity(events.len());
        for e in events.iter() {
            data.push(serde_json::to_string(&e.data).map_err(|e| sqlx::Error::Encode(e.into()))?);
            metadata.push(serde_json::to_string(&e.metadata).map_err(|e| sqlx::Error::Encode(e.into()))?);
        }
        let start: i64 = sqlx::query_scalar(APPEND)
            .bind(events.len() as i64)
            .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.stream_type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.stream_version).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
            .bind(data)
            .bind(metadata)
            .bind(events.iter().map(|e| e.prev_hash.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.hash.as_str()).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
            .bind(now)
            .bind(models.iter().map(|m| m.kind.as_str()).collect::<Vec<_>>())
            .bind(models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>())
            .bind(models.iter().map(|m| m.org_id.as_str()).collect::<Vec<_>>())
            .bind(models.iter().map(|m| m.version).collect::<Vec<_>>())
            .bind(models.iter().map(|m| m.doc.as_str()).collect::<Vec<_>>())
            .bind(snapshots.iter().map(|s| s.stream_id.as_str()).collect::<Vec<_>>())
            .bind(snapshots.iter().map(|s| s.version).collect::<Vec<_>>())
            .bind(snapshots.iter().map(|s| s.kind.as_str()).collect::<Vec<_>>())
            .bind(snapshots.iter().map(|s| s.doc.as_str()).collect::<Vec<_>>())
            .bind(&self.origin)
            .fetch_one(&self.pool)
            .await?;
        for event in events.iter_mut() {
            event.global_position += start;
        }
        Ok(start)
    }

    async fn insert_events(&self, tx: &mut Self::Tx, events: &[EventEnvelope]) -> Result<(), sqlx::Error> {
        let mut insert = QueryBuilder::<Postgres>::new(format!("INSERT INTO events ({EVENT_COLUMNS}) "));
        insert.push_values(events, |mut row, e| {
            row.push_bind(e.global_position)
                .push_bind(e.event_id)
                .push_bind(&e.stream_type)
                .push_bind(&e.stream_id)
                .push_bind(e.stream_version)
                .push_bind(&e.event_type)
                .push_bind(e.schema_version)
                .push_bind(Json(&e.data))
                .push_bind(Json(&e.metadata))
                .push_bind(&e.prev_hash)
                .push_bind(&e.hash)
                .push_bind(e.recorded_at);
        });
        insert.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn upsert_read_models(&self, tx: &mut Self::Tx, rows: &[&ReadModelWrite], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let mut upsert = QueryBuilder::<Postgres>::new("INSERT INTO read_models (kind, id, org_id, version, doc, updated_at) ");
        upsert.push_values(rows, |mut row, m| {
            row.push_bind(&m.kind)
                .push_bind(&m.id)
                .push_bind(&m.org_id)
                .push_bind(m.version)
                .push_bind(&m.doc)
                .push_bind(now);
        });
        upsert.push(
            " ON CONFLICT (kind, id) DO UPDATE SET org_id = excluded.org_id, version = excluded.version, \
             doc = excluded.doc, updated_at = excluded.updated_at",
        );
        upsert.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn insert_snapshots(&self, tx: &mut Self::Tx, snapshots: &[&Snapshot]) -> Result<(), sqlx::Error> {
        let mut insert = QueryBuilder::<Postgres>::new("INSERT INTO snapshots (stream_id, version, kind, doc) ");
        insert.push_values(snapshots, |mut row, s| {
            row.push_bind(&s.stream_id)
                .push_bind(s.version)
                .push_bind(&s.kind)
                .push_bind(&s.doc);
        });
        insert.push(" ON CONFLICT DO NOTHING");
        insert.build().execute(&mut **tx).await?;
        Ok(())
    }

    async fn delete_read_models(&self, tx: &mut Self::Tx, kinds: &[String]) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM read_models WHERE kind = ANY($1)")
            .bind(kinds)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM snapshots WHERE kind = ANY($1)")
            .bind(kinds)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Moves the head and wakes other processes' listeners in one round trip.
    async fn advance_head(&self, tx: &mut Self::Tx, head: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "WITH moved AS (UPDATE log_head SET position = $1 WHERE id RETURNING position) \
             SELECT pg_notify('fleetledger_events', position::text || ' ' || $2) FROM moved",
        )
        .bind(head)
        .bind(&self.origin)
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

    /// By constraint name.
    fn violation(error: &sqlx::Error) -> Option<Violation> {
        let sqlx::Error::Database(db) = error else {
            return None;
        };
        match db.constraint() {
            Some("events_stream_version_key") => Some(Violation::StreamVersion),
            Some("events_event_id_key") => Some(Violation::EventId),
            _ => None,
        }
    }
}

struct PgLease(sqlx::PgConnection);

#[async_trait]
impl LeaseHolder for PgLease {
    async fn alive(&mut self) -> bool {
        sqlx::query("SELECT 1").execute(&mut self.0).await.is_ok()
    }
}

type Row = EventRow<Uuid>;

#[async_trait]
impl EventStore for PgStore {
    async fn submit(&self, request: AppendRequest) -> Result<Submitted, StoreError> {
        self.writer.submit(request).await
    }

    async fn read_stream(&self, stream_id: &str, from_version: i64) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(from_version)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn read_stream_between(&self, stream_id: &str, from_version: i64, to_version: i64) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 AND stream_version <= $3 ORDER BY stream_version"
        ))
        .bind(stream_id)
        .bind(from_version)
        .bind(to_version)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn snapshot_at(&self, stream_id: &str, version: i64) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<Snapshot> = sqlx::query_as(
            "SELECT stream_id, version, kind, doc FROM snapshots WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(stream_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn version_at(&self, stream_id: &str, at: DateTime<Utc>) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1 AND recorded_at <= $2")
            .bind(stream_id)
            .bind(at)
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn read_all(&self, after: i64, limit: i64, stream_type: Option<&str>) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > $1 AND ($3::text IS NULL OR stream_type = $3) \
             ORDER BY global_position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .bind(stream_type)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn read_org(&self, after: i64, limit: i64, org_id: &str, stream_type: Option<&str>) -> Result<Vec<EventEnvelope>, StoreError> {
        // `metadata->>'org_id'` is the expression `events_org_position_idx` indexes.
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE metadata->>'org_id' = $4 AND global_position > $1 \
             AND ($3::text IS NULL OR stream_type = $3) ORDER BY global_position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .bind(stream_type)
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn read_all_for_fold(&self, after: i64, limit: i64) -> Result<Vec<FoldEvent>, StoreError> {
        let rows: Vec<FoldRow> = sqlx::query_as(&format!(
            "SELECT {FOLD_COLUMNS} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn stream_version(&self, stream_id: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn head(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT position FROM log_head").fetch_one(&self.pool).await?)
    }

    async fn load_model(&self, kind: &str, id: &str) -> Result<Option<StoredModel>, StoreError> {
        let model = sqlx::query_as("SELECT kind, id, org_id, version, doc FROM read_models WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(model)
    }

    async fn list_models(&self, kind: &str) -> Result<Vec<StoredModel>, StoreError> {
        let models = sqlx::query_as("SELECT kind, id, org_id, version, doc FROM read_models WHERE kind = $1")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        Ok(models)
    }

    async fn latest_in_org(&self, org_id: &str, kinds: &[&str]) -> Result<Vec<Latest>, StoreError> {
        // The column names of the two tables differ, so the event's need no prefix.
        let rows: Vec<LatestRow<Uuid>> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS}, (r.doc::jsonb ->> 'name') AS name FROM read_models r \
             JOIN events e ON e.stream_id = r.id AND e.stream_version = r.version \
             WHERE r.org_id = $1 AND r.kind = ANY($2)"
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
             VALUES ($1, $2, $3, 0, '[]', '', $4) ON CONFLICT (org_id, idem_key) DO UPDATE SET \
             request_hash = excluded.request_hash, status = 0, headers = '[]', body = '', created_at = excluded.created_at \
             WHERE idempotency_keys.created_at < $5",
        )
        .bind(org_id)
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(now - IDEMPOTENCY_TTL)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() > 0 {
            return Ok(IdempotencyClaim::Claimed);
        }
        let row: IdempotencyRow = sqlx::query_as(&format!(
            "SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2"
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
            "UPDATE idempotency_keys SET request_hash = $4, created_at = $5 \
             WHERE org_id = $1 AND idem_key = $2 AND created_at = $3 AND status = 0",
        )
        .bind(org_id)
        .bind(key)
        .bind(claimed_at)
        .bind(request_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() > 0)
    }

    async fn complete_idempotency(&self, record: &IdempotencyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $4, headers = $5, body = $6 \
             WHERE org_id = $1 AND idem_key = $2 AND request_hash = $3",
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
        sqlx::query("DELETE FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2 AND request_hash = $3 AND status = 0")
            .bind(org_id)
            .bind(key)
            .bind(request_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn idempotency_key_used(&self, org_id: &str, key: &str, since: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE recorded_at >= $3 \
             AND metadata->>'org_id' = $1 AND metadata->>'idempotency_key' = $2)",
        )
        .bind(org_id)
        .bind(key)
        .bind(since)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn record_key_usage(&self, usage: &[(String, DateTime<Utc>)]) -> Result<(), StoreError> {
        for (key_id, at) in usage {
            sqlx::query(
                "INSERT INTO key_usage (key_id, last_used_at) VALUES ($1, $2) ON CONFLICT (key_id) \
                 DO UPDATE SET last_used_at = greatest(key_usage.last_used_at, excluded.last_used_at)",
            )
            .bind(key_id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn key_usage(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as("SELECT key_id, last_used_at FROM key_usage")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
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
        write::swap_read_models(&self.backend, kinds, rows, snapshots, through).await
    }

    async fn import_events(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        write::import_events(&self.backend, events).await
    }

    async fn event_exists(&self, event_id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE event_id = $1)")
            .bind(event_id)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn checkpoint(&self, name: &str) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT position FROM checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }

    async fn save_checkpoint(&self, name: &str, position: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, $2, now()) ON CONFLICT (name) \
             DO UPDATE SET position = greatest(checkpoints.position, excluded.position), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn try_lead(&self, name: &str) -> Result<Option<LeaderLease>, StoreError> {
        // The advisory lock lives as long as this connection, which leaves the pool for good.
        let mut conn = self.pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        Ok(got.then(|| LeaderLease {
            holder: Box::new(PgLease(conn)),
        }))
    }

    fn commits(&self) -> watch::Receiver<i64> {
        self.commits.clone()
    }

    fn recent(&self, after: i64) -> Option<Vec<EventEnvelope>> {
        self.writer.recent(after, *self.commits.borrow())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn live_data_key(&self, org_id: &str) -> Result<Option<DataKey>, StoreError> {
        data_keys::pg::live(&self.pool, org_id).await
    }

    async fn data_key(&self, kid: &str) -> Result<Option<DataKey>, StoreError> {
        data_keys::pg::by_kid(&self.pool, kid).await
    }

    async fn data_keys(&self) -> Result<Vec<DataKey>, StoreError> {
        data_keys::pg::all(&self.pool).await
    }

    async fn add_data_key(&self, key: &DataKey) -> Result<NewDataKey, StoreError> {
        data_keys::pg::add(&self.pool, key).await
    }

    async fn destroy_data_keys(&self, org_id: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        data_keys::pg::destroy(&self.pool, org_id, at).await
    }

    async fn rewrap_data_keys(&self, master_id: &str, rewrap: data_keys::Rewrap<'_>) -> Result<u64, StoreError> {
        data_keys::pg::rewrap(&self.pool, master_id, rewrap).await
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
        console_sessions::pg::open(&self.pool, session).await
    }

    async fn console_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<ConsoleSession>, StoreError> {
        console_sessions::pg::find(&self.pool, token_hash, now).await
    }

    async fn close_console_session(&self, token_hash: &str) -> Result<(), StoreError> {
        console_sessions::pg::close(&self.pool, token_hash).await
    }
}

#[cfg(test)]
mod tests {
    use super::commit_note;

    #[test]
    fn a_commit_note_names_the_head_and_the_store_that_committed_it() {
        assert_eq!(commit_note("42 5f0c"), Some((42, "5f0c")));
        // A note without an origin (a store of an earlier version) is another store's.
        assert_eq!(commit_note("42"), Some((42, "")));
        assert_eq!(commit_note("head 5f0c"), None);
        assert_eq!(commit_note(""), None);
    }
}
