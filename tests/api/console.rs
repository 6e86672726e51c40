//! The web console without a browser: its session cookie, CSRF refusals, what viewers and
//! scoped keys may see and do, the Content-Security-Policy on every answer, and that no
//! page carries a secret. (`console_browser` drives it in Chromium.)

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_app, spawn_configured, Answer, Backend, SseReader, TestApp, TestStore};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser's side of a console session, by hand: its cookie and CSRF token.
pub struct Console<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    /// `name=value` of the session cookie.
    pub cookie: String,
    pub csrf: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The `csrf` field's value in a page's first form.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_string()
}

/// The `name=value` part of the `Set-Cookie` for `name`, and the whole header.
pub fn set_cookie(answer: &Answer, name: &str) -> Option<(String, String)> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_string(), v.to_string()))
}

/// HTML with the entities the templates write decoded.
pub fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub const SESSION: &str = "__Host-fleetledger-session";
const SIGN_IN: &str = "__Host-fleetledger-sign-in";

/// The sign-in form's answer to `key`, posted as a browser would.
async fn post_sign_in(app: &TestApp, key: &str) -> Answer {
    let client = no_redirects();
    let form = Answer::of(client.get(app.url("/ui/"))).await;
    assert_eq!(form.status, 200, "{}", form.text);
    let (cookie, _) = set_cookie(&form, SIGN_IN).expect("the sign-in form sets its CSRF cookie");
    let csrf = csrf_in(&form.text);
    Answer::of(
        client
            .post(app.url("/ui/"))
            .header("cookie", cookie)
            .form(&[("key", key), ("csrf", &csrf), ("next", "/ui/resources")]),
    )
    .await
}

impl<'a> Console<'a> {
    /// Signs in with `key` through the form, as a browser would.
    pub async fn sign_in(app: &'a TestApp, key: &str) -> Console<'a> {
        let answer = post_sign_in(app, key).await;
        assert_eq!(answer.status, 303, "{}", answer.text);
        let (cookie, _) = set_cookie(&answer, SESSION).expect("a session cookie");
        let mut console = Console {
            app,
            client: no_redirects(),
            cookie,
            csrf: String::new(),
        };
        let page = console.get("/ui/resources").await;
        assert_eq!(page.status, 200, "{}", page.text);
        console.csrf = csrf_in(&page.text);
        console
    }

    /// A page as the browser reads it: entities decoded (templates escape `/` too), so
    /// what it says can be searched for as written.
    pub async fn get(&self, path: &str) -> Answer {
        let mut answer = self.get_raw(path).await;
        answer.text = unescape(&answer.text);
        self.app.assert_no_server_path(&answer.text);
        answer
    }

    /// A page's bytes as sent.
    pub async fn get_raw(&self, path: &str) -> Answer {
        Answer::of(self.client.get(self.app.url(path)).header("cookie", &self.cookie)).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        Answer::of(self.client.post(self.app.url(path)).header("cookie", &self.cookie).form(form)).await
    }

    /// A restore of `version` through the console's form, with this session's token.
    pub async fn restore(&self, stream_type: &str, id: &str, version: i64) -> Answer {
        let version = version.to_string();
        let path = format!("/ui/resources/{stream_type}/{id}/restore");
        self.post(&path, &[("csrf", &self.csrf), ("version", &version), ("reason", "test")])
            .await
    }
}

async fn versions(app: &TestApp, stream_type: &str, id: &str) -> usize {
    let answer = call(
        app,
        Method::GET,
        &format!("/api/v1/ledger/resources/{stream_type}/{id}/revisions"),
        &app.admin_key,
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["revisions"].as_array().unwrap().len()
}

async fn put_config(app: &TestApp, id: &str, key: &str, config: Value) {
    let answer = call(
        app,
        Method::PUT,
        &format!("/api/v1/profiles/{id}"),
        key,
        Some(json!({ "config": config })),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

async fn sign_in_sets_a_strict_http_only_session_cookie_and_sign_out_revokes_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let answer = post_sign_in(&app, &app.admin_key).await;
    assert_eq!((answer.status, answer.header("location")), (303, Some("/ui/resources")));
    let (cookie, header) = set_cookie(&answer, SESSION).expect("a session cookie");
    let attributes: Vec<&str> = header.split(';').map(str::trim).skip(1).collect();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&flag), "{flag} is missing: {header}");
    }
    assert!(attributes.iter().any(|a| a.starts_with("Max-Age=")), "{header}");
    assert!(!header.contains(&app.admin_key), "the cookie is not the key");
    let token = cookie.split_once('=').unwrap().1.to_string();
    assert_eq!(token.len(), 43, "a random 256-bit token");

