//! The worker runtime. A worker handles some stream types' events and records what it did
//! as an outcome event; the runtime feeds it in global order from the log (embedded) or a
//! durable JetStream pull consumer (shared by every replica, so work is split), and
//! acknowledges only after the outcome is in the log.
//!
//! A side effect that fails is tried again with exponential backoff and jitter
//! (`config::DeliverySettings`); after the last try the worker records its surface's
//! failure outcome, the event is parked in the dead-letter table, and only then does the
//! checkpoint move. `fleetledger dlq retry` asks for a re-drive; the worker that parked the
//! event takes it (a claim in the store, so one replica does) between its live events, so
//! a re-drive never races the worker's own deliveries.
//!
//! Handling is idempotent by event id: a worker's outcome for a trigger has a deterministic
//! id (UUIDv5 of worker, trigger, which delivery — the worker's own or the n-th re-drive —
//! and whether it records the failure), so a redelivered trigger whose outcome exists is
//! skipped, and a second append of the same outcome is refused by the log. The same id
//! goes to the gateway with the side effect ([`WorkerContext::delivery_id`]), so a delivery
//! cut short by a crash and made again is recognised there.

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
use crate::config::DeliverySettings;
use crate::ledger::{Ledger, WriteContext, WriteError};
use crate::store::{AppendRequest, DeadLetter, EventStore, ExpectedVersion, Parking, Redriven, StoreError};

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
    /// The side effect failed (the message says why, without secrets or server paths). It
    /// is tried again; after the last try it becomes the failure outcome.
    #[error("{0}")]
    Failed(String),
    /// The worker's own store failed: nothing is recorded, the checkpoint stays, and the
    /// worker resumes from it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// Stable name: its checkpoint, durable consumer and dead letters are named after it.
    fn name(&self) -> &str;
    /// The stream types whose events it handles.
    fn stream_types(&self) -> Vec<&'static str>;
    /// Handles one event: performs its side effect and records the outcome through `ctx`,
    /// or answers `WorkerError::Failed` (recording nothing) for the runtime to try again.
    async fn handle(&self, event: &EventEnvelope, ctx: &WorkerContext) -> Result<(), WorkerError>;
    /// Records the failure outcome of `event` (its surface's `…_failed` event, carrying
    /// `error`) once every try failed, through `ctx` like `handle`.
    async fn record_failure(&self, event: &EventEnvelope, ctx: &WorkerContext, error: &str) -> Result<(), StoreError>;
}

const OUTCOME_NAMESPACE: Uuid = Uuid::from_u128(0x776f_726b_6572_4000_8000_666c_6565_746c);

/// The id of the outcome of the first delivery of event `trigger` by `worker` when it
/// succeeded (what `WorkerContext::outcome_id` gives it), for tools that check for it.
pub fn first_delivery_outcome_id(worker: &str, trigger: Uuid) -> Uuid {
    Uuid::new_v5(&OUTCOME_NAMESPACE, format!("{worker}/{trigger}").as_bytes())
}

/// How long a claimed re-drive is the claimer's alone; a claimer that died loses it then.
const REDRIVE_LEASE: Duration = Duration::from_secs(300);
/// How often a worker looks for re-drives asked for (`fleetledger dlq retry`).
const REDRIVE_EVERY: Duration = Duration::from_millis(500);

/// What a worker may do besides its side effect: record the outcome.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Arc<dyn EventStore>,
    pub ledger: Ledger,
    pub worker: String,
    /// Opens a secret when a side effect must send it; nothing else may.
    pub secrets: Arc<crate::secrets::Keyring>,
    /// Which delivery of the trigger this is: 0 the worker's own, n the n-th re-drive.
    round: i64,
    /// Whether the outcome to record is the failure after every try.
    failing: bool,
}

impl WorkerContext {
    pub fn new(ledger: Ledger, worker: &str, secrets: Arc<crate::secrets::Keyring>) -> Self {
        WorkerContext {
            store: ledger.store.clone(),
            ledger,
            worker: worker.to_string(),
            secrets,
            round: 0,
            failing: false,
        }
    }

    fn at_round(&self, round: i64) -> Self {
        WorkerContext { round, ..self.clone() }
    }

    fn failing(&self) -> Self {
        WorkerContext {
            failing: true,
            ..self.clone()
        }
    }

    /// Whether this is a re-drive from the dead-letter table rather than the first delivery.
    pub fn redriving(&self) -> bool {
        self.round > 0
    }

