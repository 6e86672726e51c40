//! The Mission Control surface: gateways, boards, agents, the Update Agent rules, and
//! reprovisioning by the worker (local driver) with the synchronous wait for its outcome.
//! On PostgreSQL the worker consumes from NATS JetStream when `FLEETLEDGER_TEST_NATS` is set.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::cli::start_server_with;
use crate::fake_gateway::{Behaviour, FakeGateway};
use crate::helpers::{call, default_org, serve_settings, spawn_configured, Answer, Backend, TestApp, TestNats, TestStore};

/// The server with the production workers; on PostgreSQL over JetStream when available.
async fn spawn_mc(backend: Backend, tweak: impl FnOnce(&mut fleetledger::config::ServeSettings)) -> Option<(TestApp, Option<TestNats>)> {
    let store = TestStore::new(backend).await?;
    let mut serve = serve_settings();
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    if let Some(n) = &nats {
        serve.bus = n.bus();
    }
    tweak(&mut serve);
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    let app = spawn_configured(store, serve, workers).await;
    Some((app, nats))
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let answer = call(app, method, path, &app.admin_key, Some(body)).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    answer.json()
}

/// Where a `local` gateway's relative `workspace_root` lies for the default org: in the
/// org's own directory under the data dir.
pub fn workspaces(app: &TestApp, root: &str) -> std::path::PathBuf {
    app.store.dir.path().join("workspaces").join(default_org()).join(root)
}

/// A local gateway with workspace root `claws` (in the data dir), a board on it, and
/// where the root is on disk.
async fn gateway_and_board(app: &TestApp) -> (String, String, std::path::PathBuf) {
    let gateway = ok(
        app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "local", "token": "s3cret", "workspace_root": "claws"}),
    )
    .await;
    let root = workspaces(app, "claws");
    assert!(gateway.get("token").is_none(), "the token is never returned: {gateway}");
    let gateway_id = gateway["id"].as_str().unwrap().to_string();
    let board = ok(
        app,
        Method::POST,
        "/api/v1/boards",
        json!({"name": "Finance Ops", "gateway_id": gateway_id, "objective": "Close the books"}),
    )
    .await;
    assert_eq!(board["slug"], "finance-ops");
    (gateway_id, board["id"].as_str().unwrap().to_string(), root)
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn events_of(app: &TestApp, agent: &str) -> Vec<Value> {
    let page = ok(app, Method::GET, &format!("/api/v1/ledger/streams/mc_agent/{agent}"), Value::Null).await;
    page["events"].as_array().cloned().unwrap_or_default()
}