    // The store keeps only the token's hash.
    let rows = session_rows(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, fleetledger::auth::hash_token(&token));
    assert!(!format!("{rows:?}").contains(&token) && !format!("{rows:?}").contains(&app.admin_key));

    // A wrong key signs nothing in (and counts as a failed login).
    let wrong = post_sign_in(&app, "flk_wrong").await;
    assert_eq!(wrong.status, 401);
    assert!(set_cookie(&wrong, SESSION).is_none());
    assert!(wrong.text.contains("That key does not sign in."));

    // Signed out, a page leads to the sign-in form and back.
    let client = no_redirects();
    let away = Answer::of(client.get(app.url("/ui/resources?type=profile"))).await;
    assert_eq!(
        (away.status, away.header("location")),
        (303, Some("/ui/?next=%2Fui%2Fresources%3Ftype%3Dprofile"))
    );
    let console = Console::sign_in(&app, &app.admin_key).await;
    assert_eq!(console.get("/ui/").await.header("location"), Some("/ui/resources"));
    let out = console.post("/ui/sign-out", &[("csrf", &console.csrf)]).await;
    assert_eq!((out.status, out.header("location")), (303, Some("/ui/")));
    let (_, cleared) = set_cookie(&out, SESSION).expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie opens nothing any more.
    let after = console.get("/ui/resources").await;
    assert_eq!((after.status, after.header("location")), (303, Some("/ui/?next=%2Fui%2Fresources")));

