//! The host is out of reach: a `local` Mission Control gateway's workspace root stays in
//! the data dir (or a root the operator allowed), gateway URLs never lead to link-local or
//! cloud metadata addresses (and only to the allow list when there is one), and the
//! workers check both again at the moment of the side effect. Every answer here goes
//! through `call`, which fails on any body naming the server's data dir.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::fake_gateway::{Behaviour, FakeGateway};
use crate::helpers::{call, default_org, serve_settings, spawn_configured, Answer, Backend, TestApp, TestStore};
use crate::mission_control::workspaces;

/// The server with the production workers and the given settings, on the log (no NATS),
/// so that it can be stopped and started again on the same store with other settings.
async fn serve(store: TestStore, tweak: impl FnOnce(&mut fleetledger::config::ServeSettings)) -> TestApp {
    let mut settings = serve_settings();
    tweak(&mut settings);
    let workers = fleetledger::workers::registry(store.dir.path(), &settings.drivers);
    spawn_configured(store, settings, workers).await
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Value) -> Value {
    let answer = call(app, method, path, &app.admin_key, Some(body)).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    answer.json()
}

/// Asserts a 422 in Mission Control's pydantic envelope naming `field`, and returns its message.
fn refused_field(answer: &Answer, field: &str, context: &str) -> String {
    assert_eq!(answer.status, 422, "{context}: {}", answer.text);
    let body = answer.json();
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{context}: {body}");
    let detail = body["detail"].as_array().unwrap_or_else(|| panic!("{context}: {body}"));
    let problem = detail
        .iter()
        .find(|d| d["loc"] == json!(["body", field]))
        .unwrap_or_else(|| panic!("{context}: no problem at {field}: {body}"));
    assert_eq!(problem["type"], "value_error", "{context}: {body}");
    let msg = problem["msg"].as_str().unwrap().to_string();
    assert!(msg.starts_with("Value error, "), "{context}: {msg}");
    msg
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn gateway_count(app: &TestApp) -> usize {
    ok(app, Method::GET, "/api/v1/gateways", Value::Null)
        .await
        .as_array()
        .unwrap()
        .len()
}

/// Creates an agent on `gateway` (as its main agent) and returns the answer.
async fn agent_on(app: &TestApp, gateway: &Value, name: &str) -> Answer {
    call(
        app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": name, "gateway_id": gateway["id"]})),
    )
    .await
}

async fn workspace_roots_stay_inside_the_data_dir(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let app = serve(store, |_| {}).await;
    let outside = tempfile::tempdir().unwrap();
    let outside_text = outside.path().to_str().unwrap().to_string();
    std::fs::create_dir_all(workspaces(&app, "")).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspaces(&app, "escape")).unwrap();
    let absolute_elsewhere = std::env::temp_dir().join(format!("fleetledger-escape-{}", uuid::Uuid::new_v4().simple()));
    let table: Vec<(String, &str)> = vec![
        (absolute_elsewhere.to_str().unwrap().to_string(), "relative name"),
        (format!("{outside_text}/claws"), "relative name"),
        ("/".into(), "relative name"),
        ("..".into(), "'..'"),
        ("../claws".into(), "'..'"),
        ("claws/../../claws".into(), "'..'"),
        ("escape".into(), "leads outside"),
        ("escape/deeper".into(), "leads outside"),
        (".".into(), "name a directory inside"),
        ("./".into(), "name a directory inside"),
    ];
    // Refused on create: nothing recorded.
    for (root, says) in &table {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/gateways",
            &app.admin_key,
            Some(json!({"name": "edge", "url": "local", "workspace_root": root})),
        )
        .await;
        let msg = refused_field(&answer, "workspace_root", root);
        assert!(msg.contains(says), "{root}: {msg}");
    }
    assert_eq!(gateway_count(&app).await, 0);

    // Refused on update too, including turning a remote gateway with a remote path local.
    let fine = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "local", "workspace_root": "teams/claws"}),
    )
    .await;
    let path = format!("/api/v1/gateways/{}", fine["id"].as_str().unwrap());
    for (root, says) in &table {
        let answer = call(&app, Method::PATCH, &path, &app.admin_key, Some(json!({"workspace_root": root}))).await;
        let msg = refused_field(&answer, "workspace_root", root);
        assert!(msg.contains(says), "{root}: {msg}");
    }
    let remote = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "claw", "url": "ws://127.0.0.1:18789/", "workspace_root": "/home/claw/.openclaw"}),
    )
    .await;
    let to_local = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/gateways/{}", remote["id"].as_str().unwrap()),
        &app.admin_key,
        Some(json!({"url": "local"})),
    )
    .await;
    refused_field(&to_local, "workspace_root", "ws → local");
    assert_eq!(ok(&app, Method::GET, &path, Value::Null).await["workspace_root"], "teams/claws");

    // The relative root is where the agent's workspace goes, and what the agent is told.
    let agent = agent_on(&app, &fine, "Inside").await;
    assert_eq!(agent.status, 200, "{}", agent.text);
    let agent = agent.json();
    let gateway_agent = agent["gateway_agent_id"].as_str().unwrap();
    assert_eq!(agent["workspace_path"], format!("teams/claws/workspace-{gateway_agent}"));
    let dir = workspaces(&app, "teams/claws").join(format!("workspace-{gateway_agent}"));
    assert!(std::fs::read_to_string(dir.join("AGENTS.md"))
        .unwrap()
        .contains(&format!("teams/claws/workspace-{gateway_agent}")));
    assert!(dir.join("SOUL.md").exists());

    // Nothing was made outside the data dir.
    assert_eq!(entries(outside.path()), Vec::<String>::new());
    assert!(!absolute_elsewhere.exists());
    // The history of the agent, as the ledger shows it, names no server path either.
    call(
        &app,
        Method::GET,
        &format!("/api/v1/ledger/streams/mc_agent/{}", agent["id"].as_str().unwrap()),
        &app.admin_key,
        None,
    )
    .await;
}

