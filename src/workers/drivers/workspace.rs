//! Mission Control agent workspaces: the files rendered from built-in templates (or the
//! agent's own soul/identity templates) and the drivers that deliver them to a gateway.
//!
//! Templates render with minijinja in strict-undefined mode: a template that names
//! something the context lacks is a reported failure, never an empty string.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::boundary::{io_reason, Boundary, HostError};

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

/// How much work rendering one file may take: minijinja's fuel, about one unit per
/// instruction. An agent's own templates come from request bodies; a loop of loops would
/// otherwise keep the reprovisioner busy for hours while the request waits for it. The
/// built-in templates need a few thousand, and about ten per key of the identity profile.
const RENDER_FUEL: u64 = 5_000_000;
/// The largest file a template may render to.
const MAX_RENDERED_BYTES: usize = 8 * 1024 * 1024;

/// Renders the workspace files for `context`; `soul`/`identity` replace the built-in
/// SOUL.md/IDENTITY.md templates when given. A template that needs more than its fuel or
/// renders more than `MAX_RENDERED_BYTES` fails like any other broken template.
pub fn render(context: &Value, soul: Option<&str>, identity: Option<&str>, force: bool) -> Result<Vec<WorkspaceFile>, String> {
    render_with_fuel(context, soul, identity, force, RENDER_FUEL)
}

fn render_with_fuel(
    context: &Value,
    soul: Option<&str>,
    identity: Option<&str>,
    force: bool,
    fuel: u64,
) -> Result<Vec<WorkspaceFile>, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(fuel));
    // Converted once for every file: a 100k-key identity profile made into minijinja's
    // sorted map per file cost seven times what rendering it does.
    let context = minijinja::Value::from_serialize(context);
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
            render_bounded(&env, source, &context)
                .map(|content| WorkspaceFile {
                    name: name.to_string(),
                    content,
                })
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect()
}

