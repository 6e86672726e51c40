//! Side effects whose outcome is never lost: a failed delivery is tried again with backoff,
//! a delivery that failed every try is recorded as failed and parked in the dead-letter
//! table (`fleetledger dlq`), `dlq retry` has the running worker deliver it again, and a
//! worker killed mid-delivery delivers again without a second effect. On PostgreSQL the
//! workers consume from NATS JetStream.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::cli::{start_server_with, Server};
use crate::fake_gateway::{Behaviour, FakeGateway};
use crate::helpers::{call, serve_settings, spawn_configured, Backend, TestApp, TestNats, TestStore};

both_backends!(
    a_gateway_failing_a_few_times_is_provisioned_once,
    a_delivery_failing_every_try_is_parked_until_a_retry_delivers_it,
    a_worker_killed_mid_delivery_delivers_again_without_a_second_wake,
    a_sandbox_that_cannot_be_destroyed_is_parked_until_a_retry_destroys_it,
    a_delivery_another_process_made_meanwhile_is_not_also_recorded_as_failed,
);

/// The server with the production workers trying each delivery `attempts` times (on
/// PostgreSQL over JetStream).
async fn spawn(backend: Backend, attempts: u32) -> Option<(TestApp, Option<TestNats>)> {
    let store = TestStore::new(backend).await?;
    let mut serve = serve_settings();
    let nats = match backend {
        Backend::Postgres => Some(TestNats::new().await?),
        Backend::Sqlite => None,
    };
    if let Some(n) = &nats {
        serve.bus = n.bus();
    }
    serve.drivers.delivery.delivery_attempts = attempts;
    serve.allow_signup = true;
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    Some((spawn_configured(store, serve, workers).await, nats))
}

/// A board on a gateway the fake OpenClaw gateway serves; answers the board's id.
async fn board_on(app: &TestApp, gateway: &FakeGateway) -> String {
    let body = json!({"name": "claw", "url": gateway.url, "token": "gw-secret", "workspace_root": "/home/claw"});
    let gw = call(app, Method::POST, "/api/v1/gateways", &app.admin_key, Some(body)).await.json();
    let board = json!({"name": "Claws", "gateway_id": gw["id"]});
    let board = call(app, Method::POST, "/api/v1/boards", &app.admin_key, Some(board)).await;
    assert_eq!(board.status, 200, "{}", board.text);
    board.json()["id"].as_str().unwrap().to_string()
}

/// The event types of an agent's stream, in order.
async fn agent_events(app: &TestApp, id: &str) -> Vec<String> {
    let page = call(
        app,
        Method::GET,
        &format!("/api/v1/ledger/streams/mc_agent/{id}"),
        &app.admin_key,
        None,
    )
    .await;
    page.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .collect()
}

fn count(events: &[String], event_type: &str) -> usize {
    events.iter().filter(|e| *e == event_type).count()
}

fn calls(gateway: &FakeGateway, method: &str) -> usize {
    gateway.methods().iter().filter(|m| *m == method).count()
}