async fn a_root_that_becomes_a_link_is_refused_when_written(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let app = serve(store, |_| {}).await;
    let outside = tempfile::tempdir().unwrap();
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "local", "workspace_root": "later"}),
    )
    .await;
    let agent = agent_on(&app, &gateway, "Linked").await.json();
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    let id = agent["id"].as_str().unwrap();
    // After the request, someone with access to the data dir links the root elsewhere.
    std::fs::remove_dir_all(workspaces(&app, "later")).unwrap();
    std::os::unix::fs::symlink(outside.path(), workspaces(&app, "later")).unwrap();
    let forced = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}?force=true"),
        &app.admin_key,
        Some(json!({"soul_template": "moved"})),
    )
    .await;
    assert_eq!(forced.status, 502, "{}", forced.text);
    assert_eq!(
        forced.json()["detail"],
        "Gateway update failed: the agent's workspace is not allowed on this server: \
         workspace_root leads outside the directories this server may write to"
    );
    assert_eq!(
        entries(outside.path()),
        Vec::<String>::new(),
        "nothing was written through the link"
    );
}

async fn an_allowed_root_keeps_absolute_paths_until_it_is_no_longer_allowed(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let allowed = tempfile::tempdir().unwrap();
    let allowed_path = allowed.path().to_path_buf();
    let app = serve(store, |s| s.drivers.boundary.workspace_root_allow = vec![allowed_path.clone()]).await;
    let root = allowed.path().join("claws");
    let root_text = root.to_str().unwrap().to_string();
    // Outside the allowed root, or leaving it with `..`: refused.
    for bad in [format!("{root_text}/../../elsewhere"), "/srv/openclaw".to_string()] {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/gateways",
            &app.admin_key,
            Some(json!({"name": "edge", "url": "local", "workspace_root": bad})),
        )
        .await;
        refused_field(&answer, "workspace_root", &bad);
    }
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "local", "workspace_root": root_text}),
    )
    .await;
    let agent = agent_on(&app, &gateway, "Allowed").await.json();
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    let gateway_agent = agent["gateway_agent_id"].as_str().unwrap().to_string();
    // The operator chose this root: it is shown as it is.
    assert_eq!(agent["workspace_path"], format!("{root_text}/workspace-{gateway_agent}"));
    let dir = root.join(format!("workspace-{gateway_agent}"));
    assert!(dir.join("SOUL.md").exists());

    // The operator withdraws the root: provisioning fails, path-free, and writes nothing.
    let store = app.stop();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let app = serve(store, |_| {}).await;
    let id = agent["id"].as_str().unwrap();
    let forced = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}?force=true"),
        &app.admin_key,
        Some(json!({})),
    )
    .await;
    assert_eq!(forced.status, 502, "{}", forced.text);
    let detail = forced.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with(
            "Gateway update failed: the agent's workspace is not allowed on this server: workspace_root must be a relative name"
        ),
        "{detail}"
    );
    assert!(!detail.contains(&root_text), "{detail}");
    assert!(
        !dir.join("BOOTSTRAP.md").exists(),
        "a forced provisioning would have written BOOTSTRAP.md"
    );
    let listed = ok(&app, Method::GET, &format!("/api/v1/agents/{id}"), Value::Null).await;
    assert_eq!(listed["provision_state"], "failed");
}

