//! Rebuild throughput from PostgreSQL (target ≥ 200k events/s) beside the raw read
//! ceiling, and time-travel latency on a 10k-event stream (target < 20 ms).
//!
//! Usage: `cargo run --release --example replay -- [--pg URL] [--events N]`.
//! Creates and drops its own database.

use std::time::Instant;

use chrono::Utc;
use fleetledger::audit;
use fleetledger::store;
use fleetledger_events::chain::{compute_hash, GENESIS};
use fleetledger_events::profile::{ConfigChangeMode, ProfileConfigReplaced, ProfileCreated, ProfileEvent};
use fleetledger_events::{Actor, DomainEvent, EventEnvelope, Metadata};
use futures::TryStreamExt;

#[path = "common.rs"]
mod common;
use common::{arg, percentile, ScratchDb};
use sqlx::Connection;
use uuid::Uuid;

/// A profile stream of `n` events (created, then config replacements), hash-chained.
fn profile_stream(position: &mut i64, n: usize) -> (String, Vec<EventEnvelope>) {
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
            data: event.data(),
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

#[tokio::main]
async fn main() {
    let pg = arg("--pg", "postgres://postgres@127.0.0.1:5432/postgres");
    let total: usize = arg("--events", "1000000").parse().unwrap();
    let db = ScratchDb::create(&pg, "fleetledger_bench").await;
    let url = db.url.clone();
    let log = store::connect(&url).await.expect("store");

    // Seed: one 10k-event stream for time travel, the rest in 100-event profile streams.
    let seeding = Instant::now();
    let mut position = 0;
    let (long_id, long) = profile_stream(&mut position, 10_000);
    log.import_events(&long).await.unwrap();
    while (position as usize) < total {
        let mut batch = Vec::with_capacity(100_000);
        while batch.len() < 100_000 && (position as usize) < total {
            let n = 100.min(total - position as usize);
            batch.extend(profile_stream(&mut position, n).1);
        }
        log.import_events(&batch).await.unwrap();
    }
    eprintln!("seeded {position} events in {:.1}s", seeding.elapsed().as_secs_f64());
    sqlx::query("VACUUM ANALYZE events")
        .execute(&mut sqlx::PgConnection::connect(&url).await.unwrap())
        .await
        .unwrap();

    // Ceiling: PostgreSQL streaming the same rows to this process, nothing decoded.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let started = Instant::now();
    let mut rows =
        sqlx::query("SELECT global_position, stream_type, stream_id, stream_version, event_type, schema_version, data FROM events ORDER BY global_position")
            .fetch(&mut conn);
    let mut n = 0u64;
    while rows.try_next().await.unwrap().is_some() {
        n += 1;
    }
    drop(rows);
    let raw = n as f64 / started.elapsed().as_secs_f64();

    let report = audit::rebuild(log.clone(), None, |_, _| {}).await.unwrap();
    let rate = report.events as f64 / report.seconds;
    println!("rebuild from PostgreSQL: {} events, {} read models", report.events, report.models);
    println!("  fleetledger rebuild     {:>10.0} events/s  ({:.1} s)", rate, report.seconds);
    println!(
        "  ceiling: raw row fetch  {:>10.0} rows/s   (the columns rebuild reads, nothing decoded)",
        raw
    );
    println!("  ratio                   {:>10.2}", rate / raw);

    // Time travel: read the stream and fold to a version, as the API does.
    for version in [100i64, 5_000, 10_000] {
        let mut samples = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            // As the API does: the nearest snapshot, then the events after it.
            let snapshot = log.snapshot_at(&long_id, version - 1).await.unwrap();
            let from = snapshot.as_ref().map_or(1, |s| s.version + 1);
            let events = log.read_stream_between(&long_id, from, version).await.unwrap();
            let state = fleetledger::streams::get("profile")
                .unwrap()
                .public_state(snapshot.as_ref().map(|s| s.doc.as_str()), &events)
                .unwrap();
            std::hint::black_box(state);
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "time travel on a 10,000-event stream to version {version:>5}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        );
    }

    drop(log);
    db.drop().await;
}
