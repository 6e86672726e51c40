//! Secrets out of the log: a gateway token written through the API is sealed before it is
//! appended, never leaves in the clear by any way out (every ledger route for every role,
//! SSE, JetStream, export, replay, tail, the server log, the database files), and still
//! reaches the gateway; tokens stored in plaintext by older events are redacted and keep
//! working; `orgs forget` shreds one org's secrets; `secrets rotate-master` re-wraps keys
//! without touching the log.

use std::process::{Command, Output};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::cli::{start_server_with, Server};
use crate::fake_gateway::{Behaviour, FakeGateway};
use crate::helpers::*;

both_backends!(
    a_gateway_token_never_leaves_in_the_clear,
    plaintext_tokens_of_older_events_are_redacted_everywhere_and_still_work,
    forgetting_an_org_destroys_its_secrets_only,
    rotating_the_master_key_rewraps_keys_without_touching_the_log,
    first_tokens_of_an_org_written_at_once_share_one_data_key,
);

const TOKEN_DESTROYED: &str = "Gateway update failed: the gateway token was destroyed (organization forgotten); set a new token";

/// A token no other test uses, so a byte search for it means this test's token only.
fn token(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts that none of `secrets` occurs in `what`.
fn assert_absent(place: &str, what: &[u8], secrets: &[&str]) {
    for secret in secrets {
        assert!(!contains(what, secret), "{place} holds the secret {secret}");
    }
}

/// The binary with this store's settings and extra environment.
fn cli_env(store: &TestStore, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.arg("--data-dir")
        .arg(store.dir.path())
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FLEETLEDGER_MASTER_KEY")
        .env_remove("NATS_URL")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied());
    if let Some(db) = &store.db {
        cmd.env("DATABASE_URL", &db.url);
    }
    cmd.output().expect("run fleetledger")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// An HTTP client of a server at `base`.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn of_app(app: &TestApp) -> Api {
        Api {
            base: format!("http://{}", app.addr),
            client: reqwest::Client::new(),
        }
    }

    fn of_server(server: &Server) -> Api {
        Api {
            base: server.url(""),
            client: reqwest::Client::new(),
        }
    }

    fn request(&self, method: Method, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(key)
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
        let builder = self.request(method, path, key);
        Answer::of(match body {
            Some(b) => builder.json(&b),
            None => builder,
        })
        .await
    }

    async fn ok(&self, method: Method, path: &str, key: &str, body: Value) -> Value {
        let answer = self.call(method, path, key, Some(body)).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        answer.json()
    }
}

/// A gateway on the fake OpenClaw gateway with `token`, a board on it and an agent on the
/// board, provisioned: `(gateway id, agent id)`.
async fn provisioned_agent(api: &Api, key: &str, gateway: &FakeGateway, token: &str) -> (String, String) {
    let gw = api
        .ok(
            Method::POST,
            "/api/v1/gateways",
            key,
            json!({"name": "claw", "url": gateway.url, "token": token, "workspace_root": "/home/claw"}),
        )
        .await;
    assert_eq!(gw["has_token"], true);
    assert!(!gw.to_string().contains(token));
    let board = api
        .ok(
            Method::POST,
            "/api/v1/boards",
            key,
            json!({"name": "Claws", "gateway_id": gw["id"]}),
        )
        .await;
    let agent = api
        .ok(
            Method::POST,
            "/api/v1/agents",
            key,
            json!({"name": "Claw", "board_id": board["id"]}),
        )
        .await;
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    (gw["id"].as_str().unwrap().into(), agent["id"].as_str().unwrap().into())
}

