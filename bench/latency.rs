//! Commit → JetStream subscriber latency, beside the machine's ceiling for the same path
//! without fleetledger (publish to JetStream → the same pull consumer).
//!
//! Usage: `cargo run --release --example latency -- [--pg URL] [--nats URL]`
//! (defaults: the local PostgreSQL and NATS). Creates and drops its own database and stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use fleetledger::bus::nats::{JetStream, NatsSettings};
use fleetledger::bus::relay::{self, RelaySettings};
use fleetledger::store::{self, AppendRequest, ExpectedVersion};
use fleetledger_events::{Actor, Metadata, NewEvent};
use futures::StreamExt;

#[path = "common.rs"]
mod common;
use common::{arg, percentile, ScratchDb};

fn report(label: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{label:<48} n={:<6} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    );
}

/// Milliseconds from each send to its arrival, for the messages that arrived.
fn latencies(sent: &Mutex<HashMap<String, Instant>>, arrivals: &Mutex<HashMap<String, Instant>>) -> Vec<f64> {
    let arrivals = arrivals.lock().unwrap();
    sent.lock()
        .unwrap()
        .iter()
        .filter_map(|(id, at)| {
            arrivals
                .get(id)
                .map(|got| got.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect()
}

/// Receives from a JetStream stream and records arrival times by message id.
async fn subscriber(js: async_nats::jetstream::Context, stream: String, arrivals: Arc<Mutex<HashMap<String, Instant>>>) {
    let stream = js.get_stream(&stream).await.expect("stream");
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    while let Some(Ok(m)) = messages.next().await {
        let now = Instant::now();
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        arrivals.lock().unwrap().insert(id, now);
    }
}

#[tokio::main]
async fn main() {
    let pg = arg("--pg", "postgres://postgres@127.0.0.1:5432/postgres");
    let nats_url = arg("--nats", "nats://127.0.0.1:4222");
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let db = ScratchDb::create(&pg, "fleetledger_bench").await;
    let log = store::connect(&db.url).await.expect("store");

    let settings = NatsSettings {
        url: nats_url.clone(),
        stream: format!("BENCH_{suffix}"),
        subject_prefix: format!("bench_{suffix}"),
    };
    let nats = Arc::new(JetStream::connect(settings.clone()).await.unwrap());
    nats.ensure_stream().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(&nats_url).await.unwrap());
    let arrivals = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(subscriber(js.clone(), settings.stream.clone(), arrivals.clone()));
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(relay::run(
        log.clone(),
        nats.clone(),
        RelaySettings {
            batch: 1000,
            poll: Duration::from_millis(200),
            checkpoint_every: relay::CHECKPOINT_EVERY,
            crash_after_publish: None,
        },
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!("commit → JetStream subscriber latency (PostgreSQL, relay, JetStream, pull consumer)");
    for (rate, seconds) in [(1u64, 20u64), (500, 10)] {
        let committed = Arc::new(Mutex::new(HashMap::new()));
        let interval = Duration::from_micros(1_000_000 / rate);
        let mut tick = tokio::time::interval(interval);
        let mut tasks = Vec::new();
        for i in 0..rate * seconds {
            tick.tick().await;
            let (log, committed) = (log.clone(), committed.clone());
            tasks.push(tokio::spawn(async move {
                let event_id = uuid::Uuid::now_v7();
                let request = AppendRequest {
                    stream_type: "bench".into(),
                    stream_id: format!("bench-{rate}-{i}"),
                    expected: ExpectedVersion::Exact(0),
                    events: vec![NewEvent {
                        event_id,
                        event_type: "bench.happened".into(),
                        schema_version: 1,
                        data: serde_json::json!({"pad": "x".repeat(900)}).into(),
                    }],
                    metadata: Metadata {
                        org_id: "bench".into(),
                        actor: Actor::system("bench"),
                        ..Default::default()
                    },
                    read_models: vec![],
                    snapshots: vec![],
                };
                log.append(request).await.expect("append");
                committed.lock().unwrap().insert(event_id.to_string(), Instant::now());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        report(&format!("fleetledger at {rate} appends/s"), latencies(&committed, &arrivals));
    }

    println!("ceiling: JetStream publish → the same consumer, no fleetledger");
    for (rate, seconds) in [(1u64, 20u64), (500, 10)] {
        let sent = Arc::new(Mutex::new(HashMap::new()));
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        for _ in 0..rate * seconds {
            tick.tick().await;
            let id = uuid::Uuid::now_v7().to_string();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            sent.lock().unwrap().insert(id, Instant::now());
            let ack = js
                .publish_with_headers(format!("{}.raw", settings.subject_prefix), headers, "x".repeat(900).into())
                .await
                .unwrap();
            tokio::spawn(async move { ack.await });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        report(&format!("raw JetStream at {rate} msgs/s"), latencies(&sent, &arrivals));
    }

    let _ = js.delete_stream(&settings.stream).await;
    drop(log);
    db.drop().await;
}
