//! Settings from flags with environment fallbacks; each doc comment is its `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the log lives, and the key that opens the secrets in it. Shared by every command.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreSettings {
    /// Directory for the embedded SQLite database (fleetledger.db), admin.key and master.key.
    #[arg(long, env = "FLEETLEDGER_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// PostgreSQL URL (postgres:// or postgresql://). When unset, the embedded SQLite store
    /// in --data-dir is used; any other scheme is refused (exit 2).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// The master key that wraps the per-org keys sealing secrets in the log (gateway
    /// tokens): 32 bytes in base64, e.g. `openssl rand -base64 32`. Prefer the environment
    /// (a flag shows in the process list). When unset, `<data dir>/master.key` is used,
    /// created by `serve` on first start. Every process sharing a store needs the same key.
    #[arg(long, env = "FLEETLEDGER_MASTER_KEY", global = true, hide_env_values = true)]
    pub master_key: Option<secrecy::SecretString>,

    /// How the embedded SQLite store syncs a commit (it runs in WAL mode). `full`: every
    /// acknowledged write has been fsync'd and survives a crash of the machine. `normal`:
    /// the WAL is fsync'd at checkpoints, not at each commit; an acknowledged write survives
    /// the process being killed, but the last ones may be lost if the machine loses power.
    /// Ignored with PostgreSQL.
    #[arg(long, env = "FLEETLEDGER_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSynchronous::Full, global = true)]
    pub sqlite_synchronous: SqliteSynchronous,
}

/// `PRAGMA synchronous` of the embedded SQLite store.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    #[default]
    Full,
    Normal,
}

impl StoreSettings {
    /// The store URL: PostgreSQL when configured, else SQLite in the data dir.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.is_empty() => url.clone(),
            _ => {
                let path = self.data_dir.join("fleetledger.db");
                match self.sqlite_synchronous {
                    SqliteSynchronous::Full => format!("sqlite://{}", path.display()),
                    SqliteSynchronous::Normal => format!("sqlite://{}?synchronous=normal", path.display()),
                }
            }
        }
    }

    /// Refuses a `DATABASE_URL` this build cannot use, before anything is opened: another
    /// scheme would otherwise be taken for a SQLite path.
    pub fn check(&self) -> Result<(), SettingsError> {
        let Some(url) = self.database_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(());
        };
        // Only the scheme is named: the rest may hold a password.
        match url.split_once("://") {
            Some(("postgres" | "postgresql", _)) => Ok(()),
            Some((scheme, _)) => Err(SettingsError::UnsupportedScheme(scheme.to_string())),
            None => Err(SettingsError::NotAUrl),
        }
    }
}

/// Settings that cannot work, found before anything is opened.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unsupported DATABASE_URL scheme {0}; use postgres:// or postgresql:// (or leave it unset for SQLite in --data-dir)")]
    UnsupportedScheme(String),
    #[error("DATABASE_URL is not a URL; use postgres:// or postgresql:// (or leave it unset for SQLite in --data-dir)")]
    NotAUrl,
}

/// Where change events go besides the log.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BusSettings {
    /// NATS server (nats://…). When set, a relay publishes every event to JetStream and
    /// workers consume from it; when unset, everything runs in-process.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,

    /// JetStream stream the relay publishes to.
    #[arg(long, env = "FLEETLEDGER_NATS_STREAM", default_value = crate::bus::DEFAULT_STREAM)]
    pub nats_stream: String,

    /// Subject prefix: subjects are `<prefix>.<org_id>.<stream_type>.<stream_id>.<event_type>`.
    #[arg(long, env = "FLEETLEDGER_NATS_SUBJECT_PREFIX", default_value = crate::bus::DEFAULT_SUBJECT_PREFIX)]
    pub nats_subject_prefix: String,
}

/// How workers reach the world: which drivers they use.
#[derive(clap::Args, Clone, Debug)]
pub struct DriverSettings {
    /// How instance sandboxes get config changes: `local` edits `openclaw.json` directly;
    /// `openclaw` runs `openclaw config set|unset` in the sandbox's environment.
    #[arg(long, env = "FLEETLEDGER_INSTANCE_DRIVER", default_value = "local", value_parser = ["local", "openclaw"])]
    pub instance_driver: String,

    /// How container agents run: `local` keeps a directory per agent; `docker` runs real
    /// containers through the Docker Engine API (`DOCKER_HOST` or the default socket).
    #[arg(long, env = "FLEETLEDGER_CONTAINER_DRIVER", default_value = "local", value_parser = ["local", "docker"])]
    pub container_driver: String,

    /// The OpenClaw CLI the `openclaw` instance driver runs.
    #[arg(long, env = "FLEETLEDGER_OPENCLAW_BIN", default_value = "openclaw")]
    pub openclaw_bin: std::path::PathBuf,

    #[command(flatten)]
    pub boundary: BoundarySettings,

