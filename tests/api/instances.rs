//! The instances surface (Chowder-compatible): signup, org and scoped keys and their
//! permissions, the instance lifecycle, and PATCH hot-reloading the live sandbox's
//! `openclaw.json`. On PostgreSQL the worker consumes from NATS JetStream when set.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::cli::{start_server, start_server_with, Server};
use crate::helpers::{call, serve_settings, spawn_configured, Answer, Backend, TestApp, TestNats, TestStore};

async fn spawn(backend: Backend, tweak: impl FnOnce(&mut fleetledger::config::ServeSettings)) -> Option<(TestApp, Option<TestNats>)> {
    let store = TestStore::new(backend).await?;
    let mut serve = serve_settings();
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    if let Some(n) = &nats {
        serve.bus = n.bus();
    }
    // These scenarios sign organizations up; signup is off unless the operator allows it.
    serve.allow_signup = true;
    tweak(&mut serve);
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    Some((spawn_configured(store, serve, workers).await, nats))
}

/// Signs up an organization; returns its org key.
async fn signup(app: &TestApp, name: &str) -> String {
    let answer = call(app, Method::POST, "/v1/organization/signup", "", Some(json!({"name": name}))).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["organization"]["name"], name);
    let key = body["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("chd_org_"), "{key}");
    key
}

