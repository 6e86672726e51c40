//! Write and read paths over HTTP against this machine's ceilings, in one run:
//! - writes: `PUT /api/v1/profiles/{id}` (one append + inline projection, PostgreSQL,
//!   durable commits) vs pgbench running "insert one 1 KB event + upsert one read model"
//!   in one transaction at the same concurrency;
//! - cached reads: `GET /api/v1/profiles/{id}` vs a bare axum handler returning a
//!   pre-serialized 2 KB body, driven by the same load generator.
//!
//! Usage: `cargo run --release --example http -- [--pg URL] [--seconds N]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetledger::app::Application;
use fleetledger::config::{ServeSettings, Settings, StoreSettings};
use sqlx::Connection;

#[path = "common.rs"]
mod common;
use common::{arg, ScratchDb};

/// Runs `clients` loops of `request(client, n)` for `seconds`; returns completed requests/s.
async fn load<F, Fut>(clients: usize, seconds: u64, request: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let request = Arc::new(request);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (done, request) = (done.clone(), request.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    n += 1;
                    if request(c, n).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The store's own append rate (no HTTP): one 1 KB event and one 1 KB read model each.
async fn append_rate(log: &Arc<dyn fleetledger::store::EventStore>, clients: usize, seconds: u64) -> f64 {
    use fleetledger::store::{AppendRequest, ExpectedVersion, ReadModelWrite};
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..clients).map(|_| AtomicU64::new(0)).collect());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let log = log.clone();
    load(clients, seconds, move |c, _| {
        let (log, versions, stream) = (log.clone(), versions.clone(), format!("append-{run}-{c}"));
        async move {
            let v = versions[c].fetch_add(1, Ordering::Relaxed) as i64;
            let request = AppendRequest {
                stream_type: "bench".into(),
                stream_id: stream.clone(),
                expected: ExpectedVersion::Exact(v),
                events: vec![fleetledger_events::NewEvent {
                    event_id: uuid::Uuid::now_v7(),
                    event_type: "bench.happened".into(),
                    schema_version: 1,
                    data: serde_json::json!({"pad": "x".repeat(1000)}).into(),
                }],
                metadata: fleetledger_events::Metadata {
                    org_id: "bench".into(),
                    actor: fleetledger_events::Actor::system("bench"),
                    ..Default::default()
                },
                read_models: vec![ReadModelWrite {
                    kind: "bench".into(),
                    id: stream,
                    org_id: "bench".into(),
                    version: v + 1,
                    doc: "y".repeat(1000),
                }],
                snapshots: vec![],
            };
            log.append(request).await.is_ok()
        }
    })
    .await
}

