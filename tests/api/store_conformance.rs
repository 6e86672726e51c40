//! The store's conformance suite: every case runs the same steps against both backends
//! through `store::connect` and the `EventStore` trait, so the one write path behaves the
//! same whichever statements run under it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fleetledger::store::{self, AppendRequest, Appended, EventStore, ExpectedVersion, ReadModelWrite, Snapshot, StoreError};
use fleetledger_events::EventEnvelope;

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    a_stale_append_in_a_batch_fails_alone,
    a_refused_append_rolls_back_to_its_savepoint_and_the_batch_goes_on,
    a_duplicate_event_id_is_refused,
    a_stale_expected_version_is_a_conflict,
    read_models_and_snapshots_commit_with_their_events_or_not_at_all,
    expected_any_appends_at_the_tail,
    sixty_four_concurrent_writers_lose_nothing,
    import_fills_an_empty_store_and_refuses_a_gap,
    a_swap_is_refused_once_the_head_has_moved,
    dead_letters_are_parked_once_claimed_by_one_and_settled_by_their_holder,
    two_writers_of_one_store_keep_one_chain,
    an_event_over_the_size_limit_is_refused,
    an_append_after_a_queued_predecessor_shares_its_fate,
    an_append_after_an_event_lands_on_that_event_or_not_at_all,
    an_outcome_another_process_recorded_first_is_folded_on_the_state_it_followed,
);

async fn open(backend: Backend) -> Option<(TestStore, Arc<dyn EventStore>)> {
    let test_store = TestStore::new(backend).await?;
    let store = store::connect(&test_store.url()).await.expect("the store opens");
    Some((test_store, store))
}

/// One event appended to `stream` at `expected`, with the stream's read model at the new
/// version.
fn with_model(stream: &str, expected: i64) -> AppendRequest {
    let mut request = test_append(stream, expected, 1);
    request.read_models.push(model_row(stream, expected + 1));
    request
}

fn model_row(stream: &str, version: i64) -> ReadModelWrite {
    ReadModelWrite {
        kind: "test".into(),
        id: stream.into(),
        org_id: default_org(),
        version,
        doc: format!("{{\"stream\":\"{stream}\",\"version\":{version}}}"),
    }
}

fn snapshot(stream: &str, version: i64) -> Snapshot {
    Snapshot {
        stream_id: stream.into(),
        version,
        kind: "test".into(),
        doc: format!("{{\"at\":{version}}}"),
    }
}

