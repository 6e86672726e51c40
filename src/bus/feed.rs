//! Following the log from a position: the in-process bus, and what SSE and `tail` read.

use std::sync::Arc;
use std::time::Duration;

use fleetledger_events::EventEnvelope;
use futures::Stream;

use crate::auth::Principal;
use crate::store::{EventStore, StoreError};

/// Which events a follower wants, and may see.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub org_id: Option<String>,
    pub stream_type: Option<String>,
    pub stream_id: Option<String>,
    pub event_type: Option<String>,
    /// The caller whose access bounds what is read (none for the host's own tools).
    pub reader: Option<Principal>,
}

impl Filter {
    /// Everything of `principal`'s org that it may read, narrowed as asked.
    pub fn for_reader(principal: &Principal, stream_type: Option<String>, stream_id: Option<String>) -> Filter {
        Filter {
            org_id: Some(principal.org_id.to_string()),
            stream_type: stream_type.filter(|s| !s.is_empty()),
            stream_id: stream_id.filter(|s| !s.is_empty()),
            event_type: None,
            reader: Some(principal.clone()),
        }
    }

    pub fn matches(&self, e: &EventEnvelope) -> bool {
        self.org_id.as_ref().is_none_or(|o| &e.metadata.org_id == o)
            && self.stream_type.as_ref().is_none_or(|t| &e.stream_type == t)
            && self.stream_id.as_ref().is_none_or(|s| &e.stream_id == s)
            && self.event_type.as_ref().is_none_or(|t| &e.event_type == t)
            && self.reader.as_ref().is_none_or(|p| p.may_read_stream(&e.stream_type, &e.stream_id))
    }
}

/// Up to `limit` events after `after` that may match `filter`: of its org only, when it
/// names one (through the store's org index), else of the whole log.
async fn read(store: &dyn EventStore, after: i64, limit: i64, filter: &Filter) -> Result<Vec<EventEnvelope>, StoreError> {
    match &filter.org_id {
        Some(org) => store.read_org(after, limit, org, filter.stream_type.as_deref()).await,
        None => store.read_all(after, limit, filter.stream_type.as_deref()).await,
    }
}

/// A page of matching events after `after`; returns the events and the last position
/// scanned.
pub async fn page(store: &dyn EventStore, after: i64, limit: usize, filter: &Filter) -> Result<(Vec<EventEnvelope>, i64), StoreError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let batch = read(store, cursor, 1000, filter).await?;
        let Some(last) = batch.last().map(|e| e.global_position) else {
            return Ok((out, cursor));
        };
        for e in batch {
            cursor = e.global_position;
            if filter.matches(&e) {
                out.push(e);
                if out.len() == limit {
                    return Ok((out, cursor));
                }
            }
        }
        cursor = last;
    }
}

/// Every matching event after `after`, in global order, forever: woken by commits and
/// polling at `poll` for other processes' commits.
pub fn follow(
    store: Arc<dyn EventStore>,
    after: i64,
    filter: Filter,
    poll: Duration,
) -> impl Stream<Item = Result<EventEnvelope, StoreError>> {
    let commits = store.commits();
    // Whether the log must be read even when memory says this follower is caught up: at
    // first, and after a poll, for what other processes committed unannounced.
    let polled = true;
    futures::stream::unfold(
        (store, after, filter, commits, std::collections::VecDeque::new(), polled),
        move |(store, mut after, filter, mut commits, mut buffered, mut polled)| async move {
            loop {
                if let Some(e) = buffered.pop_front() {
                    return Some((Ok(e), (store, after, filter, commits, buffered, polled)));
                }
                // A commit of this process is taken from the writer's memory (whether a
                // commit or a poll woke us), so a follower does not read back and decode
                // what was just written; anything else comes from the log. Memory holding
                // nothing after `after` means caught up with every announced commit, and
                // only a poll reads the log then (each follower asking the log once more
                // per commit cost a query per commit).
                let batch = match store.recent(after) {
                    Some(events) if !events.is_empty() || !polled => Ok(events),
                    _ => read(store.as_ref(), after, 500, &filter).await,
                };
                match batch {
                    Ok(batch) if !batch.is_empty() => {
                        after = batch.last().map(|e| e.global_position).unwrap_or(after);
                        buffered.extend(batch.into_iter().filter(|e| filter.matches(e)));
                    }
                    Ok(_) => {
                        polled = tokio::select! {
                            _ = commits.changed() => false,
                            _ = tokio::time::sleep(poll) => true,
                        };
                    }
                    Err(e) => return Some((Err(e), (store, after, filter, commits, buffered, polled))),
                }
            }
        },
    )
}
