//! Least privilege on the ledger: admins read the whole org, members and viewers every
//! stream but key material, a scoped key only the streams it may read — on every ledger
//! route — and no answer ever carries a key hash.

use reqwest::Method;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{call, serve_settings, spawn_configured, Answer, Backend, SseReader, TestApp, TestStore};

async fn spawn(backend: Backend) -> Option<TestApp> {
    let store = TestStore::new(backend).await?;
    let serve = serve_settings();
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    Some(spawn_configured(store, serve, workers).await)
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

/// Every answer of a route for a key, checked for key hashes.
async fn get(app: &TestApp, path: &str, key: &str) -> Answer {
    let answer = call(app, Method::GET, path, key, None).await;
    assert!(!answer.text.contains("key_hash"), "{path} shows a key hash: {}", answer.text);
    answer
}

fn streams_of(page: &Value) -> Vec<(String, String)> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["stream_type"].as_str().unwrap().to_string(),
                e["stream_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn every_ledger_route_limits_each_key_to_what_it_may_read(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
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
    let member = app.store.create_key("default", "member");
    let viewer = app.store.create_key("default", "viewer");
    app.store.create_org("rival");
    let rival = app.store.create_key("rival", "admin");

    // The feed as pages.
    let all = "/api/v1/ledger/events?limit=1000";
    let admin_streams = streams_of(&get(&app, all, &app.admin_key).await.json());
    let key_stream = admin_streams
        .iter()
        .find(|(t, _)| t == "key")
        .expect("admins see key streams")
        .1
        .clone();
    for key in [&member, &viewer] {
        let seen = streams_of(&get(&app, all, key).await.json());
        assert!(seen.iter().all(|(t, _)| t != "key"), "members and viewers see no key material");
        assert!(
            seen.iter().any(|(_, id)| id == &profile),
            "members and viewers see the org's resources"
        );
    }
    let seen = streams_of(&get(&app, all, &scoped).await.json());
    assert!(!seen.is_empty(), "a scoped key sees its instance");
    assert!(
        seen.iter().all(|(t, id)| t == "instance" && id == &mine),
        "a scoped key sees only its instance: {seen:?}"
    );
    assert!(streams_of(&get(&app, all, &rival).await.json())
        .iter()
        .all(|(_, id)| id != &profile && id != &mine));
    let filtered = streams_of(&get(&app, "/api/v1/ledger/events?stream_type=key", &member).await.json());
    assert!(filtered.is_empty(), "asking for key streams by name shows nothing either");

    // A stream's events, and every resource route, by who may read it.
    // (stream type, id, [(key, status)])
    type Case<'a> = (String, String, Vec<(&'a str, u16)>);
    let cases: Vec<Case> = vec![
        (
            "key".into(),
            key_stream.clone(),
            vec![(&app.admin_key, 200), (&member, 404), (&viewer, 404), (&scoped, 404), (&rival, 404)],
        ),
        (
            "instance".into(),
            mine.clone(),
            vec![(&app.admin_key, 200), (&member, 200), (&viewer, 200), (&scoped, 200), (&rival, 404)],
        ),
        (
            "instance".into(),
            theirs.clone(),
            vec![(&app.admin_key, 200), (&member, 200), (&viewer, 200), (&scoped, 404), (&rival, 404)],
        ),
        (
            "profile".into(),
            profile.clone(),
            vec![(&app.admin_key, 200), (&viewer, 200), (&scoped, 404), (&rival, 404)],
        ),
    ];
    for (stream_type, id, expectations) in &cases {
        let resource = format!("/api/v1/ledger/resources/{stream_type}/{id}");
        let routes = [
            format!("/api/v1/ledger/streams/{stream_type}/{id}"),
            resource.clone(),
            format!("{resource}?version=1"),
            format!("{resource}/revisions"),
            format!("{resource}/diff?from=1&to=1"),
            format!("{resource}/verify"),
        ];
        for route in &routes {
            for (key, status) in expectations {
                let answer = get(&app, route, key).await;
                assert_eq!(answer.status, *status, "{route}: {}", answer.text);
            }
        }
    }

    // Who changed what, per stream type.
    let changes = get(&app, "/api/v1/ledger/resources/instance", &scoped).await.json();
    let ids: Vec<&str> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["stream_id"].as_str().unwrap())
        .collect();
    assert!(!ids.is_empty() && ids.iter().all(|id| *id == mine), "{ids:?}");
    let changes = get(&app, "/api/v1/ledger/resources/key", &viewer).await.json();
    assert!(changes["changes"].as_array().unwrap().is_empty(), "viewers see no key changes");

    // The live feed from the start.
    for (key, allowed) in [
        (&scoped, vec!["instance"]),
        (&viewer, vec!["org", "fleet", "profile", "instance", "runtime"]),
    ] {
        let response = app.request(Method::GET, "/api/v1/ledger/stream?after=0", key).send().await.unwrap();
        let mut sse = SseReader::new(response);
        let mut seen = 0;
        while let Some(event) = sse.next(std::time::Duration::from_millis(700)).await {
            assert!(!event.data.contains("key_hash"));
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let stream_type = data["data"]["stream_type"].as_str().unwrap();
            assert!(allowed.contains(&stream_type), "SSE showed a {stream_type} stream");
            if key == &scoped {
                assert_eq!(data["data"]["stream_id"], mine.as_str());
            }
            seen += 1;
        }
        assert!(seen > 0, "the feed shows what the key may read");
    }
}

/// A scoped key acts only on the instances it lists: the other product surfaces refuse it
/// (403 in their envelopes) instead of listing the org's fleets, gateways or skills.
async fn a_scoped_key_is_refused_on_every_other_product_surface(backend: Backend) {
    let Some(app) = spawn(backend).await else { return };
    let id = instance(&app, "assistant").await;
    let scoped = call(
        &app,
        Method::POST,
        "/v1/keys",
        &app.admin_key,
        Some(json!({"name": "ci", "instance_ids": [id], "permissions": ["read", "configure"]})),
    )
    .await;
    assert_eq!(scoped.status, 201, "{}", scoped.text);
    let scoped = scoped.json()["raw_key"].as_str().unwrap().to_string();
    let refused = [
        ("/api/v1/fleets", "error"),
        ("/api/v1/profiles", "error"),
        ("/api/v1/org/default/ws/default/runtimes", "detail"),
        ("/api/v1/gateways", "detail"),
        ("/api/v1/agents", "detail"),
        ("/skills", "error"),
        ("/agents", "error"),
    ];
    for (path, field) in refused {
        let answer = get(&app, path, &scoped).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        assert_eq!(
            answer.json()[field],
            "Scoped keys act only on the instances they list",
            "{path}: in the surface's envelope"
        );
    }
    assert_eq!(get(&app, &format!("/v1/instances/{id}"), &scoped).await.status, 200);
}

both_backends!(
    every_ledger_route_limits_each_key_to_what_it_may_read,
    a_scoped_key_is_refused_on_every_other_product_surface
);
