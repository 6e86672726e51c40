//! JetStream: the stream the relay publishes to, and publishing with dedup by event id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use fleetledger_events::EventEnvelope;

use super::{subject, BusError, CloudEvent};

/// How long JetStream remembers a message id; a republish within it is dropped.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// NATS's default `max_payload` (1 MiB), less room for headers.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024 - 4096;

#[derive(Clone, Debug)]
pub struct NatsSettings {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

pub struct JetStream {
    pub context: jetstream::Context,
    pub settings: NatsSettings,
    ready: AtomicBool,
}

impl JetStream {
    /// Connects without waiting for the server: an unreachable NATS must not stop the
    /// service, whose log keeps accepting writes.
    pub async fn connect(settings: NatsSettings) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(5)))
            .connect(&settings.url)
            .await
            .map_err(BusError::nats)?;
        Ok(JetStream {
            context: jetstream::new(client),
            settings,
            ready: AtomicBool::new(false),
        })
    }

    /// Whether the client is connected to a NATS server now (it reconnects on its own).
    pub fn connected(&self) -> bool {
        self.context.client().connection_state() == async_nats::connection::State::Connected
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.settings.stream.clone(),
            subjects: vec![format!("{}.>", self.settings.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: DEDUP_WINDOW,
            ..Default::default()
        }
    }

    /// Creates the stream, or updates it to our settings.
    pub async fn ensure_stream(&self) -> Result<(), BusError> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let config = self.stream_config();
        match self.context.get_stream(&config.name).await {
            Ok(_) => {
                self.context.update_stream(config).await.map_err(BusError::nats)?;
            }
            Err(_) => {
                self.context.create_stream(config).await.map_err(BusError::nats)?;
            }
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Publishes events in order with `Nats-Msg-Id = event_id`, all in flight at once,
    /// and returns once JetStream has acknowledged every one.
    pub async fn publish(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        self.ensure_stream().await?;
        let published = self.publish_all(events).await;
        if published.is_err() {
            // The server may have come back without the stream (restarted with its storage
            // lost): make sure of it again before the next attempt.
            self.ready.store(false, Ordering::Release);
        }
        published
    }

    async fn publish_all(&self, events: &[EventEnvelope]) -> Result<(), BusError> {
        let started = Instant::now();
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
            let mut payload = CloudEvent::to_json(e);
            if payload.len() > MAX_MESSAGE_BYTES {
                // An event recorded before the log limited event sizes: a message NATS
                // would refuse must not hold the relay (and every event after it) forever.
                // Its data stays in the log, where the ledger API serves it.
                tracing::warn!(
                    position = e.global_position,
                    bytes = payload.len(),
                    "relay: event too large for NATS; its data is left out"
                );
                payload = CloudEvent::to_json(&super::without_data(e, payload.len()));
            }
            let ack = self
                .context
                .publish_with_headers(subject(&self.settings.subject_prefix, e), headers, payload.into())
                .await
                .map_err(BusError::nats)?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(BusError::nats)?;
        }
        if !events.is_empty() {
            metrics::histogram!("fleetledger_publish_seconds").record(started.elapsed().as_secs_f64() / events.len() as f64);
        }
        Ok(())
    }
}
