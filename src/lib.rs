//! fleetledger: one hash-chained event log behind five products' configuration APIs.
//!
//! Layout:
//! - [`cli`], [`config`], [`telemetry`]: the command line, settings, logs and metrics.
//! - [`answering`]: what is known of the request the current task is answering.
//! - [`app`]: builds the router from the surfaces and runs the service; [`connections`]:
//!   accepts and serves connections, and drains them on shutdown; [`state`]: the
//!   shared [`state::AppState`] every handler reaches; [`shutdown`]: the moment shutdown
//!   begins, which long-lived answers (SSE) watch.
//! - [`api`]: one module per HTTP surface, each with its DTOs and error envelope.
//! - [`domain`]: pure decide functions per aggregate.
//! - [`ledger`]: commits decisions with their read models.
//! - [`store`]: the event store trait, PostgreSQL and SQLite backends, read-model cache.
//! - [`auth`], [`tenancy`]: keys, principals, orgs and workspaces.
//! - [`boundary`]: the trust boundary: which paths and destinations requests may reach.
//! - [`secrets`]: sealing secrets before they reach the log (per-org data keys under a
//!   master key); [`views`]: what of an event may leave the process.
//! - [`bus`]: CloudEvents, the log feed, JetStream and the relay; [`workers`]: the worker runtime.
//!
//! Events live in the `fleetledger-events` crate, read models in `fleetledger-projections`.

pub mod answering;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod boundary;
pub mod bus;
pub mod cli;
pub mod config;
pub mod connections;
pub mod domain;
pub mod ledger;
pub mod secrets;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod streams;
pub mod telemetry;
pub mod tenancy;
pub mod views;
pub mod workers;

/// The hasher of the maps the request path reads on every request (read models and their
/// lookups, rendered bodies, rate-limit buckets, stream slots): foldhash, seeded per map,
/// instead of SipHash, which over a key's 64-character hash and a resource id showed as a
/// twentieth of a cached read's instructions. Keys there are ids, hashes and addresses.
pub type FastHash = foldhash::fast::RandomState;

/// A concurrent map hashed with [`FastHash`].
pub type FastMap<K, V> = dashmap::DashMap<K, V, FastHash>;
