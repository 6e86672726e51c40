//! The HTTP contract every surface keeps: what no handler answers (an unknown route, a
//! wrong method) in the envelope of the surface the path falls under, bodies of another
//! media type refused with 415 on every surface, the ledger's filters checked against the
//! stream types there are, and `/openapi.json` held to what the server really answers —
//! by schemathesis fuzzing every operation, and by a client openapi-python-client
//! generates from it.
//!
//! The Python tools come from `FLEETLEDGER_TEST_CONTRACT_PYTHON` (a python whose
//! virtualenv has them; `tests/contract/setup.sh` makes one). CI always sets it; without
//! it, outside CI, those two scenarios say they were skipped.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_configured, Answer, Backend, TestApp, TestNats, TestStore};

/// The server as the contract is checked against: every worker running (on JetStream on
/// PostgreSQL), signup open, and the per-key and failed-login limits out of the fuzzer's
/// way (they still answer as documented; they would only leave operations untested).
async fn spawn_contract(backend: Backend) -> Option<(TestApp, Option<TestNats>)> {
    let store = TestStore::new(backend).await?;
    let mut serve = serve_settings();
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    if let Some(n) = &nats {
        serve.bus = n.bus();
    }
    serve.allow_signup = true;
    serve.apply_timeout_seconds = 3;
    serve.rate_limit_per_sec = 100_000;
    serve.rate_limit_burst = 100_000;
    serve.guards.login_failure_burst = 100_000;
    serve.guards.login_failures_per_minute = 100_000;
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    let app = spawn_configured(store, serve, workers).await;
    Some((app, nats))
}

/// A request with a raw body and the given `Content-Type` (none when `None`).
async fn send(app: &TestApp, method: Method, path: &str, content_type: Option<&str>, body: &str) -> Answer {
    let mut builder = app.admin(method, path).body(body.to_string());
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    let answer = Answer::of(builder).await;
    app.assert_no_server_path(&answer.text);
    answer
}

/// Asserts `answer` is in the envelope of the surface `path` falls under, with `status`.
fn assert_envelope(path: &str, answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{path}: {}", answer.text);
    let body = answer.json();
    let content_type = answer.header("content-type").unwrap_or_default();
    let ok = match surface_of(path) {
        "profiles" | "container_agents" => body["error"].is_string() && body.as_object().unwrap().len() == 1,
        "runtimes" => body["code"] == status && body["detail"].is_string() && body["type"].is_string(),
        "mission_control" => body["detail"].is_string() && body["request_id"].is_string(),
        "instances" => body["detail"].is_string() && body.as_object().unwrap().len() == 1,
        _ => content_type == "application/problem+json" && body["status"] == status && body["detail"].is_string(),
    };
    assert!(ok, "{path} answers {status} outside its envelope: {content_type} {}", answer.text);
    if !matches!(surface_of(path), "ledger" | "system") {
        assert_eq!(content_type, "application/json", "{path}");
    }
}

fn surface_of(path: &str) -> &'static str {
    fleetledger::api::Surface::of(path).name()
}

