//! Mission Control agent workspaces: the files rendered from built-in templates (or the
//! agent's own soul/identity templates) and the drivers that deliver them to a gateway.
//!
//! Templates render with minijinja in strict-undefined mode: a template that names
//! something the context lacks is a reported failure, never an empty string.

use std::path::Path;

use async_trait::async_trait;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Files every workspace gets, in the order they are written.
pub const FILES: [&str; 7] = [
    "AGENTS.md",
    "SOUL.md",
    "TOOLS.md",
    "IDENTITY.md",
    "USER.md",
    "HEARTBEAT.md",
    "MEMORY.md",
];
/// Written only when provisioning is forced.
pub const BOOTSTRAP: &str = "BOOTSTRAP.md";
/// Files the agent itself keeps; an existing one is never overwritten.
pub const KEPT: [&str; 2] = ["USER.md", "MEMORY.md"];

fn builtin(name: &str) -> &'static str {
    match name {
        "AGENTS.md" => include_str!("../templates/AGENTS.md.j2"),
        "SOUL.md" => include_str!("../templates/SOUL.md.j2"),
        "TOOLS.md" => include_str!("../templates/TOOLS.md.j2"),
        "IDENTITY.md" => include_str!("../templates/IDENTITY.md.j2"),
        "USER.md" => include_str!("../templates/USER.md.j2"),
        "HEARTBEAT.md" => include_str!("../templates/HEARTBEAT.md.j2"),
        "MEMORY.md" => include_str!("../templates/MEMORY.md.j2"),
        _ => include_str!("../templates/BOOTSTRAP.md.j2"),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkspaceFile {
    pub name: String,
    pub content: String,
}

impl WorkspaceFile {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.content.as_bytes()))
    }
}

/// Renders the workspace files for `context`; `soul`/`identity` replace the built-in
/// SOUL.md/IDENTITY.md templates when given.
pub fn render(context: &Value, soul: Option<&str>, identity: Option<&str>, force: bool) -> Result<Vec<WorkspaceFile>, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let mut names: Vec<&str> = FILES.to_vec();
    if force {
        names.push(BOOTSTRAP);
    }
    names
        .into_iter()
        .map(|name| {
            let source = match name {
                "SOUL.md" => soul.unwrap_or(builtin(name)),
                "IDENTITY.md" => identity.unwrap_or(builtin(name)),
                _ => builtin(name),
            };
            env.render_str(source, context)
                .map(|content| WorkspaceFile {
                    name: name.to_string(),
                    content,
                })
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect()
}

/// Where an agent's workspace goes.
#[derive(Clone, Debug)]
pub struct WorkspaceTarget {
    pub gateway_url: String,
    pub token: Option<String>,
    pub gateway_agent_id: String,
    pub session_key: String,
    pub workspace_path: String,
    pub agent_name: String,
    pub heartbeat: Value,
}

/// What a driver did.
#[derive(Clone, Debug, Default)]
pub struct Delivered {
    /// Files written, by name.
    pub written: Vec<WorkspaceFile>,
    /// Files the gateway refused as unsupported.
    pub unsupported: Vec<String>,
}

#[async_trait]
pub trait WorkspaceDriver: Send + Sync {
    async fn deliver(&self, target: &WorkspaceTarget, files: Vec<WorkspaceFile>) -> Result<Delivered, String>;

    /// Writes the agent's heartbeat policy where the gateway keeps it; `false` when this
    /// gateway keeps none.
    async fn sync_heartbeat(&self, _target: &WorkspaceTarget) -> Result<bool, String> {
        Ok(false)
    }

    /// Removes a deleted agent from the gateway; `false` when there is nothing to remove.
    /// Workspace files are never deleted: what the agent wrote there stays.
    async fn remove(&self, _target: &WorkspaceTarget) -> Result<bool, String> {
        Ok(false)
    }
}

/// Writes the files under the workspace path on this machine, each atomically.
pub struct LocalWorkspaceDriver;

#[async_trait]
impl WorkspaceDriver for LocalWorkspaceDriver {
    async fn deliver(&self, target: &WorkspaceTarget, files: Vec<WorkspaceFile>) -> Result<Delivered, String> {
        let dir = Path::new(&target.workspace_path);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("cannot create workspace {}: {e}", dir.display()))?;
        let mut written = Vec::new();
        for file in files {
            let path = dir.join(&file.name);
            if KEPT.contains(&file.name.as_str()) && tokio::fs::try_exists(&path).await.unwrap_or(false) {
                continue;
            }
            let tmp = dir.join(format!(".{}.tmp", file.name));
            tokio::fs::write(&tmp, file.content.as_bytes())
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            written.push(file);
        }
        Ok(Delivered {
            written,
            unsupported: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Value {
        json!({
            "agent": {"name": "Ops", "status": "active", "gateway_agent_id": "mc-1"},
            "board": {"name": "Finance", "objective": "Close the books"},
            "gateway": {"name": "gw"},
            "identity": {"role": "lead"},
            "heartbeat": {"every": "10m", "target": "last"},
            "session_key": "agent:mc-1:main",
            "workspace_path": "/w/workspace-mc-1",
        })
    }

    #[test]
    fn builtin_templates_render_and_custom_ones_replace_soul_and_identity() {
        let files = render(&context(), Some("Soul of {{ agent.name }}"), None, false).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, FILES.to_vec());
        assert_eq!(files[1].content, "Soul of Ops");
        assert!(files[0].content.contains("Close the books"), "{}", files[0].content);
        assert!(files[3].content.contains("- role: lead"), "{}", files[3].content);
        assert_eq!(render(&context(), None, None, true).unwrap().last().unwrap().name, BOOTSTRAP);
    }

    #[test]
    fn an_undefined_variable_is_a_failure_not_an_empty_string() {
        let error = render(&context(), Some("{{ agent.nickname }}"), None, false).unwrap_err();
        assert!(error.starts_with("SOUL.md: "), "{error}");
    }
}
