//! The relay to NATS JetStream and the worker runtime, against the real local NATS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fleetledger::store::{EventStore, StoreError};
use fleetledger::workers::{Worker, WorkerContext, WorkerError};
use fleetledger_events::EventEnvelope;

use crate::both_backends;
use crate::cli::{start_server_with, Server};
use crate::helpers::*;

both_backends!(
    the_relay_publishes_every_event_once_in_global_order,
    a_crash_between_publish_and_checkpoint_duplicates_nothing,
    writes_go_on_while_nats_is_down_and_the_lag_drains,
    workers_handle_each_event_once_on_the_log,
    workers_handle_each_event_once_on_jetstream,
    an_event_too_large_for_a_message_does_not_hold_the_relay,
);

mod two_relays_fail_over {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::two_relays_fail_over().await
    }
}

/// Positions 1..=n each once, in order.
fn assert_exactly_once_in_order(messages: &[(i64, String)], n: i64) {
    let positions: Vec<i64> = messages.iter().map(|m| m.0).collect();
    assert_eq!(positions, (1..=n).collect::<Vec<_>>(), "every position once, in order");
    let ids: std::collections::HashSet<_> = messages.iter().map(|m| &m.1).collect();
    assert_eq!(ids.len(), n as usize);
}

async fn the_relay_publishes_every_event_once_in_global_order(backend: Backend) {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    let app = spawn_app_with(store, nats.bus(), vec![]).await;
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    write_concurrently(log.clone(), 8, 1000).await;
    let head = log.head().await.unwrap();
    assert!(head >= 8000);
    assert_eq!(nats.wait_for_messages(head as u64, Duration::from_secs(60)).await, head as u64);
    let messages = nats.read_all(head as usize).await;
    assert_exactly_once_in_order(&messages, head);
    // Subjects carry org, stream type, stream id and event type.
    let js = nats.context().await;
    let mut stream = js.get_stream(&nats.stream).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(300));
    let last = stream
        .get_last_raw_message_by_subject(&format!("{}.{}.test.>", nats.prefix, default_org()))
        .await
        .unwrap();
    assert!(last.subject.ends_with(".test.happened"), "{}", last.subject);
}

fn nats_env(nats: &TestNats) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url.clone()),
        ("FLEETLEDGER_NATS_STREAM", nats.stream.clone()),
        ("FLEETLEDGER_NATS_SUBJECT_PREFIX", nats.prefix.clone()),
    ]
}

fn serve(store: &TestStore, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_server_with(store, &env)
}

async fn a_crash_between_publish_and_checkpoint_duplicates_nothing(backend: Backend) {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    let mut env = nats_env(&nats);
    env.push(("FLEETLEDGER_RELAY_CRASH_AFTER_PUBLISH", "1".into()));
    let mut crashing = serve(&store, &env);
    let status = crashing.child.wait().unwrap();
    assert!(!status.success(), "the relay aborted after publishing");
    assert!(crashing.logs_after_exit().contains("crash injected"));
    let log = fleetledger::store::connect(&store.url()).await.unwrap();
    assert_eq!(log.checkpoint("relay").await.unwrap(), 0, "the checkpoint did not move");
    let published = nats.wait_for_messages(1, Duration::from_secs(10)).await;
    assert!(published >= 1);

    let mut server = serve(&store, &nats_env(&nats));
    write_concurrently(log.clone(), 2, 50).await;
    let head = log.head().await.unwrap();
    assert_eq!(nats.wait_for_messages(head as u64, Duration::from_secs(30)).await, head as u64);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once_in_order(&nats.read_all(head as usize + 1).await, head);
    assert!(server.terminate().success());
}

