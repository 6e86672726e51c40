//! Containers that run container agents. The local driver (the default) gives each agent a
//! directory `<data dir>/containers/<agent>/` holding its resolved config and records a
//! container id; a real engine would run `image` with the same limits.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{json, Value};

/// What to run for an agent.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    /// The agent's id (its directory and container name).
    pub agent: String,
    pub image: String,
    pub cpus: String,
    pub mem_limit: String,
    pub pids_limit: i64,
    /// Soul, rules, tools config and models, as the agent reads them.
    pub config: Value,
}

#[async_trait]
pub trait ContainerDriver: Send + Sync {
    /// Runs the agent; its container id.
    async fn run(&self, spec: &ContainerSpec) -> Result<String, String>;
    /// Removes a container; one that is already gone is fine.
    async fn remove(&self, agent: &str, container_id: &str) -> Result<(), String>;
}

pub struct LocalContainerDriver {
    root: PathBuf,
}

impl LocalContainerDriver {
    pub fn new(data_dir: &Path) -> Self {
        LocalContainerDriver {
            root: data_dir.join("containers"),
        }
    }

    pub fn dir(&self, agent: &str) -> PathBuf {
        self.root.join(agent)
    }
}

#[async_trait]
impl ContainerDriver for LocalContainerDriver {
    async fn run(&self, spec: &ContainerSpec) -> Result<String, String> {
        let dir = self.dir(&spec.agent);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot create the container directory {}: {e}", dir.display()))?;
        let container_id = format!("local-{}", uuid::Uuid::new_v4().simple());
        let resolved = json!({
            "container_id": container_id,
            "image": spec.image,
            "limits": {"cpus": spec.cpus, "mem_limit": spec.mem_limit, "pids_limit": spec.pids_limit},
            "config": spec.config,
        });
        let tmp = dir.join(".config.json.tmp");
        let bytes = serde_json::to_vec_pretty(&resolved).expect("JSON values serialize");
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| format!("cannot write the agent's config: {e}"))?;
        tokio::fs::rename(&tmp, dir.join("config.json"))
            .await
            .map_err(|e| format!("cannot write the agent's config: {e}"))?;
        Ok(container_id)
    }

    async fn remove(&self, agent: &str, _container_id: &str) -> Result<(), String> {
        match tokio::fs::remove_dir_all(self.dir(agent)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove the container of {agent}: {e}")),
        }
    }
}