async fn agents_provision_their_workspace_locally(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let (gateway_id, board_id, root) = gateway_and_board(&app).await;
    let agent = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Ledger Lead", "board_id": board_id, "identity_profile": {"role": "coordinator"}}),
    )
    .await;
    let id = agent["id"].as_str().unwrap().to_string();
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    assert_eq!(agent["gateway_id"], gateway_id.as_str());
    assert_eq!(agent["gateway_agent_id"], format!("mc-{id}"));
    assert_eq!(agent["openclaw_session_id"], format!("agent:mc-{id}:main"));
    assert_eq!(
        (agent["is_gateway_main"].as_bool(), agent["is_mc_agent"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(
        agent["heartbeat_config"],
        json!({"every": "10m", "target": "last", "includeReasoning": false})
    );
    let workspace = root.join(format!("workspace-mc-{id}"));
    // The path as the gateway names it: relative to the workspaces directory.
    assert_eq!(agent["workspace_path"], format!("claws/workspace-mc-{id}"));
    for file in [
        "AGENTS.md",
        "SOUL.md",
        "TOOLS.md",
        "IDENTITY.md",
        "USER.md",
        "HEARTBEAT.md",
        "MEMORY.md",
    ] {
        assert!(workspace.join(file).exists(), "{file} was not written");
    }
    assert!(!workspace.join("BOOTSTRAP.md").exists());
    assert!(read(&workspace.join("AGENTS.md")).contains("Close the books"));
    assert!(read(&workspace.join("IDENTITY.md")).contains("- role: coordinator"));

    // A soul template reprovisions; the agent's own USER.md survives.
    std::fs::write(workspace.join("USER.md"), "mine").unwrap();
    let patched = ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        json!({"soul_template": "Soul of {{ agent.name }} on {{ board.name }}", "unknown_field": 1}),
    )
    .await;
    assert_eq!(
        (patched["revision"].as_i64(), patched["provision_state"].as_str()),
        (Some(2), Some("provisioned"))
    );
    assert_eq!(read(&workspace.join("SOUL.md")), "Soul of Ledger Lead on Finance Ops");
    assert_eq!(read(&workspace.join("USER.md")), "mine");

    // Nothing to change: no event, no provisioning.
    let before = events_of(&app, &id).await.len();
    let same = ok(&app, Method::PATCH, &format!("/api/v1/agents/{id}"), json!({})).await;
    assert_eq!(same["revision"], 2);
    assert_eq!(events_of(&app, &id).await.len(), before);

    // Recorded without reprovisioning.
    ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        json!({"status": "paused", "heartbeat_config": {"every": "5m"}}),
    )
    .await;
    let events = events_of(&app, &id).await;
    assert_eq!(events.len(), before + 1, "no outcome for a quiet change");
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "mc_agent.updated");
    assert_eq!(
        last["data"]["changes"],
        json!({"status": "paused", "heartbeat_config": {"every": "5m"}})
    );
    assert_eq!(last["data"]["reprovision"], false);

    // Forced: provisions again, with BOOTSTRAP.md.
    let forced = ok(&app, Method::PATCH, &format!("/api/v1/agents/{id}?force=true"), json!({})).await;
    assert_eq!(forced["revision"], 4);
    assert!(workspace.join("BOOTSTRAP.md").exists());
    let outcome = events_of(&app, &id).await.last().cloned().unwrap();
    assert_eq!(outcome["event_type"], "mc_agent.provisioned");
    let trigger = &events_of(&app, &id).await[events.len()];
    assert_eq!(outcome["metadata"]["causation_id"], trigger["event_id"]);
    assert_eq!(
        outcome["data"]["hashes"].as_object().unwrap().len(),
        outcome["data"]["files"].as_array().unwrap().len()
    );
}

