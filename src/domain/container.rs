//! Container agents (Hill90): the rules of creating and changing skills, container
//! profiles and agents (`PUT /agents/{id}`), resource limits, and the merge of skills'
//! tools configs.
//!
//! A handler parses the body into a typed body ([`Sent`] fields, so each JSON type error
//! is reported in Hill90's order), looks up what the body references ([`AgentRefs`]) and
//! who asks ([`Caller`]), and calls these functions, which decide the events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use fleetledger_events::container::{
    Changed, ContainerAgentChanges, ContainerAgentEvent, ContainerAgentFields, ContainerProfileChanges, ContainerProfileEvent,
    ContainerProfileFields, Defined, SkillChanges, SkillEvent, SkillFields, Tool,
};
use fleetledger_projections::container::{ContainerAgent, ContainerProfile, Skill};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{diff, DomainError};

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

/// Union in first-seen order (skills' lists are as long as a body allows).
fn union(lists: impl IntoIterator<Item = Vec<String>>) -> Vec<String> {
    super::first_seen(lists.into_iter().flatten())
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

// ---- request bodies ---------------------------------------------------------------------------

/// One field of a JSON request body, as sent. The rules read fields in Hill90's order and
/// turn a wrong JSON type into that field's own message when they reach it, so the first
/// problem reported is the one Hill90 reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Sent<T> {
    #[default]
    Absent,
    Null,
    Value(T),
    /// Present with another JSON type than the field has.
    Wrong,
}

impl<T> Sent<T> {
    fn read(body: &Map<String, Value>, name: &str, value: impl FnOnce(&Value) -> Option<T>) -> Sent<T> {
        match body.get(name) {
            None => Sent::Absent,
            Some(Value::Null) => Sent::Null,
            Some(v) => value(v).map_or(Sent::Wrong, Sent::Value),
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Sent::Absent)
    }

    /// The value, when one of the right type was sent.
    pub fn value(&self) -> Option<&T> {
        match self {
            Sent::Value(v) => Some(v),
            _ => None,
        }
    }
}

fn string(body: &Map<String, Value>, name: &str) -> Sent<String> {
    Sent::read(body, name, |v| v.as_str().map(str::to_string))
}

fn integer(body: &Map<String, Value>, name: &str) -> Sent<i64> {
    Sent::read(body, name, Value::as_i64)
}

fn array(body: &Map<String, Value>, name: &str) -> Sent<Vec<Value>> {
    Sent::read(body, name, |v| v.as_array().cloned())
}

fn object(body: &Map<String, Value>, name: &str) -> Sent<Value> {
    Sent::read(body, name, |v| v.is_object().then(|| v.clone()))
}

fn any(body: &Map<String, Value>, name: &str) -> Sent<Value> {
    Sent::read(body, name, |v| Some(v.clone()))
}

/// An optional text field: absent and `null` are `None`.
fn text(field: &Sent<String>, name: &str) -> Result<Option<String>, DomainError> {
    match field {
        Sent::Absent | Sent::Null => Ok(None),
        Sent::Value(s) => Ok(Some(s.clone())),
        Sent::Wrong => Err(DomainError::invalid(format!("{name} must be a string"))),
    }
}

/// A text field that must hold more than whitespace.
fn required_text(field: &Sent<String>, name: &str) -> Result<String, DomainError> {
    text(field, name)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| DomainError::invalid(format!("{name} is required")))
}

/// An optional list: absent is `None`, anything but an array (`null` too) is refused.
fn sent_list<'a>(field: &'a Sent<Vec<Value>>, name: &str) -> Result<Option<&'a [Value]>, DomainError> {
    match field {
        Sent::Absent => Ok(None),
        Sent::Value(items) => Ok(Some(items)),
        Sent::Null | Sent::Wrong => Err(DomainError::invalid(format!("{name} must be an array"))),
    }
}

/// Who asks, as the rules need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    pub principal_id: String,
    pub admin: bool,
}

/// What creating any resource records besides its fields.
#[derive(Clone, Debug, PartialEq)]
pub struct NewResource {
    pub id: Uuid,
    pub org_id: Uuid,
    pub created_by: String,
    pub at: DateTime<Utc>,
}

impl NewResource {
    fn defined<F>(&self, fields: F) -> Defined<F> {
        Defined {
            id: self.id,
            org_id: self.org_id,
            fields,
            created_by: self.created_by.clone(),
            at: self.at,
        }
    }
}

// ---- skills -----------------------------------------------------------------------------------

/// A skill's POST/PUT body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SkillBody {
    pub name: Sent<String>,
    pub scope: Sent<String>,
    pub tools_config: Sent<Value>,
    pub tools: Sent<Vec<Value>>,
}

impl SkillBody {
    pub fn from_json(body: &Map<String, Value>) -> SkillBody {
        SkillBody {
            name: string(body, "name"),
            scope: string(body, "scope"),
            tools_config: object(body, "tools_config"),
            tools: array(body, "tools"),
        }
    }
}

/// A body's tools, normalized; a tool without an id gets one derived from the skill and
/// its name, so saving the same tools again changes nothing.
fn tools(skill: Uuid, items: &[Value]) -> Result<Vec<Tool>, DomainError> {
    items
        .iter()
        .map(|item| {
            let Some(t) = item.as_object() else {
                return Err(DomainError::invalid("tools must be an array of objects"));
            };
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| DomainError::invalid("Each tool needs a name"))?;
            Ok(Tool {
                id: t
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .unwrap_or_else(|| Uuid::new_v5(&skill, name.as_bytes())),
                name: name.to_string(),
                description: t.get("description").and_then(Value::as_str).unwrap_or_default().to_string(),
                install_method: t.get("install_method").and_then(Value::as_str).unwrap_or("builtin").to_string(),
            })
        })
        .collect()
}

