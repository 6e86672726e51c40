//! The container agents surface (Hill90-compatible): roles, skills, container profiles,
//! the PUT /agents/{id} rules, start/stop with the local container driver, and history.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{call, spawn_app, Backend, TestApp};

async fn expect(app: &TestApp, method: Method, path: &str, key: &str, body: Value, status: u16) -> Value {
    let body = if body.is_null() { None } else { Some(body) };
    let answer = call(app, method.clone(), path, key, body).await;
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
    answer.json()
}

fn shell_config(enabled: bool, binaries: &[&str], timeout: i64) -> Value {
    json!({
        "shell": {"enabled": enabled, "allowed_binaries": binaries, "denied_patterns": [], "max_timeout": timeout},
        "filesystem": {"enabled": true, "read_only": true, "allowed_paths": ["/workspace"], "denied_paths": []},
        "health": {"enabled": true}
    })
}

async fn skill(app: &TestApp, name: &str, scope: &str, config: Value) -> String {
    let body = json!({"name": name, "scope": scope, "tools_config": config, "tools": [{"name": "git", "description": "Git"}]});
    expect(app, Method::POST, "/skills", &app.admin_key, body, 201).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn roles_and_visibility(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let alice = app.store.create_key("default", "member");
    let bob = app.store.create_key("default", "member");
    let viewer = app.store.create_key("default", "viewer");
    let agent = expect(
        &app,
        Method::POST,
        "/agents",
        &alice,
        json!({"agent_id": "alice-bot", "name": "Alice's bot"}),
        201,
    )
    .await;
    let id = agent["id"].as_str().unwrap().to_string();
    assert_eq!(
        (agent["principal_id"].as_str(), agent["principal_type"].as_str()),
        (Some(id.as_str()), Some("agent"))
    );
    for (field, value) in [
        ("cpus", json!("1.0")),
        ("mem_limit", json!("1g")),
        ("pids_limit", json!(200)),
        ("status", json!("stopped")),
        ("autonomy_level", json!("act_within_scope")),
    ] {
        assert_eq!(agent[field], value, "{field}");
    }
    assert_eq!(
        agent["tools_config"]["filesystem"]["allowed_paths"],
        json!(["/workspace", "/home/agentuser"])
    );
    let path = format!("/agents/{id}");
    // Bob and a viewer do not see Alice's agent; the admin does.
    assert_eq!(
        call(&app, Method::GET, &path, &bob, None).await.json(),
        json!({"error": "Agent not found"})
    );
    assert_eq!(call(&app, Method::PUT, &path, &bob, Some(json!({"name": "x"}))).await.status, 404);
    assert_eq!(call(&app, Method::GET, &path, &viewer, None).await.status, 404);
    assert_eq!(expect(&app, Method::GET, "/agents", &bob, Value::Null, 200).await, json!([]));
    assert_eq!(
        expect(&app, Method::GET, "/agents", &app.admin_key, Value::Null, 200)
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        call(&app, Method::POST, "/agents", &viewer, Some(json!({"agent_id": "v", "name": "v"})))
            .await
            .status,
        403
    );
    // Start, stop and delete are the admin's.
    for action in ["/start", "/stop"] {
        let a = call(&app, Method::POST, &format!("{path}{action}"), &alice, None).await;
        assert_eq!((a.status, a.json()), (403, json!({"error": "Requires admin role"})), "{action}");
    }
    assert_eq!(call(&app, Method::DELETE, &path, &alice, None).await.status, 403);
    // Skills and profiles: everyone reads, the admin writes.
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/skills",
            &alice,
            Some(json!({"name": "s", "scope": "container_local"}))
        )
        .await
        .status,
        403
    );
    assert_eq!(expect(&app, Method::GET, "/skills", &viewer, Value::Null, 200).await, json!([]));
    // Creating: the slug rule and uniqueness.
    let bad = call(
        &app,
        Method::POST,
        "/agents",
        &alice,
        Some(json!({"agent_id": "Bad_Slug", "name": "x"})),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        call(&app, Method::POST, "/agents", &alice, Some(json!({"agent_id": "ok"})))
            .await
            .json(),
        json!({"error": "name is required"})
    );
    let dup = call(
        &app,
        Method::POST,
        "/agents",
        &bob,
        Some(json!({"agent_id": "alice-bot", "name": "again"})),
    )
    .await;
    assert_eq!(
        (dup.status, dup.json()),
        (409, json!({"error": "An agent with this agent_id already exists"}))
    );
    assert_eq!(
        expect(&app, Method::DELETE, &path, &app.admin_key, Value::Null, 200).await,
        json!({"deleted": true})
    );
}

