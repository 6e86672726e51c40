//! The OpenClaw gateway driver: JSON frames over a WebSocket, protocol 3.
//!
//! The gateway opens with a `connect.challenge` event; the client answers `connect`, then
//! sends requests `{type:"req", id, method, params}` and reads responses
//! `{type:"res", id, ok, payload | error:{message}}` (events in between are ignored).
//! Provisioning an agent is `agents.create` (or `agents.update`), the agent's `heartbeat`
//! in the config's `agents.list` (`config.get` + `config.patch`, skipped when unchanged),
//! `agents.files.set` per file, `sessions.reset`, and a `chat.send` wake message whose
//! `idempotencyKey` is the delivery's id: the gateway runs a message once per key, so a
//! delivery made again (after a crash before its outcome was recorded) wakes the agent
//! once. The other steps set what they set, and repeat harmlessly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use super::workspace::{Delivered, WorkspaceDriver, WorkspaceFile, WorkspaceTarget};
use crate::boundary::{Boundary, HostError};

pub const PROTOCOL_VERSION: u64 = 3;
const SCOPES: [&str; 4] = ["operator.read", "operator.admin", "operator.approvals", "operator.pairing"];
/// How long any one frame may take.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
const WAKE_MESSAGE: &str = "Your workspace was updated by Mission Control. Re-read AGENTS.md, SOUL.md and IDENTITY.md.";

/// One RPC connection to a gateway.
pub struct GatewayRpc {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// The gateway URL with the token as its `token` query parameter.
fn url_with_token(url: &str, token: Option<&str>) -> Result<String, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("invalid gateway URL: {e}"))?;
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        parsed.query_pairs_mut().append_pair("token", token);
    }
    Ok(parsed.to_string())
}

/// Removes the token from a message that may quote it or the URL (where it is
/// form-encoded), before the message becomes an outcome event, a log line or a 502 body.
fn redact(message: &str, token: Option<&str>) -> String {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return message.to_string();
    };
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    message.replace(token, "<redacted>").replace(&encoded, "<redacted>")
}

impl GatewayRpc {
    /// Connects, through the boundary (which checks the destination and its resolved
    /// addresses now), and completes the `connect.challenge` → `connect` handshake.
    pub async fn connect(boundary: &Boundary, url: &str, token: Option<&str>) -> Result<GatewayRpc, String> {
        let full = url_with_token(url, token)?;
        let stream = tokio::time::timeout(FRAME_TIMEOUT, boundary.connect(url))
            .await
            .map_err(|_| "gateway did not answer in time".to_string())?
            .map_err(|e| match e {
                HostError::Refused(why) => format!("the gateway is not allowed on this server: {why}"),
                HostError::Io(e) => format!("cannot reach gateway: {}", crate::boundary::io_reason(&e)),
            })?;
        let (ws, _) = tokio::time::timeout(FRAME_TIMEOUT, tokio_tungstenite::client_async_tls(full.as_str(), stream))
            .await
            .map_err(|_| "gateway did not answer in time".to_string())?
            .map_err(|e| redact(&format!("cannot reach gateway: {e}"), token))?;
        let mut rpc = GatewayRpc { ws };
        // The challenge's nonce, when the gateway sends one first.
        let nonce = match tokio::time::timeout(Duration::from_secs(2), rpc.next_frame()).await {
            Ok(Ok(frame)) if frame["type"] == "event" && frame["event"] == "connect.challenge" => {
                frame["payload"]["nonce"].as_str().map(str::to_string)
            }
            Ok(Err(e)) => return Err(e),
            _ => None,
        };
        let mut params = json!({
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "role": "operator",
            "scopes": SCOPES,
            "client": {"id": "gateway-client", "version": env!("CARGO_PKG_VERSION"), "platform": std::env::consts::OS, "mode": "backend"},
        });
        if let Some(token) = token.filter(|t| !t.is_empty()) {
            params["auth"] = json!({ "token": token });
        }
        if let Some(nonce) = nonce {
            params["nonce"] = nonce.into();
        }
        rpc.call("connect", params).await?;
        Ok(rpc)
    }