    #[command(flatten)]
    pub delivery: DeliverySettings,
}

/// How a worker retries a side effect that failed: exponential backoff with jitter, then
/// the failure outcome and a dead-letter entry (`fleetledger dlq`).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct DeliverySettings {
    /// How many times a worker tries a side effect (a workspace delivery, a sandbox
    /// change) before it records the failure and parks the event in the dead-letter table.
    #[arg(long, env = "FLEETLEDGER_DELIVERY_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_attempts: u32,

    /// The wait (ms) before the second try; each later wait doubles, up to the maximum, and
    /// is drawn between half and all of that (jitter), so failed deliveries spread out.
    #[arg(long, env = "FLEETLEDGER_DELIVERY_BACKOFF_BASE_MS", default_value_t = 200)]
    pub delivery_backoff_base_ms: u64,

    /// The longest wait (ms) between two tries. A request waiting for its side effect
    /// (`--apply-timeout-seconds`) should outlast all the waits together.
    #[arg(long, env = "FLEETLEDGER_DELIVERY_BACKOFF_MAX_MS", default_value_t = 5000)]
    pub delivery_backoff_max_ms: u64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            delivery_attempts: 5,
            delivery_backoff_base_ms: 200,
            delivery_backoff_max_ms: 5000,
        }
    }
}

impl DeliverySettings {
    /// The wait after failed try `attempt` (1-based): `base · 2^(attempt-1)`, capped at the
    /// maximum, drawn uniformly from its upper half.
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let doubled = self
            .delivery_backoff_base_ms
            .saturating_mul(1u64.checked_shl(attempt.saturating_sub(1)).unwrap_or(u64::MAX));
        let ceiling = doubled.min(self.delivery_backoff_max_ms);
        let floor = ceiling / 2;
        std::time::Duration::from_millis(rand::random_range(floor..=ceiling))
    }
}

/// What requests may make the server touch besides its data dir: the trust boundary's
/// settings, read by the API (which refuses what they do not allow) and by the drivers
/// (which check again at the moment of the side effect).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BoundarySettings {
    /// Absolute directories a `local` Mission Control gateway's `workspace_root` may lie in
    /// (comma-separated). Otherwise a workspace root is a relative name inside the org's
    /// own `<data dir>/workspaces/<org id>/`.
    #[arg(long, env = "FLEETLEDGER_WORKSPACE_ROOT_ALLOW", value_delimiter = ',', value_parser = crate::boundary::allowed_root)]
    pub workspace_root_allow: Vec<PathBuf>,

    /// Restrict OpenClaw gateway URLs to these host names, IP addresses or CIDR blocks
    /// (comma-separated). Otherwise any host is allowed; link-local and cloud metadata
    /// addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254) are refused either way.
    #[arg(long, env = "FLEETLEDGER_GATEWAY_ALLOW", value_delimiter = ',')]
    pub gateway_allow: Vec<crate::boundary::HostRule>,
}

impl Default for DriverSettings {
    fn default() -> Self {
        DriverSettings {
            instance_driver: "local".into(),
            container_driver: "local".into(),
            openclaw_bin: "openclaw".into(),
            boundary: BoundarySettings::default(),
            delivery: DeliverySettings::default(),
        }
    }
}

/// How long a request may take, and how often a client may fail to log in or ask for
/// the heaviest call.
#[derive(clap::Args, Clone, Debug)]
pub struct GuardSettings {
    /// The longest (seconds) a request may take before it is answered 503 in its surface's
    /// envelope; the change feed's Server-Sent Events stream is exempt.
    #[arg(long, env = "FLEETLEDGER_REQUEST_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_seconds: u64,

    /// Failed authentications per minute a client address may make (token bucket refill);
    /// past the burst, every request with a key from that address is answered 429 until a
    /// token is back. IPv6 addresses count per /64. `X-Forwarded-For` is not trusted.
    #[arg(long, env = "FLEETLEDGER_LOGIN_FAILURES_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_failures_per_minute: u32,

    /// Failed authentications a client address may make in a burst.
    #[arg(long, env = "FLEETLEDGER_LOGIN_FAILURE_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_failure_burst: u32,

    /// Seconds between two verifications of an organization's whole log
    /// (`GET /api/v1/ledger/verify`, admin keys only) once its burst is used.
    #[arg(long, env = "FLEETLEDGER_VERIFY_INTERVAL_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub verify_interval_seconds: u64,

    /// Verifications of an organization's whole log allowed in a burst.
    #[arg(long, env = "FLEETLEDGER_VERIFY_BURST", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub verify_burst: u32,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            request_timeout_seconds: 30,
            login_failures_per_minute: 10,
            login_failure_burst: 20,
            verify_interval_seconds: 10,
            verify_burst: 2,
        }
    }
}

