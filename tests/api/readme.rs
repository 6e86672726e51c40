//! The README's examples run as written, in order, against a freshly started server: every
//! `sh` block that calls `curl`, in one shell, with the server's address in place of
//! `127.0.0.1:8080` and `data/` being the server's data dir. `curl` fails on any answer of
//! 400 or more, so each example must succeed; the change feed's SSE example (`curl -N`)
//! is cut after two seconds.

use crate::both_backends;
use crate::helpers::{serve_settings, spawn_configured, Backend, TestStore};

/// The shell code blocks of the README that call `curl`, in order.
fn curl_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                if block.contains("curl ") {
                    blocks.push(block.clone());
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Makes every curl fail on an HTTP error, and ends an event stream after a while.
const PREAMBLE: &str = r#"set -euo pipefail
curl() {
    if [[ " $* " == *" -N "* ]]; then
        local code=0
        command curl --max-time 2 --fail-with-body "$@" || code=$?
        [ "$code" -eq 0 ] || [ "$code" -eq 28 ]
        return
    fi
    command curl --fail-with-body "$@"
}
"#;

async fn readme_examples_run_as_written(backend: Backend) {
    let Some(store) = TestStore::new(backend).await else { return };
    let mut serve = serve_settings();
    // The instances example signs up an organization, which the README says needs it.
    serve.allow_signup = true;
    let workers = fleetledger::workers::registry(store.dir.path(), &serve.drivers);
    let app = spawn_configured(store, serve, workers).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let blocks = curl_blocks(&readme);
    assert!(blocks.len() >= 8, "the README's curl examples: {blocks:?}");
    let base = app.url("");
    let script = format!("{PREAMBLE}{}", blocks.join("\n").replace("http://127.0.0.1:8080", &base));
    let cwd = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(app.store.dir.path(), cwd.path().join("data")).expect("data -> the server's data dir");
    let dir = cwd.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&dir)
            .output()
            .expect("run bash")
    })
    .await
    .expect("the shell's thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "a README example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.assert_no_server_path(&stdout);
    // The examples did what they say: the profile went through its revisions and a restore.
    assert!(stdout.contains("\"created_new_revision\":true"), "{stdout}");
    assert!(stdout.contains("\"ok\":true"), "verification: {stdout}");
}

both_backends!(readme_examples_run_as_written);