/// The tokens the fake gateway was given in its `connect` frames, in order (and forgotten).
fn connect_tokens(gateway: &FakeGateway) -> Vec<String> {
    gateway
        .take()
        .into_iter()
        .filter(|(m, _)| m == "connect")
        .map(|(_, p)| p["auth"]["token"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn reprovision(api: &Api, key: &str, agent: &str) -> Answer {
    api.call(Method::PATCH, &format!("/api/v1/agents/{agent}?force=true"), key, Some(json!({})))
        .await
}

/// Every stored event row, exactly as the database holds it.
async fn log_rows(store: &TestStore) -> Vec<String> {
    match &store.db {
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT row_to_json(e)::text FROM events e ORDER BY global_position")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        None => {
            let path = store.dir.path().join("fleetledger.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
            sqlx::query_scalar(
                "SELECT json_array(global_position, event_id, stream_type, stream_id, stream_version, event_type, \
                 schema_version, data, metadata, prev_hash, hash, recorded_at) FROM events ORDER BY global_position",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    }
}

/// Every payload in the test's JetStream stream, in order.
async fn jetstream_payloads(nats: &TestNats, n: u64) -> Vec<String> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures::StreamExt;
    assert!(
        nats.wait_for_messages(n, Duration::from_secs(30)).await >= n,
        "the relay published the log"
    );
    let js = nats.context().await;
    let stream = js.get_stream(&nats.stream).await.expect("the stream exists");
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while (out.len() as u64) < n {
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(10), messages.next()).await else {
            break;
        };
        out.push(String::from_utf8(message.payload.to_vec()).unwrap());
    }
    out
}

fn nats_env(nats: &TestNats) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url.clone()),
        ("FLEETLEDGER_NATS_STREAM", nats.stream.clone()),
        ("FLEETLEDGER_NATS_SUBJECT_PREFIX", nats.prefix.clone()),
    ]
}

fn serve(store: &TestStore, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_server_with(store, &env)
}

