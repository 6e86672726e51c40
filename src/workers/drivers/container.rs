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
            .map_err(|e| format!("cannot create the agent's container directory: {}", crate::boundary::io_reason(&e)))?;
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

/// Runs agents as Docker containers through the Engine API (`DOCKER_HOST`, else the
/// default socket), with the agent's limits; the resolved config goes in as
/// `AGENT_CONFIG`.
pub struct DockerContainerDriver {
    docker: bollard::Docker,
}

impl DockerContainerDriver {
    pub fn connect() -> Result<Self, String> {
        bollard::Docker::connect_with_defaults()
            .map(|docker| DockerContainerDriver { docker })
            .map_err(|e| format!("cannot reach the Docker Engine: {e}"))
    }

    /// An Engine API over plain HTTP (a remote daemon, or a test's fake).
    pub fn with_http(url: &str) -> Result<Self, String> {
        bollard::Docker::connect_with_http(url, 30, bollard::API_DEFAULT_VERSION)
            .map(|docker| DockerContainerDriver { docker })
            .map_err(|e| format!("cannot reach the Docker Engine at {url}: {e}"))
    }
}

/// A Docker Engine failure as callers see it: the engine's own message, but never the
/// socket path this server reaches it by.
fn docker_reason(error: &bollard::errors::Error) -> String {
    use bollard::errors::Error;
    match error {
        Error::SocketNotFoundError(_) => "the Docker Engine's socket was not found".into(),
        Error::IOError { err } => crate::boundary::io_reason(err),
        other => other.to_string(),
    }
}

/// A CPU limit in billionths of a CPU.
fn nano_cpus(cpus: &str) -> Option<i64> {
    cpus.trim().parse::<f64>().ok().map(|c| (c * 1e9).round() as i64)
}

#[async_trait]
impl ContainerDriver for DockerContainerDriver {
    async fn run(&self, spec: &ContainerSpec) -> Result<String, String> {
        use bollard::models::{ContainerCreateBody, HostConfig};
        use bollard::query_parameters::CreateContainerOptions;
        let memory = crate::domain::container::mem_limit_bytes(&spec.mem_limit).ok().map(|b| b as i64);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(vec![format!("AGENT_CONFIG={}", spec.config)]),
            labels: Some([("fleetledger.agent".to_string(), spec.agent.clone())].into_iter().collect()),
            host_config: Some(HostConfig {
                nano_cpus: nano_cpus(&spec.cpus),
                memory,
                pids_limit: Some(spec.pids_limit),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("fleetledger-agent-{}", spec.agent)),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| format!("cannot create the container: {}", docker_reason(&e)))?;
        self.docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| format!("cannot start container {}: {}", created.id, docker_reason(&e)))?;
        Ok(created.id)
    }

    async fn remove(&self, _agent: &str, container_id: &str) -> Result<(), String> {
        use bollard::query_parameters::RemoveContainerOptions;
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(container_id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(format!("cannot remove container {container_id}: {}", docker_reason(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    use serde_json::Value;

    use super::*;

    type Calls = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A fake Engine API: records `(method, path?query, body)` and answers like dockerd.
    async fn engine(calls: State<Calls>, request: Request) -> axum::response::Response {
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        calls.lock().unwrap().push((method.clone(), uri.clone(), body));
        if uri.contains("/containers/create") {
            (StatusCode::CREATED, axum::Json(json!({"Id": "c0ffee", "Warnings": []}))).into_response()
        } else if uri.contains("/containers/gone") {
            (StatusCode::NOT_FOUND, axum::Json(json!({"message": "No such container: gone"}))).into_response()
        } else if uri.contains("/containers/broken") {
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"message": "driver failed"}))).into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }
    }

    async fn fake_engine() -> (String, Calls) {
        let calls: Calls = Default::default();
        let app = axum::Router::new().fallback(engine).with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, calls)
    }

    #[test]
    fn docker_failures_never_name_the_socket() {
        let socket = bollard::errors::Error::SocketNotFoundError("/run/user/1000/docker.sock".into());
        assert_eq!(docker_reason(&socket), "the Docker Engine's socket was not found");
        let io = bollard::errors::Error::IOError {
            err: std::io::Error::from_raw_os_error(13),
        };
        assert_eq!(docker_reason(&io), "permission denied");
        let engine = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "driver failed".into(),
        };
        assert!(docker_reason(&engine).contains("driver failed"));
    }

    #[tokio::test]
    async fn the_docker_driver_creates_starts_and_removes_with_the_agent_limits() {
        let (url, calls) = fake_engine().await;
        let driver = DockerContainerDriver::with_http(&url).unwrap();
        let spec = ContainerSpec {
            agent: "a1".into(),
            image: "agentbox:1".into(),
            cpus: "1.5".into(),
            mem_limit: "512m".into(),
            pids_limit: 100,
            config: json!({"soul_md": "hi"}),
        };
        assert_eq!(driver.run(&spec).await.unwrap(), "c0ffee");
        driver.remove("a1", "c0ffee").await.unwrap();
        driver.remove("a1", "gone").await.expect("an already removed container is fine");
        let error = driver.remove("a1", "broken").await.unwrap_err();
        assert!(error.contains("driver failed"), "{error}");

        let calls = calls.lock().unwrap().clone();
        let (method, uri, body) = &calls[0];
        assert_eq!(method, "POST");
        assert!(uri.contains("/containers/create?name=fleetledger-agent-a1"), "{uri}");
        assert_eq!(body["Image"], "agentbox:1");
        assert_eq!(body["HostConfig"]["NanoCpus"], 1_500_000_000i64);
        assert_eq!(body["HostConfig"]["Memory"], 512 * 1024 * 1024);
        assert_eq!(body["HostConfig"]["PidsLimit"], 100);
        assert_eq!(body["Env"][0], r#"AGENT_CONFIG={"soul_md":"hi"}"#);
        assert!(
            calls[1].0 == "POST" && calls[1].1.contains("/containers/c0ffee/start"),
            "{:?}",
            calls[1]
        );
        assert!(
            calls[2].0 == "DELETE" && calls[2].1.contains("/containers/c0ffee?") && calls[2].1.contains("force=true"),
            "{:?}",
            calls[2]
        );
    }
}