async fn unrouted_requests_answer_in_their_surfaces_envelope(backend: Backend) {
    let Some((app, _nats)) = spawn_contract(backend).await else {
        return;
    };
    let unknown = [
        "/api/v1/profiles/x/nope",
        "/api/v1/fleets/nope/nope",
        "/api/v1/org/default/ws/default/runtimes/x/nope",
        "/api/v1/agents/x/nope",
        "/v1/nope",
        "/skills/x/nope",
        "/agents/x/y/z",
        "/api/v1/ledger/nope",
        "/nope",
    ];
    for path in unknown {
        let answer = call(&app, Method::GET, path, &app.admin_key, None).await;
        assert_envelope(path, &answer, 404);
        assert_eq!(surface_of(path) == "mission_control", answer.json().get("request_id").is_some());
    }
    assert_eq!(
        call(&app, Method::GET, "/api/v1/profiles/x/nope", &app.admin_key, None).await.text,
        "{\"error\":\"Not Found\"}\n",
        "Fleeti's bodies end with Go's newline"
    );
    // A route that exists, asked with a method it does not have: 405 with `Allow`.
    let wrong = [
        (Method::PATCH, "/api/v1/fleets", "GET,HEAD,POST"),
        (Method::DELETE, "/api/v1/org/default/ws/default/runtimes", "GET,HEAD,POST"),
        (Method::PUT, "/api/v1/gateways", "GET,HEAD,POST"),
        (Method::PUT, "/v1/instances", "GET,HEAD,POST"),
        (Method::PATCH, "/skills", "GET,HEAD,POST"),
        (Method::POST, "/api/v1/ledger/events", "GET,HEAD"),
        (Method::GET, "/api/v1/ledger/resources/profile/x/restore", "POST"),
    ];
    for (method, path, allow) in wrong {
        let answer = call(&app, method.clone(), path, &app.admin_key, None).await;
        assert_envelope(path, &answer, 405);
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
    }
    // What axum could not read (a query with a repeated field) is in the envelope too.
    let path = "/api/v1/org/default/ws/default/runtimes?state=idle&state=paused";
    assert_envelope(path, &call(&app, Method::GET, path, &app.admin_key, None).await, 400);
}

/// One write of each surface that takes a body, with a body that creates something.
fn writes(runtime_key: &str) -> Vec<(Method, &'static str, Value)> {
    vec![
        (
            Method::POST,
            "/api/v1/fleets",
            json!({"id": format!("fleet-{runtime_key}"), "name": "F"}),
        ),
        (Method::POST, "/api/v1/profiles", json!({"name": "P"})),
        (Method::POST, "/api/v1/org/default/ws/default/runtimes", json!({"key": runtime_key})),
        (
            Method::POST,
            "/api/v1/gateways",
            json!({"name": "g", "url": "", "workspace_root": "g"}),
        ),
        (
            Method::POST,
            "/v1/instances",
            json!({"name": "i", "model_provider": "anthropic", "openclaw_version": "2026.9.6"}),
        ),
        (
            Method::POST,
            "/skills",
            json!({"name": format!("s-{runtime_key}"), "scope": "container_local", "tools_config": {}, "tools": []}),
        ),
        (
            Method::POST,
            "/container-profiles",
            json!({"name": format!("c-{runtime_key}"), "docker_image": "img:1"}),
        ),
        (
            Method::POST,
            "/agents",
            json!({"agent_id": format!("a-{runtime_key}"), "name": "A"}),
        ),
    ]
}

