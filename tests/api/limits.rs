//! What bounds a request: 100k-element lists on every surface's writes are answered in
//! the surface's own terms, a request that takes too long is cut with 503 in its
//! surface's envelope, failed logins are throttled per client address, verifying an org's
//! whole log is for admins and rate-limited, and a broken or oversized body is the
//! client's error. Nothing here asserts a time.

use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_app, spawn_configured, Answer, Backend, TestApp, TestStore};

const N: usize = 100_000;

/// A short distinct name for `i` (base 36).
fn name(mut i: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[i % 36]);
        i /= 36;
        if i == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// Sends `body` (asserting it is under the 1 MiB body limit) and returns the answer.
async fn send(app: &TestApp, method: Method, path: &str, key: &str, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    assert!(bytes.len() <= 1024 * 1024, "{path}: a {} byte body", bytes.len());
    Answer::of(
        app.request(method, path, key)
            .header("content-type", "application/json")
            .body(bytes),
    )
    .await
}

fn expect(answer: &Answer, status: u16, what: &str) -> Value {
    assert_eq!(answer.status, status, "{what}: {}", &answer.text[..answer.text.len().min(500)]);
    answer.json()
}

async fn big_lists_are_answered_on_every_surface(backend: Backend) {
    // Without workers: no instance goes live, so its writes answer without waiting for a
    // sandbox (Mission Control's, which do wait, have their own scenario below).
    let Some(app) = spawn_app(backend).await else { return };
    let admin = app.admin_key.clone();
    let names: Vec<String> = (0..N).map(name).collect();

    // Profiles: 100k distinct packages are kept, in order; 100k unknown fleets are one 400.
    let profile = app.create_profile(json!({"name": "big"})).await;
    let packages: Vec<String> = names.iter().map(|n| format!("p{n}")).collect();
    let path = format!("/api/v1/profiles/{profile}");
    let answer = send(&app, Method::PUT, &path, &admin, &json!({"config": {"packages": packages}})).await;
    let body = expect(&answer, 200, "profile packages");
    assert_eq!(body["profile"]["packages"].as_array().unwrap().len(), N);
    assert_eq!(body["profile"]["packages"][N - 1], format!("p{}", name(N - 1)));
    let fleets: Vec<String> = names.iter().map(|n| format!("f{n}")).collect();
    send(
        &app,
        Method::POST,
        "/api/v1/profiles",
        &admin,
        &json!({"name": "x", "fleet_ids": fleets}),
    )
    .await
    .assert_error(400, "Fleet not found");

    // Runtimes: 100k distinct egress targets are kept; a repeated capability among as many
    // as fit is the one problem reported.
    let runtimes = "/api/v1/org/default/ws/default/runtimes";
    expect(
        &send(&app, Method::POST, runtimes, &admin, &json!({"key": "big"})).await,
        201,
        "runtime",
    );
    let config = format!("{runtimes}/big/config");
    let hosts: Vec<String> = names.iter().map(|n| format!("{n}.io")).collect();
    let answer = send(
        &app,
        Method::PUT,
        &config,
        &admin,
        &json!({"config": {"sandbox": {"egress": {"allow": hosts}}}}),
    )
    .await;
    let body = expect(&answer, 200, "egress");
    assert_eq!(body["config"]["sandbox"]["egress"]["allow"].as_array().unwrap().len(), N);
    let mut capabilities: Vec<Value> = names[..60_000].iter().map(|n| json!({"name": n})).collect();
    capabilities.push(json!({"name": "7"}));
    let answer = send(
        &app,
        Method::PUT,
        &config,
        &admin,
        &json!({"config": {"capabilities": capabilities}}),
    )
    .await;
    let body = expect(&answer, 422, "capabilities");
    assert_eq!(
        body["errors"],
        json!([{"loc": ["body", "config", "capabilities", 60_000, "name"], "msg": "Value error, capability '7' is listed more than once", "type": "value_error"}])
    );

    // Instances: 100k paths set, then unset front to back; a key naming one instance 20k
    // times with 20k permissions holds it once, with each permission once.
    let instance = call(
        &app,
        Method::POST,
        "/v1/instances",
        &admin,
        Some(json!({"name": "i", "model_provider": "openai", "openclaw_version": "1"})),
    )
    .await;
    let instance = expect(&instance, 201, "instance")["id"].as_str().unwrap().to_string();
    let path = format!("/v1/instances/{instance}");
    let set: Map<String, Value> = names.iter().map(|n| (n.clone(), json!(0))).collect();
    let answer = send(&app, Method::PATCH, &path, &admin, &json!({"openclaw_config": {"a": set}})).await;
    assert_eq!(expect(&answer, 200, "set")["openclaw_config"]["a"].as_object().unwrap().len(), N);
    // A null takes more room than a number: as many unsets as fit, then a new key.
    let mut unset: Map<String, Value> = names[..85_000].iter().map(|n| (n.clone(), Value::Null)).collect();
    unset.insert("added-last".into(), json!(1));
    let answer = send(&app, Method::PATCH, &path, &admin, &json!({"openclaw_config": {"a": unset}})).await;
    let kept: Vec<String> = expect(&answer, 200, "unset")["openclaw_config"]["a"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut want: Vec<String> = names[85_000..].to_vec();
    want.push("added-last".into());
    assert_eq!(kept, want);
    let body = json!({"name": "k", "instance_ids": vec![instance.clone(); 20_000], "permissions": vec!["read"; 20_000]});
    let key = expect(&send(&app, Method::POST, "/v1/keys", &admin, &body).await, 201, "scoped key");
    assert_eq!((&key["instance_ids"], &key["permissions"]), (&json!([instance]), &json!(["read"])));
    assert_eq!(key["instances"], json!([{"instance_id": instance, "permissions": ["read"]}]));

    // Container agents: one skill listed 25k times is assigned once; 100k model names.
    let binaries: Vec<String> = names.iter().map(|n| format!("b{n}")).collect();
    let skill = json!({"name": "big", "tools_config": {"shell": {"enabled": true, "allowed_binaries": binaries}}});
    let skill = expect(&send(&app, Method::POST, "/skills", &admin, &skill).await, 201, "skill")["id"].clone();
    let agent = call(
        &app,
        Method::POST,
        "/agents",
        &admin,
        Some(json!({"agent_id": "big", "name": "big"})),
    )
    .await;
    let path = format!("/agents/{}", expect(&agent, 201, "container agent")["id"].as_str().unwrap());
    let answer = send(&app, Method::PUT, &path, &admin, &json!({"skill_ids": vec![skill.clone(); 25_000]})).await;
    let body = expect(&answer, 200, "skill ids");
    assert_eq!(body["skills"].as_array().unwrap().len(), 1);
    assert_eq!(body["tools_config"]["shell"]["allowed_binaries"].as_array().unwrap().len(), N);
    let answer = send(&app, Method::PUT, &path, &admin, &json!({"model_names": vec!["gpt-4.1"; N]})).await;
    assert_eq!(expect(&answer, 200, "model names")["models"].as_array().unwrap().len(), N);
}

async fn big_mission_control_objects_are_answered(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    // With the workers, so that Mission Control's writes are answered by their outcome.
    let workers = fleetledger::workers::registry(store.dir.path(), &Default::default());
    let app = spawn_configured(store, serve_settings(), workers).await;
    let admin = app.admin_key.clone();
    let names: Vec<String> = (0..N).map(name).collect();
    // Mission Control: an identity profile of 100k keys.
    let gateway = call(
        &app,
        Method::POST,
        "/api/v1/gateways",
        &admin,
        Some(json!({"name": "g", "url": "local", "workspace_root": "big"})),
    )
    .await;
    let gateway = expect(&gateway, 200, "gateway");
    let board = call(
        &app,
        Method::POST,
        "/api/v1/boards",
        &admin,
        Some(json!({"name": "b", "gateway_id": gateway["id"]})),
    )
    .await;
    let board = expect(&board, 200, "board");
    let agent = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &admin,
        Some(json!({"name": "a", "board_id": board["id"]})),
    )
    .await;
    let agent = expect(&agent, 200, "agent");
    let profile: Map<String, Value> = names.iter().map(|n| (n.clone(), json!(0))).collect();
    let path = format!("/api/v1/agents/{}", agent["id"].as_str().unwrap());
    let answer = send(&app, Method::PATCH, &path, &admin, &json!({"identity_profile": profile})).await;
    let body = expect(&answer, 200, "identity profile");
    assert_eq!(body["identity_profile"].as_object().unwrap().len(), N);
}