fn pgbench(url: &str, clients: usize, seconds: u64) -> f64 {
    let script = std::env::temp_dir().join("fleetledger_pgbench.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 100000)\nBEGIN;\n\
         INSERT INTO bench_events (stream_id, data) VALUES (:id, repeat('x', 1000));\n\
         INSERT INTO bench_models (id, doc) VALUES (:id, repeat('y', 1000)) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc;\n\
         COMMIT;\n",
    )
    .unwrap();
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let pg = arg("--pg", "postgres://postgres@127.0.0.1:5432/postgres");
    let seconds: u64 = arg("--seconds", "10").parse().unwrap();
    let (db, scratch) = (
        ScratchDb::create(&pg, "fleetledger_bench").await,
        ScratchDb::create(&pg, "fleetledger_pgbench").await,
    );
    let mut scratch_conn = sqlx::PgConnection::connect(&scratch.url).await.unwrap();
    sqlx::query("CREATE TABLE bench_events (position BIGSERIAL PRIMARY KEY, stream_id BIGINT NOT NULL, data TEXT NOT NULL)")
        .execute(&mut scratch_conn)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE bench_models (id BIGINT PRIMARY KEY, doc TEXT NOT NULL)")
        .execute(&mut scratch_conn)
        .await
        .unwrap();

    let data = tempfile::tempdir().unwrap();
    let settings = Settings {
        store: StoreSettings {
            data_dir: data.path().to_path_buf(),
            database_url: Some(db.url.clone()),
            master_key: None,
            sqlite_synchronous: Default::default(),
        },
        serve: ServeSettings {
            bus: Default::default(),
            drivers: Default::default(),
            guards: Default::default(),
            no_workers: true,
            relay_crash_after_publish: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            available_kernels: vec![],
            follow_interval_ms: 250,
            shutdown_grace_seconds: 1,
            ready_max_relay_lag_seconds: 60.0,
            // High enough never to refuse a benchmark request; the limiter still runs.
            rate_limit_per_sec: 1_000_000,
            rate_limit_burst: 1_000_000,
            max_sandbox_timeout_seconds: 86_400,
            sandbox_provider: "docker".into(),
            apply_timeout_seconds: 10,
            allow_signup: false,
            default_agent_image: "ghcr.io/hill90/agentbox:latest".into(),
            available_models: vec!["gpt-4.1".into(), "claude-sonnet-4".into(), "gemini-2.5-pro".into()],
            console_session_hours: 12,
        },
    };
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let key = std::fs::read_to_string(data.path().join("admin.key")).unwrap().trim().to_string();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let log = fleetledger::store::connect(&db.url).await.unwrap();

    let mut ids = Vec::new();
    for n in 0..32 {
        let body: serde_json::Value = client
            .post(format!("{base}/api/v1/profiles"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"name": format!("bench-{n}"), "config": {"banner": "x".repeat(900)}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(body["profile"]["id"].as_str().unwrap().to_string());
    }
    let ids = Arc::new(ids);

    println!("write path: PUT /api/v1/profiles/{{id}} (PostgreSQL, durable commits) vs pgbench, same transaction shape");
    for clients in [1usize, 8, 32] {
        let (c, b, k, i) = (client.clone(), base.clone(), key.clone(), ids.clone());
        let ours = load(clients, seconds, move |client_no, n| {
            let (c, url, k) = (c.clone(), format!("{b}/api/v1/profiles/{}", i[client_no % i.len()]), k.clone());
            async move {
                let body = serde_json::json!({"config": {"banner": "x".repeat(900), "n": n}});
                c.put(url)
                    .bearer_auth(k)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .await;
        let store_only = append_rate(&log, clients, seconds).await;
        let ceiling = pgbench(&scratch.url, clients, seconds);
        println!(
            "  {clients:>2} clients: HTTP {ours:>6.0} req/s   store alone {store_only:>6.0} appends/s   pgbench {ceiling:>6.0} tx/s   ratios {:.2} / {:.2}",
            ours / ceiling,
            store_only / ceiling
        );
    }

    // The read ceiling: a bare axum handler with a pre-serialized 2 KB body.
    let body = bytes::Bytes::from("y".repeat(2048));
    let bare = axum::Router::new().route("/x", axum::routing::get(move || std::future::ready(body.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bare_url = format!("http://{}/x", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, bare).await });

    println!("cached reads: GET /api/v1/profiles/{{id}} vs a bare axum handler (2 KB pre-serialized)");
    for clients in [8usize, 32] {
        let (c, b, k, i) = (client.clone(), base.clone(), key.clone(), ids.clone());
        let ours = load(clients, seconds, move |client_no, _| {
            let (c, url, k) = (c.clone(), format!("{b}/api/v1/profiles/{}", i[client_no % i.len()]), k.clone());
            async move {
                c.get(url)
                    .bearer_auth(k)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .await;
        let (c, u) = (client.clone(), bare_url.clone());
        let ceiling = load(clients, seconds, move |_, _| {
            let (c, u) = (c.clone(), u.clone());
            async move { c.get(u).send().await.map(|r| r.status().is_success()).unwrap_or(false) }
        })
        .await;
        println!(
            "  {clients:>2} clients: fleetledger {ours:>8.0} req/s   bare axum {ceiling:>8.0} req/s   ratio {:.2}",
            ours / ceiling
        );
    }

    drop(scratch_conn);
    db.drop().await;
    scratch.drop().await;
}
