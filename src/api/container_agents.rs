//! The container agents surface, wire-compatible with Hill90's `/skills`,
//! `/container-profiles` and `/agents`. Errors are `{"error": "..."}`; validation errors
//! are 400s. Roles: `admin` is Hill90's admin; a `member` (Hill90's user) sees and edits
//! only the agents it created (others are 404); a `viewer` reads only its own. Start,
//! stop and delete are admin-only.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleetledger_events::container::{
    Changed, ContainerAgentEvent, ContainerFailed, ContainerProfileEvent, ContainerStarted, ContainerStopped, Defined, Removed, SkillEvent,
};
use fleetledger_projections::container::{agent_defaults, ContainerAgent, ContainerProfile, Skill};
use fleetledger_projections::ReadModel;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{read_body, tagged, RequestMeta, Surface};
use crate::auth::{presented_token, Principal, Role};
use crate::domain::container::{self as rules, AUTONOMY_LEVELS, PRIVILEGED_SCOPES, SKILL_SCOPES};
use crate::domain::DomainError;
use crate::ledger::{WriteContext, WriteError};
use crate::state::AppState;
use crate::store::StoreError;
use crate::streams::Audited;
use crate::workers::drivers::container::ContainerSpec;

const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/skills", get(list_skills).post(create_skill))
        .route("/skills/{id}", get(get_skill).put(update_skill).delete(delete_skill))
        .route("/container-profiles", get(list_profiles).post(create_profile))
        .route(
            "/container-profiles/{id}",
            get(get_profile).put(update_profile).delete(delete_profile),
        )
        .route("/agents", get(list_agents).post(create_agent))
        .route("/agents/{id}", get(get_agent).put(update_agent).delete(delete_agent))
        .route("/agents/{id}/start", post(start_agent))
        .route("/agents/{id}/stop", post(stop_agent))
}

/// Hill90's error body.
#[derive(Debug)]
pub struct HillError {
    status: StatusCode,
    message: String,
}

impl HillError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HillError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    fn admin_only() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Requires admin role")
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "container agents API failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<StoreError> for HillError {
    fn from(error: StoreError) -> Self {
        HillError::internal(error)
    }
}

impl From<DomainError> for HillError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound => HillError::not_found("Agent"),
            DomainError::Invalid(m) => HillError::bad_request(m),
            DomainError::AlreadyExists(m) | DomainError::Conflict(m) => HillError::new(StatusCode::CONFLICT, m),
        }
    }
}

impl super::Envelope for HillError {
    fn status(status: StatusCode, message: &str) -> Self {
        HillError::new(status, message)
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        HillError::internal(error)
    }
}

impl From<WriteError<HillError>> for HillError {
    fn from(error: WriteError<HillError>) -> Self {
        super::refused(error, "Agent not found")
    }
}

impl IntoResponse for HillError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

pub struct HillPrincipal(Principal);

impl FromRequestParts<AppState> for HillPrincipal {
    type Rejection = HillError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, HillError> {
        let token = presented_token(&parts.headers).map_err(|_| HillError::new(StatusCode::UNAUTHORIZED, "Authentication required"))?;
        let principal = state
            .auth
            .authenticate(token, Utc::now())
            .await
            .map_err(|_| HillError::new(StatusCode::UNAUTHORIZED, "Invalid or expired token"))?;
        Ok(HillPrincipal(principal))
    }
}

fn is_admin(p: &Principal) -> bool {
    p.role == Role::Admin
}

fn require_admin(p: &Principal) -> Result<(), HillError> {
    if is_admin(p) {
        Ok(())
    } else {
        Err(HillError::admin_only())
    }
}

/// ISO 8601 with milliseconds and `Z`, as Express serializes dates.
fn hill_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

async fn body_of(body: Body) -> Result<Map<String, Value>, HillError> {
    let bytes = read_body(body, MAX_BODY_BYTES)
        .await
        .map_err(HillError::internal)?
        .ok_or_else(|| HillError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(HillError::bad_request("Request body must be a JSON object")),
    }
}

/// A live model of the caller's org by id.
async fn find<M: ReadModel>(state: &AppState, principal: &Principal, id: &str, what: &str) -> Result<M, HillError> {
    Ok(found::<M>(state, principal, id, what).await?.1)
}

