//! The recorded log: `tests/fixtures/log-v1.ndjson` holds events of every event type and
//! schema version of every stream type, exported (`fleetledger export --all`) from a server
//! that the generator below drove through its surfaces, and `log-v1.expected.json` every
//! read-model row folding them produced, and `log-v1.summaries.txt` each event's one-line
//! summary. Today's code must read that log into exactly that state and text, so renaming a
//! field that old events carry fails here instead of silently in someone's `rebuild`.
//!
//! Rules: the fixture is never edited, only extended. A new event type or schema version
//! appends lines recording it (and a stream type of its own appends its streams), and the
//! expected state changes in the same commit; the expected state changes otherwise only
//! when a read model's shape changes on purpose.
//!
//! Recording: `cargo nextest run --test api --run-ignored only -E 'test(record_log_fixture)'`
//! writes a fresh log and its state to `target/log-fixture/`. `log-v1` is such a recording,
//! made before the Hill90 and Mission Control board/agent events were typed, extended with
//! one gateway's stream from a later recording once gateway events reached version 2
//! (sealed tokens), and one instance's stream once `instance.updated` reached version 2
//! (paths without the merged config). A later recording is a source of whole streams to append (with global
//! positions renumbered to follow the fixture's; hashes do not cover them), never a
//! replacement.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use fleetledger::audit::Rebuilder;
use fleetledger::store::FoldEvent;
use fleetledger_events::chain::StreamVerifier;
use fleetledger_events::EventEnvelope;
use reqwest::Method;
use serde_json::{json, Value};

use crate::fake_gateway::{Behaviour, FakeGateway};
use crate::helpers::{call, serve_settings, spawn_configured, Backend, TestApp, TestStore};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

fn parse_log(text: &str) -> Vec<EventEnvelope> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {}: not an exported event: {e}", n + 1)))
        .collect()
}

fn recorded_log() -> Vec<EventEnvelope> {
    let path = fixtures().join("log-v1.ndjson");
    parse_log(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Every read-model row (models and lookups) the log folds into through the registry's
/// rebuild path, sorted by kind and id, as pretty JSON: each doc as its stored JSON (a
/// lookup's doc, which is a bare id, as a string).
fn folded_state(events: &[EventEnvelope]) -> String {
    let mut rebuilder = Rebuilder::default();
    for e in events {
        let fold = FoldEvent {
            global_position: e.global_position,
            stream_type: e.stream_type.clone(),
            stream_id: e.stream_id.clone(),
            stream_version: e.stream_version,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            data: serde_json::value::RawValue::from_string(e.data.to_string()).expect("JSON text"),
        };
        rebuilder
            .apply(&fold)
            .or_panic(&format!("{} {} v{}", e.event_type, e.stream_id, e.stream_version));
    }
    let mut rows = rebuilder.rows(&fleetledger::streams::names()).expect("rows");
    rows.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let doc = serde_json::from_str::<Value>(&r.doc).unwrap_or(Value::String(r.doc));
            json!({"kind": r.kind, "id": r.id, "org_id": r.org_id, "version": r.version, "doc": doc})
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("rows serialize") + "\n"
}

/// Each event's one-line summary (what revisions, `tail` and the feeds show), one a line.
fn summaries(events: &[EventEnvelope]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} v{} {}: {}\n",
                e.stream_type,
                e.stream_version,
                e.event_type,
                fleetledger::streams::summary(e)
            )
        })
        .collect()
}

