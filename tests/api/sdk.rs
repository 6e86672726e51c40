//! The runtimes surface driven by the official dreadnode Python SDK's HTTP client
//! (`tests/sdk/dreadnode_runtimes.py`). Needs `FLEETLEDGER_TEST_PYTHON`: a python with the
//! SDK installed (`tests/sdk/setup.sh` makes one). CI always sets it; without it, and
//! outside CI, the scenario says it was skipped.

use crate::both_backends;
use crate::helpers::{spawn_app, Backend};

fn sdk_python() -> Option<String> {
    match std::env::var("FLEETLEDGER_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some() => panic!("CI must set FLEETLEDGER_TEST_PYTHON (see tests/sdk/setup.sh)"),
        _ => {
            eprintln!("skipped: FLEETLEDGER_TEST_PYTHON is not set (see tests/sdk/setup.sh)");
            None
        }
    }
}

async fn dreadnode_sdk_drives_runtimes(backend: Backend) {
    let Some(python) = sdk_python() else { return };
    let Some(app) = spawn_app(backend).await else { return };
    let owner = app.store.create_key("default", "member");
    let other = app.store.create_key("default", "member");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/dreadnode_runtimes.py");
    let base = app.url("");
    // The server runs on this test's runtime; the script blocks a thread of its own.
    let out = tokio::task::spawn_blocking(move || std::process::Command::new(&python).args([script, &base, &owner, &other]).output())
        .await
        .expect("the script's thread")
        .expect("run the SDK script");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "the SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

both_backends!(dreadnode_sdk_drives_runtimes);
