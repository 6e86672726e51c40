//! The one write path, seen from every surface: `ETag` on reads and writes, a stale
//! `If-Match` refused with 412 in the surface's own envelope and nothing appended,
//! `Idempotency-Key` replaying the first answer byte for byte, the same key with another
//! body refused, concurrent requests with one key executed once, and unconditional
//! concurrent writers of one resource never refused.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_configured, Answer, Backend, HeadHold, TestApp, TestStore};

/// One resource of a surface and how to read and change it.
struct Target {
    name: &'static str,
    read: String,
    write_method: Method,
    write: String,
    /// A change that differs for every `n`.
    body: fn(usize) -> Value,
    stream_type: &'static str,
    stream_id: String,
    /// The error message of the surface's envelope, or `None` when the body is not it.
    message: fn(&Answer) -> Option<String>,
}

fn fleeti(a: &Answer) -> Option<String> {
    // Go's encoder: one field, a trailing newline.
    let v: Value = serde_json::from_str(a.text.strip_suffix('\n')?).ok()?;
    (v.as_object()?.len() == 1).then(|| v["error"].as_str().map(str::to_string))?
}

fn dreadnode(a: &Answer) -> Option<String> {
    let v: Value = serde_json::from_str(&a.text).ok()?;
    (v["code"] == a.status && v["type"].is_string()).then(|| v["detail"].as_str().map(str::to_string))?
}

fn fastapi(a: &Answer) -> Option<String> {
    let v: Value = serde_json::from_str(&a.text).ok()?;
    v["detail"].as_str().map(str::to_string)
}

fn mission_control(a: &Answer) -> Option<String> {
    let v: Value = serde_json::from_str(&a.text).ok()?;
    v["request_id"].as_str()?;
    v["detail"].as_str().map(str::to_string)
}

fn hill90(a: &Answer) -> Option<String> {
    let v: Value = serde_json::from_str(&a.text).ok()?;
    (v.as_object()?.len() == 1).then(|| v["error"].as_str().map(str::to_string))?
}

fn problem(a: &Answer) -> Option<String> {
    if a.header("content-type") != Some("application/problem+json") {
        return None;
    }
    let v: Value = serde_json::from_str(&a.text).ok()?;
    (v["status"] == a.status).then(|| v["detail"].as_str().map(str::to_string))?
}

async fn spawn(backend: Backend) -> Option<TestApp> {
    let store = TestStore::new(backend).await?;
    let serve = serve_settings();
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    Some(spawn_configured(store, serve, workers).await)
}

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let answer = call(app, Method::POST, path, &app.admin_key, Some(body)).await;
    assert!((200..300).contains(&answer.status), "{path}: {} {}", answer.status, answer.text);
    answer.json()
}