trait OrPanic<T> {
    fn or_panic(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrPanic<T> for Result<T, E> {
    fn or_panic(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// What the log lacks: every `(stream type, event type, schema version)` the registry's
/// decoders read and no line records, and every stream type in the log nobody registered.
/// A fixture must hold every version from 1 to the current one; a fresh recording can only
/// hold current versions (`every_version` false).
fn missing_from(events: &[EventEnvelope], every_version: bool) -> Vec<String> {
    let recorded: BTreeSet<(&str, &str, i32)> = events
        .iter()
        .map(|e| (e.stream_type.as_str(), e.event_type.as_str(), e.schema_version))
        .collect();
    let mut missing = Vec::new();
    for stream in fleetledger::streams::all() {
        for (event_type, current) in stream.event_types() {
            let oldest = if every_version { 1 } else { *current };
            for version in oldest..=*current {
                if !recorded.contains(&(stream.name(), *event_type, version)) {
                    missing.push(format!("{} {event_type} v{version}", stream.name()));
                }
            }
        }
    }
    for (stream_type, _, _) in &recorded {
        if fleetledger::streams::get(stream_type).is_none() {
            missing.push(format!("stream type {stream_type} is not registered"));
        }
    }
    missing
}

/// Every line links to the one before it in its stream: the fixture is what was recorded.
fn assert_chained(events: &[EventEnvelope]) {
    let mut chains: HashMap<&str, StreamVerifier> = HashMap::new();
    for e in events {
        if let Err(bad) = chains.entry(e.stream_id.as_str()).or_default().check(e) {
            panic!("the recorded chain breaks at {} version {}", bad.stream, bad.version);
        }
    }
}

#[test]
fn the_recorded_log_covers_every_stream_and_event_type() {
    let events = recorded_log();
    assert_chained(&events);
    let missing = missing_from(&events, true);
    assert!(
        missing.is_empty(),
        "the log fixture lacks (record them and append, see tests/api/log_fixture.rs): {missing:#?}"
    );
}

#[test]
fn the_recorded_log_replays_into_the_recorded_state() {
    let path = fixtures().join("log-v1.expected.json");
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let actual = folded_state(&recorded_log());
    if actual != expected {
        let (want, got): (Vec<Value>, Vec<Value>) = (
            serde_json::from_str(&expected).expect("expected state is JSON"),
            serde_json::from_str(&actual).expect("state is JSON"),
        );
        for (w, g) in want.iter().zip(&got) {
            let (w, g) = (serde_json::to_string(w).unwrap(), serde_json::to_string(g).unwrap());
            assert_eq!(g, w, "the first read-model row that differs from the recorded state");
        }
        assert_eq!(got.len(), want.len(), "read-model rows");
        panic!("the replayed state differs from the recorded one only in layout");
    }
}

#[test]
fn the_recorded_log_reads_as_it_did() {
    let path = fixtures().join("log-v1.summaries.txt");
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let actual = summaries(&recorded_log());
    for (want, got) in expected.lines().zip(actual.lines()) {
        assert_eq!(got, want, "the first summary that differs from the recorded one");
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

#[test]
fn every_recorded_event_encodes_again_byte_for_byte() {
    let mut checked = 0;
    for e in recorded_log() {
        let stream = fleetledger::streams::get(&e.stream_type).expect("a registered stream type");
        let again = stream
            .reencode(&e)
            .or_panic(&format!("{} {} v{}", e.event_type, e.stream_id, e.stream_version));
        // An upcast event is written in its new shape: only current versions compare.
        if (again.event_type.as_str(), again.schema_version) != (e.event_type.as_str(), e.schema_version) {
            continue;
        }
        assert_eq!(
            again.data.to_string(),
            e.data.to_string(),
            "{} at {} v{} is not written as it was recorded",
            e.event_type,
            e.stream_id,
            e.stream_version
        );
        checked += 1;
    }
    assert!(checked > 0);
}

// ---- recording -----------------------------------------------------------------------------

async fn expect(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>, status: u16) -> Value {
    let answer = call(app, method.clone(), path, key, body).await;
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
    if answer.text.trim().is_empty() {
        Value::Null
    } else {
        answer.json()
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

/// Waits until the stream holds an event of `event_type` (a worker's outcome).
async fn wait_for_event(app: &TestApp, key: &str, stream_type: &str, id: &str, event_type: &str) {
    let path = format!("/api/v1/ledger/streams/{stream_type}/{id}");
    let mut kinds = Vec::new();
    for _ in 0..200 {
        let page = expect(app, Method::GET, &path, key, None, 200).await;
        kinds = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_string())
            .collect();
        if kinds.iter().any(|k| k == event_type) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{stream_type}/{id} never recorded {event_type}: {kinds:?}");
}

async fn wait_for_status(app: &TestApp, key: &str, id: &str, status: &str) {
    for _ in 0..200 {
        if expect(app, Method::GET, &format!("/v1/instances/{id}"), key, None, 200).await["status"] == status {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("instance {id} never became {status}");
}

fn cli_ok(store: &TestStore, args: &[&str]) -> String {
    let out = store.cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Instances (Chowder), in a signed-up org: a sandbox that cannot be made, a start, live
/// and stored config changes, a push that cannot reach the sandbox, a scoped key issued
/// and revoked, termination, and a sandbox that cannot be destroyed. First, while nothing
/// else has made a sandbox directory.
async fn record_instances(app: &TestApp) {
    let dir = app.store.dir.path();
    let signup = expect(
        app,
        Method::POST,
        "/v1/organization/signup",
        "",
        Some(json!({"name": "Fixture Co"})),
        201,
    )
    .await;
    let org = signup["api_key"].as_str().unwrap().to_string();
    std::fs::write(dir.join("sandboxes"), "not a directory").unwrap();
    let body = json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6",
                      "openclaw_config": {"agent": {"model": "a", "temperature": 0.5}}, "region": "eu-west"});
    let id = id_of(&expect(app, Method::POST, "/v1/instances", &org, Some(body), 201).await);
    wait_for_status(app, &org, &id, "error").await;
    std::fs::remove_file(dir.join("sandboxes")).unwrap();
    let path = format!("/v1/instances/{id}");
    expect(app, Method::POST, &format!("{path}/start"), &org, None, 200).await;
    wait_for_status(app, &org, &id, "running").await;
    let live = json!({"name": "assistant-2", "openclaw_config": {"agent": {"model": "b", "temperature": null}, "tools": {"web": true}}});
    expect(app, Method::PATCH, &path, &org, Some(live), 200).await;
    wait_for_event(app, &org, "instance", &id, "instance.config_applied").await;
    let scoped = json!({"name": "ci", "instance_ids": [id], "permissions": ["read", "configure"]});
    let key = expect(app, Method::POST, "/v1/keys", &org, Some(scoped), 201).await;
    expect(app, Method::DELETE, &format!("/v1/keys/{}", id_of(&key)), &org, None, 204).await;
    expect(app, Method::POST, &format!("{path}/stop"), &org, None, 200).await;
    expect(
        app,
        Method::PATCH,
        &path,
        &org,
        Some(json!({"openclaw_config": {"agent": {"model": "c"}}})),
        200,
    )
    .await;
    expect(app, Method::POST, &format!("{path}/start"), &org, None, 200).await;
    wait_for_status(app, &org, &id, "running").await;
    std::fs::remove_dir_all(dir.join("sandboxes").join(&id)).unwrap();
    expect(
        app,
        Method::PATCH,
        &path,
        &org,
        Some(json!({"openclaw_config": {"agent": {"x": 1}}})),
        502,
    )
    .await;
    wait_for_event(app, &org, "instance", &id, "instance.config_apply_failed").await;
    expect(app, Method::DELETE, &path, &org, None, 204).await;
    wait_for_event(app, &org, "instance", &id, "instance.sandbox_destroyed").await;
    // A sandbox that cannot be destroyed: a file where its directory was.
    let body = json!({"name": "leftover", "model_provider": "openai", "openclaw_version": "2026.9.6"});
    let left = id_of(&expect(app, Method::POST, "/v1/instances", &org, Some(body), 201).await);
    wait_for_status(app, &org, &left, "running").await;
    let sandbox = dir.join("sandboxes").join(&left);
    std::fs::remove_dir_all(&sandbox).unwrap();
    std::fs::write(&sandbox, "in the way").unwrap();
    expect(app, Method::DELETE, &format!("/v1/instances/{left}"), &org, None, 204).await;
    wait_for_event(app, &org, "instance", &left, "instance.destroy_failed").await;
}

/// Fleets and profiles (Fleeti): PUT, PATCH, an unchanged PUT, a restore with a reason,
/// and deletion.
async fn record_profiles(app: &TestApp) {
    app.create_fleet("fleet-a", "Fleet A").await;
    let id = app
        .create_profile(
            json!({"name": "Base", "description": "the base image", "fleet_ids": ["fleet-a"], "config": {"packages": ["vim"], "n": 1}}),
        )
        .await;
    let path = format!("/api/v1/profiles/{id}");
    let admin = app.admin_key.clone();
    expect(
        app,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"config": {"packages": ["git"], "n": 2}})),
        200,
    )
    .await;
    expect(
        app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"config": {"m": 3}, "raw_nix": "{ }"})),
        200,
    )
    .await;
    expect(app, Method::PATCH, &path, &admin, Some(json!({"config": {"m": 3}})), 200).await;
    let restore = json!({"version": 2, "reason": "roll back the rollout"});
    expect(
        app,
        Method::POST,
        &format!("/api/v1/ledger/resources/profile/{id}/restore"),
        &admin,
        Some(restore),
        200,
    )
    .await;
    expect(app, Method::DELETE, &path, &admin, None, 204).await;
}

/// Runtimes (Dreadnode): a config change, the whole lifecycle, and a restore.
async fn record_runtimes(app: &TestApp) {
    let base = "/api/v1/org/default/ws/default/runtimes";
    let admin = app.admin_key.clone();
    let body =
        json!({"key": "fixture", "name": "Fixture", "description": "recorded", "project": "p", "config": {"resources": {"cpu_cores": 3}}});
    let id = id_of(&expect(app, Method::POST, base, &admin, Some(body), 201).await);
    let path = format!("{base}/{id}");
    expect(
        app,
        Method::PUT,
        &format!("{path}/config"),
        &admin,
        Some(json!({"config": {"resources": {"cpu_cores": 4}}})),
        200,
    )
    .await;
    expect(app, Method::POST, &format!("{path}/start"), &admin, Some(json!({})), 200).await;
    expect(app, Method::POST, &format!("{path}/pause"), &admin, None, 200).await;
    expect(app, Method::POST, &format!("{path}/resume"), &admin, None, 200).await;
    expect(
        app,
        Method::POST,
        &format!("{path}/keepalive"),
        &admin,
        Some(json!({"extend_seconds": 120})),
        200,
    )
    .await;
    expect(app, Method::POST, &format!("{path}/reset"), &admin, None, 200).await;
    let restore = json!({"version": 1, "reason": "too big"});
    expect(
        app,
        Method::POST,
        &format!("/api/v1/ledger/resources/runtime/{id}/restore"),
        &admin,
        Some(restore),
        200,
    )
    .await;
}

/// Mission Control: gateways with and without a (plaintext) token, boards, and agents
/// through every outcome the reprovisioner records, on the local driver and on a fake
/// OpenClaw gateway.
async fn record_mission_control(app: &TestApp) {
    let admin = app.admin_key.clone();
    let gw = json!({"name": "edge", "url": "local", "token": "fixture-token", "workspace_root": "edge"});
    let gw = id_of(&expect(app, Method::POST, "/api/v1/gateways", &admin, Some(gw), 200).await);
    let renamed = json!({"name": "edge-1", "token": "fixture-token-2"});
    expect(app, Method::PATCH, &format!("/api/v1/gateways/{gw}"), &admin, Some(renamed), 200).await;
    let bare = json!({"name": "bare", "workspace_root": "/nowhere"});
    let bare = id_of(&expect(app, Method::POST, "/api/v1/gateways", &admin, Some(bare), 200).await);
    let spare = json!({"name": "spare", "url": "local", "workspace_root": "spare"});
    let spare = id_of(&expect(app, Method::POST, "/api/v1/gateways", &admin, Some(spare), 200).await);
    expect(app, Method::DELETE, &format!("/api/v1/gateways/{spare}"), &admin, None, 200).await;

    let board = json!({"name": "Finance Ops", "gateway_id": gw, "description": "Money", "objective": "Close the books"});
    let board = id_of(&expect(app, Method::POST, "/api/v1/boards", &admin, Some(board), 200).await);
    let board_change = json!({"name": "Finance", "slug": "finance", "description": null, "objective": "Close faster"});
    expect(
        app,
        Method::PATCH,
        &format!("/api/v1/boards/{board}"),
        &admin,
        Some(board_change),
        200,
    )
    .await;

    let agent = json!({"name": "Ops", "board_id": board, "soul_template": "calm", "identity_profile": {"role": "lead"}});
    let agent = id_of(&expect(app, Method::POST, "/api/v1/agents", &admin, Some(agent), 200).await);
    let path = format!("/api/v1/agents/{agent}");
    let change = json!({"name": "Ops 2", "status": "paused", "identity_profile": null, "identity_template": "I am {{ agent.name }}",
                        "heartbeat_config": {"every": "5m", "target": "last"}});
    expect(app, Method::PATCH, &path, &admin, Some(change), 200).await;
    expect(
        app,
        Method::POST,
        &format!("{path}/heartbeat"),
        &admin,
        Some(json!({"status": "active"})),
        200,
    )
    .await;
    // A template that cannot render is refused before anything is recorded.
    expect(
        app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"soul_template": "{{ agent.nickname }}"})),
        422,
    )
    .await;
    expect(app, Method::PATCH, &path, &admin, Some(json!({"soul_template": null})), 200).await;
    expect(app, Method::PATCH, &format!("{path}?force=true"), &admin, Some(json!({})), 200).await;
    expect(app, Method::PATCH, &path, &admin, Some(json!({"board_id": null})), 200).await;
    let quiet = json!({"name": "Quiet", "gateway_id": bare});
    let quiet = id_of(&expect(app, Method::POST, "/api/v1/agents", &admin, Some(quiet), 200).await);
    wait_for_event(app, &admin, "mc_agent", &quiet, "mc_agent.provision_skipped").await;

