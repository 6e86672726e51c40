//! The binary: bootstrap, CLI beside a running server, crash safety, graceful shutdown,
//! exit codes, closed pipes and error reports.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    first_start_bootstraps_and_prints_the_admin_key_once,
    keys_from_the_cli_work_beside_a_running_server,
    killing_the_server_mid_write_loses_no_acknowledged_write,
    sigterm_finishes_in_flight_requests,
    key_use_is_recorded_in_batches,
    the_worker_command_runs_until_sigterm,
    replay_prints_states_and_events,
    tail_follow_starts_at_the_head_and_reads_history_on_request,
    commands_other_than_serve_migrate_and_import_refuse_a_missing_store,
);

/// Scenarios where the backend does not matter run on SQLite.
macro_rules! sqlite_only {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            }
        )*
    };
}

sqlite_only!(
    log_lines_carry_the_request_id,
    a_closed_stdout_ends_a_command_quietly,
    an_unsupported_database_url_is_refused,
    an_error_names_each_cause_once,
);

async fn key_use_is_recorded_in_batches(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let key = app.store.create_key("default", "viewer");
    let line = |list: &str| list.lines().find(|l| l.contains("viewer")).unwrap().to_string();
    assert!(line(&String::from_utf8(app.store.cli(&["keys", "list"]).stdout).unwrap()).contains("never"));
    for _ in 0..20 {
        assert_eq!(Answer::of(app.request(Method::GET, "/api/v1/profiles", &key)).await.status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let list = String::from_utf8(app.store.cli(&["keys", "list"]).stdout).unwrap();
        if !line(&list).contains("never") {
            break;
        }
        assert!(Instant::now() < deadline, "last use is flushed within seconds: {list}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn the_worker_command_runs_until_sigterm(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    assert!(store.cli(&["migrate"]).status.success());
    let mut cmd = Command::new(binary());
    cmd.arg("--data-dir")
        .arg(store.dir.path())
        .arg("worker")
        .env_remove("DATABASE_URL")
        .env_remove("NATS_URL")
        .stderr(Stdio::piped());
    if let Some(db) = &store.db {
        cmd.env("DATABASE_URL", &db.url);
    }
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(child.try_wait().unwrap().is_none(), "the worker process keeps running");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success(), "and stops cleanly on SIGTERM");
}

async fn replay_prints_states_and_events(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    for n in 0..3 {
        Answer::of(
            app.admin(Method::PUT, &format!("/api/v1/profiles/{id}"))
                .json(&json!({"config": {"n": n}})),
        )
        .await;
    }
    let stream = format!("profile/{id}");
    let out = app
        .store
        .cli(&["replay", "--stream", &stream, "--to-version", "2", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (state["version"].as_i64(), state["state"]["config"].clone()),
        (Some(2), json!({"n": 0.0}))
    );
    let table = String::from_utf8(app.store.cli(&["replay", "--stream", &stream]).stdout).unwrap();
    assert_eq!(table.lines().count(), 4, "{table}");
    let early = app
        .store
        .cli(&["replay", "--stream", &stream, "--as-of", "2000-01-01T00:00:00Z", "--format", "json"]);
    assert!(!early.status.success(), "nothing existed then");
    // Past the stream's end is an error naming where the stream is, not its last state.
    for format in ["json", "table"] {
        let past = app
            .store
            .cli(&["replay", "--stream", &stream, "--to-version", "99", "--format", format]);
        let said = String::from_utf8_lossy(&past.stderr);
        assert_eq!(past.status.code(), Some(1), "{said}");
        assert!(past.stdout.is_empty(), "nothing printed");
        assert_eq!(said, format!("error: {stream} is at version 4; --to-version 99 is past its end\n"));
    }
}

/// Runs `tail` with `args` and answers its first `n` lines (then stops it), creating a
/// profile every 200 ms meanwhile so that a follower has something new to print.
async fn tail_lines(app: &TestApp, args: &[&str], n: usize) -> Vec<String> {
    let mut child = app.store.command(args).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while lines.len() < n {
        assert!(Instant::now() < deadline, "tail printed {lines:?}");
        app.create_profile(json!({"name": "new"})).await;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines.truncate(n);
    lines
}

fn position(line: &str) -> i64 {
    line.split_whitespace().next().unwrap().parse().unwrap()
}

async fn tail_follow_starts_at_the_head_and_reads_history_on_request(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.create_profile(json!({"name": "old"})).await;
    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let head = log.head().await.unwrap();
    assert!(head >= 4);

    let followed = tail_lines(&app, &["tail", "--follow"], 1).await;
    assert!(
        position(&followed[0]) > head && followed[0].contains("profile.created"),
        "--follow starts at the head, after {head}: {followed:?}"
    );
    let from_start = tail_lines(&app, &["tail", "--follow", "--from-start"], 2).await;
    assert_eq!(from_start.iter().map(|l| position(l)).collect::<Vec<_>>(), [1, 2], "{from_start:?}");
    let after = tail_lines(&app, &["tail", "--follow", "--after", "2"], 1).await;
    assert_eq!(position(&after[0]), 3, "{after:?}");
    // Without --follow, --after still starts the printout and the command ends.
    let out = app.store.cli(&["tail", "--after", "2"]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().next().map(position), Some(3), "{printed}");
    assert!(
        !app.store.cli(&["tail", "--after", "2", "--from-start"]).status.success(),
        "one start only"
    );
}

async fn commands_other_than_serve_migrate_and_import_refuse_a_missing_store(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let data_dir = store.dir.path().join("missing");
    // On PostgreSQL: a database that does not exist, named with a password.
    let missing_db = store.db.as_ref().map(|db| {
        let mut url = url::Url::parse(&db.url).unwrap();
        url.set_path(&format!("{}_missing", url.path()));
        url.set_password(Some("s3cret")).unwrap();
        url.to_string()
    });
    let run = |args: &[&str]| {
        let mut cmd = Command::new(binary());
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("NATS_URL")
            .env_remove("FLEETLEDGER_MASTER_KEY")
            .env("RUST_LOG", "warn");
        if let Some(url) = &missing_db {
            cmd.env("DATABASE_URL", url);
        }
        cmd.output().unwrap()
    };
    let named = match &missing_db {
        Some(url) => url.replace("s3cret", "***"),
        None => format!("{}", data_dir.join("fleetledger.db").display()),
    };
    for args in [
        &["verify"][..],
        &["tail"],
        &["tail", "--follow"],
        &["replay"],
        &["export", "--all"],
        &["rebuild"],
        &["keys", "list"],
        &["keys", "create", "--org", "default", "--role", "admin"],
        &["orgs", "list"],
        &["orgs", "create", "acme"],
        &["workspaces", "create", "default", "w"],
        &["secrets", "rotate-master"],
        &["worker"],
        &["dlq", "list"],
        &["dlq", "retry", "--all"],
    ] {
        let out = run(args);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains(&format!("there is no store at {named}")),
            "{args:?} names {named}: {said}"
        );
        assert!(!said.contains("s3cret"), "{args:?} masks the password: {said}");
        assert!(!data_dir.exists(), "{args:?} created nothing");
    }
    if missing_db.is_none() {
        // An existing but empty data dir holds no store either.
        std::fs::create_dir(&data_dir).unwrap();
        assert_eq!(run(&["verify"]).status.code(), Some(2));
        assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 0, "nothing created");
        // migrate makes the store, and then the others open it.
        assert!(run(&["migrate"]).status.success());
        let verified = run(&["verify"]);
        assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    }
}

async fn a_closed_stdout_ends_a_command_quietly(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    let stream = format!("profile/{id}");
    for args in [
        &["tail"][..],
        &["tail", "--follow", "--from-start"],
        &["replay"],
        &["replay", "--stream", &stream, "--format", "json"],
        &["export", "--all"],
        &["keys", "list"],
        &["orgs", "list"],
        &["verify"],
        &["dlq", "list"],
        &["dlq", "list", "--json"],
    ] {
        // The reader is gone before the command writes anything, like `| head` once it has
        // its lines.
        let mut child = app
            .store
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!((out.status.code(), said.as_ref()), (Some(0), ""), "{args:?} ends quietly");
    }
}

async fn an_unsupported_database_url_is_refused(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    for command in [&["verify"][..], &["serve", "--listen", "127.0.0.1:0"], &["migrate"]] {
        let out = Command::new(binary())
            .arg("--data-dir")
            .arg(store.dir.path())
            .args(command)
            .env("DATABASE_URL", "mysql://user:hunter2@db.example/fleet")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "error: unsupported DATABASE_URL scheme mysql; use postgres:// or postgresql:// (or leave it unset for SQLite in --data-dir)\n"
        );
        assert_eq!(
            std::fs::read_dir(store.dir.path()).unwrap().count(),
            0,
            "{command:?} created nothing"
        );
    }
}

/// A PostgreSQL server that does not answer is named (password masked) with the reason,
/// exit 2, rather than "pool timed out".
#[tokio::test]
async fn an_unreachable_postgres_is_named_with_its_reason() {
    let out = Command::new(binary())
        .arg("verify")
        .env("DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:1/fleet")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach PostgreSQL at postgres://postgres:***@127.0.0.1:1/fleet"),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

async fn an_error_names_each_cause_once(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = store.cli(&["serve", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    let last = said.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("error: cannot listen on {addr}: ")), "{said}");
    assert_eq!(last.matches("Address already in use").count(), 1, "{said}");
}

/// A `fleetledger serve` process and the address it reports.
pub struct Server {
    pub child: Child,
    pub addr: String,
    stdout: String,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
}

pub fn start_server(store: &TestStore) -> Server {
    start_server_with(store, &[])
}

/// `serve` with extra environment variables.
pub fn start_server_with(store: &TestStore, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(binary());
    // Scenarios here write as fast as they can; the per-key limit has its own test.
    cmd.env("FLEETLEDGER_RATE_LIMIT_PER_SEC", "1000000")
        .env("FLEETLEDGER_RATE_LIMIT_BURST", "1000000");
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(store.dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(db) = &store.db {
        cmd.env("DATABASE_URL", &db.url);
    }
    let mut child = cmd.spawn().expect("serve starts");
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let (stderr, stdout) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
    let sink = logs.clone();
    let log_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(said) = line.split("listening on http://").nth(1) {
                // Text or JSON lines: the address is what follows, up to its last digit.
                let addr = said.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).next();
                let _ = tx.send(addr.unwrap_or_default().to_string());
            }
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let sink = printed.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("serve reports its address");
    // The bootstrap lines are printed before `listening on`.
    std::thread::sleep(Duration::from_millis(50));
    let stdout = printed.lock().unwrap().clone();
    Server {
        child,
        addr,
        stdout,
        logs,
        log_reader: Some(log_reader),
    }
}

impl Server {
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the process logged, once it has exited.
    pub fn logs_after_exit(&mut self) -> String {
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        self.logs.lock().unwrap().clone()
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("serve exits")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line logged while answering a request names it: the caller's `X-Request-Id`, or
/// the one the server gave it (and sent back), in text and in JSON lines.
async fn log_lines_carry_the_request_id(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else {
        return;
    };
    for format in ["text", "json"] {
        let mut server = start_server_with(&store, &[("RUST_LOG", "info,access=info"), ("FLEETLEDGER_LOG_FORMAT", format)]);
        let client = reqwest::Client::new();
        let named = format!("trace-{format}");
        let res = client
            .get(server.url("/api/v1/profiles/nope"))
            .header("x-request-id", &named)
            .send()
            .await
            .unwrap();
        assert_eq!(
            (res.status().as_u16(), res.headers()["x-request-id"].to_str().unwrap()),
            (401, named.as_str())
        );
        let res = client.get(server.url("/api/v1/profiles/nope")).send().await.unwrap();
        let given = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&given).is_ok(), "{given}");
        assert!(server.terminate().success());
        let logs = server.logs_after_exit();
        for id in [&named, &given] {
            let answered: Vec<&str> = logs.lines().filter(|l| l.contains("answered") && l.contains(id.as_str())).collect();
            assert_eq!(answered.len(), 1, "one access line names {id}: {logs}");
            if format == "json" {
                let line: serde_json::Value = serde_json::from_str(answered[0]).unwrap();
                assert_eq!(
                    (&line["request_id"], &line["fields"]["message"], &line["fields"]["status"]),
                    (&json!(id), &json!("answered"), &json!(401)),
                    "{line}"
                );
            } else {
                assert!(
                    answered[0].contains(&format!(" INFO request{{request_id={id}}}: access: answered ")),
                    "{}",
                    answered[0]
                );
                assert!(answered[0].contains("status=401"), "{}", answered[0]);
            }
        }
        // Lines not written while answering a request name none.
        assert!(
            logs.lines().any(|l| l.contains("listening on") && !l.contains("request_id")),
            "{logs}"
        );
    }
}

async fn first_start_bootstraps_and_prints_the_admin_key_once(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else {
        return;
    };
    let mut server = start_server(&store);
    let key_file = store.dir.path().join("admin.key");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_string();
    assert!(key.starts_with("flk_"));
    assert!(server.stdout.contains(&key), "the key is printed: {}", server.stdout);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    if store.db.is_none() {
        // The embedded database holds key hashes and wrapped data keys: its owner's only.
        for file in ["fleetledger.db", "fleetledger.db-wal"] {
            let mode = std::fs::metadata(store.dir.path().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/profiles"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(server.terminate().success());
    let orgs = String::from_utf8(store.cli(&["orgs", "list"]).stdout).unwrap();
    assert!(orgs.contains("default") && orgs.lines().count() == 2, "{orgs}");
    // A second start prints no key.
    let mut again = start_server(&store);
    assert!(!again.stdout.contains("flk_"), "{}", again.stdout);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    assert!(again.terminate().success());
}

async fn keys_from_the_cli_work_beside_a_running_server(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.store.create_key("default", "member");
    assert_eq!(Answer::of(app.request(Method::GET, "/api/v1/profiles", &key)).await.status, 200);
    let list = String::from_utf8(app.store.cli(&["keys", "list"]).stdout).unwrap();
    assert!(!list.contains(&key), "tokens are never listed");
    let key_id = list
        .lines()
        .find(|l| l.contains("member"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(list.contains(&key[..12]));
    assert!(app.store.cli(&["keys", "revoke", &key_id]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = Answer::of(app.request(Method::GET, "/api/v1/profiles", &key)).await;
        if a.status == 401 {
            a.assert_error(401, "Invalid API key");
            break;
        }
        assert!(Instant::now() < deadline, "a revoked key stops working");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let revoked = String::from_utf8(app.store.cli(&["keys", "list"]).stdout).unwrap();
    assert!(revoked.contains("revoked"));
    // Each key's organization is listed by its slug.
    app.store.create_org("other");
    app.store.create_key("other", "viewer");
    let list = String::from_utf8(app.store.cli(&["keys", "list"]).stdout).unwrap();
    let columns = |line: &str| line.split_whitespace().take(2).map(str::to_string).collect::<Vec<_>>();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(columns(lines[0]), ["ID", "ORG"], "{list}");
    assert!(lines.iter().any(|l| l.contains("member") && columns(l)[1] == "default"), "{list}");
    assert!(lines.iter().any(|l| l.contains("viewer") && columns(l)[1] == "other"), "{list}");
    assert!(!app.store.cli(&["orgs", "create", "default"]).status.success(), "slugs are unique");
    assert!(!app
        .store
        .cli(&["keys", "create", "--org", "default", "--role", "root"])
        .status
        .success());
    assert!(app.store.cli(&["workspaces", "create", "default", "team-a"]).status.success());
    assert!(String::from_utf8(app.store.cli(&["orgs", "list"]).stdout)
        .unwrap()
        .contains("default,team-a"));
    // Key issue and revoke are in the log.
    let store = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let types: Vec<String> = store
        .read_all(0, 100, Some("key"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(types.contains(&"key.issued".to_string()) && types.contains(&"key.revoked".to_string()));
}

async fn killing_the_server_mid_write_loses_no_acknowledged_write(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else {
        return;
    };
    let server = start_server(&store);
    let key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(server.url("/api/v1/profiles"))
        .bearer_auth(&key)
        .json(&json!({"name": "P"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["profile"]["id"].as_str().unwrap().to_string();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (client, url, key, acked, stop) = (
                client.clone(),
                server.url(&format!("/api/v1/profiles/{id}")),
                key.clone(),
                acked.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let Ok(res) = client
                        .put(&url)
                        .bearer_auth(&key)
                        .json(&json!({"config": {"w": w, "n": n}}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if res.status() != 200 {
                        break;
                    }
                    let version: i64 = res.headers()["etag"].to_str().unwrap().trim_matches('"').parse().unwrap();
                    let Ok(body) = res.json::<serde_json::Value>().await else {
                        break;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push((version, body["profile"]["config_hash"].as_str().unwrap().to_string()));
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    let log = fleetledger::store::connect(&store.url()).await.unwrap();
    let events = log.read_stream(&id, 1).await.unwrap();
    for (version, hash) in &acked {
        let event = events
            .iter()
            .find(|e| e.stream_version == *version)
            .unwrap_or_else(|| panic!("acknowledged version {version} is lost"));
        assert_eq!(event.data["config_hash"].as_str(), Some(hash.as_str()));
    }
    let verified = fleetledger::store::verify_log(log.as_ref(), |_| {}).await.unwrap();
    assert!(verified.ok, "{verified:?}");
    eprintln!(
        "{} acknowledged writes survived SIGKILL ({} events in the stream)",
        acked.len(),
        events.len()
    );
}

async fn sigterm_finishes_in_flight_requests(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else {
        return;
    };
    let mut server = start_server(&store);
    let key = std::fs::read_to_string(store.dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let created: serde_json::Value = reqwest::Client::new()
        .post(server.url("/api/v1/profiles"))
        .bearer_auth(&key)
        .json(&json!({"name": "P"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["profile"]["id"].as_str().unwrap().to_string();
    let body = r#"{"config":{"during":"shutdown"}}"#;
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    write!(
        stream,
        "PUT /api/v1/profiles/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nX-Request-Id: inflight-77\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"during\":\"shutdown\""));
    assert!(server.child.wait().unwrap().success(), "serve exits cleanly");
    let logs = server.logs_after_exit();
    assert!(logs.contains("request_id=inflight-77"), "log lines carry the request id: {logs}");
}