/// Submits `requests` so that the writer takes them as one batch, in this order: while
/// another connection holds the head, a first append occupies the writer and the requests
/// queue up behind it; once the head is free, the writer takes everything queued at once.
async fn in_one_batch(
    test_store: &TestStore,
    backend: Backend,
    store: &Arc<dyn EventStore>,
    requests: Vec<AppendRequest>,
) -> Vec<Result<Appended, StoreError>> {
    assert!(requests.len() <= 30, "join_all polls (and so queues) up to 30 futures in order");
    let hold = HeadHold::take(test_store, backend).await;
    let first = {
        let store = store.clone();
        tokio::spawn(async move { store.append(test_append(&unique("first"), 0, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let batch = {
        let store = store.clone();
        tokio::spawn(async move { futures::future::join_all(requests.into_iter().map(|r| store.append(r))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.release().await;
    first.await.unwrap().expect("the first append commits");
    batch.await.unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The events of the appends that committed, asserting they were written by one
/// transaction (one commit time) at contiguous positions, in submission order.
fn committed_together(results: &[Result<Appended, StoreError>]) -> Vec<EventEnvelope> {
    let events: Vec<EventEnvelope> = results.iter().flatten().flat_map(|a| a.events.clone()).collect();
    let times: HashSet<_> = events.iter().map(|e| e.recorded_at).collect();
    assert_eq!(times.len(), 1, "one transaction wrote every committed append");
    for pair in events.windows(2) {
        assert_eq!(pair[1].global_position, pair[0].global_position + 1, "positions are contiguous");
    }
    events
}

async fn assert_log_verifies(store: &Arc<dyn EventStore>, events: u64) {
    let verified = store::verify_log(store.as_ref(), |_| {}).await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.checked, events);
    assert_eq!(store.head().await.unwrap(), events as i64);
}

async fn a_stale_append_in_a_batch_fails_alone(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    store.append(test_append("busy", 0, 2)).await.unwrap();
    let streams: Vec<String> = (0..20).map(|i| unique(&format!("s{i}"))).collect();
    let mut requests: Vec<AppendRequest> = streams.iter().map(|s| with_model(s, 0)).collect();
    requests[7] = with_model("busy", 1);
    let results = in_one_batch(&test_store, backend, &store, requests).await;

    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (
                7,
                Err(StoreError::Conflict {
                    stream_id,
                    expected: 1,
                    actual: 2,
                }),
            ) => assert_eq!(stream_id, "busy"),
            (7, other) => panic!("the stale append is a conflict, not {other:?}"),
            (_, Ok(appended)) => assert_eq!(appended.stream_version(), 1),
            (_, Err(e)) => panic!("append {i} failed: {e}"),
        }
    }
    let events = committed_together(&results);
    assert_eq!(events.len(), 19);
    assert_eq!(events[0].global_position, 4, "after the two events and the first append");
    assert_eq!(store.stream_version("busy").await.unwrap(), 2);
    assert_eq!(store.load_model("test", "busy").await.unwrap().map(|m| m.version), None);
    assert_eq!(store.load_model("test", &streams[19]).await.unwrap().map(|m| m.version), Some(1));
    assert_log_verifies(&store, 22).await;
}

async fn a_refused_append_rolls_back_to_its_savepoint_and_the_batch_goes_on(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    let known = store.append(test_append("known", 0, 1)).await.unwrap().events[0].event_id;
    let streams: Vec<String> = (0..20).map(|i| unique(&format!("s{i}"))).collect();
    let mut requests: Vec<AppendRequest> = streams.iter().map(|s| with_model(s, 0)).collect();
    // An event id already in the log fails the batch's set-based insert, so the batch is
    // appended one by one under savepoints, and these four are each rolled back alone:
    // one before it wrote anything, two whose insert failed, and one whose first 1,000
    // events were inserted before its second insert failed.
    requests[4].events[0].event_id = known;
    requests[9] = with_model("known", 0);
    requests[13].events[0].event_id = known;
    requests[13].snapshots.push(snapshot(&streams[13], 1));
    requests[16] = test_append(&streams[16], 0, 1001);
    requests[16].events[1000].event_id = known;
    let results = in_one_batch(&test_store, backend, &store, requests).await;

    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (4 | 13 | 16, Err(StoreError::DuplicateEvent)) => {}
            (
                9,
                Err(StoreError::Conflict {
                    expected: 0, actual: 1, ..
                }),
            ) => {}
            (4 | 9 | 13 | 16, other) => panic!("append {i} is refused, not {other:?}"),
            (_, Ok(appended)) => assert_eq!(appended.stream_version(), 1),
            (_, Err(e)) => panic!("append {i} failed: {e}"),
        }
    }
    let events = committed_together(&results);
    assert_eq!(events.len(), 16);
    assert_eq!(events.last().unwrap().stream_id, streams[19], "appends after the refusals commit");
    for refused in [4, 13, 16] {
        assert_eq!(store.stream_version(&streams[refused]).await.unwrap(), 0);
        assert!(store.load_model("test", &streams[refused]).await.unwrap().is_none());
    }
    assert!(store.snapshot_at(&streams[13], 1).await.unwrap().is_none());
    assert_eq!(store.stream_version("known").await.unwrap(), 1);
    assert_eq!(store.load_model("test", &streams[14]).await.unwrap().map(|m| m.version), Some(1));
    assert_log_verifies(&store, 18).await;
}

async fn a_duplicate_event_id_is_refused(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    let first = store.append(test_append("a", 0, 1)).await.unwrap().events[0].clone();

    let mut again = with_model("b", 0);
    again.events[0].event_id = first.event_id;
    assert!(matches!(store.append(again).await, Err(StoreError::DuplicateEvent)));

    // Two events of one append with one id: the second collides with the first.
    let mut twice = test_append("c", 0, 2);
    twice.events[1].event_id = twice.events[0].event_id;
    assert!(matches!(store.append(twice).await, Err(StoreError::DuplicateEvent)));

    assert_eq!(store.stream_version("b").await.unwrap(), 0);
    assert_eq!(store.stream_version("c").await.unwrap(), 0);
    assert!(store.load_model("test", "b").await.unwrap().is_none());
    assert!(store.event_exists(first.event_id).await.unwrap());

    // Two appends of one batch with one new event id: the first one committed wins.
    let (earlier, mut later) = (with_model("d", 0), with_model("e", 0));
    later.events[0].event_id = earlier.events[0].event_id;
    let results = in_one_batch(&test_store, backend, &store, vec![earlier, later]).await;
    assert!(matches!(results[..], [Ok(_), Err(StoreError::DuplicateEvent)]), "{results:?}");
    assert_eq!(store.stream_version("e").await.unwrap(), 0);
    assert!(store.load_model("test", "e").await.unwrap().is_none());
    assert_log_verifies(&store, 3).await;
}

async fn a_stale_expected_version_is_a_conflict(backend: Backend) {
    let Some((_guard, store)) = open(backend).await else {
        return;
    };
    store.append(test_append("a", 0, 2)).await.unwrap();
    for expected in [0, 1, 3] {
        match store.append(with_model("a", expected)).await {
            Err(StoreError::Conflict {
                stream_id,
                expected: e,
                actual: 2,
            }) => assert_eq!((stream_id.as_str(), e), ("a", expected)),
            other => panic!("expected {expected} at version 2 is a conflict, not {other:?}"),
        }
    }
    // A stream that does not exist is at version 0.
    assert!(matches!(
        store.append(test_append("new", 1, 1)).await,
        Err(StoreError::Conflict {
            expected: 1,
            actual: 0,
            ..
        })
    ));
    assert!(store.load_model("test", "a").await.unwrap().is_none());
    assert_eq!(store.append(test_append("a", 2, 1)).await.unwrap().stream_version(), 3);
    assert_log_verifies(&store, 3).await;
}

async fn read_models_and_snapshots_commit_with_their_events_or_not_at_all(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    let mut first = with_model("a", 0);
    first.read_models.push(ReadModelWrite {
        kind: "lookup".into(),
        ..model_row("a-by-name", 1)
    });
    first.snapshots.push(snapshot("a", 1));
    let appended = store.append(first).await.unwrap();
    assert_eq!(appended.stream_version(), 1);
    let model = store.load_model("test", "a").await.unwrap().expect("the read model is written");
    assert_eq!((model.version, model.doc.as_str()), (1, "{\"stream\":\"a\",\"version\":1}"));
    assert!(store.load_model("lookup", "a-by-name").await.unwrap().is_some());
    assert_eq!(store.snapshot_at("a", 5).await.unwrap(), Some(snapshot("a", 1)));

    // Refused appends write none of their rows: a stale one, and a duplicate event whose
    // insert failed after its rows were ready.
    let mut stale = with_model("a", 0);
    stale.read_models[0].doc = "stale".into();
    stale.snapshots.push(snapshot("a", 2));
    assert!(matches!(store.append(stale).await, Err(StoreError::Conflict { .. })));
    let mut duplicate = with_model("a", 1);
    duplicate.events[0].event_id = appended.events[0].event_id;
    duplicate.snapshots.push(snapshot("a", 2));
    assert!(matches!(store.append(duplicate).await, Err(StoreError::DuplicateEvent)));
    assert_eq!(store.load_model("test", "a").await.unwrap().map(|m| m.version), Some(1));
    assert_eq!(store.snapshot_at("a", 5).await.unwrap(), Some(snapshot("a", 1)));

    // Several appends of one stream in one batch, each with the stream's row: the row
    // of the last one is what stays.
    let requests = (2..7)
        .map(|v| {
            let mut request = test_append("a", v - 1, 1);
            request.read_models.push(model_row("a", v));
            request
        })
        .collect();
    let results = in_one_batch(&test_store, backend, &store, requests).await;
    assert_eq!(committed_together(&results).len(), 5);
    let model = store.load_model("test", "a").await.unwrap().unwrap();
    assert_eq!((model.version, model.doc.as_str()), (6, "{\"stream\":\"a\",\"version\":6}"));
    assert_log_verifies(&store, 7).await;
}

async fn expected_any_appends_at_the_tail(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    let any = |stream: &str, n: usize| {
        let mut request = test_append(stream, 0, n);
        request.expected = ExpectedVersion::Any;
        request
    };
    assert_eq!(store.append(any("a", 1)).await.unwrap().stream_version(), 1);
    assert_eq!(store.append(any("a", 2)).await.unwrap().stream_version(), 3);

    // Many appends to one stream in one batch each continue the one before.
    let results = in_one_batch(&test_store, backend, &store, (0..20).map(|_| any("a", 2)).collect()).await;
    let versions: Vec<i64> = results.iter().map(|r| r.as_ref().unwrap().stream_version()).collect();
    assert_eq!(versions, (1..=20).map(|i| 3 + 2 * i).collect::<Vec<_>>());
    committed_together(&results);
    let events = store.read_stream("a", 1).await.unwrap();
    assert_eq!(events.len(), 43);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stream_version, i as i64 + 1);
    }
    assert_log_verifies(&store, 44).await;
}

async fn sixty_four_concurrent_writers_lose_nothing(backend: Backend) {
    let Some((_guard, store)) = open(backend).await else {
        return;
    };
    const WRITERS: usize = 64;
    const EACH: i64 = 15;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = format!("writer-{w}");
                let mut acknowledged = Vec::new();
                for v in 0..EACH {
                    let mut request = with_model(&stream, v);
                    if (v + 1) % 5 == 0 {
                        request.snapshots.push(snapshot(&stream, v + 1));
                    }
                    let appended = store.append(request).await.expect("every writer's append commits");
                    assert_eq!(appended.stream_version(), v + 1);
                    acknowledged.push(appended.events[0].event_id);
                }
                acknowledged
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }

    let total = WRITERS as i64 * EACH;
    let log = store.read_all(0, 10_000, None).await.unwrap();
    assert_eq!(log.len() as i64, total);
    let stored: HashSet<_> = log.iter().map(|e| e.event_id).collect();
    assert_eq!(stored, acknowledged, "every acknowledged append is in the log, and nothing else");
    let mut versions: HashMap<&str, i64> = HashMap::new();
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.global_position, i as i64 + 1, "positions are contiguous");
        let last = versions.entry(e.stream_id.as_str()).or_default();
        assert_eq!(e.stream_version, *last + 1, "stream versions are contiguous");
        *last = e.stream_version;
    }
    for w in 0..WRITERS {
        let stream = format!("writer-{w}");
        assert_eq!(store.load_model("test", &stream).await.unwrap().map(|m| m.version), Some(EACH));
        assert_eq!(store.snapshot_at(&stream, EACH).await.unwrap().map(|s| s.version), Some(15));
    }
    assert_log_verifies(&store, total as u64).await;
}