async fn update_agent_rules(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let (gateway_id, board_id, _) = gateway_and_board(&app).await;
    let agent = ok(&app, Method::POST, "/api/v1/agents", json!({"name": "Ops", "board_id": board_id})).await;
    let id = agent["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/agents/{id}");
    let member = app.store.create_key("default", "member");

    // 403 before anything else, even for an unknown agent.
    for p in [path.clone(), "/api/v1/agents/00000000-0000-0000-0000-000000000000".to_string()] {
        let a = call(&app, Method::PATCH, &p, &member, Some(json!({"status": "bogus"}))).await;
        assert_eq!(a.status, 403, "{p}");
    }
    let unknown = Answer::of(
        app.admin(Method::PATCH, "/api/v1/agents/00000000-0000-0000-0000-000000000000")
            .header("X-Request-Id", "req-123")
            .json(&json!({})),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json(), json!({"detail": "Not Found", "request_id": "req-123"}));
    assert_eq!(unknown.header("x-request-id"), Some("req-123"));

    let invalid = call(
        &app,
        Method::PATCH,
        &path,
        &app.admin_key,
        Some(json!({"status": "sleeping", "name": "  "})),
    )
    .await;
    assert_eq!(invalid.status, 422, "{}", invalid.text);
    let body = invalid.json();
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let detail = body["detail"].as_array().unwrap();
    assert!(detail
        .iter()
        .any(|d| d["loc"] == json!(["body", "status"]) && d["type"] == "literal_error" && d["input"] == "sleeping"));
    assert!(detail.iter().any(|d| d["loc"] == json!(["body", "name"])));

    let nowhere = call(
        &app,
        Method::PATCH,
        &path,
        &app.admin_key,
        Some(json!({"board_id": "00000000-0000-0000-0000-000000000001"})),
    )
    .await;
    assert_eq!((nowhere.status, nowhere.json()["detail"].as_str()), (404, Some("Board not found")));
    let orphan_board = ok(&app, Method::POST, "/api/v1/boards", json!({"name": "Orphan"})).await;
    let orphan = call(
        &app,
        Method::PATCH,
        &path,
        &app.admin_key,
        Some(json!({"board_id": orphan_board["id"]})),
    )
    .await;
    assert_eq!(
        (orphan.status, orphan.json()["detail"].as_str()),
        (422, Some("Board gateway_id is required"))
    );

    // Moving to a board on another gateway moves the agent there (and reprovisions).
    let root2 = workspaces(&app, "ws2");
    let gw2 = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "gw2", "url": "local", "workspace_root": "ws2"}),
    )
    .await;
    let board2 = ok(
        &app,
        Method::POST,
        "/api/v1/boards",
        json!({"name": "Second", "gateway_id": gw2["id"]}),
    )
    .await;
    let moved = ok(&app, Method::PATCH, &path, json!({"board_id": board2["id"]})).await;
    assert_eq!(
        (moved["board_id"].clone(), moved["gateway_id"].clone()),
        (board2["id"].clone(), gw2["id"].clone())
    );
    assert!(root2.join(format!("workspace-mc-{id}")).join("SOUL.md").exists());

    // Gateway main and back.
    let main = ok(&app, Method::PATCH, &path, json!({"is_gateway_main": true})).await;
    assert_eq!((main["board_id"].is_null(), main["is_gateway_main"].as_bool()), (true, Some(true)));
    assert_eq!(
        main["openclaw_session_id"],
        format!("agent:mc-gateway-{}:main", gw2["id"].as_str().unwrap())
    );
    let again = call(&app, Method::PATCH, &path, &app.admin_key, Some(json!({"is_gateway_main": true}))).await;
    assert_eq!(
        (again.status, again.json()["detail"].as_str()),
        (422, Some("board_id is required")),
        "a board-less main agent made main again needs a board, as in Mission Control"
    );
    let back = call(&app, Method::PATCH, &path, &app.admin_key, Some(json!({"is_gateway_main": false}))).await;
    assert_eq!(
        (back.status, back.json()["detail"].as_str()),
        (
            422,
            Some("board_id is required when converting a gateway-main agent to board scope")
        )
    );
    let board_again = ok(&app, Method::PATCH, &path, json!({"is_gateway_main": false, "board_id": board_id})).await;
    assert_eq!(
        (board_again["board_id"].as_str(), board_again["gateway_id"].as_str()),
        (Some(board_id.as_str()), Some(gateway_id.as_str()))
    );

    // Clearing: heartbeat back to the default, blank templates to null.
    let cleared = ok(
        &app,
        Method::PATCH,
        &path,
        json!({"heartbeat_config": null, "identity_template": "   ", "identity_profile": {"on_leave": true, "n": 1.5}}),
    )
    .await;
    assert_eq!(
        cleared["heartbeat_config"],
        json!({"every": "10m", "target": "last", "includeReasoning": false})
    );
    assert_eq!(cleared["identity_template"], Value::Null);
    assert_eq!(cleared["identity_profile"], json!({"on_leave": true, "n": 1.5}));

    // Another org sees none of it; members read.
    app.store.create_org("rival");
    let rival = app.store.create_key("rival", "admin");
    assert_eq!(call(&app, Method::GET, &path, &rival, None).await.status, 404);
    assert_eq!(call(&app, Method::PATCH, &path, &rival, Some(json!({}))).await.status, 404);
    assert_eq!(call(&app, Method::GET, &path, &member, None).await.status, 200);
    let listed = call(
        &app,
        Method::GET,
        &format!("/api/v1/agents?board_id={board_id}&limit=1"),
        &member,
        None,
    )
    .await
    .json();
    assert_eq!(
        (listed["total"].as_i64(), listed["limit"].as_i64(), listed["offset"].as_i64()),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(listed["items"][0]["id"], id.as_str());

    // A heartbeat marks the agent seen (and may set its status); members only read.
    assert_eq!(
        call(&app, Method::POST, &format!("{path}/heartbeat"), &member, Some(json!({})))
            .await
            .status,
        403
    );
    assert_eq!(ok(&app, Method::GET, &path, Value::Null).await["last_seen_at"], Value::Null);
    let seen = ok(&app, Method::POST, &format!("{path}/heartbeat"), json!({"status": "active"})).await;
    assert!(seen["last_seen_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{seen}");
    assert_eq!(seen["status"], "active");

    // Delete: ok, also for an unknown id; then gone.
    assert_eq!(ok(&app, Method::DELETE, &path, Value::Null).await, json!({"ok": true}));
    assert_eq!(ok(&app, Method::DELETE, &path, Value::Null).await, json!({"ok": true}));
    assert_eq!(call(&app, Method::GET, &path, &app.admin_key, None).await.status, 404);
}

/// How many events an agent's stream holds.
async fn agent_history(app: &TestApp, id: &str) -> usize {
    let path = format!("/api/v1/ledger/streams/mc_agent/{id}");
    call(app, Method::GET, &path, &app.admin_key, None).await.json()["events"]
        .as_array()
        .unwrap()
        .len()
}

async fn failed_provisioning_is_502_and_recorded(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    // A workspace root that is a file: the local driver cannot write there.
    let blocked = workspaces(&app, "not-a-dir");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "x").unwrap();
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "broken", "url": "local", "workspace_root": "not-a-dir"}),
    )
    .await;
    let create = || {
        Answer::of(
            app.admin(Method::POST, "/api/v1/agents")
                .header("idempotency-key", "create-stuck")
                .json(&json!({"name": "Stuck", "gateway_id": gateway["id"]})),
        )
    };
    let created = create().await;
    assert_eq!(created.status, 502, "{}", created.text);
    assert!(
        created.json()["detail"].as_str().unwrap().starts_with("Gateway update failed: "),
        "{}",
        created.text
    );
    // The agent exists: the failure names it, so a retry need not make another.
    let created_id = created.json()["id"].as_str().expect("the 502 names the agent").to_string();
    assert_eq!(created.header("location"), Some(format!("/api/v1/agents/{created_id}").as_str()));
    let retry = create().await;
    assert_eq!((retry.status, retry.text.as_str()), (502, created.text.as_str()));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let listed = ok(&app, Method::GET, "/api/v1/agents", Value::Null).await;
    assert_eq!(listed["total"], 1, "a retry with the key made no second agent");
    let agent = &listed["items"][0];
    assert_eq!(agent["id"], created_id.as_str());
    assert_eq!(
        (agent["provision_state"].as_str(), agent["is_gateway_main"].as_bool()),
        (Some("failed"), Some(true))
    );
    // Useful, and without the server's paths.
    assert_eq!(
        agent["last_provision_error"],
        "cannot create the agent's workspace: not a directory"
    );
    let id = agent["id"].as_str().unwrap().to_string();

    // The change is recorded even though the gateway failed; a forced retry after the fix works.
    let failed = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        &app.admin_key,
        Some(json!({"soul_template": "calm"})),
    )
    .await;
    assert_eq!(failed.status, 502);
    assert_eq!(
        ok(&app, Method::GET, &format!("/api/v1/agents/{id}"), Value::Null).await["soul_template"],
        "calm"
    );
    std::fs::remove_file(&blocked).unwrap();
    let retried = ok(&app, Method::PATCH, &format!("/api/v1/agents/{id}?force=true"), json!({})).await;
    assert_eq!(
        (retried["provision_state"].as_str(), retried["last_provision_error"].clone()),
        (Some("provisioned"), Value::Null)
    );
    assert_eq!(
        read(
            &blocked
                .join(format!("workspace-mc-gateway-{}", gateway["id"].as_str().unwrap()))
                .join("SOUL.md")
        ),
        "calm"
    );

    // A template naming something undefined is refused before anything is recorded.
    let before = agent_history(&app, &id).await;
    let bad = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        &app.admin_key,
        Some(json!({"soul_template": "Hello {{ nope.x }}"})),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    let problem = &bad.json()["detail"][0];
    assert_eq!(
        (problem["loc"].clone(), problem["type"].as_str()),
        (json!(["body", "soul_template"]), Some("value_error"))
    );
    assert!(problem["msg"].as_str().unwrap().contains("SOUL.md"), "{}", bad.text);
    assert_eq!(agent_history(&app, &id).await, before, "nothing recorded");
    assert_eq!(
        ok(&app, Method::GET, &format!("/api/v1/agents/{id}"), Value::Null).await["soul_template"],
        "calm"
    );
    let refused = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Odd", "gateway_id": gateway["id"], "identity_template": "{{ agent.nickname }}"})),
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.json()["detail"][0]["loc"], json!(["body", "identity_template"]));
    assert_eq!(
        ok(&app, Method::GET, "/api/v1/agents", Value::Null).await["total"],
        1,
        "no agent made"
    );

    // A gateway without a URL records provisioning as skipped.
    let bare = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "bare", "workspace_root": "/nowhere"}),
    )
    .await;
    let skipped = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Quiet", "gateway_id": bare["id"]}),
    )
    .await;
    assert_eq!(skipped["provision_state"], "skipped");
}

