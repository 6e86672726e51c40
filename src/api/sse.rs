//! What every Server-Sent Events answer shares, whichever surface serves it: it counts in
//! `fleetledger_sse_clients` while open, sends a keep-alive comment every 15 s so proxies
//! keep it open, and ends when shutdown begins with a final comment, so that one open
//! client never holds the process for the whole grace period.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

use crate::shutdown::Shutdown;

/// The last thing a client reads before the stream ends at shutdown.
pub const CLOSING_COMMENT: &str = "server shutting down; reconnect with Last-Event-ID";

/// An SSE answer of `events`, ending at `shutdown`.
pub fn respond<S>(events: S, shutdown: &Shutdown) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Stream<Item = Event> + Send + 'static,
{
    Sse::new(until_shutdown(events, shutdown)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `events` until shutdown begins, then [`CLOSING_COMMENT`] and the end of the stream.
/// Counts as an open client for as long as it is not dropped.
pub fn until_shutdown<S>(events: S, shutdown: &Shutdown) -> impl Stream<Item = Result<Event, Infallible>>
where
    S: Stream<Item = Event> + Send + 'static,
{
    let open = Some((Box::pin(events), shutdown.clone(), SseClient::new()));
    futures::stream::unfold(open, |open| async move {
        let (mut events, shutdown, client) = open?;
        tokio::select! {
            // Shutdown first: a busy stream must not delay it.
            biased;
            _ = shutdown.begun() => Some((Ok(Event::default().comment(CLOSING_COMMENT)), None)),
            next = events.next() => next.map(|event| (Ok(event), Some((events, shutdown, client)))),
        }
    })
}

/// Counts an open SSE connection for as long as it lives.
struct SseClient;

impl SseClient {
    fn new() -> Self {
        metrics::gauge!("fleetledger_sse_clients").increment(1.0);
        SseClient
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        metrics::gauge!("fleetledger_sse_clients").decrement(1.0);
    }
}