/// Like `find`, with the model's stream version.
async fn found<M: ReadModel>(state: &AppState, principal: &Principal, id: &str, what: &str) -> Result<(i64, M), HillError> {
    let cached = super::live::<M, HillError>(state, principal.org_id, id, &format!("{what} not found")).await?;
    Ok((cached.version, (*cached.model).clone()))
}

fn live<M: ReadModel>(state: &AppState, principal: &Principal) -> Vec<M> {
    state
        .ledger
        .models
        .all_live_in_org::<M>(principal.org_id)
        .into_iter()
        .map(|m| (*m).clone())
        .collect()
}

fn text(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, HillError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(HillError::bad_request(format!("{name} must be a string"))),
    }
}

fn required_text(fields: &Map<String, Value>, name: &str) -> Result<String, HillError> {
    text(fields, name)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| HillError::bad_request(format!("{name} is required")))
}

async fn create_stream<M: ReadModel>(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: Uuid,
    event: M::Event,
) -> Result<(M, i64), HillError> {
    let written = state
        .ledger
        .write_stream::<M, HillError>(&id.to_string(), &meta.write_context(principal), |existing| match existing {
            Some(_) => Err(HillError::new(StatusCode::CONFLICT, "An agent with this agent_id already exists")),
            None => Ok(vec![event.clone()]),
        })
        .await?;
    let version = written.version;
    let model = written.model.ok_or_else(|| HillError::internal("a created resource exists"))?;
    Ok((model, version))
}

fn defined(id: Uuid, principal: &Principal, fields: Map<String, Value>) -> Defined {
    Defined {
        id,
        org_id: principal.org_id,
        fields,
        created_by: principal.principal_id.clone(),
        at: Utc::now(),
    }
}

/// Replaces a resource's fields with `after`, recording exactly what changed.
async fn update_fields<M: ReadModel>(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: Uuid,
    after: Map<String, Value>,
    event: impl Fn(Changed) -> M::Event,
) -> Result<(M, i64), HillError> {
    let now = Utc::now();
    let written = state
        .ledger
        .write::<M, HillError>(&id.to_string(), &meta.write_context(principal), |current| {
            let before = serde_json::to_value(current)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            let changes = rules::changed_fields(&before, &after);
            Ok(vec![event(Changed { changes, at: now })])
        })
        .await?;
    let version = written.version;
    Ok((written.into_model(), version))
}

/// Records a resource's deletion; answers Hill90's `{"deleted": true}` at the new version.
async fn remove<M: ReadModel>(
    state: &AppState,
    context: &WriteContext,
    id: Uuid,
    event: impl Fn(Removed) -> M::Event,
) -> Result<Response, HillError> {
    let now = Utc::now();
    let written = state
        .ledger
        .write::<M, HillError>(&id.to_string(), context, |_| Ok(vec![event(Removed { at: now })]))
        .await?;
    Ok(tagged(written.version, Json(json!({ "deleted": true }))))
}

// ---- skills -------------------------------------------------------------------------------

fn skill_json(s: &Skill) -> Value {
    json!({
        "id": s.id, "name": s.name, "scope": s.scope, "tools_config": s.tools_config, "tools": s.tools,
        "created_by": s.created_by, "created_at": hill_time(&s.created_at), "updated_at": hill_time(&s.updated_at),
    })
}

/// A skill's fields from a body, over `base`.
fn skill_fields(
    id: Uuid,
    body: &Map<String, Value>,
    mut base: Map<String, Value>,
    creating: bool,
) -> Result<Map<String, Value>, HillError> {
    if creating || body.contains_key("name") {
        base.insert("name".into(), required_text(body, "name")?.into());
    }
    if let Some(scope) = text(body, "scope")? {
        if !SKILL_SCOPES.contains(&scope.as_str()) {
            return Err(HillError::bad_request(
                "scope must be one of: container_local, host_docker, vps_system",
            ));
        }
        base.insert("scope".into(), scope.into());
    } else if creating {
        base.insert("scope".into(), "container_local".into());
    }
    match body.get("tools_config") {
        Some(v @ Value::Object(_)) => {
            base.insert("tools_config".into(), v.clone());
        }
        None | Some(Value::Null) if creating => {
            base.insert("tools_config".into(), rules::default_tools_config());
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(HillError::bad_request("tools_config must be an object")),
    }
    match body.get("tools") {
        Some(Value::Array(tools)) => {
            let mut out = Vec::new();
            for tool in tools {
                let Some(t) = tool.as_object() else {
                    return Err(HillError::bad_request("tools must be an array of objects"));
                };
                let name = t
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| HillError::bad_request("Each tool needs a name"))?;
                let tool_id = t
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .unwrap_or_else(|| Uuid::new_v5(&id, name.as_bytes()));
                out.push(json!({
                    "id": tool_id,
                    "name": name,
                    "description": t.get("description").and_then(Value::as_str).unwrap_or_default(),
                    "install_method": t.get("install_method").and_then(Value::as_str).unwrap_or("builtin"),
                }));
            }
            base.insert("tools".into(), Value::Array(out));
        }
        None | Some(Value::Null) if creating => {
            base.insert("tools".into(), json!([]));
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(HillError::bad_request("tools must be an array")),
    }
    Ok(base)
}

#[utoipa::path(get, path = "/skills", tag = "container_agents", security(("bearer" = [])),
    responses((status = 200, description = "`[skill]` by name")))]
