//! Container agents (Hill90): the rules of `PUT /agents/{id}`, resource limits, and the
//! merge of skills' tools configs.

use serde_json::{json, Map, Value};

use super::DomainError;

pub const AUTONOMY_LEVELS: [&str; 3] = ["ask_before_acting", "act_within_scope", "full_autonomy"];
pub const SKILL_SCOPES: [&str; 3] = ["container_local", "host_docker", "vps_system"];
/// Skills a non-admin may neither assign nor remove.
pub const PRIVILEGED_SCOPES: [&str; 2] = ["host_docker", "vps_system"];
const MAX_CPUS: f64 = 4.0;
const MAX_MEM_BYTES: f64 = 16.0 * 1024.0 * 1024.0 * 1024.0;

/// The tools config of an agent without skills.
pub fn default_tools_config() -> Value {
    json!({
        "shell": {"enabled": false, "allowed_binaries": [], "denied_patterns": [], "max_timeout": 300},
        "filesystem": {"enabled": false, "read_only": false, "allowed_paths": ["/workspace", "/home/agentuser"], "denied_paths": []},
        "health": {"enabled": true}
    })
}

/// `^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$`, or a single lowercase letter or digit.
pub fn valid_agent_id(id: &str) -> bool {
    let b = id.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match b.len() {
        1 => edge(&b[0]),
        2..=63 => edge(&b[0]) && edge(&b[b.len() - 1]) && b.iter().all(|c| edge(c) || *c == b'-'),
        _ => false,
    }
}

/// A CPU limit: a decimal string above 0 and at most 4.
pub fn check_cpus(cpus: &str) -> Result<(), DomainError> {
    let ok = !cpus.trim().is_empty()
        && cpus.trim().chars().all(|c| c.is_ascii_digit() || c == '.')
        && cpus.trim().parse::<f64>().is_ok_and(|n| n > 0.0 && n <= MAX_CPUS);
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid("cpus must be a decimal number greater than 0 and at most 4"))
    }
}

/// A memory limit `^\d+(\.\d+)?\s*[kmg]?b?$` (case-insensitive), above 0 and at most 16 GiB.
pub fn mem_limit_bytes(mem: &str) -> Result<f64, DomainError> {
    let bad = || DomainError::invalid("mem_limit must be a size like 512m or 2g, greater than 0 and at most 16g");
    let s = mem.trim().to_ascii_lowercase();
    let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, rest) = s.split_at(digits_end);
    let well_formed_number = {
        let mut parts = number.split('.');
        let whole = parts.next().unwrap_or_default();
        let frac = parts.next();
        !whole.is_empty() && whole.chars().all(|c| c.is_ascii_digit()) && parts.next().is_none() && frac.is_none_or(|f| !f.is_empty())
    };
    let unit = rest.trim_start();
    let multiplier = match unit {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if !well_formed_number {
        return Err(bad());
    }
    let bytes = number.parse::<f64>().map_err(|_| bad())? * multiplier;
    if bytes <= 0.0 || bytes > MAX_MEM_BYTES {
        return Err(bad());
    }
    Ok(bytes)
}

pub fn check_pids(pids: i64) -> Result<(), DomainError> {
    if (1..=300).contains(&pids) {
        Ok(())
    } else {
        Err(DomainError::invalid("pids_limit must be an integer from 1 to 300"))
    }
}

fn section<'a>(config: &'a Value, name: &str) -> &'a Value {
    config.get(name).unwrap_or(&Value::Null)
}

fn flag(config: &Value, section_name: &str, field: &str, default: bool) -> bool {
    section(config, section_name).get(field).and_then(Value::as_bool).unwrap_or(default)
}