async fn import_fills_an_empty_store_and_refuses_a_gap(backend: Backend) {
    let Some((_source_guard, source)) = open(backend).await else {
        return;
    };
    for (stream, n) in [("a", 3), ("b", 2), ("a", 1)] {
        let mut request = test_append(stream, 0, n);
        request.expected = ExpectedVersion::Any;
        source.append(request).await.unwrap();
    }
    let exported = source.read_all(0, 100, None).await.unwrap();
    assert_eq!(exported.len(), 6);

    // A gap is refused, and the refused import leaves the store empty.
    let Some((_gap_guard, gapped)) = open(backend).await else {
        return;
    };
    let mut with_gap = exported.clone();
    with_gap.remove(2);
    match gapped.import_events(&with_gap).await {
        Err(StoreError::ImportGap { expected: 3, actual: 4 }) => {}
        other => panic!("a gap is refused, not {other:?}"),
    }
    assert_eq!(gapped.head().await.unwrap(), 0);
    assert!(gapped.read_all(0, 100, None).await.unwrap().is_empty());
    match gapped.import_events(&exported[1..]).await {
        Err(StoreError::ImportGap { expected: 1, actual: 2 }) => {}
        other => panic!("an import must start at position 1, not {other:?}"),
    }

    // The whole log goes in as it was (here in two parts, as a large one may), and
    // appends continue after it.
    gapped.import_events(&exported[..2]).await.unwrap();
    match gapped.import_events(&exported[3..]).await {
        Err(StoreError::ImportGap { expected: 3, actual: 4 }) => {}
        other => panic!("a part must continue the head, not {other:?}"),
    }
    gapped.import_events(&exported[2..]).await.unwrap();
    let imported = gapped.read_all(0, 100, None).await.unwrap();
    assert_eq!(
        serde_json::to_value(&imported).unwrap(),
        serde_json::to_value(&exported).unwrap(),
        "positions, ids, hashes and times are kept"
    );
    assert_log_verifies(&gapped, 6).await;
    assert!(matches!(gapped.import_events(&exported).await, Err(StoreError::NotEmpty)));
    let next = gapped.append(test_append("b", 2, 1)).await.unwrap();
    assert_eq!((next.events[0].global_position, next.stream_version()), (7, 3));
    assert_eq!(
        next.events[0].prev_hash, exported[4].hash,
        "the chain continues from the imported tail"
    );
    assert_log_verifies(&gapped, 7).await;
}