async fn list_skills(State(state): State<AppState>, HillPrincipal(principal): HillPrincipal) -> Response {
    let mut skills = live::<Skill>(&state, &principal);
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    Json(skills.iter().map(skill_json).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/skills", tag = "container_agents", security(("bearer" = [])), request_body(content = Object, description = "`{name, scope (container_local|host_docker|vps_system), tools_config, tools[]}`"),
    responses((status = 201, description = "The skill" ), (status = 403, description = "Requires admin role")))]
async fn create_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    body: Body,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let id = Uuid::now_v7();
    let fields = skill_fields(id, &body_of(body).await?, Map::new(), true)?;
    let (skill, version): (Skill, _) =
        create_stream(&state, &meta, &principal, id, SkillEvent::Created(defined(id, &principal, fields))).await?;
    Ok(tagged(version, (StatusCode::CREATED, Json(skill_json(&skill)))))
}

#[utoipa::path(get, path = "/skills/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "The skill")))]
async fn get_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    let (version, skill) = found::<Skill>(&state, &principal, &id, "Skill").await?;
    Ok(tagged(version, Json(skill_json(&skill))))
}

fn fields_of<M: serde::Serialize>(model: &M, keys: &[&str]) -> Map<String, Value> {
    let all = serde_json::to_value(model)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    all.into_iter().filter(|(k, _)| keys.contains(&k.as_str())).collect()
}

#[utoipa::path(put, path = "/skills/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")), request_body(content = Object, description = "Any of `{name, scope, tools_config, tools}`"),
    responses((status = 200, description = "The skill")))]
async fn update_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let skill = find::<Skill>(&state, &principal, &id, "Skill").await?;
    let base = fields_of(&skill, &["name", "scope", "tools_config", "tools"]);
    let after = skill_fields(skill.id, &body_of(body).await?, base, false)?;
    let (skill, version): (Skill, _) = update_fields(&state, &meta, &principal, skill.id, after, SkillEvent::Updated).await?;
    Ok(tagged(version, Json(skill_json(&skill))))
}

#[utoipa::path(delete, path = "/skills/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "`{\"deleted\": true}`")))]
async fn delete_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let skill = find::<Skill>(&state, &principal, &id, "Skill").await?;
    remove::<Skill>(&state, &meta.write_context(&principal), skill.id, SkillEvent::Deleted).await
}

// ---- container profiles -------------------------------------------------------------------

fn profile_json(p: &ContainerProfile) -> Value {
    json!({
        "id": p.id, "name": p.name, "description": p.description, "docker_image": p.docker_image,
        "default_cpus": p.default_cpus, "default_mem_limit": p.default_mem_limit, "default_pids_limit": p.default_pids_limit,
        "created_at": hill_time(&p.created_at), "updated_at": hill_time(&p.updated_at),
    })
}