    /// The id of this delivery of `trigger`: its success outcome's id, and the idempotency
    /// key a side effect carries, so a gateway recognises the same delivery made again.
    pub fn delivery_id(&self, trigger: &EventEnvelope) -> Uuid {
        let name = match self.round {
            // The id outcomes had before re-drives existed, so old outcomes still count.
            0 => return first_delivery_outcome_id(&self.worker, trigger.event_id),
            n => format!("{}/{}/redrive/{n}", self.worker, trigger.event_id),
        };
        Uuid::new_v5(&OUTCOME_NAMESPACE, name.as_bytes())
    }

    /// The id of the outcome this context records for `trigger`: the delivery's, or its
    /// failure's (a separate id, so that a restart can tell a failure still to be parked
    /// from a success).
    pub fn outcome_id(&self, trigger: &EventEnvelope) -> Uuid {
        let delivery = self.delivery_id(trigger);
        match self.failing {
            false => delivery,
            true => Uuid::new_v5(&OUTCOME_NAMESPACE, format!("{delivery}/failed").as_bytes()),
        }
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
            data: data.into(),
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
    ///
    /// A re-drive gets the model as it is now instead: it comes after later changes, and
    /// must not bring back a state they replaced.
    pub async fn model_after<M: ReadModel>(&self, event: &EventEnvelope) -> Result<Option<M>, WorkerError> {
        if self.redriving() {
            let current = self.ledger.models.refresh::<M>(&event.stream_id).await?;
            return Ok(current.map(|c| (*c.model).clone()));
        }
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
            Err(WriteError::TooLarge { bytes, limit }) => Err(StoreError::TooLarge { bytes, limit }),
            Err(WriteError::Unstorable(why)) => Err(StoreError::Unstorable(why)),
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

/// A worker with what its deliveries need: how to retry, and who it is when it claims a
/// re-drive.
struct Runner<'a> {
    worker: &'a dyn Worker,
    ctx: WorkerContext,
    delivery: DeliverySettings,
    /// This process's name for its claims on dead letters.
    holder: String,
}

impl Runner<'_> {
    fn count(&self, outcome: &'static str) {
        metrics::counter!("fleetledger_worker_events_total", "worker" => self.worker.name().to_string(), "outcome" => outcome).increment(1);
    }

    /// Tries `handle` up to `attempts` times, waiting the backoff between tries; answers
    /// the last error when every try failed.
    async fn attempt(&self, ctx: &WorkerContext, event: &EventEnvelope, attempts: u32) -> Result<Result<(), String>, StoreError> {
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.worker.handle(event, ctx).await {
                Ok(()) => return Ok(Ok(())),
                Err(WorkerError::Store(e)) => return Err(e),
                Err(WorkerError::Failed(error)) => {
                    tracing::warn!(worker = %ctx.worker, event_id = %event.event_id, attempt, attempts, %error, "a delivery failed");
                    last = error;
                    if attempt < attempts {
                        tokio::time::sleep(self.delivery.backoff(attempt)).await;
                    }
                }
            }
        }
        Ok(Err(last))
    }

    /// Delivers one event the first time: skipped when already handled, tried with
    /// backoff, and after the last failed try its failure recorded and the event parked.
    /// Only then may the caller move the checkpoint.
    async fn deliver(&self, event: &EventEnvelope) -> Result<(), StoreError> {
        let ctx = &self.ctx;
        if ctx.store.event_exists(ctx.outcome_id(event)).await? {
            self.count("skipped");
            return Ok(());
        }
        if ctx.store.event_exists(ctx.failing().outcome_id(event)).await? {
            // The failure was recorded, and the process stopped before parking the event.
            let error = "every try failed (parked again after a restart; the failure outcome in the log says why)";
            self.park(event, self.delivery.delivery_attempts, error).await?;
            self.count("skipped");
            return Ok(());
        }
        match self.attempt(ctx, event, self.delivery.delivery_attempts).await? {
            Ok(()) => self.count("handled"),
            // Another process delivered it meanwhile (a redelivery to another replica, or
            // this one's ack came too late): its success stands, and no failure is recorded
            // beside it.
            Err(_) if ctx.store.event_exists(ctx.outcome_id(event)).await? => self.count("skipped"),
            Err(error) => {
                self.worker.record_failure(event, &ctx.failing(), &error).await?;
                self.park(event, self.delivery.delivery_attempts, &error).await?;
                self.count("failed");
            }
        }
        Ok(())
    }

