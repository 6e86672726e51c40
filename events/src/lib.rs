//! Events of the fleetledger log: the stored envelope, the per-aggregate event types with
//! their stable names and schema versions, the hash chain, and canonical JSON encoders.
//!
//! Layout:
//! - [`envelope`]: `EventEnvelope`, `NewEvent`, `Metadata` — what the log stores.
//! - [`chain`]: the per-stream sha256 hash chain.
//! - [`go_json`]: byte-exact Go `encoding/json` output, the canonical form Fleeti hashes.
//! - [`secret`]: what the log stores for a secret (sealed, or legacy plaintext) and the
//!   per-event-type declaration of secret and internal fields.
//! - [`change`]: the serde forms of typed change payloads (absent unchanged, `null` cleared).
//! - [`profile`], [`fleet`], [`org`], [`key`], [`runtime`], [`mission_control`],
//!   [`instance`], [`container`]: event types per aggregate.
//!
//! Nothing here does I/O.

pub mod chain;
pub mod change;
pub mod container;
pub mod envelope;
pub mod fleet;
pub mod go_json;
pub mod instance;
pub mod jcs;
pub mod key;
pub mod mission_control;
pub mod org;
pub mod profile;
pub mod runtime;
pub mod secret;

pub use envelope::{Actor, DecodeError, DomainEvent, EventEnvelope, Metadata, NewEvent};

/// Stream types, one per aggregate. They are part of stream identity and never renamed.
pub mod stream_type {
    pub const ORG: &str = "org";
    pub const KEY: &str = "key";
    pub const FLEET: &str = "fleet";
    pub const PROFILE: &str = "profile";
    pub const RUNTIME: &str = "runtime";
    pub const GATEWAY: &str = "gateway";
    pub const BOARD: &str = "board";
    pub const MC_AGENT: &str = "mc_agent";
    pub const INSTANCE: &str = "instance";
    pub const SKILL: &str = "skill";
    pub const CONTAINER_PROFILE: &str = "container_profile";
    pub const CONTAINER_AGENT: &str = "container_agent";
}