fn profile_fields(body: &Map<String, Value>, mut base: Map<String, Value>, creating: bool) -> Result<Map<String, Value>, HillError> {
    if creating || body.contains_key("name") {
        base.insert("name".into(), required_text(body, "name")?.into());
    }
    if creating || body.contains_key("docker_image") {
        base.insert("docker_image".into(), required_text(body, "docker_image")?.into());
    }
    let defaults = [
        ("description", json!("")),
        ("default_cpus", json!("1.0")),
        ("default_mem_limit", json!("1g")),
    ];
    for (name, default) in defaults {
        match text(body, name)? {
            Some(v) => {
                base.insert(name.into(), v.into());
            }
            None if creating => {
                base.insert(name.into(), default);
            }
            None => {}
        }
    }
    match body.get("default_pids_limit") {
        Some(v) => {
            let pids = v
                .as_i64()
                .ok_or_else(|| HillError::bad_request("default_pids_limit must be an integer"))?;
            rules::check_pids(pids)?;
            base.insert("default_pids_limit".into(), pids.into());
        }
        None if creating => {
            base.insert("default_pids_limit".into(), 200.into());
        }
        None => {}
    }
    rules::check_cpus(base.get("default_cpus").and_then(Value::as_str).unwrap_or_default())?;
    rules::mem_limit_bytes(base.get("default_mem_limit").and_then(Value::as_str).unwrap_or_default())?;
    Ok(base)
}

#[utoipa::path(get, path = "/container-profiles", tag = "container_agents", security(("bearer" = [])),
    responses((status = 200, description = "`[profile]` by name")))]
async fn list_profiles(State(state): State<AppState>, HillPrincipal(principal): HillPrincipal) -> Response {
    let mut profiles = live::<ContainerProfile>(&state, &principal);
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Json(profiles.iter().map(profile_json).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/container-profiles", tag = "container_agents", security(("bearer" = [])), request_body(content = Object, description = "`{name, description, docker_image, default_cpus, default_mem_limit, default_pids_limit}`"),
    responses((status = 201, description = "The profile")))]
async fn create_profile(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    body: Body,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let fields = profile_fields(&body_of(body).await?, Map::new(), true)?;
    let id = Uuid::now_v7();
    let (profile, version): (ContainerProfile, _) = create_stream(
        &state,
        &meta,
        &principal,
        id,
        ContainerProfileEvent::Created(defined(id, &principal, fields)),
    )
    .await?;
    Ok(tagged(version, (StatusCode::CREATED, Json(profile_json(&profile)))))
}

#[utoipa::path(get, path = "/container-profiles/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "The profile")))]
async fn get_profile(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    Ok(Json(profile_json(
        &find::<ContainerProfile>(&state, &principal, &id, "Container profile").await?,
    ))
    .into_response())
}

#[utoipa::path(put, path = "/container-profiles/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")), request_body(content = Object, description = "Any of the profile's fields"),
    responses((status = 200, description = "The profile")))]
async fn update_profile(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let profile = find::<ContainerProfile>(&state, &principal, &id, "Container profile").await?;
    let keys = [
        "name",
        "description",
        "docker_image",
        "default_cpus",
        "default_mem_limit",
        "default_pids_limit",
    ];
    let after = profile_fields(&body_of(body).await?, fields_of(&profile, &keys), false)?;
    let (profile, version): (ContainerProfile, _) =
        update_fields(&state, &meta, &principal, profile.id, after, ContainerProfileEvent::Updated).await?;
    Ok(tagged(version, Json(profile_json(&profile))))
}

#[utoipa::path(delete, path = "/container-profiles/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "`{\"deleted\": true}`" ), (status = 409, description = "The profile is in use")))]
async fn delete_profile(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let profile = find::<ContainerProfile>(&state, &principal, &id, "Container profile").await?;
    if live::<ContainerAgent>(&state, &principal)
        .iter()
        .any(|a| a.container_profile_id == Some(profile.id))
    {
        return Err(HillError::new(
            StatusCode::CONFLICT,
            "Container profile is in use by one or more agents",
        ));
    }
    remove::<ContainerProfile>(&state, &meta.write_context(&principal), profile.id, ContainerProfileEvent::Deleted).await
}

// ---- agents -------------------------------------------------------------------------------

/// The automatic model policy of an agent (what `model_names` assigns through).
fn auto_policy(agent: Uuid) -> Uuid {
    Uuid::new_v5(&agent, b"model-policy")
}

