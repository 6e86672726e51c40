//! What the benchmarks share: flags, percentiles, and a PostgreSQL database of their own.

#![allow(dead_code)]

use chrono::Utc;
use fleetledger_events::chain::{compute_hash, GENESIS};
use fleetledger_events::profile::{ConfigChangeMode, ProfileConfigReplaced, ProfileCreated, ProfileEvent};
use fleetledger_events::{Actor, DomainEvent, EventEnvelope, Metadata};
use sqlx::Connection;
use uuid::Uuid;

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

/// A profile stream of `n` events (created, then config replacements), hash-chained.
pub fn profile_stream(position: &mut i64, n: usize) -> (String, Vec<EventEnvelope>) {
    let id = Uuid::now_v7();
    let org = Uuid::nil();
    let metadata = Metadata {
        org_id: org.to_string(),
        actor: Actor::system("bench"),
        request_id: Some("bench".into()),
        ..Default::default()
    };
    let mut prev = GENESIS.to_string();
    let mut out = Vec::with_capacity(n);
    for v in 0..n {
        let config = serde_json::json!({"packages": ["vim", "curl", "git"], "revision": v % 5, "kernel": {"attr": "linux_6_19"}, "banner": "x".repeat(120)});
        let event = if v == 0 {
            ProfileEvent::Created(ProfileCreated {
                profile_id: id,
                org_id: org,
                name: format!("p-{id}"),
                description: String::new(),
                fleet_ids: vec![],
                config,
                config_hash: format!("{:064x}", v % 5),
                config_schema_version: 1,
                raw_nix: String::new(),
                created_at: Utc::now(),
            })
        } else {
            ProfileEvent::ConfigReplaced(ProfileConfigReplaced {
                mode: ConfigChangeMode::Replace,
                fields: vec!["config".into()],
                config,
                config_hash: format!("{:064x}", v % 5),
                config_schema_version: 1,
                raw_nix: String::new(),
                restored_from_version: None,
                reason: None,
                replaced_at: Utc::now(),
            })
        };
        *position += 1;
        let mut e = EventEnvelope {
            global_position: *position,
            event_id: Uuid::now_v7(),
            stream_type: "profile".into(),
            stream_id: id.to_string(),
            stream_version: v as i64 + 1,
            event_type: event.event_type().into(),
            schema_version: 1,
            data: event.data().into(),
            metadata: metadata.clone(),
            prev_hash: prev.clone(),
            hash: String::new(),
            recorded_at: fleetledger_events::envelope::truncate_micros(Utc::now()),
        };
        e.hash = compute_hash(&e);
        prev = e.hash.clone();
        out.push(e);
    }
    (id.to_string(), out)
}
