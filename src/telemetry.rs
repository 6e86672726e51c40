//! Structured logs: `RUST_LOG` filters (default `info`), `FLEETLEDGER_LOG_FORMAT=json`
//! switches to JSON lines. Logs go to stderr so stdout stays for command output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("FLEETLEDGER_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
