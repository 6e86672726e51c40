//! Seeds a PostgreSQL database with a generated log of `--events` profile events over
//! `--streams` profiles (hash-chained, imported in consecutive parts as `fleetledger
//! import` writes them), then builds every read model with `rebuild`, so that a server
//! started on it holds that many resources in its cache. `bench/external.py --only scale`
//! uses it to compare a small store with a large one.
//!
//! Usage: `cargo run --release --example scale -- --db URL --events N --streams S`.

use std::time::Instant;

use fleetledger::{audit, store};

#[path = "common.rs"]
mod common;
use common::{arg, profile_stream};

/// Events per imported part (one transaction each).
const PART: usize = 100_000;

#[tokio::main]
async fn main() {
    let url = arg("--db", "");
    assert!(!url.is_empty(), "--db names the database to seed");
    let total: usize = arg("--events", "10000").parse().expect("--events is a number");
    let streams: usize = arg("--streams", "1000").parse().expect("--streams is a number");
    let per_stream = total.div_ceil(streams).max(1);
    let log = store::connect(&url).await.expect("the database opens");
    assert_eq!(log.head().await.unwrap(), 0, "the database is empty");

    let started = Instant::now();
    let mut position = 0i64;
    let mut part = Vec::with_capacity(PART + per_stream);
    let mut imported = 0usize;
    while (position as usize) < total {
        let n = per_stream.min(total - position as usize);
        part.extend(profile_stream(&mut position, n).1);
        if part.len() >= PART || position as usize >= total {
            log.import_events(&part).await.expect("the part imports");
            imported += part.len();
            part.clear();
            eprint!(
                "\rimported {imported} events ({:.0}/s)",
                imported as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!();
    println!(
        "imported {imported} events over {streams} profiles in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report = audit::rebuild(log.clone(), None, |_, _| {}).await.expect("rebuild");
    println!(
        "rebuild: {} events, {} read models in {:.1} s = {:.0} events/s",
        report.events,
        report.models,
        report.seconds,
        report.events as f64 / report.seconds
    );
}
