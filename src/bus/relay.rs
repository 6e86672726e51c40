//! The relay: one leader across every process sharing the store tails the log from its
//! checkpoint and publishes to JetStream in global order, advancing the checkpoint only
//! after JetStream acknowledged. A crash between the two republishes, which JetStream's
//! dedup window and consumers' idempotency make harmless.
//!
//! The stored checkpoint trails what was published by at most `checkpoint_every`: saving
//! it is a durable commit, and one per published batch would double the database's
//! commits under a steady trickle of writes. What a crash republishes is then at most that
//! much, far inside the dedup window (`nats::DEDUP_WINDOW`).
//!
//! How far behind the relay is, is measured from the store (the checkpoint every process
//! shares), not from the relay's own progress: it keeps growing while NATS is away, and
//! every replica reports it, leader or not.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::nats::JetStream;
use crate::store::{EventStore, LeaderLease, StoreError};

/// The checkpoint and leadership name of the relay.
pub const RELAY: &str = "relay";

/// How long the stored checkpoint may trail what was published.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct RelaySettings {
    pub batch: i64,
    pub poll: Duration,
    /// How long what was published may stay ahead of the stored checkpoint.
    pub checkpoint_every: Duration,
    /// Test hook: abort the process after publishing past this position, before the
    /// checkpoint moves.
    pub crash_after_publish: Option<i64>,
}

pub async fn run(store: Arc<dyn EventStore>, nats: Arc<JetStream>, settings: RelaySettings, mut shutdown: watch::Receiver<bool>) {
    loop {
        match store.try_lead(RELAY).await {
            Ok(Some(lease)) => {
                tracing::info!("relay: leading");
                if lead(&store, &nats, &settings, lease, &mut shutdown).await {
                    return;
                }
                tracing::warn!("relay: lost leadership");
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "relay: cannot reach the store"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Publishes while the lease holds; `true` when asked to shut down.
async fn lead(
    store: &Arc<dyn EventStore>,
    nats: &JetStream,
    settings: &RelaySettings,
    mut lease: LeaderLease,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut commits = store.commits();
    let mut checkpoint = match store.checkpoint(RELAY).await {
        Ok(c) => c,
        Err(_) => return false,
    };
    // What is published is `checkpoint`; what is stored, `saved`, as of `saved_at`.
    let mut saved = checkpoint;
    let mut saved_at = tokio::time::Instant::now();
    let save = |position: i64| async move {
        match store.save_checkpoint(RELAY, position).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "relay: cannot save the checkpoint");
                false
            }
        }
    };
    let mut backoff = Duration::from_millis(100);
    let mut last_lease_check = tokio::time::Instant::now();
    let mut woken_by_commit = false;
    loop {
        if last_lease_check.elapsed() > Duration::from_secs(1) {
            if !lease.alive().await {
                return false;
            }
            last_lease_check = tokio::time::Instant::now();
        }
        // A commit of this process is taken from the writer's memory (when it holds all
        // of it and the batch is not too large), anything else from the log.
        let recent = if woken_by_commit { store.recent(checkpoint) } else { None };
        woken_by_commit = false;
        let read = match recent.filter(|events| events.len() as i64 <= settings.batch) {
            Some(events) => Ok(events),
            None => store.read_all(checkpoint, settings.batch, None).await,
        };
        let events = match read {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, "relay: cannot read the log");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let Some(last) = events.last().map(|e| e.global_position) else {
            // Caught up: the checkpoint is stored once its interval is over, unless more
            // is published first.
            let due = (saved < checkpoint).then(|| saved_at + settings.checkpoint_every);
            woken_by_commit = tokio::select! {
                _ = commits.changed() => true,
                _ = tokio::time::sleep(settings.poll) => false,
                _ = sleep_until(due) => {
                    if save(checkpoint).await {
                        (saved, saved_at) = (checkpoint, tokio::time::Instant::now());
                    }
                    false
                }
                _ = shutdown.changed() => {
                    if saved < checkpoint {
                        save(checkpoint).await;
                    }
                    return true;
                }
            };
            continue;
        };
        if let Err(error) = nats.publish(&events).await {
            tracing::warn!(%error, behind = events.len(), "relay: publish failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return true,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        backoff = Duration::from_millis(100);
        if settings.crash_after_publish.is_some_and(|p| last >= p) {
            tracing::error!(last, "relay: crash injected after publish, before checkpoint");
            std::process::abort();
        }
        checkpoint = last;
        woken_by_commit = true;
        if saved_at.elapsed() >= settings.checkpoint_every && save(checkpoint).await {
            (saved, saved_at) = (checkpoint, tokio::time::Instant::now());
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How far the relay is behind the log.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    /// Events after the relay's checkpoint.
    pub events: i64,
    /// Seconds since the oldest of them was committed (0 when there is none).
    pub seconds: f64,
}

/// The relay's lag now, from its checkpoint and the log.
pub async fn lag(store: &dyn EventStore) -> Result<Lag, StoreError> {
    let checkpoint = store.checkpoint(RELAY).await?;
    let head = store.head().await?;
    if head <= checkpoint {
        return Ok(Lag::default());
    }
    let oldest = store.read_all(checkpoint, 1, None).await?;
    let seconds = oldest
        .first()
        .map_or(0.0, |e| (Utc::now() - e.recorded_at).num_milliseconds().max(0) as f64 / 1000.0);
    Ok(Lag {
        events: head - checkpoint,
        seconds,
    })
}

/// Sets `fleetledger_relay_lag_events` and `fleetledger_relay_lag_seconds` every `every`
/// until shutdown, whatever the relay is doing (waiting out a failed publish included).
pub async fn measure_lag(store: Arc<dyn EventStore>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        match lag(store.as_ref()).await {
            Ok(lag) => {
                metrics::gauge!("fleetledger_relay_lag_events").set(lag.events as f64);
                metrics::gauge!("fleetledger_relay_lag_seconds").set(lag.seconds);
            }
            // The gauges keep their last values; readiness reports the store itself.
            Err(error) => tracing::debug!(%error, "relay lag: cannot read the store"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
