//! The Fleeti profiles surface, end to end.

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    authentication_matches_fleeti,
    spec_example_gives_the_test_vector_and_revisions_follow_hashes,
    responses_are_byte_exact_go_json,
    convenience_fields_rewrite_the_config,
    validation_messages_are_fleetis,
    patch_merges_top_level_config_keys,
    other_orgs_and_viewers_are_kept_out,
    list_is_newest_first_with_fleets,
    delete_hides_the_profile_and_keeps_history,
    revisions_are_listed_and_readable,
    etag_and_if_match,
    idempotency_key_replays_and_appends_nothing,
    health_openapi_and_docs,
);

fn spec_put() -> Value {
    json!({
        "config": {
            "packages": ["vim", "curl"],
            "kernel": {"attr": "linux_6_19", "source_override": {"enabled": true,
                "url": "https://github.com/example/linux.git", "ref": "refs/heads/main",
                "rev": "abcd1234abcd1234abcd1234abcd1234abcd1234"}},
            "openclaw_microvm_enabled": true,
            "custom_banner": "Production profile"
        },
        "raw_nix": "{ pkgs, ... }: { services.openssh.enable = true; }",
        "config_schema_version": 2
    })
}

async fn put(app: &TestApp, id: &str, body: &Value) -> Answer {
    Answer::of(app.admin(Method::PUT, &format!("/api/v1/profiles/{id}")).json(body)).await
}

async fn authentication_matches_fleeti(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (header, message) in [
        (None, "API key required"),
        (Some("Basic abc"), "Invalid API key"),
        (Some("Bearer "), "Invalid API key"),
        (Some("Bearer flk_not_a_key"), "Invalid API key"),
    ] {
        let mut req = app.client.get(app.url("/api/v1/profiles"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let a = Answer::of(req).await;
        a.assert_error(401, message);
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    }
    let ok = Answer::of(app.admin(Method::GET, "/api/v1/profiles")).await;
    assert_eq!((ok.status, ok.text.as_str()), (200, "{\"profiles\":[]}\n"));
    // A lowercase scheme is accepted, as Fleeti compares it case-insensitively.
    let lower = Answer::of(
        app.client
            .get(app.url("/api/v1/profiles"))
            .header("authorization", format!("bearer {}", app.admin_key)),
    )
    .await;
    assert_eq!(lower.status, 200);
}

async fn spec_example_gives_the_test_vector_and_revisions_follow_hashes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "Production Base"})).await;
    let first = put(&app, &id, &spec_put()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let body = first.json();
    assert_eq!(
        body["profile"]["config_hash"],
        "75e6463685961f8862ec3daa5a21bcb9e5b34c14679459a4c873aaf105d4cfcc"
    );
    assert_eq!(body["profile"]["latest_revision"], 2);
    assert_eq!(body["created_new_revision"], true);

    let same = put(&app, &id, &spec_put()).await.json();
    assert_eq!(same["created_new_revision"], false);
    assert_eq!(same["profile"]["latest_revision"], 2);

    let mut other = spec_put();
    other["config"]["custom_banner"] = json!("Staging");
    let changed = put(&app, &id, &other).await.json();
    assert_eq!(
        (
            changed["created_new_revision"].clone(),
            changed["profile"]["latest_revision"].clone()
        ),
        (json!(true), json!(3))
    );

    // Going back to an older config is a new revision carrying the old hash.
    let back = put(&app, &id, &spec_put()).await.json();
    assert_eq!(back["profile"]["latest_revision"], 4);
    assert_eq!(
        back["profile"]["config_hash"],
        "75e6463685961f8862ec3daa5a21bcb9e5b34c14679459a4c873aaf105d4cfcc"
    );

    // Every accepted PUT is an event, including the no-op one.
    let store = fleetledger::store::connect(&app.store.url()).await.unwrap();
    assert_eq!(store.read_stream(&id, 1).await.unwrap().len(), 5);
}

fn go_hash(schema: i64, canonical: &str, raw_nix: &str) -> String {
    hex::encode(Sha256::digest(format!("{schema}\n{canonical}\n{raw_nix}\n[]").as_bytes()))
}