/// `dlq list --json`, parsed.
fn parked(store: &TestStore) -> Vec<Value> {
    let out = store.cli(&["dlq", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("a JSON array")
        .as_array()
        .unwrap()
        .clone()
}

/// The `fleetledger_dlq_events` sample for a stream type.
async fn gauge(app: &TestApp, stream_type: &str) -> Option<f64> {
    let text = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    let prefix = format!("fleetledger_dlq_events{{stream_type=\"{stream_type}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
}

/// Waits until the gauge shows `value` (it is measured every second).
async fn wait_for_gauge(app: &TestApp, stream_type: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = gauge(app, stream_type).await;
        if seen == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fleetledger_dlq_events{{{stream_type}}} stays {seen:?}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_gateway_failing_a_few_times_is_provisioned_once(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, 5).await else { return };
    let gateway = FakeGateway::start(Behaviour {
        fail_first: vec![("connect".into(), 3)],
        ..Default::default()
    })
    .await;
    let board = board_on(&app, &gateway).await;
    let created = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Flaky", "board_id": board})),
    )
    .await;
    assert_eq!(created.status, 200, "the request waits through the retries: {}", created.text);
    assert_eq!(created.json()["provision_state"], "provisioned");
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(calls(&gateway, "connect"), 4, "three failed tries, then the one that worked");
    let events = agent_events(&app, &id).await;
    assert_eq!(count(&events, "mc_agent.provisioned"), 1, "{events:?}");
    assert_eq!(count(&events, "mc_agent.provision_failed"), 0, "{events:?}");
    assert_eq!(gateway.runs().len(), 1, "the agent was woken once");
    assert_eq!(parked(&app.store), Vec::<Value>::new(), "nothing parked");
    assert_eq!(gauge(&app, "mc_agent").await, Some(0.0));
}

async fn a_delivery_failing_every_try_is_parked_until_a_retry_delivers_it(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, 3).await else { return };
    // The gauge exists before anything was parked.
    assert_eq!(gauge(&app, "mc_agent").await, Some(0.0));
    let gateway = FakeGateway::start(Behaviour {
        fail: vec![("connect".into(), "gateway offline".into())],
        ..Default::default()
    })
    .await;
    let board = board_on(&app, &gateway).await;
    let created = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Stuck", "board_id": board})),
    )
    .await;
    assert_eq!(created.status, 502, "{}", created.text);
    assert_eq!(created.json()["detail"], "Gateway update failed: gateway offline");
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(calls(&gateway, "connect"), 3, "every try was made");
    let events = agent_events(&app, &id).await;
    assert_eq!(
        (count(&events, "mc_agent.provision_failed"), count(&events, "mc_agent.provisioned")),
        (1, 0),
        "{events:?}"
    );

    // Parked with what failed, right after its failure was recorded (which the request
    // answered from).
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let entries = parked(&app.store);
        if !entries.is_empty() || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(
        (
            entry["org"].as_str(),
            entry["stream_type"].as_str(),
            entry["stream_id"].as_str(),
            entry["stream_version"].as_i64(),
            entry["event_type"].as_str(),
            entry["attempts"].as_i64(),
            entry["last_error"].as_str(),
        ),
        (
            Some("default"),
            Some("mc_agent"),
            Some(id.as_str()),
            Some(1),
            Some("mc_agent.created"),
            Some(3),
            Some("gateway offline")
        ),
        "{entry}"
    );
    let entry_id = entry["id"].as_i64().unwrap().to_string();
    let table = String::from_utf8(app.store.cli(&["dlq", "list"]).stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for column in [
        "ID",
        "ORG",
        "STREAM",
        "VERSION",
        "EVENT TYPE",
        "ATTEMPTS",
        "LAST ERROR",
        "PARKED AT",
    ] {
        assert!(lines[0].contains(column), "{column}: {table}");
    }
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..6],
        [
            entry_id.as_str(),
            "default",
            &format!("mc_agent/{id}"),
            "1",
            "mc_agent.created",
            "3"
        ],
        "{table}"
    );
    assert!(lines[1].contains("gateway offline"), "{table}");
    wait_for_gauge(&app, "mc_agent", 1.0).await;

    // A retry while the gateway still fails: recorded again, and the entry stays, counted.
    let again = app.store.cli(&["dlq", "retry", &entry_id]);
    assert_eq!(again.status.code(), Some(1), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        format!("{entry_id} failed again (attempt 4): gateway offline\n")
    );
    let entries = parked(&app.store);
    assert_eq!(entries[0]["attempts"], 4, "{entries:?}");
    assert_eq!(count(&agent_events(&app, &id).await, "mc_agent.provision_failed"), 2);

    // Fixed: the retry delivers it, records the success, and the entry is gone.
    gateway.set_behaviour(Behaviour::default());
    let retried = app.store.cli(&["dlq", "retry", "--all"]);
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    assert_eq!(
        String::from_utf8_lossy(&retried.stdout),
        format!("{entry_id} delivered: mc_agent/{id} v1 mc_agent.created\n")
    );
    let events = agent_events(&app, &id).await;
    assert_eq!(count(&events, "mc_agent.provisioned"), 1, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("mc_agent.provisioned"), "{events:?}");
    assert_eq!(parked(&app.store), Vec::<Value>::new());
    wait_for_gauge(&app, "mc_agent", 0.0).await;
    let agent = call(&app, Method::GET, &format!("/api/v1/agents/{id}"), &app.admin_key, None).await;
    assert_eq!(
        (
            agent.json()["provision_state"].as_str(),
            agent.json()["last_provision_error"].clone()
        ),
        (Some("provisioned"), Value::Null)
    );
    assert_eq!(gateway.runs().len(), 1, "woken once");

    // Nothing else to retry; an unknown entry is an error.
    let none = app.store.cli(&["dlq", "retry", "--all"]);
    assert!(none.status.success());
    let unknown = app.store.cli(&["dlq", "retry", "999999"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: no parked event 999999 (see `fleetledger dlq list`)\n"
    );
}