async fn no_outcome_in_time_is_504(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |s| {
        s.no_workers = true;
        s.apply_timeout_seconds = 1;
    })
    .await
    else {
        return;
    };
    let (_, board_id, _) = gateway_and_board(&app).await;
    let answer = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Waiting", "board_id": board_id})),
    )
    .await;
    assert_eq!(
        (answer.status, answer.json()["detail"].as_str()),
        (504, Some("Gateway update timed out"))
    );
    let listed = ok(&app, Method::GET, "/api/v1/agents", Value::Null).await;
    assert_eq!(listed["items"][0]["provision_state"], "pending", "the agent is recorded");
}

async fn a_separate_worker_process_serves_the_wait(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let server = start_server_with(
        &store,
        &[
            ("FLEETLEDGER_NO_WORKERS", "true"),
            ("FLEETLEDGER_FOLLOW_INTERVAL_MS", "50"),
            ("FLEETLEDGER_APPLY_TIMEOUT_SECONDS", "2"),
        ],
    );
    let client = reqwest::Client::new();
    let key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let root = store.dir.path().join("workspaces").join(default_org()).join("ws");
    let gateway = Answer::of(client.post(url("/api/v1/gateways")).bearer_auth(&key).json(&json!({
        "name": "gw", "url": "local", "workspace_root": "ws"
    })))
    .await
    .json();
    // The server runs no workers: nothing answers the wait.
    let early = Answer::of(
        client
            .post(url("/api/v1/agents"))
            .bearer_auth(&key)
            .json(&json!({"name": "Early", "gateway_id": gateway["id"]})),
    )
    .await;
    assert_eq!(early.status, 504, "{}", early.text);

    let mut worker = std::process::Command::new(crate::helpers::binary());
    worker
        .args(["worker", "--follow-interval-ms", "50", "--data-dir"])
        .arg(store.dir.path())
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(db) = &store.db {
        worker.env("DATABASE_URL", &db.url);
    }
    let mut worker = worker.spawn().expect("worker starts");
    // The worker catches up with what was recorded before it ran...
    let listed = url("/api/v1/agents");
    let mut state = Value::Null;
    for _ in 0..200 {
        state = Answer::of(client.get(&listed).bearer_auth(&key)).await.json()["items"][0]["provision_state"].clone();
        if state == "provisioned" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // ...and then answers a request's wait from its own process (the main agent of a
    // second gateway: the first has one).
    let gateway = Answer::of(client.post(url("/api/v1/gateways")).bearer_auth(&key).json(&json!({
        "name": "gw2", "url": "local", "workspace_root": "ws"
    })))
    .await
    .json();
    let agent = Answer::of(
        client
            .post(url("/api/v1/agents"))
            .bearer_auth(&key)
            .json(&json!({"name": "Remote", "board_id": null, "gateway_id": gateway["id"]})),
    )
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(state, "provisioned");
    assert_eq!(agent.status, 200, "{}", agent.text);
    assert_eq!(agent.json()["provision_state"], "provisioned");
    assert!(root
        .join(format!("workspace-mc-gateway-{}", gateway["id"].as_str().unwrap()))
        .join("AGENTS.md")
        .exists());
}

async fn agent_history_and_restore_through_the_audit_api(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let (_, board_id, root) = gateway_and_board(&app).await;
    let agent = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Hist", "board_id": board_id, "soul_template": "first soul"}),
    )
    .await;
    let id = agent["id"].as_str().unwrap().to_string();
    let soul = root.join(format!("workspace-mc-{id}")).join("SOUL.md");
    assert_eq!(read(&soul), "first soul");
    ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        json!({"soul_template": "second soul"}),
    )
    .await;
    assert_eq!(read(&soul), "second soul");
    let audit = format!("/api/v1/ledger/resources/mc_agent/{id}");
    let v1 = ok(&app, Method::GET, &format!("{audit}?version=1"), Value::Null).await;
    assert_eq!(v1["state"]["soul_template"], "first soul");
    let restored = call(
        &app,
        Method::POST,
        &format!("{audit}/restore"),
        &app.admin_key,
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(restored.status, 200, "{}", restored.text);
    assert_eq!(restored.json()["soul_template"], "first soul");
    assert_eq!(read(&soul), "first soul", "the restore reprovisioned the workspace");
    let revisions = ok(&app, Method::GET, &format!("{audit}/revisions"), Value::Null).await;
    let summaries: Vec<&str> = revisions["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries.iter().filter(|s| s.starts_with("provisioned")).count() >= 3,
        "{summaries:?}"
    );
    let gateway_state = ok(
        &app,
        Method::GET,
        &format!(
            "/api/v1/ledger/resources/gateway/{}?version=1",
            agent["gateway_id"].as_str().unwrap()
        ),
        Value::Null,
    )
    .await;
    assert!(gateway_state["state"].get("token").is_none(), "audit never shows gateway tokens");
}