async fn a_request_that_takes_too_long_is_cut_with_503(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut serve = serve_settings();
    serve.guards.request_timeout_seconds = 1;
    // No workers: a new Mission Control agent waits for a provisioning outcome that never
    // comes, for the apply timeout (10 s, then 504), unless the request timeout cuts it.
    let app = spawn_configured(store, serve, vec![]).await;
    let admin = app.admin_key.clone();
    let gateway = call(
        &app,
        Method::POST,
        "/api/v1/gateways",
        &admin,
        Some(json!({"name": "g", "url": "local", "workspace_root": "slow"})),
    )
    .await;
    let gateway = expect(&gateway, 200, "gateway");
    let started = std::time::Instant::now();
    let answer = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &admin,
        Some(json!({"name": "slow", "gateway_id": gateway["id"]})),
    )
    .await;
    let body = expect(&answer, 503, "a slow write");
    assert_eq!(body["detail"], "Request timed out");
    assert_eq!(body["request_id"].as_str(), answer.header("x-request-id"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(9),
        "cut by the request timeout, not the apply timeout"
    );
    // The change itself was recorded: the log, not the answer, is the truth.
    let agents = expect(&call(&app, Method::GET, "/api/v1/agents", &admin, None).await, 200, "agents");
    assert_eq!(agents["total"], 1);
}

