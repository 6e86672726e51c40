//! The `data_keys` table: per-org data keys, wrapped by the master key, that seal the
//! secrets events carry. Unlike the log it is mutable — destroying a row's key is how an
//! org's secrets are crypto-shredded, and rotating the master key rewrites every row — so
//! it lives beside the log, never in it. The statements per backend are here; the crypto
//! is in `crate::secrets`.

use chrono::{DateTime, Utc};

use super::StoreError;

/// One data key as stored: wrapped (nonce ‖ AES-256-GCM ciphertext) by the master key
/// `master_id` names, or destroyed (a tombstone without the key).
#[derive(Clone)]
pub struct DataKey {
    pub kid: String,
    pub org_id: String,
    pub master_id: String,
    pub wrapped: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub destroyed_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("kid", &self.kid)
            .field("org_id", &self.org_id)
            .field("master_id", &self.master_id)
            .field("destroyed_at", &self.destroyed_at)
            .finish_non_exhaustive()
    }
}

/// What adding an org's first live data key came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewDataKey {
    Added,
    /// Another process added the org's live key first: use that one.
    Lost,
    /// Live keys in the store are wrapped by another master key (rotated meanwhile):
    /// nothing was added.
    OtherMaster,
}

/// Re-wraps one live key for `rewrap_data_keys`; an error aborts the whole rotation.
pub type Rewrap<'a> = &'a (dyn Fn(&DataKey) -> Result<Vec<u8>, String> + Send + Sync);

fn refused(error: String) -> StoreError {
    StoreError::Corrupt(format!("a data key could not be re-wrapped, nothing was changed: {error}"))
}

pub(super) mod pg {
    use sqlx::PgPool;

    use super::*;

    type Row = (String, String, String, Option<Vec<u8>>, DateTime<Utc>, Option<DateTime<Utc>>);
    const COLUMNS: &str = "kid, org_id, master_id, wrapped_key, created_at, destroyed_at";

    fn key((kid, org_id, master_id, wrapped, created_at, destroyed_at): Row) -> DataKey {
        DataKey {
            kid,
            org_id,
            master_id,
            wrapped,
            created_at,
            destroyed_at,
        }
    }

    pub async fn live(pool: &PgPool, org_id: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM data_keys WHERE org_id = $1 AND destroyed_at IS NULL"
        ))
        .bind(org_id)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(key))
    }

    pub async fn by_kid(pool: &PgPool, kid: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM data_keys WHERE kid = $1"))
            .bind(kid)
            .fetch_optional(pool)
            .await?;
        Ok(row.map(key))
    }

    pub async fn all(pool: &PgPool) -> Result<Vec<DataKey>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM data_keys ORDER BY created_at, kid"))
            .fetch_all(pool)
            .await?;
        Ok(rows.into_iter().map(key).collect())
    }

    pub async fn add(pool: &PgPool, new: &DataKey) -> Result<NewDataKey, StoreError> {
        let mut tx = pool.begin().await?;
        // Self-conflicting, and conflicting with a rotation's lock: keys are added one at a
        // time and never beside a rotation in progress, so the master check below holds.
        sqlx::query("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let other: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM data_keys WHERE destroyed_at IS NULL AND master_id <> $1)")
            .bind(&new.master_id)
            .fetch_one(&mut *tx)
            .await?;
        if other {
            return Ok(NewDataKey::OtherMaster);
        }
        let added = sqlx::query(
            "INSERT INTO data_keys (kid, org_id, master_id, wrapped_key, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&new.kid)
        .bind(&new.org_id)
        .bind(&new.master_id)
        .bind(&new.wrapped)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if added == 1 { NewDataKey::Added } else { NewDataKey::Lost })
    }

    pub async fn destroy(pool: &PgPool, org_id: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let destroyed =
            sqlx::query("UPDATE data_keys SET wrapped_key = NULL, destroyed_at = $2 WHERE org_id = $1 AND destroyed_at IS NULL")
                .bind(org_id)
                .bind(at)
                .execute(pool)
                .await?
                .rows_affected();
        vacuum(pool).await;
        Ok(destroyed)
    }

    pub async fn rewrap(pool: &PgPool, master_id: &str, rewrap: Rewrap<'_>) -> Result<u64, StoreError> {
        let mut tx = pool.begin().await?;
        // Holds off every other write to the table (readers go on) until the commit.
        sqlx::query("LOCK TABLE data_keys IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM data_keys WHERE destroyed_at IS NULL ORDER BY kid"))
            .fetch_all(&mut *tx)
            .await?;
        let count = rows.len() as u64;
        for row in rows.into_iter().map(key) {
            let wrapped = rewrap(&row).map_err(refused)?;
            sqlx::query("UPDATE data_keys SET wrapped_key = $2, master_id = $3 WHERE kid = $1")
                .bind(&row.kid)
                .bind(wrapped)
                .bind(master_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        vacuum(pool).await;
        Ok(count)
    }

    /// Drops the dead row versions that still hold replaced or destroyed wrapped keys
    /// (best effort: the WAL and backups keep them until recycled, still under the master
    /// key that wrapped them).
    async fn vacuum(pool: &PgPool) {
        if let Err(error) = sqlx::query("VACUUM data_keys").execute(pool).await {
            tracing::warn!(%error, "could not vacuum data_keys");
        }
    }
}

