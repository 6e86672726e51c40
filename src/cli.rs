//! The command line: `serve`, `migrate`, `verify`, `orgs`, `workspaces`, `keys`. Every
//! command uses the same store settings as `serve`, so it works beside a running server.

use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use fleetledger_events::Actor;
use fleetledger_projections::key::Key;

use crate::app::{open_ledger, shutdown_signal, Application};
use crate::config::{ServeSettings, Settings, StoreSettings};
use crate::store;
use crate::tenancy::{self, NewKey};

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
        #[command(flatten)]
        settings: ServeSettings,
    },
    /// Run the workers only (no HTTP): on JetStream when NATS_URL is set, else on the log.
    Worker {
        #[command(flatten)]
        bus: crate::config::BusSettings,
        /// How often (ms) to poll the log for new events when not on JetStream.
        #[arg(long, env = "FLEETLEDGER_FOLLOW_INTERVAL_MS", default_value_t = 250)]
        follow_interval_ms: u64,
    },
    /// Print the change feed, human-readable.
    Tail {
        /// Keep printing new events as they are committed.
        #[arg(long, short)]
        follow: bool,
        /// Only this stream type (profile, key, org, …).
        #[arg(long = "type", short = 't')]
        stream_type: Option<String>,
        /// Start after this global position (default: the beginning).
        #[arg(long, default_value_t = 0)]
        after: i64,
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
    /// List keys (never their tokens).
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

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { settings } => {
            let app = Application::build(Settings {
                store: cli.store,
                serve: settings,
            })
            .await?;
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Worker { bus, follow_interval_ms } => {
            let ledger = open_ledger(&cli.store).await?;
            let workers = crate::workers::registry();
            let names: Vec<String> = workers.iter().map(|w| w.name().to_string()).collect();
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let bus = crate::app::connect_bus(&bus).await?;
            crate::app::spawn_workers(
                &ledger,
                bus,
                std::time::Duration::from_millis(follow_interval_ms),
                workers,
                &stopped,
            );
            tracing::info!(workers = ?names, "running workers");
            shutdown_signal().await;
            let _ = stop.send(true);
        }
        Command::Tail {
            follow,
            stream_type,
            after,
        } => tail(&cli.store, follow, stream_type, after).await?,
        Command::Migrate => {
            store::connect(&cli.store.url()).await.context("migrating the store")?;
            eprintln!("store is up to date");
        }
        Command::Verify => return verify(&cli.store).await,
        Command::Orgs { command } => orgs(&cli.store, command).await?,
        Command::Workspaces {
            command: WorkspacesCommand::Create { org, slug, name },
        } => {
            let ledger = open_ledger(&cli.store).await?;
            let Some(found) = tenancy::find_org(&ledger, &org).await? else {
                bail!("no organization {org}")
            };
            tenancy::create_workspace(&ledger, &found, &slug, name.as_deref().unwrap_or(""), cli_actor(), Utc::now()).await?;
            eprintln!("created workspace {slug} in {org}");
        }
        Command::Keys { command } => keys(&cli.store, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(settings: &StoreSettings) -> anyhow::Result<ExitCode> {
    let store = store::connect(&settings.url()).await?;
    let total = store.head().await?;
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} verifying {pos}/{len} events [{bar:30}] {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let verification = store::verify_log(store.as_ref(), |checked| bar.set_position(checked)).await?;
    bar.finish_and_clear();
    match verification.first_bad {
        None => {
            println!("ok: {} events verified", verification.checked);
            Ok(ExitCode::SUCCESS)
        }
        Some(bad) => {
            println!(
                "BROKEN: event {} (stream {} version {}, position {}): expected {}, found {}",
                bad.event_id, bad.stream, bad.version, bad.global_position, bad.expected, bad.actual
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn orgs(settings: &StoreSettings, command: OrgsCommand) -> anyhow::Result<()> {
    let ledger = open_ledger(settings).await?;
    match command {
        OrgsCommand::Create { slug, name } => {
            let org = tenancy::create_org(&ledger, &slug, name.as_deref().unwrap_or(""), cli_actor(), Utc::now()).await?;
            eprintln!("created organization {} ({})", org.slug, org.id);
        }
        OrgsCommand::List => {
            let mut orgs: Vec<_> = ledger.models.orgs.all().into_iter().map(|c| c.model).collect();
            orgs.sort_by(|a, b| a.slug.cmp(&b.slug));
            println!("{:<24} {:<36} {:<24} WORKSPACES", "SLUG", "ID", "NAME");
            for org in orgs {
                let workspaces: Vec<&str> = org.workspaces.iter().map(|w| w.slug.as_str()).collect();
                println!("{:<24} {:<36} {:<24} {}", org.slug, org.id, org.name, workspaces.join(","));
            }
        }
    }
    Ok(())
}

async fn keys(settings: &StoreSettings, command: KeysCommand) -> anyhow::Result<()> {
    let ledger = open_ledger(settings).await?;
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
            };
            let (token, key) = tenancy::issue_key(&ledger, new, cli_actor(), Utc::now()).await?;
            eprintln!("issued {} key {} in {} (shown once)", key.role, key.id, found.slug);
            println!("{}", token.expose());
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
                .keys
                .all()
                .into_iter()
                .map(|c| (*c.model).clone())
                .filter(|k| org_id.is_none_or(|o| k.org_id == o))
                .collect();
            keys.sort_by_key(|k| k.created_at);
            println!(
                "{:<36} {:<14} {:<7} {:<16} {:<20} {:<20} STATE",
                "ID", "PREFIX", "ROLE", "NAME", "CREATED", "LAST USED"
            );
            let fmt = |t: &DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
            for k in keys {
                let state = match (k.revoked_at, k.expires_at) {
                    (Some(t), _) => format!("revoked {}", fmt(&t)),
                    (None, Some(t)) if t <= Utc::now() => format!("expired {}", fmt(&t)),
                    (None, Some(t)) => format!("expires {}", fmt(&t)),
                    (None, None) => "active".into(),
                };
                let used = usage.get(&k.id.to_string()).map(fmt).unwrap_or_else(|| "never".into());
                println!(
                    "{:<36} {:<14} {:<7} {:<16} {:<20} {:<20} {}",
                    k.id,
                    k.key_prefix,
                    k.role,
                    k.name,
                    fmt(&k.created_at),
                    used,
                    state
                );
            }
        }
        KeysCommand::Revoke { key_id } => {
            let key = tenancy::revoke_key(&ledger, key_id, cli_actor(), Utc::now()).await?;
            eprintln!("revoked key {}", key.id);
        }
    }
    Ok(())
}

async fn tail(settings: &StoreSettings, follow: bool, stream_type: Option<String>, after: i64) -> anyhow::Result<()> {
    use futures::StreamExt;
    let store = store::connect(&settings.url()).await?;
    let filter = crate::bus::feed::Filter {
        stream_type,
        ..Default::default()
    };
    let print = |e: &fleetledger_events::EventEnvelope| {
        println!(
            "{:>8}  {}  {:<28} {}/{} v{}  by {}",
            e.global_position,
            e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
            e.event_type,
            e.stream_type,
            e.stream_id,
            e.stream_version,
            e.metadata.actor.principal_id
        );
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
                    Some(event) => print(&event?),
                    None => return Ok(()),
                },
                _ = shutdown_signal() => return Ok(()),
            }
        }
    }
    let mut cursor = after;
    loop {
        let (page, scanned) = crate::bus::feed::page(store.as_ref(), cursor, 1000, &filter).await?;
        page.iter().for_each(print);
        if page.len() < 1000 {
            return Ok(());
        }
        cursor = scanned;
    }
}
