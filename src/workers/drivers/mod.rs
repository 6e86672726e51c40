//! Side-effect drivers behind small traits: a local implementation that works anywhere,
//! with room for real-world ones (e2b, Docker) beside it.

pub mod container;
pub mod instance_sandbox;
pub mod openclaw;
pub mod sandbox;
pub mod workspace;
