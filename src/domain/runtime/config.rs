//! The durable runtime config (schema `v2`): validation that reports every problem at
//! once, pydantic-style (`loc`, `msg`, `type`), and normalization to the stored form.
//!
//! The stored form is a full replacement: every omitted field with a default takes it,
//! optional sections appear only when given, ports are sorted and deduplicated, egress
//! targets and secret ids are normalized. Equal configs therefore have equal digests.

use std::collections::HashSet;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::egress;
pub use crate::domain::validation::{at, integer, literal, model, string, FieldError, Problems};
use crate::domain::validation::{boolean, list, required, string_map};

pub const PROVIDERS: [&str; 3] = ["auto", "docker", "e2b"];
pub const MIN_TIMEOUT_SECONDS: i64 = 60;

/// What the server allows beyond the schema.
#[derive(Clone, Debug)]
pub struct ConfigLimits {
    /// The longest sandbox timeout an org may configure.
    pub max_timeout_seconds: i64,
    /// The sandbox provider this server runs; `auto` always maps to it.
    pub provider: String,
}

fn build(p: &mut Problems, loc: &[Value], value: Option<&Value>, limits: &ConfigLimits) -> Value {
    let fields = model(p, loc, value.unwrap_or(&Value::Null), &["profile", "provider", "source"]).unwrap_or_default();
    let profile = string(p, &at(loc, "profile"), fields.get("profile"), false, 1).unwrap_or_else(|| "default".into());
    let provider = literal(p, &at(loc, "provider"), fields.get("provider"), &PROVIDERS).unwrap_or_else(|| "auto".into());
    if provider != "auto" && provider != limits.provider {
        p.value_error(
            &at(loc, "provider"),
            format!(
                "sandbox provider '{provider}' is not available on this server (use 'auto' or '{}')",
                limits.provider
            ),
        );
    }
    let source_loc = at(loc, "source");
    let source = model(p, &source_loc, fields.get("source").unwrap_or(&Value::Null), &["kind", "ref"]).unwrap_or_default();
    let kind = literal(p, &at(&source_loc, "kind"), source.get("kind"), &["builtin"]).unwrap_or_else(|| "builtin".into());
    let reference = string(p, &at(&source_loc, "ref"), source.get("ref"), false, 1).unwrap_or_else(|| "runtime".into());
    json!({ "profile": profile, "provider": provider, "source": { "kind": kind, "ref": reference } })
}

fn capabilities(p: &mut Problems, loc: &[Value], value: Option<&Value>) -> Value {
    let mut out = Vec::new();
    // A set, so that a long list is checked for repeats in one pass.
    let mut seen: HashSet<String> = HashSet::new();
    for (i, item) in list(p, loc, value).unwrap_or_default().iter().enumerate() {
        let item_loc = at(loc, i);
        let Some(fields) = model(p, &item_loc, item, &["name", "version", "enabled"]) else {
            continue;
        };
        let name = required(p, &at(&item_loc, "name"), fields.get("name").filter(|v| !v.is_null()));
        let name = string(p, &at(&item_loc, "name"), name, false, 1);
        if let Some(name) = &name {
            if !seen.insert(name.clone()) {
                p.value_error(&at(&item_loc, "name"), format!("capability '{name}' is listed more than once"));
            }
        }
        let version = string(p, &at(&item_loc, "version"), fields.get("version"), true, 1);
        let enabled = boolean(p, &at(&item_loc, "enabled"), fields.get("enabled")).unwrap_or(true);
        let mut c = Map::new();
        c.insert("enabled".into(), enabled.into());
        c.insert("name".into(), name.unwrap_or_default().into());
        if let Some(version) = version {
            c.insert("version".into(), version.into());
        }
        out.push(Value::Object(c));
    }
    Value::Array(out)
}

