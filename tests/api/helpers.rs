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
        }
    }

    pub fn url(&self) -> String {
        self.settings().url()
    }

    /// Runs the real binary with this store's settings.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleetledger"));
        cmd.arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn");
        if let Some(db) = &self.db {
            cmd.env("DATABASE_URL", &db.url);
        }
        cmd.output().expect("run fleetledger")
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
        listen: "127.0.0.1:0".parse().expect("addr"),
        available_kernels: fleetledger::domain::profile::DEFAULT_AVAILABLE_KERNELS
            .split(',')
            .map(str::to_string)
            .collect(),
        follow_interval_ms: 50,
        shutdown_grace_seconds: 5,
    }
}

/// Starts the real server on a fresh store; `None` when the backend is not configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let store = TestStore::new(backend).await?;
    Some(spawn_on(store).await)
}

pub async fn spawn_on(store: TestStore) -> TestApp {
    let app = Application::build(Settings {
        store: store.settings(),
        serve: serve_settings(),
    })
    .await
    .expect("the app starts");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("the server runs");
    });
    let admin_key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .expect("admin.key is written")
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

impl TestApp {
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
