//! OpenClaw instances: config overrides as `openclaw config set` paths, their merge into
//! the stored config, and the lifecycle transitions.
//!
//! The stored config is changed by applying exactly the paths the sandbox gets, so the
//! stored config and a sandbox that applied every change in order are always equal.

use chrono::{DateTime, Utc};
use fleetledger_events::instance::{ConfigPath, InstanceAt, InstanceCreated, InstanceEvent, InstanceUpdated};
use fleetledger_projections::instance::{self as status, Instance};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::DomainError;

pub const MODEL_PROVIDERS: [&str; 3] = ["anthropic", "openai", "gemini"];

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `prefix` extended by `key`: `.key` for identifiers, `["key"]` otherwise.
fn join(prefix: &str, key: &str) -> String {
    if is_identifier(key) {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    } else {
        format!("{prefix}[{}]", Value::String(key.to_string()))
    }
}

/// The `config set`/`unset` paths of an override object: nested objects become dot paths,
/// arrays and scalars are set whole, `null` unsets. An empty object changes nothing.
pub fn flatten(overrides: &Map<String, Value>) -> Vec<ConfigPath> {
    fn walk(prefix: &str, map: &Map<String, Value>, out: &mut Vec<ConfigPath>) {
        for (key, value) in map {
            let path = join(prefix, key);
            match value {
                Value::Object(inner) => walk(&path, inner, out),
                Value::Null => out.push(ConfigPath { path, value: None }),
                other => out.push(ConfigPath {
                    path,
                    value: Some(other.clone()),
                }),
            }
        }
    }
    let mut out = Vec::new();
    walk("", overrides, &mut out);
    out
}

/// The keys of a path as `flatten` writes them.
pub fn segments(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(bracketed) = rest.strip_prefix('[') {
            let mut stream = serde_json::Deserializer::from_str(bracketed).into_iter::<String>();
            let key = stream.next().ok_or("empty bracket")?.map_err(|e| e.to_string())?;
            let after = &bracketed[stream.byte_offset()..];
            rest = after.strip_prefix(']').ok_or_else(|| format!("unclosed bracket in {path}"))?;
            out.push(key);
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            if end == 0 {
                return Err(format!("empty key in {path}"));
            }
            out.push(rest_trimmed[..end].to_string());
            rest = &rest_trimmed[end..];
        }
    }
    Ok(out)
}

