//! Sandboxes that run OpenClaw instances, and how their `openclaw.json` is changed.
//!
//! The local driver keeps each instance's sandbox at `<data dir>/sandboxes/<id>/`, its
//! config at `.openclaw/openclaw.json` inside it, written as the OpenClaw CLI writes it
//! (two-space JSON and a newline, keys in place, new keys last), always by temp file +
//! rename. A sandbox directory that is missing or not writable is unreachable.
//!
//! The `openclaw` driver changes a sandbox by running the OpenClaw CLI in its environment
//! (`HOME` is the sandbox): `openclaw config set <path> <json5>` and `config unset <path>`.
//! The CLI validates the whole config and refuses unknown keys; its message is the
//! failure reported.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use fleetledger_events::instance::ConfigPath;
use serde_json::Value;

use crate::boundary::{io_reason, redact_path};
use crate::domain::instance::apply_paths;

#[async_trait]
pub trait InstanceSandbox: Send + Sync {
    /// The sandbox id and gateway URL instance `id` gets.
    fn describe(&self, id: &str) -> (String, String);
    /// Creates (or refreshes) the sandbox with the whole config.
    async fn provision(&self, id: &str, config: &Value) -> Result<(), String>;
    /// Sets and unsets paths in the live sandbox's config.
    async fn apply(&self, id: &str, paths: &[ConfigPath]) -> Result<(), String>;
    async fn destroy(&self, id: &str) -> Result<(), String>;
}

pub struct LocalInstanceSandbox {
    root: PathBuf,
}

/// The bytes the OpenClaw CLI writes for a config.
pub fn config_bytes(config: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(config).expect("JSON values serialize");
    bytes.push(b'\n');
    bytes
}

impl LocalInstanceSandbox {
    pub fn new(data_dir: &Path) -> Self {
        LocalInstanceSandbox {
            root: data_dir.join("sandboxes"),
        }
    }

    pub fn config_path(&self, id: &str) -> PathBuf {
        self.root.join(id).join(".openclaw").join("openclaw.json")
    }

    async fn write_config(&self, id: &str, config: &Value) -> std::io::Result<()> {
        let path = self.config_path(id);
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, config_bytes(config)).await?;
        tokio::fs::rename(&tmp, &path).await
    }
}

#[async_trait]
impl InstanceSandbox for LocalInstanceSandbox {
    fn describe(&self, id: &str) -> (String, String) {
        (id.to_string(), crate::boundary::local_sandbox_url(id))
    }

    async fn provision(&self, id: &str, config: &Value) -> Result<(), String> {
        let dir = self.root.join(id).join(".openclaw");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot create sandbox {id}: {e}"))?;
        self.write_config(id, config)
            .await
            .map_err(|e| format!("cannot write the config of sandbox {id}: {e}"))
    }

    async fn apply(&self, id: &str, paths: &[ConfigPath]) -> Result<(), String> {
        let unreachable = |why: String| format!("sandbox {id} is unreachable: {why}");
        if !tokio::fs::try_exists(self.root.join(id)).await.unwrap_or(false) {
            return Err(unreachable("its directory is missing".into()));
        }
        let path = self.config_path(id);
        let mut config: Value = match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("the sandbox's openclaw.json is not valid JSON: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Default::default()),
            Err(e) => return Err(unreachable(e.to_string())),
        };
        apply_paths(&mut config, paths)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| unreachable(e.to_string()))?;
        }
        self.write_config(id, &config).await.map_err(|e| unreachable(e.to_string()))
    }

    async fn destroy(&self, id: &str) -> Result<(), String> {
        match tokio::fs::remove_dir_all(self.root.join(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot destroy sandbox {id}: {e}")),
        }
    }
}

/// Runs the OpenClaw CLI with `HOME` at the sandbox for every change.
pub struct OpenClawCliSandbox {
    local: LocalInstanceSandbox,
    root: PathBuf,
    bin: PathBuf,
}

impl OpenClawCliSandbox {
    pub fn new(data_dir: &Path, bin: &Path) -> Self {
        OpenClawCliSandbox {
            local: LocalInstanceSandbox::new(data_dir),
            root: data_dir.join("sandboxes"),
            bin: bin.to_path_buf(),
        }
    }

    async fn run(&self, id: &str, args: &[&str]) -> Result<(), String> {
        let output = tokio::process::Command::new(&self.bin)
            .args(args)
            .env("HOME", self.root.join(id))
            .env("OPENCLAW_CONFIG_PATH", self.local.config_path(id))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                tracing::debug!(bin = %self.bin.display(), error = %e, "cannot run the OpenClaw CLI");
                format!("cannot run the OpenClaw CLI: {}", io_reason(&e))
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let message = [stderr.trim(), stdout.trim()]
            .into_iter()
            .find(|m| !m.is_empty())
            .unwrap_or("the OpenClaw CLI failed");
        let last = message.lines().last().unwrap_or(message);
        // The CLI runs with the sandbox as HOME: it may name files there, which callers see
        // as `~/…`, never as a server path.
        let shown = redact_path(&redact_path(last, &self.root.join(id), "~"), &self.root, "<sandboxes>");
        tracing::debug!(instance = id, output = %message, "the OpenClaw CLI failed");
        Err(shown)
    }
}

#[async_trait]
impl InstanceSandbox for OpenClawCliSandbox {
    fn describe(&self, id: &str) -> (String, String) {
        self.local.describe(id)
    }

    async fn provision(&self, id: &str, config: &Value) -> Result<(), String> {
        self.local.provision(id, config).await
    }

    async fn apply(&self, id: &str, paths: &[ConfigPath]) -> Result<(), String> {
        if !tokio::fs::try_exists(self.root.join(id)).await.unwrap_or(false) {
            return Err(format!("sandbox {id} is unreachable: its directory is missing"));
        }
        for p in paths {
            match &p.value {
                // JSON is JSON5, so the CLI reads the value exactly.
                Some(value) => self.run(id, &["config", "set", &p.path, &value.to_string()]).await?,
                None => self.run(id, &["config", "unset", &p.path]).await?,
            }
        }
        Ok(())
    }

    async fn destroy(&self, id: &str) -> Result<(), String> {
        self.local.destroy(id).await
    }
}