async fn put_agent_rules(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let member = app.store.create_key("default", "member");
    let local = skill(&app, "git", "container_local", shell_config(true, &["git"], 120)).await;
    let other = skill(&app, "curl", "container_local", shell_config(false, &["curl"], 600)).await;
    let docker = skill(&app, "docker", "host_docker", shell_config(true, &["docker"], 60)).await;
    let profile = expect(
        &app,
        Method::POST,
        "/container-profiles",
        &app.admin_key,
        json!({"name": "big", "docker_image": "agentbox:big", "default_cpus": "2"}),
        201,
    )
    .await;
    let agent = expect(
        &app,
        Method::POST,
        "/agents",
        &member,
        json!({"agent_id": "worker", "name": "Worker", "description": "d"}),
        201,
    )
    .await;
    let path = format!("/agents/{}", agent["id"].as_str().unwrap());
    let put = |body: Value| {
        let app = &app;
        let member = member.clone();
        let path = path.clone();
        async move { call(app, Method::PUT, &path, &member, Some(body)).await }
    };
    for (body, error) in [
        (
            json!({"tool_preset_id": "x"}),
            "tool_preset_id is deprecated. Use skill_ids instead.",
        ),
        (
            json!({"autonomy_level": "yolo"}),
            "autonomy_level must be one of: ask_before_acting, act_within_scope, full_autonomy",
        ),
        (json!({"skill_ids": "a"}), "skill_ids must be an array"),
        (json!({"model_names": "gpt-4.1"}), "model_names must be an array"),
        (
            json!({"model_names": [], "model_policy_id": null}),
            "Use either model_names or model_policy_id, not both",
        ),
        (
            json!({"model_policy_id": "00000000-0000-0000-0000-000000000000"}),
            "Model policy not found",
        ),
        (
            json!({"container_profile_id": "00000000-0000-0000-0000-000000000000"}),
            "Container profile not found",
        ),
        (
            json!({"skill_ids": ["00000000-0000-0000-0000-000000000000"]}),
            "One or more skills not found",
        ),
        (json!({"model_names": ["gpt-9"]}), "Unknown model names: gpt-9"),
    ] {
        let a = put(body.clone()).await;
        assert_eq!((a.status, a.json()), (400, json!({ "error": error })), "{body}");
    }
    for body in [
        json!({"cpus": "0"}),
        json!({"cpus": "4.5"}),
        json!({"cpus": "two"}),
        json!({"mem_limit": "17g"}),
        json!({"mem_limit": "1t"}),
        json!({"pids_limit": 0}),
        json!({"pids_limit": 301}),
        json!({"pids_limit": "9"}),
    ] {
        assert_eq!(put(body.clone()).await.status, 400, "{body}");
    }
    let a = put(json!({"skill_ids": [docker]})).await;
    assert_eq!(a.status, 403, "a member may not assign a host_docker skill: {}", a.text);

    // Partial update: empty strings leave name/cpus/mem/autonomy, clear the text fields.
    let updated = put(json!({"name": "", "cpus": "", "description": "", "soul_md": "be calm", "pids_limit": 50, "container_profile_id": profile["id"], "model_names": ["gpt-4.1", "claude-sonnet-4"]})).await.json();
    assert_eq!(
        (updated["name"].as_str(), updated["cpus"].as_str(), updated["description"].as_str()),
        (Some("Worker"), Some("1.0"), Some(""))
    );
    assert_eq!(
        (updated["soul_md"].as_str(), updated["pids_limit"].as_i64()),
        (Some("be calm"), Some(50))
    );
    assert_eq!(
        updated["container_profile"],
        json!({"id": profile["id"], "name": "big", "docker_image": "agentbox:big"})
    );
    assert_eq!(updated["models"], json!(["gpt-4.1", "claude-sonnet-4"]));
    let policy = updated["model_policy_id"].clone();
    assert!(policy.is_string());
    // Skills decide the tools config (a body tools_config is then ignored).
    let merged = put(json!({"skill_ids": [local, other], "tools_config": {"ignored": true}}))
        .await
        .json();
    assert_eq!(
        merged["tools_config"]["shell"],
        json!({"enabled": true, "allowed_binaries": ["git", "curl"], "denied_patterns": [], "max_timeout": 600})
    );
    assert_eq!(merged["skills"].as_array().unwrap().len(), 2);
    assert_eq!(merged["skills"][0]["tools"][0]["name"], "git");
    // Detaching keeps the config; an explicit config replaces it.
    let detached = put(json!({"skill_ids": []})).await.json();
    assert_eq!(
        (detached["skills"].clone(), detached["tools_config"].clone()),
        (json!([]), merged["tools_config"].clone())
    );
    let custom = put(json!({"tools_config": {"health": {"enabled": false}}})).await.json();
    assert_eq!(custom["tools_config"], json!({"health": {"enabled": false}}));
    // Clearing: null profile, [] models.
    let cleared = put(json!({"container_profile_id": null, "model_names": []})).await.json();
    assert_eq!(
        (
            cleared["container_profile"].clone(),
            cleared["models"].clone(),
            cleared["model_policy_id"].clone()
        ),
        (Value::Null, json!([]), Value::Null)
    );
    // An existing policy may be named instead of model names.
    let other_agent = expect(
        &app,
        Method::POST,
        "/agents",
        &member,
        json!({"agent_id": "peer", "name": "Peer", "model_names": ["gemini-2.5-pro"]}),
        201,
    )
    .await;
    let via_policy = put(json!({"model_policy_id": other_agent["model_policy_id"]})).await.json();
    assert_eq!(via_policy["models"], json!(["gemini-2.5-pro"]));

    // Every PUT is one event with exactly the changed fields, even when nothing changed.
    let events = expect(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/streams/container_agent/{}", agent["id"].as_str().unwrap()),
        &app.admin_key,
        Value::Null,
        200,
    )
    .await;
    let before = events["events"].as_array().unwrap().len();
    put(json!({"name": ""})).await;
    let events = expect(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/streams/container_agent/{}", agent["id"].as_str().unwrap()),
        &app.admin_key,
        Value::Null,
        200,
    )
    .await;
    let all = events["events"].as_array().unwrap();
    assert_eq!(all.len(), before + 1);
    assert_eq!(all.last().unwrap()["data"]["changes"], json!({}));
    let detach_event = all
        .iter()
        .find(|e| e["data"]["changes"].get("skill_ids") == Some(&json!([])))
        .unwrap();
    assert_eq!(
        detach_event["data"]["changes"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["skill_ids"]
    );
    let _ = policy;
}

async fn start_and_stop_with_the_local_driver(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let profile = expect(
        &app,
        Method::POST,
        "/container-profiles",
        &app.admin_key,
        json!({"name": "p", "docker_image": "agentbox:1"}),
        201,
    )
    .await;
    let agent = expect(
        &app,
        Method::POST,
        "/agents",
        &app.admin_key,
        json!({"agent_id": "runner", "name": "Runner", "soul_md": "hi", "container_profile_id": profile["id"]}),
        201,
    )
    .await;
    let id = agent["id"].as_str().unwrap().to_string();
    let path = format!("/agents/{id}");
    let started = expect(&app, Method::POST, &format!("{path}/start"), &app.admin_key, Value::Null, 200).await;
    assert_eq!(started["status"], "running");
    let container = started["container_id"].as_str().unwrap().to_string();
    let dir = app.store.dir.path().join("containers").join(&id);
    let written: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        (written["image"].as_str(), written["config"]["soul_md"].as_str()),
        (Some("agentbox:1"), Some("hi"))
    );
    assert_eq!(written["container_id"], container.as_str());
    let refused = call(&app, Method::PUT, &path, &app.admin_key, Some(json!({"name": "x"}))).await;
    assert_eq!(
        (refused.status, refused.json()),
        (409, json!({"error": "Cannot update a running agent. Stop it first."}))
    );
    // A profile in use cannot be deleted.
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("/container-profiles/{}", profile["id"].as_str().unwrap()),
            &app.admin_key,
            None
        )
        .await
        .status,
        409
    );
    let stopped = expect(&app, Method::POST, &format!("{path}/stop"), &app.admin_key, Value::Null, 200).await;
    assert_eq!(
        (stopped["status"].as_str(), stopped["container_id"].clone()),
        (Some("stopped"), Value::Null)
    );
    assert!(!dir.exists(), "stop removes the container");

    // A removal that fails still stops the agent, and the failure is in the history.
    expect(&app, Method::POST, &format!("{path}/start"), &app.admin_key, Value::Null, 200).await;
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    let stopped = expect(&app, Method::POST, &format!("{path}/stop"), &app.admin_key, Value::Null, 200).await;
    assert_eq!(stopped["status"], "stopped");
    let revisions = expect(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/resources/container_agent/{id}/revisions"),
        &app.admin_key,
        Value::Null,
        200,
    )
    .await;
    let last = revisions["revisions"].as_array().unwrap().last().unwrap()["summary"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.starts_with("stopped; the container could not be removed"), "{last}");

    // A container that cannot be made: status error with the reason.
    std::fs::remove_file(&dir).unwrap();
    std::fs::remove_dir_all(app.store.dir.path().join("containers")).unwrap();
    std::fs::write(app.store.dir.path().join("containers"), "not a directory").unwrap();
    let failed = expect(&app, Method::POST, &format!("{path}/start"), &app.admin_key, Value::Null, 200).await;
    assert_eq!(failed["status"], "error");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("cannot create the agent's container directory: not a directory"),
        "{failed}"
    );

    // History through the audit API.
    let v1 = expect(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/resources/container_agent/{id}?version=1"),
        &app.admin_key,
        Value::Null,
        200,
    )
    .await;
    assert_eq!(
        (v1["state"]["status"].as_str(), v1["state"]["soul_md"].as_str()),
        (Some("stopped"), Some("hi"))
    );
    let diff = expect(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/resources/container_agent/{id}/diff?from=1&to=2"),
        &app.admin_key,
        Value::Null,
        200,
    )
    .await;
    assert!(diff["summary"].as_array().unwrap().iter().any(|s| s == "changed /status"), "{diff}");
}