/// A skill's fields after `body`, over `current` (`None` when creating, where every field
/// the body leaves out gets its default).
fn skill_fields(id: Uuid, body: &SkillBody, current: Option<SkillFields>) -> Result<SkillFields, DomainError> {
    let creating = current.is_none();
    let mut f = current.unwrap_or_else(|| SkillFields {
        name: String::new(),
        scope: "container_local".into(),
        tools_config: default_tools_config(),
        tools: Vec::new(),
    });
    if creating || !body.name.is_absent() {
        f.name = required_text(&body.name, "name")?;
    }
    if let Some(scope) = text(&body.scope, "scope")? {
        if !SKILL_SCOPES.contains(&scope.as_str()) {
            return Err(DomainError::invalid(
                "scope must be one of: container_local, host_docker, vps_system",
            ));
        }
        f.scope = scope;
    }
    match &body.tools_config {
        Sent::Value(config) => f.tools_config = config.clone(),
        Sent::Absent | Sent::Null => {}
        Sent::Wrong => return Err(DomainError::invalid("tools_config must be an object")),
    }
    match &body.tools {
        Sent::Value(items) => f.tools = tools(id, items)?,
        Sent::Absent | Sent::Null => {}
        Sent::Wrong => return Err(DomainError::invalid("tools must be an array")),
    }
    Ok(f)
}

fn fields_of_skill(s: &Skill) -> SkillFields {
    SkillFields {
        name: s.name.clone(),
        scope: s.scope.clone(),
        tools_config: s.tools_config.clone(),
        tools: s.tools.clone(),
    }
}

pub fn create_skill(existing: Option<&Skill>, new: &NewResource, body: &SkillBody) -> Result<Vec<SkillEvent>, DomainError> {
    let fields = skill_fields(new.id, body, None)?;
    if existing.is_some() {
        return Err(DomainError::AlreadyExists("A skill with this id already exists".into()));
    }
    Ok(vec![SkillEvent::Created(new.defined(fields))])
}

/// A PUT: recorded even when nothing changed, since the attempt is part of the history.
pub fn update_skill(current: &Skill, body: &SkillBody, now: DateTime<Utc>) -> Result<Vec<SkillEvent>, DomainError> {
    let before = fields_of_skill(current);
    let after = skill_fields(current.id, body, Some(before.clone()))?;
    let changes = SkillChanges {
        name: diff(&before.name, &after.name),
        scope: diff(&before.scope, &after.scope),
        tools_config: diff(&before.tools_config, &after.tools_config),
        tools: diff(&before.tools, &after.tools),
    };
    Ok(vec![SkillEvent::Updated(Changed { changes, at: now })])
}

// ---- container profiles -------------------------------------------------------------------------

/// A container profile's POST/PUT body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileBody {
    pub name: Sent<String>,
    pub docker_image: Sent<String>,
    pub description: Sent<String>,
    pub default_cpus: Sent<String>,
    pub default_mem_limit: Sent<String>,
    pub default_pids_limit: Sent<i64>,
}

impl ProfileBody {
    pub fn from_json(body: &Map<String, Value>) -> ProfileBody {
        ProfileBody {
            name: string(body, "name"),
            docker_image: string(body, "docker_image"),
            description: string(body, "description"),
            default_cpus: string(body, "default_cpus"),
            default_mem_limit: string(body, "default_mem_limit"),
            default_pids_limit: integer(body, "default_pids_limit"),
        }
    }
}

/// A profile's fields after `body`, over `current` (`None` when creating).
fn profile_fields(body: &ProfileBody, current: Option<ContainerProfileFields>) -> Result<ContainerProfileFields, DomainError> {
    let creating = current.is_none();
    let mut f = current.unwrap_or_else(|| ContainerProfileFields {
        name: String::new(),
        docker_image: String::new(),
        description: String::new(),
        default_cpus: "1.0".into(),
        default_mem_limit: "1g".into(),
        default_pids_limit: 200,
    });
    if creating || !body.name.is_absent() {
        f.name = required_text(&body.name, "name")?;
    }
    if creating || !body.docker_image.is_absent() {
        f.docker_image = required_text(&body.docker_image, "docker_image")?;
    }
    for (field, name, value) in [
        (&mut f.description, "description", &body.description),
        (&mut f.default_cpus, "default_cpus", &body.default_cpus),
        (&mut f.default_mem_limit, "default_mem_limit", &body.default_mem_limit),
    ] {
        if let Some(v) = text(value, name)? {
            *field = v;
        }
    }
    match body.default_pids_limit {
        Sent::Absent => {}
        Sent::Value(pids) => {
            check_pids(pids)?;
            f.default_pids_limit = pids;
        }
        Sent::Null | Sent::Wrong => return Err(DomainError::invalid("default_pids_limit must be an integer")),
    }
    check_cpus(&f.default_cpus)?;
    mem_limit_bytes(&f.default_mem_limit)?;
    Ok(f)
}

fn fields_of_profile(p: &ContainerProfile) -> ContainerProfileFields {
    ContainerProfileFields {
        name: p.name.clone(),
        docker_image: p.docker_image.clone(),
        description: p.description.clone(),
        default_cpus: p.default_cpus.clone(),
        default_mem_limit: p.default_mem_limit.clone(),
        default_pids_limit: p.default_pids_limit,
    }
}

pub fn create_profile(
    existing: Option<&ContainerProfile>,
    new: &NewResource,
    body: &ProfileBody,
) -> Result<Vec<ContainerProfileEvent>, DomainError> {
    let fields = profile_fields(body, None)?;
    if existing.is_some() {
        return Err(DomainError::AlreadyExists("A container profile with this id already exists".into()));
    }
    Ok(vec![ContainerProfileEvent::Created(new.defined(fields))])
}