async fn a_swap_is_refused_once_the_head_has_moved(backend: Backend) {
    let Some((_guard, store)) = open(backend).await else {
        return;
    };
    let mut request = with_model("a", 0);
    request.read_models.push(ReadModelWrite {
        kind: "other".into(),
        ..model_row("a", 1)
    });
    request.snapshots.push(snapshot("a", 1));
    store.append(request).await.unwrap();
    let through = store.head().await.unwrap();
    store.append(with_model("a", 1)).await.unwrap();

    let rebuilt = vec![model_row("a", 1), model_row("b", 7)];
    let swapped = store
        .swap_read_models(&["test".to_string()], &rebuilt, &[snapshot("b", 7)], through)
        .await
        .unwrap();
    assert!(!swapped, "the log moved on since `through`");
    assert_eq!(store.load_model("test", "a").await.unwrap().map(|m| m.version), Some(2));
    assert!(store.load_model("test", "b").await.unwrap().is_none());
    assert_eq!(store.snapshot_at("a", 1).await.unwrap(), Some(snapshot("a", 1)));

    let head = store.head().await.unwrap();
    let swapped = store
        .swap_read_models(&["test".to_string()], &rebuilt, &[snapshot("b", 7)], head)
        .await
        .unwrap();
    assert!(swapped);
    let mut models: Vec<(String, i64)> = store
        .list_models("test")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.version))
        .collect();
    models.sort();
    assert_eq!(models, vec![("a".to_string(), 1), ("b".to_string(), 7)], "exactly the swapped rows");
    assert!(store.load_model("other", "a").await.unwrap().is_some(), "other kinds are untouched");
    assert!(
        store.snapshot_at("a", 1).await.unwrap().is_none(),
        "the kind's snapshots are replaced"
    );
    assert_eq!(store.snapshot_at("b", 9).await.unwrap(), Some(snapshot("b", 7)));
}