/// Applies `config set`/`unset` paths to a config, as the CLI does: missing parents are
/// created as objects (replacing a non-object in the way), other keys are untouched.
pub fn apply_paths(config: &mut Value, paths: &[ConfigPath]) -> Result<(), String> {
    for p in paths {
        let keys = segments(&p.path)?;
        let Some((last, parents)) = keys.split_last() else { continue };
        let mut node = &mut *config;
        for key in parents {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let map = node.as_object_mut().expect("made an object");
            node = map.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !node.is_object() && p.value.is_some() {
                *node = Value::Object(Map::new());
            }
        }
        match (&p.value, node.as_object_mut()) {
            (Some(value), Some(map)) => {
                map.insert(last.clone(), value.clone());
            }
            (Some(value), None) => {
                let mut map = Map::new();
                map.insert(last.clone(), value.clone());
                *node = Value::Object(map);
            }
            (None, Some(map)) => {
                map.shift_remove(last);
            }
            (None, None) => {}
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct CreateInstance {
    pub instance_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub model_provider: String,
    pub openclaw_version: String,
    pub openclaw_config: Option<Map<String, Value>>,
    pub region: Option<String>,
    pub now: DateTime<Utc>,
}

pub fn create_instance(cmd: CreateInstance) -> Result<Vec<InstanceEvent>, DomainError> {
    if !MODEL_PROVIDERS.contains(&cmd.model_provider.as_str()) {
        return Err(DomainError::invalid("model_provider must be anthropic, openai or gemini"));
    }
    let mut config = Value::Object(Map::new());
    if let Some(initial) = &cmd.openclaw_config {
        apply_paths(&mut config, &flatten(initial)).map_err(DomainError::Invalid)?;
    }
    Ok(vec![InstanceEvent::Created(InstanceCreated {
        instance_id: cmd.instance_id,
        org_id: cmd.org_id,
        name: cmd.name,
        model_provider: cmd.model_provider,
        openclaw_version: cmd.openclaw_version,
        openclaw_config: config,
        region: cmd.region,
        created_at: cmd.now,
    })])
}

/// A PATCH: a new name and/or overrides. Nothing to change records nothing.
pub fn update_instance(
    state: &Instance,
    name: Option<String>,
    overrides: Option<Map<String, Value>>,
    now: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    if state.status == status::TERMINATED {
        return Err(DomainError::NotFound);
    }
    if name.is_none() && overrides.is_none() {
        return Ok(vec![]);
    }
    let paths = overrides.as_ref().map(flatten).unwrap_or_default();
    let mut config = state.openclaw_config.clone();
    apply_paths(&mut config, &paths).map_err(DomainError::Invalid)?;
    Ok(vec![InstanceEvent::Updated(InstanceUpdated {
        name,
        overrides: overrides.map(Value::Object),
        apply_live: state.status == status::RUNNING && !paths.is_empty(),
        paths,
        openclaw_config: config,
        updated_at: now,
    })])
}

pub fn stop(state: &Instance, now: DateTime<Utc>) -> Result<Vec<InstanceEvent>, DomainError> {
    match state.status.as_str() {
        status::RUNNING => Ok(vec![InstanceEvent::Stopped(InstanceAt { at: now })]),
        status::TERMINATED => Err(DomainError::NotFound),
        other => Err(DomainError::Conflict(format!("Cannot stop an instance that is {other}."))),
    }
}

pub fn start(state: &Instance, now: DateTime<Utc>) -> Result<Vec<InstanceEvent>, DomainError> {
    match state.status.as_str() {
        status::STOPPED | status::ERROR => Ok(vec![InstanceEvent::StartRequested(InstanceAt { at: now })]),
        status::TERMINATED => Err(DomainError::NotFound),
        other => Err(DomainError::Conflict(format!("Cannot start an instance that is {other}."))),
    }
}

pub fn terminate(state: &Instance, now: DateTime<Utc>) -> Result<Vec<InstanceEvent>, DomainError> {
    if state.status == status::TERMINATED {
        return Err(DomainError::NotFound);
    }
    Ok(vec![InstanceEvent::Terminated(InstanceAt { at: now })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn overrides_flatten_to_cli_paths() {
        let paths = flatten(&obj(json!({
            "agent": {"system_prompt": "x", "tools": ["a", "b"]},
            "models": {"gpt-4.1": {"temperature": 0.2}},
            "gateway": {"port": null},
            "empty": {},
        })));
        let got: Vec<(String, Option<Value>)> = paths.into_iter().map(|p| (p.path, p.value)).collect();
        assert_eq!(
            got,
            vec![
                ("agent.system_prompt".into(), Some(json!("x"))),
                ("agent.tools".into(), Some(json!(["a", "b"]))),
                ("models[\"gpt-4.1\"].temperature".into(), Some(json!(0.2))),
                ("gateway.port".into(), None),
            ]
        );
        assert_eq!(
            segments("models[\"gpt-4.1\"].temperature").unwrap(),
            vec!["models", "gpt-4.1", "temperature"]
        );
        assert_eq!(segments("[\"a.b\"][\"c\"]").unwrap(), vec!["a.b", "c"]);
    }

    #[test]
    fn applying_paths_is_a_deep_merge_where_null_removes() {
        let mut config = json!({"agent": {"system_prompt": "old", "name": "n"}, "gateway": {"port": 1, "bind": "lan"}, "list": [1]});
        let overrides =
            obj(json!({"agent": {"system_prompt": "new"}, "gateway": {"port": null}, "list": [2, 3], "fresh": {"a": {"b": true}}}));
        apply_paths(&mut config, &flatten(&overrides)).unwrap();
        assert_eq!(
            config,
            json!({"agent": {"system_prompt": "new", "name": "n"}, "gateway": {"bind": "lan"}, "list": [2, 3], "fresh": {"a": {"b": true}}})
        );
        // Keys keep their place; new ones go last, as the CLI writes them.
        let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["agent", "gateway", "list", "fresh"]);
    }
}