    async fn next_frame(&mut self) -> Result<Value, String> {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| "gateway did not answer in time".to_string())?
                .ok_or_else(|| "gateway closed the connection".to_string())?
                .map_err(|e| format!("gateway connection failed: {e}"))?;
            match message {
                Message::Text(text) => return serde_json::from_str(text.as_str()).map_err(|e| format!("gateway sent invalid JSON: {e}")),
                Message::Binary(bytes) => return serde_json::from_slice(&bytes).map_err(|e| format!("gateway sent invalid JSON: {e}")),
                Message::Close(_) => return Err("gateway closed the connection".into()),
                _ => continue,
            }
        }
    }

    /// Sends a request and waits for its response's payload; `ok: false` is an error with
    /// the gateway's message.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = Uuid::new_v4().to_string();
        let frame = json!({ "type": "req", "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .map_err(|e| format!("gateway connection failed: {e}"))?;
        loop {
            let frame = self.next_frame().await?;
            if frame["id"] != id.as_str() {
                continue;
            }
            if frame["ok"] == false || frame.get("error").is_some_and(|e| !e.is_null()) {
                let message = frame["error"]["message"].as_str().unwrap_or("Gateway error");
                return Err(message.to_string());
            }
            return Ok(frame.get("payload").or_else(|| frame.get("result")).cloned().unwrap_or(Value::Null));
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Whether a gateway error says it does not take a file (not a failure of provisioning).
fn is_unsupported_file(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unsupported") || m.contains("not supported")
}

/// Sets the agent's `heartbeat` in the config's `agents.list`, unless it already is.
async fn sync_heartbeat(rpc: &mut GatewayRpc, target: &WorkspaceTarget) -> Result<(), String> {
    let current = rpc.call("config.get", json!({})).await?;
    let config = current.get("config").cloned().unwrap_or_else(|| current.clone());
    let mut list: Vec<Value> = config["agents"]["list"].as_array().cloned().unwrap_or_default();
    let entry = list.iter_mut().find(|a| a["id"] == target.gateway_agent_id.as_str());
    match entry {
        Some(agent) if agent.get("heartbeat") == Some(&target.heartbeat) => return Ok(()),
        Some(agent) => agent["heartbeat"] = target.heartbeat.clone(),
        None => list.push(json!({ "id": target.gateway_agent_id, "heartbeat": target.heartbeat })),
    }
    let mut params = json!({ "raw": json!({ "agents": { "list": list } }).to_string() });
    if let Some(hash) = current.get("hash").filter(|h| !h.is_null()) {
        params["baseHash"] = hash.clone();
    }
    rpc.call("config.patch", params).await.map(|_| ())
}

pub struct OpenClawDriver {
    /// `agents.create` for a new agent, `agents.update` for an existing one.
    pub creating: bool,
    /// Checks the gateway's address at the moment of each connection.
    pub boundary: Arc<Boundary>,
}

#[async_trait]
impl WorkspaceDriver for OpenClawDriver {
    async fn deliver(&self, target: &WorkspaceTarget, files: Vec<WorkspaceFile>) -> Result<Delivered, String> {
        let token = target.token.as_ref().map(|t| t.expose_secret());
        let fail = |e: String| redact(&e, token);
        let mut rpc = GatewayRpc::connect(&self.boundary, &target.gateway_url, token)
            .await
            .map_err(fail)?;
        let agent = json!({ "agentId": target.gateway_agent_id, "name": target.agent_name, "workspace": target.workspace_path });
        if self.creating {
            match rpc.call("agents.create", agent.clone()).await {
                Ok(_) => {}
                // Created before (a retried provisioning): update it instead.
                Err(e) if e.to_ascii_lowercase().contains("exist") => rpc.call("agents.update", agent).await.map(|_| ()).map_err(fail)?,
                Err(e) => return Err(fail(e)),
            }
        } else {
            rpc.call("agents.update", agent).await.map_err(fail)?;
        }
        sync_heartbeat(&mut rpc, target).await.map_err(fail)?;
        let mut delivered = Delivered::default();
        for file in files {
            let params = json!({ "agentId": target.gateway_agent_id, "name": file.name, "content": file.content });
            match rpc.call("agents.files.set", params).await {
                Ok(_) => delivered.written.push(file),
                Err(e) if is_unsupported_file(&e) => delivered.unsupported.push(file.name),
                Err(e) => return Err(fail(e)),
            }
        }
        rpc.call("sessions.reset", json!({ "key": target.session_key }))
            .await
            .map_err(fail)?;
        rpc.call(
            "chat.send",
            json!({ "sessionKey": target.session_key, "message": WAKE_MESSAGE, "idempotencyKey": target.delivery }),
        )
        .await
        .map_err(fail)?;
        rpc.close().await;
        Ok(delivered)
    }

    async fn sync_heartbeat(&self, target: &WorkspaceTarget) -> Result<bool, String> {
        let token = target.token.as_ref().map(|t| t.expose_secret());
        let mut rpc = GatewayRpc::connect(&self.boundary, &target.gateway_url, token)
            .await
            .map_err(|e| redact(&e, token))?;
        sync_heartbeat(&mut rpc, target).await.map_err(|e| redact(&e, token))?;
        rpc.close().await;
        Ok(true)
    }

    async fn remove(&self, target: &WorkspaceTarget) -> Result<bool, String> {
        let token = target.token.as_ref().map(|t| t.expose_secret());
        let mut rpc = GatewayRpc::connect(&self.boundary, &target.gateway_url, token)
            .await
            .map_err(|e| redact(&e, token))?;
        rpc.call("agents.delete", json!({ "agentId": target.gateway_agent_id }))
            .await
            .map_err(|e| redact(&e, token))?;
        rpc.close().await;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_in_the_query_and_never_into_messages() {
        assert_eq!(
            url_with_token("ws://gw:18789/", Some("s3cret")).unwrap(),
            "ws://gw:18789/?token=s3cret"
        );
        assert_eq!(url_with_token("ws://gw:18789", None).unwrap(), "ws://gw:18789/");
        assert_eq!(
            redact("cannot reach ws://gw/?token=s3cret", Some("s3cret")),
            "cannot reach ws://gw/?token=<redacted>"
        );
        assert_eq!(
            redact("cannot reach ws://gw/?token=a+b%2Fc and a b/c", Some("a b/c")),
            "cannot reach ws://gw/?token=<redacted> and <redacted>"
        );
        assert!(is_unsupported_file("Unsupported file: USER.md"));
    }
}