async fn dead_letters_are_parked_once_claimed_by_one_and_settled_by_their_holder(backend: Backend) {
    use fleetledger::store::{Parking, Redriven};
    let Some((_dir, store)) = open(backend).await else { return };
    let appended = store.append(test_append("parked", 0, 2)).await.unwrap();
    let (first, second) = (&appended.events[0], &appended.events[1]);
    let park = |event, error| Parking {
        worker: "w",
        event,
        attempts: 3,
        error,
    };
    store.park(&park(first, "down")).await.unwrap();
    // Parking again (a restart between failure and parking) keeps the entry as it was.
    store.park(&park(first, "again")).await.unwrap();
    store.park(&park(second, "down too")).await.unwrap();
    let parked = store.dead_letters().await.unwrap();
    assert_eq!(parked.len(), 2);
    let (one, two) = (&parked[0], &parked[1]);
    assert_eq!(
        (
            one.event_id.as_str(),
            one.stream_version,
            one.attempts,
            one.last_error.as_str(),
            one.org_id.clone()
        ),
        (first.event_id.to_string().as_str(), 1, 3, "down", default_org())
    );
    assert_eq!(store.dead_letter_counts().await.unwrap(), [("test".to_string(), 2)]);

    let lease = Duration::from_secs(60);
    assert!(store.claim_redrive("w", "a", lease).await.unwrap().is_none(), "nothing asked yet");
    assert_eq!(store.request_redrive(Some(two.id)).await.unwrap().len(), 1);
    assert!(store.request_redrive(Some(999_999)).await.unwrap().is_empty());
    assert!(
        store.claim_redrive("other", "a", lease).await.unwrap().is_none(),
        "another worker's entries are not its own"
    );
    let claimed = store.claim_redrive("w", "a", lease).await.unwrap().expect("the asked entry");
    assert_eq!(claimed.id, two.id);
    assert!(store.claim_redrive("w", "b", lease).await.unwrap().is_none(), "held by a");
    assert!(
        !store.settle_redrive(two.id, "b", Redriven::Delivered).await.unwrap(),
        "only its holder settles it"
    );
    assert!(store.settle_redrive(two.id, "a", Redriven::Failed("still down")).await.unwrap());
    let two_now = store.dead_letters().await.unwrap().pop().unwrap();
    assert_eq!(
        (
            two_now.attempts,
            two_now.redrives,
            two_now.last_error.as_str(),
            two_now.retry_requested_at,
            two_now.claimed_by
        ),
        (4, 1, "still down", None, None)
    );

    // A claim that ran out is taken over; every entry can be asked for at once.
    assert_eq!(store.request_redrive(None).await.unwrap().len(), 2);
    let gone = store.claim_redrive("w", "a", Duration::ZERO).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let taken = store.claim_redrive("w", "b", lease).await.unwrap().unwrap();
    assert_eq!(taken.id, gone.id, "the lapsed claim is taken over");
    assert!(store.settle_redrive(taken.id, "b", Redriven::Delivered).await.unwrap());
    let left = store.claim_redrive("w", "b", lease).await.unwrap().unwrap();
    assert!(store.settle_redrive(left.id, "b", Redriven::Delivered).await.unwrap());
    assert!(store.dead_letters().await.unwrap().is_empty());
    assert!(store.dead_letter_counts().await.unwrap().is_empty());
}