/// A value nested `levels` deep.
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!([]), |inner, _| json!([inner]))
}

async fn deeply_nested_bodies_are_refused_in_each_envelope(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let admin = app.admin_key.clone();
    // Within serde_json's limit (127 levels), beyond what can be stored and read back
    // inside an event and its envelope.
    let deep = nested(100);
    let profile = app.create_profile(json!({"name": "deep"})).await;
    send(
        &app,
        Method::PUT,
        &format!("/api/v1/profiles/{profile}"),
        &admin,
        &json!({"config": {"x": deep}}),
    )
    .await
    .assert_error(400, "Request body contains invalid fields or values");
    let runtimes = "/api/v1/org/default/ws/default/runtimes";
    let body = expect(
        &send(&app, Method::POST, runtimes, &admin, &json!({"config": {"x": deep}})).await,
        422,
        "runtime",
    );
    assert_eq!(
        body["errors"],
        json!([{"loc": ["body"], "msg": "JSON nested more than 64 levels deep", "type": "json_invalid"}])
    );
    let body = expect(
        &send(&app, Method::POST, "/api/v1/gateways", &admin, &json!({"name": deep})).await,
        422,
        "gateway",
    );
    assert_eq!(body["detail"][0]["msg"], "JSON nested more than 64 levels deep");
    let instance = json!({"name": "i", "model_provider": "openai", "openclaw_version": "1", "openclaw_config": {"n": deep}});
    let body = expect(&send(&app, Method::POST, "/v1/instances", &admin, &instance).await, 422, "instance");
    assert_eq!(body["detail"][0]["msg"], "JSON nested more than 64 levels deep");
    let body = expect(
        &send(
            &app,
            Method::POST,
            "/skills",
            &admin,
            &json!({"name": "s", "tools_config": {"x": deep}}),
        )
        .await,
        400,
        "skill",
    );
    assert_eq!(body, json!({"error": "JSON nested more than 64 levels deep"}));
    // The ledger's restore reads its whole body too, fields it ignores included.
    let restore = format!("/api/v1/ledger/resources/profile/{profile}/restore");
    let body = expect(
        &send(&app, Method::POST, &restore, &admin, &json!({"version": 1, "note": deep})).await,
        422,
        "restore",
    );
    assert_eq!(body["detail"], "JSON nested more than 64 levels deep");
    // Nesting a config needs is fine.
    let shallow = json!({"name": "i", "model_provider": "openai", "openclaw_version": "1", "openclaw_config": {"n": nested(60)}});
    expect(
        &send(&app, Method::POST, "/v1/instances", &admin, &shallow).await,
        201,
        "a 62-level body",
    );
}