/// The agent object, field for field as Hill90 shows it.
pub fn agent_json(state: &AppState, a: &ContainerAgent) -> Value {
    let skills: Vec<Value> = a
        .skill_ids
        .iter()
        .filter_map(|id| state.ledger.models.cache::<Skill>().get(&id.to_string()))
        .map(|s| json!({ "id": s.model.id, "name": s.model.name, "scope": s.model.scope, "tools": s.model.tools }))
        .collect();
    let profile = a
        .container_profile_id
        .and_then(|id| state.ledger.models.cache::<ContainerProfile>().get(&id.to_string()))
        .map(|p| json!({ "id": p.model.id, "name": p.model.name, "docker_image": p.model.docker_image }));
    json!({
        "id": a.id, "agent_id": a.agent_id, "name": a.name, "description": a.description, "tools_config": a.tools_config,
        "cpus": a.cpus, "mem_limit": a.mem_limit, "pids_limit": a.pids_limit, "soul_md": a.soul_md, "rules_md": a.rules_md,
        "autonomy_level": a.autonomy_level, "status": a.status, "container_id": a.container_id,
        "model_policy_id": a.model_policy_id, "models": a.models, "skills": skills,
        "container_profile_id": a.container_profile_id, "container_profile": profile, "error_message": a.error_message,
        "created_at": hill_time(&a.created_at), "updated_at": hill_time(&a.updated_at), "created_by": a.created_by,
        "principal_id": a.id, "principal_type": "agent",
    })
}

/// An agent the caller may see, with its stream version: admins see all of the org's,
/// others only their own.
async fn visible_agent(state: &AppState, principal: &Principal, id: &str) -> Result<(i64, ContainerAgent), HillError> {
    let (version, agent) = found::<ContainerAgent>(state, principal, id, "Agent").await?;
    if !is_admin(principal) && agent.created_by != principal.principal_id {
        return Err(HillError::not_found("Agent"));
    }
    Ok((version, agent))
}

fn uuid_list(body: &Map<String, Value>, name: &str) -> Result<Option<Vec<Value>>, HillError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(_) => Err(HillError::bad_request(format!("{name} must be an array"))),
    }
}