/// A gateway served by the fake OpenClaw gateway, and a board on it.
async fn openclaw_board(app: &TestApp, gateway: &FakeGateway) -> (Value, String) {
    let gw = ok(
        app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "claw", "url": gateway.url, "token": "gw-secret", "workspace_root": "/home/claw/.openclaw"}),
    )
    .await;
    let board = ok(
        app,
        Method::POST,
        "/api/v1/boards",
        json!({"name": "Claws", "gateway_id": gw["id"]}),
    )
    .await;
    (gw, board["id"].as_str().unwrap().to_string())
}

async fn the_openclaw_driver_speaks_protocol_3(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let gateway = FakeGateway::start(Behaviour {
        unsupported: vec!["USER.md".into()],
        ..Default::default()
    })
    .await;
    let (_, board_id) = openclaw_board(&app, &gateway).await;
    let agent = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Claw One", "board_id": board_id}),
    )
    .await;
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    let id = agent["id"].as_str().unwrap();
    let agent_id = format!("mc-{id}");
    let session = format!("agent:mc-{id}:main");
    let calls = gateway.take();
    let methods: Vec<&str> = calls.iter().map(|(m, _)| m.as_str()).collect();
    let files = [
        "AGENTS.md",
        "SOUL.md",
        "TOOLS.md",
        "IDENTITY.md",
        "USER.md",
        "HEARTBEAT.md",
        "MEMORY.md",
    ];
    let mut expected = vec!["connect", "agents.create", "config.get", "config.patch"];
    expected.extend(std::iter::repeat_n("agents.files.set", files.len()));
    expected.extend(["sessions.reset", "chat.send"]);
    assert_eq!(methods, expected);
    let (_, connect) = &calls[0];
    assert_eq!(
        (connect["minProtocol"].as_u64(), connect["maxProtocol"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(connect["auth"]["token"], "gw-secret");
    assert_eq!(calls[1].1["agentId"], agent_id.as_str());
    assert_eq!(calls[1].1["workspace"], format!("/home/claw/.openclaw/workspace-{agent_id}"));
    let patched: Value = serde_json::from_str(calls[3].1["raw"].as_str().unwrap()).unwrap();
    assert_eq!(patched["agents"]["list"][0]["id"], agent_id.as_str());
    assert_eq!(patched["agents"]["list"][0]["heartbeat"]["every"], "10m");
    let sent: Vec<&str> = calls[4..11].iter().map(|(_, p)| p["name"].as_str().unwrap()).collect();
    assert_eq!(sent, files);
    assert_eq!(calls[11].1["key"], session.as_str());
    assert_eq!(calls[12].1["sessionKey"], session.as_str());
    // The refused file is recorded, not fatal.
    let events = events_of(&app, id).await;
    let outcome = events.iter().find(|e| e["event_type"] == "mc_agent.provisioned").unwrap();
    assert_eq!(outcome["data"]["unsupported"], json!(["USER.md"]));

    // A template change updates the agent; its heartbeat is unchanged, so no config.patch.
    ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        json!({"soul_template": "claw soul"}),
    )
    .await;
    let calls = gateway.take();
    let methods: Vec<&str> = calls.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(&methods[..3], ["connect", "agents.update", "config.get"]);
    assert!(!methods.contains(&"config.patch"), "{methods:?}");
    let soul = calls
        .iter()
        .find(|(m, p)| m == "agents.files.set" && p["name"] == "SOUL.md")
        .unwrap();
    assert_eq!(soul.1["content"], "claw soul");

    // A heartbeat change is recorded without reprovisioning, and written to the gateway's config.
    ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        json!({"heartbeat_config": {"every": "5m", "target": "last"}}),
    )
    .await;
    let patch = wait_for_call(&gateway, "config.patch").await;
    let list: Value = serde_json::from_str(patch["raw"].as_str().unwrap()).unwrap();
    assert_eq!(list["agents"]["list"][0]["heartbeat"], json!({"every": "5m", "target": "last"}));
    assert!(
        !gateway.methods().contains(&"agents.files.set".to_string()),
        "no files for a heartbeat change"
    );
    // Deleting removes the agent from the gateway.
    ok(&app, Method::DELETE, &format!("/api/v1/agents/{id}"), Value::Null).await;
    let removed = wait_for_call(&gateway, "agents.delete").await;
    assert_eq!(removed["agentId"], agent_id.as_str());
    for outcome in ["mc_agent.heartbeat_synced", "mc_agent.deprovisioned"] {
        let mut kinds = Vec::new();
        for _ in 0..100 {
            kinds = events_of(&app, id)
                .await
                .iter()
                .map(|e| e["event_type"].as_str().unwrap().to_string())
                .collect();
            if kinds.iter().any(|k| k == outcome) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(kinds.iter().any(|k| k == outcome), "{outcome} not in {kinds:?}");
    }
}

/// The params of the first `method` call the gateway receives within a few seconds.
async fn wait_for_call(gateway: &FakeGateway, method: &str) -> Value {
    for _ in 0..100 {
        if let Some((_, params)) = gateway.calls.lock().unwrap().iter().find(|(m, _)| m == method) {
            return params.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the gateway never received {method}: {:?}", gateway.methods());
}

async fn redelivery_never_provisions_twice(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let workers = fleetledger::workers::registry(store.dir.path(), &Default::default());
    let app = spawn_configured(store, serve_settings(), workers).await;
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let (_, board_id) = openclaw_board(&app, &gateway).await;
    let agent = ok(&app, Method::POST, "/api/v1/agents", json!({"name": "Once", "board_id": board_id})).await;
    let id = agent["id"].as_str().unwrap().to_string();
    assert!(gateway.take().iter().any(|(m, _)| m == "agents.create"));
    let store = app.stop();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The worker forgets how far it got: every event is delivered again.
    let log = fleetledger::store::connect(&store.url()).await.unwrap();
    log.save_checkpoint("worker:reprovisioner", 0).await.unwrap();
    let workers = fleetledger::workers::registry(store.dir.path(), &Default::default());
    let app = spawn_configured(store, serve_settings(), workers).await;
    let probe = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "probe", "workspace_root": "/p"}),
    )
    .await;
    let marker = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Marker", "gateway_id": probe["id"]}),
    )
    .await;
    assert_eq!(marker["provision_state"], "skipped", "the worker has caught up past the old events");
    assert_eq!(gateway.methods(), Vec::<String>::new(), "nothing was provisioned twice");
    let provisioned = events_of(&app, &id)
        .await
        .iter()
        .filter(|e| e["event_type"] == "mc_agent.provisioned")
        .count();
    assert_eq!(provisioned, 1);
}