/// Where a surface's error body keeps its message.
type MessageOf = fn(&Value) -> &Value;

/// The surfaces' reads, with how each says 429.
fn surfaces() -> Vec<(&'static str, MessageOf)> {
    vec![
        ("/api/v1/profiles", |b| &b["error"]),
        ("/api/v1/org/default/ws/default/runtimes", |b| &b["detail"]),
        ("/api/v1/agents", |b| &b["detail"]),
        ("/v1/instances", |b| &b["detail"]),
        ("/agents", |b| &b["error"]),
        ("/api/v1/ledger/events", |b| &b["detail"]),
    ]
}

async fn failed_logins_are_throttled_per_address(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut serve = serve_settings();
    serve.guards.login_failures_per_minute = 1;
    serve.guards.login_failure_burst = 3;
    let app = spawn_configured(store, serve, vec![]).await;
    let admin = app.admin_key.clone();
    // Requests with a valid key, however many, are not failures.
    for _ in 0..5 {
        assert_eq!(call(&app, Method::GET, "/api/v1/profiles", &admin, None).await.status, 200);
    }
    // The burst of failures is answered as ever, each in its surface's envelope.
    for (path, _) in surfaces().into_iter().take(3) {
        assert_eq!(call(&app, Method::GET, path, "flk_guess", None).await.status, 401, "{path}");
    }
    // The next failure is still a 401, and leaves the address without tokens.
    assert_eq!(call(&app, Method::GET, "/v1/instances", "flk_guess", None).await.status, 401);
    for key in ["flk_guess", admin.as_str()] {
        for (path, message) in surfaces() {
            let answer = call(&app, Method::GET, path, key, None).await;
            assert_eq!(answer.status, 429, "{path}: {}", answer.text);
            let body = answer.json();
            let message = message(&body).as_str().unwrap_or_default();
            assert!(
                message.starts_with("Too many failed authentications from this address; retry in "),
                "{path}: {body}"
            );
            let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
    }
    assert_eq!(
        call(&app, Method::GET, "/api/v1/ledger/events", &admin, None)
            .await
            .header("content-type"),
        Some("application/problem+json")
    );
    // Requests without a key are not refused, and another address is not throttled.
    assert_eq!(call(&app, Method::GET, "/healthz", "", None).await.status, 200);
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let answer = Answer::of(elsewhere.get(app.url("/api/v1/profiles")).bearer_auth(&admin)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn verifying_the_whole_log_is_for_admins_and_rate_limited(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let member = app.store.create_key("default", "member");
    let answer = call(&app, Method::GET, "/api/v1/ledger/verify", &member, None).await;
    assert_eq!(
        (answer.status, answer.header("content-type")),
        (403, Some("application/problem+json"))
    );
    assert_eq!(answer.json()["detail"], "verifying the log needs an admin key");
    for _ in 0..2 {
        let answer = call(&app, Method::GET, "/api/v1/ledger/verify", &app.admin_key, None).await;
        assert_eq!((answer.status, &answer.json()["ok"]), (200, &json!(true)), "{}", answer.text);
    }
    let answer = call(&app, Method::GET, "/api/v1/ledger/verify", &app.admin_key, None).await;
    assert_eq!(
        (answer.status, answer.header("content-type")),
        (429, Some("application/problem+json"))
    );
    assert!(answer.json()["detail"]
        .as_str()
        .unwrap()
        .starts_with("Verification of the whole log is rate-limited; retry in "));
    assert!(answer.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

both_backends!(
    text_holding_nul_is_refused_alike_on_both_backends,
    big_lists_are_answered_on_every_surface,
    big_mission_control_objects_are_answered,
    deeply_nested_bodies_are_refused_in_each_envelope,
    a_request_that_takes_too_long_is_cut_with_503,
    failed_logins_are_throttled_per_address,
    verifying_the_whole_log_is_for_admins_and_rate_limited,
    broken_and_oversized_bodies_are_the_clients_error_on_every_surface,
);

/// Sends `head` (a request's line and headers, without the blank line) and `body` on a
/// connection of its own, and returns the answer's status and body.
async fn raw(app: &TestApp, head: &str, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    // The server answers and closes; it is not sent the rest of any body.
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A body broken off or badly chunked is the client's error (400 in the surface's
/// envelope, not a 500 that would page an operator), and a body declared longer than the
/// limit is refused without waiting for it.
async fn broken_and_oversized_bodies_are_the_clients_error_on_every_surface(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let admin = app.admin_key.clone();
    let writes = [
        "POST /api/v1/profiles",
        "POST /api/v1/org/default/ws/default/runtimes",
        "POST /v1/instances",
        "POST /agents",
        "POST /api/v1/ledger/resources/profile/x/restore",
    ];
    for write in writes {
        let head = format!("{write} HTTP/1.1\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json");
        let (status, body) = raw(&app, &format!("{head}\r\nTransfer-Encoding: chunked"), b"zz\r\n{}\r\n").await;
        assert_eq!(status, 400, "{write}, badly chunked: {body}");
        assert!(body.contains("The request body could not be read"), "{write}: {body}");
        let (status, body) = raw(&app, &format!("{head}\r\nContent-Length: 99999999999"), b"{").await;
        assert!((400..500).contains(&status), "{write}, declared too long: {status} {body}");
    }
}

/// PostgreSQL's JSON columns cannot hold NUL; SQLite could, but both backends keep the
/// same log: a change whose text holds it is 422 in the surface's envelope, never a 500,
/// and nothing is recorded.
async fn text_holding_nul_is_refused_alike_on_both_backends(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let admin = app.admin_key.clone();
    let gateway = expect(
        &send(
            &app,
            Method::POST,
            "/api/v1/gateways",
            &admin,
            &json!({"name": "g", "url": "local", "workspace_root": "w"}),
        )
        .await,
        200,
        "gateway",
    );
    let body = expect(
        &send(
            &app,
            Method::POST,
            "/api/v1/boards",
            &admin,
            &json!({"name": "b", "gateway_id": gateway["id"], "description": "a\u{0}b"}),
        )
        .await,
        422,
        "board",
    );
    assert!(body["detail"].as_str().unwrap().contains("NUL"), "{body}");
    let profile = app.create_profile(json!({"name": "nul"})).await;
    let answer = send(
        &app,
        Method::PUT,
        &format!("/api/v1/profiles/{profile}"),
        &admin,
        &json!({"config": {"k\u{0}": 1}}),
    )
    .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert!(answer.json()["error"].as_str().unwrap().contains("NUL"), "{}", answer.text);
    let boards = call(&app, Method::GET, "/api/v1/boards", &admin, None).await;
    assert_eq!(boards.json(), json!([]), "no board was recorded: {}", boards.text);
}