/// Two processes' writers (two opens of one store) appending to the same streams: each
/// writer remembers the tails it wrote, and the other's appends make them stale. Every
/// unconditional append still lands at the stream's tail, a precondition is judged
/// against the log and not against what a writer remembers, and the chain verifies.
async fn two_writers_of_one_store_keep_one_chain(backend: Backend) {
    let Some((test_store, first)) = open(backend).await else {
        return;
    };
    let second = store::connect(&test_store.url()).await.expect("a second writer opens the store");
    let any = |stream: &str| {
        let mut request = test_append(stream, 0, 1);
        request.expected = ExpectedVersion::Any;
        request
    };
    for round in 0..5 {
        for stream in ["shared-a", "shared-b"] {
            assert_eq!(first.append(any(stream)).await.unwrap().stream_version(), 2 * round + 1);
            assert_eq!(second.append(any(stream)).await.unwrap().stream_version(), 2 * round + 2);
        }
    }
    // `first` last wrote version 9; the log is at 10.
    assert_eq!(first.append(test_append("shared-a", 10, 1)).await.unwrap().stream_version(), 11);
    assert!(matches!(
        second.append(test_append("shared-a", 10, 1)).await,
        Err(StoreError::Conflict { actual: 11, .. })
    ));
    // Concurrently from both, on one stream.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = if i % 2 == 0 { first.clone() } else { second.clone() };
            tokio::spawn(async move { store.append(any("shared-b")).await.unwrap().stream_version() })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (11..=50).collect::<Vec<_>>());
    let events = first.read_stream("shared-b", 1).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_log_verifies(&first, 21 + 40).await;
}