    let claw = FakeGateway::start(Behaviour {
        unsupported: vec!["USER.md".into()],
        ..Default::default()
    })
    .await;
    let gw2 = json!({"name": "claw", "url": claw.url, "token": "fixture-claw-token", "workspace_root": "/home/claw/.openclaw"});
    let gw2 = id_of(&expect(app, Method::POST, "/api/v1/gateways", &admin, Some(gw2), 200).await);
    let board2 = id_of(
        &expect(
            app,
            Method::POST,
            "/api/v1/boards",
            &admin,
            Some(json!({"name": "Claws", "gateway_id": gw2})),
            200,
        )
        .await,
    );
    let clawed = id_of(
        &expect(
            app,
            Method::POST,
            "/api/v1/agents",
            &admin,
            Some(json!({"name": "Claw", "board_id": board2})),
            200,
        )
        .await,
    );
    // A gateway that refuses the update, every try: recorded as failed (and parked).
    claw.set_behaviour(Behaviour {
        fail: vec![("agents.update".into(), "agent is locked".into())],
        ..Default::default()
    });
    expect(
        app,
        Method::PATCH,
        &format!("/api/v1/agents/{clawed}?force=true"),
        &admin,
        Some(json!({})),
        502,
    )
    .await;
    claw.set_behaviour(Behaviour::default());
    let heartbeat = json!({"heartbeat_config": {"every": "1m", "target": "last"}});
    expect(
        app,
        Method::PATCH,
        &format!("/api/v1/agents/{clawed}"),
        &admin,
        Some(heartbeat),
        200,
    )
    .await;
    wait_for_event(app, &admin, "mc_agent", &clawed, "mc_agent.heartbeat_synced").await;
    expect(app, Method::DELETE, &format!("/api/v1/agents/{clawed}"), &admin, None, 200).await;
    wait_for_event(app, &admin, "mc_agent", &clawed, "mc_agent.deprovisioned").await;
    expect(app, Method::DELETE, &format!("/api/v1/boards/{board2}"), &admin, None, 200).await;
}

