//! The `fleetledger` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    fleetledger::telemetry::init();
    let cli = fleetledger::cli::Cli::parse();
    match fleetledger::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => fleetledger::cli::report(&error),
    }
}