/// A PUT: recorded even when nothing changed, since the attempt is part of the history.
pub fn update_profile(
    current: &ContainerProfile,
    body: &ProfileBody,
    now: DateTime<Utc>,
) -> Result<Vec<ContainerProfileEvent>, DomainError> {
    let before = fields_of_profile(current);
    let after = profile_fields(body, Some(before.clone()))?;
    let changes = ContainerProfileChanges {
        name: diff(&before.name, &after.name),
        description: diff(&before.description, &after.description),
        docker_image: diff(&before.docker_image, &after.docker_image),
        default_cpus: diff(&before.default_cpus, &after.default_cpus),
        default_mem_limit: diff(&before.default_mem_limit, &after.default_mem_limit),
        default_pids_limit: diff(&before.default_pids_limit, &after.default_pids_limit),
    };
    Ok(vec![ContainerProfileEvent::Updated(Changed { changes, at: now })])
}

// ---- agents -------------------------------------------------------------------------------------

/// The automatic model policy of an agent: what `model_names` assigns through, and the
/// only kind of policy a `model_policy_id` can name.
pub fn auto_policy(agent: Uuid) -> Uuid {
    Uuid::new_v5(&agent, b"model-policy")
}

/// An agent's POST body, or a `PUT /agents/{id}` body (which has no `agent_id`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentBody {
    pub agent_id: Sent<String>,
    /// Sent at all: Hill90 refuses the field whatever it holds.
    pub tool_preset_id: bool,
    pub name: Sent<String>,
    pub description: Sent<String>,
    pub soul_md: Sent<String>,
    pub rules_md: Sent<String>,
    pub autonomy_level: Sent<String>,
    pub cpus: Sent<String>,
    pub mem_limit: Sent<String>,
    pub pids_limit: Sent<i64>,
    pub tools_config: Sent<Value>,
    pub skill_ids: Sent<Vec<Value>>,
    pub model_names: Sent<Vec<Value>>,
    pub model_policy_id: Sent<Value>,
    pub container_profile_id: Sent<Value>,
}

impl AgentBody {
    pub fn from_json(body: &Map<String, Value>) -> AgentBody {
        AgentBody {
            agent_id: string(body, "agent_id"),
            tool_preset_id: body.contains_key("tool_preset_id"),
            name: string(body, "name"),
            description: string(body, "description"),
            soul_md: string(body, "soul_md"),
            rules_md: string(body, "rules_md"),
            autonomy_level: string(body, "autonomy_level"),
            cpus: string(body, "cpus"),
            mem_limit: string(body, "mem_limit"),
            pids_limit: integer(body, "pids_limit"),
            tools_config: object(body, "tools_config"),
            skill_ids: match array(body, "skill_ids") {
                Sent::Value(ids) => Sent::Value(distinct_skill_ids(ids)),
                other => other,
            },
            model_names: array(body, "model_names"),
            model_policy_id: any(body, "model_policy_id"),
            container_profile_id: any(body, "container_profile_id"),
        }
    }

    /// The skill ids `skill_ids` names, as sent (`None` for an item that is not a string),
    /// when it is a list: what the caller looks up for [`AgentRefs::skills`].
    pub fn named_skills(&self) -> Option<Vec<Option<&str>>> {
        self.skill_ids.value().map(|ids| ids.iter().map(Value::as_str).collect())
    }

    /// The container profile id `container_profile_id` names, as sent.
    pub fn named_profile(&self) -> Option<&str> {
        self.container_profile_id.value().and_then(Value::as_str)
    }

    /// The model policy `model_policy_id` names.
    pub fn named_policy(&self) -> Option<Uuid> {
        self.model_policy_id
            .value()
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    }
}

/// `skill_ids` with each id once, in first-seen order. A skill is assigned once however
/// often it is listed (Hill90 keeps assignments as rows of a join table); each listed id
/// would otherwise be looked up, copied with its tools config, merged and rendered again,
/// which a body of 25k repeats of one big skill turned into gigabytes. Items that are not
/// strings are kept: they are refused as they were.
fn distinct_skill_ids(ids: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .filter(|id| id.as_str().is_none_or(|s| seen.insert(s.to_string())))
        .collect()
}

/// A skill as an agent's rules see it.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillRef {
    pub id: Uuid,
    pub scope: String,
    pub tools_config: Value,
}

impl From<&Skill> for SkillRef {
    fn from(s: &Skill) -> Self {
        SkillRef {
            id: s.id,
            scope: s.scope.clone(),
            tools_config: s.tools_config.clone(),
        }
    }
}

/// The agent whose automatic policy a body names.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyOwner {
    pub id: Uuid,
    pub created_by: String,
    pub models: Vec<String>,
}

/// What an agent body's references resolve to, looked up by the caller.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentRefs {
    /// For each item of `skill_ids`, in order, the live skill of the agent's org it names
    /// (`None`: no such skill; a missing entry counts as `None`).
    pub skills: Vec<Option<SkillRef>>,
    /// The agent's current skills that still exist (deleted or not, whatever their org):
    /// removing a privileged one is privileged too.
    pub current_skills: Vec<SkillRef>,
    /// The live container profile of the agent's org that `container_profile_id` names.
    pub container_profile: Option<Uuid>,
    /// The live agent of the org whose automatic policy `model_policy_id` names.
    pub policy_owner: Option<PolicyOwner>,
}

/// An agent body with everything its rules need.
#[derive(Clone, Debug)]
pub struct AgentCommand<'a> {
    pub body: &'a AgentBody,
    pub refs: AgentRefs,
    pub caller: &'a Caller,
    /// The model names this server offers.
    pub available_models: &'a [String],
    pub now: DateTime<Utc>,
}