pub(super) mod sqlite {
    use fleetledger_events::envelope::micros;
    use sqlx::SqlitePool;

    use super::*;

    type Row = (String, String, String, Option<Vec<u8>>, String, Option<String>);
    const COLUMNS: &str = "kid, org_id, master_id, wrapped_key, created_at, destroyed_at";

    fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("data_keys time {text:?}: {e}")))
    }

    fn key((kid, org_id, master_id, wrapped, created_at, destroyed_at): Row) -> Result<DataKey, StoreError> {
        Ok(DataKey {
            kid,
            org_id,
            master_id,
            wrapped,
            created_at: time(&created_at)?,
            destroyed_at: destroyed_at.as_deref().map(time).transpose()?,
        })
    }

    pub async fn live(pool: &SqlitePool, org_id: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM data_keys WHERE org_id = ?1 AND destroyed_at IS NULL"
        ))
        .bind(org_id)
        .fetch_optional(pool)
        .await?;
        row.map(key).transpose()
    }

    pub async fn by_kid(pool: &SqlitePool, kid: &str) -> Result<Option<DataKey>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM data_keys WHERE kid = ?1"))
            .bind(kid)
            .fetch_optional(pool)
            .await?;
        row.map(key).transpose()
    }

    pub async fn all(pool: &SqlitePool) -> Result<Vec<DataKey>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM data_keys ORDER BY created_at, kid"))
            .fetch_all(pool)
            .await?;
        rows.into_iter().map(key).collect()
    }

    pub async fn add(pool: &SqlitePool, new: &DataKey) -> Result<NewDataKey, StoreError> {
        // IMMEDIATE takes the write lock first: adds and rotations are serialized.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let other: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM data_keys WHERE destroyed_at IS NULL AND master_id <> ?1)")
            .bind(&new.master_id)
            .fetch_one(&mut *tx)
            .await?;
        if other {
            return Ok(NewDataKey::OtherMaster);
        }
        let added = sqlx::query(
            "INSERT INTO data_keys (kid, org_id, master_id, wrapped_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&new.kid)
        .bind(&new.org_id)
        .bind(&new.master_id)
        .bind(&new.wrapped)
        .bind(micros::format(&new.created_at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if added == 1 { NewDataKey::Added } else { NewDataKey::Lost })
    }

    pub async fn destroy(pool: &SqlitePool, org_id: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = pool.acquire().await?;
        // Overwrite freed content instead of leaving the wrapped key in free pages.
        sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
        let destroyed =
            sqlx::query("UPDATE data_keys SET wrapped_key = NULL, destroyed_at = ?2 WHERE org_id = ?1 AND destroyed_at IS NULL")
                .bind(org_id)
                .bind(micros::format(&at))
                .execute(&mut *conn)
                .await?
                .rows_affected();
        checkpoint(&mut conn).await;
        Ok(destroyed)
    }

    pub async fn rewrap(pool: &SqlitePool, master_id: &str, rewrap: Rewrap<'_>) -> Result<u64, StoreError> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("PRAGMA secure_delete = ON").execute(&mut *tx).await?;
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM data_keys WHERE destroyed_at IS NULL ORDER BY kid"))
            .fetch_all(&mut *tx)
            .await?;
        let count = rows.len() as u64;
        for row in rows {
            let row = key(row)?;
            let wrapped = rewrap(&row).map_err(refused)?;
            sqlx::query("UPDATE data_keys SET wrapped_key = ?2, master_id = ?3 WHERE kid = ?1")
                .bind(&row.kid)
                .bind(wrapped)
                .bind(master_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let mut conn = pool.acquire().await?;
        checkpoint(&mut conn).await;
        Ok(count)
    }

    /// Moves the WAL into the database file (whose freed content `secure_delete`
    /// overwrites), so replaced wrapped keys do not linger in the WAL. Best effort: a
    /// reader can hold the checkpoint off.
    async fn checkpoint(conn: &mut sqlx::SqliteConnection) {
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(conn).await {
            tracing::warn!(%error, "could not checkpoint the WAL after changing data keys");
        }
    }
}