async fn bodies_of_another_media_type_are_refused_on_every_surface(backend: Backend) {
    let Some((app, _nats)) = spawn_contract(backend).await else {
        return;
    };
    let head = |app: &TestApp| {
        let app = app.store.url();
        async move { fleetledger::store::connect(&app).await.unwrap().head().await.unwrap() }
    };
    let before = head(&app).await;
    for (method, path, body) in writes("refused") {
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
            let answer = send(&app, method.clone(), path, Some(content_type), &body.to_string()).await;
            assert_envelope(path, &answer, 415);
        }
    }
    assert_eq!(head(&app).await, before, "a refused body records nothing");

    // The ledger's restore too, and a write that needs its resource first.
    let profile = app.create_profile(json!({"name": "P", "config": {"a": 1}})).await;
    let path = format!("/api/v1/ledger/resources/profile/{profile}/restore");
    assert_envelope(
        &path,
        &send(&app, Method::POST, &path, Some("text/plain"), r#"{"version": 1}"#).await,
        415,
    );
    let path = format!("/api/v1/profiles/{profile}");
    assert_envelope(
        &path,
        &send(&app, Method::PUT, &path, Some("text/plain"), r#"{"config": {}}"#).await,
        415,
    );

    // No Content-Type at all reads as JSON (what a bare `curl --data-binary` sends is
    // not that, but clients that send none are served as they always were); `+json`
    // types and parameters are JSON.
    for (i, (method, path, body)) in writes("bare").into_iter().enumerate() {
        let content_type = [None, Some("application/json; charset=utf-8"), Some("application/merge-patch+json")][i % 3];
        let answer = send(&app, method, path, content_type, &body.to_string()).await;
        assert!(
            [200, 201].contains(&answer.status),
            "{path} with {content_type:?}: {} {}",
            answer.status,
            answer.text
        );
    }
    let path = format!("/api/v1/ledger/resources/profile/{profile}/restore");
    let answer = send(&app, Method::POST, &path, None, r#"{"version": 1}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn ledger_filters_name_what_exists(backend: Backend) {
    let Some((app, _nats)) = spawn_contract(backend).await else {
        return;
    };
    app.create_profile(json!({"name": "P"})).await;
    let names = fleetledger::streams::names();
    for path in ["/api/v1/ledger/events?stream_type=bogus", "/api/v1/ledger/stream?stream_type=bogus"] {
        let answer = call(&app, Method::GET, path, &app.admin_key, None).await;
        assert_envelope(path, &answer, 400);
        let detail = answer.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains("\"bogus\""), "{detail}");
        for name in &names {
            assert!(detail.contains(name), "{detail} lists {name}");
        }
    }
    let path = "/api/v1/ledger/events?stream_type=profile&event_type=profile.bogus";
    let answer = call(&app, Method::GET, path, &app.admin_key, None).await;
    assert_envelope(path, &answer, 400);
    let detail = answer.json()["detail"].as_str().unwrap().to_string();
    let profile_types = fleetledger::streams::get("profile").unwrap().event_types();
    for (event_type, _) in profile_types {
        assert!(detail.contains(event_type), "{detail} lists {event_type}");
    }
    assert!(!detail.contains("org.created"), "only the profile's event types: {detail}");
    let path = "/api/v1/ledger/events?event_type=bogus";
    assert_envelope(path, &call(&app, Method::GET, path, &app.admin_key, None).await, 400);

    // A known event type filters.
    let page = call(
        &app,
        Method::GET,
        "/api/v1/ledger/events?event_type=profile.created",
        &app.admin_key,
        None,
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text);
    let events = page.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event_type"], "profile.created");

    // A stream type in a path that does not exist is 404, naming the ones that do.
    for path in ["/api/v1/ledger/resources/bogus", "/api/v1/ledger/streams/bogus/x"] {
        let answer = call(&app, Method::GET, path, &app.admin_key, None).await;
        assert_envelope(path, &answer, 404);
        assert!(
            answer.json()["detail"].as_str().unwrap().contains("container_agent"),
            "{}",
            answer.text
        );
    }
}

both_backends!(
    unrouted_requests_answer_in_their_surfaces_envelope,
    bodies_of_another_media_type_are_refused_on_every_surface,
    ledger_filters_name_what_exists
);

// ---- the schema, checked by tools that read it ---------------------------------------------

fn contract_python() -> Option<std::path::PathBuf> {
    match std::env::var("FLEETLEDGER_TEST_CONTRACT_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p.into()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must set FLEETLEDGER_TEST_CONTRACT_PYTHON (see tests/contract/setup.sh)")
        }
        _ => {
            eprintln!("skipped: FLEETLEDGER_TEST_CONTRACT_PYTHON is not set (see tests/contract/setup.sh)");
            None
        }
    }
}

/// Runs a program of the contract virtualenv to its end, off the server's runtime.
async fn run(program: std::path::PathBuf, args: Vec<String>, dir: std::path::PathBuf) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    })
    .await
    .expect("the program's thread")
}

async fn created(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let answer = call(app, method, path, &app.admin_key, Some(body)).await;
    assert!([200, 201].contains(&answer.status), "{path}: {} {}", answer.status, answer.text);
    answer.json()
}

