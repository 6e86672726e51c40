//! Audit and replay across stream types: folding to a time, and rebuilding every read
//! model from the log. What differs per stream type comes from the registry
//! (`crate::streams`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use fleetledger_events::{DecodeError, EventEnvelope};

use crate::store::{EventStore, FoldEvent, ReadModelWrite, Snapshot, StoreError};
use crate::streams::{self, RebuildFold};

/// The last version recorded at or before `at`, 0 when none.
pub fn version_at(events: &[EventEnvelope], at: DateTime<Utc>) -> i64 {
    events
        .iter()
        .take_while(|e| e.recorded_at <= at)
        .last()
        .map(|e| e.stream_version)
        .unwrap_or(0)
}

/// Events per page when rebuilding.
const PAGE: i64 = 5000;

/// Every read model folded from the log in memory, for `rebuild`: one fold per registered
/// stream type.
pub struct Rebuilder {
    folds: HashMap<&'static str, Box<dyn RebuildFold>>,
    snapshots: Vec<Snapshot>,
    /// The last position folded in.
    pub through: i64,
}

impl Default for Rebuilder {
    fn default() -> Self {
        Rebuilder {
            folds: streams::all().iter().map(|s| (s.name(), s.new_fold())).collect(),
            snapshots: Vec::new(),
            through: 0,
        }
    }
}

impl Rebuilder {
    pub fn apply(&mut self, e: &FoldEvent) -> Result<(), DecodeError> {
        // A stream type this build does not know has no read model to rebuild.
        if let Some(fold) = self.folds.get_mut(e.stream_type.as_str()) {
            fold.apply(e, &mut self.snapshots)?;
        }
        self.through = e.global_position;
        Ok(())
    }

    /// The rows of the chosen projections.
    pub fn rows(&self, projections: &[&str]) -> Result<Vec<ReadModelWrite>, StoreError> {
        let mut out = Vec::new();
        for p in projections {
            if let Some(fold) = self.folds.get(p) {
                fold.rows(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Snapshots taken at every multiple of `SNAPSHOT_EVERY` of the chosen projections.
    pub fn snapshots(&self, projections: &[&str]) -> Vec<Snapshot> {
        self.snapshots
            .iter()
            .filter(|s| projections.contains(&s.kind.as_str()))
            .cloned()
            .collect()
    }
}

#[derive(Debug)]
pub struct RebuildReport {
    pub events: u64,
    pub models: usize,
    pub seconds: f64,
}

/// Rebuilds read models from the log and swaps them in atomically; safe while `serve`
/// runs (events committed during the fold are folded in before the swap).
pub async fn rebuild(
    store: Arc<dyn EventStore>,
    projection: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, StoreError> {
    let chosen: Vec<&'static dyn streams::StreamType> = streams::all()
        .iter()
        .copied()
        .filter(|s| projection.is_none_or(|p| s.name() == p))
        .collect();
    if chosen.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "no projection {:?}; known: {}",
            projection.unwrap_or_default(),
            streams::names().join(", ")
        )));
    }
    let kinds: Vec<String> = chosen.iter().flat_map(|s| s.kinds()).map(str::to_string).collect();
    let chosen: Vec<&str> = chosen.iter().map(|s| s.name()).collect();
    let started = Instant::now();
    let mut rebuilder = Rebuilder::default();
    let mut events = 0u64;
    let read_after = |after: i64| {
        let store = store.clone();
        tokio::spawn(async move { store.read_all_for_fold(after, PAGE).await })
    };
    loop {
        let head = store.head().await?;
        // The next page is read while this one is folded.
        let mut next = Some(read_after(rebuilder.through));
        while rebuilder.through < head {
            let Some(reading) = next.take() else { break };
            let page = reading.await.map_err(|e| StoreError::Corrupt(e.to_string()))??;
            let Some(last) = page.last().map(|e| e.global_position) else {
                break;
            };
            if last < head {
                next = Some(read_after(last));
            }
            for e in &page {
                rebuilder.apply(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            }
            events += page.len() as u64;
            progress(rebuilder.through as u64, head as u64);
        }
        if let Some(reading) = next {
            reading.abort();
        }
        let rows = rebuilder.rows(&chosen)?;
        if store
            .swap_read_models(&kinds, &rows, &rebuilder.snapshots(&chosen), rebuilder.through)
            .await?
        {
            return Ok(RebuildReport {
                events,
                models: rows.len(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    }
}
