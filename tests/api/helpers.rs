//! `spawn_app` and friends.

use std::path::PathBuf;
use std::process::Output;

use fleetledger::app::Application;
use fleetledger::config::{ServeSettings, Settings, StoreSettings};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use sqlx::Connection;
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async scenario once per backend as two tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        fleetledger::telemetry::init();
    }
}

/// A PostgreSQL database of its own, dropped when the test ends.
pub struct TestDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDb {
    /// `None` when PostgreSQL tests are not configured.
    pub async fn create() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("FLEETLEDGER_TEST_POSTGRES") else {
            eprintln!("skipped: FLEETLEDGER_TEST_POSTGRES is not set");
            return None;
        };
        let name = format!("fleetledger_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("FLEETLEDGER_TEST_POSTGRES is set but PostgreSQL is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin_url).expect("FLEETLEDGER_TEST_POSTGRES is a URL");
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            url: url.to_string(),
            admin_url,
            name,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Where a test's state lives: a temp data dir, and a database when on PostgreSQL.
pub struct TestStore {
    pub dir: TempDir,
    pub db: Option<TestDb>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Option<TestStore> {
        init_logs();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDb::create().await?),
        };
        Some(TestStore {
            dir: tempfile::tempdir().expect("temp dir"),
            db,
        })
    }

    pub fn settings(&self) -> StoreSettings {
        StoreSettings {
            data_dir: self.dir.path().to_path_buf(),
            database_url: self.db.as_ref().map(|d| d.url.clone()),
            master_key: None,
            sqlite_synchronous: Default::default(),
        }
    }

    pub fn url(&self) -> String {
        self.settings().url()
    }

    /// Runs the real binary with this store's settings.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run fleetledger")
    }

    /// The real binary with this store's settings, to run.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleetledger"));
        cmd.arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("FLEETLEDGER_MASTER_KEY")
            .env("RUST_LOG", "warn");
        if let Some(db) = &self.db {
            cmd.env("DATABASE_URL", &db.url);
        }
        cmd
    }

    /// `keys create` for an org, returning the token printed on stdout.
    pub fn create_key(&self, org: &str, role: &str) -> String {
        let out = self.cli(&["keys", "create", "--org", org, "--role", role, "--name", role]);
        assert!(out.status.success(), "keys create failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        assert_eq!(stdout.lines().count(), 1, "stdout holds only the key: {stdout:?}");
        stdout.trim().to_string()
    }

    pub fn create_org(&self, slug: &str) {
        let out = self.cli(&["orgs", "create", slug]);
        assert!(out.status.success(), "orgs create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub store: TestStore,
    /// Dropping it stops the server.
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn serve_settings() -> ServeSettings {
    ServeSettings {
        bus: Default::default(),
        // Failed side effects are retried at once: tests never wait out a real backoff.
        drivers: fleetledger::config::DriverSettings {
            delivery: fleetledger::config::DeliverySettings {
                delivery_attempts: 3,
                delivery_backoff_base_ms: 1,
                delivery_backoff_max_ms: 10,
            },
            ..Default::default()
        },
        guards: Default::default(),
        no_workers: false,
        relay_crash_after_publish: None,
        listen: "127.0.0.1:0".parse().expect("addr"),
        available_kernels: fleetledger::domain::profile::DEFAULT_AVAILABLE_KERNELS
            .split(',')
            .map(str::to_string)
            .collect(),
        follow_interval_ms: 50,
        shutdown_grace_seconds: 5,
        ready_max_relay_lag_seconds: 60.0,
        rate_limit_per_sec: 1000,
        rate_limit_burst: 1000,
        max_sandbox_timeout_seconds: 86_400,
        sandbox_provider: "docker".into(),
        apply_timeout_seconds: 10,
        allow_signup: false,
        default_agent_image: "ghcr.io/hill90/agentbox:latest".into(),
        available_models: vec!["gpt-4.1".into(), "claude-sonnet-4".into(), "gemini-2.5-pro".into()],
        console_session_hours: 12,
    }
}

/// Starts the real server on a fresh store; `None` when the backend is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let store = TestStore::new(backend).await?;
    Some(spawn_on(store).await)
}

pub async fn spawn_on(store: TestStore) -> TestApp {
    spawn_app_with(store, Default::default(), vec![]).await
}

/// A second server on a `TestApp`'s store, as another replica would be; dropping it
/// stops it.
pub struct Replica {
    pub addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    /// Starts another server (no workers) on this app's store.
    pub async fn replica(&self) -> Replica {
        let mut serve = serve_settings();
        serve.no_workers = true;
        let (addr, stop) = serve_in_background(
            Settings {
                store: self.store.settings(),
                serve,
            },
            vec![],
        )
        .await;
        Replica { addr, _stop: stop }
    }

    /// Stops the server (without waiting for it) and hands back its store.
    pub fn stop(self) -> TestStore {
        drop(self._stop);
        self.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with `key` as bearer token (none when empty).
    pub fn request(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        if key.is_empty() {
            builder
        } else {
            builder.bearer_auth(key)
        }
    }

    /// Fails when `text` names the server's data dir (as given or canonical): responses
    /// never show where the server keeps its files.
    pub fn assert_no_server_path(&self, text: &str) {
        let dir = self.store.dir.path();
        for form in [Some(dir.to_path_buf()), dir.canonicalize().ok()].into_iter().flatten() {
            let form = form.to_string_lossy();
            assert!(
                !text.contains(form.as_ref()),
                "a response names the server's data dir {form}: {text}"
            );
        }
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path, &self.admin_key)
    }

    pub async fn create_fleet(&self, id: &str, name: &str) {
        let res = self
            .admin(Method::POST, "/api/v1/fleets")
            .json(&serde_json::json!({"id": id, "name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }

    /// Creates a profile and returns its id.
    pub async fn create_profile(&self, body: Value) -> String {
        let res = self.admin(Method::POST, "/api/v1/profiles").json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let body: Value = res.json().await.unwrap();
        body["profile"]["id"].as_str().unwrap().to_string()
    }
}

/// A request with `key` as bearer token (none when empty) and an optional JSON body,
/// answered. No answer may name the server's data dir (checked here, for every call).
pub async fn call(app: &TestApp, method: Method, path: &str, key: &str, body: Option<Value>) -> Answer {
    let builder = app.request(method, path, key);
    let answer = Answer::of(match body {
        Some(b) => builder.json(&b),
        None => builder,
    })
    .await;
    app.assert_no_server_path(&answer.text);
    answer
}

/// Status, headers and exact body bytes of a response.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn of(builder: RequestBuilder) -> Answer {
        let res = builder.send().await.expect("the request is answered");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("a body");
        Answer { status, headers, text }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a Fleeti error: status and exact body.
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(
            (self.status, self.text.as_str()),
            (status, format!("{{\"error\":\"{message}\"}}\n").as_str())
        );
    }
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleetledger"))
}

/// The default org's id (the bootstrap org).
pub fn default_org() -> String {
    fleetledger::domain::org::org_id_for_slug("default").to_string()
}

/// An event appended straight to a store, as the default org.
pub fn test_append(stream: &str, expected: i64, n: usize) -> fleetledger::store::AppendRequest {
    test_append_for(&default_org(), stream, expected, n)
}

pub fn test_append_for(org: &str, stream: &str, expected: i64, n: usize) -> fleetledger::store::AppendRequest {
    fleetledger::store::AppendRequest {
        stream_type: "test".into(),
        stream_id: stream.into(),
        expected: fleetledger::store::ExpectedVersion::Exact(expected),
        events: (0..n)
            .map(|i| fleetledger_events::NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "test.happened".into(),
                schema_version: 1,
                data: serde_json::json!({ "i": i }).into(),
            })
            .collect(),
        metadata: fleetledger_events::Metadata {
            org_id: org.into(),
            actor: fleetledger_events::Actor::system("test"),
            ..Default::default()
        },
        read_models: vec![],
        snapshots: vec![],
    }
}

/// `writers` concurrent writers each appending `each` events to its own stream.
pub async fn write_concurrently(store: std::sync::Arc<dyn fleetledger::store::EventStore>, writers: usize, each: i64) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("w{w}-{}", uuid::Uuid::new_v4().simple());
                for v in 0..each {
                    store.append(test_append(&stream, v, 1)).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: String,
    pub event: String,
    pub data: String,
}

/// Reads SSE events from a streaming response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), or `None` after `wait`.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = Sse {
                    id: String::new(),
                    event: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        e.id = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        e.event = v.trim().into();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        e.data.push_str(v.trim_start());
                    }
                }
                if !e.id.is_empty() {
                    return Some(e);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A JetStream stream and subject prefix of the test's own, deleted afterwards.
pub struct TestNats {
    pub url: String,
    pub stream: String,
    pub prefix: String,
}

impl TestNats {
    /// `None` when NATS tests are not configured; panics when configured and unreachable.
    pub async fn new() -> Option<TestNats> {
        let Ok(url) = std::env::var("FLEETLEDGER_TEST_NATS") else {
            eprintln!("skipped: FLEETLEDGER_TEST_NATS is not set");
            return None;
        };
        async_nats::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("FLEETLEDGER_TEST_NATS is set but NATS is unreachable: {e}"));
        let id = uuid::Uuid::new_v4().simple().to_string();
        Some(TestNats {
            url,
            stream: format!("FLT_{id}"),
            prefix: format!("flt_{id}"),
        })
    }

    pub fn bus(&self) -> fleetledger::config::BusSettings {
        fleetledger::config::BusSettings {
            nats_url: Some(self.url.clone()),
            nats_stream: self.stream.clone(),
            nats_subject_prefix: self.prefix.clone(),
        }
    }

    pub async fn context(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(async_nats::connect(&self.url).await.expect("nats"))
    }

    /// Waits until the stream holds `n` messages (or fails after `wait`).
    pub async fn wait_for_messages(&self, n: u64, wait: std::time::Duration) -> u64 {
        let js = self.context().await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let count = match js.get_stream(&self.stream).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            };
            if count >= n || tokio::time::Instant::now() > deadline {
                return count;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Every message in the stream, in stream order, as (sequence extension, event id).
    pub async fn read_all(&self, n: usize) -> Vec<(i64, String)> {
        use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
        use futures::StreamExt;
        let js = self.context().await;
        let stream = js.get_stream(&self.stream).await.expect("the stream exists");
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Ok(Some(Ok(message))) = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next()).await else {
                break;
            };
            let v: serde_json::Value = serde_json::from_slice(&message.payload).expect("a CloudEvent");
            out.push((v["sequence"].as_i64().unwrap(), v["id"].as_str().unwrap().to_string()));
        }
        out
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(client) = async_nats::connect(&url).await {
                    let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

/// Starts the real server with NATS and the given workers.
pub async fn spawn_app_with(
    store: TestStore,
    bus: fleetledger::config::BusSettings,
    workers: Vec<std::sync::Arc<dyn fleetledger::workers::Worker>>,
) -> TestApp {
    let mut serve = serve_settings();
    serve.bus = bus;
    spawn_configured(store, serve, workers).await
}

/// Starts the real server in this process; it serves until the sender is dropped.
async fn serve_in_background(
    settings: Settings,
    workers: Vec<std::sync::Arc<dyn fleetledger::workers::Worker>>,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = Application::build_with_workers(settings, workers).await.expect("the server starts");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop)
}

/// Starts the real server with the given settings.
pub async fn spawn_configured(
    store: TestStore,
    serve: ServeSettings,
    workers: Vec<std::sync::Arc<dyn fleetledger::workers::Worker>>,
) -> TestApp {
    let (addr, stop) = serve_in_background(
        Settings {
            store: store.settings(),
            serve,
        },
        workers,
    )
    .await;
    let admin_key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .expect("admin.key")
        .trim()
        .to_string();
    TestApp {
        addr,
        admin_key,
        client: reqwest::Client::new(),
        store,
        _stop: stop,
    }
}

/// A `nats-server -js` of the test's own on a free port.
pub struct OwnNats {
    child: Option<std::process::Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnNats {
    /// Not started yet: `start` it (again after `stop`, on the same port and storage).
    pub fn new() -> OwnNats {
        OwnNats {
            child: None,
            port: Self::free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    pub fn start(&mut self) {
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nats-server is installed");
        let child = std::process::Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server listens");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Another connection holding the log's head, as an append transaction does: the store's
/// writer waits at its next transaction, and appends submitted meanwhile queue up.
pub enum HeadHold {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl HeadHold {
    pub async fn take(test_store: &TestStore, backend: Backend) -> HeadHold {
        match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&test_store.url()).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
                HeadHold::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&test_store.url()).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("SELECT position FROM log_head WHERE id FOR UPDATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                HeadHold::Postgres(conn)
            }
        }
    }

    pub async fn release(self) {
        match self {
            HeadHold::Sqlite(mut conn) => sqlx::query("ROLLBACK").execute(&mut conn).await.map(drop).unwrap(),
            HeadHold::Postgres(mut conn) => sqlx::query("ROLLBACK").execute(&mut conn).await.map(drop).unwrap(),
        }
    }
}
