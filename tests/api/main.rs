//! Black-box tests: the real server on 127.0.0.1:0 against SQLite and PostgreSQL.
//!
//! Each scenario runs once per backend. PostgreSQL scenarios need
//! `FLEETLEDGER_TEST_POSTGRES` (CI always sets it); without it they print that they were
//! skipped, and with it set but unreachable they fail.

mod helpers;

mod instances;
mod ledger_access;

mod audit;
mod cli;
mod console;
mod console_browser;
mod container_agents;
mod contract;
mod dead_letters;
mod fake_gateway;
mod feed;
mod host_boundary;
mod limits;
mod log_fixture;
mod mission_control;
mod operations;
mod preconditions;
mod profiles;
mod profiles_body;
mod readme;
mod relay;
mod runtimes;
mod sdk;
mod secrets;
mod store;
mod store_conformance;
