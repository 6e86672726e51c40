//! The runtimes surface (Dreadnode-compatible): tenancy, ensure, listing, PUT config
//! validation and normalization, ownership, lifecycle with the local sandbox driver,
//! rate limiting and body limits.

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_app, spawn_configured, Answer, Backend, TestApp, TestStore};

const RUNTIMES: &str = "/api/v1/org/default/ws/default/runtimes";

/// The spec's example body, with a timeout the server allows.
fn spec_config() -> Value {
    json!({
        "build": {"profile": "default", "provider": "auto", "source": {"kind": "builtin", "ref": "runtime"}},
        "capabilities": [{"enabled": true, "name": "example", "version": "example"}],
        "defaults": {"agent": "example", "capability": "example", "model": "example", "system_prompt": "example"},
        "metadata": {"labels": {"additionalProperty": "example"}},
        "resources": {"cpu_cores": 2, "memory_mb": 2048},
        "runtime_server": {"env": {"additionalProperty": "example"}},
        "sandbox": {"exposed_ports": [8080, 1, 8080], "timeout_seconds": 600, "workspace_mount": true},
        "secrets": {"secret_ids": ["2489E9AD-2EE2-8E00-8EC9-32D5F69181C0"]},
        "version": "v2"
    })
}

/// The RFC 8785 form of the config every omitted field defaults to, written out by hand.
const DEFAULT_CANONICAL: &str = r#"{"build":{"profile":"default","provider":"auto","source":{"kind":"builtin","ref":"runtime"}},"capabilities":[],"resources":{"cpu_cores":2,"memory_mb":2048},"sandbox":{"workspace_mount":true},"version":"v2"}"#;

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn create(app: &TestApp, key: &str, body: Value) -> Value {
    let answer = call(app, Method::POST, RUNTIMES, key, Some(body)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json()
}

fn path(id: &str, tail: &str) -> String {
    format!("{RUNTIMES}/{id}{tail}")
}

/// `(loc joined by '.', type)` of every error in a 422.
fn problems(answer: &Answer) -> Vec<(String, String)> {
    assert_eq!(answer.status, 422, "{}", answer.text);
    let body = answer.json();
    assert_eq!(
        (body["code"].as_i64(), body["type"].as_str()),
        (Some(422), Some("validation_error"))
    );
    body["errors"]
        .as_array()
        .expect("errors[]")
        .iter()
        .map(|e| {
            assert!(e["msg"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            let loc: Vec<String> = e["loc"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().map(str::to_string).unwrap_or_else(|| l.to_string()))
                .collect();
            (loc.join("."), e["type"].as_str().unwrap().to_string())
        })
        .collect()
}

fn has(problems: &[(String, String)], loc: &str, kind: &str) -> bool {
    problems.iter().any(|(l, k)| l == loc && k == kind)
}

async fn put_config_normalizes_and_versions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let created = create(&app, &key, json!({"key": "agent-1", "name": "Agent one"})).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["status"], "idle");
    assert_eq!(created["config_version"], "1");
    assert_eq!(created["config_digest"], sha256_hex(DEFAULT_CANONICAL));

    let put = call(
        &app,
        Method::PUT,
        &path(&id, "/config"),
        &key,
        Some(json!({"config": spec_config()})),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let body = put.json();
    assert_eq!(body["runtime_id"], id.as_str());
    assert_eq!(body["config_version"], "2");
    assert_eq!(body["materialization_stale"], false);
    let config = &body["config"];
    assert_eq!(config["sandbox"]["exposed_ports"], json!([1, 8080]), "deduplicated and sorted");
    assert_eq!(config["secrets"]["secret_ids"], json!(["2489e9ad-2ee2-8e00-8ec9-32d5f69181c0"]));
    assert_eq!(
        config["capabilities"],
        json!([{"enabled": true, "name": "example", "version": "example"}])
    );
    let digest = body["config_digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);

    // Full replacement: an omitted field takes its default, so `{}` is the default config.
    let reset = call(&app, Method::PUT, &path(&id, "/config"), &key, Some(json!({"config": {}})))
        .await
        .json();
    assert_eq!(reset["config_digest"], sha256_hex(DEFAULT_CANONICAL));
    assert_eq!(reset["config_version"], "3");

    // An equal config is recorded but keeps digest and version.
    let again = call(
        &app,
        Method::PUT,
        &path(&id, "/config"),
        &key,
        Some(json!({"config": {"version": "v2"}})),
    )
    .await
    .json();
    assert_eq!(
        (again["config_version"].as_str(), again["config_digest"].as_str()),
        (Some("3"), Some(sha256_hex(DEFAULT_CANONICAL).as_str()))
    );
    let history = call(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/resources/runtime/{id}/revisions"),
        &key,
        None,
    )
    .await
    .json();
    assert_eq!(history["revisions"].as_array().unwrap().len(), 4, "{history}");

    let got = call(&app, Method::GET, &path(&id, "/config"), &key, None).await.json();
    assert_eq!(got, again);
}

async fn put_config_lists_every_problem(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let id = create(&app, &key, json!({"key": "strict"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = json!({
        "config": {
            "version": "v3",
            "build": {"profile": "", "provider": "e2b", "source": {"kind": "git", "ref": "x"}},
            "resources": {"cpu_cores": 64, "memory_mb": 100},
            "sandbox": {"timeout_seconds": 86401, "exposed_ports": [70000], "egress": {"allow": ["*", "https://example.com", "intranet", "10.0.0.1/8", "api.example.com"]}},
            "capabilities": [{"name": "a"}, {"name": "a"}, {"version": "1"}],
            "defaults": {"agent": "", "system_prompt": ""},
            "secrets": {"secret_ids": ["not-a-uuid"]},
            "runtime_server": {"env": {"A": 1}},
            "unexpected": 1
        },
        "extra": true
    });
    let answer = call(&app, Method::PUT, &path(&id, "/config"), &key, Some(bad)).await;
    let found = problems(&answer);
    for (loc, kind) in [
        ("body.extra", "extra_forbidden"),
        ("body.config.unexpected", "extra_forbidden"),
        ("body.config.version", "literal_error"),
        ("body.config.build.profile", "string_too_short"),
        ("body.config.build.provider", "value_error"),
        ("body.config.build.source.kind", "literal_error"),
        ("body.config.resources.cpu_cores", "less_than_equal"),
        ("body.config.resources.memory_mb", "greater_than_equal"),
        ("body.config.sandbox.timeout_seconds", "less_than_equal"),
        ("body.config.sandbox.exposed_ports.0", "less_than_equal"),
        ("body.config.sandbox.egress.allow.0", "value_error"),
        ("body.config.sandbox.egress.allow.1", "value_error"),
        ("body.config.sandbox.egress.allow.2", "value_error"),
        ("body.config.sandbox.egress.allow.3", "value_error"),
        ("body.config.capabilities.1.name", "value_error"),
        ("body.config.capabilities.2.name", "missing"),
        ("body.config.defaults.agent", "string_too_short"),
        ("body.config.secrets.secret_ids.0", "uuid_parsing"),
        ("body.config.runtime_server.env.A", "string_type"),
    ] {
        assert!(has(&found, loc, kind), "no {kind} at {loc} in {found:?}");
    }
    assert_eq!(found.len(), 19, "{found:?}");
    let body = answer.json();
    assert_eq!(body["errors"][0]["loc"][0], "body");
    assert!(body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["msg"] == "Input should be 'v2'"));
    assert!(body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["msg"] == "Input should be less than or equal to 32"));

    // A missing config, a non-object, and broken JSON.
    assert!(has(
        &problems(&call(&app, Method::PUT, &path(&id, "/config"), &key, Some(json!({}))).await),
        "body.config",
        "missing"
    ));
    assert!(has(
        &problems(&call(&app, Method::PUT, &path(&id, "/config"), &key, Some(json!({"config": [1]}))).await),
        "body.config",
        "model_type"
    ));
    let broken = Answer::of(
        app.admin(Method::PUT, &path(&id, "/config"))
            .header("content-type", "application/json")
            .body("{\"config\":"),
    )
    .await;
    assert_eq!(problems(&broken)[0].1, "json_invalid");

    // The server's own provider is fine; so is a good egress list, and empty ≠ omitted.
    let ok = |config: Value| {
        let app = &app;
        let key = key.clone();
        let id = id.clone();
        async move {
            let a = call(app, Method::PUT, &path(&id, "/config"), &key, Some(json!({ "config": config }))).await;
            assert_eq!(a.status, 200, "{}", a.text);
            a.json()
        }
    };
    let docker = ok(json!({"build": {"provider": "docker"}})).await;
    assert_eq!(docker["config"]["build"]["provider"], "docker");
    let allowed = ok(json!({"sandbox": {"egress": {"allow": ["API.example.com", "*.pypi.org", "10.0.0.0/8", "192.168.1.7", "tcp://db.example.com:5432"]}}})).await;
    assert_eq!(
        allowed["config"]["sandbox"]["egress"]["allow"],
        json!([
            "api.example.com",
            "*.pypi.org",
            "10.0.0.0/8",
            "192.168.1.7",
            "tcp://db.example.com:5432"
        ])
    );
    let empty = ok(json!({"sandbox": {"egress": {"allow": []}}})).await;
    let omitted = ok(json!({"sandbox": {}})).await;
    assert_eq!(empty["config"]["sandbox"]["egress"], json!({"allow": []}));
    assert!(omitted["config"]["sandbox"].get("egress").is_none());
    assert_ne!(empty["config_digest"], omitted["config_digest"]);
    // Nothing invalid was stored.
    let current = call(&app, Method::GET, &path(&id, "/config"), &key, None).await.json();
    assert_eq!(current["config_digest"], sha256_hex(DEFAULT_CANONICAL));
}

async fn tenancy_and_authentication(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let created = create(&app, &key, json!({"key": "tenant-probe"})).await;
    let id = created["id"].as_str().unwrap().to_string();

    for token in ["", "flk_not-a-key"] {
        let answer = call(&app, Method::GET, RUNTIMES, token, None).await;
        assert_eq!(answer.status, 401);
        assert_eq!(
            answer.text,
            r#"{"code":401,"detail":"Authentication failed","type":"authentication_error"}"#
        );
    }
    // X-API-Key as well as Bearer.
    let by_header = Answer::of(app.client.get(app.url(&path(&id, ""))).header("X-API-Key", &key)).await;
    assert_eq!(by_header.status, 200, "{}", by_header.text);
    // By UUID in any case, or by key.
    for handle in [id.to_uppercase(), "tenant-probe".to_string()] {
        let got = call(&app, Method::GET, &path(&handle, ""), &key, None).await;
        assert_eq!((got.status, got.json()["id"].as_str()), (200, Some(id.as_str())), "{handle}");
    }
    let unknown = call(&app, Method::GET, &path("no-such-runtime", ""), &key, None).await;
    assert_eq!((unknown.status, unknown.json()["type"].as_str()), (404, Some("not_found")));

    for missing in ["/api/v1/org/nope/ws/default/runtimes", "/api/v1/org/default/ws/nope/runtimes"] {
        let answer = call(&app, Method::GET, missing, &key, None).await;
        assert_eq!((answer.status, answer.json()["code"].as_i64()), (404, Some(404)), "{missing}");
    }
    // Another org's key sees nothing of this org, even knowing its slugs and ids.
    app.store.create_org("rival");
    let rival = app.store.create_key("rival", "admin");
    for p in [RUNTIMES.to_string(), path(&id, ""), path(&id, "/config")] {
        assert_eq!(call(&app, Method::GET, &p, &rival, None).await.status, 404, "{p}");
    }
    // Its own workspaces, once created (also as events), are its own.
    let out = app.store.cli(&["workspaces", "create", "rival", "lab"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs = call(
        &app,
        Method::POST,
        "/api/v1/org/rival/ws/lab/runtimes",
        &rival,
        Some(json!({"key": "tenant-probe"})),
    )
    .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    assert_ne!(theirs.json()["id"], id.as_str());
    let listed = call(&app, Method::GET, "/api/v1/org/rival/ws/lab/runtimes", &rival, None)
        .await
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

async fn only_the_owner_changes_a_runtime(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let owner = app.store.create_key("default", "member");
    let other = app.store.create_key("default", "member");
    let viewer = app.store.create_key("default", "viewer");
    let created = create(&app, &owner, json!({"key": "owned"})).await;
    assert_eq!(created["owned_by_me"], true);
    let id = created["id"].as_str().unwrap().to_string();
    let put = json!({"config": {"resources": {"cpu_cores": 4}}});
    for (who, key) in [
        ("another member", &other),
        ("a viewer", &viewer),
        ("an admin who is not the owner", &app.admin_key),
    ] {
        let answer = call(&app, Method::PUT, &path(&id, "/config"), key, Some(put.clone())).await;
        assert_eq!(
            (answer.status, answer.json()["type"].as_str()),
            (403, Some("permission_denied")),
            "{who}"
        );
        for action in ["/start", "/pause", "/resume", "/reset", "/keepalive"] {
            assert_eq!(
                call(&app, Method::POST, &path(&id, action), key, Some(json!({}))).await.status,
                403,
                "{who} {action}"
            );
        }
    }
    // Everyone in the org reads it, and is told whether it is theirs.
    let seen = call(&app, Method::GET, &path(&id, ""), &viewer, None).await;
    assert_eq!((seen.status, seen.json()["owned_by_me"].as_bool()), (200, Some(false)));
    let viewer_create = call(&app, Method::POST, RUNTIMES, &viewer, Some(json!({"key": "mine"}))).await;
    assert_eq!(viewer_create.status, 403);
    let answer = call(&app, Method::PUT, &path(&id, "/config"), &owner, Some(put)).await;
    assert_eq!((answer.status, answer.json()["config_version"].as_str()), (200, Some("2")));
    let mine = call(&app, Method::GET, &format!("{RUNTIMES}?owner=me"), &other, None).await.json();
    assert_eq!(mine["items"], json!([]));
}

async fn ensure_semantics(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let config = json!({"resources": {"cpu_cores": 4}});
    let first = create(&app, &key, json!({"key": "ensure", "config": config})).await;
    assert_eq!(first["created"], true);
    // The same key with an equal config (spelled differently): the existing runtime.
    let again = call(
        &app,
        Method::POST,
        RUNTIMES,
        &key,
        Some(json!({"key": "ensure", "config": {"version": "v2", "resources": {"memory_mb": 2048, "cpu_cores": 4}}})),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        (again.json()["id"].clone(), again.json()["created"].clone()),
        (first["id"].clone(), json!(false))
    );
    // A different durable config: conflict.
    let differs = call(&app, Method::POST, RUNTIMES, &key, Some(json!({"key": "ensure", "config": {}}))).await;
    assert_eq!(differs.status, 409, "{}", differs.text);
    assert_eq!(differs.json()["type"], "conflict");
    // A project without a key names the runtime after the project.
    let by_project = create(&app, &key, json!({"project": "recon"})).await;
    assert_eq!(
        (by_project["key"].as_str(), by_project["project_key"].as_str()),
        (Some("recon"), Some("recon"))
    );
    let twice = call(&app, Method::POST, RUNTIMES, &key, Some(json!({"project": "recon"}))).await;
    assert_eq!((twice.status, twice.json()["id"].clone()), (200, by_project["id"].clone()));
    // Bad fields of the create body are listed like the config's.
    let bad = call(
        &app,
        Method::POST,
        RUNTIMES,
        &key,
        Some(json!({"key": "", "nickname": "x", "config": {"resources": {"cpu_cores": 0}}})),
    )
    .await;
    let found = problems(&bad);
    assert!(
        has(&found, "body.key", "string_too_short") && has(&found, "body.nickname", "extra_forbidden"),
        "{found:?}"
    );
    assert!(has(&found, "body.config.resources.cpu_cores", "greater_than_equal"), "{found:?}");
}

async fn listing_pages_and_filters(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            create(&app, &key, json!({"key": format!("list-{n}")})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let started = call(&app, Method::POST, &path(&ids[0], "/start"), &key, Some(json!({}))).await;
    assert_eq!(started.status, 200, "{}", started.text);
    let first = call(&app, Method::GET, &format!("{RUNTIMES}?limit=2"), &key, None).await.json();
    let page: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, vec![ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = call(&app, Method::GET, &format!("{RUNTIMES}?limit=2&cursor={cursor}"), &key, None)
        .await
        .json();
    assert_eq!(second["items"][0]["id"], ids[0].as_str());
    assert_eq!(second["next_cursor"], Value::Null);
    let running = call(&app, Method::GET, &format!("{RUNTIMES}?state=running"), &key, None)
        .await
        .json();
    assert_eq!(running["items"].as_array().unwrap().len(), 1);
    let both = call(&app, Method::GET, &format!("{RUNTIMES}?state=idle,running&owner=me"), &key, None)
        .await
        .json();
    assert_eq!(both["items"].as_array().unwrap().len(), 3);
    for (query, loc) in [
        ("limit=0", "query.limit"),
        ("limit=101", "query.limit"),
        ("state=stopped", "query.state"),
        ("owner=you", "query.owner"),
    ] {
        let answer = call(&app, Method::GET, &format!("{RUNTIMES}?{query}"), &key, None).await;
        assert!(problems(&answer).iter().any(|(l, _)| l == loc), "{query}: {}", answer.text);
    }
}

async fn lifecycle_materializes_and_never_rebuilds(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let id = create(&app, &key, json!({"key": "life", "config": {"resources": {"cpu_cores": 3}}})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for action in ["/pause", "/resume", "/keepalive"] {
        let answer = call(&app, Method::POST, &path(&id, action), &key, Some(json!({}))).await;
        assert_eq!(
            (answer.status, answer.json()["type"].as_str()),
            (409, Some("conflict")),
            "{action} without a sandbox"
        );
    }
    let started = call(&app, Method::POST, &path(&id, "/start"), &key, Some(json!({}))).await.json();
    assert_eq!(started["status"], "running");
    let sandbox = started["instance"]["provider_sandbox_id"].as_str().unwrap().to_string();
    // The sandbox is named by its id, never by its directory on the server.
    assert_eq!(started["instance"]["sandbox_url"], format!("local://{sandbox}"));
    let dir = app.store.dir.path().join("sandboxes").join(&sandbox);
    let materialized: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(materialized["config"]["resources"]["cpu_cores"], 3);

    // A new config does not touch the running sandbox; it is reported stale.
    let put = call(
        &app,
        Method::PUT,
        &path(&id, "/config"),
        &key,
        Some(json!({"config": {"resources": {"cpu_cores": 8}}})),
    )
    .await
    .json();
    assert_eq!(put["materialization_stale"], true);
    let again = call(&app, Method::POST, &path(&id, "/start"), &key, Some(json!({}))).await.json();
    assert_eq!(
        again["instance"]["provider_sandbox_id"],
        sandbox.as_str(),
        "start on running never rebuilds"
    );
    assert_eq!(again["materialization_stale"], true);
    let still: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(still["config"]["resources"]["cpu_cores"], 3);

    let paused = call(&app, Method::POST, &path(&id, "/pause"), &key, None).await.json();
    assert_eq!(paused["status"], "paused");
    assert_eq!(std::fs::read_to_string(dir.join("state")).unwrap(), "paused");
    let resumed = call(&app, Method::POST, &path(&id, "/resume"), &key, None).await.json();
    assert_eq!(resumed["status"], "running");
    let before = chrono::DateTime::parse_from_rfc3339(resumed["expires_at"].as_str().unwrap()).unwrap();
    let kept = call(
        &app,
        Method::POST,
        &path(&id, "/keepalive"),
        &key,
        Some(json!({"extend_seconds": 120})),
    )
    .await
    .json();
    let after = chrono::DateTime::parse_from_rfc3339(kept["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((after - before).num_seconds(), 120);

    let reset = call(&app, Method::POST, &path(&id, "/reset"), &key, None).await.json();
    assert_eq!((reset["status"].as_str(), reset["instance"].is_null()), (Some("idle"), true));
    assert!(!dir.exists(), "reset kills the sandbox");
    let fresh = call(&app, Method::POST, &path(&id, "/start"), &key, Some(json!({}))).await.json();
    assert_ne!(fresh["instance"]["provider_sandbox_id"], sandbox.as_str());
    assert_eq!(fresh["materialization_stale"], false);
    let fresh_dir = app
        .store
        .dir
        .path()
        .join("sandboxes")
        .join(fresh["instance"]["provider_sandbox_id"].as_str().unwrap());
    let rebuilt: Value = serde_json::from_slice(&std::fs::read(fresh_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(rebuilt["config"]["resources"]["cpu_cores"], 8);

    // A sandbox whose directory vanished is unreachable: 502, and nothing recorded.
    std::fs::remove_dir_all(&fresh_dir).unwrap();
    let lost = call(&app, Method::POST, &path(&id, "/pause"), &key, None).await;
    assert_eq!((lost.status, lost.json()["type"].as_str()), (502, Some("bad_gateway")));
    assert_eq!(
        call(&app, Method::GET, &path(&id, ""), &key, None).await.json()["status"],
        "running"
    );
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = create(&app, &app.admin_key, json!({"key": "big"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let big = json!({"config": {"metadata": {"labels": {"blob": "x".repeat(1024 * 1024)}}}});
    let answer = call(&app, Method::PUT, &path(&id, "/config"), &app.admin_key, Some(big)).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["type"], "payload_too_large");
    assert_eq!(answer.json()["code"], 413);
}

async fn runtime_history_through_the_audit_api(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.admin_key.clone();
    let id = create(&app, &key, json!({"key": "audited", "config": {"resources": {"cpu_cores": 2}}})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        &app,
        Method::PUT,
        &path(&id, "/config"),
        &key,
        Some(json!({"config": {"resources": {"cpu_cores": 6}}})),
    )
    .await;
    let audit = format!("/api/v1/ledger/resources/runtime/{id}");
    let v1 = call(&app, Method::GET, &format!("{audit}?version=1"), &key, None).await.json();
    assert_eq!(v1["state"]["config_version"], "1");
    let recorded = v1["recorded_at"].as_str().unwrap().to_string();
    let as_of = call(
        &app,
        Method::GET,
        &format!("{audit}?as_of={}", recorded.replace('+', "%2B")),
        &key,
        None,
    )
    .await
    .json();
    assert_eq!(as_of["version"], 1);
    let diff = call(&app, Method::GET, &format!("{audit}/diff?from=1&to=2"), &key, None)
        .await
        .json();
    assert!(
        diff["summary"].as_array().unwrap().iter().any(|s| s == "changed /config_version"),
        "{diff}"
    );
    let restored = call(
        &app,
        Method::POST,
        &format!("{audit}/restore"),
        &key,
        Some(json!({"version": 1, "reason": "too big"})),
    )
    .await;
    assert_eq!(restored.status, 200, "{}", restored.text);
    let body = restored.json();
    assert_eq!(
        (body["config_version"].as_str(), body["runtime_id"].as_str()),
        (Some("3"), Some(id.as_str()))
    );
    let config = call(&app, Method::GET, &path(&id, "/config"), &key, None).await.json();
    assert_eq!(config["config"]["resources"]["cpu_cores"], 2);
    let revisions = call(&app, Method::GET, &format!("{audit}/revisions"), &key, None).await.json();
    let last = revisions["revisions"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["summary"].as_str().unwrap().starts_with("restored the config of version 1"),
        "{last}"
    );
    assert_eq!(last["revision"], 3);
    let verified = call(&app, Method::GET, &format!("{audit}/verify"), &key, None).await.json();
    assert_eq!(verified["ok"], true);
    // Rebuilding the runtime projection from the log, while serving, changes nothing.
    let out = app.store.cli(&["rebuild", "--projection", "runtime"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rebuilt = call(&app, Method::GET, &path(&id, "/config"), &key, None).await.json();
    assert_eq!(rebuilt, config);
}

both_backends!(
    put_config_normalizes_and_versions,
    put_config_lists_every_problem,
    tenancy_and_authentication,
    only_the_owner_changes_a_runtime,
    ensure_semantics,
    listing_pages_and_filters,
    lifecycle_materializes_and_never_rebuilds,
    oversized_bodies_are_refused,
    runtime_history_through_the_audit_api,
    rate_limits_answer_429_on_every_surface,
);

async fn rate_limits_answer_429_on_every_surface(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut serve = serve_settings();
    serve.rate_limit_per_sec = 1;
    serve.rate_limit_burst = 3;
    let app = spawn_configured(store, serve, vec![]).await;
    let key = app.admin_key.clone();
    for _ in 0..3 {
        assert_eq!(call(&app, Method::GET, RUNTIMES, &key, None).await.status, 200);
    }
    let runtimes = call(&app, Method::GET, RUNTIMES, &key, None).await;
    assert_eq!(runtimes.status, 429);
    let retry: u64 = runtimes.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(
        (runtimes.json()["code"].as_i64(), runtimes.json()["type"].as_str()),
        (Some(429), Some("rate_limited"))
    );
    // Same bucket, each surface's own envelope.
    let profiles = call(&app, Method::GET, "/api/v1/profiles", &key, None).await;
    assert_eq!(profiles.status, 429);
    assert!(profiles.json()["error"].as_str().unwrap().starts_with("Rate limit exceeded"));
    assert!(profiles.header("retry-after").is_some());
    let ledger = call(&app, Method::GET, "/api/v1/ledger/events", &key, None).await;
    assert_eq!(
        (ledger.status, ledger.header("content-type")),
        (429, Some("application/problem+json"))
    );
    // Another key has its own bucket.
    let other = app.store.create_key("default", "viewer");
    assert_eq!(call(&app, Method::GET, RUNTIMES, &other, None).await.status, 200);
}
