//! A fake OpenClaw gateway: a WebSocket server speaking protocol 3's frames, recording
//! every request, keeping a config for `config.get`/`config.patch`, and failing the
//! methods or files it is told to. Like OpenClaw, it runs a `chat.send` once per
//! `idempotencyKey`: the same key again is answered from the first run.

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
pub struct Behaviour {
    /// `method → error message` answered with `ok: false`.
    pub fail: Vec<(String, String)>,
    /// Files answered as unsupported.
    pub unsupported: Vec<String>,
    /// How long `connect` takes to answer: a side effect still in progress.
    pub connect_delay: Option<std::time::Duration>,
    /// `method → n`: the first n calls of the method fail (a gateway down for a while).
    pub fail_first: Vec<(String, usize)>,
    /// A method that takes effect but is never answered (a delivery cut short).
    pub hold: Option<String>,
}

#[derive(Clone)]
pub struct FakeGateway {
    pub url: String,
    /// `(method, params)` of every request, in order, across connections.
    pub calls: Arc<Mutex<Vec<(String, Value)>>>,
    config: Arc<Mutex<Value>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Calls so far per method, for `fail_first`.
    seen: Arc<Mutex<std::collections::HashMap<String, usize>>>,
    /// The `idempotencyKey` of every `chat.send` that ran, in order.
    runs: Arc<Mutex<Vec<String>>>,
}

impl FakeGateway {
    pub async fn start(behaviour: Behaviour) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = FakeGateway {
            url: format!("ws://{}/", listener.local_addr().unwrap()),
            calls: Default::default(),
            config: Arc::new(Mutex::new(json!({"agents": {"list": []}}))),
            behaviour: Arc::new(Mutex::new(behaviour)),
            seen: Default::default(),
            runs: Default::default(),
        };
        let serving = gateway.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let gateway = serving.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                        gateway.serve(ws).await;
                    }
                });
            }
        });
        gateway
    }

    pub fn methods(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(m, _)| m.clone()).collect()
    }

    pub fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// The wake messages that ran (one per idempotency key), by key.
    pub fn runs(&self) -> Vec<String> {
        self.runs.lock().unwrap().clone()
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    async fn serve(&self, mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
        let challenge = json!({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n-1"}});
        if ws.send(Message::text(challenge.to_string())).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(text) = message else { continue };
            let frame: Value = serde_json::from_str(text.as_str()).unwrap();
            let method = frame["method"].as_str().unwrap_or_default().to_string();
            let params = frame["params"].clone();
            self.calls.lock().unwrap().push((method.clone(), params.clone()));
            let delay = self.behaviour.lock().unwrap().connect_delay.filter(|_| method == "connect");
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let answer = match self.answer(&method, &params) {
                Ok(payload) => json!({"type": "res", "id": frame["id"], "ok": true, "payload": payload}),
                Err(message) => json!({"type": "res", "id": frame["id"], "ok": false, "error": {"message": message}}),
            };
            if self.behaviour.lock().unwrap().hold.as_deref() == Some(method.as_str()) {
                continue;
            }
            // An unrelated event first: clients must skip it.
            let tick = json!({"type": "event", "event": "tick", "payload": {}});
            if ws.send(Message::text(tick.to_string())).await.is_err() || ws.send(Message::text(answer.to_string())).await.is_err() {
                return;
            }
        }
    }

    fn answer(&self, method: &str, params: &Value) -> Result<Value, String> {
        let behaviour = self.behaviour.lock().unwrap();
        if let Some((_, message)) = behaviour.fail.iter().find(|(m, _)| m == method) {
            return Err(message.clone());
        }
        let calls = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(method.to_string()).or_default();
            *n += 1;
            *n
        };
        if behaviour.fail_first.iter().any(|(m, n)| m == method && calls <= *n) {
            return Err("gateway temporarily unavailable".into());
        }
        match method {
            "connect" => Ok(json!({"protocol": 3})),
            "agents.create" | "agents.update" => Ok(json!({"ok": true, "agentId": params["agentId"]})),
            "config.get" => Ok(json!({"config": self.config.lock().unwrap().clone(), "hash": "h"})),
            "config.patch" => {
                let patch: Value = serde_json::from_str(params["raw"].as_str().unwrap_or("{}")).map_err(|e| e.to_string())?;
                self.config.lock().unwrap()["agents"]["list"] = patch["agents"]["list"].clone();
                Ok(json!({"ok": true}))
            }
            "agents.files.set" if behaviour.unsupported.iter().any(|f| params["name"] == f.as_str()) => {
                Err(format!("unsupported file \"{}\"", params["name"].as_str().unwrap_or_default()))
            }
            "chat.send" => {
                let key = params["idempotencyKey"].as_str().unwrap_or_default().to_string();
                let mut runs = self.runs.lock().unwrap();
                if runs.contains(&key) {
                    return Ok(json!({"runId": key, "status": "ok"}));
                }
                runs.push(key.clone());
                Ok(json!({"runId": key, "status": "started"}))
            }
            _ => Ok(json!({"ok": true})),
        }
    }
}