/// Settings of the HTTP service.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeSettings {
    #[command(flatten)]
    pub bus: BusSettings,

    #[command(flatten)]
    pub drivers: DriverSettings,

    #[command(flatten)]
    pub guards: GuardSettings,

    /// Serve the API and relay only; run workers in `fleetledger worker` processes.
    #[arg(long, env = "FLEETLEDGER_NO_WORKERS")]
    pub no_workers: bool,

    /// Test hook: abort after the relay publishes past this position, before its checkpoint.
    #[arg(long, env = "FLEETLEDGER_RELAY_CRASH_AFTER_PUBLISH", hide = true)]
    pub relay_crash_after_publish: Option<i64>,

    /// Address to listen on; port 0 picks a free port (the log line `listening on` says which).
    #[arg(long, env = "FLEETLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Kernel attributes profiles may select (comma-separated); empty accepts any valid one.
    #[arg(long, env = "FLEETLEDGER_AVAILABLE_KERNELS", value_delimiter = ',',
          default_value = crate::domain::profile::DEFAULT_AVAILABLE_KERNELS)]
    pub available_kernels: Vec<String>,

    /// How often (ms) the read-model cache polls the log for other processes' writes.
    #[arg(long, env = "FLEETLEDGER_FOLLOW_INTERVAL_MS", default_value_t = 250)]
    pub follow_interval_ms: u64,

    /// Requests per second each API key may make (token bucket refill rate), on every surface.
    #[arg(long, env = "FLEETLEDGER_RATE_LIMIT_PER_SEC", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_sec: u32,

    /// Requests a key may make in a burst before the per-second rate applies.
    #[arg(long, env = "FLEETLEDGER_RATE_LIMIT_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,

    /// The longest sandbox timeout a runtime config may ask for (seconds).
    #[arg(long, env = "FLEETLEDGER_MAX_SANDBOX_TIMEOUT_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(60..))]
    pub max_sandbox_timeout_seconds: i64,

    /// The runtimes' sandbox provider; configs may name it or `auto`.
    #[arg(long, env = "FLEETLEDGER_SANDBOX_PROVIDER", default_value = "docker", value_parser = ["docker", "e2b"])]
    pub sandbox_provider: String,

    /// How long (seconds) a write waits for its side effect (e.g. reprovisioning an agent)
    /// before answering 504; the change stays recorded either way.
    #[arg(long, env = "FLEETLEDGER_APPLY_TIMEOUT_SECONDS", default_value_t = 10)]
    pub apply_timeout_seconds: u64,

    /// The image a container agent runs when its container profile names none.
    #[arg(long, env = "FLEETLEDGER_DEFAULT_AGENT_IMAGE", default_value = "ghcr.io/hill90/agentbox:latest")]
    pub default_agent_image: String,

    /// Model names container agents may be assigned (comma-separated).
    #[arg(
        long,
        env = "FLEETLEDGER_AVAILABLE_MODELS",
        value_delimiter = ',',
        default_value = "gpt-4.1,gpt-4.1-mini,gpt-4o,o3,claude-sonnet-4,claude-opus-4,gemini-2.5-pro,gemini-2.5-flash"
    )]
    pub available_models: Vec<String>,

    /// Let anyone create an organization with `POST /v1/organization/signup` (and get its
    /// admin key). Off by default: organizations are made with `fleetledger orgs create`.
    #[arg(long, env = "FLEETLEDGER_ALLOW_SIGNUP")]
    pub allow_signup: bool,

    /// Seconds to let in-flight requests (writes, and writes waiting for their side effect)
    /// finish after SIGTERM/Ctrl-C. Server-Sent Events streams end at once.
    #[arg(long, env = "FLEETLEDGER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,

    /// `/readyz` answers 503 once the relay is this many seconds behind (the age of the
    /// oldest event not yet on JetStream). Only with NATS. Every replica shares the relay,
    /// so all of them turn unready together: keep it well above a normal hiccup.
    #[arg(long, env = "FLEETLEDGER_READY_MAX_RELAY_LAG_SECONDS", default_value_t = 60.0)]
    pub ready_max_relay_lag_seconds: f64,

    /// Hours a web console sign-in lasts; signing out, or revoking or expiring its key, ends
    /// it sooner.
    #[arg(long, env = "FLEETLEDGER_CONSOLE_SESSION_HOURS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub console_session_hours: u32,
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub store: StoreSettings,
    pub serve: ServeSettings,
}

#[cfg(test)]
mod tests {
    use super::DeliverySettings;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() {
        let settings = DeliverySettings {
            delivery_attempts: 8,
            delivery_backoff_base_ms: 100,
            delivery_backoff_max_ms: 1000,
        };
        for (attempt, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000), (200, 1000)] {
            for _ in 0..50 {
                let wait = settings.backoff(attempt);
                assert!(
                    wait >= Duration::from_millis(ceiling / 2) && wait <= Duration::from_millis(ceiling),
                    "attempt {attempt}: {wait:?}"
                );
            }
        }
    }
}