/// Applies a PUT (or a create's body) to an agent's fields, by Hill90's rules.
fn apply_agent_body(
    state: &AppState,
    principal: &Principal,
    agent: Uuid,
    current: &Map<String, Value>,
    body: &Map<String, Value>,
) -> Result<Map<String, Value>, HillError> {
    let mut after = current.clone();
    if body.contains_key("tool_preset_id") {
        return Err(HillError::bad_request("tool_preset_id is deprecated. Use skill_ids instead."));
    }
    if let Some(level) = text(body, "autonomy_level")?.filter(|l| !l.is_empty()) {
        if !AUTONOMY_LEVELS.contains(&level.as_str()) {
            return Err(HillError::bad_request(format!(
                "autonomy_level must be one of: {}",
                AUTONOMY_LEVELS.join(", ")
            )));
        }
        after.insert("autonomy_level".into(), level.into());
    }
    let skill_ids = uuid_list(body, "skill_ids")?;
    let model_names = uuid_list(body, "model_names")?;
    if model_names.is_some() && body.contains_key("model_policy_id") {
        return Err(HillError::bad_request("Use either model_names or model_policy_id, not both"));
    }
    match body.get("model_policy_id") {
        None => {}
        Some(Value::Null) => {
            after.insert("model_policy_id".into(), Value::Null);
            after.insert("models".into(), json!([]));
        }
        Some(v) => {
            let wanted = v.as_str().and_then(|s| Uuid::parse_str(s).ok());
            let owner = live::<ContainerAgent>(state, principal).into_iter().find(|a| {
                Some(auto_policy(a.id)) == wanted && !a.models.is_empty() && (is_admin(principal) || a.created_by == principal.principal_id)
            });
            let Some(owner) = owner else {
                return Err(HillError::bad_request("Model policy not found"));
            };
            after.insert("model_policy_id".into(), json!(auto_policy(owner.id)));
            after.insert("models".into(), json!(owner.models));
        }
    }
    if body.contains_key("container_profile_id") {
        match body.get("container_profile_id") {
            Some(Value::Null) => {
                after.insert("container_profile_id".into(), Value::Null);
            }
            Some(v) => {
                let found = v
                    .as_str()
                    .and_then(|s| state.ledger.models.cache::<ContainerProfile>().get(s))
                    .filter(|p| p.model.org_id == principal.org_id && p.model.deleted_at.is_none())
                    .ok_or_else(|| HillError::bad_request("Container profile not found"))?;
                after.insert("container_profile_id".into(), json!(found.model.id));
            }
            None => {}
        }
    }
    let mut chosen_skills: Option<Vec<Skill>> = None;
    if let Some(ids) = &skill_ids {
        let mut skills = Vec::new();
        for id in ids {
            let skill = id
                .as_str()
                .and_then(|s| state.ledger.models.cache::<Skill>().get(s))
                .filter(|s| s.model.org_id == principal.org_id && s.model.deleted_at.is_none())
                .ok_or_else(|| HillError::bad_request("One or more skills not found"))?;
            skills.push((*skill.model).clone());
        }
        let before: Vec<Uuid> = serde_json::from_value(current.get("skill_ids").cloned().unwrap_or(json!([]))).unwrap_or_default();
        let now: Vec<Uuid> = skills.iter().map(|s| s.id).collect();
        let touched = before
            .iter()
            .filter(|id| !now.contains(id))
            .chain(now.iter().filter(|id| !before.contains(id)));
        let privileged = touched
            .filter_map(|id| state.ledger.models.cache::<Skill>().get(&id.to_string()))
            .any(|s| PRIVILEGED_SCOPES.contains(&s.model.scope.as_str()));
        if privileged && !is_admin(principal) {
            return Err(HillError::new(
                StatusCode::FORBIDDEN,
                "Only admins can assign or remove host_docker or vps_system skills",
            ));
        }
        chosen_skills = Some(skills);
    }
    if let Some(names) = &model_names {
        let mut models = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match name.as_str() {
                Some(n) if state.settings.available_models.iter().any(|m| m == n) => models.push(n.to_string()),
                other => unknown.push(other.map(str::to_string).unwrap_or_else(|| name.to_string())),
            }
        }
        if !unknown.is_empty() {
            return Err(HillError::bad_request(format!("Unknown model names: {}", unknown.join(", "))));
        }
        let policy = if models.is_empty() {
            Value::Null
        } else {
            json!(auto_policy(agent))
        };
        after.insert("model_policy_id".into(), policy);
        after.insert("models".into(), json!(models));
    }
    if let Some(cpus) = text(body, "cpus")?.filter(|c| !c.is_empty()) {
        rules::check_cpus(&cpus)?;
        after.insert("cpus".into(), cpus.into());
    }
    if let Some(mem) = text(body, "mem_limit")?.filter(|m| !m.is_empty()) {
        rules::mem_limit_bytes(&mem)?;
        after.insert("mem_limit".into(), mem.into());
    }
    if let Some(v) = body.get("pids_limit") {
        let pids = v
            .as_i64()
            .ok_or_else(|| HillError::bad_request("pids_limit must be an integer from 1 to 300"))?;
        rules::check_pids(pids)?;
        after.insert("pids_limit".into(), pids.into());
    }
    if let Some(name) = text(body, "name")?.filter(|n| !n.trim().is_empty()) {
        after.insert("name".into(), name.into());
    }
    for field in ["description", "soul_md", "rules_md"] {
        if let Some(v) = text(body, field)? {
            after.insert(field.into(), v.into());
        }
    }
    let body_tools = match body.get("tools_config") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => return Err(HillError::bad_request("tools_config must be an object")),
    };
    match chosen_skills {
        // The skills decide the tools config; a tools_config in the body is ignored.
        Some(skills) if !skills.is_empty() => {
            let configs: Vec<Value> = skills.iter().map(|s| s.tools_config.clone()).collect();
            after.insert("tools_config".into(), rules::merge_tools_configs(&configs));
            after.insert("skill_ids".into(), json!(skills.iter().map(|s| s.id).collect::<Vec<_>>()));
        }
        Some(_) => {
            after.insert("skill_ids".into(), json!([]));
            if let Some(tools) = body_tools {
                after.insert("tools_config".into(), tools);
            }
        }
        None => {
            if let Some(tools) = body_tools {
                after.insert("tools_config".into(), tools);
            }
        }
    }
    Ok(after)
}

const AGENT_FIELDS: [&str; 14] = [
    "name",
    "description",
    "tools_config",
    "cpus",
    "mem_limit",
    "pids_limit",
    "soul_md",
    "rules_md",
    "autonomy_level",
    "model_policy_id",
    "models",
    "skill_ids",
    "container_profile_id",
    "agent_id",
];

#[utoipa::path(get, path = "/agents", tag = "container_agents", security(("bearer" = [])),
    responses((status = 200, description = "The caller's agents (all of the org's for admins), newest first")))]
