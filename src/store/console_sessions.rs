//! The `console_sessions` table: who is signed in to the web console. A row holds the
//! sha256 of a session token (the token itself lives only in the browser's cookie), the
//! key the session was opened with and when it ends. Mutable and outside the log, like
//! `data_keys`: signing out deletes the row. The statements per backend are here; the
//! cookie and the checks are in `crate::api::console`.

use chrono::{DateTime, Utc};

use super::StoreError;

/// One open console session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// sha256 (hex) of the session token.
    pub token_hash: String,
    pub key_id: String,
    pub org_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

type Row<T> = (String, String, String, T, T);
const COLUMNS: &str = "token_hash, key_id, org_id, created_at, expires_at";

pub(super) mod pg {
    use sqlx::PgPool;

    use super::*;

    /// Records a session, and forgets sessions that ended (so the table holds only open ones
    /// without a sweeper task).
    pub async fn open(pool: &PgPool, session: &ConsoleSession) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(session.created_at)
            .execute(pool)
            .await?;
        sqlx::query(&format!("INSERT INTO console_sessions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&session.token_hash)
            .bind(&session.key_id)
            .bind(&session.org_id)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(pool)
            .await?;
        Ok(())
    }

    pub async fn find(pool: &PgPool, token_hash: &str, now: DateTime<Utc>) -> Result<Option<ConsoleSession>, StoreError> {
        let row: Option<Row<DateTime<Utc>>> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM console_sessions WHERE token_hash = $1 AND expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|(token_hash, key_id, org_id, created_at, expires_at)| ConsoleSession {
            token_hash,
            key_id,
            org_id,
            created_at,
            expires_at,
        }))
    }

    pub async fn close(pool: &PgPool, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(pool)
            .await?;
        Ok(())
    }
}

pub(super) mod sqlite {
    use fleetledger_events::envelope::micros;
    use sqlx::SqlitePool;

    use super::*;

    fn time(text: &str) -> Result<DateTime<Utc>, StoreError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(format!("a console session's time {text:?}: {e}")))
    }

    pub async fn open(pool: &SqlitePool, session: &ConsoleSession) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= ?1")
            .bind(micros::format(&session.created_at))
            .execute(pool)
            .await?;
        sqlx::query(&format!("INSERT INTO console_sessions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"))
            .bind(&session.token_hash)
            .bind(&session.key_id)
            .bind(&session.org_id)
            .bind(micros::format(&session.created_at))
            .bind(micros::format(&session.expires_at))
            .execute(pool)
            .await?;
        Ok(())
    }

    pub async fn find(pool: &SqlitePool, token_hash: &str, now: DateTime<Utc>) -> Result<Option<ConsoleSession>, StoreError> {
        let row: Option<Row<String>> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM console_sessions WHERE token_hash = ?1 AND expires_at > ?2"
        ))
        .bind(token_hash)
        .bind(micros::format(&now))
        .fetch_optional(pool)
        .await?;
        row.map(|(token_hash, key_id, org_id, created_at, expires_at)| {
            Ok(ConsoleSession {
                token_hash,
                key_id,
                org_id,
                created_at: time(&created_at)?,
                expires_at: time(&expires_at)?,
            })
        })
        .transpose()
    }

    pub async fn close(pool: &SqlitePool, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = ?1")
            .bind(token_hash)
            .execute(pool)
            .await?;
        Ok(())
    }
}
