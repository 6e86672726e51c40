//! Builds the application: store, caches, bootstrap, background tasks and the router.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::front::Front;
use crate::api::login_throttle::LoginThrottle;
use crate::api::rate_limit::{HeavyCalls, RateLimits};
use crate::auth::{Authenticator, KeyUsage};
use crate::boundary::Boundary;
use crate::bus::nats::{JetStream, NatsSettings};
use crate::bus::relay::{self, RelaySettings};
use crate::bus::BusError;
use crate::config::{BusSettings, DeliverySettings, Settings, StoreSettings};
use crate::ledger::Ledger;
use crate::secrets::Keyring;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::state::AppState;
use crate::store::cache::ReadModels;
use crate::store::{self, StoreError};
use crate::tenancy::{self, TenancyError};
use crate::workers::drivers::sandbox::LocalSandboxDriver;
use crate::workers::{self, Source, Worker};

/// Why the service did not start. Each variant says what was being done and keeps the
/// cause as its source (not in its text), so a report of the chain names each cause once.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("opening the store")]
    Store(#[from] StoreError),
    #[error("bootstrapping the first organization")]
    Bootstrap(#[from] TenancyError),
    #[error("connecting to NATS")]
    Bus(#[from] BusError),
    #[error("loading the master key")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the admin key to {}", path.display())]
    AdminKey {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the Docker engine")]
    Docker(#[source] std::io::Error),
}

/// Connects to JetStream when NATS is configured.
pub async fn connect_bus(settings: &BusSettings) -> Result<Option<Arc<JetStream>>, BusError> {
    let Some(url) = settings.nats_url.clone().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let nats = NatsSettings {
        url,
        stream: settings.nats_stream.clone(),
        subject_prefix: settings.nats_subject_prefix.clone(),
    };
    Ok(Some(Arc::new(JetStream::connect(nats).await?)))
}

/// Starts each worker on JetStream when there is one, else on the log; `secrets` opens
/// what a worker must send (gateway tokens), `delivery` says how failed side effects are
/// retried.
pub fn spawn_workers(
    ledger: &Ledger,
    secrets: Arc<Keyring>,
    bus: Option<Arc<JetStream>>,
    poll: Duration,
    delivery: DeliverySettings,
    workers: Vec<Arc<dyn Worker>>,
    stop: &watch::Receiver<bool>,
) {
    for worker in workers {
        let source = match &bus {
            Some(nats) => Source::JetStream(nats.clone()),
            None => Source::Log { poll },
        };
        tokio::spawn(workers::run(
            worker,
            ledger.clone(),
            secrets.clone(),
            source,
            delivery,
            stop.clone(),
        ));
    }
}

/// Opens the store and loads the read models, as every command that touches state does;
/// `open` says whether a missing store may be created.
pub async fn open_ledger(settings: &StoreSettings, open: store::Open) -> Result<Ledger, StoreError> {
    let store = store::connect_with(&settings.url(), open).await?;
    let models = ReadModels::load(store.clone()).await?;
    Ok(Ledger::new(store, models))
}

/// Every surface's routes behind the front (`api::front`), which every request enters.
pub fn service(state: AppState) -> Front {
    let routes = crate::api::SURFACES
        .iter()
        .fold(Router::new(), |router, (surface, _)| router.merge(surface.router()))
        .with_state(state.clone());
    Front::new(state, routes)
}

/// How often the HTTP and write latency samples are folded into their histograms.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How often the relay's lag is measured for `/metrics`.
const RELAY_LAG_EVERY: Duration = Duration::from_secs(1);
/// How often parked events are counted for `/metrics`.
const DEAD_LETTERS_EVERY: Duration = Duration::from_secs(1);

pub struct Application {
    listener: TcpListener,
    front: Front,
    /// Stops the background tasks (workers, relay, cache follower), after the drain.
    stop: watch::Sender<bool>,
    /// Ends the answers that never end on their own (SSE), as soon as shutdown begins.
    begin_shutdown: ShutdownTrigger,
    usage: Arc<KeyUsage>,
    grace: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let workers = workers::registry(&settings.store.data_dir, &settings.serve.drivers);
        Self::build_with_workers(settings, workers).await
    }

    /// Builds the service with a given set of workers (tests bring their own).
    pub async fn build_with_workers(settings: Settings, workers: Vec<Arc<dyn Worker>>) -> Result<Self, StartupError> {
        let running: Vec<&str> = match settings.serve.no_workers {
            true => vec![],
            false => workers.iter().map(|w| w.name()).collect(),
        };
        // Dead letters are counted whether or not this process runs the workers that park them.
        let parked: Vec<String> = workers.iter().flat_map(|w| w.stream_types()).map(str::to_string).collect();
        crate::telemetry::register(&running, &parked);
        let ledger = open_ledger(&settings.store, store::Open::CreateIfMissing).await?;
        let (secrets, created) = Keyring::load_or_create(&settings.store, ledger.store.clone()).await?;
        // Named relative to the data dir: log lines carry no server paths.
        if let Some(path) = created {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            tracing::info!(file, "created the master key that wraps the keys of secrets, in the data dir");
        }
        let secrets = Arc::new(secrets);
        if let Some(token) = tenancy::bootstrap(&ledger, Utc::now()).await? {
            let path = settings.store.data_dir.join("admin.key");
            write_admin_key(&path, token.expose()).map_err(|source| StartupError::AdminKey {
                path: path.clone(),
                source,
            })?;
            // A closed stdout loses nothing: the key is in the file.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stdout().lock(),
                "Created organization `default` with an admin key (shown once, also written to admin.key in the data dir):\n{}",
                token.expose()
            );
        }
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(
            ledger
                .models
                .clone()
                .follow(Duration::from_millis(settings.serve.follow_interval_ms), stopped.clone()),
        );
        let usage = KeyUsage::new(ledger.store.clone());
        tokio::spawn(usage.clone().run(Duration::from_secs(5), stopped.clone()));
        tokio::spawn(crate::telemetry::upkeep(METRICS_UPKEEP_EVERY, stopped.clone()));
        let poll = Duration::from_millis(settings.serve.follow_interval_ms);
        let bus = connect_bus(&settings.serve.bus).await?;
        if let Some(nats) = &bus {
            let relay_settings = RelaySettings {
                batch: 1000,
                poll,
                checkpoint_every: relay::CHECKPOINT_EVERY,
                crash_after_publish: settings.serve.relay_crash_after_publish,
            };
            tokio::spawn(relay::run(ledger.store.clone(), nats.clone(), relay_settings, stopped.clone()));
            tokio::spawn(relay::measure_lag(ledger.store.clone(), RELAY_LAG_EVERY, stopped.clone()));
        }
        tokio::spawn(workers::measure_dead_letters(
            ledger.store.clone(),
            parked,
            DEAD_LETTERS_EVERY,
            stopped.clone(),
        ));
        if !settings.serve.no_workers {
            let delivery = settings.serve.drivers.delivery;
            spawn_workers(&ledger, secrets.clone(), bus.clone(), poll, delivery, workers, &stopped);
        }
        let (begin_shutdown, shutdown) = Shutdown::new();
        let limits = RateLimits::new(settings.serve.rate_limit_per_sec, settings.serve.rate_limit_burst);
        tokio::spawn(limits.clone().prune(Duration::from_secs(60), stopped.clone()));
        let guards = &settings.serve.guards;
        let logins = LoginThrottle::new(guards.login_failures_per_minute, guards.login_failure_burst);
        tokio::spawn(logins.clone().prune(Duration::from_secs(60), stopped.clone()));
        let heavy = HeavyCalls::new(Duration::from_secs(guards.verify_interval_seconds), guards.verify_burst);
        tokio::spawn(heavy.clone().prune(Duration::from_secs(60), stopped.clone()));
        let state = AppState::new(crate::state::Services {
            auth: Authenticator::new(ledger.models.clone(), ledger.store.clone(), usage.clone()),
            ledger,
            secrets,
            settings: Arc::new(settings.serve.clone()),
            rendered: Default::default(),
            limits,
            logins,
            heavy,
            sandboxes: Arc::new(LocalSandboxDriver::new(&settings.store.data_dir)),
            containers: container_driver(&settings)?,
            claims: Default::default(),
            boundary: Arc::new(Boundary::new(&settings.store.data_dir, &settings.serve.drivers.boundary)),
            bus,
            shutdown,
        });
        let addr = settings.serve.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartupError::Listen { addr, source })?;
        tracing::info!("listening on http://{bound}");
        Ok(Application {
            listener,
            front: service(state),
            stop,
            begin_shutdown,
            usage,
            grace: Duration::from_secs(settings.serve.shutdown_grace_seconds),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting connections, ends SSE streams
    /// at once, lets in-flight requests finish (up to the grace period; workers keep running
    /// meanwhile, so writes waiting for their side effect get it) and flushes key usage.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), std::io::Error> {
        let (signalled_tx, mut signalled) = watch::channel(false);
        let begin_shutdown = self.begin_shutdown;
        let serve = crate::connections::serve(self.listener, self.front, async move {
            shutdown.await;
            tracing::info!("shutting down: closing event streams, finishing in-flight requests");
            begin_shutdown.begin();
            let _ = signalled_tx.send(true);
        });
        let grace = self.grace;
        let deadline = async move {
            while !*signalled.borrow() {
                if signalled.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            _ = serve => {}
            _ = deadline => tracing::warn!("grace period over; stopping with requests still in flight"),
        }
        let _ = self.stop.send(true);
        self.usage.flush().await;
        Ok(())
    }
}

/// The container agents' driver the settings choose.
fn container_driver(settings: &Settings) -> Result<Arc<dyn crate::workers::drivers::container::ContainerDriver>, StartupError> {
    use crate::workers::drivers::container::{DockerContainerDriver, LocalContainerDriver};
    Ok(match settings.serve.drivers.container_driver.as_str() {
        "docker" => Arc::new(DockerContainerDriver::connect().map_err(|e| StartupError::Docker(std::io::Error::other(e)))?),
        _ => Arc::new(LocalContainerDriver::new(&settings.store.data_dir)),
    })
}

/// Writes the bootstrap admin key where only its owner can read it.
fn write_admin_key(path: &std::path::Path, token: &str) -> Result<(), std::io::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{token}")
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when
/// it is first awaited: call it before the service says it is listening, so a SIGTERM that
/// follows at once is a graceful stop rather than the default kill.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let terminate = async {
            match terminate {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = terminate => {} }
    }
}
