//! Audit and replay: revisions, time travel, diffs, restore, verification, rebuild,
//! export and import.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    time_travel_returns_what_each_write_returned_and_diffs_apply,
    restoring_revision_three_makes_revision_eleven_with_its_hash,
    the_audit_api_lists_revisions_and_changes,
    tampering_is_found_by_the_verify_api,
    rebuild_is_byte_identical_and_safe_while_serving,
    export_then_import_round_trips,
    long_streams_travel_through_snapshots,
    a_deleted_resource_says_so_and_is_not_restored,
    a_runtime_state_shows_its_config_and_diffs_show_config_changes,
);

async fn a_deleted_resource_says_so_and_is_not_restored(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P", "config": {"a": 1}})).await;
    put(&app, &id, json!({"a": 2})).await;
    let deleted = Answer::of(app.admin(Method::DELETE, &format!("/api/v1/profiles/{id}"))).await;
    assert_eq!(deleted.status, 204);
    let now = at(&app, &id, "").await.json();
    assert_eq!(now["state"]["deleted"], true, "{now}");
    assert!(now["state"]["deleted_at"].is_string(), "{now}");
    let before = at(&app, &id, "version=2").await.json();
    assert!(
        before["state"].get("deleted").is_none(),
        "a version before the delete is not deleted: {before}"
    );
    let restore = Answer::of(
        app.admin(Method::POST, &format!("/api/v1/ledger/resources/profile/{id}/restore"))
            .json(&json!({"version": 1, "reason": "undo"})),
    )
    .await;
    assert_eq!(restore.status, 409, "{}", restore.text);
    assert_eq!(restore.header("content-type"), Some("application/problem+json"));
    assert!(
        restore.json()["detail"].as_str().unwrap().contains("is deleted"),
        "{}",
        restore.text
    );
}

