//! The web console in a real browser: Chromium (Debian's `chromium`, `/usr/bin/chromium`)
//! driven by Playwright for Python (`tests/console/console_browser.py`) against the real
//! server, filled through the five surfaces' APIs. Needs `FLEETLEDGER_TEST_PLAYWRIGHT`, a
//! python with Playwright (`tests/console/setup.sh` makes one). Under `CI` a missing
//! browser or Playwright fails the test; elsewhere it says it was skipped.
//!
//! With `FLEETLEDGER_CONSOLE_SCREENSHOTS=<dir>` one run (PostgreSQL with NATS when NATS is
//! configured, else SQLite) also writes the README's screenshots there:
//! `FLEETLEDGER_CONSOLE_SCREENSHOTS=docs cargo nextest run --test api console_browser`.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_configured, Backend, TestApp, TestNats, TestStore};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The python with Playwright, when it and Chromium are here.
fn playwright() -> Option<String> {
    let python = std::env::var("FLEETLEDGER_TEST_PLAYWRIGHT").ok().filter(|p| !p.is_empty());
    let chromium = std::path::Path::new(CHROMIUM).exists();
    match (python, chromium) {
        (Some(python), true) => Some(python),
        (python, _) if std::env::var_os("CI").is_some() => panic!(
            "CI must provide {CHROMIUM} (apt-get install chromium) and FLEETLEDGER_TEST_PLAYWRIGHT (tests/console/setup.sh); \
             have python {python:?}, chromium {chromium}"
        ),
        _ => {
            eprintln!("skipped: the console browser test needs {CHROMIUM} and FLEETLEDGER_TEST_PLAYWRIGHT (see tests/console/setup.sh)");
            None
        }
    }
}

async fn ok(app: &TestApp, method: Method, path: &str, key: &str, body: Value) -> Value {
    let answer = call(app, method, path, key, Some(body)).await;
    assert!((200..300).contains(&answer.status), "{path}: {} {}", answer.status, answer.text);
    answer.json()
}

fn key_named(app: &TestApp, role: &str, name: &str) -> String {
    let out = app
        .store
        .cli(&["keys", "create", "--org", "default", "--role", role, "--name", name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn the_console_works_in_a_real_browser(backend: Backend) {
    let Some(python) = playwright() else { return };
    let Some(store) = TestStore::new(backend).await else { return };
    // PostgreSQL runs with NATS, so the feed's badge shows a relay.
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    let mut serve = serve_settings();
    if let Some(nats) = &nats {
        serve.bus = nats.bus();
    }
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    let app = spawn_configured(store, serve, workers).await;
    let admin = app.admin_key.clone();
    let member = key_named(&app, "member", "alice");
    let viewer = key_named(&app, "viewer", "victor");

    // A profile with five versions by two keys.
    let profile = app.create_profile(json!({"name": "Production Base"})).await;
    let mut versions = vec![json!({"version": 1, "actor": "admin"})];
    for (version, (key, name, packages)) in [
        (&member, "alice", json!(["vim", "curl"])),
        (&admin, "admin", json!(["vim", "git"])),
        (&member, "alice", json!(["git"])),
        (&admin, "admin", json!(["git", "htop"])),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/api/v1/profiles/{profile}");
        ok(&app, Method::PUT, &path, key, json!({"config": {"packages": packages}})).await;
        versions.push(json!({"version": version + 2, "actor": name}));
    }
    let runtime = ok(
        &app,
        Method::POST,
        "/api/v1/org/default/ws/default/runtimes",
        &admin,
        json!({"key": "recon", "name": "Recon"}),
    )
    .await["id"]
        .clone();
    let token = format!("gw-token-{}", uuid::Uuid::new_v4().simple());
    let gateway = ok(
        &app,
        Method::POST,
        "/api/v1/gateways",
        &admin,
        json!({"name": "edge", "url": "local", "token": token, "workspace_root": "claws"}),
    )
    .await["id"]
        .clone();
    let board = ok(
        &app,
        Method::POST,
        "/api/v1/boards",
        &admin,
        json!({"name": "Ops", "gateway_id": gateway}),
    )
    .await["id"]
        .clone();
    let agent = ok(
        &app,
        Method::POST,
        "/api/v1/agents",
        &admin,
        json!({"name": "Ledger Lead", "board_id": board}),
    )
    .await["id"]
        .clone();
    let instance = ok(
        &app,
        Method::POST,
        "/v1/instances",
        &admin,
        json!({"name": "claw", "model_provider": "anthropic", "openclaw_version": "2026.9.6"}),
    )
    .await["id"]
        .clone();
    let hill90 = ok(
        &app,
        Method::POST,
        "/agents",
        &admin,
        json!({"agent_id": "researcher", "name": "Researcher"}),
    )
    .await["id"]
        .clone();

    // Taken once: with NATS when it is configured (the feed's badge then shows the relay).
    let shooting = match backend {
        Backend::Postgres => nats.is_some(),
        Backend::Sqlite => std::env::var_os("FLEETLEDGER_TEST_NATS").is_none(),
    };
    let screenshots = match std::env::var("FLEETLEDGER_CONSOLE_SCREENSHOTS") {
        Ok(dir) if shooting && !dir.is_empty() => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            std::fs::create_dir_all(&dir).expect("the screenshots' directory");
            Some(dir)
        }
        _ => None,
    };
    let args = json!({
        "base": app.url(""),
        "admin": admin,
        "member": member,
        "member_name": "alice",
        "viewer": viewer,
        "resources": {
            "profile": profile,
            "runtime": runtime,
            "mc_agent": agent,
            "instance": instance,
            "container_agent": hill90,
        },
        "gateway": gateway,
        "gateway_token": token,
        "versions": versions,
        "nats": nats.is_some(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/console_browser.py");
    // The server runs on this test's runtime; the browser blocks a thread of its own.
    let out = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(&python);
        command
            .arg(script)
            .arg(args.to_string())
            .env_remove("FLEETLEDGER_CONSOLE_SCREENSHOTS");
        if let Some(dir) = screenshots {
            command.env("FLEETLEDGER_CONSOLE_SCREENSHOTS", dir);
        }
        command.output()
    })
    .await
    .expect("the browser's thread")
    .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "the browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.assert_no_server_path(&stdout);
}

both_backends!(the_console_works_in_a_real_browser);
