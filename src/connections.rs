//! Accepts TCP connections and serves HTTP/1.1 on each through the front
//! (`api::front::Front`), with the peer's address on every request; on shutdown, stops
//! accepting, asks every connection to finish the request it is answering and close, and
//! waits for them.
//!
//! In place of `axum::serve`'s graceful shutdown: there every connection also waited on one
//! shared notification, and each poll of a connection (several per request) took that
//! notification's lock, which the worker threads then passed back and forth on every
//! request. Here each connection has a stop signal of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::api::front::Front;

/// How long accepting pauses after an error that is not one connection's (out of file
/// descriptors, say), so the loop does not spin while it lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves connections from `listener` until `shutdown` resolves, then drains them (see the
/// module doc). Dropping the future drops every connection at once.
pub async fn serve(listener: TcpListener, front: Front, shutdown: impl Future<Output = ()>) {
    let mut open = Open::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if one_connections(&error) => continue,
                Err(error) => {
                    tracing::error!(%error, "accepting connections failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let stop = open.add();
        let front = front.clone();
        open.tasks.spawn(connection(stream, peer, front, stop));
    }
    drop(listener);
    // Dropping the senders is the signal.
    open.stops.clear();
    while open.tasks.join_next().await.is_some() {}
}

/// The connections being served: their tasks, and the senders of their stop signals.
#[derive(Default)]
struct Open {
    tasks: JoinSet<()>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Open {
    /// A stop signal for a new connection, reaping what ended since the last one (amortised:
    /// only once the senders have doubled).
    fn add(&mut self) -> oneshot::Receiver<()> {
        while self.tasks.try_join_next().is_some() {}
        if self.stops.len() >= 64 && self.stops.len() == self.stops.capacity() {
            self.stops.retain(|stop| !stop.is_closed());
        }
        let (tx, rx) = oneshot::channel();
        self.stops.push(tx);
        rx
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, front: Front, mut stop: oneshot::Receiver<()>) {
    // The peer's address goes with the request as an argument, not an extension (whose map
    // and box every request would allocate): the login throttle counts by it.
    let service =
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| front.answer(request.map(axum::body::Body::new), peer));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        biased;
        served = conn.as_mut() => served,
        _ = &mut stop => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = served {
        tracing::trace!(%error, "a connection ended with an error");
    }
}

/// Whether an accept error is about one connection (the peer gave up before it was
/// accepted), not the listener.
fn one_connections(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
