//! Sandboxes that back runtimes. The local driver keeps each sandbox as a directory
//! `<data dir>/sandboxes/<sandbox id>/` holding the resolved config (`config.json`) and
//! its state (`state`); a directory that is missing or not writable is an unreachable
//! sandbox.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox {id} is unreachable: {reason}")]
    Unreachable { id: String, reason: String },
    #[error("sandbox {id} could not be created: {reason}")]
    Create { id: String, reason: String },
}

/// A sandbox the driver has made.
#[derive(Clone, Debug)]
pub struct SandboxHandle {
    pub provider: String,
    pub url: Option<String>,
}

#[async_trait]
pub trait SandboxDriver: Send + Sync {
    /// Where sandbox `id` lives, known before it is created so that the start can be
    /// recorded first and the creation reported as its outcome.
    fn describe(&self, id: &str) -> SandboxHandle;
    /// Materializes `config` into a new sandbox `id` for `runtime_id`.
    async fn create(&self, id: &str, runtime_id: &str, config: &Value) -> Result<(), SandboxError>;
    async fn pause(&self, id: &str) -> Result<(), SandboxError>;
    async fn resume(&self, id: &str) -> Result<(), SandboxError>;
    /// Kills the sandbox; one that is already gone is fine.
    async fn destroy(&self, id: &str) -> Result<(), SandboxError>;
}

pub struct LocalSandboxDriver {
    root: PathBuf,
}

impl LocalSandboxDriver {
    pub fn new(data_dir: &Path) -> Self {
        LocalSandboxDriver {
            root: data_dir.join("sandboxes"),
        }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Replaces `name` in the sandbox atomically (temp file + rename).
    async fn write(&self, id: &str, name: &str, contents: &[u8]) -> std::io::Result<()> {
        let dir = self.dir(id);
        let tmp = dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, contents).await?;
        tokio::fs::rename(&tmp, dir.join(name)).await
    }

    async fn set_state(&self, id: &str, state: &str) -> Result<(), SandboxError> {
        let unreachable = |reason: String| SandboxError::Unreachable { id: id.into(), reason };
        if !tokio::fs::try_exists(self.dir(id)).await.unwrap_or(false) {
            return Err(unreachable("its directory is missing".into()));
        }
        self.write(id, "state", state.as_bytes())
            .await
            .map_err(|e| unreachable(e.to_string()))
    }
}

#[async_trait]
impl SandboxDriver for LocalSandboxDriver {
    fn describe(&self, id: &str) -> SandboxHandle {
        SandboxHandle {
            provider: "local".into(),
            url: Some(crate::boundary::local_sandbox_url(id)),
        }
    }

    async fn create(&self, id: &str, runtime_id: &str, config: &Value) -> Result<(), SandboxError> {
        let failed = |e: std::io::Error| SandboxError::Create {
            id: id.into(),
            reason: e.to_string(),
        };
        let dir = self.dir(id);
        tokio::fs::create_dir_all(&dir).await.map_err(failed)?;
        let resolved = serde_json::json!({ "runtime_id": runtime_id, "sandbox_id": id, "config": config });
        let text = serde_json::to_vec_pretty(&resolved).expect("JSON values serialize");
        self.write(id, "config.json", &text).await.map_err(failed)?;
        self.write(id, "state", b"running").await.map_err(failed)
    }

    async fn pause(&self, id: &str) -> Result<(), SandboxError> {
        self.set_state(id, "paused").await
    }

    async fn resume(&self, id: &str) -> Result<(), SandboxError> {
        self.set_state(id, "running").await
    }

    async fn destroy(&self, id: &str) -> Result<(), SandboxError> {
        match tokio::fs::remove_dir_all(self.dir(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SandboxError::Unreachable {
                id: id.into(),
                reason: e.to_string(),
            }),
        }
    }
}