async fn a_runtime_state_shows_its_config_and_diffs_show_config_changes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let runtimes = "/api/v1/org/default/ws/default/runtimes";
    let created = Answer::of(app.admin(Method::POST, runtimes).json(&json!({"key": "audited"}))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let put = Answer::of(
        app.admin(Method::PUT, &format!("{runtimes}/{id}/config"))
            .json(&json!({"config": {"sandbox": {"timeout_seconds": 1234}}})),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let resource = format!("/api/v1/ledger/resources/runtime/{id}");
    let second = Answer::of(app.admin(Method::GET, &format!("{resource}?version=2"))).await.json();
    assert_eq!(second["state"]["config"]["sandbox"]["timeout_seconds"], 1234, "{second}");
    let first = Answer::of(app.admin(Method::GET, &format!("{resource}?version=1"))).await.json();
    assert!(first["state"]["config"].is_object(), "{first}");
    let diff = Answer::of(app.admin(Method::GET, &format!("{resource}/diff?from=1&to=2")))
        .await
        .json();
    assert!(
        diff["summary"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().ends_with(" /config/sandbox/timeout_seconds")),
        "{diff}"
    );
}

async fn long_streams_travel_through_snapshots(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    let mut written = std::collections::HashMap::new();
    for k in 0..600 {
        let (version, body) = put(&app, &id, json!({"k": k})).await;
        written.insert(version, body["profile"].clone());
    }
    let check = |label: &'static str| {
        let (app, id, written) = (&app, &id, &written);
        async move {
            for v in [2, 255, 256, 257, 300, 511, 512, 513, 601] {
                let j = at(app, id, &format!("version={v}")).await.json();
                assert_eq!(j["state"], written[&v], "{label}: version {v}");
            }
            let page = Answer::of(app.admin(
                Method::GET,
                &format!("/api/v1/ledger/resources/profile/{id}/revisions?after=300&limit=5"),
            ))
            .await
            .json();
            let revs: Vec<i64> = page["revisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["revision"].as_i64().unwrap())
                .collect();
            assert_eq!(revs, [301, 302, 303, 304, 305], "{label}: revisions continue across a snapshot");
        }
    };
    check("inline snapshots").await;
    let store = fleetledger::store::connect(&app.store.url()).await.unwrap();
    assert_eq!(store.snapshot_at(&id, 600).await.unwrap().map(|s| s.version), Some(512));
    assert!(app.store.cli(&["rebuild"]).status.success());
    assert_eq!(store.snapshot_at(&id, 600).await.unwrap().map(|s| s.version), Some(512));
    check("rebuilt snapshots").await;
}

async fn put(app: &TestApp, id: &str, config: Value) -> (i64, Value) {
    let a = Answer::of(
        app.admin(Method::PUT, &format!("/api/v1/profiles/{id}"))
            .json(&json!({ "config": config })),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let version = a.header("etag").unwrap().trim_matches('"').parse().unwrap();
    (version, a.json())
}

async fn at(app: &TestApp, id: &str, query: &str) -> Answer {
    Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile/{id}?{query}"))).await
}

async fn time_travel_returns_what_each_write_returned_and_diffs_apply(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    let mut writes = Vec::new();
    for k in 0..20 {
        let config = json!({"k": k % 7, "packages": ["vim"], "nested": {"n": k}});
        let (version, body) = put(&app, &id, config).await;
        writes.push((version, body, chrono::Utc::now()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (version, body, _) in &writes {
        let a = at(&app, &id, &format!("version={version}")).await;
        assert_eq!(a.header("etag"), Some(format!("\"{version}\"").as_str()));
        let j = a.json();
        assert_eq!(j["version"], *version);
        assert_eq!(j["state"], body["profile"], "state at version {version}");
    }
    // as_of between writes 5 and 6 is write 5's state.
    let (v5, body5, t5) = &writes[4];
    let as_of = t5.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let j = at(&app, &id, &format!("as_of={as_of}")).await.json();
    assert_eq!((j["version"].as_i64(), &j["state"]), (Some(*v5), &body5["profile"]));
    // diff(k, k+1) applied to state k gives state k+1.
    for pair in writes.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        let d = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile/{id}/diff?from={a}&to={b}")))
            .await
            .json();
        let patch: json_patch::Patch = serde_json::from_value(d["patch"].clone()).unwrap();
        let mut doc = pair[0].1["profile"].clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc, pair[1].1["profile"]);
        assert!(d["summary"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains("/config/nested/n")));
    }
    assert_eq!(at(&app, &id, "version=99").await.status, 404);
    assert_eq!(at(&app, &id, "as_of=yesterday").await.status, 400);
}

async fn restoring_revision_three_makes_revision_eleven_with_its_hash(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    let mut hash_of = std::collections::HashMap::new();
    let mut version_of = std::collections::HashMap::new();
    for r in 2..=10 {
        let (version, body) = put(&app, &id, json!({"r": r})).await;
        assert_eq!(body["profile"]["latest_revision"], r);
        hash_of.insert(r, body["profile"]["config_hash"].as_str().unwrap().to_string());
        version_of.insert(r, version);
    }
    let restore = Answer::of(
        app.admin(Method::POST, &format!("/api/v1/ledger/resources/profile/{id}/restore"))
            .json(&json!({"version": version_of[&3], "reason": "roll back the bad rollout"})),
    )
    .await;
    assert_eq!(restore.status, 200, "{}", restore.text);
    assert!(restore.text.ends_with("}\n"), "answers like Fleeti's own write");
    let body = restore.json();
    assert_eq!(body["profile"]["latest_revision"], 11);
    assert_eq!(body["created_new_revision"], true);
    assert_eq!(body["profile"]["config_hash"].as_str().unwrap(), hash_of[&3]);
    let fleeti = Answer::of(app.admin(Method::GET, &format!("/api/v1/profiles/{id}"))).await.json();
    assert_eq!(
        (fleeti["profile"]["latest_revision"].clone(), fleeti["profile"]["config"].clone()),
        (json!(11), json!({"r": 3}))
    );
    let revisions = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile/{id}/revisions")))
        .await
        .json();
    let last = revisions["revisions"].as_array().unwrap().last().unwrap().clone();
    assert!(last["summary"]
        .as_str()
        .unwrap()
        .contains(&format!("restored the config of version {}", version_of[&3])));
    assert!(last["summary"].as_str().unwrap().contains("roll back the bad rollout"));
    assert!(last["actor"]["principal_id"].as_str().unwrap().starts_with("service:"));
    let viewer = app.store.create_key("default", "viewer");
    let denied = Answer::of(
        app.request(Method::POST, &format!("/api/v1/ledger/resources/profile/{id}/restore"), &viewer)
            .json(&json!({"version": 2})),
    )
    .await;
    assert_eq!(denied.status, 403);
    let missing = Answer::of(
        app.admin(Method::POST, &format!("/api/v1/ledger/resources/profile/{id}/restore"))
            .json(&json!({"version": 99})),
    )
    .await;
    assert_eq!(missing.status, 404);
}

async fn the_audit_api_lists_revisions_and_changes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    put(&app, &id, json!({"a": 1})).await;
    put(&app, &id, json!({"a": 1})).await;
    let since = chrono::Utc::now();
    put(&app, &id, json!({"a": 2})).await;
    let all = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile/{id}/revisions")))
        .await
        .json();
    let items = all["revisions"].as_array().unwrap();
    let revs: Vec<i64> = items.iter().map(|r| r["revision"].as_i64().unwrap()).collect();
    assert_eq!(revs, [1, 2, 2, 3], "the surface's own revision after each event");
    let keys: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "version",
            "revision",
            "event_type",
            "recorded_at",
            "actor",
            "request_id",
            "summary",
            "hash"
        ]
    );
    let page = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile/{id}/revisions?limit=2")))
        .await
        .json();
    assert_eq!(
        (page["revisions"].as_array().unwrap().len(), page["next_after"].as_i64()),
        (2, Some(2))
    );

    let member = app.store.create_key("default", "member");
    Answer::of(
        app.request(Method::PUT, &format!("/api/v1/profiles/{id}"), &member)
            .json(&json!({"config": {"by": "member"}})),
    )
    .await;
    let since_q = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let changes = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile?changed_since={since_q}")))
        .await
        .json();
    assert_eq!(changes["changes"].as_array().unwrap().len(), 2);
    let member_actor = changes["changes"][1]["actor"]["principal_id"].as_str().unwrap().to_string();
    let by_member = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile?actor={member_actor}")))
        .await
        .json();
    assert_eq!(by_member["changes"].as_array().unwrap().len(), 1);
    assert_eq!(by_member["changes"][0]["stream_id"], id);

    app.store.create_org("other");
    let outsider = app.store.create_key("other", "admin");
    for path in [
        format!("/api/v1/ledger/resources/profile/{id}/revisions"),
        format!("/api/v1/ledger/resources/profile/{id}?version=1"),
    ] {
        assert_eq!(Answer::of(app.request(Method::GET, &path, &outsider)).await.status, 404);
    }
    let theirs = Answer::of(app.request(Method::GET, "/api/v1/ledger/resources/profile", &outsider))
        .await
        .json();
    assert_eq!(theirs["changes"], json!([]));
}