async fn responses_are_byte_exact_go_json(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_fleet("fleet-b", "Beta").await;
    app.create_fleet("fleet-a", "Alpha").await;
    let id = app.create_profile(json!({"name": "P", "fleet_ids": ["fleet-b", "fleet-a"]})).await;
    let created = Answer::of(app.admin(Method::GET, &format!("/api/v1/profiles/{id}"))).await.json();
    let created_at = created["profile"]["created_at"].as_str().unwrap().to_string();
    assert_eq!(created_at.len(), 19, "YYYY-MM-DD HH:MM:SS");

    let body = r#"{"config":{"b":1.0,"a":"<x> & y","big":1e21,"small":0.0000001,"packages":[" vim","vim","curl"]},"raw_nix":"  x  "}"#;
    let a = Answer::of(app.admin(Method::PUT, &format!("/api/v1/profiles/{id}")).body(body)).await;
    let canonical = r#"{"a":"\u003cx\u003e \u0026 y","b":1,"big":1e+21,"packages":[" vim","vim","curl"],"small":1e-7}"#;
    let hash = go_hash(1, canonical, "x");
    let expected = format!(
        "{{\"profile\":{{\"id\":\"{id}\",\"fleet_id\":\"fleet-a\",\"fleet_ids\":[\"fleet-a\",\"fleet-b\"],\"fleet_name\":\"Alpha, Beta\",\
\"name\":\"P\",\"latest_revision\":2,\"config_hash\":\"{hash}\",\"config_schema_version\":1,\"created_at\":\"{created_at}\",\
\"config\":{canonical},\"packages\":[\"vim\",\"curl\"],\"kernel\":{{\"source_override\":{{\"enabled\":false,\"patches\":[]}}}},\
\"openclaw_microvm_enabled\":false,\"raw_nix\":\"x\"}},\"created_new_revision\":true}}\n"
    );
    assert_eq!(a.text, expected);
    assert_eq!(a.header("content-type"), Some("application/json"));

    let listed = Answer::of(app.admin(Method::GET, "/api/v1/profiles")).await;
    let expected_list = format!(
        "{{\"profiles\":[{{\"id\":\"{id}\",\"fleet_id\":\"fleet-a\",\"fleet_ids\":[\"fleet-a\",\"fleet-b\"],\"fleet_name\":\"Alpha, Beta\",\
\"name\":\"P\",\"latest_revision\":2,\"config_hash\":\"{hash}\",\"created_at\":\"{created_at}\"}}]}}\n"
    );
    assert_eq!(listed.text, expected_list);
}

async fn convenience_fields_rewrite_the_config(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let a = put(
        &app,
        &id,
        &json!({
            "config": {"kernel": {"attr": "linux_6_19"}, "openclaw_microvm_enabled": true, "keep": 1},
            "packages": [" vim ", "", "vim", "curl"],
            "kernel": {"attr": "", "source_override": {"enabled": false}},
            "openclaw_microvm_enabled": false
        }),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["profile"]["config"], json!({"keep": 1, "packages": ["vim", "curl"]}));

    let b = put(
        &app,
        &id,
        &json!({
            "config": {},
            "kernel": {"attr": " linux_6_19 ", "source_override": {"enabled": true, "url": " https://x.org/l.git ", "rev": "r1", "ref": "", "patches": []}},
            "openclaw_microvm_enabled": true
        }),
    )
    .await
    .json();
    assert_eq!(
        b["profile"]["config"],
        json!({"kernel": {"attr": "linux_6_19", "source_override": {"enabled": true, "rev": "r1", "url": "https://x.org/l.git"}}, "openclaw_microvm_enabled": true})
    );
    assert_eq!(
        b["profile"]["kernel"],
        json!({"attr": "linux_6_19", "source_override": {"enabled": true, "url": "https://x.org/l.git", "rev": "r1", "patches": []}})
    );
    assert_eq!(b["profile"]["openclaw_microvm_enabled"], true);
}