async fn a_failing_or_absent_gateway_is_502(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let gateway = FakeGateway::start(Behaviour {
        fail: vec![("agents.create".into(), "agent quota exceeded".into())],
        ..Default::default()
    })
    .await;
    let (_, board_id) = openclaw_board(&app, &gateway).await;
    let refused = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Over", "board_id": board_id})),
    )
    .await;
    assert_eq!(refused.status, 502, "{}", refused.text);
    assert_eq!(refused.json()["detail"], "Gateway update failed: agent quota exceeded");
    let listed = ok(&app, Method::GET, "/api/v1/agents", Value::Null).await;
    assert_eq!(listed["items"][0]["provision_state"], "failed");
    assert_eq!(listed["items"][0]["last_provision_error"], "agent quota exceeded");
    assert!(!gateway.methods().contains(&"agents.files.set".to_string()));

    // A retry with force after the gateway recovers provisions it.
    gateway.set_behaviour(Behaviour::default());
    let id = listed["items"][0]["id"].as_str().unwrap();
    let retried = ok(&app, Method::PATCH, &format!("/api/v1/agents/{id}?force=true"), json!({})).await;
    assert_eq!(retried["provision_state"], "provisioned");

    // Nothing listening: 502, and the token never leaks into the message.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gw = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "down", "url": format!("ws://127.0.0.1:{port}"), "token": "gw-secret", "workspace_root": "/w"}),
    )
    .await;
    let down = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Down", "gateway_id": gw["id"]})),
    )
    .await;
    assert_eq!(down.status, 502, "{}", down.text);
    let detail = down.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.starts_with("Gateway update failed: cannot reach gateway"), "{detail}");
    assert!(!detail.contains("gw-secret"), "{detail}");
}