async fn tampering_is_found_by_the_verify_api(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    put(&app, &id, json!({"secret": "alpha"})).await;
    put(&app, &id, json!({"secret": "beta"})).await;
    let ok = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/resources/profile/{id}/verify")))
        .await
        .json();
    assert_eq!(
        (ok["ok"].clone(), ok["checked"].clone(), ok["first_bad"].clone()),
        (json!(true), json!(3), Value::Null)
    );
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
    for path in [
        format!("/api/v1/ledger/resources/profile/{id}/verify"),
        "/api/v1/ledger/verify".to_string(),
    ] {
        let bad = Answer::of(app.admin(Method::GET, &path)).await.json();
        assert_eq!(bad["ok"], false, "{path}");
        assert_eq!(bad["first_bad"]["stream"], format!("profile/{id}"));
        assert_eq!(bad["first_bad"]["version"], 2);
        assert_eq!(bad["first_bad"]["event_id"], target.event_id.to_string());
        assert!(bad["first_bad"]["expected"].is_string() && bad["first_bad"]["actual"] == target.hash);
    }
}

/// Every read model row, as the store holds it (without its write time).
async fn read_model_rows(store: &TestStore) -> Vec<(String, String, String, i64, String)> {
    let q = "SELECT kind, id, org_id, version, doc FROM read_models ORDER BY kind, id";
    match &store.db {
        None => {
            let pool = sqlx::SqlitePool::connect(&store.url()).await.unwrap();
            sqlx::query_as(q).fetch_all(&pool).await.unwrap()
        }
        Some(db) => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_as(q).fetch_all(&pool).await.unwrap()
        }
    }
}