fn admin_key(store: &TestStore) -> String {
    std::fs::read_to_string(store.dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string()
}

async fn a_gateway_token_never_leaves_in_the_clear(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    let env = nats.as_ref().map(nats_env).unwrap_or_default();
    let mut server = serve(&store, &env);
    let api = Api::of_server(&server);
    let admin = admin_key(&store);
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let (first, second) = (token("first"), token("second"));
    let secrets = [first.as_str(), second.as_str()];

    // The reprovisioner authenticates with the token, then with the one a PATCH sets.
    let (gateway_id, agent_id) = provisioned_agent(&api, &admin, &gateway, &first).await;
    assert_eq!(connect_tokens(&gateway), [first.as_str()]);
    let patched = api
        .ok(
            Method::PATCH,
            &format!("/api/v1/gateways/{gateway_id}"),
            &admin,
            json!({"token": second}),
        )
        .await;
    assert!(!patched.to_string().contains(&second));
    assert_eq!(reprovision(&api, &admin, &agent_id).await.status, 200);
    assert_eq!(connect_tokens(&gateway), [second.as_str()]);

    // The log holds the sealed form, as schema version 2.
    let log = fleetledger::store::connect(&store.url()).await.unwrap();
    let stored = log.read_stream(&gateway_id, 1).await.unwrap();
    assert_eq!(stored[0].schema_version, 2);
    assert!(stored[0].data["token"]["ciphertext"].is_string(), "{}", stored[0].data);
    assert!(stored[1].data["changes"]["token"]["kid"].is_string(), "{}", stored[1].data);

    // Every ledger route, for every role.
    let keys = [
        admin.clone(),
        store.create_key("default", "member"),
        store.create_key("default", "viewer"),
    ];
    let routes = [
        "/api/v1/ledger/events?limit=1000".to_string(),
        format!("/api/v1/ledger/events?stream_id={gateway_id}"),
        format!("/api/v1/ledger/streams/gateway/{gateway_id}"),
        format!("/api/v1/ledger/resources/gateway/{gateway_id}"),
        format!("/api/v1/ledger/resources/gateway/{gateway_id}?version=1"),
        format!("/api/v1/ledger/resources/gateway/{gateway_id}/revisions"),
        format!("/api/v1/ledger/resources/gateway/{gateway_id}/diff?from=1&to=2"),
        format!("/api/v1/ledger/resources/gateway/{gateway_id}/verify"),
        "/api/v1/ledger/resources/gateway".to_string(),
        "/api/v1/ledger/resources/key".to_string(),
        "/api/v1/ledger/verify".to_string(),
        format!("/api/v1/ledger/resources/mc_agent/{agent_id}/revisions"),
        "/api/v1/gateways".to_string(),
        format!("/api/v1/gateways/{gateway_id}"),
    ];
    for key in &keys {
        for route in &routes {
            let answer = api.call(Method::GET, route, key, None).await;
            // Verifying the org's whole log is for admin keys; the refusal leaks nothing either.
            let expected = if route == "/api/v1/ledger/verify" && key != &admin {
                403
            } else {
                200
            };
            assert_eq!(answer.status, expected, "{route}: {}", answer.text);
            assert_absent(route, answer.text.as_bytes(), &secrets);
            assert!(!answer.text.contains("key_hash"), "{route} shows a key hash: {}", answer.text);
        }
        let events = api
            .call(Method::GET, &format!("/api/v1/ledger/streams/gateway/{gateway_id}"), key, None)
            .await
            .json();
        assert_eq!(events["events"][0]["data"]["token"], "***");
        assert_eq!(events["events"][1]["data"]["changes"]["token"], "***");
        let state = api
            .call(Method::GET, &format!("/api/v1/ledger/resources/gateway/{gateway_id}"), key, None)
            .await
            .json();
        assert!(state["state"].get("token").is_none(), "{state}");
    }

    // The SSE stream from the start of the log.
    let all = api.call(Method::GET, "/api/v1/ledger/events?limit=1000", &admin, None).await.json();
    let count = all["events"].as_array().unwrap().len();
    let mut sse = SseReader::new(
        api.request(Method::GET, "/api/v1/ledger/stream?after=0", &admin)
            .send()
            .await
            .unwrap(),
    );
    let mut seen = 0;
    while seen < count {
        let e = sse.next(Duration::from_secs(10)).await.expect("every event on the stream");
        assert_absent("the SSE stream", e.data.as_bytes(), &secrets);
        assert!(!e.data.contains("key_hash"), "SSE shows a key hash");
        if e.event == "gateway.created" {
            let cloud: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(cloud["data"]["data"]["token"], "***");
        }
        seen += 1;
    }
    drop(sse);

    // JetStream messages.
    if let Some(nats) = &nats {
        let head = log.head().await.unwrap() as u64;
        let payloads = jetstream_payloads(nats, head).await;
        assert_eq!(payloads.len() as u64, head);
        for payload in &payloads {
            assert_absent("a JetStream message", payload.as_bytes(), &secrets);
            assert!(!payload.contains("key_hash"), "JetStream carries a key hash");
        }
        assert!(payloads
            .iter()
            .any(|p| p.contains("gateway.created") && p.contains("\"token\":\"***\"")));
    }

    // export keeps the sealed form (and key hashes, for import), never the plaintext.
    let export = cli_env(&store, &["export", "--all"], &[]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_absent("export", &export.stdout, &secrets);
    assert!(stdout(&export).contains("\"ciphertext\""));
    let stream_export = cli_env(&store, &["export", "--stream", &format!("gateway/{gateway_id}")], &[]);
    assert_absent("export --stream", &stream_export.stdout, &secrets);
    for args in [
        vec!["replay", "--format", "json"],
        vec!["replay", "--stream", &format!("gateway/{gateway_id}"), "--format", "json"],
        vec!["replay", "--stream", &format!("gateway/{gateway_id}")],
        vec!["tail"],
    ] {
        let out = cli_env(&store, &args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_absent(&format!("{args:?}"), &out.stdout, &secrets);
        assert!(!stdout(&out).contains("key_hash"), "{args:?} shows a key hash");
    }

    // The server log.
    assert!(server.terminate().success());
    assert_absent("the server log", server.logs_after_exit().as_bytes(), &secrets);

    // The database: the SQLite files, or PostgreSQL's events, read models and snapshots.
    match &store.db {
        None => {
            for file in ["fleetledger.db", "fleetledger.db-wal"] {
                if let Ok(bytes) = std::fs::read(store.dir.path().join(file)) {
                    assert_absent(file, &bytes, &secrets);
                }
            }
        }
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            for query in [
                "SELECT data::text || metadata::text FROM events",
                "SELECT doc FROM read_models",
                "SELECT doc FROM snapshots",
            ] {
                let rows: Vec<String> = sqlx::query_scalar(query).fetch_all(&pool).await.unwrap();
                for row in rows {
                    assert_absent(query, row.as_bytes(), &secrets);
                }
            }
        }
    }
    assert!(cli_env(&store, &["verify"], &[]).status.success());
}

/// Appends a version 1 `gateway.created` with a plaintext token (as the log held before
/// tokens were sealed) to an export, chained as the store would have: `(gateway id, line)`.
fn legacy_gateway_line(export: &str, url: &str, token: &str) -> (String, String) {
    let last: fleetledger_events::EventEnvelope = serde_json::from_str(export.lines().last().unwrap()).unwrap();
    let gateway_id = uuid::Uuid::now_v7();
    let mut e = fleetledger_events::EventEnvelope {
        global_position: last.global_position + 1,
        event_id: uuid::Uuid::now_v7(),
        stream_type: "gateway".into(),
        stream_id: gateway_id.to_string(),
        stream_version: 1,
        event_type: "gateway.created".into(),
        schema_version: 1,
        data: json!({
            "gateway_id": gateway_id, "org_id": default_org(), "name": "old", "url": url, "token": token,
            "workspace_root": "/home/old", "created_at": "2026-01-01T00:00:00Z",
        })
        .into(),
        metadata: fleetledger_events::Metadata {
            org_id: default_org(),
            actor: fleetledger_events::Actor::system("before-sealing"),
            ..Default::default()
        },
        prev_hash: fleetledger_events::chain::GENESIS.into(),
        hash: String::new(),
        recorded_at: fleetledger_events::envelope::truncate_micros(chrono::Utc::now()),
    };
    e.hash = fleetledger_events::chain::compute_hash(&e);
    (gateway_id.to_string(), serde_json::to_string(&e).unwrap())
}

async fn plaintext_tokens_of_older_events_are_redacted_everywhere_and_still_work(backend: Backend) {
    // A bootstrapped log, exported, plus a gateway as it was stored before sealing.
    let Some(old) = TestStore::new(backend).await else { return };
    let first = spawn_on(old).await;
    let old = first.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let export = cli_env(&old, &["export", "--all"], &[]);
    assert!(export.status.success(), "{}", stderr(&export));
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let legacy = token("legacy");
    let (gateway_id, line) = legacy_gateway_line(&stdout(&export), &gateway.url, &legacy);
    let file = old.dir.path().join("crafted.ndjson");
    std::fs::write(&file, format!("{}{line}\n", stdout(&export))).unwrap();

    // Imported as it is: the chain verifies, and the imported key hashes authenticate.
    let Some(store) = TestStore::new(backend).await else { return };
    let imported = cli_env(&store, &["import", file.to_str().unwrap()], &[]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    std::fs::copy(old.dir.path().join("admin.key"), store.dir.path().join("admin.key")).unwrap();
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    let mut serve_settings = serve_settings();
    if let Some(n) = &nats {
        serve_settings.bus = n.bus();
    }
    let workers = fleetledger::workers::registry(store.dir.path(), &Default::default());
    let app = spawn_configured(store, serve_settings, workers).await;
    let api = Api::of_app(&app);
    let admin = app.admin_key.clone();

    // The old token still reaches the gateway.
    let board = api
        .ok(
            Method::POST,
            "/api/v1/boards",
            &admin,
            json!({"name": "Old", "gateway_id": gateway_id}),
        )
        .await;
    let agent = api
        .ok(
            Method::POST,
            "/api/v1/agents",
            &admin,
            json!({"name": "Old", "board_id": board["id"]}),
        )
        .await;
    assert_eq!(agent["provision_state"], "provisioned", "{agent}");
    assert_eq!(connect_tokens(&gateway), [legacy.as_str()]);

    // Every way out shows "***".
    let viewer = app.store.create_key("default", "viewer");
    for key in [&admin, &viewer] {
        for route in [
            "/api/v1/ledger/events?limit=1000".to_string(),
            format!("/api/v1/ledger/streams/gateway/{gateway_id}"),
            format!("/api/v1/ledger/resources/gateway/{gateway_id}"),
            format!("/api/v1/gateways/{gateway_id}"),
        ] {
            let answer = api.call(Method::GET, &route, key, None).await;
            assert_eq!(answer.status, 200, "{route}: {}", answer.text);
            assert_absent(&route, answer.text.as_bytes(), &[&legacy]);
        }
        let events = api
            .call(Method::GET, &format!("/api/v1/ledger/streams/gateway/{gateway_id}"), key, None)
            .await
            .json();
        assert_eq!(events["events"][0]["data"]["token"], "***");
    }
    let mut sse = SseReader::new(
        api.request(Method::GET, "/api/v1/ledger/stream?after=0&stream_type=gateway", &admin)
            .send()
            .await
            .unwrap(),
    );
    let e = sse.next(Duration::from_secs(10)).await.expect("the gateway's event");
    assert_absent("SSE", e.data.as_bytes(), &[&legacy]);
    assert!(e.data.contains("\"token\":\"***\""), "{}", e.data);
    if let Some(nats) = &nats {
        let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
        for payload in jetstream_payloads(nats, log.head().await.unwrap() as u64).await {
            assert_absent("a JetStream message", payload.as_bytes(), &[&legacy]);
        }
    }
    let stream = format!("gateway/{gateway_id}");
    for args in [
        vec!["export", "--all"],
        vec!["replay", "--format", "json"],
        vec!["replay", "--stream", &stream, "--format", "json"],
        vec!["tail"],
    ] {
        let out = cli_env(&app.store, &args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_absent(&format!("{args:?}"), &out.stdout, &[&legacy]);
    }
    let reexport = stdout(&cli_env(&app.store, &["export", "--all"], &[]));
    assert!(reexport.contains("\"token\":\"***\""));

    // Verification reads the stored bytes, so it still passes.
    assert!(cli_env(&app.store, &["verify"], &[]).status.success());
    let verified = api.call(Method::GET, "/api/v1/ledger/verify", &admin, None).await.json();
    assert_eq!(verified["ok"], true, "{verified}");

    // An export with a redacted plaintext cannot be imported with its chain intact, and
    // import says why.
    let Some(third) = TestStore::new(backend).await else { return };
    let refile = app.store.dir.path().join("reexport.ndjson");
    std::fs::write(&refile, reexport).unwrap();
    let refused = cli_env(&third, &["import", refile.to_str().unwrap()], &[]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("plaintext secret"), "{}", stderr(&refused));
}

async fn forgetting_an_org_destroys_its_secrets_only(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let nats = match backend {
        Backend::Postgres => TestNats::new().await,
        Backend::Sqlite => None,
    };
    let mut settings = serve_settings();
    if let Some(n) = &nats {
        settings.bus = n.bus();
    }
    let workers = fleetledger::workers::registry(store.dir.path(), &Default::default());
    let app = spawn_configured(store, settings, workers).await;
    let api = Api::of_app(&app);
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let admin = app.admin_key.clone();
    app.store.create_org("other");
    let other = app.store.create_key("other", "admin");
    let (mine, theirs) = (token("mine"), token("theirs"));
    let (gateway_id, agent) = provisioned_agent(&api, &admin, &gateway, &mine).await;
    let (_, their_agent) = provisioned_agent(&api, &other, &gateway, &theirs).await;
    gateway.take();

    // Without --yes nothing happens: it says what it would destroy, exits 2.
    let asked = cli_env(&app.store, &["orgs", "forget", "default"], &[]);
    assert_eq!(asked.status.code(), Some(2), "{}", stderr(&asked));
    assert!(
        stderr(&asked).contains("--yes") && stderr(&asked).contains("1 data key"),
        "{}",
        stderr(&asked)
    );
    assert_eq!(reprovision(&api, &admin, &agent).await.status, 200);
    assert_eq!(connect_tokens(&gateway), [mine.as_str()]);

    let before = log_rows(&app.store).await;
    let forgot = cli_env(&app.store, &["orgs", "forget", "default", "--yes"], &[]);
    assert!(forgot.status.success(), "{}", stderr(&forgot));
    assert!(stderr(&forgot).contains("destroyed 1 data key"), "{}", stderr(&forgot));

    // The log is untouched and verifies.
    assert!(log_rows(&app.store).await == before, "forgetting writes nothing to the log");
    let verified = cli_env(&app.store, &["verify"], &[]);
    assert!(verified.status.success(), "{}", stdout(&verified));

    // This org's gateway fails with the clear error, recorded as the outcome.
    let failed = reprovision(&api, &admin, &agent).await;
    assert_eq!(failed.status, 502, "{}", failed.text);
    assert_eq!(failed.json()["detail"], TOKEN_DESTROYED);
    assert!(connect_tokens(&gateway).is_empty(), "nothing reached the gateway");
    let events = api
        .call(Method::GET, &format!("/api/v1/ledger/streams/mc_agent/{agent}"), &admin, None)
        .await
        .json();
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event_type"], "mc_agent.provision_failed");
    assert_eq!(
        format!("Gateway update failed: {}", last["data"]["error"].as_str().unwrap()),
        TOKEN_DESTROYED
    );

    // The other org is untouched.
    assert_eq!(reprovision(&api, &other, &their_agent).await.status, 200);
    assert_eq!(connect_tokens(&gateway), [theirs.as_str()]);

    // A new token gets a fresh key and works again.
    let fresh = token("fresh");
    api.ok(
        Method::PATCH,
        &format!("/api/v1/gateways/{gateway_id}"),
        &admin,
        json!({"token": fresh}),
    )
    .await;
    assert_eq!(reprovision(&api, &admin, &agent).await.status, 200);
    assert_eq!(connect_tokens(&gateway), [fresh.as_str()]);
    assert!(cli_env(&app.store, &["verify"], &[]).status.success());
}

/// Starts `serve` with a master key in the environment and expects it to refuse.
fn serve_refuses(store: &TestStore, master_key: &str) -> String {
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(store.dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .env("FLEETLEDGER_MASTER_KEY", master_key)
        .env("RUST_LOG", "warn");
    if let Some(db) = &store.db {
        cmd.env("DATABASE_URL", &db.url);
    }
    let out = cmd.output().expect("serve runs");
    assert!(!out.status.success(), "serve refuses a master key that opens nothing");
    stderr(&out)
}

async fn rotating_the_master_key_rewraps_keys_without_touching_the_log(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let workers = fleetledger::workers::registry(store.dir.path(), &Default::default());
    let app = spawn_configured(store, serve_settings(), workers).await;
    let api = Api::of_app(&app);
    let gateway = FakeGateway::start(Behaviour::default()).await;
    let admin = app.admin_key.clone();
    let secret = token("rotated");
    let (_, agent) = provisioned_agent(&api, &admin, &gateway, &secret).await;
    assert_eq!(connect_tokens(&gateway), [secret.as_str()]);
    let key_file = app.store.dir.path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let first = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    let before = log_rows(&app.store).await;

    // From the file: the new key replaces it; stdout stays empty; the log is untouched.
    let rotated = cli_env(&app.store, &["secrets", "rotate-master"], &[]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    assert_eq!(stdout(&rotated), "");
    assert!(log_rows(&app.store).await == before, "rotation never touches the log");
    let second = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    assert_ne!(second, first);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    // The running server reads the new file when it next opens a token.
    assert_eq!(reprovision(&api, &admin, &agent).await.status, 200);
    assert_eq!(connect_tokens(&gateway), [secret.as_str()]);
    let store = app.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = log_rows(&store).await;
    // The old key opens nothing any more, and says what to set.
    let refused = serve_refuses(&store, &first);
    assert!(refused.contains("FLEETLEDGER_MASTER_KEY"), "{refused}");
    assert!(!refused.contains(&first), "the key is never printed");

    // From the environment: the new key alone on stdout, for the operator to set.
    let rotated = cli_env(&store, &["secrets", "rotate-master"], &[("FLEETLEDGER_MASTER_KEY", &second)]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let third = stdout(&rotated).trim().to_string();
    assert_eq!(stdout(&rotated).lines().count(), 1);
    assert!(stderr(&rotated).contains("FLEETLEDGER_MASTER_KEY"), "{}", stderr(&rotated));
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &third)
            .unwrap()
            .len(),
        32
    );
    for old in [&first, &second] {
        let again = cli_env(&store, &["secrets", "rotate-master"], &[("FLEETLEDGER_MASTER_KEY", old)]);
        assert!(!again.status.success(), "an old key rotates nothing");
        assert!(stderr(&again).contains("does not open"), "{}", stderr(&again));
    }

    // The log is byte-identical and verifies; the newest key serves.
    assert!(log_rows(&store).await == before, "rotation never touches the log");
    assert!(cli_env(&store, &["verify"], &[]).status.success());
    let mut server = serve(&store, &[("FLEETLEDGER_MASTER_KEY", third.clone())]);
    let api = Api::of_server(&server);
    assert_eq!(reprovision(&api, &admin, &agent).await.status, 200);
    assert_eq!(connect_tokens(&gateway), [secret.as_str()]);
    assert!(server.terminate().success());
}

async fn first_tokens_of_an_org_written_at_once_share_one_data_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = std::sync::Arc::new(Api::of_app(&app));
    let writes: Vec<_> = (0..6)
        .map(|i| {
            let (api, key) = (api.clone(), app.admin_key.clone());
            tokio::spawn(async move {
                api.ok(
                    Method::POST,
                    "/api/v1/gateways",
                    &key,
                    json!({"name": format!("g{i}"), "token": format!("t{i}"), "workspace_root": "/w"}),
                )
                .await["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let mut kids = std::collections::HashSet::new();
    for write in writes {
        let id = write.await.unwrap();
        let created = log.read_stream(&id, 1).await.unwrap();
        kids.insert(created[0].data["token"]["kid"].as_str().unwrap().to_string());
    }
    assert_eq!(kids.len(), 1, "one data key per org: {kids:?}");
}