fn defaults(p: &mut Problems, loc: &[Value], value: &Value) -> Option<Value> {
    let fields = model(p, loc, value, &["agent", "capability", "model", "system_prompt"])?;
    let mut out = Map::new();
    for (name, min_len) in [("agent", 1), ("capability", 1), ("model", 1), ("system_prompt", 0)] {
        if let Some(s) = string(p, &at(loc, name), fields.get(name), true, min_len) {
            out.insert(name.into(), s.into());
        }
    }
    Some(Value::Object(out))
}

fn resources(p: &mut Problems, loc: &[Value], value: Option<&Value>) -> Value {
    let fields = model(p, loc, value.unwrap_or(&Value::Null), &["cpu_cores", "memory_mb"]).unwrap_or_default();
    let cpu = integer(p, &at(loc, "cpu_cores"), fields.get("cpu_cores"), Some(1), Some(32)).unwrap_or(2);
    let memory = integer(p, &at(loc, "memory_mb"), fields.get("memory_mb"), Some(512), Some(131_072)).unwrap_or(2048);
    json!({ "cpu_cores": cpu, "memory_mb": memory })
}

fn sandbox(p: &mut Problems, loc: &[Value], value: Option<&Value>, limits: &ConfigLimits) -> Value {
    let known = ["timeout_seconds", "exposed_ports", "workspace_mount", "egress"];
    let fields = model(p, loc, value.unwrap_or(&Value::Null), &known).unwrap_or_default();
    let mut out = Map::new();
    if let Some(egress) = fields.get("egress").filter(|v| !v.is_null()) {
        let egress_loc = at(loc, "egress");
        if let Some(e) = model(p, &egress_loc, egress, &["allow"]) {
            let allow_loc = at(&egress_loc, "allow");
            // Targets in first-seen order without repeats; the set finds a repeat in one
            // lookup instead of a scan of everything kept so far.
            let mut allow: Vec<String> = Vec::new();
            let mut kept: HashSet<String> = HashSet::new();
            for (i, target) in list(p, &allow_loc, e.get("allow")).unwrap_or_default().iter().enumerate() {
                let Some(raw) = string(p, &at(&allow_loc, i), Some(target), false, 0) else {
                    continue;
                };
                match egress::normalize_target(&raw) {
                    Ok(t) => {
                        if kept.insert(t.clone()) {
                            allow.push(t);
                        }
                    }
                    Err(why) => p.value_error(&at(&allow_loc, i), why),
                }
            }
            out.insert("egress".into(), json!({ "allow": allow }));
        }
    }
    if let Some(items) = list(p, &at(loc, "exposed_ports"), fields.get("exposed_ports")) {
        let mut ports: Vec<i64> = items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| integer(p, &at(&at(loc, "exposed_ports"), i), Some(v), Some(1), Some(65_535)))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        out.insert("exposed_ports".into(), json!(ports));
    }
    let timeout_loc = at(loc, "timeout_seconds");
    let timeout = match fields.get("timeout_seconds") {
        Some(Value::Null) | None => None,
        v => integer(p, &timeout_loc, v, Some(MIN_TIMEOUT_SECONDS), Some(limits.max_timeout_seconds)),
    };
    if let Some(t) = timeout {
        out.insert("timeout_seconds".into(), t.into());
    }
    // Accepted for compatibility; the workspace is always mounted.
    boolean(
        p,
        &at(loc, "workspace_mount"),
        fields.get("workspace_mount").filter(|v| !v.is_null()),
    );
    out.insert("workspace_mount".into(), true.into());
    Value::Object(out)
}

fn secrets(p: &mut Problems, loc: &[Value], value: &Value) -> Option<Value> {
    let fields = model(p, loc, value, &["secret_ids"])?;
    let ids_loc = at(loc, "secret_ids");
    let mut ids: Vec<String> = Vec::new();
    for (i, v) in list(p, &ids_loc, fields.get("secret_ids")).unwrap_or_default().iter().enumerate() {
        match v {
            Value::String(s) => match Uuid::parse_str(s.trim()) {
                Ok(id) => ids.push(id.to_string()),
                Err(_) => p.add(
                    &at(&ids_loc, i),
                    "uuid_parsing",
                    "Input should be a valid UUID, unable to parse string as a UUID",
                ),
            },
            _ => p.add(&at(&ids_loc, i), "uuid_type", "UUID input should be a string, bytes or UUID object"),
        }
    }
    Some(json!({ "secret_ids": ids }))
}

