//! The `fleetledger` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// Request handling allocates many small, short-lived values (JSON trees, strings); glibc's
/// allocator spent a fifth of a large write's CPU in `malloc`/`free` and in page faults
/// from returning memory to the kernel and faulting it back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    fleetledger::telemetry::init();
    let cli = fleetledger::cli::Cli::parse();
    match fleetledger::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => fleetledger::cli::report(&error),
    }
}