/// One resource of every kind, so the fuzzer reaches real ones and not only 404s; returns
/// `(dictionary, operations' path regex, path parameter, values)` for its configuration.
async fn seed(app: &TestApp) -> Vec<(&'static str, &'static str, &'static str, Vec<String>)> {
    created(app, Method::POST, "/api/v1/fleets", json!({"id": "fleet-a", "name": "A"})).await;
    let profile = created(
        app,
        Method::POST,
        "/api/v1/profiles",
        json!({"name": "P", "fleet_ids": ["fleet-a"], "config": {"packages": ["vim"]}}),
    )
    .await;
    let profile = profile["profile"]["id"].as_str().unwrap().to_string();
    created(
        app,
        Method::PUT,
        &format!("/api/v1/profiles/{profile}"),
        json!({"config": {"packages": ["git"]}}),
    )
    .await;
    let runtimes = "/api/v1/org/default/ws/default/runtimes";
    created(app, Method::POST, runtimes, json!({"key": "recon", "name": "Recon"})).await;
    created(app, Method::POST, runtimes, json!({"key": "running"})).await;
    created(app, Method::POST, &format!("{runtimes}/running/start"), json!({})).await;
    let gateway = created(
        app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "local", "workspace_root": "edge"}),
    )
    .await;
    let gateway = gateway["id"].as_str().unwrap().to_string();
    let board = created(
        app,
        Method::POST,
        "/api/v1/boards",
        json!({"name": "Finance", "gateway_id": gateway}),
    )
    .await;
    let board = board["id"].as_str().unwrap().to_string();
    let agent = created(app, Method::POST, "/api/v1/agents", json!({"name": "Lead", "board_id": board})).await;
    let agent = agent["id"].as_str().unwrap().to_string();
    let instance = created(
        app,
        Method::POST,
        "/v1/instances",
        json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6"}),
    )
    .await;
    let instance = instance["id"].as_str().unwrap().to_string();
    let key = created(
        app,
        Method::POST,
        "/v1/keys",
        json!({"name": "ci", "instance_ids": [instance], "permissions": ["read"]}),
    )
    .await;
    let key = key["id"].as_str().unwrap().to_string();
    let skill = created(
        app,
        Method::POST,
        "/skills",
        json!({"name": "search", "scope": "container_local", "tools_config": {}, "tools": [{"name": "rg"}]}),
    )
    .await;
    let skill = skill["id"].as_str().unwrap().to_string();
    let container_profile = created(
        app,
        Method::POST,
        "/container-profiles",
        json!({"name": "small", "docker_image": "img:1"}),
    )
    .await;
    let container_profile = container_profile["id"].as_str().unwrap().to_string();
    let container_agent = created(
        app,
        Method::POST,
        "/agents",
        json!({"agent_id": "researcher", "name": "Researcher", "skill_ids": [skill], "container_profile_id": container_profile}),
    )
    .await;
    let container_agent = container_agent["id"].as_str().unwrap().to_string();
    vec![
        ("profile", "^/api/v1/profiles/", "id", vec![profile.clone()]),
        ("runtime", "^/api/v1/org/", "id", vec!["recon".into(), "running".into()]),
        ("org", "^/api/v1/org/", "org", vec!["default".into()]),
        ("workspace", "^/api/v1/org/", "workspace", vec!["default".into()]),
        ("gateway", "^/api/v1/gateways/", "id", vec![gateway.clone()]),
        ("board", "^/api/v1/boards/", "id", vec![board.clone()]),
        ("mc_agent", "^/api/v1/agents/", "id", vec![agent.clone()]),
        ("instance", "^/v1/instances/", "id", vec![instance.clone()]),
        ("key", "^/v1/keys/", "id", vec![key]),
        ("skill", "^/skills/", "id", vec![skill.clone()]),
        ("container_profile", "^/container-profiles/", "id", vec![container_profile]),
        ("container_agent", "^/agents/", "id", vec![container_agent]),
        (
            "stream_type",
            "^/api/v1/ledger/",
            "stream_type",
            vec!["profile".into(), "mc_agent".into(), "instance".into()],
        ),
        (
            "stream_id",
            "^/api/v1/ledger/",
            "id",
            vec![profile.clone(), agent.clone(), instance.clone()],
        ),
        (
            "stream_id_of_stream",
            "^/api/v1/ledger/streams/",
            "stream_id",
            vec![profile, agent, instance],
        ),
    ]
}