async fn gateway_urls_never_lead_to_link_local_or_metadata_addresses(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let app = serve(store, |_| {}).await;
    let table = [
        ("ws://169.254.169.254/", "link-local or cloud metadata"),
        ("wss://169.254.169.254/latest/meta-data", "link-local or cloud metadata"),
        ("ws://2852039166/", "link-local or cloud metadata"),
        ("ws://[fe80::1]/", "link-local or cloud metadata"),
        ("ws://[fd00:ec2::254]/", "link-local or cloud metadata"),
        ("ws://[::ffff:169.254.169.254]/", "link-local or cloud metadata"),
        ("ws://0.0.0.0:18789/", "not a host address"),
        ("http://gw.example.com/", "ws://"),
        ("file:///etc/passwd", "ws://"),
        ("gw.example.com:18789", "ws://"),
        ("ws://user:pass@127.0.0.1:18789/", "must not carry credentials"),
        ("ws://token@gw.example.com/", "must not carry credentials"),
        ("ws://127.0.0.1:18789/?token=s3cret", "must not carry credentials"),
        ("wss://gw.example.com/#s3cret", "must not carry credentials"),
    ];
    for (url, says) in table {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/gateways",
            &app.admin_key,
            Some(json!({"name": "claw", "url": url, "workspace_root": "/home/claw"})),
        )
        .await;
        let msg = refused_field(&answer, "url", url);
        assert!(msg.contains(says), "{url}: {msg}");
    }
    assert_eq!(gateway_count(&app).await, 0);
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "claw", "url": "wss://gw.example.com:18789/", "workspace_root": "/home/claw"}),
    )
    .await;
    let path = format!("/api/v1/gateways/{}", gateway["id"].as_str().unwrap());
    for (url, says) in table {
        let answer = call(&app, Method::PATCH, &path, &app.admin_key, Some(json!({"url": url}))).await;
        let msg = refused_field(&answer, "url", url);
        assert!(msg.contains(says), "{url}: {msg}");
    }
    assert_eq!(
        ok(&app, Method::GET, &path, Value::Null).await["url"],
        "wss://gw.example.com:18789/"
    );
    // Loopback stays allowed: local gateways (and these tests) use it.
    ok(&app, Method::PATCH, &path, json!({"url": "ws://127.0.0.1:18789/"})).await;
    ok(&app, Method::PATCH, &path, json!({"url": "ws://localhost:18789/"})).await;
}

