//! The worker runtime. A worker handles some stream types' events and records what it did
//! as an outcome event; the runtime feeds it in global order from the log (embedded) or a
//! durable JetStream pull consumer (shared by every replica, so work is split), and
//! acknowledges only after the outcome is in the log.
//!
//! Handling is idempotent by event id: a worker's outcome for a trigger has a deterministic
//! id (UUIDv5 of worker and trigger), so a redelivered trigger whose outcome exists is
//! skipped, and a second append of the same outcome is refused by the log.

pub mod drivers;
pub mod instances;
pub mod reprovisioner;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetledger_events::{Actor, DomainEvent, EventEnvelope, Metadata, NewEvent};
use fleetledger_projections::ReadModel;
use futures::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

use crate::bus::feed::{self, Filter};
use crate::bus::nats::JetStream;
use crate::bus::{envelope_of, BusError};
use crate::ledger::{Ledger, WriteContext, WriteError};
use crate::store::{AppendRequest, EventStore, ExpectedVersion, StoreError};

/// The workers this build runs in `serve` and `fleetledger worker`; sandboxes live under
/// `data_dir`, and what else they may reach is `settings.boundary`.
pub fn registry(data_dir: &std::path::Path, settings: &crate::config::DriverSettings) -> Vec<Arc<dyn Worker>> {
    use drivers::instance_sandbox::{InstanceSandbox, LocalInstanceSandbox, OpenClawCliSandbox};
    let sandboxes: Arc<dyn InstanceSandbox> = match settings.instance_driver.as_str() {
        "openclaw" => Arc::new(OpenClawCliSandbox::new(data_dir, &settings.openclaw_bin)),
        _ => Arc::new(LocalInstanceSandbox::new(data_dir)),
    };
    vec![
        Arc::new(reprovisioner::Reprovisioner {
            boundary: Arc::new(crate::boundary::Boundary::new(data_dir, &settings.boundary)),
        }),
        Arc::new(instances::InstanceWorker { sandboxes }),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// Stable name: its checkpoint and durable consumer are named after it.
    fn name(&self) -> &str;
    /// The stream types whose events it handles.
    fn stream_types(&self) -> Vec<&'static str>;
    /// Handles one event; must end by recording an outcome through `ctx`.
    async fn handle(&self, event: &EventEnvelope, ctx: &WorkerContext) -> Result<(), WorkerError>;
}

const OUTCOME_NAMESPACE: Uuid = Uuid::from_u128(0x776f_726b_6572_4000_8000_666c_6565_746c);

/// What a worker may do besides its side effect: record the outcome.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Arc<dyn EventStore>,
    pub ledger: Ledger,
    pub worker: String,
    /// Opens a secret when a side effect must send it; nothing else may.
    pub secrets: Arc<crate::secrets::Keyring>,
}

impl WorkerContext {
    /// The id of this worker's outcome for `trigger`.
    pub fn outcome_id(&self, trigger: &EventEnvelope) -> Uuid {
        Uuid::new_v5(&OUTCOME_NAMESPACE, format!("{}/{}", self.worker, trigger.event_id).as_bytes())
    }

    /// Metadata of an outcome: caused by `trigger`, in its org and correlation.
    fn outcome_metadata(&self, trigger: &EventEnvelope) -> Metadata {
        Metadata {
            org_id: trigger.metadata.org_id.clone(),
            actor: Actor::system(&format!("worker:{}", self.worker)),
            request_id: trigger.metadata.request_id.clone(),
            correlation_id: trigger
                .metadata
                .correlation_id
                .clone()
                .or_else(|| Some(trigger.event_id.to_string())),
            causation_id: Some(trigger.event_id.to_string()),
            idempotency_key: None,
            user_agent: None,
        }
    }