async fn skills_and_profiles_are_admin_managed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = skill(&app, "fs", "container_local", shell_config(false, &[], 300)).await;
    let path = format!("/skills/{id}");
    let bad_scope = call(&app, Method::PUT, &path, &app.admin_key, Some(json!({"scope": "everywhere"}))).await;
    assert_eq!(bad_scope.status, 400);
    let renamed = expect(
        &app,
        Method::PUT,
        &path,
        &app.admin_key,
        json!({"name": "filesystem", "scope": "vps_system"}),
        200,
    )
    .await;
    assert_eq!(
        (renamed["name"].as_str(), renamed["scope"].as_str()),
        (Some("filesystem"), Some("vps_system"))
    );
    assert_eq!(renamed["tools"][0]["install_method"], "builtin");
    let bad_profile = call(
        &app,
        Method::POST,
        "/container-profiles",
        &app.admin_key,
        Some(json!({"name": "p", "docker_image": "i", "default_cpus": "9"})),
    )
    .await;
    assert_eq!(bad_profile.status, 400);
    let profile = expect(
        &app,
        Method::POST,
        "/container-profiles",
        &app.admin_key,
        json!({"name": "p", "docker_image": "img:1"}),
        201,
    )
    .await;
    let profile_path = format!("/container-profiles/{}", profile["id"].as_str().unwrap());
    let changed = expect(
        &app,
        Method::PUT,
        &profile_path,
        &app.admin_key,
        json!({"docker_image": "img:2", "default_pids_limit": 50}),
        200,
    )
    .await;
    assert_eq!(
        (
            changed["docker_image"].as_str(),
            changed["default_pids_limit"].as_i64(),
            changed["default_mem_limit"].as_str()
        ),
        (Some("img:2"), Some(50), Some("1g"))
    );
    assert_eq!(
        expect(&app, Method::DELETE, &profile_path, &app.admin_key, Value::Null, 200).await,
        json!({"deleted": true})
    );
    assert_eq!(
        expect(&app, Method::DELETE, &path, &app.admin_key, Value::Null, 200).await,
        json!({"deleted": true})
    );
    assert_eq!(
        call(&app, Method::GET, &path, &app.admin_key, None).await.json(),
        json!({"error": "Skill not found"})
    );
}

both_backends!(
    roles_and_visibility,
    put_agent_rules,
    start_and_stop_with_the_local_driver,
    skills_and_profiles_are_admin_managed
);
