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

/// The most bytes of `config set` paths one change may flatten to. Every leaf's path
/// repeats the keys above it, so a body under the 1 MiB limit with a long key (or a deep
/// chain of keys) above many leaves would flatten to gigabytes, all kept in memory, stored
/// in the event and sent to the sandbox; real overrides flatten to about their own size.
pub const MAX_FLATTENED_BYTES: usize = 4 * 1024 * 1024;

/// How many bytes of paths `flatten` writes for `overrides`, counted without writing them
/// (one pass over the keys).
pub fn flattened_len(overrides: &Map<String, Value>) -> usize {
    fn walk(prefix: usize, map: &Map<String, Value>, total: &mut usize) {
        for (key, value) in map {
            let len = if is_identifier(key) {
                if prefix == 0 {
                    key.len()
                } else {
                    prefix + 1 + key.len()
                }
            } else {
                prefix + 2 + serde_json::to_string(key).map_or(key.len(), |quoted| quoted.len())
            };
            match value {
                Value::Object(inner) => walk(len, inner, total),
                _ => *total = total.saturating_add(len),
            }
        }
    }
    let mut total = 0;
    walk(0, overrides, &mut total);
    total
}

/// The largest merged config an instance may have, as JSON. Overrides add up: without a
/// bound, a few bodies under the size limit would grow a config every later read, worker
/// and snapshot of the instance carries to megabytes.
pub const MAX_CONFIG_BYTES: usize = 2 * 1024 * 1024;

/// Refuses an `after` larger than `MAX_CONFIG_BYTES` and than `before` (a config already
/// past the bound may still shrink).
fn check_config_size(before: &Value, after: &Value) -> Result<(), DomainError> {
    let size = crate::domain::validation::json_measure(after).0;
    if size > MAX_CONFIG_BYTES && size > crate::domain::validation::json_measure(before).0 {
        return Err(DomainError::invalid(format!(
            "openclaw_config is too large: the merged config would take more than {} MiB; unset keys first",
            MAX_CONFIG_BYTES / (1024 * 1024)
        )));
    }
    Ok(())
}

/// The paths of `overrides`, unless they would be more than `MAX_FLATTENED_BYTES`.
fn bounded_paths(overrides: &Map<String, Value>) -> Result<Vec<ConfigPath>, DomainError> {
    if flattened_len(overrides) > MAX_FLATTENED_BYTES {
        return Err(DomainError::invalid(format!(
            "openclaw_config is too large: its config paths would take more than {} MiB",
            MAX_FLATTENED_BYTES / (1024 * 1024)
        )));
    }
    Ok(flatten(overrides))
}