fn list(config: &Value, section_name: &str, field: &str, default: &[&str]) -> Vec<String> {
    match section(config, section_name).get(field).and_then(Value::as_array) {
        Some(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        None => default.iter().map(|s| s.to_string()).collect(),
    }
}

/// Union in first-seen order.
fn union(lists: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in lists.into_iter().flatten() {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The tools config of a set of skills: none gives the default, one is taken verbatim,
/// more are merged field by field (enables OR, `read_only` AND, lists UNION with an empty
/// `allowed_binaries` meaning unrestricted, `max_timeout` MAX).
pub fn merge_tools_configs(configs: &[Value]) -> Value {
    match configs {
        [] => return default_tools_config(),
        [only] => return only.clone(),
        _ => {}
    }
    let any = |s: &str, f: &str, d: bool| configs.iter().any(|c| flag(c, s, f, d));
    let lists = |s: &str, f: &str, d: &[&str]| union(configs.iter().map(|c| list(c, s, f, d)));
    let unrestricted = configs.iter().any(|c| list(c, "shell", "allowed_binaries", &[]).is_empty());
    let max_timeout = configs
        .iter()
        .map(|c| section(c, "shell").get("max_timeout").and_then(Value::as_i64).unwrap_or(300))
        .max()
        .unwrap_or(300);
    json!({
        "shell": {
            "enabled": any("shell", "enabled", false),
            "allowed_binaries": if unrestricted { vec![] } else { lists("shell", "allowed_binaries", &[]) },
            "denied_patterns": lists("shell", "denied_patterns", &[]),
            "max_timeout": max_timeout,
        },
        "filesystem": {
            "enabled": any("filesystem", "enabled", false),
            "read_only": configs.iter().all(|c| flag(c, "filesystem", "read_only", false)),
            "allowed_paths": lists("filesystem", "allowed_paths", &["/workspace", "/home/agentuser"]),
            "denied_paths": lists("filesystem", "denied_paths", &[]),
        },
        "health": { "enabled": any("health", "enabled", true) },
    })
}

/// The fields an update changed, from `before` to `after` (both full field maps).
pub fn changed_fields(before: &Map<String, Value>, after: &Map<String, Value>) -> Map<String, Value> {
    after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(enabled: bool, allowed: &[&str], denied: &[&str], timeout: i64) -> Value {
        json!({"enabled": enabled, "allowed_binaries": allowed, "denied_patterns": denied, "max_timeout": timeout})
    }

    fn fs(enabled: bool, read_only: bool, allowed: &[&str], denied: &[&str]) -> Value {
        json!({"enabled": enabled, "read_only": read_only, "allowed_paths": allowed, "denied_paths": denied})
    }

    fn config(shell: Value, fs: Value, health: bool) -> Value {
        json!({"shell": shell, "filesystem": fs, "health": {"enabled": health}})
    }

    #[test]
    fn tools_configs_merge_by_the_table() {
        let a = config(
            shell(true, &["git", "ls"], &["rm -rf"], 120),
            fs(false, true, &["/workspace"], &["/etc"]),
            false,
        );
        let b = config(
            shell(false, &["ls", "curl"], &["sudo"], 600),
            fs(true, true, &["/data"], &["/etc", "/root"]),
            false,
        );
        let unrestricted = config(shell(false, &[], &[], 60), fs(false, false, &[], &[]), true);
        let cases: Vec<(&str, Vec<Value>, Value)> = vec![
            ("none gives the default", vec![], default_tools_config()),
            ("one is verbatim", vec![a.clone()], a.clone()),
            (
                "two merge field by field",
                vec![a.clone(), b.clone()],
                config(
                    shell(true, &["git", "ls", "curl"], &["rm -rf", "sudo"], 600),
                    fs(true, true, &["/workspace", "/data"], &["/etc", "/root"]),
                    false,
                ),
            ),
            (
                "an empty allow-list means unrestricted, and one writer makes it writable",
                vec![a.clone(), unrestricted.clone()],
                config(
                    shell(true, &[], &["rm -rf"], 120),
                    fs(false, false, &["/workspace"], &["/etc"]),
                    true,
                ),
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(merge_tools_configs(&input), want, "{name}");
        }
    }

    #[test]
    fn limits_follow_the_hill90_rules() {
        for ok in ["1.0", "0.5", "4", "2.25"] {
            assert!(check_cpus(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "4.5", "-1", "one", "", "1e0"] {
            assert!(check_cpus(bad).is_err(), "{bad}");
        }
        for ok in ["1g", "512m", "512 MB", "16G", "1.5gb", "1024"] {
            assert!(mem_limit_bytes(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "17g", "1t", "g", "1.g", "abc", "-1m"] {
            assert!(mem_limit_bytes(bad).is_err(), "{bad}");
        }
        assert!(check_pids(1).is_ok() && check_pids(300).is_ok() && check_pids(0).is_err() && check_pids(301).is_err());
        for ok in ["a", "7", "my-agent", "a1"] {
            assert!(valid_agent_id(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "My-Agent", "a_b", &"a".repeat(64)] {
            assert!(!valid_agent_id(bad), "{bad}");
        }
    }
}