/// One resource on every surface (and the ledger's restore of a profile).
async fn targets(app: &TestApp) -> Vec<Target> {
    let profile = app.create_profile(json!({"name": "P", "config": {"n": 0}})).await;
    let runtimes = "/api/v1/org/default/ws/default/runtimes";
    let runtime = created(app, runtimes, json!({"key": "recon"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gateway = created(
        app,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "", "workspace_root": "edge"}),
    )
    .await;
    let agent = created(app, "/api/v1/agents", json!({"name": "Lead", "gateway_id": gateway["id"]})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let instance = created(
        app,
        "/v1/instances",
        json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The instance worker provisions it; its outcome events must be in before versions are compared.
    for _ in 0..400 {
        let read = call(app, Method::GET, &format!("/v1/instances/{instance}"), &app.admin_key, None).await;
        if read.json()["status"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let hill = created(app, "/agents", json!({"agent_id": "researcher", "name": "Researcher"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    vec![
        Target {
            name: "profiles",
            read: format!("/api/v1/profiles/{profile}"),
            write_method: Method::PUT,
            write: format!("/api/v1/profiles/{profile}"),
            body: |n| json!({"config": {"n": n + 1}}),
            stream_type: "profile",
            stream_id: profile.clone(),
            message: fleeti,
        },
        Target {
            name: "runtimes",
            read: format!("{runtimes}/{runtime}"),
            write_method: Method::PUT,
            write: format!("{runtimes}/{runtime}/config"),
            body: |n| json!({"config": {"sandbox": {"timeout_seconds": 600 + n}}}),
            stream_type: "runtime",
            stream_id: runtime,
            message: dreadnode,
        },
        Target {
            name: "mission control",
            read: format!("/api/v1/agents/{agent}"),
            write_method: Method::PATCH,
            write: format!("/api/v1/agents/{agent}"),
            body: |n| json!({"name": format!("Lead {n}")}),
            stream_type: "mc_agent",
            stream_id: agent,
            message: mission_control,
        },
        Target {
            name: "instances",
            read: format!("/v1/instances/{instance}"),
            write_method: Method::PATCH,
            write: format!("/v1/instances/{instance}"),
            body: |n| json!({"name": format!("assistant {n}")}),
            stream_type: "instance",
            stream_id: instance,
            message: fastapi,
        },
        Target {
            name: "container agents",
            read: format!("/agents/{hill}"),
            write_method: Method::PUT,
            write: format!("/agents/{hill}"),
            body: |n| json!({"description": format!("take {n}")}),
            stream_type: "container_agent",
            stream_id: hill,
            message: hill90,
        },
        Target {
            name: "ledger restore",
            read: format!("/api/v1/ledger/resources/profile/{profile}"),
            write_method: Method::POST,
            write: format!("/api/v1/ledger/resources/profile/{profile}/restore"),
            body: |n| json!({"version": 1, "reason": format!("take {n}")}),
            stream_type: "profile",
            stream_id: profile,
            message: problem,
        },
    ]
}

/// The events of a stream, through the ledger API.
async fn history(app: &TestApp, t: &Target) -> Vec<Value> {
    let answer = call(
        app,
        Method::GET,
        &format!("/api/v1/ledger/streams/{}/{}", t.stream_type, t.stream_id),
        &app.admin_key,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["events"].as_array().unwrap().clone()
}

fn etag_version(a: &Answer) -> Option<i64> {
    a.header("etag")?.trim_matches('"').parse().ok()
}

async fn send(app: &TestApp, t: &Target, body: Value, headers: &[(&str, String)]) -> Answer {
    let mut builder = app.admin(t.write_method.clone(), &t.write).json(&body);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    Answer::of(builder).await
}

async fn etags_and_if_match_on_every_surface(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    for t in targets(&app).await {
        let read = call(&app, Method::GET, &t.read, &app.admin_key, None).await;
        assert_eq!(read.status, 200, "{}: {}", t.name, read.text);
        let version = etag_version(&read).unwrap_or_else(|| panic!("{}: a read has an ETag: {:?}", t.name, read.headers));
        let before = history(&app, &t).await.len() as i64;
        assert_eq!(version, before, "{}: the ETag is the stream version", t.name);

        let stale = send(&app, &t, (t.body)(1), &[("if-match", format!("\"{}\"", version - 1))]).await;
        assert_eq!(stale.status, 412, "{}: {}", t.name, stale.text);
        assert_eq!(
            (t.message)(&stale).as_deref(),
            Some("Precondition failed"),
            "{}: 412 in the surface's envelope: {}",
            t.name,
            stale.text
        );
        assert_eq!(history(&app, &t).await.len() as i64, before, "{}: nothing appended", t.name);

        let fresh = send(&app, &t, (t.body)(2), &[("if-match", format!("\"{version}\""))]).await;
        assert_eq!(fresh.status, 200, "{}: {}", t.name, fresh.text);
        let after = etag_version(&fresh).unwrap_or_else(|| panic!("{}: a write has an ETag", t.name));
        assert!(after > version, "{}: the write's ETag names its new version", t.name);
        assert_eq!(history(&app, &t).await.len() as i64, after, "{}", t.name);

        // RFC 9110: If-Match compares strongly (a weak tag never matches) and a list
        // matches when any of its tags does.
        let weak = send(&app, &t, (t.body)(4), &[("if-match", format!("W/\"{after}\""))]).await;
        assert_eq!(weak.status, 412, "{}: a weak tag never matches: {}", t.name, weak.text);
        let listed = send(&app, &t, (t.body)(5), &[("if-match", format!("\"{}\", \"{after}\"", after - 1))]).await;
        assert_eq!(
            listed.status, 200,
            "{}: a list with the current tag matches: {}",
            t.name, listed.text
        );

        let any = send(&app, &t, (t.body)(3), &[("if-match", "*".into())]).await;
        assert_eq!(any.status, 200, "{}: If-Match: * keeps writing: {}", t.name, any.text);
    }
}

async fn idempotency_keys_on_every_surface(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    for t in targets(&app).await {
        let key = format!("key-{}", uuid::Uuid::new_v4());
        let first = send(&app, &t, (t.body)(10), &[("idempotency-key", key.clone())]).await;
        assert_eq!(first.status, 200, "{}: {}", t.name, first.text);
        let count = history(&app, &t).await.len();

        let again = send(&app, &t, (t.body)(10), &[("idempotency-key", key.clone())]).await;
        assert_eq!(again.status, first.status, "{}", t.name);
        assert_eq!(again.text, first.text, "{}: replayed byte for byte", t.name);
        assert_eq!(again.header("idempotent-replayed"), Some("true"), "{}", t.name);
        assert_eq!(again.header("etag"), first.header("etag"), "{}", t.name);
        assert_eq!(first.header("idempotent-replayed"), None, "{}", t.name);
        assert_eq!(history(&app, &t).await.len(), count, "{}: a replay appends nothing", t.name);

        let other = send(&app, &t, (t.body)(11), &[("idempotency-key", key.clone())]).await;
        assert_eq!(other.status, 422, "{}: {}", t.name, other.text);
        assert_eq!(
            (t.message)(&other).as_deref(),
            Some("Idempotency-Key was already used with a different request"),
            "{}: 422 in the surface's envelope: {}",
            t.name,
            other.text
        );
        assert_eq!(history(&app, &t).await.len(), count, "{}", t.name);

        // Two at once with one new key: one runs, the other gets its answer (or 409).
        let key = format!("key-{}", uuid::Uuid::new_v4());
        let headers = [("idempotency-key", key)];
        let (a, b) = tokio::join!(send(&app, &t, (t.body)(12), &headers), send(&app, &t, (t.body)(12), &headers));
        for answer in [&a, &b] {
            assert!(
                answer.status == 200 || answer.status == 409,
                "{}: {} {}",
                t.name,
                answer.status,
                answer.text
            );
        }
        assert!(a.status == 200 || b.status == 200, "{}: one of them ran", t.name);
        assert_eq!(
            history(&app, &t).await.len(),
            count + 1,
            "{}: two requests with one key appended exactly once",
            t.name
        );
    }
}

async fn concurrent_patches_with_one_if_match_let_one_through(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let gateway = created(
        &app,
        "/api/v1/gateways",
        json!({"name": "edge", "url": "", "workspace_root": "edge"}),
    )
    .await;
    let agent = created(&app, "/api/v1/agents", json!({"name": "Lead", "gateway_id": gateway["id"]})).await;
    let path = format!("/api/v1/agents/{}", agent["id"].as_str().unwrap());
    let version = etag_version(&call(&app, Method::GET, &path, &app.admin_key, None).await).unwrap();
    let patch = |name: &'static str| {
        Answer::of(
            app.admin(Method::PATCH, &path)
                .header("if-match", format!("\"{version}\""))
                .json(&json!({ "name": name })),
        )
    };
    let (a, b) = tokio::join!(patch("First"), patch("Second"));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 412], "{} / {}", a.text, b.text);
}

async fn unconditional_writers_are_never_refused(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let app = std::sync::Arc::new(app);
    for t in targets(&app).await.into_iter().filter(|t| t.name != "ledger restore") {
        let t = std::sync::Arc::new(t);
        let before = history(&app, &t).await.len() as i64;
        let writers: Vec<_> = (0..32)
            .map(|n| {
                let (app, t) = (app.clone(), t.clone());
                tokio::spawn(async move {
                    let request_id = format!("writer-{n}-{}", uuid::Uuid::new_v4());
                    let answer = send(&app, &t, (t.body)(100 + n), &[("x-request-id", request_id.clone())]).await;
                    (request_id, answer)
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        for writer in writers {
            let (request_id, answer) = writer.await.unwrap();
            assert_eq!(answer.status, 200, "{}: {}", t.name, answer.text);
            acknowledged.push((request_id, etag_version(&answer).expect("an ETag")));
        }
        let events = history(&app, &t).await;
        let versions: Vec<i64> = events.iter().map(|e| e["stream_version"].as_i64().unwrap()).collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>(), "{}: contiguous", t.name);
        assert_eq!(versions.len() as i64, before + 32, "{}: one event per write", t.name);
        for (request_id, version) in acknowledged {
            let event = &events[(version - 1) as usize];
            assert_eq!(
                event["metadata"]["request_id"], request_id,
                "{}: the acknowledged write is the event at its ETag's version",
                t.name
            );
        }
    }
}

/// While the log is busy (its head held by another transaction), writes to one resource
/// on any surface do not wait for each other's commits: each is decided against the state
/// the one queued before it leads to, so they are all queued behind the first and commit
/// together, one event each, in order.
async fn queued_writes_of_one_resource_share_a_commit(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let app = std::sync::Arc::new(app);
    for t in targets(&app).await.into_iter().filter(|t| t.name != "ledger restore") {
        let t = std::sync::Arc::new(t);
        let write = |n: usize| {
            let (app, t) = (app.clone(), t.clone());
            tokio::spawn(async move {
                let request_id = format!("queued-{n}-{}", uuid::Uuid::new_v4());
                let answer = send(&app, &t, (t.body)(200 + n), &[("x-request-id", request_id.clone())]).await;
                (request_id, answer)
            })
        };
        let hold = HeadHold::take(&app.store, backend).await;
        let mut writers = vec![write(0)];
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        writers.extend((1..16).map(write));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        hold.release().await;
        let mut ours = Vec::new();
        for writer in writers {
            let (request_id, answer) = writer.await.unwrap();
            assert_eq!(answer.status, 200, "{}: {}", t.name, answer.text);
            ours.push((request_id, etag_version(&answer).expect("an ETag")));
        }
        let events = history(&app, &t).await;
        let versions: Vec<i64> = events.iter().map(|e| e["stream_version"].as_i64().unwrap()).collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>(), "{}: contiguous", t.name);
        let mut commits = std::collections::HashSet::new();
        for (request_id, version) in &ours {
            let event = &events[(version - 1) as usize];
            assert_eq!(event["metadata"]["request_id"], *request_id, "{}", t.name);
            commits.insert(event["recorded_at"].as_str().unwrap().to_string());
        }
        assert!(
            commits.len() <= 2,
            "{}: 16 writes took {} commits; the 15 queued behind the first share one",
            t.name,
            commits.len()
        );
    }
}

/// Two servers on one store writing one resource at once: the writes of each are queued
/// behind each other, and one that loses its race to the other server takes the writes
/// queued behind it down with it; every one of them is decided again and commits, once.
async fn two_replicas_writing_one_resource_lose_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let app = std::sync::Arc::new(app);
    let replica = app.replica().await;
    let (first, second) = (app.addr, replica.addr);
    for t in targets(&app)
        .await
        .into_iter()
        .filter(|t| matches!(t.name, "profiles" | "mission control"))
    {
        let t = std::sync::Arc::new(t);
        let before = history(&app, &t).await.len();
        let writers: Vec<_> = (0..48)
            .map(|n| {
                let (app, t) = (app.clone(), t.clone());
                let server = if n % 2 == 0 { first } else { second };
                tokio::spawn(async move {
                    let answer = Answer::of(
                        app.client
                            .request(t.write_method.clone(), format!("http://{server}{}", t.write))
                            .bearer_auth(&app.admin_key)
                            .json(&(t.body)(300 + n)),
                    )
                    .await;
                    assert_eq!(answer.status, 200, "{}: {}", t.name, answer.text);
                    etag_version(&answer).expect("an ETag")
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        for writer in writers {
            acknowledged.push(writer.await.unwrap());
        }
        acknowledged.sort_unstable();
        let events = history(&app, &t).await;
        assert_eq!(events.len(), before + 48, "{}: one event per write", t.name);
        assert_eq!(
            acknowledged,
            ((before + 1) as i64..=(before + 48) as i64).collect::<Vec<_>>(),
            "{}: every write acknowledged at its own version",
            t.name
        );
    }
    drop(replica);
}

/// A resource's version reads the same bytes on every replica: the one that wrote it
/// answers from the state it decided, another folds the event it reads from the log (on
/// PostgreSQL, in the log's own member order), and both must agree.
async fn replicas_answer_one_version_with_the_same_bytes(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let replica = app.replica().await;
    let other = |path: &str| Answer::of(app.client.get(format!("http://{}{path}", replica.addr)).bearer_auth(&app.admin_key));
    for t in targets(&app).await.into_iter().filter(|t| t.name != "ledger restore") {
        let body = match t.name {
            // Free-form members in an order no sort gives.
            "runtimes" => json!({"config": {"metadata": {"labels": {"zeta": "1", "alpha": "2", "mid": "3"}}}}),
            "mission control" => json!({
                "name": "Lead 7",
                "heartbeat_config": {"zeta": 1, "alpha": {"y": 1, "b": 2}},
                "identity_profile": {"zz": "1", "a": "2"},
            }),
            "container agents" => json!({
                "description": "take 7",
                "tools_config": {"shell": {"enabled": true, "max_timeout": 300, "denied_patterns": [], "allowed_binaries": ["ls"]}},
            }),
            _ => (t.body)(7),
        };
        let written = send(&app, &t, body, &[]).await;
        assert_eq!(written.status, 200, "{}: {}", t.name, written.text);
        let here = call(&app, Method::GET, &t.read, &app.admin_key, None).await;
        let mut there = other(&t.read).await;
        for _ in 0..200 {
            if there.header("etag") == here.header("etag") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            there = other(&t.read).await;
        }
        assert_eq!(there.header("etag"), here.header("etag"), "{}: the replica follows", t.name);
        assert_eq!(there.text, here.text, "{}: one version, one answer", t.name);
    }
}

both_backends!(
    etags_and_if_match_on_every_surface,
    idempotency_keys_on_every_surface,
    concurrent_patches_with_one_if_match_let_one_through,
    unconditional_writers_are_never_refused,
    queued_writes_of_one_resource_share_a_commit,
    two_replicas_writing_one_resource_lose_nothing,
    replicas_answer_one_version_with_the_same_bytes,
);

/// Every row the idempotency records hold, as text (fingerprint, headers, kept answer).
async fn idempotency_rows(app: &TestApp) -> Vec<String> {
    let query = "SELECT request_hash, headers, body FROM idempotency_keys";
    let rows: Vec<(String, String, Vec<u8>)> = match &app.store.db {
        None => {
            let path = app.store.dir.path().join("fleetledger.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query_as(query).fetch_all(&pool).await.unwrap()
        }
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_as(query).fetch_all(&pool).await.unwrap()
        }
    };
    rows.into_iter()
        .map(|(hash, headers, body)| format!("{hash} {headers} {}", String::from_utf8_lossy(&body)))
        .collect()
}

async fn kept_answers_reveal_no_secrets(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let instance = created(
        &app,
        "/v1/instances",
        json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6"}),
    )
    .await["id"]
        .clone();
    // A key shown once, issued under an Idempotency-Key: the retry shows the same key.
    let issue = || {
        Answer::of(
            app.admin(Method::POST, "/v1/keys")
                .header("idempotency-key", "issue-ci-key")
                .json(&json!({"name": "ci", "instance_ids": [instance], "permissions": ["read"]})),
        )
    };
    let first = issue().await;
    assert_eq!(first.status, 201, "{}", first.text);
    let raw_key = first.json()["raw_key"].as_str().unwrap().to_string();
    let again = issue().await;
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // A short, guessable gateway token under an Idempotency-Key.
    let gateway = Answer::of(
        app.admin(Method::POST, "/api/v1/gateways")
            .header("idempotency-key", "gateway-1")
            .json(&json!({"name": "edge", "url": "", "workspace_root": "edge", "token": "s3cret"})),
    )
    .await;
    assert_eq!(gateway.status, 200, "{}", gateway.text);
    let rows = idempotency_rows(&app).await;
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(!row.contains(&raw_key), "a kept answer holds the key in the clear: {row}");
        assert!(!row.contains("s3cret"), "a kept record holds the token: {row}");
        assert!(!row.contains("\"raw_key\""), "kept answers are sealed: {row}");
    }
}

/// A kept answer goes back only to the key that earned it: another key of the org reusing
/// the header with the same body (a read-only scoped key, a viewer) is a different request,
/// refused as one, and never shown the answer (a new key's value, a created resource).
async fn kept_answers_go_back_only_to_the_key_that_earned_them(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let instance = created(
        &app,
        "/v1/instances",
        json!({"name": "assistant", "model_provider": "anthropic", "openclaw_version": "2026.9.6"}),
    )
    .await["id"]
        .clone();
    let reader = created(
        &app,
        "/v1/keys",
        json!({"name": "reader", "instance_ids": [instance], "permissions": ["read"]}),
    )
    .await["raw_key"]
        .as_str()
        .unwrap()
        .to_string();
    let wide = json!({"name": "wide", "instance_ids": [instance], "permissions": ["read", "configure", "files", "channels", "interact"]});
    let issue = |key: &str| {
        Answer::of(
            app.request(Method::POST, "/v1/keys", key)
                .header("idempotency-key", "issue-wide-key")
                .json(&wide),
        )
    };
    let first = issue(&app.admin_key).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let raw_key = first.json()["raw_key"].as_str().unwrap().to_string();
    let replayed_to_reader = issue(&reader).await;
    assert!(!replayed_to_reader.text.contains(&raw_key), "{}", replayed_to_reader.text);
    assert_eq!(replayed_to_reader.header("idempotent-replayed"), None);
    assert!(
        [403, 422].contains(&replayed_to_reader.status),
        "{} {}",
        replayed_to_reader.status,
        replayed_to_reader.text
    );

    let viewer = app.store.create_key("default", "viewer");
    let create = |key: &str| {
        Answer::of(
            app.request(Method::POST, "/api/v1/profiles", key)
                .header("idempotency-key", "make-profile")
                .json(&json!({"name": "P", "config": {"n": 1}})),
        )
    };
    let made = create(&app.admin_key).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let by_viewer = create(&viewer).await;
    assert_eq!(by_viewer.header("idempotent-replayed"), None);
    assert!([403, 422].contains(&by_viewer.status), "{} {}", by_viewer.status, by_viewer.text);
    assert_ne!(by_viewer.text, made.text);
}

both_backends!(
    kept_answers_reveal_no_secrets,
    kept_answers_go_back_only_to_the_key_that_earned_them
);
