//! What every handler can reach: the ledger, authentication, settings and drivers. It
//! lives apart from `app` (which builds the router from the surfaces) so that surfaces
//! depend on it without depending on the application that assembles them.

use std::sync::Arc;

use crate::api::login_throttle::LoginThrottle;
use crate::api::rate_limit::{HeavyCalls, RateLimits};
use crate::auth::Authenticator;
use crate::config::ServeSettings;
use crate::ledger::Ledger;
use crate::workers::drivers::sandbox::SandboxDriver;

/// What every handler can reach: one shared allocation, so that the copies axum makes for
/// every middleware and extractor of every request cost one reference count, not one per
/// field (in profiles of the read path, copying and dropping a field-by-field state took a
/// third of the CPU: every request touched the same counters from both cores).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// A read response serialized once per stream version, with its `ETag`.
#[derive(Clone)]
pub struct Rendered {
    pub version: i64,
    pub body: bytes::Bytes,
    pub etag: axum::http::HeaderValue,
}

/// The services behind `AppState`.
pub struct Services {
    pub ledger: Ledger,
    /// Seals secrets (gateway tokens) before they reach the log.
    pub secrets: Arc<crate::secrets::Keyring>,
    pub auth: Authenticator,
    pub settings: Arc<ServeSettings>,
    /// Serialized read responses by resource id, at the stream version they show.
    pub rendered: Arc<crate::FastMap<uuid::Uuid, Rendered>>,
    pub limits: Arc<RateLimits>,
    /// Failed authentications per client address.
    pub logins: Arc<LoginThrottle>,
    /// Verifications of an organization's whole log, per organization.
    pub heavy: Arc<HeavyCalls>,
    pub sandboxes: Arc<dyn SandboxDriver>,
    pub containers: Arc<dyn crate::workers::drivers::container::ContainerDriver>,
    /// Idempotency keys this process's requests hold.
    pub claims: Arc<crate::api::idempotency::Claims>,
    /// Decides which paths and destinations requests may make the server reach.
    pub boundary: Arc<crate::boundary::Boundary>,
    /// JetStream, when NATS is configured (readiness asks whether it is connected).
    pub bus: Option<Arc<crate::bus::nats::JetStream>>,
    /// Begins when the server starts shutting down: answers that never end on their own
    /// (Server-Sent Events) end then.
    pub shutdown: crate::shutdown::Shutdown,
}