async fn validation_messages_are_fleetis(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let patch = "diff --git a/x b/x\n";
    let content = base64_std(patch.as_bytes());
    let sha = hex::encode(Sha256::digest(patch.as_bytes()));
    let with_override = |so: Value| json!({"config": {"kernel": {"attr": "linux_6_19", "source_override": so}}});
    let valid_so = |patches: Value| json!({"enabled": true, "url": "https://x.org/l.git", "rev": "r", "patches": patches});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"config": {"kernel": {"attr": "linux_6"}}}), "selected kernel is invalid"),
        (
            json!({"config": {"kernel": {"attr": "linux_9_99"}}}),
            "selected kernel is not available in pinned nixpkgs",
        ),
        (
            json!({"config": {"kernel": {"source_override": {"enabled": true}}}}),
            "kernel source override requires selecting a kernel version",
        ),
        (
            with_override(json!({"enabled": true, "rev": "r"})),
            "kernel source override URL is required",
        ),
        (
            with_override(json!({"enabled": true, "url": "https://x.org/l.git"})),
            "kernel source override revision is required",
        ),
        (
            with_override(json!({"enabled": true, "url": "x.org/l.git", "rev": "r"})),
            "kernel source override URL must be a valid absolute URL",
        ),
        (
            with_override(json!({"enabled": true, "url": "ftp://x.org/l.git", "rev": "r"})),
            "kernel source override URL must use http or https",
        ),
        (
            with_override(valid_so(json!(vec![
                json!({"name": "p", "sha256": sha, "content_base64": content});
                33
            ]))),
            "kernel patch count exceeds limit",
        ),
        (
            with_override(valid_so(json!([{"name": "a/b", "sha256": sha, "content_base64": content}]))),
            "kernel patch filename is invalid",
        ),
        (
            with_override(valid_so(json!([{"name": "..", "sha256": sha, "content_base64": content}]))),
            "kernel patch filename is invalid",
        ),
        (
            with_override(valid_so(json!([{"name": "p", "sha256": "XYZ", "content_base64": content}]))),
            "kernel patch checksum is invalid",
        ),
        (
            with_override(valid_so(json!([{"name": "p", "sha256": sha, "content_base64": "not base64!"}]))),
            "kernel patch payload is invalid",
        ),
        (
            with_override(valid_so(
                json!([{"name": "p", "sha256": "0".repeat(64), "content_base64": content}]),
            )),
            "kernel patch checksum mismatch",
        ),
        (json!({"config": {"packages": "vim"}}), "Profile config must be valid JSON"),
        (json!({"config": {"kernel": "linux_6_19"}}), "Profile config must be valid JSON"),
        (
            json!({"config": {"openclaw_microvm_enabled": "yes"}}),
            "Profile config must be valid JSON",
        ),
        (
            json!({"config": {"security": {"firewall": {"allowed_tcp_ports": [0]}}}}),
            "firewall TCP ports must be between 1 and 65535",
        ),
        (
            json!({"config": {"security": {"firewall": {"allowed_udp_ports": [1.5]}}}}),
            "Profile config must be valid JSON",
        ),
        (
            json!({"config": {"security": {"password_policy": {"expiry": {"enable": true, "maximum_days": 5, "warning_days": 9}}}}}),
            "password expiry warning days cannot exceed maximum days",
        ),
        (
            json!({"config": {}, "config_schema_version": -1}),
            "Config schema version must be a positive number",
        ),
        (
            json!({"config": {}, "config_schema_version": 1.5}),
            "Request body contains invalid fields or values",
        ),
    ];
    for (body, message) in cases {
        put(&app, &id, &body).await.assert_error(400, message);
    }
    // A correct patch is accepted and returned.
    let ok = put(
        &app,
        &id,
        &with_override(valid_so(
            json!([{"name": "fix.patch", "sha256": sha.to_uppercase(), "content_base64": content}]),
        )),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(
        ok.json()["profile"]["kernel"]["source_override"]["patches"][0]["sha256"],
        json!(sha)
    );
    // One patch over 512 KiB is refused (a 4 MiB total cannot fit in a 1 MiB body).
    let big = vec![7u8; 600 * 1024];
    let big_patch = json!({"name": "big", "sha256": hex::encode(Sha256::digest(&big)), "content_base64": base64_std(&big)});
    put(&app, &id, &with_override(valid_so(json!([big_patch]))))
        .await
        .assert_error(400, "kernel patch file is too large");
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn patch_merges_top_level_config_keys(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P", "config": {"a": 1, "b": {"x": 1}}})).await;
    let path = format!("/api/v1/profiles/{id}");
    let merged = Answer::of(app.admin(Method::PATCH, &path).json(&json!({"config": {"b": {"y": 2}, "c": 3}})))
        .await
        .json();
    assert_eq!(merged["profile"]["config"], json!({"a": 1, "b": {"y": 2}, "c": 3}));
    let raw = Answer::of(app.admin(Method::PATCH, &path).json(&json!({"raw_nix": "  { }  "})))
        .await
        .json();
    assert_eq!(
        (raw["profile"]["raw_nix"].clone(), raw["created_new_revision"].clone()),
        (json!("{ }"), json!(true))
    );
    assert_eq!(raw["profile"]["config"], json!({"a": 1, "b": {"y": 2}, "c": 3}));
    let pkgs = Answer::of(app.admin(Method::PATCH, &path).json(&json!({"packages": ["git"]})))
        .await
        .json();
    assert_eq!(pkgs["profile"]["config"]["packages"], json!(["git"]));
    Answer::of(app.admin(Method::PATCH, &path).body("{}"))
        .await
        .assert_error(400, "Request body must include at least one field");
    Answer::of(app.admin(Method::PATCH, &path).body(r#"{"config":null}"#))
        .await
        .assert_error(400, "Config must be a JSON object");
}

async fn other_orgs_and_viewers_are_kept_out(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let path = format!("/api/v1/profiles/{id}");
    app.store.create_org("other");
    let outsider = app.store.create_key("other", "admin");
    Answer::of(app.request(Method::GET, &path, &outsider))
        .await
        .assert_error(404, "Profile not found");
    // Existence is checked before anything about the body.
    Answer::of(app.request(Method::PUT, &path, &outsider).body(""))
        .await
        .assert_error(404, "Profile not found");
    Answer::of(app.admin(Method::PUT, "/api/v1/profiles/nope").body("not json"))
        .await
        .assert_error(404, "Profile not found");
    let list = Answer::of(app.request(Method::GET, "/api/v1/profiles", &outsider)).await;
    assert_eq!(list.text, "{\"profiles\":[]}\n");

    let viewer = app.store.create_key("default", "viewer");
    assert_eq!(Answer::of(app.request(Method::GET, &path, &viewer)).await.status, 200);
    Answer::of(app.request(Method::PUT, &path, &viewer).json(&json!({"config": {}})))
        .await
        .assert_error(403, "Access restricted");
    Answer::of(app.request(Method::PUT, &path, &viewer).body(""))
        .await
        .assert_error(403, "Access restricted");
    let member = app.store.create_key("default", "member");
    assert_eq!(
        Answer::of(app.request(Method::PUT, &path, &member).json(&json!({"config": {}})))
            .await
            .status,
        200
    );
}

async fn list_is_newest_first_with_fleets(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.create_fleet("f1", "Zeta").await;
    app.create_fleet("f2", "Alpha").await;
    let first = app.create_profile(json!({"name": "first", "fleet_ids": ["f1", "f2"]})).await;
    let second = app.create_profile(json!({"name": "second"})).await;
    let third = app.create_profile(json!({"name": "third", "description": "d"})).await;
    let list = Answer::of(app.admin(Method::GET, "/api/v1/profiles")).await.json();
    let ids: Vec<&str> = list["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third.as_str(), second.as_str(), first.as_str()]);
    let p = &list["profiles"][2];
    assert_eq!(
        (p["fleet_ids"].clone(), p["fleet_name"].clone()),
        (json!(["f1", "f2"]), json!("Alpha, Zeta"))
    );
    let detail = Answer::of(app.admin(Method::GET, &format!("/api/v1/profiles/{first}")))
        .await
        .json();
    assert_eq!(
        (detail["profile"]["fleet_ids"].clone(), detail["profile"]["fleet_id"].clone()),
        (json!(["f2", "f1"]), json!("f2"))
    );
    let missing_fleet = Answer::of(
        app.admin(Method::POST, "/api/v1/profiles")
            .json(&json!({"name": "x", "fleet_ids": ["nope"]})),
    )
    .await;
    missing_fleet.assert_error(400, "Fleet not found");
    Answer::of(
        app.admin(Method::POST, "/api/v1/fleets")
            .json(&json!({"id": "f1", "name": "again"})),
    )
    .await
    .assert_error(409, "Fleet already exists");
    Answer::of(app.admin(Method::POST, "/api/v1/profiles").json(&json!({"description": "x"})))
        .await
        .assert_error(400, "Name is required");
}

async fn delete_hides_the_profile_and_keeps_history(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let path = format!("/api/v1/profiles/{id}");
    put(&app, &id, &json!({"config": {"a": 1}})).await;
    let deleted = Answer::of(app.admin(Method::DELETE, &path)).await;
    assert_eq!((deleted.status, deleted.text.as_str()), (204, ""));
    Answer::of(app.admin(Method::GET, &path))
        .await
        .assert_error(404, "Profile not found");
    put(&app, &id, &json!({"config": {}})).await.assert_error(404, "Profile not found");
    Answer::of(app.admin(Method::DELETE, &path))
        .await
        .assert_error(404, "Profile not found");
    assert_eq!(
        Answer::of(app.admin(Method::GET, "/api/v1/profiles")).await.text,
        "{\"profiles\":[]}\n"
    );
    let store = fleetledger::store::connect(&app.store.url()).await.unwrap();
    let history: Vec<String> = store.read_stream(&id, 1).await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(history, ["profile.created", "profile.config_replaced", "profile.deleted"]);
}

async fn revisions_are_listed_and_readable(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    for config in [json!({"a": 1}), json!({"a": 1}), json!({"a": 2}), json!({"a": 1})] {
        assert_eq!(put(&app, &id, &json!({"config": config, "raw_nix": "n"})).await.status, 200);
    }
    let list = Answer::of(app.admin(Method::GET, &format!("/api/v1/profiles/{id}/revisions")))
        .await
        .json();
    let revisions = list["revisions"].as_array().unwrap();
    let numbers: Vec<i64> = revisions.iter().map(|r| r["revision"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [4, 3, 2, 1]);
    assert_eq!(revisions[0]["config_hash"], revisions[2]["config_hash"]);
    assert!(revisions[0]["actor"].as_str().unwrap().starts_with("service:"));
    let keys: Vec<&String> = revisions[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["revision", "config_hash", "config_schema_version", "created_at", "actor"]);
    let second = Answer::of(app.admin(Method::GET, &format!("/api/v1/profiles/{id}/revisions/3")))
        .await
        .json();
    assert_eq!(
        (second["revision"]["config"].clone(), second["revision"]["raw_nix"].clone()),
        (json!({"a": 2}), json!("n"))
    );
    Answer::of(app.admin(Method::GET, &format!("/api/v1/profiles/{id}/revisions/9")))
        .await
        .assert_error(404, "Revision not found");
}

async fn etag_and_if_match(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let path = format!("/api/v1/profiles/{id}");
    assert_eq!(Answer::of(app.admin(Method::GET, &path)).await.header("etag"), Some("\"1\""));
    let written = put(&app, &id, &json!({"config": {"a": 1}})).await;
    assert_eq!(written.header("etag"), Some("\"2\""));
    let stale = Answer::of(
        app.admin(Method::PUT, &path)
            .header("if-match", "\"1\"")
            .json(&json!({"config": {"a": 2}})),
    )
    .await;
    stale.assert_error(412, "Precondition failed");
    let fresh = Answer::of(
        app.admin(Method::PUT, &path)
            .header("if-match", "\"2\"")
            .json(&json!({"config": {"a": 2}})),
    )
    .await;
    assert_eq!((fresh.status, fresh.header("etag")), (200, Some("\"3\"")));
    assert_eq!(Answer::of(app.admin(Method::GET, &path)).await.header("etag"), Some("\"3\""));
}

async fn idempotency_key_replays_and_appends_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let path = format!("/api/v1/profiles/{id}");
    let send = |body: Value| Answer::of(app.admin(Method::PUT, &path).header("idempotency-key", "k-1").json(&body));
    let first = send(json!({"config": {"a": 1}})).await;
    assert_eq!(first.status, 200);
    let again = send(json!({"config": {"a": 1}})).await;
    assert_eq!(
        (again.status, again.text.as_str(), again.header("etag")),
        (200, first.text.as_str(), Some("\"2\""))
    );
    let store = fleetledger::store::connect(&app.store.url()).await.unwrap();
    assert_eq!(store.stream_version(&id).await.unwrap(), 2);
    send(json!({"config": {"a": 2}}))
        .await
        .assert_error(422, "Idempotency-Key was already used with a different request");
    // Concurrent retries of one request still append once.
    let path2 = path.clone();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let req = app
                .admin(Method::PUT, &path2)
                .header("idempotency-key", "k-2")
                .json(&json!({"config": {"b": 1}}));
            tokio::spawn(Answer::of(req))
        })
        .collect();
    let mut bodies = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200, "{}", a.text);
        bodies.push(a.text);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(store.stream_version(&id).await.unwrap(), 3);
}

async fn health_openapi_and_docs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let health = Answer::of(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json()["store"],
        if backend == Backend::Sqlite { "sqlite" } else { "postgres" }
    );
    let spec = Answer::of(app.client.get(app.url("/openapi.json"))).await.json();
    for (path, method) in [
        ("/api/v1/fleets", "get"),
        ("/api/v1/fleets", "post"),
        ("/api/v1/profiles", "get"),
        ("/api/v1/profiles", "post"),
        ("/api/v1/profiles/{id}", "get"),
        ("/api/v1/profiles/{id}", "put"),
        ("/api/v1/profiles/{id}", "patch"),
        ("/api/v1/profiles/{id}", "delete"),
        ("/api/v1/profiles/{id}/revisions", "get"),
        ("/api/v1/profiles/{id}/revisions/{revision}", "get"),
        ("/healthz", "get"),
        ("/api/v1/ledger/events", "get"),
        ("/api/v1/ledger/stream", "get"),
        ("/api/v1/ledger/resources/{stream_type}/{id}/restore", "post"),
        ("/api/v1/org/{org}/ws/{workspace}/runtimes", "post"),
        ("/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/config", "put"),
        ("/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/start", "post"),
        ("/api/v1/gateways", "post"),
        ("/api/v1/boards/{id}", "patch"),
        ("/api/v1/agents/{id}", "patch"),
        ("/v1/organization/signup", "post"),
        ("/v1/keys", "post"),
        ("/v1/instances/{id}", "patch"),
        ("/skills", "post"),
        ("/container-profiles/{id}", "delete"),
        ("/agents/{id}", "put"),
        ("/agents/{id}/start", "post"),
    ] {
        assert!(spec["paths"][path][method].is_object(), "openapi.json lacks {method} {path}");
    }
    // Every write documents its preconditions and idempotency; every answer about one
    // resource its ETag.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let headers: Vec<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "header")
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert!(
                headers.contains(&"If-Match") && headers.contains(&"Idempotency-Key"),
                "{method} {path} documents If-Match and Idempotency-Key: {headers:?}"
            );
            assert!(operation["responses"]["412"].is_object(), "{method} {path} documents 412");
        }
    }
    for (path, method, status) in [
        ("/api/v1/profiles/{id}", "get", "200"),
        ("/api/v1/profiles/{id}", "put", "200"),
        ("/api/v1/agents/{id}", "patch", "200"),
        ("/v1/instances/{id}", "patch", "200"),
        ("/agents/{id}", "put", "200"),
    ] {
        assert!(
            spec["paths"][path][method]["responses"][status]["headers"]["ETag"].is_object(),
            "{method} {path} documents its ETag"
        );
    }
    let docs = Answer::of(app.client.get(app.url("/docs/"))).await;
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("swagger"), "the docs page is Swagger UI");
    assert!(!docs.text.contains("https://"), "the docs page loads nothing from a CDN");
    let request_id = Answer::of(app.client.get(app.url("/healthz")).header("x-request-id", "req-42")).await;
    assert_eq!(request_id.header("x-request-id"), Some("req-42"));
}