async fn relay_lag(app: &TestApp) -> f64 {
    let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("fleetledger_relay_lag_events"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn writes_go_on_while_nats_is_down_and_the_lag_drains(backend: Backend) {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    let mut own = OwnNats::new();
    let bus = fleetledger::config::BusSettings {
        nats_url: Some(own.url()),
        ..nats.bus()
    };
    // NATS is unreachable at start and for 30 s.
    let down_since = Instant::now();
    let app = spawn_app_with(store, bus.clone(), vec![]).await;
    let id = app.create_profile(serde_json::json!({"name": "P"})).await;
    let mut writes = 0;
    while down_since.elapsed() < Duration::from_secs(30) {
        let res = app
            .admin(reqwest::Method::PUT, &format!("/api/v1/profiles/{id}"))
            .json(&serde_json::json!({"config": {"n": writes}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "writes succeed while NATS is down");
        writes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let head = log.head().await.unwrap();
    // The gauge is refreshed at each publish attempt (a failing one waits out its ack timeout).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lag = relay_lag(&app).await;
        if lag >= head as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "relay lag grew only to {lag} of {head}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    own.start();
    let own_stream = TestNats {
        url: bus.nats_url.clone().unwrap(),
        stream: nats.stream.clone(),
        prefix: nats.prefix.clone(),
    };
    assert_eq!(
        own_stream.wait_for_messages(head as u64, Duration::from_secs(60)).await,
        head as u64,
        "the lag drained"
    );
    assert_exactly_once_in_order(&own_stream.read_all(head as usize).await, head);
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay_lag(&app).await > 0.0 {
        assert!(Instant::now() < deadline, "the lag metric returns to 0");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::mem::forget(own_stream);
}

async fn two_relays_fail_over() {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(Backend::Postgres).await else {
        return;
    };
    let env = nats_env(&nats);
    let mut first = serve(&store, &env);
    let mut second = serve(&store, &env);
    let leading = |s: &Server| s.logs().contains("relay: leading");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !leading(&first) && !leading(&second) {
        assert!(Instant::now() < deadline, "a relay leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(leading(&first) ^ leading(&second), "exactly one relay leads");
    let (leader, standby) = if leading(&first) {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    let log = fleetledger::store::connect(&store.url()).await.unwrap();
    write_concurrently(log.clone(), 4, 100).await;
    let head = log.head().await.unwrap();
    assert_eq!(nats.wait_for_messages(head as u64, Duration::from_secs(30)).await, head as u64);

    leader.child.kill().unwrap();
    leader.child.wait().unwrap();
    let took_over = Instant::now();
    while !leading(standby) {
        assert!(
            took_over.elapsed() < Duration::from_secs(15),
            "the standby takes over within seconds"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    write_concurrently(log.clone(), 4, 100).await;
    let head = log.head().await.unwrap();
    assert_eq!(nats.wait_for_messages(head as u64, Duration::from_secs(30)).await, head as u64);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly_once_in_order(&nats.read_all(head as usize + 1).await, head);
}

/// Records an outcome for every `test` event.
struct Receipts {
    name: String,
    calls: AtomicUsize,
}

#[async_trait]
impl Worker for Receipts {
    fn name(&self) -> &str {
        &self.name
    }
    fn stream_types(&self) -> Vec<&'static str> {
        vec!["test"]
    }
    async fn handle(&self, event: &EventEnvelope, ctx: &WorkerContext) -> Result<(), WorkerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let data = serde_json::json!({"trigger": event.global_position});
        ctx.record_outcome(event, "receipt", &format!("receipt-{}", event.stream_id), "receipt.recorded", data)
            .await?;
        Ok(())
    }
    async fn record_failure(&self, event: &EventEnvelope, ctx: &WorkerContext, error: &str) -> Result<(), StoreError> {
        let data = serde_json::json!({"trigger": event.global_position, "error": error});
        ctx.record_outcome(event, "receipt", &format!("receipt-{}", event.stream_id), "receipt.failed", data)
            .await?;
        Ok(())
    }
}

async fn receipts(log: &dyn EventStore) -> Vec<EventEnvelope> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = log.read_all(after, 1000, Some("receipt")).await.unwrap();
        let Some(last) = page.last().map(|e| e.global_position) else {
            return out;
        };
        after = last;
        out.extend(page);
    }
}

async fn wait_for_receipts(log: &dyn EventStore, n: usize) -> Vec<EventEnvelope> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = receipts(log).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn check_worker(store: TestStore, bus: fleetledger::config::BusSettings) {
    let worker = Arc::new(Receipts {
        name: "receipts".into(),
        calls: AtomicUsize::new(0),
    });
    let app = spawn_app_with(store, bus.clone(), vec![worker.clone()]).await;
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    write_concurrently(log.clone(), 4, 100).await;
    let got = wait_for_receipts(log.as_ref(), 400).await;
    assert_eq!(got.len(), 400);
    let causes: std::collections::HashSet<_> = got.iter().map(|e| e.metadata.causation_id.clone().unwrap()).collect();
    assert_eq!(causes.len(), 400, "one outcome per trigger, caused by it");
    let store = app.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Redelivery from the start (checkpoint and consumer gone) handles nothing twice.
    match &store.db {
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("DELETE FROM checkpoints WHERE name = 'worker:receipts'")
                .execute(&pool)
                .await
                .unwrap();
        }
        None => {
            let pool = sqlx::SqlitePool::connect(&store.url()).await.unwrap();
            sqlx::query("DELETE FROM checkpoints WHERE name = 'worker:receipts'")
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    if let Some(url) = &bus.nats_url {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let stream = js.get_stream(&bus.nats_stream).await.unwrap();
        stream.delete_consumer("worker-receipts").await.unwrap();
    }
    let again = Arc::new(Receipts {
        name: "receipts".into(),
        calls: AtomicUsize::new(0),
    });
    let app = spawn_app_with(store, bus, vec![again.clone()]).await;
    write_concurrently(log.clone(), 1, 10).await;
    let got = wait_for_receipts(log.as_ref(), 410).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receipts(log.as_ref()).await.len(), 410);
    assert_eq!(got.len(), 410);
    assert_eq!(again.calls.load(Ordering::SeqCst), 10, "only the new events were handled");
    drop(app);
}

async fn workers_handle_each_event_once_on_the_log(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    check_worker(store, Default::default()).await;
}

async fn workers_handle_each_event_once_on_jetstream(backend: Backend) {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    check_worker(store, nats.bus()).await;
}

/// An event larger than NATS takes in one message (here an instance's overrides: a 60 KB
/// body whose long key above 5,000 leaves is recorded as 5,000 flattened paths, over
/// 3 MB) is published without its data, and the events after it follow, instead of the
/// relay retrying it forever.
async fn an_event_too_large_for_a_message_does_not_hold_the_relay(backend: Backend) {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    let app = spawn_app_with(store, nats.bus(), vec![]).await;
    let created = Answer::of(
        app.admin(reqwest::Method::POST, "/v1/instances")
            .json(&serde_json::json!({"name": "big", "model_provider": "anthropic", "openclaw_version": "2026.9.6"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let instance = created.json()["id"].as_str().unwrap().to_string();
    let leaves: serde_json::Map<String, serde_json::Value> = (0..5000).map(|i| (format!("k{i}"), serde_json::json!(0))).collect();
    let overrides = serde_json::json!({ "L".repeat(600): leaves });
    let answer = Answer::of(
        app.admin(reqwest::Method::PATCH, &format!("/v1/instances/{instance}"))
            .json(&serde_json::json!({"openclaw_config": overrides})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", &answer.text[..answer.text.len().min(300)]);
    app.create_profile(serde_json::json!({"name": "after"})).await;
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let head = log.head().await.unwrap();
    assert_eq!(
        nats.wait_for_messages(head as u64, Duration::from_secs(30)).await,
        head as u64,
        "every event reaches JetStream, the one after the large one included"
    );
    let big = log
        .read_stream(&instance, 1)
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|e| serde_json::to_string(&e.data).unwrap().len())
        .unwrap();
    assert!(
        serde_json::to_string(&big.data).unwrap().len() > 1024 * 1024,
        "the event is larger than a NATS message"
    );
    let js = nats.context().await;
    let stream = js.get_stream(&nats.stream).await.unwrap();
    let message = stream.get_raw_message(big.global_position as u64).await.unwrap();
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["id"], big.event_id.to_string());
    assert!(
        event["data"]["data"].get("$fleetledger_omitted").is_some(),
        "the message leaves the data out: {}",
        &message.payload.len()
    );
}
