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

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ledger: Ledger,
    /// Seals secrets (gateway tokens) before they reach the log.
    pub secrets: Arc<crate::secrets::Keyring>,
    pub auth: Authenticator,
    pub settings: Arc<ServeSettings>,
    /// Serialized read responses by resource id, at the stream version they show.
    pub rendered: Arc<dashmap::DashMap<uuid::Uuid, (i64, bytes::Bytes)>>,
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