fn shell_config(binaries: &[&str], timeout: i64) -> Value {
    json!({
        "shell": {"enabled": true, "allowed_binaries": binaries, "denied_patterns": ["rm -rf"], "max_timeout": timeout},
        "filesystem": {"enabled": true, "read_only": true, "allowed_paths": ["/workspace"], "denied_paths": []},
        "health": {"enabled": true}
    })
}

/// Container agents (Hill90): skills and a profile created, changed and deleted; agents
/// created with references, every kind of PUT change (set, cleared, via a policy, merged
/// tools, nothing), and every container outcome of the local driver.
async fn record_container_agents(app: &TestApp, member: &str) {
    let admin = app.admin_key.clone();
    let git = json!({"name": "git", "scope": "container_local", "tools_config": shell_config(&["git"], 120),
                     "tools": [{"name": "git", "description": "Git"}]});
    let git = id_of(&expect(app, Method::POST, "/skills", &admin, Some(git), 201).await);
    let docker = json!({"name": "docker", "scope": "host_docker", "tools_config": shell_config(&["docker"], 600)});
    let docker = id_of(&expect(app, Method::POST, "/skills", &admin, Some(docker), 201).await);
    let plain = id_of(&expect(app, Method::POST, "/skills", &admin, Some(json!({"name": "plain"})), 201).await);
    let skill_change = json!({"name": "git-tools", "scope": "vps_system", "tools_config": shell_config(&["git", "gh"], 300),
                              "tools": [{"name": "git"}, {"name": "gh", "description": "GitHub", "install_method": "apt"}]});
    expect(app, Method::PUT, &format!("/skills/{git}"), &admin, Some(skill_change), 200).await;
    expect(app, Method::PUT, &format!("/skills/{docker}"), &admin, Some(json!({})), 200).await;

    let profile = json!({"name": "big", "docker_image": "agentbox:big", "default_cpus": "2"});
    let profile = id_of(&expect(app, Method::POST, "/container-profiles", &admin, Some(profile), 201).await);
    let profile_change = json!({"name": "bigger", "description": "Big box", "docker_image": "agentbox:bigger", "default_cpus": "3",
                                "default_mem_limit": "2g", "default_pids_limit": 250});
    expect(
        app,
        Method::PUT,
        &format!("/container-profiles/{profile}"),
        &admin,
        Some(profile_change),
        200,
    )
    .await;

    let peer = json!({"agent_id": "peer", "name": "Peer", "model_names": ["gemini-2.5-pro"]});
    let peer = expect(app, Method::POST, "/agents", member, Some(peer), 201).await;
    let runner = json!({"agent_id": "runner", "name": "Runner", "soul_md": "hi", "container_profile_id": profile,
                        "skill_ids": [git, docker], "model_names": ["gpt-4.1", "claude-sonnet-4"], "autonomy_level": "ask_before_acting"});
    let runner = id_of(&expect(app, Method::POST, "/agents", &admin, Some(runner), 201).await);
    let path = format!("/agents/{runner}");
    let everything = json!({"name": "Runner 2", "description": "d", "cpus": "2", "mem_limit": "2g", "pids_limit": 100, "soul_md": "hello",
                            "rules_md": "be nice", "autonomy_level": "full_autonomy", "container_profile_id": null, "skill_ids": [],
                            "tools_config": {"health": {"enabled": false}}, "model_names": []});
    expect(app, Method::PUT, &path, &admin, Some(everything), 200).await;
    expect(
        app,
        Method::PUT,
        &path,
        &admin,
        Some(json!({"model_policy_id": peer["model_policy_id"]})),
        200,
    )
    .await;
    expect(app, Method::PUT, &path, &admin, Some(json!({"model_policy_id": null})), 200).await;
    let references = json!({"container_profile_id": profile, "skill_ids": [git, plain], "tools_config": {"ignored": true}});
    expect(app, Method::PUT, &path, &admin, Some(references), 200).await;
    expect(app, Method::PUT, &path, &admin, Some(json!({"name": ""})), 200).await;

    let containers = app.store.dir.path().join("containers");
    expect(app, Method::POST, &format!("{path}/start"), &admin, None, 200).await;
    expect(app, Method::POST, &format!("{path}/stop"), &admin, None, 200).await;
    expect(app, Method::POST, &format!("{path}/start"), &admin, None, 200).await;
    std::fs::remove_dir_all(containers.join(&runner)).unwrap();
    std::fs::write(containers.join(&runner), "in the way").unwrap();
    expect(app, Method::POST, &format!("{path}/stop"), &admin, None, 200).await;
    std::fs::remove_file(containers.join(&runner)).unwrap();
    std::fs::remove_dir_all(&containers).unwrap();
    std::fs::write(&containers, "not a directory").unwrap();
    let failed = expect(app, Method::POST, &format!("{path}/start"), &admin, None, 200).await;
    assert_eq!(failed["status"], "error");
    std::fs::remove_file(&containers).unwrap();
    expect(app, Method::DELETE, &path, &admin, None, 200).await;
    expect(app, Method::DELETE, &format!("/agents/{}", id_of(&peer)), &admin, None, 200).await;
    expect(app, Method::DELETE, &format!("/skills/{docker}"), &admin, None, 200).await;
    expect(app, Method::DELETE, &format!("/container-profiles/{profile}"), &admin, None, 200).await;
}