/// `serve` as a process of its own, with quick retries (and JetStream on PostgreSQL).
fn serve(store: &TestStore, nats: Option<&TestNats>) -> Server {
    let mut env = vec![
        ("FLEETLEDGER_DELIVERY_BACKOFF_BASE_MS", "1".to_string()),
        ("FLEETLEDGER_DELIVERY_BACKOFF_MAX_MS", "10".to_string()),
        ("FLEETLEDGER_FOLLOW_INTERVAL_MS", "50".to_string()),
    ];
    if let Some(n) = nats {
        env.push(("NATS_URL", n.url.clone()));
        env.push(("FLEETLEDGER_NATS_STREAM", n.stream.clone()));
        env.push(("FLEETLEDGER_NATS_SUBJECT_PREFIX", n.prefix.clone()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_server_with(store, &env)
}

async fn a_worker_killed_mid_delivery_delivers_again_without_a_second_wake(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let nats = match backend {
        Backend::Postgres => match TestNats::new().await {
            Some(n) => Some(n),
            None => return,
        },
        Backend::Sqlite => None,
    };
    // The wake message reaches the gateway, which runs it but never answers: the worker is
    // killed between its side effect and its outcome.
    let gateway = FakeGateway::start(Behaviour {
        hold: Some("chat.send".into()),
        ..Default::default()
    })
    .await;
    let mut server = serve(&store, nats.as_ref());
    let key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let client = reqwest::Client::new();
    let post = |server: &Server, path: &str, body: Value| {
        client
            .post(server.url(path))
            .bearer_auth(&key)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
    };
    let gw: Value = post(
        &server,
        "/api/v1/gateways",
        json!({"name": "claw", "url": gateway.url, "workspace_root": "/home/claw"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // The request waits for the outcome that never comes before the kill.
    let waiting = tokio::spawn(post(&server, "/api/v1/agents", json!({"name": "Cut", "gateway_id": gw["id"]})));
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.runs().is_empty() {
        assert!(Instant::now() < deadline, "the wake reached the gateway: {:?}", gateway.methods());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    let _ = waiting.await;
    gateway.set_behaviour(Behaviour::default());

    let server = serve(&store, nats.as_ref());
    let log = fleetledger::store::connect(&store.url()).await.unwrap();
    let agents = log.read_all(0, 1000, Some("mc_agent")).await.unwrap();
    let created = agents
        .iter()
        .find(|e| e.event_type == "mc_agent.created")
        .expect("the agent is recorded");
    assert!(
        !agents
            .iter()
            .any(|e| e.metadata.causation_id.as_deref() == Some(&created.event_id.to_string())),
        "no outcome was recorded before the kill"
    );
    // Another agent's event: on JetStream the restarted consumer fills the gap before it
    // from the log, instead of waiting out the first message's ack wait.
    let bare: Value = post(&server, "/api/v1/gateways", json!({"name": "bare", "workspace_root": "/b"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let marker = post(&server, "/api/v1/agents", json!({"name": "Marker", "gateway_id": bare["id"]}))
        .await
        .unwrap();
    assert_eq!(marker.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcomes = loop {
        let outcomes: Vec<String> = log
            .read_stream(&created.stream_id, 2)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        if !outcomes.is_empty() {
            break outcomes;
        }
        assert!(Instant::now() < deadline, "the delivery was made again after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcomes, ["mc_agent.provisioned"], "one outcome, a success");
    assert_eq!(calls(&gateway, "chat.send"), 2, "the wake was sent again: {:?}", gateway.methods());
    assert_eq!(gateway.runs().len(), 1, "and the gateway recognised it: the agent was woken once");
    assert_eq!(parked(&store), Vec::<Value>::new());
    drop(server);
}

async fn a_sandbox_that_cannot_be_destroyed_is_parked_until_a_retry_destroys_it(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, 3).await else { return };
    let signup = call(&app, Method::POST, "/v1/organization/signup", "", Some(json!({"name": "Acme"}))).await;
    let key = signup.json()["api_key"].as_str().unwrap().to_string();
    let body = json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6"});
    let created = call(&app, Method::POST, "/v1/instances", &key, Some(body)).await;
    let id = created.json()["id"].as_str().unwrap().to_string();
    let events = |app: &TestApp| {
        let path = format!("/api/v1/ledger/streams/instance/{id}");
        let key = key.clone();
        let app_url = app.url(&path);
        async move {
            let page: Value = reqwest::Client::new()
                .get(app_url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_type"].as_str().unwrap().to_string())
                .collect::<Vec<String>>()
        }
    };
    let until = |wanted: &'static str| {
        let events = &events;
        let app = &app;
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let seen = events(app).await;
                if seen.iter().any(|e| e == wanted) {
                    return seen;
                }
                assert!(Instant::now() < deadline, "{wanted} never came: {seen:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until("instance.running").await;
    // A file where the sandbox's directory was: destroying it fails, every try.
    let sandbox = app.store.dir.path().join("sandboxes").join(&id);
    std::fs::remove_dir_all(&sandbox).unwrap();
    std::fs::write(&sandbox, "in the way").unwrap();
    let deleted = call(&app, Method::DELETE, &format!("/v1/instances/{id}"), &key, None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let seen = until("instance.destroy_failed").await;
    assert_eq!(count(&seen, "instance.sandbox_destroyed"), 0, "{seen:?}");
    wait_for_gauge(&app, "instance", 1.0).await;
    let entries = parked(&app.store);
    assert_eq!(
        (
            entries[0]["event_type"].as_str(),
            entries[0]["stream_id"].as_str(),
            entries[0]["attempts"].as_i64()
        ),
        (Some("instance.terminated"), Some(id.as_str()), Some(3)),
        "{entries:?}"
    );
    let error = entries[0]["last_error"].as_str().unwrap();
    assert!(error.starts_with(&format!("cannot destroy sandbox {id}: ")), "{error}");
    app.assert_no_server_path(error);

    std::fs::remove_file(&sandbox).unwrap();
    std::fs::create_dir_all(sandbox.join(".openclaw")).unwrap();
    let retried = app.store.cli(&["dlq", "retry", &entries[0]["id"].to_string()]);
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    let seen = until("instance.sandbox_destroyed").await;
    assert_eq!(seen.last().map(String::as_str), Some("instance.sandbox_destroyed"), "{seen:?}");
    assert!(!sandbox.exists(), "the sandbox is gone");
    assert_eq!(parked(&app.store), Vec::<Value>::new());
    wait_for_gauge(&app, "instance", 0.0).await;
}

/// One trigger delivered by two processes at once (a redelivery to another replica): the
/// other one succeeded while this one's tries failed. Its success stands alone: no failure
/// outcome beside it, nothing parked.
async fn a_delivery_another_process_made_meanwhile_is_not_also_recorded_as_failed(backend: Backend) {
    use fleetledger_events::mission_control::{AgentEvent, AgentProvisioned, FileHashes};
    use fleetledger_events::DomainEvent;

    let Some((app, _nats)) = spawn(backend, 3).await else { return };
    let gateway = FakeGateway::start(Behaviour {
        fail: vec![("connect".into(), "gateway offline".into())],
        ..Default::default()
    })
    .await;
    let board = board_on(&app, &gateway).await;
    let app = std::sync::Arc::new(app);
    let creating = {
        let (app, board) = (app.clone(), board.clone());
        tokio::spawn(async move {
            call(
                &app,
                Method::POST,
                "/api/v1/agents",
                &app.admin_key,
                Some(json!({"name": "Twice", "board_id": board})),
            )
            .await
        })
    };
    // The agent's creation is in the log while its delivery is being tried.
    let mut trigger = None;
    for _ in 0..200 {
        let page = call(
            &app,
            Method::GET,
            "/api/v1/ledger/events?stream_type=mc_agent",
            &app.admin_key,
            None,
        )
        .await;
        trigger = page.json()["events"].as_array().and_then(|events| events.first().cloned());
        if trigger.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let trigger = trigger.expect("the agent's creation is recorded");
    let trigger_id: uuid::Uuid = trigger["event_id"].as_str().unwrap().parse().unwrap();
    let agent = trigger["stream_id"].as_str().unwrap().to_string();
    // This process's first try has failed when another process's delivery succeeds and
    // records its outcome.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls(&gateway, "connect") < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let provisioned = AgentEvent::Provisioned(AgentProvisioned {
        files: vec![],
        hashes: FileHashes(vec![]),
        gateway: "claw".into(),
        unsupported: vec![],
        at: chrono::Utc::now(),
    });
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    log.append(fleetledger::store::AppendRequest {
        stream_type: "mc_agent".into(),
        stream_id: agent.clone(),
        expected: fleetledger::store::ExpectedVersion::Any,
        events: vec![provisioned.to_new_event(fleetledger::workers::first_delivery_outcome_id("reprovisioner", trigger_id))],
        metadata: fleetledger_events::Metadata {
            org_id: trigger["metadata"]["org_id"].as_str().unwrap().into(),
            actor: fleetledger_events::Actor::system("worker:reprovisioner"),
            causation_id: Some(trigger_id.to_string()),
            ..Default::default()
        },
        read_models: vec![],
        snapshots: vec![],
    })
    .await
    .unwrap();
    let created = creating.await.unwrap();
    assert_eq!(
        created.status, 200,
        "the request sees the outcome that was recorded: {}",
        created.text
    );
    // This process's tries run out meanwhile.
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls(&gateway, "connect") < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls(&gateway, "connect"), 3, "every try was made");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = agent_events(&app, &agent).await;
    assert_eq!(count(&events, "mc_agent.provisioned"), 1, "{events:?}");
    assert_eq!(count(&events, "mc_agent.provision_failed"), 0, "{events:?}");
    assert_eq!(parked(&app.store), Vec::<Value>::new(), "nothing parked");
}