    async fn park(&self, event: &EventEnvelope, attempts: u32, error: &str) -> Result<(), StoreError> {
        tracing::error!(worker = %self.ctx.worker, event_id = %event.event_id, %error, "a delivery failed every try; parked");
        let parking = Parking {
            worker: &self.ctx.worker,
            event,
            attempts: i64::from(attempts),
            error,
        };
        self.ctx.store.park(&parking).await
    }

    /// Re-drives every parked event of this worker that a re-drive was asked for and no one
    /// else holds, one at a time.
    async fn redrive_asked(&self) -> Result<(), StoreError> {
        while let Some(letter) = self.ctx.store.claim_redrive(&self.ctx.worker, &self.holder, REDRIVE_LEASE).await? {
            self.redrive(&letter).await?;
        }
        Ok(())
    }

    /// One more try of a parked event, with its own outcome ids: a success removes the
    /// entry; a failure is recorded and counted, and the entry waits for another ask.
    async fn redrive(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let ctx = self.ctx.at_round(letter.redrives + 1);
        let event = ctx
            .store
            .read_stream_between(&letter.stream_id, letter.stream_version, letter.stream_version)
            .await?
            .pop()
            .filter(|e| e.event_id.to_string() == letter.event_id);
        let redriven = match event {
            // Events are never deleted; an entry naming none was not written by this code.
            None => Err("the parked event is not in the log".to_string()),
            // A claimer that stopped after recording this round's outcome settles it now.
            Some(event) if ctx.store.event_exists(ctx.outcome_id(&event)).await? => Ok(()),
            Some(event) if ctx.store.event_exists(ctx.failing().outcome_id(&event)).await? => Err(letter.last_error.clone()),
            Some(event) => match self.attempt(&ctx, &event, 1).await? {
                Ok(()) => Ok(()),
                Err(error) => {
                    self.worker.record_failure(&event, &ctx.failing(), &error).await?;
                    Err(error)
                }
            },
        };
        let settled = match &redriven {
            Ok(()) => {
                self.count("handled");
                tracing::info!(worker = %ctx.worker, dead_letter = letter.id, "a parked event was delivered");
                ctx.store.settle_redrive(letter.id, &self.holder, Redriven::Delivered).await?
            }
            Err(error) => {
                self.count("failed");
                tracing::warn!(worker = %ctx.worker, dead_letter = letter.id, %error, "a parked event failed again");
                ctx.store.settle_redrive(letter.id, &self.holder, Redriven::Failed(error)).await?
            }
        };
        if !settled {
            tracing::warn!(worker = %ctx.worker, dead_letter = letter.id, "the claim on a parked event ran out before its re-drive ended");
        }
        Ok(())
    }
}

/// Runs a worker until `shutdown` fires.
pub async fn run(
    worker: Arc<dyn Worker>,
    ledger: Ledger,
    secrets: Arc<crate::secrets::Keyring>,
    source: Source,
    delivery: DeliverySettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let runner = Runner {
        worker: worker.as_ref(),
        ctx: WorkerContext::new(ledger, worker.name(), secrets),
        delivery,
        holder: format!("{}/{}", worker.name(), Uuid::new_v4()),
    };
    tokio::select! {
        () = run_source(&runner, source) => {}
        _ = shutdown.changed() => {}
    }
}

/// Feeds the worker from its source for good: a failure (the store, NATS) is logged and
/// the worker resumes from its checkpoint a second later, so no event is skipped.
async fn run_source(runner: &Runner<'_>, source: Source) {
    loop {
        let result = match &source {
            Source::Log { poll } => follow_log(runner, *poll).await,
            Source::JetStream(nats) => consume(runner, nats).await,
        };
        if let Err(error) = result {
            tracing::warn!(worker = runner.worker.name(), %error, "worker resuming from its checkpoint");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The one stream type a worker handles, when it handles one: what it reads of the log
/// (and, on JetStream, what it subscribes to) is then that type's events only. Each
/// worker reading every event between two of its own, decoding each, held it for
/// seconds behind a busy log.
fn only_type(worker: &dyn Worker) -> Option<&'static str> {
    match worker.stream_types().as_slice() {
        [only] => Some(*only),
        _ => None,
    }
}

fn wants(worker: &dyn Worker, event: &EventEnvelope) -> bool {
    worker.stream_types().contains(&event.stream_type.as_str())
}

async fn follow_log(runner: &Runner<'_>, poll: Duration) -> Result<(), BusError> {
    let (worker, ctx) = (runner.worker, &runner.ctx);
    let checkpoint = checkpoint_name(worker.name());
    let after = ctx.store.checkpoint(&checkpoint).await?;
    let filter = Filter {
        stream_type: only_type(worker).map(str::to_string),
        ..Filter::default()
    };
    let mut events = Box::pin(feed::follow(ctx.store.clone(), after, filter, poll));
    let mut asks = tokio::time::interval(REDRIVE_EVERY);
    asks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Re-drives run between live events, never beside them: a sandbox still sees one
        // change at a time.
        let event = tokio::select! {
            next = events.next() => match next {
                Some(event) => event?,
                None => return Ok(()),
            },
            _ = asks.tick() => {
                runner.redrive_asked().await?;
                continue;
            }
        };
        if wants(worker, &event) {
            runner.deliver(&event).await?;
        }
        ctx.store.save_checkpoint(&checkpoint, event.global_position).await?;
    }
}

/// How often a message being worked on tells JetStream it is still in progress, so that
/// retries with backoff do not outlast its ack wait and get it sent to another replica.
const IN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs `work` while telling JetStream every few seconds that `message` is in progress.
async fn keeping_alive<T>(message: &async_nats::jetstream::Message, work: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + IN_PROGRESS_EVERY, IN_PROGRESS_EVERY);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = beat.tick() => {
                if let Err(error) = message.ack_with(async_nats::jetstream::AckKind::Progress).await {
                    tracing::debug!(%error, "cannot tell JetStream a message is in progress");
                }
            }
        }
    }
}