pub use fleetledger_projections::config_paths::{apply_paths, segments};

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
        apply_paths(&mut config, &bounded_paths(initial)?).map_err(DomainError::Invalid)?;
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
    let paths = overrides.as_ref().map(bounded_paths).transpose()?.unwrap_or_default();
    // The merged config is computed to check it; the event records only the paths, which
    // the read model applies the same way.
    let mut config = state.openclaw_config.clone();
    apply_paths(&mut config, &paths).map_err(DomainError::Invalid)?;
    check_config_size(&state.openclaw_config, &config)?;
    Ok(vec![InstanceEvent::Updated(InstanceUpdated {
        name,
        overrides: None,
        apply_live: state.status == status::RUNNING && !paths.is_empty(),
        paths,
        openclaw_config: None,
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
    use fleetledger_projections::ReadModel;
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

    /// `apply_paths` as it was written first, over `serde_json::Map` (whose removals shift
    /// every later key): the reference the faster one must agree with.
    fn reference_apply(config: &mut Value, paths: &[ConfigPath]) -> Result<(), String> {
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

    #[test]
    fn applying_paths_agrees_with_the_reference_on_random_sets_and_unsets() {
        // A small LCG: the same sequences on every run.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        for _ in 0..300 {
            let mut paths = Vec::new();
            for _ in 0..next(40) {
                let depth = 1 + next(3);
                let path: Vec<String> = (0..depth).map(|_| ["a", "b", "c", "d"][next(4) as usize].to_string()).collect();
                let value = match next(4) {
                    0 => None,
                    1 => Some(json!(next(10))),
                    2 => Some(json!({"x": next(3)})),
                    _ => Some(json!([next(5)])),
                };
                paths.push(ConfigPath {
                    path: path.join("."),
                    value,
                });
            }
            let start = match next(3) {
                0 => json!({"a": {"b": 1}, "c": [1], "d": {"a": {}}}),
                1 => json!(7),
                _ => json!({}),
            };
            let (mut ours, mut reference) = (start.clone(), start);
            apply_paths(&mut ours, &paths).unwrap();
            reference_apply(&mut reference, &paths).unwrap();
            assert_eq!(
                serde_json::to_string(&ours).unwrap(),
                serde_json::to_string(&reference).unwrap(),
                "{paths:?}"
            );
        }
    }

    #[test]
    fn unsetting_many_keys_keeps_the_rest_in_order_and_readded_keys_go_last() {
        let n = 20_000;
        let mut config = json!({});
        let set: Map<String, Value> = (0..n).map(|i| (format!("k{i}"), json!(i))).collect();
        apply_paths(&mut config, &flatten(&obj(json!({ "a": set })))).unwrap();
        // Unset every even key: the odd ones keep their order.
        let unset: Map<String, Value> = (0..n).step_by(2).map(|i| (format!("k{i}"), Value::Null)).collect();
        apply_paths(&mut config, &flatten(&obj(json!({ "a": unset })))).unwrap();
        let keys: Vec<String> = config["a"].as_object().unwrap().keys().cloned().collect();
        let odd: Vec<String> = (1..n).step_by(2).map(|i| format!("k{i}")).collect();
        assert!(keys == odd, "{} keys, first {:?}", keys.len(), keys.first());
        // A key set again after its unset goes last; one set in place keeps its place.
        apply_paths(&mut config, &flatten(&obj(json!({"a": {"k0": "back", "k1": "kept"}})))).unwrap();
        let a = config["a"].as_object().unwrap();
        assert_eq!(a.keys().next().map(String::as_str), Some("k1"));
        assert_eq!(a.keys().next_back().map(String::as_str), Some("k0"));
        assert_eq!((a.len(), &a["k0"], &a["k1"]), (n / 2 + 1, &json!("back"), &json!("kept")));
    }

    #[test]
    fn a_path_that_does_not_parse_stops_with_the_earlier_paths_applied() {
        let mut config = json!({});
        let paths = [
            ConfigPath {
                path: "a".into(),
                value: Some(json!(1)),
            },
            ConfigPath {
                path: "b[\"x".into(),
                value: Some(json!(2)),
            },
        ];
        assert!(apply_paths(&mut config, &paths).is_err());
        assert_eq!(config, json!({"a": 1}));
    }

    #[test]
    fn the_flattened_length_is_counted_exactly_and_bounded() {
        let overrides = obj(json!({"agent": {"x y": {"z": 1, "w\"": null}, "t": [1]}, "k": 2, "e": {}}));
        let written: usize = flatten(&overrides).iter().map(|p| p.path.len()).sum();
        assert_eq!(flattened_len(&overrides), written);
        // One long key above many leaves: every leaf's path repeats it.
        let leaves: Map<String, Value> = (0..1000).map(|i| (format!("k{i}"), json!(0))).collect();
        let mut bomb = Map::new();
        bomb.insert("x".repeat(8 * 1024), Value::Object(leaves));
        assert!(flattened_len(&bomb) > MAX_FLATTENED_BYTES);
        assert_eq!(
            update_instance(&new_instance(), None, Some(bomb), Utc::now()).unwrap_err(),
            DomainError::invalid("openclaw_config is too large: its config paths would take more than 4 MiB")
        );
    }

    fn new_instance() -> Instance {
        let created = create_instance(CreateInstance {
            instance_id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "i".into(),
            model_provider: "openai".into(),
            openclaw_version: "1".into(),
            openclaw_config: Some(obj(json!({"gateway": {"port": 1}}))),
            region: None,
            now: Utc::now(),
        })
        .unwrap();
        created.iter().fold(None, Instance::evolve).unwrap()
    }

    #[test]
    fn an_update_records_paths_and_the_read_model_applies_them() {
        let state = new_instance();
        let events = update_instance(
            &state,
            None,
            Some(obj(json!({"gateway": {"port": null, "bind": "lan"}}))),
            Utc::now(),
        )
        .unwrap();
        let InstanceEvent::Updated(update) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(update.openclaw_config, None, "the merged config is not recorded again");
        assert_eq!(update.overrides, None);
        let after = events.iter().fold(Some(state.clone()), Instance::evolve).unwrap();
        assert_eq!(after.openclaw_config, json!({"gateway": {"bind": "lan"}}));
        // A version 1 event carried the merged config: that is what it folds to.
        let old = InstanceEvent::Updated(InstanceUpdated {
            openclaw_config: Some(json!({"recorded": true})),
            ..update.clone()
        });
        assert_eq!(
            Instance::evolve(Some(state), &old).unwrap().openclaw_config,
            json!({"recorded": true})
        );
    }

    #[test]
    fn a_config_grows_only_to_its_bound_but_may_always_shrink() {
        let block = |n: usize, keys: usize| {
            let leaves: Map<String, Value> = (0..keys).map(|i| (format!("k{i}"), json!("x".repeat(100)))).collect();
            obj(json!({ format!("r{n}"): leaves }))
        };
        let mut state = new_instance();
        // Each block is about 0.9 MiB of JSON: two fit, a third does not.
        for n in 0..2 {
            let events = update_instance(&state, None, Some(block(n, 8_000)), Utc::now()).unwrap();
            state = events.iter().fold(Some(state), Instance::evolve).unwrap();
        }
        let refused = update_instance(&state, None, Some(block(2, 8_000)), Utc::now()).unwrap_err();
        assert!(refused.to_string().contains("more than 2 MiB"), "{refused}");
        // Past the bound (an older build let it grow), a change that shrinks it is taken.
        apply_paths(&mut state.openclaw_config, &flatten(&block(2, 8_000))).unwrap();
        assert!(crate::domain::validation::json_measure(&state.openclaw_config).0 > MAX_CONFIG_BYTES);
        assert!(update_instance(&state, None, Some(obj(json!({"r0": null}))), Utc::now()).is_ok());
        assert!(update_instance(&state, None, Some(obj(json!({"more": 1}))), Utc::now()).is_err());
    }

    #[test]
    fn a_key_added_after_unsets_in_one_change_goes_last() {
        let mut config = json!({"a": {"k0": 0, "k1": 1, "k2": 2}});
        apply_paths(&mut config, &flatten(&obj(json!({"a": {"k0": null, "k1": null, "new": 3}})))).unwrap();
        assert_eq!(serde_json::to_string(&config).unwrap(), r#"{"a":{"k2":2,"new":3}}"#);
    }
}
