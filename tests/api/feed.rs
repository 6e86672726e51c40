//! The change feed over HTTP: JSON pages, Server-Sent Events, stream reads, metrics, `tail`.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    events_are_paged_per_org_with_full_envelopes,
    sse_delivers_every_event_once_in_order_and_resumes,
    ledger_errors_are_problem_json,
    metrics_and_tail_report_the_log,
);

mod sse_sends_keep_alive_comments {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::sse_sends_keep_alive_comments(crate::helpers::Backend::Sqlite).await
    }
}

/// An idle stream still sends a comment every 15 s, so proxies keep it open.
async fn sse_sends_keep_alive_comments(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let mut response = app.admin(Method::GET, "/api/v1/ledger/stream").send().await.unwrap();
    let started = std::time::Instant::now();
    let mut seen = String::new();
    while !seen.starts_with(':') && !seen.contains("\n:") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("a keep-alive within 20 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(started.elapsed() >= Duration::from_secs(14), "not before the interval");
}

async fn events_are_paged_per_org_with_full_envelopes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let id = app.create_profile(json!({"name": "P"})).await;
    for n in 0..4 {
        app.admin(Method::PUT, &format!("/api/v1/profiles/{id}"))
            .json(&json!({"config": {"n": n}}))
            .send()
            .await
            .unwrap();
    }
    app.store.create_org("other");
    let outsider = app.store.create_key("other", "viewer");

    let all = Answer::of(app.admin(Method::GET, "/api/v1/ledger/events?stream_type=profile"))
        .await
        .json();
    let events = all["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(all["next_after"], serde_json::Value::Null);
    let first = &events[0];
    for field in [
        "global_position",
        "event_id",
        "stream_type",
        "stream_id",
        "stream_version",
        "event_type",
        "schema_version",
        "data",
        "metadata",
        "prev_hash",
        "hash",
        "recorded_at",
    ] {
        assert!(first.get(field).is_some(), "envelope has {field}");
    }
    assert_eq!(first["metadata"]["org_id"], default_org());
    assert!(first["metadata"]["request_id"].is_string() && first["metadata"]["actor"]["key_id"].is_string());

    let page = Answer::of(app.admin(Method::GET, "/api/v1/ledger/events?stream_type=profile&limit=2"))
        .await
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let next = page["next_after"].as_i64().expect("more pages");
    let rest = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/events?stream_type=profile&after={next}")))
        .await
        .json();
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);

    let by_stream = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/events?stream_id={id}&limit=1000")))
        .await
        .json();
    assert_eq!(by_stream["events"].as_array().unwrap().len(), 5);
    let stream = Answer::of(app.admin(Method::GET, &format!("/api/v1/ledger/streams/profile/{id}")))
        .await
        .json();
    let versions: Vec<i64> = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stream_version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);

    // Another org sees none of it, by any route; X-API-Key works as well as Bearer.
    let theirs = Answer::of(
        app.client
            .get(app.url("/api/v1/ledger/events?limit=1000"))
            .header("x-api-key", &outsider),
    )
    .await
    .json();
    assert!(
        theirs["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["metadata"]["org_id"] != default_org()),
        "{theirs}"
    );
    let hidden = Answer::of(app.request(Method::GET, &format!("/api/v1/ledger/streams/profile/{id}"), &outsider)).await;
    assert_eq!(hidden.status, 404);
}

async fn sse_delivers_every_event_once_in_order_and_resumes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let store = fleetledger::store::connect(&app.store.url()).await.unwrap();
    app.store.create_org("other");
    let outsider = app.store.create_key("other", "viewer");
    // After this only the writers below append (`test` is no registered stream type, so it
    // cannot be asked for as a filter).
    let start = store.head().await.unwrap();
    let mut theirs = SseReader::new(app.request(Method::GET, "/api/v1/ledger/stream", &outsider).send().await.unwrap());
    let response = app
        .admin(Method::GET, &format!("/api/v1/ledger/stream?after={start}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(response);

    const WRITERS: usize = 8;
    const EACH: i64 = 1000;
    write_concurrently(store.clone(), WRITERS, EACH).await;
    let total = WRITERS * EACH as usize;
    let mut positions = Vec::with_capacity(total);
    let mut half = None;
    while positions.len() < total {
        let e = reader
            .next(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("only {} of {total} events arrived", positions.len()));
        assert_eq!(e.event, "test.happened");
        let cloud: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(
            (cloud["specversion"].as_str(), cloud["sequence"].to_string()),
            (Some("1.0"), e.id.clone())
        );
        assert_eq!(cloud["source"], format!("/fleetledger/{}", default_org()));
        positions.push(e.id.parse::<i64>().unwrap());
        if positions.len() == total / 2 {
            half = Some(e.id.clone());
        }
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in global order");
    let unique: std::collections::HashSet<_> = positions.iter().collect();
    assert_eq!(unique.len(), total, "each once");
    drop(reader);

    // Reconnecting with Last-Event-ID resumes right after it: no gap, no duplicate.
    let half = half.unwrap();
    let resumed = app
        .admin(Method::GET, "/api/v1/ledger/stream")
        .header("last-event-id", &half)
        .send()
        .await
        .unwrap();
    let mut resumed = SseReader::new(resumed);
    let expected: Vec<i64> = positions.iter().copied().filter(|p| *p > half.parse::<i64>().unwrap()).collect();
    for want in expected {
        assert_eq!(
            resumed.next(Duration::from_secs(30)).await.expect("resumed event").id,
            want.to_string()
        );
    }
    assert!(
        theirs.next(Duration::from_millis(300)).await.is_none(),
        "another org sees none of these events"
    );
}

async fn ledger_errors_are_problem_json(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let a = Answer::of(app.client.get(app.url("/api/v1/ledger/events"))).await;
    assert_eq!((a.status, a.header("content-type")), (401, Some("application/problem+json")));
    assert_eq!(a.json()["status"], 401);
    let bad = Answer::of(app.admin(Method::GET, "/api/v1/ledger/events?limit=0")).await;
    assert_eq!(
        (bad.status, bad.json()["detail"].as_str()),
        (400, Some("limit must be between 1 and 1000"))
    );
    let bad = Answer::of(app.admin(Method::GET, "/api/v1/ledger/events?limit=1001")).await;
    assert_eq!(bad.status, 400);
    let bad = Answer::of(app.admin(Method::GET, "/api/v1/ledger/events?after=x")).await;
    assert_eq!((bad.status, bad.header("content-type")), (400, Some("application/problem+json")));
    let missing = Answer::of(app.admin(Method::GET, "/api/v1/ledger/streams/profile/nope")).await;
    assert_eq!((missing.status, missing.json()["title"].as_str()), (404, Some("Not Found")));
}

async fn metrics_and_tail_report_the_log(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    app.create_profile(json!({"name": "P"})).await;
    let metrics = Answer::of(app.client.get(app.url("/metrics"))).await;
    assert_eq!(metrics.status, 200);
    for name in [
        "fleetledger_appends_total",
        "fleetledger_http_requests_total",
        "fleetledger_http_request_duration_seconds",
    ] {
        assert!(metrics.text.contains(name), "/metrics has {name}");
    }
    let out = app.store.cli(&["tail", "--type", "profile"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("profile.created") && text.contains(" v1 "), "{text}");
    let all = String::from_utf8(app.store.cli(&["tail"]).stdout).unwrap();
    assert!(
        all.lines().count() >= 4 && all.contains("org.created") && all.contains("key.issued"),
        "{all}"
    );
}
