//! What the benchmarks share: flags, percentiles, and a PostgreSQL database of their own.

#![allow(dead_code)]

use sqlx::Connection;

/// The value after `--name`, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// The `p` quantile of sorted samples (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A database created for one run and dropped (with its connections) at the end.
pub struct ScratchDb {
    pub url: String,
    name: String,
    admin: sqlx::PgConnection,
}

impl ScratchDb {
    pub async fn create(admin_url: &str, prefix: &str) -> ScratchDb {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(admin_url).await.expect("PostgreSQL is reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the benchmark database");
        let mut url = url::Url::parse(admin_url).expect("a PostgreSQL URL");
        url.set_path(&format!("/{name}"));
        ScratchDb {
            url: url.to_string(),
            name,
            admin,
        }
    }

    pub async fn drop(mut self) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut self.admin)
            .await;
    }
}