    // A revoked key's sessions end at once.
    let member = app.store.create_key("default", "member");
    let revoked = Console::sign_in(&app, &member).await;
    let key_id = call(
        &app,
        Method::GET,
        "/api/v1/ledger/events?stream_type=key&limit=1000",
        &app.admin_key,
        None,
    )
    .await
    .json()["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["stream_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(app.store.cli(&["keys", "revoke", &key_id]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let page = revoked.get("/ui/resources").await;
        if page.status == 303 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a revoked key's session still opens pages");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `console_sessions` as stored: (token_hash, key_id).
async fn session_rows(app: &TestApp) -> Vec<(String, String)> {
    let q = "SELECT token_hash, key_id FROM console_sessions";
    match &app.store.db {
        None => {
            let pool = sqlx::SqlitePool::connect(&app.store.url()).await.unwrap();
            sqlx::query_as(q).fetch_all(&pool).await.unwrap()
        }
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_as(q).fetch_all(&pool).await.unwrap()
        }
    }
}

async fn failed_sign_ins_are_throttled_like_any_failed_login(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut serve = serve_settings();
    serve.guards.login_failure_burst = 2;
    serve.guards.login_failures_per_minute = 1;
    let app = spawn_configured(store, serve, vec![]).await;
    for _ in 0..3 {
        assert_eq!(post_sign_in(&app, "flk_guess").await.status, 401);
    }
    // Past the burst even the right key is refused, so a hit cannot be told from a miss.
    let refused = post_sign_in(&app, &app.admin_key).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert!(refused.header("retry-after").is_some());
    assert!(set_cookie(&refused, SESSION).is_none());
    // The API from that address too: the failures were counted as the API counts its own.
    let api = call(&app, Method::GET, "/api/v1/ledger/events", &app.admin_key, None).await;
    assert_eq!(api.status, 429);
}

async fn posts_need_the_sessions_csrf_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    put_config(&app, &id, &app.admin_key, json!({"packages": ["vim"]})).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let other = Console::sign_in(&app, &app.admin_key).await;
    assert_ne!(console.csrf, other.csrf, "each session has its own token");
    let path = format!("/ui/resources/profile/{id}/restore");
    for form in [
        vec![("version", "1"), ("reason", "r")],
        vec![("csrf", ""), ("version", "1"), ("reason", "r")],
        vec![("csrf", "0000"), ("version", "1"), ("reason", "r")],
        vec![("csrf", other.csrf.as_str()), ("version", "1"), ("reason", "r")],
    ] {
        let answer = console.post(&path, &form).await;
        assert_eq!(answer.status, 403, "{form:?}: {}", answer.text);
        assert!(answer.text.contains("CSRF"), "{}", answer.text);
    }
    // Sign-out is a POST like any other.
    assert_eq!(console.post("/ui/sign-out", &[("csrf", "nope")]).await.status, 403);
    assert_eq!(console.get("/ui/resources").await.status, 200, "the session is still open");
    // Another site's form is refused whatever it carries.
    let cross = Answer::of(
        no_redirects()
            .post(app.url(&path))
            .header("cookie", &console.cookie)
            .header("origin", "http://evil.example")
            .form(&[("csrf", console.csrf.as_str()), ("version", "1"), ("reason", "r")]),
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.text);
    // The sign-in form needs its own double-submitted token.
    let forged = Answer::of(
        no_redirects()
            .post(app.url("/ui/"))
            .form(&[("key", app.admin_key.as_str()), ("csrf", "x")]),
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(set_cookie(&forged, SESSION).is_none());
    assert_eq!(versions(&app, "profile", &id).await, 2, "nothing was restored");

    // With the token, the same restore goes through the audit restore.
    let answer = console.restore("profile", &id, 1).await;
    assert_eq!(answer.status, 303, "{}", answer.text);
    assert_eq!(
        answer.header("location"),
        Some(format!("/ui/resources/profile/{id}?version=3&restored=1").as_str())
    );
    assert_eq!(versions(&app, "profile", &id).await, 3);
    // A restore without a reason asks for one, and records nothing.
    let reasonless = console.post(&path, &[("csrf", &console.csrf), ("version", "1")]).await;
    assert_eq!(reasonless.status, 422, "{}", reasonless.text);
    assert!(reasonless.text.contains("Say why"));
    // One confirmed against a version that is no longer current is refused.
    let stale = console
        .post(
            &path,
            &[("csrf", &console.csrf), ("version", "1"), ("reason", "r"), ("expected", "2")],
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert_eq!(versions(&app, "profile", &id).await, 3);
}

async fn viewers_see_no_restore_control_and_are_refused_a_restore(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    put_config(&app, &id, &app.admin_key, json!({"packages": ["vim"]})).await;
    let viewer = app.store.create_key("default", "viewer");
    let member = app.store.create_key("default", "member");
    let timeline = format!("/ui/resources/profile/{id}?version=1");

    let viewing = Console::sign_in(&app, &viewer).await;
    let page = viewing.get(&timeline).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("State at version 1"));
    assert!(!page.text.contains("/restore"), "a viewer sees no restore control");
    assert_eq!(
        viewing.get(&format!("/ui/resources/profile/{id}/restore?version=1")).await.status,
        403
    );
    let refused = viewing.restore("profile", &id, 1).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("restoring needs a member or admin key"));
    assert_eq!(versions(&app, "profile", &id).await, 2);

    let editing = Console::sign_in(&app, &member).await;
    let page = editing.get(&timeline).await;
    assert!(page.text.contains(&format!("/ui/resources/profile/{id}/restore?version=1")));
    assert!(
        !editing.get(&format!("/ui/resources/profile/{id}")).await.text.contains("/restore?"),
        "no restore of the current version"
    );
    let confirm = editing.get(&format!("/ui/resources/profile/{id}/restore?version=1")).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text.contains("name=\"reason\"") && confirm.text.contains("Restore version 1"));
    assert_eq!(editing.restore("profile", &id, 1).await.status, 303);
    assert_eq!(versions(&app, "profile", &id).await, 3);
}

async fn instance(app: &TestApp, name: &str) -> String {
    let answer = call(
        app,
        Method::POST,
        "/v1/instances",
        &app.admin_key,
        Some(json!({"name": name, "model_provider": "anthropic", "openclaw_version": "2026.9.6"})),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json()["id"].as_str().unwrap().to_string()
}

async fn with_workers(backend: Backend) -> Option<TestApp> {
    let store = TestStore::new(backend).await?;
    let serve = serve_settings();
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    Some(spawn_configured(store, serve, workers).await)
}

async fn a_scoped_key_sees_only_its_streams(backend: Backend) {
    let Some(app) = with_workers(backend).await else { return };
    let mine = instance(&app, "mine").await;
    let theirs = instance(&app, "theirs").await;
    let profile = app.create_profile(json!({"name": "P"})).await;
    let scoped = call(
        &app,
        Method::POST,
        "/v1/keys",
        &app.admin_key,
        Some(json!({"name": "ci", "instance_ids": [mine], "permissions": ["read"]})),
    )
    .await;
    assert_eq!(scoped.status, 201, "{}", scoped.text);
    let scoped = scoped.json()["raw_key"].as_str().unwrap().to_string();
    let console = Console::sign_in(&app, &scoped).await;

    let list = console.get("/ui/resources").await;
    assert!(list.text.contains(&mine), "its instance is listed");
    for hidden in [&theirs, &profile] {
        assert!(!list.text.contains(hidden.as_str()), "{hidden} is listed for a scoped key");
    }
    assert_eq!(console.get(&format!("/ui/resources/instance/{mine}")).await.status, 200);
    for (stream_type, id) in [("instance", &theirs), ("profile", &profile)] {
        for path in [
            format!("/ui/resources/{stream_type}/{id}"),
            format!("/ui/resources/{stream_type}/{id}/diff?from=1&to=1"),
            format!("/ui/resources/{stream_type}/{id}/restore?version=1"),
        ] {
            assert_eq!(console.get(&path).await.status, 404, "{path}");
        }
    }
    // Read-only on its instance: no restore there either.
    assert!(!console
        .get(&format!("/ui/resources/instance/{mine}?version=1"))
        .await
        .text
        .contains("/restore?"));
    assert_eq!(console.restore("instance", &mine, 1).await.status, 403);
    let feed = console.get("/ui/events").await;
    assert!(feed.text.contains(&mine) && !feed.text.contains(&theirs) && !feed.text.contains(&profile));
    assert!(!feed.text.contains("/ui/resources/key/"), "no key material");
    assert_eq!(console.get("/ui/verify").await.status, 403, "verifying the org is for admins");

    // The live stream from the start of the log holds only its instance's events.
    let stream = reqwest::Client::new()
        .get(app.url("/ui/events/stream?after=0"))
        .header("cookie", &console.cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut reader = SseReader::new(stream);
    let mut seen = Vec::new();
    while let Some(event) = reader.next(std::time::Duration::from_millis(1500)).await {
        if event.event == "ledger" {
            seen.push(serde_json::from_str::<Value>(&event.data).unwrap());
        }
    }
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|e| e["stream_type"] == "instance" && e["stream_id"] == mine.as_str()),
        "{seen:?}"
    );
}

async fn every_answer_carries_the_content_security_policy(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    put_config(&app, &id, &app.admin_key, json!({"packages": ["vim"]})).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let pages = [
        "/ui/".to_string(),
        "/ui/resources".to_string(),
        format!("/ui/resources/profile/{id}"),
        format!("/ui/resources/profile/{id}?version=1"),
        format!("/ui/resources/profile/{id}/diff?from=1&to=2"),
        format!("/ui/resources/profile/{id}/restore?version=1"),
        "/ui/events".to_string(),
        "/ui/verify".to_string(),
        "/ui/resources/profile/nope".to_string(),
        "/ui/assets/console.css".to_string(),
        "/ui/assets/htmx.min.js".to_string(),
    ];
    let handler = regex::Regex::new(r#"\son[a-z]+="#).unwrap();
    for path in &pages {
        let answer = console.get_raw(path).await;
        assert!(answer.status < 500, "{path}: {}", answer.status);
        assert_eq!(answer.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
        if answer.header("content-type").is_some_and(|t| t.starts_with("text/html")) {
            assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
            // Nothing inline for the policy to refuse: scripts load from files, no styles.
            for (at, _) in answer.text.match_indices("<script") {
                assert!(
                    answer.text[at..].starts_with("<script src=\"/ui/assets/"),
                    "{path}: an inline script"
                );
            }
            assert!(
                !answer.text.contains(" style=") && !answer.text.contains("<style"),
                "{path}: an inline style"
            );
            assert!(!handler.is_match(&answer.text), "{path}: an inline event handler");
        }
    }
    // Signed out, the sign-in form is a page like the others.
    let signed_out = Answer::of(no_redirects().get(app.url("/ui/"))).await;
    assert_eq!(signed_out.header("content-security-policy"), Some(CSP));
    let missing = console.get("/ui/resources/profile/nope").await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("no resource profile/nope"));
    let asset = console.get("/ui/assets/console.js").await;
    assert_eq!(asset.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(asset.header("cache-control").is_some_and(|c| c.contains("immutable")));
}

async fn no_page_shows_a_gateway_token(backend: Backend) {
    let Some(app) = with_workers(backend).await else { return };
    let first = format!("gw-first-{}", uuid::Uuid::new_v4().simple());
    let second = format!("gw-second-{}", uuid::Uuid::new_v4().simple());
    let gateway = call(
        &app,
        Method::POST,
        "/api/v1/gateways",
        &app.admin_key,
        Some(json!({"name": "edge", "url": "local", "token": first, "workspace_root": "claws"})),
    )
    .await;
    assert_eq!(gateway.status, 200, "{}", gateway.text);
    let gateway = gateway.json()["id"].as_str().unwrap().to_string();
    let patched = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/gateways/{gateway}"),
        &app.admin_key,
        Some(json!({"token": second})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let board = call(
        &app,
        Method::POST,
        "/api/v1/boards",
        &app.admin_key,
        Some(json!({"name": "Ops", "gateway_id": gateway})),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = call(
        &app,
        Method::POST,
        "/api/v1/agents",
        &app.admin_key,
        Some(json!({"name": "Lead", "board_id": board})),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let console = Console::sign_in(&app, &app.admin_key).await;
    let mut pages = vec![
        "/ui/resources".to_string(),
        "/ui/resources?q=edge".to_string(),
        "/ui/events".to_string(),
        "/ui/verify".to_string(),
        format!("/ui/resources/gateway/{gateway}/diff?from=1&to=2"),
        format!("/ui/resources/gateway/{gateway}/restore?version=1"),
    ];
    for version in 1..=2 {
        pages.push(format!("/ui/resources/gateway/{gateway}?version={version}"));
    }
    let agent_versions = versions(&app, "mc_agent", &agent).await;
    for version in 1..=agent_versions {
        pages.push(format!("/ui/resources/mc_agent/{agent}?version={version}"));
    }
    for path in &pages {
        let page = console.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        for secret in [&first, &second] {
            assert!(!page.text.contains(secret.as_str()), "{path} shows a gateway token");
        }
        assert!(!page.text.contains("ciphertext") && !page.text.contains("key_hash"), "{path}");
    }
    let shown = console.get(&format!("/ui/resources/gateway/{gateway}?version=1")).await.text;
    assert!(shown.contains("\"token\": \"***\""), "the event's token shows as ***");
    // Nor does the live stream, from the start of the log.
    let stream = reqwest::Client::new()
        .get(app.url("/ui/events/stream?after=0"))
        .header("cookie", &console.cookie)
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(stream);
    let mut count = 0;
    while let Some(event) = reader.next(std::time::Duration::from_millis(1500)).await {
        assert!(!event.data.contains(&first) && !event.data.contains(&second), "{}", event.data);
        count += 1;
    }
    assert!(count > 5, "the stream sent the log");
}

async fn verify_names_the_first_bad_event(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    put_config(&app, &id, &app.admin_key, json!({"secret": "alpha"})).await;
    put_config(&app, &id, &app.admin_key, json!({"secret": "beta"})).await;
    let other = app.create_profile(json!({"name": "Q"})).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let ok = console.get("/ui/verify").await;
    assert_eq!(ok.status, 200);
    assert!(ok.text.contains("streams are intact"), "{}", ok.text);

    let log = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let target = log.read_stream(&id, 2).await.unwrap()[0].clone();
    match &app.store.db {
        None => {
            let pool = sqlx::SqlitePool::connect(&app.store.url()).await.unwrap();
            sqlx::query("DROP TRIGGER events_no_update").execute(&pool).await.unwrap();
            sqlx::query("UPDATE events SET data = replace(data, 'alpha', 'alphx') WHERE event_id = ?")
                .bind(target.event_id.to_string())
                .execute(&pool)
                .await
                .unwrap();
        }
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET data = replace(data::text, 'alpha', 'alphx')::jsonb WHERE event_id = $1")
                .bind(target.event_id)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    let broken = console.get("/ui/verify").await;
    assert_eq!(broken.status, 200);
    let text = &broken.text;
    assert!(text.contains("1 of "), "{text}");
    let row = &text[text.find("<table class=\"rows broken\">").expect("a table of broken streams")..];
    let row = &row[..row.find("</table>").unwrap()];
    assert!(row.contains(&format!("profile/{id}")), "{row}");
    assert!(
        row.contains(&format!("/ui/resources/profile/{id}?version=2")),
        "names version 2: {row}"
    );
    assert!(row.contains(&target.event_id.to_string()) && row.contains(&target.hash), "{row}");
    assert!(!row.contains(&other), "an intact stream is not broken");
    assert!(text.contains(&format!("profile/{other}")), "intact streams are listed too");

    // As the API: admins only.
    let member = app.store.create_key("default", "member");
    let refused = Console::sign_in(&app, &member).await.get("/ui/verify").await;
    assert_eq!(refused.status, 403);
    assert!(refused.text.contains("verifying the log needs an admin key"));
}

async fn the_live_stream_sends_new_events(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let console = Console::sign_in(&app, &app.admin_key).await;
    let stream = reqwest::Client::new()
        .get(app.url("/ui/events/stream?type=profile"))
        .header("cookie", &console.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-security-policy"], CSP);
    let mut reader = SseReader::new(stream);
    app.create_fleet("f", "F").await;
    let started = std::time::Instant::now();
    let id = app.create_profile(json!({"name": "Live"})).await;
    let event = loop {
        let event = reader.next(std::time::Duration::from_secs(2)).await.expect("an event within 2 s");
        if event.event == "ledger" {
            break event;
        }
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let row: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        (row["stream_type"].as_str(), row["stream_id"].as_str()),
        (Some("profile"), Some(id.as_str()))
    );
    assert_eq!(row["actor"]["name"], "admin");
    assert_eq!(row["href"], format!("/ui/resources/profile/{id}?version=1"));
    // Signed out, the stream is refused rather than redirected.
    let refused = reqwest::Client::new()
        .get(app.url("/ui/events/stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

both_backends!(
    sign_in_sets_a_strict_http_only_session_cookie_and_sign_out_revokes_it,
    failed_sign_ins_are_throttled_like_any_failed_login,
    posts_need_the_sessions_csrf_token,
    viewers_see_no_restore_control_and_are_refused_a_restore,
    a_scoped_key_sees_only_its_streams,
    every_answer_carries_the_content_security_policy,
    no_page_shows_a_gateway_token,
    verify_names_the_first_bad_event,
    the_live_stream_sends_new_events,
);
