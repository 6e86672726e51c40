//! The event store's guarantees, on both backends.

use std::collections::HashSet;
use std::sync::Arc;

use fleetledger::store::{self, AppendRequest, EventStore, ExpectedVersion, StoreError};
use fleetledger_events::{Actor, Metadata, NewEvent};
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    the_cache_takes_the_model_a_write_of_this_process_decided,
    fifty_concurrent_appends_at_one_version_one_wins,
    a_tailing_reader_sees_every_event_once_in_order,
    the_chain_verifies_and_names_a_tampered_event,
    events_cannot_be_updated_or_deleted,
);

fn request(stream: &str, expected: i64, n: usize) -> AppendRequest {
    AppendRequest {
        stream_type: "test".into(),
        stream_id: stream.into(),
        expected: ExpectedVersion::Exact(expected),
        events: (0..n)
            .map(|i| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: "test.happened".into(),
                schema_version: 1,
                data: json!({"i": i, "name": format!("alpha-{i}"), "pad": "p".repeat(200)}).into(),
            })
            .collect(),
        metadata: Metadata {
            org_id: "org".into(),
            actor: Actor::system("test"),
            ..Default::default()
        },
        read_models: vec![],
        snapshots: vec![],
    }
}

async fn open(backend: Backend) -> Option<(TestStore, Arc<dyn EventStore>)> {
    let test_store = TestStore::new(backend).await?;
    let store = store::connect(&test_store.url()).await.expect("the store opens");
    Some((test_store, store))
}

async fn fifty_concurrent_appends_at_one_version_one_wins(backend: Backend) {
    let Some((_guard, store)) = open(backend).await else {
        return;
    };
    store.append(request("s", 0, 1)).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append(request("s", 1, 1)).await })
        })
        .collect();
    let (mut won, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict {
                expected: 1, actual: 2, ..
            }) => conflicts += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((won, conflicts), (1, 49));
    assert_eq!(store.stream_version("s").await.unwrap(), 2);
    assert_eq!(store.head().await.unwrap(), 2);
}

async fn a_tailing_reader_sees_every_event_once_in_order(backend: Backend) {
    let Some((_guard, store)) = open(backend).await else {
        return;
    };
    const WRITERS: usize = 8;
    const EACH: i64 = 500;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::with_capacity(WRITERS * EACH as usize);
            let mut after = 0;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
            while seen.len() < WRITERS * EACH as usize {
                assert!(tokio::time::Instant::now() < deadline, "reader saw {} events", seen.len());
                let page = store.read_all(after, 100, None).await.unwrap();
                for e in &page {
                    assert_eq!(e.global_position, after + 1, "positions are contiguous and in order");
                    after = e.global_position;
                    seen.push(e.event_id);
                }
                if page.is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
            }
            seen
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for v in 0..EACH {
                    let appended = store.append(request(&format!("writer-{w}"), v, 1)).await.unwrap();
                    ids.push(appended.events[0].event_id);
                }
                ids
            })
        })
        .collect();
    let mut written = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let seen = reader.await.unwrap();
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert_eq!(unique, written, "every event seen");
}