/// The log takes events of at most `MAX_EVENT_DATA_BYTES` of data: a larger one is refused
/// before anything is written, and the stream goes on.
async fn an_event_over_the_size_limit_is_refused(backend: Backend) {
    let Some((_guard, store)) = open(backend).await else {
        return;
    };
    let mut big = test_append("big", 0, 1);
    big.events[0].data = serde_json::json!({"pad": "x".repeat(store::MAX_EVENT_DATA_BYTES)}).into();
    match store.append(big).await {
        Err(StoreError::TooLarge { bytes, limit }) => {
            assert!(bytes > limit);
            assert_eq!(limit, store::MAX_EVENT_DATA_BYTES);
        }
        other => panic!("an event over the limit is refused, not {other:?}"),
    }
    assert_eq!(store.head().await.unwrap(), 0);
    let mut fits = test_append("big", 0, 1);
    fits.events[0].data = serde_json::json!({"pad": "x".repeat(store::MAX_EVENT_DATA_BYTES - 100)}).into();
    assert_eq!(store.append(fits).await.unwrap().stream_version(), 1);
}

/// One event appended after `predecessor` (the stream's last event, at `version`).
fn after(stream: &str, version: i64, predecessor: uuid::Uuid) -> AppendRequest {
    let mut request = with_model(stream, version);
    request.expected = ExpectedVersion::After {
        version,
        event_id: predecessor,
    };
    request
}