async fn list_agents(State(state): State<AppState>, HillPrincipal(principal): HillPrincipal) -> Response {
    let mut agents: Vec<ContainerAgent> = live::<ContainerAgent>(&state, &principal)
        .into_iter()
        .filter(|a| is_admin(&principal) || a.created_by == principal.principal_id)
        .collect();
    agents.sort_by_key(|a| std::cmp::Reverse((a.created_at, a.id)));
    Json(agents.iter().map(|a| agent_json(&state, a)).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/agents", tag = "container_agents", security(("bearer" = [])), request_body(content = Object, description = "`{agent_id, name, …}` with the PUT fields"),
    responses((status = 201, description = "The agent" ), (status = 409, description = "An agent with this agent_id already exists")))]
async fn create_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    body: Body,
) -> Result<Response, HillError> {
    if !principal.may_write() {
        return Err(HillError::new(StatusCode::FORBIDDEN, "Insufficient permissions"));
    }
    let body = body_of(body).await?;
    let agent_id = text(&body, "agent_id")?.unwrap_or_default();
    if !rules::valid_agent_id(&agent_id) {
        return Err(HillError::bad_request(
            "agent_id must be lowercase letters, digits and hyphens, start and end with a letter or digit, at most 63 characters",
        ));
    }
    let name = required_text(&body, "name")?;
    let id = Uuid::new_v5(&principal.org_id, format!("container_agent/{agent_id}").as_bytes());
    let mut base = agent_defaults();
    base.insert("agent_id".into(), agent_id.into());
    base.insert("name".into(), name.into());
    base.insert("tools_config".into(), rules::default_tools_config());
    let fields = apply_agent_body(&state, &principal, id, &base, &body)?;
    let (agent, version): (ContainerAgent, _) = create_stream(
        &state,
        &meta,
        &principal,
        id,
        ContainerAgentEvent::Created(defined(id, &principal, fields)),
    )
    .await?;
    Ok(tagged(version, (StatusCode::CREATED, Json(agent_json(&state, &agent)))))
}

#[utoipa::path(get, path = "/agents/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "The agent")))]
async fn get_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    let (version, agent) = visible_agent(&state, &principal, &id).await?;
    Ok(tagged(version, Json(agent_json(&state, &agent))))
}

#[utoipa::path(put, path = "/agents/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")), request_body(content = Object, description = "`{name, description, tools_config, cpus, mem_limit, pids_limit, soul_md, rules_md, model_policy_id, model_names, skill_ids, container_profile_id, autonomy_level}`"),
    responses((status = 200, description = "The agent" ), (status = 400, description = "Invalid field"), (status = 409, description = "Cannot update a running agent. Stop it first.")))]
async fn update_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, HillError> {
    let (_, agent) = visible_agent(&state, &principal, &id).await?;
    if !principal.may_write() {
        return Err(HillError::new(StatusCode::FORBIDDEN, "Insufficient permissions"));
    }
    let body = body_of(body).await?;
    if agent.status == "running" {
        return Err(HillError::new(
            StatusCode::CONFLICT,
            "Cannot update a running agent. Stop it first.",
        ));
    }
    let now = Utc::now();
    let written = state
        .ledger
        .write::<ContainerAgent, HillError>(&agent.id.to_string(), &meta.write_context(&principal), |current| {
            if current.status == "running" {
                return Err(HillError::new(
                    StatusCode::CONFLICT,
                    "Cannot update a running agent. Stop it first.",
                ));
            }
            let before = fields_of(current, &AGENT_FIELDS);
            let fields = apply_agent_body(&state, &principal, current.id, &before, &body)?;
            // Recorded even when nothing changed: the attempt is part of the history.
            Ok(vec![ContainerAgentEvent::Updated(Changed {
                changes: rules::changed_fields(&before, &fields),
                at: now,
            })])
        })
        .await?;
    let version = written.version;
    Ok(tagged(version, Json(agent_json(&state, &written.into_model()))))
}