/// Drives a fresh SQLite-backed server (whose stored JSON keeps the key order the code
/// wrote) through every surface, exports its log with the real binary, and writes the log
/// and the state it folds into to `target/log-fixture/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records a new log fixture; run by hand, see the module docs"]
async fn record_log_fixture() {
    let store = TestStore::new(Backend::Sqlite).await.expect("sqlite");
    let mut serve = serve_settings();
    serve.allow_signup = true;
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    let app = spawn_configured(store, serve, workers).await;
    // The bootstrap created org `default` and the admin key; the CLI adds the rest of
    // the tenancy vocabulary.
    cli_ok(&app.store, &["workspaces", "create", "default", "staging", "--name", "Staging"]);
    let member = app.store.create_key("default", "member");
    cli_ok(
        &app.store,
        &[
            "keys",
            "create",
            "--org",
            "default",
            "--role",
            "viewer",
            "--name",
            "temp",
            "--expires-at",
            "2030-01-01T00:00:00Z",
        ],
    );
    record_instances(&app).await;
    record_profiles(&app).await;
    record_runtimes(&app).await;
    record_mission_control(&app).await;
    record_container_agents(&app, &member).await;
    // Let the workers finish anything still in flight before the log is read.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let store = app.stop();
    let log = cli_ok(&store, &["export", "--all"]);
    let events = parse_log(&log);
    assert_chained(&events);
    let missing = missing_from(&events, false);
    assert!(missing.is_empty(), "the recording lacks {missing:#?}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("log-fixture");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("log.ndjson"), &log).unwrap();
    std::fs::write(out.join("log.expected.json"), folded_state(&events)).unwrap();
    std::fs::write(out.join("log.summaries.txt"), summaries(&events)).unwrap();
    eprintln!("recorded {} events in {}", events.len(), out.display());
}
