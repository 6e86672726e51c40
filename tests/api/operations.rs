//! Operating the service: liveness and readiness (with NATS going away and coming back,
//! and with the store gone), the series a fresh server exports, and shutdown with an event
//! stream open and a side effect in flight.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::cli::start_server;
use crate::fake_gateway::{Behaviour, FakeGateway};
use crate::helpers::*;

both_backends!(
    readiness_names_nats_while_it_is_away_and_the_relay_lag_grows,
    readiness_without_nats_asks_only_the_store,
    sigterm_closes_an_event_stream_and_exits_within_two_seconds,
    shutdown_drains_a_write_waiting_for_its_side_effect,
);

mod a_fresh_server_exports_every_documented_series {
    // What a fresh server exports does not depend on the backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_fresh_server_exports_every_documented_series(crate::helpers::Backend::Sqlite).await
    }
}

mod readiness_names_an_unreachable_store {
    // Only a PostgreSQL store can become unreachable under a running server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::readiness_names_an_unreachable_store(crate::helpers::Backend::Postgres).await
    }
}

/// Polls `check` until it answers `Some`, failing with `what` after `wait`.
async fn eventually<T, F, Fut>(what: &str, wait: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + wait;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readyz(app: &TestApp) -> Answer {
    Answer::of(app.client.get(app.url("/readyz"))).await
}

/// The parts a 503 from `/readyz` names as failing.
fn failing(answer: &Answer) -> Vec<String> {
    answer.json()["failing"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

async fn metrics(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The value of an unlabelled sample in a Prometheus exposition.
fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|line| line.split(' ').next() == Some(name))
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|value| value.parse().ok())
}

async fn readiness_names_nats_while_it_is_away_and_the_relay_lag_grows(backend: Backend) {
    let Some(nats) = TestNats::new().await else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    let mut own = OwnNats::new();
    own.start();
    let mut settings = serve_settings();
    settings.bus = fleetledger::config::BusSettings {
        nats_url: Some(own.url()),
        ..nats.bus()
    };
    settings.ready_max_relay_lag_seconds = 3.0;
    let app = &spawn_configured(store, settings, vec![]).await;
    let metrics_url = &app.url("/metrics");

    let ready = eventually("ready once NATS is connected", Duration::from_secs(30), || async move {
        let answer = readyz(app).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    let body = ready.json();
    assert_eq!(
        (
            &body["status"],
            &body["store"]["status"],
            &body["nats"]["status"],
            &body["relay_lag_seconds"]["status"]
        ),
        (&json!("ready"), &json!("ok"), &json!("ok"), &json!("ok")),
        "{body}"
    );

    own.stop();
    let away = eventually("not ready while NATS is away", Duration::from_secs(30), || async move {
        let answer = readyz(app).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(away.header("content-type"), Some("application/problem+json"));
    assert!(failing(&away).contains(&"nats".to_string()), "{}", away.text);
    assert!(away.json()["detail"].as_str().unwrap().contains("nats"), "{}", away.text);
    assert_eq!(away.json()["checks"]["nats"]["status"], "disconnected");
    let live = Answer::of(app.client.get(app.url("/healthz"))).await;
    assert_eq!(
        (live.status, live.json()["status"].clone()),
        (200, json!("ok")),
        "the process is alive"
    );

    // An event the relay cannot publish: its age is the lag, and it keeps growing.
    app.create_profile(json!({"name": "while NATS is away"})).await;
    let first = eventually(
        "the relay lag shows the unpublished event",
        Duration::from_secs(30),
        || async move {
            let text = metrics(metrics_url).await;
            let seconds = sample(&text, "fleetledger_relay_lag_seconds").filter(|s| *s > 0.0)?;
            assert!(sample(&text, "fleetledger_relay_lag_events").unwrap() >= 1.0, "{text}");
            Some(seconds)
        },
    )
    .await;
    eventually(
        "the relay lag keeps growing while NATS is away",
        Duration::from_secs(30),
        || async move { sample(&metrics(metrics_url).await, "fleetledger_relay_lag_seconds").filter(|s| *s >= first + 1.0) },
    )
    .await;
    let behind = eventually(
        "not ready once the relay is too far behind",
        Duration::from_secs(30),
        || async move {
            let answer = readyz(app).await;
            failing(&answer).contains(&"relay_lag_seconds".to_string()).then_some(answer)
        },
    )
    .await;
    assert!(failing(&behind).contains(&"nats".to_string()), "{}", behind.text);
    assert_eq!(behind.json()["checks"]["relay_lag_seconds"]["max"], 3.0);

    // NATS is back: the relay catches up and the service is ready again.
    own.start();
    let back = eventually("ready again once NATS is back", Duration::from_secs(60), || async move {
        let answer = readyz(app).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert_eq!(back.json()["relay_lag_seconds"]["status"], "ok", "{}", back.text);
    eventually("the relay lag returns to 0", Duration::from_secs(30), || async move {
        let text = metrics(metrics_url).await;
        let caught_up =
            sample(&text, "fleetledger_relay_lag_seconds") == Some(0.0) && sample(&text, "fleetledger_relay_lag_events") == Some(0.0);
        caught_up.then_some(())
    })
    .await;
}

async fn readiness_without_nats_asks_only_the_store(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let ready = readyz(&app).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let body = ready.json();
    let name = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    assert_eq!(
        body,
        json!({
            "status": "ready",
            "store": {"status": "ok", "backend": name},
            "nats": {"status": "not_configured"},
            "relay_lag_seconds": {"status": "not_configured"},
        })
    );
    // Without NATS there is no relay, and nothing is behind.
    let text = metrics(&app.url("/metrics")).await;
    assert_eq!(sample(&text, "fleetledger_relay_lag_seconds"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "fleetledger_relay_lag_events"), Some(0.0), "{text}");
}

async fn readiness_names_an_unreachable_store(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let app = &app;
    assert_eq!(readyz(app).await.status, 200);
    let db = app.store.db.as_ref().expect("a PostgreSQL store");
    let name = url::Url::parse(&db.url).unwrap().path().trim_start_matches('/').to_string();
    let admin = std::env::var("FLEETLEDGER_TEST_POSTGRES").unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    let gone = eventually("not ready once the store is gone", Duration::from_secs(30), || async move {
        let answer = readyz(app).await;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(failing(&gone), ["store"], "{}", gone.text);
    assert_eq!(gone.header("content-type"), Some("application/problem+json"));
    assert_eq!(gone.json()["checks"]["store"]["status"], "unreachable");
    assert_eq!(Answer::of(app.client.get(app.url("/healthz"))).await.status, 200, "still alive");
}

/// The README's metrics table: the name of every series it documents.
fn documented_series() -> Vec<String> {
    include_str!("../../README.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `fleetledger_"))
        .map(|rest| {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            format!("fleetledger_{name}")
        })
        .collect()
}

async fn a_fresh_server_exports_every_documented_series(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let server = start_server(&store);
    // The first request this server answers.
    let text = metrics(&server.url("/metrics")).await;
    let documented = documented_series();
    assert!(documented.len() >= 8, "the README lists the series: {documented:?}");
    for name in &documented {
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has # HELP:\n{text}");
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")))
            .unwrap_or_else(|| panic!("{name} has # TYPE:\n{text}"));
        let sampled = match kind {
            "histogram" => format!("{name}_bucket{{"),
            _ => name.clone(),
        };
        let is_sample = |l: &&str| {
            l.strip_prefix(sampled.as_str())
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{') || kind == "histogram")
        };
        assert!(text.lines().any(|l| is_sample(&l)), "{name} has a sample:\n{text}");
    }
    for exported in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = exported.split(' ').next().unwrap();
        assert!(documented.iter().any(|d| d == name), "{name} is exported but not in the README");
    }
    // Labelled series start with the label values alerts compare against.
    for line in [
        r#"fleetledger_http_requests_total{surface="profiles",status="500"} 0"#,
        r#"fleetledger_worker_events_total{worker="reprovisioner",outcome="failed"} 0"#,
        r#"fleetledger_dlq_events{stream_type="mc_agent"} 0"#,
        r#"fleetledger_dlq_events{stream_type="instance"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
    assert_eq!(sample(&text, "fleetledger_sse_clients"), Some(0.0));
}

/// Reads a streaming response to its end: what it said, and whether it ended cleanly.
fn read_to_end(mut response: reqwest::Response) -> tokio::task::JoinHandle<(String, bool)> {
    tokio::spawn(async move {
        let mut text = String::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return (text, true),
                Err(_) => return (text, false),
            }
        }
    })
}

async fn sigterm_closes_an_event_stream_and_exits_within_two_seconds(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut server = start_server(&store);
    let key = std::fs::read_to_string(store.dir.path().join("admin.key")).unwrap();
    let stream = reqwest::Client::new()
        .get(server.url("/api/v1/ledger/stream"))
        .bearer_auth(key.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reader = read_to_end(stream);
    let metrics_url = &server.url("/metrics");
    eventually("the server counts the open stream", Duration::from_secs(10), || async move {
        (sample(&metrics(metrics_url).await, "fleetledger_sse_clients") == Some(1.0)).then_some(())
    })
    .await;

    let signalled = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(30), "serve exits after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = signalled.elapsed();
    eprintln!("serve exited {:.3} s after SIGTERM with one SSE client", took.as_secs_f64());
    assert!(status.success(), "serve exits cleanly: {status}");
    assert!(
        took < Duration::from_secs(2),
        "serve exits within 2 s of SIGTERM with an SSE client connected (took {took:?})"
    );
    let (said, ended) = tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    assert!(said.contains(": server shutting down"), "a final comment: {said:?}");
    assert!(ended, "then the end of the stream: {said:?}");
}

async fn shutdown_drains_a_write_waiting_for_its_side_effect(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut server = start_server(&store);
    let key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let client = reqwest::Client::new();
    let base = server.url("");
    let post = |path: &str, body: Value| client.request(Method::POST, format!("{base}{path}")).bearer_auth(&key).json(&body);
    // A gateway whose agents take a while to provision.
    let gateway = FakeGateway::start(Behaviour {
        connect_delay: Some(Duration::from_secs(3)),
        ..Default::default()
    })
    .await;
    let gw: Value = post(
        "/api/v1/gateways",
        json!({"name": "slow", "url": gateway.url, "token": "t", "workspace_root": "/srv/claw"}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let board: Value = post("/api/v1/boards", json!({"name": "B", "gateway_id": gw["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream = client
        .get(server.url("/api/v1/ledger/stream"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let reader = read_to_end(stream);
    gateway.take();
    let creating = tokio::spawn({
        let request = post("/api/v1/agents", json!({"name": "Slow One", "board_id": board["id"]}));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    });
    let gateway = &gateway;
    eventually("the worker is connecting to the gateway", Duration::from_secs(20), || async move {
        gateway.methods().iter().any(|m| m == "connect").then_some(())
    })
    .await;

    assert!(Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (said, ended) = tokio::time::timeout(Duration::from_secs(10), reader).await.unwrap().unwrap();
    assert!(ended && said.contains(": server shutting down"), "{said:?}");
    assert!(!creating.is_finished(), "the event stream ends without waiting for the drain");
    assert!(
        reqwest::get(server.url("/healthz")).await.is_err(),
        "no new connection is taken once shutdown began"
    );
    let (status, created) = creating.await.unwrap();
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["provision_state"], "provisioned", "the side effect finished: {created}");
    let drained = Instant::now();
    let exited = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(drained.elapsed() < Duration::from_secs(30), "serve exits after the drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success());
}