both_backends!(
    a_gateway_moved_to_another_url_needs_its_token_again,
    a_gateway_has_one_main_agent,
    the_openclaw_driver_speaks_protocol_3,
    redelivery_never_provisions_twice,
    a_failing_or_absent_gateway_is_502,
    agents_provision_their_workspace_locally,
    update_agent_rules,
    failed_provisioning_is_502_and_recorded,
    no_outcome_in_time_is_504,
    a_separate_worker_process_serves_the_wait,
    agent_history_and_restore_through_the_audit_api,
);

/// A gateway's main agent works in `workspace-mc-gateway-<gateway id>`: a second main agent
/// would share (and overwrite) those files, so it is refused, on create and when an agent
/// leaves its board; once the first is deleted the place is free again.
async fn a_gateway_has_one_main_agent(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let (gateway_id, board_id, _) = gateway_and_board(&app).await;
    let main = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Main", "gateway_id": gateway_id}),
    )
    .await;
    assert_eq!(main["is_gateway_main"], true, "{main}");
    let second = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Second", "gateway_id": gateway_id})),
    )
    .await;
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.json()["detail"], "The gateway already has a main agent");
    let boarded = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Boarded", "board_id": board_id}),
    )
    .await;
    let leave = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{}", boarded["id"].as_str().unwrap()),
        &app.admin_key,
        Some(json!({"board_id": null})),
    )
    .await;
    assert_eq!(leave.status, 409, "{}", leave.text);
    // The main agent itself may be changed as it likes.
    ok(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{}", main["id"].as_str().unwrap()),
        json!({"name": "Main 2"}),
    )
    .await;
    let deleted = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/agents/{}", main["id"].as_str().unwrap()),
        &app.admin_key,
        None,
    )
    .await;
    assert!((200..300).contains(&deleted.status), "{}", deleted.text);
    ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        json!({"name": "Next", "gateway_id": gateway_id}),
    )
    .await;
}