/// Applies an agent body to its fields by Hill90's rules: what `PUT /agents/{id}` does,
/// and what a creation's body does to the defaults.
fn apply_agent_body(agent: Uuid, current: &ContainerAgentFields, cmd: &AgentCommand) -> Result<ContainerAgentFields, DomainError> {
    let (body, refs) = (cmd.body, &cmd.refs);
    let mut after = current.clone();
    if body.tool_preset_id {
        return Err(DomainError::invalid("tool_preset_id is deprecated. Use skill_ids instead."));
    }
    if let Some(level) = text(&body.autonomy_level, "autonomy_level")?.filter(|l| !l.is_empty()) {
        if !AUTONOMY_LEVELS.contains(&level.as_str()) {
            return Err(DomainError::invalid(format!(
                "autonomy_level must be one of: {}",
                AUTONOMY_LEVELS.join(", ")
            )));
        }
        after.autonomy_level = level;
    }
    let skill_ids = sent_list(&body.skill_ids, "skill_ids")?;
    let model_names = sent_list(&body.model_names, "model_names")?;
    if model_names.is_some() && !body.model_policy_id.is_absent() {
        return Err(DomainError::invalid("Use either model_names or model_policy_id, not both"));
    }
    match body.model_policy_id {
        Sent::Absent => {}
        Sent::Null => {
            after.model_policy_id = None;
            after.models = Vec::new();
        }
        Sent::Value(_) | Sent::Wrong => {
            // Only an agent the caller may see, with models, has a policy to share.
            let owner = refs
                .policy_owner
                .as_ref()
                .filter(|o| !o.models.is_empty() && (cmd.caller.admin || o.created_by == cmd.caller.principal_id))
                .ok_or_else(|| DomainError::invalid("Model policy not found"))?;
            after.model_policy_id = Some(auto_policy(owner.id));
            after.models = owner.models.clone();
        }
    }
    match body.container_profile_id {
        Sent::Absent => {}
        Sent::Null => after.container_profile_id = None,
        Sent::Value(_) | Sent::Wrong => {
            let profile = refs
                .container_profile
                .ok_or_else(|| DomainError::invalid("Container profile not found"))?;
            after.container_profile_id = Some(profile);
        }
    }
    let chosen = match skill_ids {
        Some(ids) => {
            let skills = (0..ids.len())
                .map(|i| refs.skills.get(i).and_then(Option::as_ref))
                .collect::<Option<Vec<&SkillRef>>>()
                .ok_or_else(|| DomainError::invalid("One or more skills not found"))?;
            check_privileged(&current.skill_ids, &skills, refs, cmd.caller)?;
            Some(skills)
        }
        None => None,
    };
    if let Some(names) = model_names {
        let available: HashSet<&str> = cmd.available_models.iter().map(String::as_str).collect();
        let mut models = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match name.as_str() {
                Some(n) if available.contains(n) => models.push(n.to_string()),
                Some(n) => unknown.push(n.to_string()),
                None => unknown.push(name.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(DomainError::invalid(format!(
                "Unknown model names: {}",
                super::validation::some_of(&unknown, 10)
            )));
        }
        after.model_policy_id = (!models.is_empty()).then(|| auto_policy(agent));
        after.models = models;
    }
    if let Some(cpus) = text(&body.cpus, "cpus")?.filter(|c| !c.is_empty()) {
        check_cpus(&cpus)?;
        after.cpus = cpus;
    }
    if let Some(mem) = text(&body.mem_limit, "mem_limit")?.filter(|m| !m.is_empty()) {
        mem_limit_bytes(&mem)?;
        after.mem_limit = mem;
    }
    match body.pids_limit {
        Sent::Absent => {}
        Sent::Value(pids) => {
            check_pids(pids)?;
            after.pids_limit = pids;
        }
        Sent::Null | Sent::Wrong => return Err(DomainError::invalid("pids_limit must be an integer from 1 to 300")),
    }
    if let Some(name) = text(&body.name, "name")?.filter(|n| !n.trim().is_empty()) {
        after.name = name;
    }
    for (field, name, value) in [
        (&mut after.description, "description", &body.description),
        (&mut after.soul_md, "soul_md", &body.soul_md),
        (&mut after.rules_md, "rules_md", &body.rules_md),
    ] {
        if let Some(v) = text(value, name)? {
            *field = v;
        }
    }
    let body_tools = match &body.tools_config {
        Sent::Absent | Sent::Null => None,
        Sent::Value(config) => Some(config.clone()),
        Sent::Wrong => return Err(DomainError::invalid("tools_config must be an object")),
    };
    match chosen {
        // The skills decide the tools config; a tools_config in the body is ignored.
        Some(skills) if !skills.is_empty() => {
            let configs: Vec<Value> = skills.iter().map(|s| s.tools_config.clone()).collect();
            after.tools_config = merge_tools_configs(&configs);
            after.skill_ids = skills.iter().map(|s| s.id).collect();
        }
        chosen => {
            if chosen.is_some() {
                after.skill_ids = Vec::new();
            }
            if let Some(config) = body_tools {
                after.tools_config = config;
            }
        }
    }
    Ok(after)
}

/// Only an admin may assign or remove a skill of a privileged scope.
fn check_privileged(current: &[Uuid], chosen: &[&SkillRef], refs: &AgentRefs, caller: &Caller) -> Result<(), DomainError> {
    if caller.admin {
        return Ok(());
    }
    let before: HashSet<Uuid> = current.iter().copied().collect();
    let now: HashSet<Uuid> = chosen.iter().map(|s| s.id).collect();
    let scopes: HashMap<Uuid, &str> = refs
        .current_skills
        .iter()
        .chain(chosen.iter().copied())
        .map(|s| (s.id, s.scope.as_str()))
        .collect();
    let privileged = before
        .symmetric_difference(&now)
        .any(|id| scopes.get(id).is_some_and(|scope| PRIVILEGED_SCOPES.contains(scope)));
    if privileged {
        return Err(DomainError::Forbidden(
            "Only admins can assign or remove host_docker or vps_system skills".into(),
        ));
    }
    Ok(())
}

fn fields_of_agent(a: &ContainerAgent) -> ContainerAgentFields {
    ContainerAgentFields {
        description: a.description.clone(),
        cpus: a.cpus.clone(),
        mem_limit: a.mem_limit.clone(),
        pids_limit: a.pids_limit,
        soul_md: a.soul_md.clone(),
        rules_md: a.rules_md.clone(),
        autonomy_level: a.autonomy_level.clone(),
        model_policy_id: a.model_policy_id,
        models: a.models.clone(),
        skill_ids: a.skill_ids.clone(),
        container_profile_id: a.container_profile_id,
        agent_id: a.agent_id.clone(),
        name: a.name.clone(),
        tools_config: a.tools_config.clone(),
    }
}

/// A new agent's `agent_id` and its stream id: one agent per `agent_id` in an org, so two
/// creations of one `agent_id` meet on one stream and only the first creates it.
pub fn new_agent_id(org_id: Uuid, body: &AgentBody) -> Result<(Uuid, String), DomainError> {
    let agent_id = text(&body.agent_id, "agent_id")?.unwrap_or_default();
    if !valid_agent_id(&agent_id) {
        return Err(DomainError::invalid(
            "agent_id must be lowercase letters, digits and hyphens, start and end with a letter or digit, at most 63 characters",
        ));
    }
    Ok((Uuid::new_v5(&org_id, format!("container_agent/{agent_id}").as_bytes()), agent_id))
}

/// Creates an agent with Hill90's defaults and the body applied over them.
pub fn create_agent(
    existing: Option<&ContainerAgent>,
    new: &NewResource,
    agent_id: &str,
    cmd: &AgentCommand,
) -> Result<Vec<ContainerAgentEvent>, DomainError> {
    let name = required_text(&cmd.body.name, "name")?;
    let defaults = ContainerAgentFields {
        description: String::new(),
        cpus: "1.0".into(),
        mem_limit: "1g".into(),
        pids_limit: 200,
        soul_md: String::new(),
        rules_md: String::new(),
        autonomy_level: "act_within_scope".into(),
        model_policy_id: None,
        models: Vec::new(),
        skill_ids: Vec::new(),
        container_profile_id: None,
        agent_id: agent_id.to_string(),
        name,
        tools_config: default_tools_config(),
    };
    let fields = apply_agent_body(new.id, &defaults, cmd)?;
    if existing.is_some() {
        return Err(DomainError::AlreadyExists("An agent with this agent_id already exists".into()));
    }
    Ok(vec![ContainerAgentEvent::Created(new.defined(fields))])
}

/// Whether the agent may be changed at all: a running agent must be stopped first.
pub fn updatable(agent: &ContainerAgent) -> Result<(), DomainError> {
    if agent.status == "running" {
        return Err(DomainError::Conflict("Cannot update a running agent. Stop it first.".into()));
    }
    Ok(())
}

/// `PUT /agents/{id}`: exactly the changed fields, recorded even when nothing changed
/// (the attempt is part of the history). A running agent must be stopped first.
pub fn update_agent(current: &ContainerAgent, cmd: &AgentCommand) -> Result<Vec<ContainerAgentEvent>, DomainError> {
    updatable(current)?;
    let before = fields_of_agent(current);
    let after = apply_agent_body(current.id, &before, cmd)?;
    let changes = ContainerAgentChanges {
        name: diff(&before.name, &after.name),
        description: diff(&before.description, &after.description),
        tools_config: diff(&before.tools_config, &after.tools_config),
        cpus: diff(&before.cpus, &after.cpus),
        mem_limit: diff(&before.mem_limit, &after.mem_limit),
        pids_limit: diff(&before.pids_limit, &after.pids_limit),
        soul_md: diff(&before.soul_md, &after.soul_md),
        rules_md: diff(&before.rules_md, &after.rules_md),
        autonomy_level: diff(&before.autonomy_level, &after.autonomy_level),
        model_policy_id: diff(&before.model_policy_id, &after.model_policy_id),
        models: diff(&before.models, &after.models),
        skill_ids: diff(&before.skill_ids, &after.skill_ids),
        container_profile_id: diff(&before.container_profile_id, &after.container_profile_id),
    };
    Ok(vec![ContainerAgentEvent::Updated(Changed { changes, at: cmd.now })])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skill_listed_many_times_is_assigned_once() {
        let a = "00000000-0000-0000-0000-00000000000a";
        let b = "00000000-0000-0000-0000-00000000000b";
        let body = json!({"skill_ids": [a, b, a, 7, a, b, 7]});
        let parsed = AgentBody::from_json(body.as_object().unwrap());
        assert_eq!(parsed.skill_ids, Sent::Value(vec![json!(a), json!(b), json!(7), json!(7)]));
    }

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

    // ---- the PUT /agents/{id} rules, given / when / then -----------------------------------

    use crate::domain::testing::given;
    use fleetledger_projections::ReadModel;

    const MODELS: [&str; 2] = ["gpt-4.1", "claude-sonnet-4"];

    fn body(json: Value) -> AgentBody {
        AgentBody::from_json(json.as_object().expect("a body is an object"))
    }

    fn member() -> Caller {
        Caller {
            principal_id: "user:member".into(),
            admin: false,
        }
    }

    fn admin() -> Caller {
        Caller {
            principal_id: "user:admin".into(),
            admin: true,
        }
    }

    fn models() -> Vec<String> {
        MODELS.iter().map(|m| m.to_string()).collect()
    }

    fn skill(scope: &str, binaries: &[&str]) -> SkillRef {
        SkillRef {
            id: Uuid::now_v7(),
            scope: scope.into(),
            tools_config: config(shell(true, binaries, &[], 60), fs(false, false, &[], &[]), true),
        }
    }

    /// The rules' input for `body` with `refs`, asked by `caller`.
    fn put<'a>(body: &'a AgentBody, refs: AgentRefs, caller: &'a Caller, models: &'a [String]) -> AgentCommand<'a> {
        AgentCommand {
            body,
            refs,
            caller,
            available_models: models,
            now: Utc::now(),
        }
    }

    /// An agent created by the member from `json` (whose references are `refs`).
    fn agent(json: Value, refs: AgentRefs) -> ContainerAgent {
        let (body, caller, models) = (body(json), member(), models());
        let (id, agent_id) = new_agent_id(Uuid::nil(), &body).unwrap();
        let new = NewResource {
            id,
            org_id: Uuid::nil(),
            created_by: caller.principal_id.clone(),
            at: Utc::now(),
        };
        let events = create_agent(None, &new, &agent_id, &put(&body, refs, &caller, &models)).unwrap();
        events.iter().fold(None, ContainerAgent::evolve).unwrap()
    }

    /// The one event's changes.
    fn changes(events: &[ContainerAgentEvent]) -> &ContainerAgentChanges {
        match events {
            [ContainerAgentEvent::Updated(u)] => &u.changes,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn creating_applies_the_body_over_hill90s_defaults_once_per_agent_id() {
        let a = agent(
            json!({"agent_id": "worker", "name": "Worker", "cpus": "2", "model_names": ["gpt-4.1"]}),
            AgentRefs::default(),
        );
        assert_eq!(
            (a.name.as_str(), a.cpus.as_str(), a.mem_limit.as_str(), a.pids_limit),
            ("Worker", "2", "1g", 200)
        );
        assert_eq!(
            (a.models.clone(), a.model_policy_id),
            (vec!["gpt-4.1".to_string()], Some(auto_policy(a.id)))
        );
        assert_eq!(a.tools_config, default_tools_config());
        let (again, caller, models) = (body(json!({"agent_id": "worker", "name": "Again"})), member(), models());
        let new = NewResource {
            id: a.id,
            org_id: Uuid::nil(),
            created_by: caller.principal_id.clone(),
            at: Utc::now(),
        };
        given(Some(a))
            .when(|existing| create_agent(existing, &new, "worker", &put(&again, AgentRefs::default(), &caller, &models)))
            .then_err(DomainError::AlreadyExists("An agent with this agent_id already exists".into()));
        assert_eq!(
            new_agent_id(Uuid::nil(), &body(json!({"agent_id": "Bad_Slug"}))).unwrap_err(),
            DomainError::invalid(
                "agent_id must be lowercase letters, digits and hyphens, start and end with a letter or digit, at most 63 characters"
            )
        );
        let nameless = body(json!({"agent_id": "ok"}));
        given(None)
            .when(|existing| create_agent(existing, &new, "ok", &put(&nameless, AgentRefs::default(), &caller, &models)))
            .then_err(DomainError::invalid("name is required"));
    }

    #[test]
    fn a_put_records_exactly_what_changed_even_nothing() {
        let a = agent(
            json!({"agent_id": "worker", "name": "Worker", "description": "d"}),
            AgentRefs::default(),
        );
        let (caller, models) = (member(), models());
        // Empty strings leave name, cpus and mem_limit, and clear the text fields.
        let partial = body(json!({"name": "", "cpus": "", "mem_limit": "", "description": "", "soul_md": "be calm", "pids_limit": 50}));
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), &put(&partial, AgentRefs::default(), &caller, &models)))
            .then(|events| {
                assert_eq!(
                    changes(events),
                    &ContainerAgentChanges {
                        description: Some(String::new()),
                        pids_limit: Some(50),
                        soul_md: Some("be calm".into()),
                        ..Default::default()
                    }
                );
                assert_eq!(changes(events).names(), ["description", "pids_limit", "soul_md"]);
            });
        let nothing = body(json!({"name": "", "description": "d"}));
        given(Some(a))
            .when(|s| update_agent(s.unwrap(), &put(&nothing, AgentRefs::default(), &caller, &models)))
            .then(|events| assert_eq!(changes(events), &ContainerAgentChanges::default()));
    }

    #[test]
    fn a_running_agent_must_be_stopped_first() {
        let mut a = agent(json!({"agent_id": "runner", "name": "Runner"}), AgentRefs::default());
        a.status = "running".into();
        let (b, caller, models) = (body(json!({"name": "x"})), admin(), models());
        given(Some(a))
            .when(|s| update_agent(s.unwrap(), &put(&b, AgentRefs::default(), &caller, &models)))
            .then_err(DomainError::Conflict("Cannot update a running agent. Stop it first.".into()));
    }

    #[test]
    fn the_first_problem_reported_is_hill90s_first() {
        let a = agent(json!({"agent_id": "worker", "name": "Worker"}), AgentRefs::default());
        let (caller, models) = (member(), models());
        let cases = [
            (
                json!({"tool_preset_id": "x", "cpus": 1}),
                "tool_preset_id is deprecated. Use skill_ids instead.",
            ),
            (
                json!({"autonomy_level": "yolo", "skill_ids": "a"}),
                "autonomy_level must be one of: ask_before_acting, act_within_scope, full_autonomy",
            ),
            (json!({"autonomy_level": 1}), "autonomy_level must be a string"),
            (json!({"skill_ids": "a", "model_names": "b"}), "skill_ids must be an array"),
            (json!({"skill_ids": null}), "skill_ids must be an array"),
            (json!({"model_names": "gpt-4.1"}), "model_names must be an array"),
            (
                json!({"model_names": [], "model_policy_id": null}),
                "Use either model_names or model_policy_id, not both",
            ),
            (
                json!({"model_policy_id": Uuid::nil(), "container_profile_id": "x"}),
                "Model policy not found",
            ),
            (
                json!({"container_profile_id": Uuid::nil(), "skill_ids": ["x"]}),
                "Container profile not found",
            ),
            (
                json!({"skill_ids": [Uuid::nil()], "model_names": ["gpt-9"]}),
                "One or more skills not found",
            ),
            (
                json!({"model_names": ["gpt-9", 7, "gpt-4.1"], "cpus": "0"}),
                "Unknown model names: gpt-9, 7",
            ),
            (
                json!({"cpus": "4.5", "mem_limit": "17g"}),
                "cpus must be a decimal number greater than 0 and at most 4",
            ),
            (json!({"cpus": 2}), "cpus must be a string"),
            (
                json!({"mem_limit": "1t", "pids_limit": 0}),
                "mem_limit must be a size like 512m or 2g, greater than 0 and at most 16g",
            ),
            (json!({"pids_limit": 301}), "pids_limit must be an integer from 1 to 300"),
            (json!({"pids_limit": "9"}), "pids_limit must be an integer from 1 to 300"),
            (json!({"pids_limit": null}), "pids_limit must be an integer from 1 to 300"),
            (json!({"name": 1, "tools_config": []}), "name must be a string"),
            (json!({"rules_md": false}), "rules_md must be a string"),
            (json!({"tools_config": []}), "tools_config must be an object"),
        ];
        for (json, message) in cases {
            let b = body(json.clone());
            given(Some(a.clone()))
                .when(|s| update_agent(s.unwrap(), &put(&b, AgentRefs::default(), &caller, &models)))
                .then_err(DomainError::invalid(message));
        }
    }

    #[test]
    fn only_admins_assign_or_remove_privileged_skills() {
        let (local, docker) = (skill("container_local", &["git"]), skill("host_docker", &["docker"]));
        let a = agent(json!({"agent_id": "worker", "name": "Worker"}), AgentRefs::default());
        let models = models();
        let assign = body(json!({"skill_ids": [docker.id.to_string()]}));
        let refs = || AgentRefs {
            skills: vec![Some(docker.clone())],
            ..Default::default()
        };
        let (member, admin) = (member(), admin());
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), &put(&assign, refs(), &member, &models)))
            .then_err(DomainError::Forbidden(
                "Only admins can assign or remove host_docker or vps_system skills".into(),
            ));
        let assigned = update_agent(&a, &put(&assign, refs(), &admin, &models)).unwrap();
        let with_docker = assigned.iter().fold(Some(a), ContainerAgent::evolve).unwrap();
        assert_eq!(with_docker.skill_ids, [docker.id]);
        // Keeping a privileged skill is no change to it; removing it is.
        let both = body(json!({"skill_ids": [docker.id.to_string(), local.id.to_string()]}));
        let current = || AgentRefs {
            skills: vec![Some(docker.clone()), Some(local.clone())],
            current_skills: vec![docker.clone()],
            ..Default::default()
        };
        given(Some(with_docker.clone()))
            .when(|s| update_agent(s.unwrap(), &put(&both, current(), &member, &models)))
            .then(|events| assert_eq!(changes(events).skill_ids, Some(vec![docker.id, local.id])));
        let detach = body(json!({"skill_ids": []}));
        let removing = AgentRefs {
            current_skills: vec![docker.clone()],
            ..Default::default()
        };
        given(Some(with_docker))
            .when(|s| update_agent(s.unwrap(), &put(&detach, removing, &member, &models)))
            .then_err(DomainError::Forbidden(
                "Only admins can assign or remove host_docker or vps_system skills".into(),
            ));
    }

    #[test]
    fn skills_decide_the_tools_config_and_detaching_keeps_it() {
        let (git, curl) = (skill("container_local", &["git"]), skill("container_local", &["curl"]));
        let a = agent(json!({"agent_id": "worker", "name": "Worker"}), AgentRefs::default());
        let (caller, models) = (member(), models());
        let chosen = body(json!({"skill_ids": [git.id.to_string(), curl.id.to_string()], "tools_config": {"ignored": true}}));
        let refs = AgentRefs {
            skills: vec![Some(git.clone()), Some(curl.clone())],
            ..Default::default()
        };
        let events = update_agent(&a, &put(&chosen, refs, &caller, &models)).unwrap();
        let merged = merge_tools_configs(&[git.tools_config.clone(), curl.tools_config.clone()]);
        assert_eq!(changes(&events).tools_config, Some(merged.clone()));
        let a = events.iter().fold(Some(a), ContainerAgent::evolve).unwrap();
        let detach = body(json!({"skill_ids": []}));
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), &put(&detach, AgentRefs::default(), &caller, &models)))
            .then(|events| {
                assert_eq!(
                    changes(events),
                    &ContainerAgentChanges {
                        skill_ids: Some(vec![]),
                        ..Default::default()
                    }
                )
            });
        let custom = body(json!({"skill_ids": [], "tools_config": {"health": {"enabled": false}}}));
        given(Some(a))
            .when(|s| update_agent(s.unwrap(), &put(&custom, AgentRefs::default(), &caller, &models)))
            .then(|events| assert_eq!(changes(events).tools_config, Some(json!({"health": {"enabled": false}}))));
    }

    #[test]
    fn models_come_by_name_or_through_a_visible_policy_and_null_clears_them() {
        let a = agent(json!({"agent_id": "worker", "name": "Worker"}), AgentRefs::default());
        let (member, admin, models) = (member(), admin(), models());
        let named = body(json!({"model_names": ["gpt-4.1", "claude-sonnet-4"]}));
        let with_models = update_agent(&a, &put(&named, AgentRefs::default(), &member, &models)).unwrap();
        assert_eq!(
            changes(&with_models),
            &ContainerAgentChanges {
                model_policy_id: Some(Some(auto_policy(a.id))),
                models: Some(models.clone()),
                ..Default::default()
            }
        );
        let peer = PolicyOwner {
            id: Uuid::now_v7(),
            created_by: "user:someone-else".into(),
            models: vec!["gemini-2.5-pro".into()],
        };
        let via = body(json!({"model_policy_id": auto_policy(peer.id)}));
        let owner = || AgentRefs {
            policy_owner: Some(peer.clone()),
            ..Default::default()
        };
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), &put(&via, owner(), &member, &models)))
            .then_err(DomainError::invalid("Model policy not found"));
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), &put(&via, owner(), &admin, &models)))
            .then(|events| {
                assert_eq!(changes(events).model_policy_id, Some(Some(auto_policy(peer.id))));
                assert_eq!(changes(events).models, Some(peer.models.clone()));
            });
        let a = with_models.iter().fold(Some(a), ContainerAgent::evolve).unwrap();
        for clear in [json!({"model_policy_id": null}), json!({"model_names": []})] {
            let b = body(clear);
            given(Some(a.clone()))
                .when(|s| update_agent(s.unwrap(), &put(&b, AgentRefs::default(), &member, &models)))
                .then(|events| {
                    assert_eq!(
                        changes(events),
                        &ContainerAgentChanges {
                            model_policy_id: Some(None),
                            models: Some(vec![]),
                            ..Default::default()
                        }
                    )
                });
        }
    }

    #[test]
    fn a_container_profile_is_set_by_reference_and_cleared_by_null() {
        let a = agent(json!({"agent_id": "worker", "name": "Worker"}), AgentRefs::default());
        let (caller, models) = (member(), models());
        let profile = Uuid::now_v7();
        let set = body(json!({"container_profile_id": profile.to_string()}));
        let refs = AgentRefs {
            container_profile: Some(profile),
            ..Default::default()
        };
        let events = update_agent(&a, &put(&set, refs, &caller, &models)).unwrap();
        assert_eq!(changes(&events).container_profile_id, Some(Some(profile)));
        let a = events.iter().fold(Some(a), ContainerAgent::evolve).unwrap();
        let clear = body(json!({"container_profile_id": null}));
        given(Some(a))
            .when(|s| update_agent(s.unwrap(), &put(&clear, AgentRefs::default(), &caller, &models)))
            .then(|events| assert_eq!(changes(events).container_profile_id, Some(None)));
    }

    // ---- skills and container profiles ----------------------------------------------------------

    fn new_resource() -> NewResource {
        NewResource {
            id: Uuid::now_v7(),
            org_id: Uuid::nil(),
            created_by: "user:admin".into(),
            at: Utc::now(),
        }
    }

    #[test]
    fn a_skill_gets_defaults_normalized_tools_and_records_its_changes() {
        let new = new_resource();
        let created =
            body_of_skill(json!({"name": "git", "tools": [{"name": "git"}, {"name": "gh", "id": "nonsense", "install_method": "apt"}]}));
        let events = create_skill(None, &new, &created).unwrap();
        let skill = events.iter().fold(None, Skill::evolve).unwrap();
        assert_eq!(
            (skill.scope.as_str(), &skill.tools_config),
            ("container_local", &default_tools_config())
        );
        let git = Tool {
            id: Uuid::new_v5(&new.id, b"git"),
            name: "git".into(),
            description: String::new(),
            install_method: "builtin".into(),
        };
        assert_eq!(skill.tools[0], git);
        assert_eq!(skill.tools[1].id, Uuid::new_v5(&new.id, b"gh"));
        assert_eq!(skill.tools[1].install_method, "apt");
        let rename = body_of_skill(json!({"name": "git-tools", "tools": [{"name": "git"}, {"name": "gh", "install_method": "apt"}]}));
        given(Some(skill.clone()))
            .when(|s| update_skill(s.unwrap(), &rename, Utc::now()))
            .then(|events| match events {
                [SkillEvent::Updated(u)] => assert_eq!(u.changes.names(), ["name"]),
                other => panic!("{other:?}"),
            });
        for (json, message) in [
            (json!({"name": " "}), "name is required"),
            (
                json!({"scope": "root"}),
                "scope must be one of: container_local, host_docker, vps_system",
            ),
            (json!({"tools_config": "x"}), "tools_config must be an object"),
            (json!({"tools": {}}), "tools must be an array"),
            (json!({"tools": ["git"]}), "tools must be an array of objects"),
            (json!({"tools": [{"description": "no name"}]}), "Each tool needs a name"),
        ] {
            let b = body_of_skill(json);
            given(Some(skill.clone()))
                .when(|s| update_skill(s.unwrap(), &b, Utc::now()))
                .then_err(DomainError::invalid(message));
        }
    }

    fn body_of_skill(json: Value) -> SkillBody {
        SkillBody::from_json(json.as_object().unwrap())
    }

    fn body_of_profile(json: Value) -> ProfileBody {
        ProfileBody::from_json(json.as_object().unwrap())
    }

    #[test]
    fn a_container_profile_checks_its_limits_whether_sent_or_kept() {
        let created = body_of_profile(json!({"name": "big", "docker_image": "agentbox:big", "default_cpus": "2"}));
        let events = create_profile(None, &new_resource(), &created).unwrap();
        let profile = events.iter().fold(None, ContainerProfile::evolve).unwrap();
        assert_eq!(
            (
                profile.default_cpus.as_str(),
                profile.default_mem_limit.as_str(),
                profile.default_pids_limit
            ),
            ("2", "1g", 200)
        );
        given(None)
            .when(|existing| create_profile(existing, &new_resource(), &body_of_profile(json!({"name": "no image"}))))
            .then_err(DomainError::invalid("docker_image is required"));
        let change = body_of_profile(json!({"description": "Big box", "default_pids_limit": 250}));
        given(Some(profile.clone()))
            .when(|s| update_profile(s.unwrap(), &change, Utc::now()))
            .then(|events| match events {
                [ContainerProfileEvent::Updated(u)] => assert_eq!(u.changes.names(), ["description", "default_pids_limit"]),
                other => panic!("{other:?}"),
            });
        for (json, message) in [
            (json!({"default_pids_limit": "9"}), "default_pids_limit must be an integer"),
            (json!({"default_pids_limit": 0}), "pids_limit must be an integer from 1 to 300"),
            (
                json!({"default_cpus": "9"}),
                "cpus must be a decimal number greater than 0 and at most 4",
            ),
            (json!({"default_mem_limit": 1}), "default_mem_limit must be a string"),
        ] {
            let b = body_of_profile(json);
            given(Some(profile.clone()))
                .when(|s| update_profile(s.unwrap(), &b, Utc::now()))
                .then_err(DomainError::invalid(message));
        }
    }
}