async fn make_history(app: &TestApp) {
    app.create_fleet("f1", "Fleet <One>").await;
    for n in 0..5 {
        let id = app
            .create_profile(json!({"name": format!("p{n}"), "fleet_ids": ["f1"], "config": {"x": 1.5, "s": "<&>"}}))
            .await;
        for k in 0..4 {
            put(app, &id, json!({"k": k, "f": 1e21})).await;
        }
        if n == 2 {
            Answer::of(app.admin(Method::DELETE, &format!("/api/v1/profiles/{id}"))).await;
        }
    }
    app.store.create_org("other");
    let key = app.store.create_key("other", "viewer");
    let list = String::from_utf8(app.store.cli(&["keys", "list"]).stdout).unwrap();
    let id = list
        .lines()
        .find(|l| l.contains("viewer"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(app.store.cli(&["keys", "revoke", &id]).status.success());
    drop(key);
}

async fn rebuild_is_byte_identical_and_safe_while_serving(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    make_history(&app).await;
    let before = read_model_rows(&app.store).await;
    assert!(before.len() > 10);
    // Writes keep landing during the rebuild; none of them is lost.
    let writer = {
        let (client, url, key) = (app.client.clone(), app.url("/api/v1/profiles"), app.admin_key.clone());
        tokio::spawn(async move {
            for n in 0..30 {
                let res = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"name": format!("during-{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    let out = app.store.cli(&["rebuild"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("events/s"));
    writer.await.unwrap();
    let out = app.store.cli(&["rebuild"]);
    assert!(out.status.success());
    let after = read_model_rows(&app.store).await;
    let inline: Vec<_> = before.iter().collect();
    let rebuilt: Vec<_> = after.iter().filter(|r| !r.4.contains("during-")).collect();
    assert_eq!(inline, rebuilt, "rebuilt docs are byte-identical to the inline projections");
    assert_eq!(after.iter().filter(|r| r.0 == "profile" && r.4.contains("during-")).count(), 30);
    let one = app.store.cli(&["rebuild", "--projection", "profile"]);
    assert!(one.status.success());
    assert!(!app.store.cli(&["rebuild", "--projection", "nope"]).status.success());
    assert_eq!(read_model_rows(&app.store).await, after);
}

async fn export_then_import_round_trips(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    make_history(&app).await;
    let exported = app.store.cli(&["export", "--all"]);
    assert!(exported.status.success());
    let file = app.store.dir.path().join("log.ndjson");
    std::fs::write(&file, &exported.stdout).unwrap();
    let original = read_model_rows(&app.store).await;

    let Some(fresh) = TestStore::new(backend).await else { return };
    let imported = fresh.cli(&["import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(fresh.cli(&["verify"]).status.success());
    assert_eq!(read_model_rows(&fresh).await, original, "identical read models");
    assert!(
        !fresh.cli(&["import", file.to_str().unwrap()]).status.success(),
        "import needs an empty store"
    );
    // A tampered export is refused and leaves nothing behind.
    let Some(other) = TestStore::new(backend).await else { return };
    let text = String::from_utf8(exported.stdout.clone()).unwrap().replacen("p1", "pX", 1);
    let bad = app.store.dir.path().join("bad.ndjson");
    std::fs::write(&bad, text).unwrap();
    let refused = other.cli(&["import", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("hash chain breaks"));
    let one = app.store.cli(&["export", "--stream", &format!("profile/{}", "x")]);
    assert!(one.status.success());
    let replay = app.store.cli(&["replay", "--format", "table"]);
    assert!(String::from_utf8_lossy(&replay.stdout).contains("profile.config_replaced"));
}