async fn the_chain_verifies_and_names_a_tampered_event(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    store.append(request("a", 0, 3)).await.unwrap();
    let target = store.append(request("b", 0, 2)).await.unwrap().events[1].clone();
    store.append(request("a", 3, 1)).await.unwrap();
    let ok = store::verify_log(store.as_ref(), |_| {}).await.unwrap();
    assert!(ok.ok && ok.checked == 6, "{ok:?}");
    let cli_ok = test_store.cli(&["verify"]);
    assert!(cli_ok.status.success());
    assert!(String::from_utf8_lossy(&cli_ok.stdout).contains("ok: 6 events verified"));

    // Flip one byte of the stored data, as someone with database access might.
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&test_store.url()).await.unwrap();
            sqlx::query("DROP TRIGGER events_no_update").execute(&pool).await.unwrap();
            sqlx::query("UPDATE events SET data = replace(data, 'alpha-1', 'alpha-X') WHERE global_position = ?")
                .bind(target.global_position)
                .execute(&pool)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&test_store.url()).await.unwrap();
            sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("UPDATE events SET data = replace(data::text, 'alpha-1', 'alpha-X')::jsonb WHERE global_position = $1")
                .bind(target.global_position)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    let broken = store::verify_log(store.as_ref(), |_| {}).await.unwrap();
    let bad = broken.first_bad.expect("the tampering is found");
    assert!(!broken.ok);
    assert_eq!(
        (bad.event_id.clone(), bad.stream.as_str(), bad.version),
        (target.event_id.to_string(), "test/b", 2)
    );
    let one = store::verify_stream(store.as_ref(), "b").await.unwrap();
    assert_eq!(one.first_bad.map(|b| b.version), Some(2));
    let cli = test_store.cli(&["verify"]);
    assert!(!cli.status.success(), "verify exits non-zero");
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(out.contains(&target.event_id.to_string()) && out.contains("test/b"), "{out}");
}

async fn events_cannot_be_updated_or_deleted(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    store.append(request("a", 0, 1)).await.unwrap();
    let (update, delete) = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&test_store.url()).await.unwrap();
            (
                sqlx::query("UPDATE events SET hash = 'x'").execute(&pool).await.is_err(),
                sqlx::query("DELETE FROM events").execute(&pool).await.is_err(),
            )
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&test_store.url()).await.unwrap();
            (
                sqlx::query("UPDATE events SET hash = 'x'").execute(&pool).await.is_err(),
                sqlx::query("DELETE FROM events").execute(&pool).await.is_err(),
            )
        }
    };
    assert!(update && delete, "the log refuses updates and deletes");
}

/// Following the log, the read-model cache takes the model a writer of this process decided
/// for an event instead of decoding and folding the event again (the two agree, so the
/// test offers a model folding could not give); once the write is done nothing is kept.
async fn the_cache_takes_the_model_a_write_of_this_process_decided(backend: Backend) {
    use fleetledger_events::fleet::{FleetCreated, FleetEvent};
    use fleetledger_events::DomainEvent;
    use fleetledger_projections::fleet::Fleet;

    let Some(test) = TestStore::new(backend).await else { return };
    let ledger = fleetledger::app::open_ledger(&test.settings(), store::Open::CreateIfMissing)
        .await
        .unwrap();
    let append = |stream: &str, event_id: uuid::Uuid| {
        let created = FleetEvent::Created(FleetCreated {
            fleet_id: stream.into(),
            org_id: uuid::Uuid::nil(),
            name: "as stored".into(),
            created_at: chrono::Utc::now(),
        });
        AppendRequest {
            stream_type: "fleet".into(),
            events: vec![created.to_new_event(event_id)],
            ..request(stream, 0, 0)
        }
    };
    let decided = uuid::Uuid::now_v7();
    let offered = Fleet {
        id: "f1".into(),
        org_id: uuid::Uuid::nil(),
        name: "as decided".into(),
        created_at: chrono::Utc::now(),
    };
    let guard = ledger.models.deciding(decided, Arc::new(offered));
    ledger.store.append(append("f1", decided)).await.unwrap();
    ledger.models.catch_up().await.unwrap();
    assert_eq!(ledger.models.cache::<Fleet>().get("f1").unwrap().model.name, "as decided");
    drop(guard);
    // Another event of the same kind, offered and withdrawn before it committed: folded.
    let withdrawn = uuid::Uuid::now_v7();
    drop(ledger.models.deciding(
        withdrawn,
        Arc::new(Fleet {
            name: "never".into(),
            ..(*ledger.models.cache::<Fleet>().get("f1").unwrap().model).clone()
        }),
    ));
    ledger.store.append(append("f2", withdrawn)).await.unwrap();
    ledger.models.catch_up().await.unwrap();
    assert_eq!(ledger.models.cache::<Fleet>().get("f2").unwrap().model.name, "as stored");
}