async fn consume(runner: &Runner<'_>, nats: &JetStream) -> Result<(), BusError> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let (worker, ctx) = (runner.worker, &runner.ctx);
    let checkpoint = checkpoint_name(worker.name());
    nats.ensure_stream().await?;
    let stream = nats.context.get_stream(&nats.settings.stream).await.map_err(BusError::nats)?;
    let durable = format!("worker-{}", worker.name());
    let only_type = only_type(worker);
    let filter_subject = match only_type {
        Some(only) => format!("{}.*.{only}.>", nats.settings.subject_prefix),
        None => String::new(),
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
    let mut asks = tokio::time::interval(REDRIVE_EVERY);
    asks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            next = messages.next() => match next {
                Some(message) => message.map_err(BusError::nats)?,
                None => return Ok(()),
            },
            _ = asks.tick() => {
                runner.redrive_asked().await?;
                continue;
            }
        };
        let Some(mut event) = envelope_of(&message.payload) else {
            let _ = message.ack().await;
            continue;
        };
        if crate::bus::data_omitted(&event) {
            // Too large for a message: the log has it whole.
            match ctx.store.read_all(event.global_position - 1, 1, None).await?.pop() {
                Some(stored) if stored.event_id == event.event_id => event = stored,
                _ => {
                    tracing::warn!(
                        position = event.global_position,
                        "worker: an event left out of its message is not in the log"
                    );
                    let _ = message.ack().await;
                    continue;
                }
            }
        }
        let handled = keeping_alive(&message, async {
            // JetStream is not the record: fill any gap from the log before going on.
            let done = ctx.store.checkpoint(&checkpoint).await?;
            if event.global_position > done + 1 {
                let mut after = done;
                while after < event.global_position - 1 {
                    let batch = ctx.store.read_all(after, 500, only_type).await?;
                    let Some(last) = batch.last().map(|e| e.global_position) else {
                        break;
                    };
                    for missed in batch
                        .iter()
                        .filter(|e| e.global_position < event.global_position && wants(worker, e))
                    {
                        runner.deliver(missed).await?;
                    }
                    after = last;
                }
            }
            if wants(worker, &event) {
                runner.deliver(&event).await?;
            }
            ctx.store.save_checkpoint(&checkpoint, event.global_position).await
        })
        .await;
        handled?;
        message.ack().await.map_err(BusError::nats)?;
    }
}

/// Keeps `fleetledger_dlq_events` current: parked events per stream type, read from the
/// store every `every` (so parking and re-drives by any process show), starting with
/// `stream_types` at 0.
pub async fn measure_dead_letters(store: Arc<dyn EventStore>, stream_types: Vec<String>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut known: std::collections::BTreeSet<String> = stream_types.into_iter().collect();
    loop {
        match store.dead_letter_counts().await {
            Ok(counts) => {
                let counts: std::collections::HashMap<String, i64> = counts.into_iter().collect();
                known.extend(counts.keys().cloned());
                for stream_type in &known {
                    let parked = counts.get(stream_type).copied().unwrap_or(0);
                    metrics::gauge!("fleetledger_dlq_events", "stream_type" => stream_type.clone()).set(parked as f64);
                }
            }
            Err(error) => tracing::debug!(%error, "cannot count dead letters"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