/// A section that holds one string map under `field`.
fn map_section(p: &mut Problems, loc: &[Value], value: &Value, field: &str) -> Option<Value> {
    let fields = model(p, loc, value, &[field])?;
    let map = string_map(p, &at(loc, field), fields.get(field));
    let mut out = Map::new();
    out.insert(field.into(), Value::Object(map));
    Some(Value::Object(out))
}

const CONFIG_FIELDS: [&str; 9] = [
    "build",
    "capabilities",
    "defaults",
    "metadata",
    "resources",
    "runtime_server",
    "sandbox",
    "secrets",
    "version",
];

/// Validates `value` (found at `loc`) as a v2 runtime config and returns its normalized
/// form, or every problem found.
pub fn normalize(value: &Value, loc: &[Value], limits: &ConfigLimits) -> Result<Value, Vec<FieldError>> {
    let mut p = Problems::default();
    let normalized = normalize_into(&mut p, value, loc, limits);
    if p.0.is_empty() {
        Ok(normalized.unwrap_or_else(|| default_config(limits)))
    } else {
        Err(p.0)
    }
}

/// The config of a runtime created without one.
pub fn default_config(limits: &ConfigLimits) -> Value {
    let mut p = Problems::default();
    normalize_into(&mut p, &json!({}), &[], limits).unwrap_or(Value::Null)
}

fn normalize_into(p: &mut Problems, value: &Value, loc: &[Value], limits: &ConfigLimits) -> Option<Value> {
    if value.is_null() {
        p.add(
            loc,
            "model_type",
            "Input should be a valid dictionary or object to extract fields from",
        );
        return None;
    }
    let fields = model(p, loc, value, &CONFIG_FIELDS)?;
    let get = |name: &str| fields.get(name).filter(|v| !v.is_null());
    let mut out = Map::new();
    out.insert("build".into(), build(p, &at(loc, "build"), get("build"), limits));
    out.insert(
        "capabilities".into(),
        capabilities(p, &at(loc, "capabilities"), get("capabilities")),
    );
    if let Some(v) = get("defaults").and_then(|v| defaults(p, &at(loc, "defaults"), v)) {
        out.insert("defaults".into(), v);
    }
    if let Some(v) = get("metadata").and_then(|v| map_section(p, &at(loc, "metadata"), v, "labels")) {
        out.insert("metadata".into(), v);
    }
    out.insert("resources".into(), resources(p, &at(loc, "resources"), get("resources")));
    if let Some(v) = get("runtime_server").and_then(|v| map_section(p, &at(loc, "runtime_server"), v, "env")) {
        out.insert("runtime_server".into(), v);
    }
    out.insert("sandbox".into(), sandbox(p, &at(loc, "sandbox"), get("sandbox"), limits));
    if let Some(v) = get("secrets").and_then(|v| secrets(p, &at(loc, "secrets"), v)) {
        out.insert("secrets".into(), v);
    }
    let version = match fields.get("version") {
        None => Some("v2".to_string()),
        v => literal(p, &at(loc, "version"), v, &["v2"]),
    };
    out.insert("version".into(), version.unwrap_or_default().into());
    Some(Value::Object(out))
}

