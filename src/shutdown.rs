//! The moment shutdown begins, as a value every long-lived answer can watch. Requests that
//! end on their own are drained by the server's graceful shutdown; answers that never end
//! on their own (Server-Sent Events) must watch this and close, or they hold the process
//! for the whole grace period.

use tokio::sync::watch;

/// Begins shutdown for every [`Shutdown`] made with it (also when dropped).
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Whether shutdown has begun; cheap to clone into every stream.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Whether shutdown has begun.
    pub fn has_begun(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown has begun (at once if it already has). A trigger dropped
    /// without firing counts as begun: the application that owned it is gone.
    pub async fn begun(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|begun| *begun).await;
    }
}

impl ShutdownTrigger {
    pub fn begin(&self) {
        let _ = self.0.send(true);
    }
}