/// Creates an instance and waits until the worker reports it running.
async fn running_instance(app: &TestApp, key: &str, config: Value) -> Value {
    let created = call(
        app,
        Method::POST,
        "/v1/instances",
        key,
        Some(json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6", "openclaw_config": config})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["status"], "provisioning");
    let id = created.json()["id"].as_str().unwrap().to_string();
    let running = wait_for_status(app, key, &id, "running").await;
    // A local sandbox is named by its id, never by its directory on the server.
    assert_eq!(
        running["gateway_url"].as_str(),
        Some(format!("local://{}", running["sandbox_id"].as_str().unwrap()).as_str()),
        "{running}"
    );
    running
}

async fn wait_for_status(app: &TestApp, key: &str, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = call(app, Method::GET, &format!("/v1/instances/{id}"), key, None).await.json();
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("instance {id} never became {status}: {last}");
}

fn sandbox_config(app: &TestApp, id: &str) -> (Value, Vec<u8>) {
    let path = app
        .store
        .dir
        .path()
        .join("sandboxes")
        .join(id)
        .join(".openclaw")
        .join("openclaw.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (serde_json::from_slice(&bytes).unwrap(), bytes)
}

async fn keys_and_the_permission_matrix(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Acme Robots").await;
    let me = call(&app, Method::GET, "/v1/organization", &org, None).await.json();
    assert_eq!(me["name"], "Acme Robots");
    let instance = running_instance(&app, &org, json!({})).await;
    let id = instance["id"].as_str().unwrap().to_string();
    let other = running_instance(&app, &org, json!({})).await;
    let other_id = other["id"].as_str().unwrap().to_string();
    assert_eq!(
        instance["created_at"].as_str().unwrap().len(),
        "2026-02-14T16:00:00.000000+00:00".len()
    );
    assert!(instance["created_at"].as_str().unwrap().ends_with("+00:00"));

    let scoped = |permissions: Value, instances: Value| {
        let app = &app;
        let org = org.clone();
        async move {
            let answer = call(
                app,
                Method::POST,
                "/v1/keys",
                &org,
                Some(json!({"name": "ci", "instance_ids": instances, "permissions": permissions})),
            )
            .await;
            assert_eq!(answer.status, 201, "{}", answer.text);
            answer.json()
        }
    };
    let configure = scoped(json!(["read", "configure"]), json!([id])).await;
    let configure_key = configure["raw_key"].as_str().unwrap().to_string();
    assert!(configure_key.starts_with("chd_sk_"));
    let read_only = scoped(json!(["read"]), json!([id])).await["raw_key"].as_str().unwrap().to_string();
    let patch = json!({"name": "renamed"});
    let path = format!("/v1/instances/{id}");

    assert_eq!(
        call(&app, Method::PATCH, &path, &org, Some(patch.clone())).await.status,
        200,
        "org key"
    );
    assert_eq!(
        call(&app, Method::PATCH, &path, &configure_key, Some(patch.clone())).await.status,
        200,
        "scoped with configure"
    );
    let denied = call(&app, Method::PATCH, &path, &read_only, Some(patch.clone())).await;
    assert_eq!(denied.status, 403, "scoped without configure");
    assert!(denied.json()["detail"].as_str().unwrap().contains("configure"));
    assert_eq!(call(&app, Method::GET, &path, &read_only, None).await.status, 200, "scoped read");
    assert_eq!(
        call(&app, Method::GET, &format!("{path}/status"), &read_only, None).await.json()["status"],
        "running"
    );
    assert_eq!(
        call(&app, Method::GET, &format!("/v1/instances/{other_id}"), &read_only, None)
            .await
            .status,
        403,
        "an instance the key does not cover"
    );
    for (method, p) in [
        (Method::GET, "/v1/instances".to_string()),
        (Method::DELETE, path.clone()),
        (Method::GET, "/v1/keys".to_string()),
    ] {
        assert_eq!(
            call(&app, method.clone(), &p, &configure_key, None).await.status,
            403,
            "{method} {p} needs the org key"
        );
    }
    let created_by_scoped = call(
        &app,
        Method::POST,
        "/v1/instances",
        &configure_key,
        Some(json!({"name": "x", "model_provider": "openai", "openclaw_version": "1"})),
    )
    .await;
    assert_eq!(created_by_scoped.status, 403);

    // The key's grants, then revocation takes effect at once.
    let key_id = configure["id"].as_str().unwrap();
    let shown = call(&app, Method::GET, &format!("/v1/keys/{key_id}"), &org, None).await.json();
    assert_eq!(
        shown["instances"],
        json!([{"instance_id": id, "permissions": ["read", "configure"]}])
    );
    assert!(shown.get("raw_key").is_none());
    assert_eq!(
        call(&app, Method::DELETE, &format!("/v1/keys/{key_id}"), &org, None).await.status,
        204
    );
    assert_eq!(call(&app, Method::GET, &path, &configure_key, None).await.status, 401, "revoked");

    // An expired key is refused.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    let expiring = call(
        &app,
        Method::POST,
        "/v1/keys",
        &org,
        Some(json!({"name": "brief", "instance_ids": [id], "permissions": ["read"], "expires_at": soon})),
    )
    .await;
    let expiring_key = expiring.json()["raw_key"].as_str().unwrap().to_string();
    assert_eq!(call(&app, Method::GET, &path, &expiring_key, None).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(call(&app, Method::GET, &path, &expiring_key, None).await.status, 401, "expired");

    // Another organization sees nothing of this one.
    let rival = signup(&app, "Rival").await;
    assert_eq!(
        call(&app, Method::GET, &path, &rival, None).await.json(),
        json!({"detail": "Instance not found."})
    );
    assert_eq!(call(&app, Method::PATCH, &path, &rival, Some(patch)).await.status, 404);
    let theirs = call(&app, Method::GET, "/v1/instances", &rival, None).await.json();
    assert_eq!(theirs, json!([]));
    let bad = call(
        &app,
        Method::POST,
        "/v1/keys",
        &org,
        Some(json!({"name": "x", "instance_ids": [id], "permissions": ["admin"]})),
    )
    .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["detail"][0]["loc"], json!(["body", "permissions", 0]));
}

async fn patch_hot_reloads_the_running_sandbox(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Hot").await;
    let instance = running_instance(
        &app,
        &org,
        json!({"gateway": {"port": 18789, "bind": "lan"}, "agent": {"model": "claude"}}),
    )
    .await;
    let id = instance["id"].as_str().unwrap().to_string();
    let (file, _) = sandbox_config(&app, &id);
    assert_eq!(file, instance["openclaw_config"]);

    let answer = call(
        &app,
        Method::PATCH,
        &format!("/v1/instances/{id}"),
        &org,
        Some(json!({"name": "my-assistant-v2", "openclaw_config": {"agent": {"system_prompt": "You are a helpful coding assistant."}, "models": {"gpt-4.1": {"temperature": 0.2}}, "gateway": {"bind": null}}})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let body = answer.json();
    assert_eq!(body["name"], "my-assistant-v2");
    let expected = json!({
        "gateway": {"port": 18789},
        "agent": {"model": "claude", "system_prompt": "You are a helpful coding assistant."},
        "models": {"gpt-4.1": {"temperature": 0.2}}
    });
    assert_eq!(body["openclaw_config"], expected);
    // Within the request, the live file took the change, written as the CLI writes it
    // (two-space JSON and a newline).
    let (file, bytes) = sandbox_config(&app, &id);
    assert_eq!(file, expected);
    let mut pretty = serde_json::to_vec_pretty(&file).unwrap();
    pretty.push(b'\n');
    assert_eq!(String::from_utf8(bytes).unwrap(), String::from_utf8(pretty).unwrap());

    // The event records the overrides as flattened paths, not a second copy of the body.
    let events = call(&app, Method::GET, &format!("/api/v1/ledger/streams/instance/{id}"), &org, None)
        .await
        .json();
    let update = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "instance.updated")
        .unwrap()
        .clone();
    let paths: Vec<&str> = update["data"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec!["agent.system_prompt", "models[\"gpt-4.1\"].temperature", "gateway.bind"]
    );
    assert!(update["data"].get("overrides").is_none(), "{update}");

    let long = call(
        &app,
        Method::PATCH,
        &format!("/v1/instances/{id}"),
        &org,
        Some(json!({"name": "x".repeat(129), "openclaw_config": []})),
    )
    .await;
    assert_eq!(long.status, 422);
    let locs: Vec<Value> = long.json()["detail"].as_array().unwrap().iter().map(|d| d["loc"].clone()).collect();
    assert_eq!(locs, vec![json!(["body", "name"]), json!(["body", "openclaw_config"])]);

    // History through the audit API.
    let audit = format!("/api/v1/ledger/resources/instance/{id}");
    let v1 = call(&app, Method::GET, &format!("{audit}?version=1"), &org, None).await.json();
    assert_eq!(v1["state"]["status"], "provisioning");
    let diff = call(&app, Method::GET, &format!("{audit}/diff?from=1&to=3"), &org, None)
        .await
        .json();
    assert!(diff["summary"].as_array().unwrap().iter().any(|s| s == "changed /status"), "{diff}");
}

async fn an_unreachable_sandbox_is_502_and_recorded(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Lost").await;
    let instance = running_instance(&app, &org, json!({})).await;
    let id = instance["id"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(app.store.dir.path().join("sandboxes").join(&id)).unwrap();
    let answer = call(
        &app,
        Method::PATCH,
        &format!("/v1/instances/{id}"),
        &org,
        Some(json!({"openclaw_config": {"agent": {"x": 1}}})),
    )
    .await;
    assert_eq!(answer.status, 502, "{}", answer.text);
    let error = answer.json()["detail"]["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("Gateway unavailable – sandbox"), "{error}");
    // The change is recorded, and so is the failure.
    let now = call(&app, Method::GET, &format!("/v1/instances/{id}"), &org, None).await.json();
    assert_eq!(now["openclaw_config"], json!({"agent": {"x": 1}}));
    let events = call(&app, Method::GET, &format!("/api/v1/ledger/streams/instance/{id}"), &org, None)
        .await
        .json();
    assert!(events["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["event_type"] == "instance.config_apply_failed"));
}

async fn a_stopped_instance_applies_changes_at_start(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Sleepy").await;
    let instance = running_instance(&app, &org, json!({"agent": {"model": "a"}})).await;
    let id = instance["id"].as_str().unwrap().to_string();
    let path = format!("/v1/instances/{id}");
    assert_eq!(
        call(&app, Method::POST, &format!("{path}/start"), &org, None).await.status,
        409,
        "already running"
    );
    let stopped = call(&app, Method::POST, &format!("{path}/stop"), &org, None).await.json();
    assert_eq!(stopped["status"], "stopped");
    assert_eq!(
        call(&app, Method::POST, &format!("{path}/stop"), &org, None).await.status,
        409,
        "already stopped"
    );
    let patched = call(
        &app,
        Method::PATCH,
        &path,
        &org,
        Some(json!({"openclaw_config": {"agent": {"model": "b"}}})),
    )
    .await;
    assert_eq!(patched.status, 200);
    assert_eq!(
        sandbox_config(&app, &id).0,
        json!({"agent": {"model": "a"}}),
        "a stopped sandbox is not touched"
    );
    let starting = call(&app, Method::POST, &format!("{path}/start"), &org, None).await.json();
    assert_eq!(starting["status"], "starting");
    wait_for_status(&app, &org, &id, "running").await;
    assert_eq!(
        sandbox_config(&app, &id).0,
        json!({"agent": {"model": "b"}}),
        "every stored override applied before running"
    );

    // Deleting terminates: gone from reads and lists, sandbox destroyed.
    assert_eq!(call(&app, Method::DELETE, &path, &org, None).await.status, 204);
    assert_eq!(call(&app, Method::GET, &path, &org, None).await.status, 404);
    assert_eq!(call(&app, Method::GET, "/v1/instances", &org, None).await.json(), json!([]));
    let dir = app.store.dir.path().join("sandboxes").join(&id);
    for _ in 0..100 {
        if !dir.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(!dir.exists(), "the sandbox was destroyed");
}

async fn concurrent_patches_all_land_and_the_file_matches(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Busy").await;
    let instance = running_instance(&app, &org, json!({})).await;
    let id = instance["id"].as_str().unwrap().to_string();
    let path = format!("/v1/instances/{id}");
    let patches = (0..20).map(|i| {
        let request = app
            .request(Method::PATCH, &path, &org)
            .json(&json!({"openclaw_config": {"shared": {"last": i}, "own": {format!("k{i}"): i}}}));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(patches).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let events = call(&app, Method::GET, &format!("/api/v1/ledger/streams/instance/{id}"), &org, None)
        .await
        .json();
    let updates = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "instance.updated")
        .count();
    assert_eq!(updates, 20);
    let stored = call(&app, Method::GET, &path, &org, None).await.json()["openclaw_config"].clone();
    assert_eq!(stored["own"].as_object().unwrap().len(), 20);
    assert_eq!(sandbox_config(&app, &id).0, stored);
}

/// Overrides add up, so a few bodies under the size limit could grow a config without
/// bound: past 2 MiB a growing change is 422 with nothing recorded. Each change records its
/// paths, not the whole config again, so a small change to a large config stays small in
/// the log, and the read model and the sandbox still hold the merge of every change.
async fn a_config_grows_to_its_bound_and_a_small_change_records_a_small_event(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Big").await;
    let instance = running_instance(&app, &org, json!({})).await;
    let id = instance["id"].as_str().unwrap().to_string();
    let path = format!("/v1/instances/{id}");
    let block = |n: usize| {
        let keys: serde_json::Map<String, Value> = (0..70_000).map(|i| (format!("k{i}"), json!(1))).collect();
        json!({"openclaw_config": {format!("r{n}"): keys}})
    };
    for n in 0..2 {
        let grown = call(&app, Method::PATCH, &path, &org, Some(block(n))).await;
        assert_eq!(grown.status, 200, "{}", &grown.text[..grown.text.len().min(300)]);
    }
    let version = |app: &TestApp| {
        let request = app.request(Method::GET, &path, &org);
        async move { request.send().await.unwrap().headers()["etag"].to_str().unwrap().to_string() }
    };
    let before = version(&app).await;
    let refused = call(&app, Method::PATCH, &path, &org, Some(block(2))).await;
    assert_eq!(refused.status, 422, "{}", &refused.text[..refused.text.len().min(300)]);
    assert!(refused.text.contains("unset keys first"), "{}", refused.text);
    assert_eq!(version(&app).await, before, "nothing recorded");

    let small = call(&app, Method::PATCH, &path, &org, Some(json!({"openclaw_config": {"zz": 1}}))).await;
    assert_eq!(small.status, 200);
    let events = call(&app, Method::GET, &format!("/api/v1/ledger/streams/instance/{id}"), &org, None)
        .await
        .json();
    let last_update = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["event_type"] == "instance.updated")
        .unwrap()
        .clone();
    assert_eq!(last_update["data"]["paths"], json!([{"path": "zz", "value": 1}]));
    let recorded = serde_json::to_string(&last_update["data"]).unwrap().len();
    assert!(recorded < 1_000, "a one-key change recorded {recorded} bytes");
    let stored = call(&app, Method::GET, &path, &org, None).await.json()["openclaw_config"].clone();
    assert_eq!(stored["zz"], 1);
    assert_eq!(stored["r1"].as_object().unwrap().len(), 70_000);
    assert_eq!(sandbox_config(&app, &id).0, stored);
    // A config may always shrink.
    let shrunk = call(&app, Method::PATCH, &path, &org, Some(json!({"openclaw_config": {"r0": null}}))).await;
    assert_eq!(shrunk.status, 200);
    assert!(shrunk.json()["openclaw_config"].get("r0").is_none());
}

async fn a_sandbox_that_cannot_be_made_is_an_error(backend: Backend) {
    let Some((app, _nats)) = spawn(backend, |_| {}).await else { return };
    let org = signup(&app, "Broken").await;
    // Where sandboxes go is a file: no sandbox can be made.
    std::fs::write(app.store.dir.path().join("sandboxes"), "not a directory").unwrap();
    let created = call(
        &app,
        Method::POST,
        "/v1/instances",
        &org,
        Some(json!({"name": "doomed", "model_provider": "gemini", "openclaw_version": "1"})),
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let failed = wait_for_status(&app, &org, &id, "error").await;
    assert!(
        failed["error_message"].as_str().unwrap().contains("cannot create sandbox"),
        "{failed}"
    );
    // Fixed, a start makes it.
    std::fs::remove_file(app.store.dir.path().join("sandboxes")).unwrap();
    assert_eq!(
        call(&app, Method::POST, &format!("/v1/instances/{id}/start"), &org, None)
            .await
            .status,
        200
    );
    let running = wait_for_status(&app, &org, &id, "running").await;
    assert_eq!(running["error_message"], Value::Null);
}

/// Signup is off by default: `fleetledger serve` without `--allow-signup` answers 403 in
/// Chowder's envelope; `FLEETLEDGER_ALLOW_SIGNUP=true` turns it on.
async fn signup_is_off_unless_allowed(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let client = reqwest::Client::new();
    let signup = |server: &Server| client.post(server.url("/v1/organization/signup")).json(&json!({"name": "Nope"}));
    let mut server = start_server(&store);
    let off = Answer::of(signup(&server)).await;
    assert_eq!((off.status, off.json()), (403, json!({"detail": "Signup is disabled."})));
    let wrong = Answer::of(client.get(server.url("/v1/instances")).bearer_auth("chd_org_wrong")).await;
    assert_eq!(wrong.status, 401);
    server.terminate();
    let mut server = start_server_with(&store, &[("FLEETLEDGER_ALLOW_SIGNUP", "true")]);
    let on = Answer::of(signup(&server)).await;
    server.terminate();
    assert_eq!(on.status, 201, "{}", on.text);
    assert!(on.json()["api_key"].as_str().unwrap().starts_with("chd_org_"));
}

both_backends!(
    keys_and_the_permission_matrix,
    patch_hot_reloads_the_running_sandbox,
    an_unreachable_sandbox_is_502_and_recorded,
    a_stopped_instance_applies_changes_at_start,
    concurrent_patches_all_land_and_the_file_matches,
    a_config_grows_to_its_bound_and_a_small_change_records_a_small_event,
    signup_is_off_unless_allowed,
    a_sandbox_that_cannot_be_made_is_an_error,
);

/// The real OpenClaw CLI (`tests/openclaw/setup.sh` installs it), or `None` after saying why.
fn openclaw_cli() -> Option<std::path::PathBuf> {
    match std::env::var("FLEETLEDGER_TEST_OPENCLAW") {
        Ok(path) if !path.is_empty() => Some(path.into()),
        _ => {
            eprintln!("skipped: FLEETLEDGER_TEST_OPENCLAW is not set (tests/openclaw/setup.sh installs the OpenClaw CLI)");
            None
        }
    }
}

/// The config the CLI wrote, without the `meta` it adds for itself.
fn without_meta(mut config: Value) -> Value {
    if let Some(o) = config.as_object_mut() {
        o.shift_remove("meta");
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openclaw_cli_driver_applies_changes_as_the_local_driver_does() {
    let Some(bin) = openclaw_cli() else { return };
    let Some((app, _nats)) = spawn(Backend::Sqlite, |s| {
        s.drivers.instance_driver = "openclaw".into();
        s.drivers.openclaw_bin = bin;
        // The real CLI is a Node program run once per changed path: slow on a busy machine.
        s.apply_timeout_seconds = 120;
        s.guards.request_timeout_seconds = 120;
    })
    .await
    else {
        return;
    };
    let org = signup(&app, "Real CLI").await;
    let initial = json!({"gateway": {"port": 18789}});
    let instance = running_instance(&app, &org, initial.clone()).await;
    let id = instance["id"].as_str().unwrap().to_string();
    let overrides = json!({"gateway": {"bind": "lan", "port": null}, "agents": {"defaults": {"workspace": "/tmp/agent-ws"}}});
    let answer = call(
        &app,
        Method::PATCH,
        &format!("/v1/instances/{id}"),
        &org,
        Some(json!({"openclaw_config": overrides})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let stored = answer.json()["openclaw_config"].clone();
    let (by_cli, _) = sandbox_config(&app, &id);
    let by_cli = without_meta(by_cli);
    assert_eq!(by_cli, stored);

    // The local driver writes the same JSON for the same paths.
    let local_dir = tempfile::tempdir().unwrap();
    let local = fleetledger::workers::drivers::instance_sandbox::LocalInstanceSandbox::new(local_dir.path());
    use fleetledger::workers::drivers::instance_sandbox::InstanceSandbox;
    local.provision("same", &initial).await.unwrap();
    let paths = fleetledger::domain::instance::flatten(overrides.as_object().unwrap());
    local.apply("same", &paths).await.unwrap();
    let by_local: Value = serde_json::from_slice(&std::fs::read(local.config_path("same")).unwrap()).unwrap();
    assert_eq!(serde_json::to_string(&by_local).unwrap(), serde_json::to_string(&by_cli).unwrap());

    // The CLI's schema refuses unknown keys: a failed apply, reported, the file untouched.
    let refused = call(
        &app,
        Method::PATCH,
        &format!("/v1/instances/{id}"),
        &org,
        Some(json!({"openclaw_config": {"agent": {"x": 1}}})),
    )
    .await;
    assert_eq!(refused.status, 502, "{}", refused.text);
    let error = refused.json()["detail"]["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("Gateway unavailable – Config validation failed"), "{error}");
    assert_eq!(without_meta(sandbox_config(&app, &id).0), by_cli);
}