/// Lowercase hex sha256 of the config's RFC 8785 canonical JSON.
pub fn digest(config: &Value) -> String {
    fleetledger_events::chain::canonical_digest(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConfigLimits {
        ConfigLimits {
            max_timeout_seconds: 86_400,
            provider: "docker".into(),
        }
    }

    fn body_loc() -> Vec<Value> {
        vec![json!("body"), json!("config")]
    }

    #[test]
    fn an_empty_config_takes_every_default() {
        let config = normalize(&json!({}), &body_loc(), &limits()).unwrap();
        assert_eq!(
            config,
            json!({
                "build": {"profile": "default", "provider": "auto", "source": {"kind": "builtin", "ref": "runtime"}},
                "capabilities": [],
                "resources": {"cpu_cores": 2, "memory_mb": 2048},
                "sandbox": {"workspace_mount": true},
                "version": "v2"
            })
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_location() {
        let bad = json!({
            "version": "v1",
            "build": {"profile": "", "provider": "e2b", "source": {"kind": "git"}},
            "resources": {"cpu_cores": 0, "memory_mb": 200000},
            "sandbox": {"timeout_seconds": 59, "exposed_ports": [0, 80], "egress": {"allow": ["*", "https://x.example.com", "localhost"]}},
            "capabilities": [{"name": "a"}, {"name": "a"}, {}],
            "defaults": {"model": ""},
            "secrets": {"secret_ids": ["nope"]},
            "metadata": {"labels": {"a": 1}},
            "surprise": true
        });
        let errors = normalize(&bad, &body_loc(), &limits()).unwrap_err();
        let got: Vec<(String, String)> = errors
            .iter()
            .map(|e| {
                (
                    e.loc
                        .iter()
                        .map(|l| l.to_string().trim_matches('"').to_string())
                        .collect::<Vec<_>>()
                        .join("."),
                    e.kind.clone(),
                )
            })
            .collect();
        for want in [
            ("body.config.surprise", "extra_forbidden"),
            ("body.config.version", "literal_error"),
            ("body.config.build.profile", "string_too_short"),
            ("body.config.build.provider", "value_error"),
            ("body.config.build.source.kind", "literal_error"),
            ("body.config.resources.cpu_cores", "greater_than_equal"),
            ("body.config.resources.memory_mb", "less_than_equal"),
            ("body.config.sandbox.timeout_seconds", "greater_than_equal"),
            ("body.config.sandbox.exposed_ports.0", "greater_than_equal"),
            ("body.config.sandbox.egress.allow.0", "value_error"),
            ("body.config.sandbox.egress.allow.1", "value_error"),
            ("body.config.sandbox.egress.allow.2", "value_error"),
            ("body.config.capabilities.1.name", "value_error"),
            ("body.config.capabilities.2.name", "missing"),
            ("body.config.defaults.model", "string_too_short"),
            ("body.config.secrets.secret_ids.0", "uuid_parsing"),
            ("body.config.metadata.labels.a", "string_type"),
        ] {
            assert!(
                got.contains(&(want.0.to_string(), want.1.to_string())),
                "missing {want:?} in {got:?}"
            );
        }
        assert_eq!(got.len(), 17, "{got:?}");
    }

    #[test]
    fn normalization_sorts_ports_lowercases_ids_and_keeps_empty_egress() {
        let config = normalize(
            &json!({
                "sandbox": {"exposed_ports": [8080, 22, 8080], "egress": {"allow": []}, "workspace_mount": false},
                "secrets": {"secret_ids": ["2489E9AD-2EE2-8E00-8EC9-32D5F69181C0"]},
            }),
            &body_loc(),
            &limits(),
        )
        .unwrap();
        assert_eq!(
            config["sandbox"],
            json!({"egress": {"allow": []}, "exposed_ports": [22, 8080], "workspace_mount": true})
        );
        assert_eq!(config["secrets"]["secret_ids"][0], "2489e9ad-2ee2-8e00-8ec9-32d5f69181c0");
        let without_egress = normalize(&json!({}), &body_loc(), &limits()).unwrap();
        assert_ne!(digest(&config["sandbox"]), digest(&without_egress["sandbox"]));
    }

    #[test]
    fn the_digest_ignores_key_order() {
        use sha2::{Digest, Sha256};
        let a = json!({"b": 1, "a": [1, 2]});
        let b: Value = serde_json::from_str(r#"{"a":[1,2],"b":1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(digest(&json!({})), hex::encode(Sha256::digest(b"{}")));
    }
}
