//! The command line: `serve`, `migrate`, `verify`, `orgs`, `workspaces`, `keys`, `secrets`, `dlq`. Every
//! command uses the same store settings as `serve`, so it works beside a running server.
//!
//! Exit codes: 0 done (also when stdout was closed early, as by `| head`), 1 failed, 2
//! refused before starting (settings that cannot work, or no store where one must exist:
//! only `serve`, `migrate` and `import` create one).

use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use fleetledger_events::Actor;
use fleetledger_projections::key::Key;

use crate::app::{open_ledger, shutdown_signal, Application};
use crate::config::{ServeSettings, Settings, SettingsError, StoreSettings};
use crate::store::{self, Open, StoreError};
use crate::tenancy::{self, NewKey};

/// Writes a line of command output to stdout and answers the `io::Result`. Unlike
/// `println!`, which panics, a closed stdout (`fleetledger tail | head`) becomes an error
/// the command returns, and [`report`] ends the command quietly with exit 0.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "fleetledger",
    version,
    about = "Audited, event-sourced control plane for fleets of AI agents, sandboxes and device images",
    long_about = "fleetledger serves the configuration endpoints of Fleeti, Dreadnode runtimes, OpenClaw Mission \
Control, Chowder and Hill90 from one hash-chained event log.\n\nWith no DATABASE_URL it keeps everything in \
SQLite under --data-dir; with DATABASE_URL=postgres://… it uses PostgreSQL."
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreSettings,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP service. On an empty store it first creates org `default` and prints an admin key.
    Serve {
        // Boxed: the service's settings outweigh every other command's arguments.
        #[command(flatten)]
        settings: Box<ServeSettings>,
    },
    /// Run the workers only (no HTTP): on JetStream when NATS_URL is set, else on the log.
    Worker {
        #[command(flatten)]
        bus: crate::config::BusSettings,
        #[command(flatten)]
        drivers: crate::config::DriverSettings,
        /// How often (ms) to poll the log for new events when not on JetStream.
        #[arg(long, env = "FLEETLEDGER_FOLLOW_INTERVAL_MS", default_value_t = 250)]
        follow_interval_ms: u64,
    },
    /// Print the change feed, human-readable: the whole log, or with --follow new events
    /// as they are committed.
    Tail {
        /// Keep printing new events as they are committed, starting at the end of the log
        /// (with --from-start or --after N, history first).
        #[arg(long, short)]
        follow: bool,
        /// Only this stream type (profile, key, org, …).
        #[arg(long = "type", short = 't')]
        stream_type: Option<String>,
        /// Start after this global position (default: the beginning, or with --follow the end).
        #[arg(long, conflicts_with = "from_start")]
        after: Option<i64>,
        /// Start at the beginning of the log, also with --follow.
        #[arg(long)]
        from_start: bool,
    },
    /// Print a stream's state at a version or time (json), or the event sequence (table).
    Replay {
        /// The stream as TYPE/ID (e.g. profile/0191…); without it, the whole log.
        #[arg(long)]
        stream: Option<String>,
        /// Stop at this stream version (past the stream's end: an error, exit 1).
        #[arg(long, conflicts_with = "as_of")]
        to_version: Option<i64>,
        /// Stop at this time (RFC 3339).
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
        /// `json` prints the state (with --stream) or each event; `table` prints events.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Drop and rebuild read models from the log, with progress; safe while `serve` runs.
    Rebuild {
        /// Only this projection (org, key, fleet, profile, runtime, gateway, board, mc_agent).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Write events as NDJSON to stdout. Secrets stay sealed (import keeps them; the
    /// store's data keys are not exported), plaintext from before sealing is written "***".
    Export {
        /// One stream, as TYPE/ID.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        stream: Option<String>,
        /// The whole log.
        #[arg(long)]
        all: bool,
    },
    /// Load an `export --all` file (or - for stdin) into an empty store, verify it and
    /// build its read models.
    Import {
        /// NDJSON file, or - for stdin.
        file: String,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Verify every stream's hash chain and the log's positions; exits 1 naming the first bad event.
    Verify,
    /// Manage organizations.
    Orgs {
        #[command(subcommand)]
        command: OrgsCommand,
    },
    /// Manage workspaces inside organizations.
    Workspaces {
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Manage API keys. `keys create` prints the new key alone on stdout.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the master key that wraps the per-org keys sealing secrets in the log.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The dead-letter table: events whose side effect (a workspace delivery, a sandbox
    /// change) still failed after every retry. Each was recorded in the log as failed (the
    /// agent's or instance's status shows it) and parked here; list them, and re-drive them
    /// once the cause is fixed.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List parked events: id, organization, stream, version, event type, attempts, last
    /// error (shortened; --json has it whole) and when it was parked.
    List {
        /// Print a JSON array of the entries instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Deliver parked events again, and wait for how that ends.
    ///
    /// The worker that parked an event delivers it again, in the running `fleetledger serve`
    /// (or `fleetledger worker`) process, between its live events; one process takes each
    /// entry, so nothing is delivered twice. A delivery that succeeds records its success
    /// outcome and removes the entry; one that fails records the failure again and keeps
    /// the entry, its attempts and last error updated. One line per entry says which.
    /// Exits 1 if any failed, or if no worker took them within --wait-seconds (they stay
    /// asked for: the next worker to run delivers them).
    Retry {
        /// The entry's id, as `dlq list` shows it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every parked event.
        #[arg(long)]
        all: bool,
        /// Give up waiting after this many seconds in which no entry was delivered or failed.
        #[arg(long, default_value_t = 30)]
        wait_seconds: u64,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// Create an organization (recorded as an event).
    Create {
        /// Lowercase letters, digits and dashes.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
    },
    /// List organizations.
    List,
    /// Destroy an organization's data keys (crypto-shredding): every secret it stored
    /// (gateway tokens) becomes unreadable everywhere, for good, while the log stays intact
    /// and still verifies. Its gateways then fail until given a new token, which gets a
    /// fresh key. Needs --yes; without it, says what it would destroy and exits 2.
    Forget {
        /// The organization's slug (or id).
        org: String,
        /// Really destroy the keys.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Re-wrap every data key under a new random master key, in one transaction; the log is
    /// not touched, and the old master key opens nothing any more. With
    /// `<data dir>/master.key`, the new key replaces that file (running processes read it
    /// again when they next need it). With FLEETLEDGER_MASTER_KEY, the new key is printed
    /// alone on stdout: set it in every process's environment and restart them.
    RotateMaster,
}

#[derive(Subcommand, Debug)]
pub enum WorkspacesCommand {
    /// Create a workspace in an organization.
    Create {
        /// The organization's slug.
        org: String,
        /// The workspace's slug.
        slug: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Issue a key; prints the token alone on stdout (details on stderr). It is not shown again.
    Create {
        /// The organization's slug.
        #[arg(long)]
        org: String,
        /// admin, member or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
        /// When the key stops working (RFC 3339).
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// List keys with their organization (never their tokens).
    List {
        /// Only this organization's keys.
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id, as `keys list` shows it.
        key_id: uuid::Uuid,
    },
}

fn cli_actor() -> Actor {
    Actor::system(&format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())))
}

/// Ends a failed command: says why on stderr, each cause once, and answers the exit code
/// (see the module's documentation). A closed stdout is not a failure: the reader has all
/// it wanted, so nothing is said and the exit code is 0.
pub fn report(error: &anyhow::Error) -> ExitCode {
    use std::io::Write as _;
    let closed_stdout = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if closed_stdout {
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(std::io::stderr(), "error: {error:#}");
    let refused = error.chain().any(|cause| {
        cause.is::<SettingsError>()
            || matches!(
                cause.downcast_ref::<StoreError>(),
                Some(StoreError::Missing { .. } | StoreError::Unreachable { .. })
            )
    });
    if refused {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    cli.store.check()?;
    match cli.command {
        Command::Serve { settings } => {
            let stopped = shutdown_signal();
            let app = Application::build(Settings {
                store: cli.store,
                serve: *settings,
            })
            .await?;
            app.run_until_stopped(stopped).await?;
        }
        Command::Worker {
            bus,
            drivers,
            follow_interval_ms,
        } => {
            let stopped_by_signal = shutdown_signal();
            let ledger = open_ledger(&cli.store, Open::Existing).await?;
            let keyring = std::sync::Arc::new(crate::secrets::Keyring::load(&cli.store, ledger.store.clone()).await?);
            let workers = crate::workers::registry(&cli.store.data_dir, &drivers);
            let names: Vec<String> = workers.iter().map(|w| w.name().to_string()).collect();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let bus = crate::app::connect_bus(&bus).await?;
            crate::app::spawn_workers(
                &ledger,
                keyring,
                bus,
                std::time::Duration::from_millis(follow_interval_ms),
                drivers.delivery,
                workers,
                &stopped,
            );
            tracing::info!(workers = ?names, "running workers");
            stopped_by_signal.await;
            let _ = stop.send(true);
        }
        Command::Tail {
            follow,
            stream_type,
            after,
            from_start,
        } => {
            let start = match (after, from_start || !follow) {
                (Some(after), _) => Start::After(after),
                (None, true) => Start::After(0),
                (None, false) => Start::Head,
            };
            tail(&cli.store, follow, stream_type, start).await?
        }
        Command::Replay {
            stream,
            to_version,
            as_of,
            format,
        } => replay(&cli.store, stream, to_version, as_of, format).await?,
        Command::Rebuild { projection } => {
            let store = store::connect_with(&cli.store.url(), Open::Existing).await?;
            let bar = progress_bar("rebuilding");
            let report = crate::audit::rebuild(store.clone(), projection.as_deref(), |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
            bar.finish_and_clear();
            eprintln!(
                "rebuilt {} read models from {} events in {:.2}s ({:.0} events/s)",
                report.models,
                report.events,
                report.seconds,
                report.events as f64 / report.seconds.max(1e-9)
            );
        }
        Command::Export { stream, all: _ } => export(&cli.store, stream).await?,
        Command::Import { file } => import(&cli.store, &file).await?,
        Command::Migrate => {
            store::connect(&cli.store.url()).await.context("migrating the store")?;
            eprintln!("store is up to date");
        }
        Command::Verify => return verify(&cli.store).await,
        Command::Orgs { command } => return orgs(&cli.store, command).await,
        Command::Secrets {
            command: SecretsCommand::RotateMaster,
        } => rotate_master(&cli.store).await?,
        Command::Workspaces {
            command: WorkspacesCommand::Create { org, slug, name },
        } => {
            let ledger = open_ledger(&cli.store, Open::Existing).await?;
            let Some(found) = tenancy::find_org(&ledger, &org).await? else {
                bail!("no organization {org}")
            };
            tenancy::create_workspace(&ledger, &found, &slug, name.as_deref().unwrap_or(""), cli_actor(), Utc::now()).await?;
            eprintln!("created workspace {slug} in {org}");
        }
        Command::Keys { command } => keys(&cli.store, command).await?,
        Command::Dlq { command } => return dlq(&cli.store, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar on stderr with rate and ETA (hidden when stderr is not a terminal).
fn progress_bar(what: &str) -> indicatif::ProgressBar {
    counting_bar(what, "events")
}

/// A progress bar on stderr counting `unit`s.
fn counting_bar(what: &str, unit: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} {unit} [{{bar:30}}] {{per_sec}} eta {{eta}}"
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    )
}

async fn verify(settings: &StoreSettings) -> anyhow::Result<ExitCode> {
    let store = store::connect_with(&settings.url(), Open::Existing).await?;
    let bar = progress_bar("verifying");
    bar.set_length(store.head().await? as u64);
    let verification = store::verify_log(store.as_ref(), |checked| bar.set_position(checked)).await?;
    bar.finish_and_clear();
    match verification.first_bad {
        None => {
            out!("ok: {} events verified", verification.checked)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(bad) => {
            out!(
                "BROKEN: event {} (stream {} version {}, position {}): expected {}, found {}",
                bad.event_id,
                bad.stream,
                bad.version,
                bad.global_position,
                bad.expected,
                bad.actual
            )?;
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn orgs(settings: &StoreSettings, command: OrgsCommand) -> anyhow::Result<ExitCode> {
    let ledger = open_ledger(settings, Open::Existing).await?;
    match command {
        OrgsCommand::Create { slug, name } => {
            let org = tenancy::create_org(&ledger, &slug, name.as_deref().unwrap_or(""), cli_actor(), Utc::now()).await?;
            eprintln!("created organization {} ({})", org.slug, org.id);
        }
        OrgsCommand::Forget { org, yes } => return forget_org(&ledger, &org, yes).await,
        OrgsCommand::List => {
            let mut orgs: Vec<_> = ledger
                .models
                .cache::<fleetledger_projections::org::Org>()
                .all()
                .into_iter()
                .map(|c| c.model)
                .collect();
            orgs.sort_by(|a, b| a.slug.cmp(&b.slug));
            out!("{:<24} {:<36} {:<24} WORKSPACES", "SLUG", "ID", "NAME")?;
            for org in orgs {
                let workspaces: Vec<&str> = org.workspaces.iter().map(|w| w.slug.as_str()).collect();
                out!("{:<24} {:<36} {:<24} {}", org.slug, org.id, org.name, workspaces.join(","))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn keys(settings: &StoreSettings, command: KeysCommand) -> anyhow::Result<()> {
    let ledger = open_ledger(settings, Open::Existing).await?;
    match command {
        KeysCommand::Create {
            org,
            role,
            name,
            expires_at,
        } => {
            let Some(found) = tenancy::find_org(&ledger, &org).await? else {
                bail!("no organization {org}")
            };
            let new = NewKey {
                org_id: found.id,
                name,
                role,
                scopes: vec![],
                expires_at,
                principal_id: None,
                token_prefix: crate::auth::TOKEN_PREFIX,
            };
            let (token, key) = tenancy::issue_key(&ledger, new, cli_actor(), Utc::now()).await?;
            eprintln!("issued {} key {} in {} (shown once)", key.role, key.id, found.slug);
            // Not a quiet end like other closed pipes: the key exists and its token is lost.
            out!("{}", token.expose()).map_err(|e| {
                anyhow::anyhow!(
                    "key {} was issued but its token could not be printed ({e}); revoke it with `fleetledger keys revoke {}`",
                    key.id,
                    key.id
                )
            })?;
        }
        KeysCommand::List { org } => {
            let org_id = match &org {
                Some(slug) => Some(
                    tenancy::find_org(&ledger, slug)
                        .await?
                        .with_context(|| format!("no organization {slug}"))?
                        .id,
                ),
                None => None,
            };
            let usage = ledger.store.key_usage().await?;
            let mut keys: Vec<Key> = ledger
                .models
                .cache::<Key>()
                .all()
                .into_iter()
                .map(|c| (*c.model).clone())
                .filter(|k| org_id.is_none_or(|o| k.org_id == o))
                .collect();
            keys.sort_by_key(|k| k.created_at);
            let slugs: std::collections::HashMap<uuid::Uuid, String> = ledger
                .models
                .cache::<fleetledger_projections::org::Org>()
                .all()
                .into_iter()
                .map(|c| (c.model.id, c.model.slug.clone()))
                .collect();
            out!(
                "{:<36} {:<16} {:<14} {:<7} {:<16} {:<20} {:<20} STATE",
                "ID",
                "ORG",
                "PREFIX",
                "ROLE",
                "NAME",
                "CREATED",
                "LAST USED"
            )?;
            let fmt = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
            for k in keys {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(t), _) => format!("revoked {}", fmt(&t)),
                    (None, Some(t)) if t <= Utc::now() => format!("expired {}", fmt(&t)),
                    (None, Some(t)) => format!("expires {}", fmt(&t)),
                    (None, None) => "active".into(),
                };
                let used = usage.get(&k.id.to_string()).map(fmt).unwrap_or_else(|| "never".into());
                let org = slugs.get(&k.org_id).map_or("?", String::as_str);
                out!(
                    "{:<36} {:<16} {:<14} {:<7} {:<16} {:<20} {:<20} {}",
                    k.id,
                    org,
                    k.key_prefix,
                    k.role,
                    k.name,
                    fmt(&k.created_at),
                    used,
                    state
                )?;
            }
        }
        KeysCommand::Revoke { key_id } => {
            let org = ledger
                .models
                .get_or_load::<Key>(&key_id.to_string())
                .await?
                .with_context(|| format!("no key {key_id}"))?
                .model
                .org_id;
            let (key, _) = tenancy::revoke_key(&ledger, key_id, &tenancy::host_context(org, cli_actor()), Utc::now()).await?;
            eprintln!("revoked key {}", key.id);
        }
    }
    Ok(())
}

/// Where `tail` starts.
enum Start {
    /// After this global position (0: the beginning).
    After(i64),
    /// At the end of the log as it is when the command starts.
    Head,
}

async fn tail(settings: &StoreSettings, follow: bool, stream_type: Option<String>, start: Start) -> anyhow::Result<()> {
    use futures::StreamExt;
    let store = store::connect_with(&settings.url(), Open::Existing).await?;
    let filter = crate::bus::feed::Filter {
        stream_type,
        ..Default::default()
    };
    let print = |e: &fleetledger_events::EventEnvelope| {
        let public = crate::views::public(e);
        let e = public.envelope();
        out!(
            "{:>8}  {}  {:<28} {}/{} v{}  by {}",
            e.global_position,
            e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.event_type,
            e.stream_type,
            e.stream_id,
            e.stream_version,
            e.metadata.actor.principal_id
        )
    };
    let after = match start {
        Start::After(after) => after,
        Start::Head => store.head().await?,
    };
    if follow {
        let mut events = Box::pin(crate::bus::feed::follow(
            store,
            after,
            filter,
            std::time::Duration::from_millis(250),
        ));
        loop {
            tokio::select! {
                next = events.next() => match next {
                    Some(event) => print(&event?)?,
                    None => return Ok(()),
                },
                _ = shutdown_signal() => return Ok(()),
            }
        }
    }
    let mut cursor = after;
    loop {
        let (page, scanned) = crate::bus::feed::page(store.as_ref(), cursor, 1000, &filter).await?;
        for e in &page {
            print(e)?;
        }
        if page.len() < 1000 {
            return Ok(());
        }
        cursor = scanned;
    }
}

fn split_stream(stream: &str) -> anyhow::Result<(&str, &str)> {
    stream
        .split_once('/')
        .filter(|(t, i)| !t.is_empty() && !i.is_empty())
        .context("--stream is TYPE/ID, e.g. profile/0191…")
}

async fn replay(
    settings: &StoreSettings,
    stream: Option<String>,
    to_version: Option<i64>,
    as_of: Option<DateTime<Utc>>,
    format: Format,
) -> anyhow::Result<()> {
    let store = store::connect_with(&settings.url(), Open::Existing).await?;
    let print_event = |e: &fleetledger_events::EventEnvelope| match format {
        Format::Json => out!("{}", serde_json::to_string(&crate::views::public(e)).unwrap_or_default()),
        Format::Table => out!(
            "{:>8}  {}  v{:<4} {:<28} {}  by {}",
            e.global_position,
            e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.stream_version,
            e.event_type,
            crate::streams::summary(e),
            e.metadata.actor.principal_id
        ),
    };
    let Some(stream) = stream else {
        let mut after = 0;
        loop {
            let page = store.read_all(after, 1000, None).await?;
            let Some(last) = page.last().map(|e| e.global_position) else {
                return Ok(());
            };
            for e in page.iter().filter(|e| as_of.is_none_or(|t| e.recorded_at <= t)) {
                print_event(e)?;
            }
            after = last;
        }
    };
    let (stream_type, id) = split_stream(&stream)?;
    let events = store.read_stream(id, 1).await?;
    if events.first().is_none_or(|e| e.stream_type != stream_type) {
        bail!("no stream {stream}");
    }
    let current = events.last().map_or(0, |e| e.stream_version);
    let version = match (to_version, as_of) {
        (Some(v), _) if v > current => bail!("{stream} is at version {current}; --to-version {v} is past its end"),
        (Some(v), _) if v < 1 => bail!("--to-version counts from 1 (the stream's first event)"),
        (Some(v), _) => v,
        (None, Some(t)) => crate::audit::version_at(&events, t),
        (None, None) => events.len() as i64,
    };
    let upto: Vec<_> = events.into_iter().filter(|e| e.stream_version <= version).collect();
    match format {
        Format::Table => {
            for e in &upto {
                print_event(e)?;
            }
        }
        Format::Json => {
            let last = upto.last().context("no events at or before that point")?;
            let state = crate::streams::get(stream_type)
                .context("this stream type has no read model")?
                .public_state(None, &upto)?;
            let out = serde_json::json!({
                "version": last.stream_version,
                "recorded_at": fleetledger_events::envelope::micros::format(&last.recorded_at),
                "state": state,
            });
            out!("{}", serde_json::to_string_pretty(&out)?)?;
        }
    }
    Ok(())
}

async fn export(settings: &StoreSettings, stream: Option<String>) -> anyhow::Result<()> {
    use std::io::Write;
    let store = store::connect_with(&settings.url(), Open::Existing).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(stream) = stream {
        let (_, id) = split_stream(&stream)?;
        for e in store.read_stream(id, 1).await? {
            writeln!(out, "{}", serde_json::to_string(&crate::views::archive(&e))?)?;
        }
        return Ok(out.flush()?);
    }
    let bar = progress_bar("exporting");
    bar.set_length(store.head().await? as u64);
    let mut after = 0;
    loop {
        let page = store.read_all(after, 5000, None).await?;
        let Some(last) = page.last().map(|e| e.global_position) else {
            break;
        };
        for e in &page {
            writeln!(out, "{}", serde_json::to_string(&crate::views::archive(e))?)?;
        }
        after = last;
        bar.set_position(last as u64);
    }
    bar.finish_and_clear();
    Ok(out.flush()?)
}

async fn import(settings: &StoreSettings, file: &str) -> anyhow::Result<()> {
    use std::io::BufRead;
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {file}"))?,
        ))
    };
    let mut events = Vec::new();
    let mut chains: std::collections::HashMap<String, fleetledger_events::chain::StreamVerifier> = Default::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: fleetledger_events::EventEnvelope =
            serde_json::from_str(&line).with_context(|| format!("line {}: not an exported event", n + 1))?;
        if let Err(bad) = chains.entry(e.stream_id.clone()).or_default().check(&e) {
            if crate::views::has_redacted_secret(&e) {
                bail!(
                    "line {}: {} version {} held a plaintext secret from before secrets were sealed, which export \
                     wrote as \"***\"; its hash covers the plaintext, so this log cannot be imported with its chain intact",
                    n + 1,
                    bad.stream,
                    bad.version
                );
            }
            bail!(
                "line {}: the hash chain breaks at {} version {}: expected {}, found {}",
                n + 1,
                bad.stream,
                bad.version,
                bad.expected,
                bad.actual
            );
        }
        events.push(e);
    }
    let store = store::connect(&settings.url()).await?;
    if store.head().await? != 0 {
        bail!("the store is not empty; import needs an empty store");
    }
    // One transaction: a failed import leaves the store empty.
    store.import_events(&events).await?;
    let report = crate::audit::rebuild(store.clone(), None, |_, _| {}).await?;
    let verified = store::verify_log(store.as_ref(), |_| {}).await?;
    if !verified.ok {
        bail!("the imported log does not verify: {:?}", verified.first_bad);
    }
    eprintln!(
        "imported {} events, built {} read models; the log verifies",
        events.len(),
        report.models
    );
    Ok(())
}

/// `orgs forget`: destroys the org's data keys, or (without `yes`) says what it would
/// destroy and exits 2.
async fn forget_org(ledger: &crate::ledger::Ledger, org: &str, yes: bool) -> anyhow::Result<ExitCode> {
    let found = match tenancy::find_org(ledger, org).await? {
        Some(found) => Some(found),
        None => match uuid::Uuid::parse_str(org) {
            Ok(id) => ledger
                .models
                .refresh::<fleetledger_projections::org::Org>(&id.to_string())
                .await?
                .map(|c| (*c.model).clone()),
            Err(_) => None,
        },
    };
    let Some(found) = found else { bail!("no organization {org}") };
    let org_id = found.id.to_string();
    let live = crate::secrets::live_keys_of(ledger.store.as_ref(), &org_id).await?;
    if !yes {
        eprintln!(
            "this would destroy {live} data key(s) of organization {} ({org_id}): every secret it stored (gateway \
             tokens) would become unreadable everywhere, for good. The log is kept. Run again with --yes to do it.",
            found.slug
        );
        return Ok(ExitCode::from(2));
    }
    let destroyed = crate::secrets::forget_org(ledger.store.as_ref(), &org_id).await?;
    eprintln!(
        "destroyed {destroyed} data key(s) of organization {}: its secrets are unreadable now; its gateways need new tokens",
        found.slug
    );
    Ok(ExitCode::SUCCESS)
}

/// `secrets rotate-master`: re-wraps every data key under a new master key. Progress goes
/// to stderr; with the key from the environment, the new key alone goes to stdout.
async fn rotate_master(settings: &StoreSettings) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    let store = store::connect_with(&settings.url(), Open::Existing).await?;
    let keyring = crate::secrets::Keyring::load(settings, store).await?;
    if let Some(path) = keyring.key_file().map(std::path::Path::to_path_buf) {
        let count = crate::secrets::rotate_master_file(&keyring, &path).await?;
        eprintln!(
            "re-wrapped {count} data key(s) under a new master key, written to {}; the old key opens nothing any more",
            path.display()
        );
        return Ok(());
    }
    let new = crate::secrets::MasterKey::generate();
    // Printed before the rotation commits: if stdout cannot take it, nothing is changed.
    // Not a quiet end like other closed pipes: the rotation must not be taken as done.
    let not_printed = |e: std::io::Error| anyhow::anyhow!("the new master key could not be printed ({e}); nothing was changed");
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", new.to_base64().expose_secret()).map_err(not_printed)?;
    stdout.flush().map_err(not_printed)?;
    match keyring.rewrap_under(new).await {
        Ok(count) => {
            eprintln!(
                "re-wrapped {count} data key(s) under the new master key printed on stdout: set {} to it in every \
                 process and restart them; the old key opens nothing any more",
                crate::secrets::MASTER_KEY_ENV
            );
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(e).context(format!(
            "the rotation failed and changed nothing: keep the current {}; the key printed above was NOT applied",
            crate::secrets::MASTER_KEY_ENV
        ))),
    }
}

/// How long a last error may be in `dlq list`'s table.
const SHOWN_ERROR: usize = 60;

async fn dlq(settings: &StoreSettings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let store = store::connect_with(&settings.url(), Open::Existing).await?;
    match command {
        DlqCommand::List { json } => {
            let letters = store.dead_letters().await?;
            let slugs = org_slugs(store.as_ref(), letters.iter().map(|l| l.org_id.as_str())).await?;
            let slug = |org_id: &str| slugs.get(org_id).cloned().unwrap_or_else(|| org_id.to_string());
            if json {
                let entries: Vec<serde_json::Value> = letters
                    .iter()
                    .map(|l| {
                        let mut entry = serde_json::to_value(l).unwrap_or_default();
                        entry["org"] = slug(&l.org_id).into();
                        entry
                    })
                    .collect();
                out!("{}", serde_json::to_string_pretty(&entries)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "{:<6} {:<16} {:<50} {:>7} {:<28} {:>8} {:<width$} PARKED AT",
                "ID",
                "ORG",
                "STREAM",
                "VERSION",
                "EVENT TYPE",
                "ATTEMPTS",
                "LAST ERROR",
                width = SHOWN_ERROR
            )?;
            for l in &letters {
                out!(
                    "{:<6} {:<16} {:<50} {:>7} {:<28} {:>8} {:<width$} {}",
                    l.id,
                    slug(&l.org_id),
                    format!("{}/{}", l.stream_type, l.stream_id),
                    l.stream_version,
                    l.event_type,
                    l.attempts,
                    shortened(&l.last_error, SHOWN_ERROR),
                    l.parked_at.format("%Y-%m-%d %H:%M:%S"),
                    width = SHOWN_ERROR
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Retry { id, all, wait_seconds } => {
            let id = if all { None } else { id };
            redrive(store.as_ref(), id, std::time::Duration::from_secs(wait_seconds)).await
        }
    }
}

/// The slug of each org named, read from its stored read model (an unknown org keeps its id).
async fn org_slugs<'a>(
    store: &dyn store::EventStore,
    org_ids: impl Iterator<Item = &'a str>,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut slugs = std::collections::HashMap::new();
    for org_id in org_ids {
        if slugs.contains_key(org_id) {
            continue;
        }
        let kind = <fleetledger_projections::org::Org as fleetledger_projections::ReadModel>::KIND;
        if let Some(row) = store.load_model(kind, org_id).await? {
            let org: fleetledger_projections::org::Org = serde_json::from_str(&row.doc).context("reading an organization")?;
            slugs.insert(org_id.to_string(), org.slug);
        }
    }
    Ok(slugs)
}

/// `text` cut to `max` characters, the cut marked.
fn shortened(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if line.chars().count() > max => format!("{}…", &line[..at]),
        _ => line.to_string(),
    }
}

/// `dlq retry`: asks for the re-drive of one entry (or all), then follows the entries until
/// each was delivered (gone) or failed again (one more re-drive counted), or until nothing
/// moved for `wait`.
async fn redrive(store: &dyn store::EventStore, id: Option<i64>, wait: std::time::Duration) -> anyhow::Result<ExitCode> {
    let asked = store.request_redrive(id).await?;
    match (id, asked.is_empty()) {
        (Some(id), true) => bail!("no parked event {id} (see `fleetledger dlq list`)"),
        (None, true) => {
            eprintln!("nothing is parked");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let total = asked.len();
    let bar = counting_bar("re-driving", "parked events");
    if total > 1 {
        bar.set_length(total as u64);
    } else {
        bar.finish_and_clear();
    }
    let mut pending: std::collections::BTreeMap<i64, store::DeadLetter> = asked.into_iter().map(|l| (l.id, l)).collect();
    let mut failed = 0;
    let mut moved = std::time::Instant::now();
    while !pending.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now: std::collections::HashMap<i64, store::DeadLetter> = store.dead_letters().await?.into_iter().map(|l| (l.id, l)).collect();
        let mut settled = Vec::new();
        for (id, before) in &pending {
            let line = match now.get(id) {
                None => format!(
                    "{id} delivered: {}/{} v{} {}",
                    before.stream_type, before.stream_id, before.stream_version, before.event_type
                ),
                Some(after) if after.redrives > before.redrives => {
                    failed += 1;
                    format!("{id} failed again (attempt {}): {}", after.attempts, after.last_error)
                }
                Some(_) => continue,
            };
            bar.suspend(|| out!("{line}"))?;
            bar.inc(1);
            settled.push(*id);
        }
        if !settled.is_empty() {
            moved = std::time::Instant::now();
        }
        for id in settled {
            pending.remove(&id);
        }
        if !pending.is_empty() && moved.elapsed() >= wait {
            bar.finish_and_clear();
            bail!(
                "{} of {total} parked event(s) were not re-driven within {}s: no running worker took them (is `fleetledger \
                 serve` or `fleetledger worker` running?); they stay asked for, and the next worker to run delivers them",
                pending.len(),
                wait.as_secs()
            );
        }
    }
    bar.finish_and_clear();
    if failed > 0 {
        eprintln!("{failed} of {total} parked event(s) failed again and stay parked");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