/// Appends decided on queued predecessors commit in the predecessor's batch, and a
/// refused predecessor takes every append decided on it down with it.
async fn an_append_after_a_queued_predecessor_shares_its_fate(backend: Backend) {
    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    let first = with_model("hot", 0);
    let second = after("hot", 1, first.events[0].event_id);
    let third = after("hot", 2, second.events[0].event_id);
    let results = in_one_batch(&test_store, backend, &store, vec![first, second, third]).await;
    let events = committed_together(&results);
    assert_eq!(events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(store.load_model("test", "hot").await.unwrap().unwrap().version, 3);

    // A predecessor refused for a stale version: its successors are refused with it,
    // and an append decided on the committed tail goes on.
    let stale = with_model("hot", 1);
    let on_stale = after("hot", 2, stale.events[0].event_id);
    let on_tail = after("hot", 3, events[2].event_id);
    let results = in_one_batch(&test_store, backend, &store, vec![stale, on_stale, on_tail]).await;
    assert!(
        matches!(
            results[0],
            Err(StoreError::Conflict {
                expected: 1,
                actual: 3,
                ..
            })
        ),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(
            results[1],
            Err(StoreError::Conflict {
                expected: 2,
                actual: 3,
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().unwrap().stream_version(), 4);
    assert_eq!(store.load_model("test", "hot").await.unwrap().unwrap().version, 4);
    // Each batch followed a first append of its own.
    assert_log_verifies(&store, 2 + 3 + 1).await;
}

/// `After` names the event an append was decided on: another event at the same version
/// (another writer's, which won the race the predecessor lost) refuses it, whether the
/// writer remembers the stream's tail or has to read it from the log.
async fn an_append_after_an_event_lands_on_that_event_or_not_at_all(backend: Backend) {
    let Some((test_store, first)) = open(backend).await else {
        return;
    };
    let second = store::connect(&test_store.url()).await.expect("a second writer opens the store");
    for (writer, stream) in [(&first, "remembered"), (&second, "read back")] {
        let won = first.append(test_append(stream, 0, 1)).await.unwrap().events[0].event_id;
        let lost = uuid::Uuid::now_v7();
        match writer.append(after(stream, 1, lost)).await {
            Err(StoreError::Conflict {
                expected: 1, actual: 1, ..
            }) => {}
            other => panic!("{stream}: an append after an event that is not the tail is refused, not {other:?}"),
        }
        assert!(matches!(
            writer.append(after(stream, 0, won)).await,
            Err(StoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            })
        ));
        assert!(
            writer.append(after("never written", 0, won)).await.is_err(),
            "{stream}: no stream, no tail to follow"
        );
        assert_eq!(writer.append(after(stream, 1, won)).await.unwrap().stream_version(), 2, "{stream}");
    }
    assert_log_verifies(&first, 4).await;
}

/// A worker's outcome has a fixed event id, so two processes handling one trigger decide
/// the same event, each on the state it knows. When the other process's commits first,
/// this process's cache must take the state that event leads to in the log, not the one
/// its own (stale, and then refused) decision led to.
async fn an_outcome_another_process_recorded_first_is_folded_on_the_state_it_followed(backend: Backend) {
    use fleetledger::ledger::{Ledger, WriteContext};
    use fleetledger::store::cache::ReadModels;
    use fleetledger_events::profile::{ConfigChangeMode, ProfileConfigReplaced, ProfileCreated, ProfileEvent};
    use fleetledger_projections::profile::Profile;

    let Some((test_store, store)) = open(backend).await else {
        return;
    };
    let ledger = |store: Arc<dyn EventStore>| async move { Ledger::new(store.clone(), ReadModels::load(store).await.unwrap()) };
    let here = ledger(store).await;
    let there = ledger(store::connect(&test_store.url()).await.unwrap()).await;
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    let replaced = move |n: i64| {
        ProfileEvent::ConfigReplaced(ProfileConfigReplaced {
            mode: ConfigChangeMode::Replace,
            fields: vec![],
            config: serde_json::json!({ "n": n }),
            config_hash: format!("hash-{n}"),
            config_schema_version: 1,
            raw_nix: String::new(),
            restored_from_version: None,
            reason: None,
            replaced_at: now,
        })
    };
    let context = WriteContext::new(fleetledger_events::Metadata {
        org_id: default_org(),
        actor: fleetledger_events::Actor::system("test"),
        ..Default::default()
    });
    let created = ProfileEvent::Created(ProfileCreated {
        profile_id: id,
        org_id: default_org().parse().unwrap(),
        name: "p".into(),
        description: String::new(),
        fleet_ids: vec![],
        config: serde_json::json!({ "n": 1 }),
        config_hash: "hash-1".into(),
        config_schema_version: 1,
        raw_nix: String::new(),
        created_at: now,
    });
    let stream = id.to_string();
    here.write_stream::<Profile, ()>(&stream, &context, |_| Ok(vec![created.clone()]))
        .await
        .unwrap();
    // The other process changes the profile (which this one has not seen yet), then
    // records the outcome.
    there
        .write::<Profile, ()>(&stream, &context, |_| Ok(vec![replaced(2)]))
        .await
        .unwrap();
    let outcome = WriteContext {
        event_id: Some(uuid::Uuid::now_v7()),
        ..context.clone()
    };
    let recorded = there
        .write::<Profile, ()>(&stream, &outcome, |_| Ok(vec![replaced(3)]))
        .await
        .unwrap();
    assert_eq!((recorded.version, recorded.into_model().latest_revision), (3, 3));
    // This process decides the same outcome on the state it knows (version 1); while its
    // append waits for the log, its cache follows the log.
    let hold = HeadHold::take(&test_store, backend).await;
    let late = {
        let here = here.clone();
        let (stream, outcome) = (stream.clone(), outcome.clone());
        tokio::spawn(async move {
            here.write::<Profile, ()>(&stream, &outcome, |_| Ok(vec![replaced(3)]))
                .await
                .map(|w| w.version)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    here.models.catch_up().await.unwrap();
    hold.release().await;
    assert!(
        matches!(late.await.unwrap(), Err(fleetledger::ledger::WriteError::Duplicate)),
        "the outcome is recorded once"
    );
    let cached = here.models.cache::<Profile>().get(&stream).expect("cached");
    assert_eq!(
        (cached.version, cached.model.latest_revision),
        (3, 3),
        "the cache holds the state the log's outcome leads to"
    );
}