/// schemathesis's configuration: the seeded resources as dictionaries its path parameters
/// draw from most of the time (and random values otherwise, for the 404s).
fn schemathesis_config(admin_key: &str, seeded: &[(&str, &str, &str, Vec<String>)]) -> String {
    // The key for both security schemes, so that generated requests carry it rather than
    // values drawn for the scheme's header.
    let mut out = format!("[auth.openapi.bearer]\nbearer = \"{admin_key}\"\n\n[auth.openapi.api_key]\napi_key = \"{admin_key}\"\n\n");
    for (dictionary, _, _, values) in seeded {
        let values: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        out.push_str(&format!("[dictionaries.{dictionary}]\nvalues = [{}]\n\n", values.join(", ")));
    }
    // Every operation under one prefix takes all of that prefix's bindings at once.
    let mut prefixes: Vec<&str> = seeded.iter().map(|(_, prefix, _, _)| *prefix).collect();
    prefixes.dedup();
    for prefix in prefixes {
        let bindings: Vec<String> = seeded
            .iter()
            .filter(|(_, p, _, _)| *p == prefix)
            .map(|(dictionary, _, parameter, _)| format!("\"path.{parameter}\" = {{ dictionary = \"{dictionary}\", probability = 0.9 }}"))
            .collect();
        out.push_str(&format!(
            "[[operations]]\ninclude-path-regex = {prefix:?}\nparameters = {{ {} }}\n\n",
            bindings.join(", ")
        ));
    }
    out
}

async fn schemathesis_finds_nothing_the_schema_does_not_say(backend: Backend) {
    let Some(python) = contract_python() else { return };
    let Some((app, _nats)) = spawn_contract(backend).await else {
        return;
    };
    let seeded = seed(&app).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config(&app.admin_key, &seeded)).expect("write the configuration");
    let schemathesis = python.with_file_name("schemathesis");
    let seed = std::env::var("FLEETLEDGER_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let args = vec![
        "--config-file".to_string(),
        config.display().to_string(),
        "run".into(),
        app.url("/openapi.json"),
        // What the brief of this run is: no 5xx, and every status, media type and body as
        // documented. All four checks, every operation, nothing excluded.
        "--checks".into(),
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance".into(),
        "--max-examples".into(),
        "10".into(),
        "--workers".into(),
        "1".into(),
        "--seed".into(),
        seed,
        "--max-failures".into(),
        "50".into(),
        "--no-color".into(),
    ];
    let out = run(schemathesis, args, dir.path().to_path_buf()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.find("SUMMARY").map_or(&stdout[..], |at| &stdout[at..]);
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Tested: "), "schemathesis tested operations:\n{stdout}");
    app.assert_no_server_path(&stdout);
}

both_backends!(schemathesis_finds_nothing_the_schema_does_not_say);

async fn a_key_cannot_revoke_itself(backend: Backend) {
    let Some((app, _nats)) = spawn_contract(backend).await else {
        return;
    };
    let keys = call(&app, Method::GET, "/v1/keys", &app.admin_key, None).await.json();
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 1, "the bootstrap key alone: {keys:?}");
    let path = format!("/v1/keys/{}", keys[0]["id"].as_str().unwrap());
    let answer = call(&app, Method::DELETE, &path, &app.admin_key, None).await;
    assert_envelope(&path, &answer, 409);
    assert_eq!(
        call(&app, Method::GET, "/v1/keys", &app.admin_key, None).await.status,
        200,
        "still valid"
    );
}

both_backends!(a_key_cannot_revoke_itself);

async fn a_generated_client_creates_and_updates_profiles_and_instances(backend: Backend) {
    let Some(python) = contract_python() else { return };
    let Some((app, _nats)) = spawn_contract(backend).await else {
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/generated_client.py");
    let dir = tempfile::tempdir().expect("temp dir");
    let args = vec![script.to_string(), app.url(""), app.admin_key.clone()];
    let out = run(python, args, dir.path().to_path_buf()).await;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "the generated client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

both_backends!(a_generated_client_creates_and_updates_profiles_and_instances);