/// Whoever may move a gateway must not thereby have the worker send its stored token to a
/// host of their choosing: a new URL comes with the token again, or clears it. A token of
/// the wrong type is refused without echoing it.
async fn a_gateway_moved_to_another_url_needs_its_token_again(backend: Backend) {
    let Some((app, _nats)) = spawn_mc(backend, |_| {}).await else {
        return;
    };
    let listening = FakeGateway::start(Behaviour::default()).await;
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "claw", "url": listening.url, "token": "gw-secret", "workspace_root": "claws"}),
    )
    .await;
    let path = format!("/api/v1/gateways/{}", gateway["id"].as_str().unwrap());
    let elsewhere = "ws://127.0.0.1:9/";
    let moved = call(&app, Method::PATCH, &path, &app.admin_key, Some(json!({"url": elsewhere}))).await;
    assert_eq!(moved.status, 422, "{}", moved.text);
    assert!(
        moved.json()["detail"].as_str().unwrap().contains("needs its token again"),
        "{}",
        moved.text
    );
    assert_eq!(
        ok(&app, Method::GET, &path, Value::Null).await["url"],
        listening.url.as_str(),
        "nothing recorded"
    );
    // The name alone changes freely; a new URL with its token, or with none, is taken.
    ok(&app, Method::PATCH, &path, json!({"name": "renamed"})).await;
    let with_token = ok(&app, Method::PATCH, &path, json!({"url": elsewhere, "token": "other-secret"})).await;
    assert_eq!(with_token["url"], elsewhere);
    let cleared = ok(&app, Method::PATCH, &path, json!({"url": listening.url, "token": null})).await;
    assert_eq!(cleared["url"], listening.url.as_str());
    ok(&app, Method::PATCH, &path, json!({"url": elsewhere})).await;

    for token in [json!(["gw-secret-in-a-list"]), json!({"t": "gw-secret-in-an-object"})] {
        let wrong = call(
            &app,
            Method::POST,
            "/api/v1/gateways",
            &app.admin_key,
            Some(json!({"name": "g", "url": "local", "token": token, "workspace_root": "w"})),
        )
        .await;
        assert_eq!(wrong.status, 422, "{}", wrong.text);
        assert!(!wrong.text.contains("gw-secret"), "{}", wrong.text);
        assert_eq!(wrong.json()["detail"][0]["loc"], json!(["body", "token"]), "{}", wrong.text);
    }
}
