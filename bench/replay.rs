//! Rebuild throughput from PostgreSQL (target ≥ 200k events/s) beside the raw read
//! ceiling, and time-travel latency on a 10k-event stream (target < 20 ms).
//!
//! Usage: `cargo run --release --example replay -- [--pg URL] [--events N]`.
//! Creates and drops its own database.

use std::time::Instant;

use fleetledger::audit;
use fleetledger::store;
use futures::TryStreamExt;

#[path = "common.rs"]
mod common;
use common::{arg, percentile, profile_stream, ScratchDb};
use sqlx::Connection;

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