/// `env.render_str`, stopped once the output passes `MAX_RENDERED_BYTES`.
fn render_bounded(env: &Environment, source: &str, context: &minijinja::Value) -> Result<String, String> {
    struct Bounded(Vec<u8>);
    impl std::io::Write for Bounded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0.len() + buf.len() > MAX_RENDERED_BYTES {
                return Err(std::io::Error::other("too large"));
            }
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Bounded(Vec::new());
    let template = env.template_from_str(source).map_err(|e| e.to_string())?;
    match template.render_captured_to(context, &mut out) {
        Ok(_) => String::from_utf8(out.0).map_err(|e| e.to_string()),
        Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => {
            Err(format!("renders to more than {} MiB", MAX_RENDERED_BYTES / (1024 * 1024)))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Where an agent's workspace goes.
#[derive(Clone, Debug)]
pub struct WorkspaceTarget {
    pub gateway_url: String,
    /// Opened from the sealed token only for a driver that sends it; `Debug` hides it.
    pub token: Option<crate::secrets::Plaintext>,
    pub gateway_agent_id: String,
    pub session_key: String,
    /// The gateway's org: a local driver keeps each org's workspaces apart.
    pub org_id: uuid::Uuid,
    /// The gateway's `workspace_root` as stored: a local driver resolves it through the
    /// boundary, never by joining it itself.
    pub workspace_root: String,
    /// `<workspace_root>/workspace-<gateway_agent_id>`: what the gateway and agent see.
    pub workspace_path: String,
    pub agent_name: String,
    pub heartbeat: Value,
    /// This delivery's id: what a gateway takes as the idempotency key of a step that must
    /// not happen twice (the wake message), so the delivery made again after a crash is
    /// recognised.
    pub delivery: String,
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

/// Writes the files into the agent's directory under its gateway's workspace root on this
/// machine, each atomically, in the directory the boundary resolved at this moment.
pub struct LocalWorkspaceDriver {
    pub boundary: Arc<Boundary>,
}

/// The directory name of an agent's workspace under its gateway's root.
pub fn workspace_dir_name(gateway_agent_id: &str) -> String {
    format!("workspace-{gateway_agent_id}")
}

/// Writes a new file at `path`, replacing a leftover one. `create_new` never follows a
/// link, so a link the agent left at a temp name cannot lead the write elsewhere.
async fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(path).await?;
    file.write_all(bytes).await?;
    file.flush().await
}

#[async_trait]
impl WorkspaceDriver for LocalWorkspaceDriver {
    async fn deliver(&self, target: &WorkspaceTarget, files: Vec<WorkspaceFile>) -> Result<Delivered, String> {
        let dir = self
            .boundary
            .workspace_dir(
                &target.org_id.to_string(),
                &target.workspace_root,
                &workspace_dir_name(&target.gateway_agent_id),
            )
            .map_err(|e| match e {
                HostError::Refused(why) => format!("the agent's workspace is not allowed on this server: {why}"),
                HostError::Io(e) => format!("cannot create the agent's workspace: {}", io_reason(&e)),
            })?;
        tracing::debug!(agent = %target.gateway_agent_id, dir = %dir.display(), "writing workspace files");
        let mut written = Vec::new();
        for file in files {
            let path = dir.join(&file.name);
            if KEPT.contains(&file.name.as_str()) && tokio::fs::symlink_metadata(&path).await.is_ok() {
                continue;
            }
            let failed = |e: std::io::Error| format!("cannot write {}: {}", file.name, io_reason(&e));
            let tmp = dir.join(format!(".{}.tmp", file.name));
            write_new(&tmp, file.content.as_bytes()).await.map_err(failed)?;
            tokio::fs::rename(&tmp, &path).await.map_err(failed)?;
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

    const ORG: uuid::Uuid = uuid::Uuid::from_u128(7);

    fn target(root: &str) -> WorkspaceTarget {
        WorkspaceTarget {
            gateway_url: "local".into(),
            token: None,
            gateway_agent_id: "mc-1".into(),
            session_key: "agent:mc-1:main".into(),
            org_id: ORG,
            workspace_root: root.into(),
            workspace_path: format!("{root}/workspace-mc-1"),
            agent_name: "Ops".into(),
            heartbeat: json!({}),
            delivery: "d-1".into(),
        }
    }

    #[tokio::test]
    async fn the_local_driver_writes_only_inside_the_directory_the_boundary_resolved() {
        let data = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let driver = LocalWorkspaceDriver {
            boundary: Arc::new(Boundary::new(data.path(), &Default::default())),
        };
        let soul = || {
            vec![WorkspaceFile {
                name: "SOUL.md".into(),
                content: "soul".into(),
            }]
        };
        // A link the agent left at the temp name is replaced, not written through.
        let dir = data.path().join(format!("workspaces/{ORG}/claws/workspace-mc-1"));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(".SOUL.md.tmp")).unwrap();
        driver.deliver(&target("claws"), soul()).await.unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dir.join("SOUL.md")).unwrap(), "soul");
        // A root the boundary refuses is never written, and the error names no path.
        let refused = driver.deliver(&target(outside.path().to_str().unwrap()), soul()).await.unwrap_err();
        assert!(
            refused.starts_with("the agent's workspace is not allowed on this server: "),
            "{refused}"
        );
        assert!(!refused.contains(outside.path().to_str().unwrap()), "{refused}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1, "only the victim file");
        // An I/O failure is described without the path.
        std::fs::write(data.path().join(format!("workspaces/{ORG}/file")), "x").unwrap();
        let failed = driver.deliver(&target("file"), soul()).await.unwrap_err();
        assert_eq!(failed, "cannot create the agent's workspace: not a directory");
    }

    #[test]
    fn an_undefined_variable_is_a_failure_not_an_empty_string() {
        let error = render(&context(), Some("{{ agent.nickname }}"), None, false).unwrap_err();
        assert!(error.starts_with("SOUL.md: "), "{error}");
    }

    #[test]
    fn a_template_that_works_too_long_or_renders_too_much_fails() {
        let loops = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
        let error = render_with_fuel(&context(), Some(loops), None, false, 100_000).unwrap_err();
        assert!(error.starts_with("SOUL.md: ") && error.contains("fuel"), "{error}");
        let big = "{% for a in range(20) %}{{ 'x' * 1000000 }}{% endfor %}";
        let error = render(&context(), None, Some(big), false).unwrap_err();
        assert_eq!(error, "IDENTITY.md: renders to more than 8 MiB");
    }
}