    /// Appends the outcome of `trigger` to a stream without a read model, caused by it.
    /// Returns `false` when that outcome was already recorded.
    pub async fn record_outcome(
        &self,
        trigger: &EventEnvelope,
        stream_type: &str,
        stream_id: &str,
        event_type: &str,
        data: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let event = NewEvent {
            event_id: self.outcome_id(trigger),
            event_type: event_type.to_string(),
            schema_version: 1,
            data,
        };
        let request = AppendRequest {
            stream_type: stream_type.to_string(),
            stream_id: stream_id.to_string(),
            expected: ExpectedVersion::Any,
            events: vec![event],
            metadata: self.outcome_metadata(trigger),
            read_models: vec![],
            snapshots: vec![],
        };
        match self.ledger.store.append(request).await {
            Ok(_) => Ok(true),
            Err(StoreError::DuplicateEvent) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The model of `event`'s stream right after `event`: the cached model when it is at
    /// that version, else the newest snapshot at or below it and the events after it.
    /// Folding the whole stream for every event made each event cost as much as the
    /// stream's history, every earlier body read and decoded again.
    pub async fn model_after<M: ReadModel>(&self, event: &EventEnvelope) -> Result<Option<M>, WorkerError> {
        if let Some(cached) = self.ledger.models.cache::<M>().get(&event.stream_id) {
            if cached.version == event.stream_version {
                return Ok(Some((*cached.model).clone()));
            }
        }
        let snapshot = self
            .store
            .snapshot_at(&event.stream_id, event.stream_version)
            .await?
            .filter(|s| s.kind == M::KIND);
        let (mut state, from) = match snapshot {
            Some(s) => (
                Some(serde_json::from_str::<M>(&s.doc).map_err(|e| WorkerError::Failed(e.to_string()))?),
                s.version + 1,
            ),
            None => (None, 1),
        };
        for e in self.store.read_stream_between(&event.stream_id, from, event.stream_version).await? {
            let decoded = M::Event::from_envelope(&e).map_err(|e| WorkerError::Failed(e.to_string()))?;
            state = M::evolve(state, &decoded);
        }
        Ok(state)
    }

    /// Appends the outcome of `trigger` to a stream with a read model, through the one
    /// write path (so the stored model stays current with it). Returns `false` when that
    /// outcome was already recorded.
    pub async fn record_model_outcome<M: ReadModel>(
        &self,
        trigger: &EventEnvelope,
        stream_id: &str,
        outcome: M::Event,
    ) -> Result<bool, StoreError> {
        let context = WriteContext {
            metadata: self.outcome_metadata(trigger),
            if_match: None,
            event_id: Some(self.outcome_id(trigger)),
        };
        match self
            .ledger
            .write_stream::<M, std::convert::Infallible>(stream_id, &context, |_| Ok(vec![outcome.clone()]))
            .await
        {
            Ok(_) => Ok(true),
            Err(WriteError::Duplicate) => Ok(false),
            Err(WriteError::Store(e)) => Err(e),
            Err(WriteError::Rejected(never)) => match never {},
            Err(WriteError::Missing | WriteError::PreconditionFailed { .. }) => Ok(false),
        }
    }
}

/// Waits until an event caused by `trigger` appears in a stream after `after_version`,
/// for at most `timeout`. Woken by this process's commits; polls for other processes'.
pub async fn await_outcome(
    store: &dyn EventStore,
    stream_id: &str,
    after_version: i64,
    trigger: Uuid,
    timeout: Duration,
    poll: Duration,
) -> Result<Option<EventEnvelope>, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let trigger = trigger.to_string();
    let mut commits = store.commits();
    let mut from = after_version + 1;
    loop {
        for event in store.read_stream(stream_id, from).await? {
            if event.metadata.causation_id.as_deref() == Some(trigger.as_str()) {
                return Ok(Some(event));
            }
            from = event.stream_version + 1;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        tokio::select! {
            _ = commits.changed() => {}
            _ = tokio::time::sleep(poll.min(left)) => {}
        }
    }
}

/// Where a worker's events come from.
#[derive(Clone)]
pub enum Source {
    /// Tail the log from the worker's checkpoint (embedded; the in-process bus).
    Log { poll: Duration },
    /// A durable JetStream pull consumer, backfilled from the log on gaps.
    JetStream(Arc<JetStream>),
}

fn checkpoint_name(worker: &str) -> String {
    format!("worker:{worker}")
}

/// Delivers one event: skipped when already handled, retried a few times on failure.
async fn deliver(worker: &dyn Worker, ctx: &WorkerContext, event: &EventEnvelope) -> Result<(), StoreError> {
    let name = worker.name().to_string();
    if ctx.store.event_exists(ctx.outcome_id(event)).await? {
        metrics::counter!("fleetledger_worker_events_total", "worker" => name, "outcome" => "skipped").increment(1);
        return Ok(());
    }
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=5 {
        match worker.handle(event, ctx).await {
            Ok(()) => {
                metrics::counter!("fleetledger_worker_events_total", "worker" => name, "outcome" => "handled").increment(1);
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(worker = %name, event_id = %event.event_id, attempt, %error, "worker failed to handle an event");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    metrics::counter!("fleetledger_worker_events_total", "worker" => name, "outcome" => "failed").increment(1);
    Ok(())
}

/// Runs a worker until `shutdown` fires.
pub async fn run(
    worker: Arc<dyn Worker>,
    ledger: Ledger,
    secrets: Arc<crate::secrets::Keyring>,
    source: Source,
    mut shutdown: watch::Receiver<bool>,
) {
    let ctx = WorkerContext {
        store: ledger.store.clone(),
        ledger,
        worker: worker.name().to_string(),
        secrets,
    };
    let result = tokio::select! {
        r = run_source(worker.as_ref(), &ctx, source) => r,
        _ = shutdown.changed() => Ok(()),
    };
    if let Err(error) = result {
        tracing::error!(worker = worker.name(), %error, "worker stopped");
    }
}

async fn run_source(worker: &dyn Worker, ctx: &WorkerContext, source: Source) -> Result<(), BusError> {
    let types = worker.stream_types();
    let wanted = |e: &EventEnvelope| types.iter().any(|t| *t == e.stream_type);
    let checkpoint = checkpoint_name(worker.name());
    match source {
        Source::Log { poll } => {
            let after = ctx.store.checkpoint(&checkpoint).await?;
            // A worker of one stream type reads only that type's events: each worker
            // reading and decoding every event paid for every big body once more.
            let filter = Filter {
                stream_type: (types.len() == 1).then(|| types[0].to_string()),
                ..Filter::default()
            };
            let mut events = Box::pin(feed::follow(ctx.store.clone(), after, filter, poll));
            while let Some(event) = events.next().await {
                let event = event?;
                if wanted(&event) {
                    deliver(worker, ctx, &event).await?;
                }
                ctx.store.save_checkpoint(&checkpoint, event.global_position).await?;
            }
            Ok(())
        }
        Source::JetStream(nats) => loop {
            if let Err(error) = consume(worker, ctx, &nats, &checkpoint, &wanted).await {
                tracing::warn!(worker = worker.name(), %error, "worker consumer reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        },
    }
}

async fn consume(
    worker: &dyn Worker,
    ctx: &WorkerContext,
    nats: &JetStream,
    checkpoint: &str,
    wanted: &(dyn Fn(&EventEnvelope) -> bool + Sync),
) -> Result<(), BusError> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    nats.ensure_stream().await?;
    let stream = nats.context.get_stream(&nats.settings.stream).await.map_err(BusError::nats)?;
    let durable = format!("worker-{}", worker.name());
    let types = worker.stream_types();
    let filter_subject = match types.as_slice() {
        [only] => format!("{}.*.{only}.>", nats.settings.subject_prefix),
        _ => String::new(),
    };
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject,
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(BusError::nats)?;
    let mut messages = consumer.messages().await.map_err(BusError::nats)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(BusError::nats)?;
        let Some(event) = envelope_of(&message.payload) else {
            let _ = message.ack().await;
            continue;
        };
        // JetStream is not the record: fill any gap from the log before going on.
        let done = ctx.store.checkpoint(checkpoint).await?;
        if event.global_position > done + 1 {
            let mut after = done;
            while after < event.global_position - 1 {
                let batch = ctx.store.read_all(after, 500, None).await?;
                let Some(last) = batch.last().map(|e| e.global_position) else {
                    break;
                };
                for missed in batch.iter().filter(|e| e.global_position < event.global_position && wanted(e)) {
                    deliver(worker, ctx, missed).await?;
                }
                after = last;
            }
        }
        if wanted(&event) {
            deliver(worker, ctx, &event).await?;
        }
        ctx.store.save_checkpoint(checkpoint, event.global_position).await?;
        message.ack().await.map_err(BusError::nats)?;
    }
    Ok(())
}