/// Removes the agent's container (when it has one) and records it stopped; a removal that
/// fails is recorded with the stop, never left `running`.
async fn stop_container(state: &AppState, context: &WriteContext, agent: &ContainerAgent) -> Result<(ContainerAgent, i64), HillError> {
    let removal_error = match &agent.container_id {
        Some(container) => state.containers.remove(&agent.id.to_string(), container).await.err(),
        None => None,
    };
    let now = Utc::now();
    let container_id = agent.container_id.clone();
    let written = state
        .ledger
        .write::<ContainerAgent, HillError>(&agent.id.to_string(), context, |_| {
            Ok(vec![ContainerAgentEvent::Stopped(ContainerStopped {
                container_id: container_id.clone(),
                removal_error: removal_error.clone(),
                at: now,
            })])
        })
        .await?;
    let version = written.version;
    Ok((written.into_model(), version))
}

#[utoipa::path(post, path = "/agents/{id}/start", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "The agent, running or in error")))]
async fn start_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let (version, agent) = visible_agent(&state, &principal, &id).await?;
    // The container runs before the start is recorded: a stale precondition stops it first.
    meta.precondition::<HillError>(version)?;
    if agent.status == "running" {
        return Err(HillError::new(StatusCode::CONFLICT, "Agent is already running"));
    }
    let profile = agent
        .container_profile_id
        .and_then(|p| state.ledger.models.cache::<ContainerProfile>().get(&p.to_string()));
    let image = profile
        .map(|p| p.model.docker_image.clone())
        .unwrap_or_else(|| state.settings.default_agent_image.clone());
    let spec = ContainerSpec {
        agent: agent.id.to_string(),
        image: image.clone(),
        cpus: agent.cpus.clone(),
        mem_limit: agent.mem_limit.clone(),
        pids_limit: agent.pids_limit,
        config: json!({
            "agent_id": agent.agent_id, "soul_md": agent.soul_md, "rules_md": agent.rules_md,
            "tools_config": agent.tools_config, "models": agent.models, "autonomy_level": agent.autonomy_level,
        }),
    };
    let now = Utc::now();
    let event = match state.containers.run(&spec).await {
        Ok(container_id) => ContainerAgentEvent::Started(ContainerStarted {
            container_id,
            image,
            at: now,
        }),
        Err(error) => ContainerAgentEvent::StartFailed(ContainerFailed { error, at: now }),
    };
    let written = state
        .ledger
        .write::<ContainerAgent, HillError>(&agent.id.to_string(), &meta.write_context(&principal), |_| Ok(vec![event.clone()]))
        .await?;
    let version = written.version;
    Ok(tagged(version, Json(agent_json(&state, &written.into_model()))))
}

#[utoipa::path(post, path = "/agents/{id}/stop", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "The agent, stopped")))]
async fn stop_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let (version, agent) = visible_agent(&state, &principal, &id).await?;
    // The container is removed before the stop is recorded.
    meta.precondition::<HillError>(version)?;
    let (after, version) = stop_container(&state, &meta.write_context(&principal), &agent).await?;
    Ok(tagged(version, Json(agent_json(&state, &after))))
}

#[utoipa::path(delete, path = "/agents/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, description = "`{\"deleted\": true}`")))]
async fn delete_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let (version, agent) = visible_agent(&state, &principal, &id).await?;
    meta.precondition::<HillError>(version)?;
    let mut context = meta.write_context(&principal);
    if agent.container_id.is_some() {
        stop_container(&state, &context, &agent).await?;
        // The precondition held for the delete as a whole; its second step follows its first.
        context.if_match = None;
    }
    remove::<ContainerAgent>(&state, &context, agent.id, ContainerAgentEvent::Deleted).await
}

impl Audited for Skill {
    const SURFACE: Surface = Surface::ContainerAgents;

    fn render(&self, _state: &AppState) -> Value {
        skill_json(self)
    }
}

impl Audited for ContainerProfile {
    const SURFACE: Surface = Surface::ContainerAgents;

    fn render(&self, _state: &AppState) -> Value {
        profile_json(self)
    }
}

impl Audited for ContainerAgent {
    const SURFACE: Surface = Surface::ContainerAgents;

    fn render(&self, state: &AppState) -> Value {
        agent_json(state, self)
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_skills, create_skill, get_skill, update_skill, delete_skill, list_profiles, create_profile, get_profile, update_profile,
          delete_profile, list_agents, create_agent, get_agent, update_agent, delete_agent, start_agent, stop_agent),
    tags((name = "container_agents", description = "Skills, container profiles and container agents (Hill90-compatible)"))
)]
pub struct ContainerAgentsApi;