async fn the_gateway_allow_list_restricts_destinations_also_when_connecting(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let fake = FakeGateway::start(Behaviour::default()).await;
    // Named by a host name, so that only its resolved address can be checked, when connecting.
    let by_name = fake.url.replace("127.0.0.1", "localhost");
    // Without a list, the loopback gateway is provisioned.
    let app = serve(store, |_| {}).await;
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "claw", "url": by_name, "workspace_root": "/home/claw/.openclaw"}),
    )
    .await;
    let agent = agent_on(&app, &gateway, "Reached").await.json();
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    assert!(fake.take().iter().any(|(m, _)| m == "agents.create"));

    // The operator restricts gateways to 10.0.0.0/8 (and lists a metadata block, which
    // stays refused).
    let store = app.stop();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let app = serve(store, |s| {
        s.drivers.boundary.gateway_allow = vec!["10.0.0.0/8".parse().unwrap(), "169.254.0.0/16".parse().unwrap()]
    })
    .await;
    for (url, says) in [
        ("ws://127.0.0.1:18789/", "allow list"),
        ("ws://11.0.0.1:18789/", "allow list"),
        ("ws://169.254.169.254/", "link-local or cloud metadata"),
    ] {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/gateways",
            &app.admin_key,
            Some(json!({"name": "x", "url": url, "workspace_root": "/w"})),
        )
        .await;
        let msg = refused_field(&answer, "url", url);
        assert!(msg.contains(says), "{url}: {msg}");
    }
    ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        json!({"name": "inside", "url": "ws://10.20.30.40:18789/", "workspace_root": "/w"}),
    )
    .await;
    // The gateway recorded before the list is checked when the worker connects: its name
    // resolves to loopback, which the list does not hold; refused, and it hears nothing.
    let id = agent["id"].as_str().unwrap();
    let forced = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/agents/{id}?force=true"),
        &app.admin_key,
        Some(json!({})),
    )
    .await;
    assert_eq!(forced.status, 502, "{}", forced.text);
    assert_eq!(
        forced.json()["detail"],
        "Gateway update failed: the gateway is not allowed on this server: \
         the gateway's host is not in this server's gateway allow list"
    );
    assert_eq!(fake.methods(), Vec::<String>::new());
}

/// Two orgs naming the same relative root each get a directory of their own: neither sees,
/// nor can name, the other's agents' workspaces.
async fn orgs_naming_the_same_root_keep_their_workspaces_apart(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let app = serve(store, |_| {}).await;
    app.store.create_org("rival");
    let rival_key = app.store.create_key("rival", "admin");
    let mut dirs = vec![];
    for (key, org) in [
        (&app.admin_key, default_org()),
        (&rival_key, fleetledger::domain::org::org_id_for_slug("rival").to_string()),
    ] {
        let gateway = call(
            &app,
            Method::POST,
            "/api/v1/gateways",
            key,
            Some(json!({"name": "edge", "url": "local", "workspace_root": "team"})),
        )
        .await;
        assert_eq!(gateway.status, 200, "{}", gateway.text);
        let agent = call(
            &app,
            Method::POST,
            "/api/v1/agents",
            key,
            Some(json!({"name": "Same", "gateway_id": gateway.json()["id"]})),
        )
        .await;
        assert_eq!(agent.status, 200, "{}", agent.text);
        let agent = agent.json();
        assert_eq!(agent["provision_state"], "provisioned", "{agent}");
        let leaf = format!("workspace-{}", agent["gateway_agent_id"].as_str().unwrap());
        // What the agent is told is the root it named; where it lies is the org's own.
        assert_eq!(agent["workspace_path"], format!("team/{leaf}"));
        let root = app.store.dir.path().join("workspaces").join(org).join("team");
        assert_eq!(entries(&root), vec![leaf.clone()], "only this org's agent");
        assert!(root.join(&leaf).join("SOUL.md").exists());
        dirs.push(root);
    }
    assert_ne!(dirs[0], dirs[1]);
    // A link in one org's tree into the other's is an escape like any other: refused when
    // named, and nothing of the other org's is touched.
    std::os::unix::fs::symlink(&dirs[1], dirs[0].join("peek")).unwrap();
    let before = entries(&dirs[1]);
    let gateway = call(
        &app,
        Method::POST,
        "/api/v1/gateways",
        &app.admin_key,
        Some(json!({"name": "peek", "url": "local", "workspace_root": "team/peek"})),
    )
    .await;
    let msg = refused_field(&gateway, "workspace_root", "team/peek");
    assert!(msg.contains("leads outside"), "{msg}");
    assert_eq!(entries(&dirs[1]), before);
}

both_backends!(
    orgs_naming_the_same_root_keep_their_workspaces_apart,
    workspace_roots_stay_inside_the_data_dir,
    a_root_that_becomes_a_link_is_refused_when_written,
    an_allowed_root_keeps_absolute_paths_until_it_is_no_longer_allowed,
    gateway_urls_never_lead_to_link_local_or_metadata_addresses,
    the_gateway_allow_list_restricts_destinations_also_when_connecting,
);
