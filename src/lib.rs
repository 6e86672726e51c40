//! fleetledger.
