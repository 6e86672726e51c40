//! The container agents surface, wire-compatible with Hill90's `/skills`,
//! `/container-profiles` and `/agents`. Errors are `{"error": "..."}`; validation errors
//! are 400s. Roles: `admin` is Hill90's admin; a `member` (Hill90's user) sees and edits
//! only the agents it created (others are 404); a `viewer` reads only its own. Start,
//! stop and delete are admin-only.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleetledger_events::container::{
    ContainerAgentEvent, ContainerFailed, ContainerProfileEvent, ContainerStarted, ContainerStopped, Removed, SkillEvent,
};
use fleetledger_projections::container::{ContainerAgent, ContainerProfile, Skill};
use fleetledger_projections::ReadModel;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{tagged, JsonBody, RequestMeta, Surface};
use crate::auth::{presented_token, Principal, Role};
use crate::domain::container::{
    self as rules, AgentBody, AgentCommand, AgentRefs, Caller, NewResource, PolicyOwner, ProfileBody, SkillBody, SkillRef,
};
use crate::domain::DomainError;
use crate::ledger::{WriteContext, WriteError};
use crate::state::AppState;
use crate::store::StoreError;
use crate::streams::Audited;
use crate::workers::drivers::container::ContainerSpec;

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
            DomainError::Forbidden(m) => HillError::new(StatusCode::FORBIDDEN, m),
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
            .authenticate_request(token)
            .await
            .map_err(|_| HillError::new(StatusCode::UNAUTHORIZED, "Invalid or expired token"))?;
        Ok(HillPrincipal(super::unscoped::<HillError>(principal)?))
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

fn body_of(body: JsonBody<HillError>) -> Result<Map<String, Value>, HillError> {
    let bytes = body
        .bytes()
        .ok_or_else(|| HillError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) if super::too_deep_fields(&map) => Err(HillError::bad_request(super::TOO_DEEP)),
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

/// The caller, as the container rules see it.
fn caller(p: &Principal) -> Caller {
    Caller {
        principal_id: p.principal_id.clone(),
        admin: is_admin(p),
    }
}

/// A resource the caller creates now.
fn new_resource(principal: &Principal, id: Uuid) -> NewResource {
    NewResource {
        id,
        org_id: principal.org_id,
        created_by: principal.principal_id.clone(),
        at: Utc::now(),
    }
}

/// Creates a stream by `decide`, which sees whether the stream already exists; answers
/// the model and its stream version.
async fn create_stream<M: ReadModel>(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: Uuid,
    decide: impl Fn(Option<&M>) -> Result<Vec<M::Event>, DomainError>,
) -> Result<(M, i64), HillError> {
    let written = state
        .ledger
        .write_stream::<M, HillError>(&id.to_string(), &meta.write_context(principal), |existing| Ok(decide(existing)?))
        .await?;
    let version = written.version;
    let model = written.model.ok_or_else(|| HillError::internal("a created resource exists"))?;
    Ok((model, version))
}

/// Changes a stream by `decide`, against its latest state; answers the model and its
/// stream version.
async fn update_stream<M: ReadModel>(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: Uuid,
    decide: impl Fn(&M) -> Result<Vec<M::Event>, DomainError>,
) -> Result<(M, i64), HillError> {
    let written = state
        .ledger
        .write::<M, HillError>(&id.to_string(), &meta.write_context(principal), |current| Ok(decide(current)?))
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

#[utoipa::path(get, path = "/skills", tag = "container_agents", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::Skill>, description = "Skills by name")))]
async fn list_skills(State(state): State<AppState>, HillPrincipal(principal): HillPrincipal) -> Response {
    let mut skills = live::<Skill>(&state, &principal);
    skills.sort_by(|a, b| a.name.cmp(&b.name));
    Json(skills.iter().map(skill_json).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/skills", tag = "container_agents", security(("bearer" = [])), request_body(content = wire::SkillInput),
    responses((status = 201, body = wire::Skill, description = "The skill" ), (status = 403, description = "Requires admin role")))]
async fn create_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    body: JsonBody<HillError>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let new = new_resource(&principal, Uuid::now_v7());
    let body = SkillBody::from_json(&body_of(body)?);
    let (skill, version): (Skill, _) = create_stream(&state, &meta, &principal, new.id, |existing| {
        rules::create_skill(existing, &new, &body)
    })
    .await?;
    Ok(tagged(version, (StatusCode::CREATED, Json(skill_json(&skill)))))
}

#[utoipa::path(get, path = "/skills/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, body = wire::Skill, description = "The skill")))]
async fn get_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    let (version, skill) = found::<Skill>(&state, &principal, &id, "Skill").await?;
    Ok(tagged(version, Json(skill_json(&skill))))
}

#[utoipa::path(put, path = "/skills/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")), request_body(content = wire::SkillInput),
    responses((status = 200, body = wire::Skill, description = "The skill")))]
async fn update_skill(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<HillError>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let skill = find::<Skill>(&state, &principal, &id, "Skill").await?;
    let body = SkillBody::from_json(&body_of(body)?);
    let now = Utc::now();
    let (skill, version): (Skill, _) = update_stream(&state, &meta, &principal, skill.id, |current| {
        rules::update_skill(current, &body, now)
    })
    .await?;
    Ok(tagged(version, Json(skill_json(&skill))))
}

#[utoipa::path(delete, path = "/skills/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, body = wire::Deleted, description = "Deleted")))]
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

#[utoipa::path(get, path = "/container-profiles", tag = "container_agents", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::ContainerProfile>, description = "Container profiles by name")))]
async fn list_profiles(State(state): State<AppState>, HillPrincipal(principal): HillPrincipal) -> Response {
    let mut profiles = live::<ContainerProfile>(&state, &principal);
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Json(profiles.iter().map(profile_json).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/container-profiles", tag = "container_agents", security(("bearer" = [])), request_body(content = wire::ContainerProfileInput),
    responses((status = 201, body = wire::ContainerProfile, description = "The profile")))]
async fn create_profile(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    body: JsonBody<HillError>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let body = ProfileBody::from_json(&body_of(body)?);
    let new = new_resource(&principal, Uuid::now_v7());
    let (profile, version): (ContainerProfile, _) = create_stream(&state, &meta, &principal, new.id, |existing| {
        rules::create_profile(existing, &new, &body)
    })
    .await?;
    Ok(tagged(version, (StatusCode::CREATED, Json(profile_json(&profile)))))
}

#[utoipa::path(get, path = "/container-profiles/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, body = wire::ContainerProfile, description = "The profile")))]
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

#[utoipa::path(put, path = "/container-profiles/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")), request_body(content = wire::ContainerProfileInput),
    responses((status = 200, body = wire::ContainerProfile, description = "The profile")))]
async fn update_profile(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<HillError>,
) -> Result<Response, HillError> {
    require_admin(&principal)?;
    let profile = find::<ContainerProfile>(&state, &principal, &id, "Container profile").await?;
    let body = ProfileBody::from_json(&body_of(body)?);
    let now = Utc::now();
    let (profile, version): (ContainerProfile, _) = update_stream(&state, &meta, &principal, profile.id, |current| {
        rules::update_profile(current, &body, now)
    })
    .await?;
    Ok(tagged(version, Json(profile_json(&profile))))
}

#[utoipa::path(delete, path = "/container-profiles/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, body = wire::Deleted, description = "Deleted" ), (status = 409, description = "The profile is in use")))]
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

/// What an agent body references, looked up for its rules: the skills `skill_ids` names
/// (live, of the caller's org), the agent's current skills, the named container profile,
/// and the agent whose policy `model_policy_id` names.
fn agent_refs(state: &AppState, principal: &Principal, body: &AgentBody, current_skills: &[Uuid]) -> AgentRefs {
    let skills = state.ledger.models.cache::<Skill>();
    let named_skill = |id: &str| {
        skills
            .get(id)
            .filter(|s| s.model.org_id == principal.org_id && s.model.deleted_at.is_none())
            .map(|s| SkillRef::from(&*s.model))
    };
    AgentRefs {
        skills: body
            .named_skills()
            .unwrap_or_default()
            .into_iter()
            .map(|id| id.and_then(named_skill))
            .collect(),
        current_skills: current_skills
            .iter()
            .filter_map(|id| skills.get(&id.to_string()))
            .map(|s| SkillRef::from(&*s.model))
            .collect(),
        container_profile: body
            .named_profile()
            .and_then(|id| state.ledger.models.cache::<ContainerProfile>().get(id))
            .filter(|p| p.model.org_id == principal.org_id && p.model.deleted_at.is_none())
            .map(|p| p.model.id),
        policy_owner: body.named_policy().and_then(|policy| {
            state
                .ledger
                .models
                .all_live_in_org::<ContainerAgent>(principal.org_id)
                .into_iter()
                .find(|a| rules::auto_policy(a.id) == policy)
                .map(|a| PolicyOwner {
                    id: a.id,
                    created_by: a.created_by.clone(),
                    models: a.models.clone(),
                })
        }),
    }
}

#[utoipa::path(get, path = "/agents", tag = "container_agents", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::ContainerAgent>, description = "The caller's agents (all of the org's for admins), newest first")))]
async fn list_agents(State(state): State<AppState>, HillPrincipal(principal): HillPrincipal) -> Response {
    let mut agents: Vec<ContainerAgent> = live::<ContainerAgent>(&state, &principal)
        .into_iter()
        .filter(|a| is_admin(&principal) || a.created_by == principal.principal_id)
        .collect();
    agents.sort_by_key(|a| std::cmp::Reverse((a.created_at, a.id)));
    Json(agents.iter().map(|a| agent_json(&state, a)).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/agents", tag = "container_agents", security(("bearer" = [])), request_body(content = wire::ContainerAgentInput),
    responses((status = 201, body = wire::ContainerAgent, description = "The agent" ), (status = 409, description = "An agent with this agent_id already exists")))]
async fn create_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    body: JsonBody<HillError>,
) -> Result<Response, HillError> {
    if !principal.may_write() {
        return Err(HillError::new(StatusCode::FORBIDDEN, "Insufficient permissions"));
    }
    let body = AgentBody::from_json(&body_of(body)?);
    let (id, agent_id) = rules::new_agent_id(principal.org_id, &body)?;
    let new = new_resource(&principal, id);
    let caller = caller(&principal);
    let cmd = AgentCommand {
        body: &body,
        refs: agent_refs(&state, &principal, &body, &[]),
        caller: &caller,
        available_models: &state.settings.available_models,
        now: new.at,
    };
    let (agent, version): (ContainerAgent, _) = create_stream(&state, &meta, &principal, id, |existing| {
        rules::create_agent(existing, &new, &agent_id, &cmd)
    })
    .await?;
    Ok(tagged(version, (StatusCode::CREATED, Json(agent_json(&state, &agent)))))
}

#[utoipa::path(get, path = "/agents/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")),
    responses((status = 200, body = wire::ContainerAgent, description = "The agent")))]
async fn get_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    Path(id): Path<String>,
) -> Result<Response, HillError> {
    let (version, agent) = visible_agent(&state, &principal, &id).await?;
    Ok(tagged(version, Json(agent_json(&state, &agent))))
}

#[utoipa::path(put, path = "/agents/{id}", tag = "container_agents", security(("bearer" = [])), params(("id" = String, Path, description = "Id")), request_body(content = wire::ContainerAgentInput),
    responses((status = 200, body = wire::ContainerAgent, description = "The agent" ), (status = 400, description = "Invalid field"), (status = 409, description = "Cannot update a running agent. Stop it first.")))]
async fn update_agent(
    State(state): State<AppState>,
    HillPrincipal(principal): HillPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<HillError>,
) -> Result<Response, HillError> {
    let (_, agent) = visible_agent(&state, &principal, &id).await?;
    if !principal.may_write() {
        return Err(HillError::new(StatusCode::FORBIDDEN, "Insufficient permissions"));
    }
    let body = AgentBody::from_json(&body_of(body)?);
    // A running agent is refused before any precondition is checked; the decision checks
    // again against the latest state.
    rules::updatable(&agent)?;
    let caller = caller(&principal);
    let now = Utc::now();
    let (after, version) = update_stream(&state, &meta, &principal, agent.id, |current: &ContainerAgent| {
        let cmd = AgentCommand {
            body: &body,
            refs: agent_refs(&state, &principal, &body, &current.skill_ids),
            caller: &caller,
            available_models: &state.settings.available_models,
            now,
        };
        rules::update_agent(current, &cmd)
    })
    .await?;
    Ok(tagged(version, Json(agent_json(&state, &after))))
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
    responses((status = 200, body = wire::ContainerAgent, description = "The agent, running or in error"), (status = 409, description = "Already running")))]
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
    responses((status = 200, body = wire::ContainerAgent, description = "The agent, stopped")))]
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
    responses((status = 200, body = wire::Deleted, description = "Deleted")))]
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
    components(schemas(wire::Hill90Error)),
    tags((name = "container_agents", description = "Skills, container profiles and container agents (Hill90-compatible)"))
)]
pub struct ContainerAgentsApi;

/// The shapes of this surface's bodies, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    /// Hill90's error body.
    #[derive(ToSchema)]
    pub struct Hill90Error {
        pub error: String,
    }

    #[derive(ToSchema)]
    pub struct Tool {
        pub id: String,
        pub name: String,
        pub description: String,
        pub install_method: String,
    }

    #[derive(ToSchema)]
    pub struct Skill {
        pub id: String,
        pub name: String,
        /// `container_local`, `host_docker` or `vps_system`
        pub scope: String,
        pub tools_config: Value,
        pub tools: Vec<Tool>,
        pub created_by: String,
        pub created_at: String,
        pub updated_at: String,
    }

    /// A skill's fields (all of them to create one; any of them to change one).
    #[derive(ToSchema)]
    pub struct SkillInput {
        pub name: Option<String>,
        /// `container_local`, `host_docker` or `vps_system`
        pub scope: Option<String>,
        pub tools_config: Option<Map<String, Value>>,
        /// `{name, description?, install_method?}` each
        pub tools: Option<Vec<Map<String, Value>>>,
    }

    #[derive(ToSchema)]
    pub struct ContainerProfile {
        pub id: String,
        pub name: String,
        pub description: String,
        pub docker_image: String,
        pub default_cpus: String,
        pub default_mem_limit: String,
        pub default_pids_limit: i64,
        pub created_at: String,
        pub updated_at: String,
    }

    /// A container profile's fields (`name` and `docker_image` to create one; any of them
    /// to change one).
    #[derive(ToSchema)]
    pub struct ContainerProfileInput {
        pub name: Option<String>,
        pub description: Option<String>,
        pub docker_image: Option<String>,
        pub default_cpus: Option<String>,
        pub default_mem_limit: Option<String>,
        pub default_pids_limit: Option<i64>,
    }

    #[derive(ToSchema)]
    pub struct AgentSkill {
        pub id: String,
        pub name: String,
        pub scope: String,
        pub tools: Vec<Tool>,
    }

    #[derive(ToSchema)]
    pub struct AgentContainerProfile {
        pub id: String,
        pub name: String,
        pub docker_image: String,
    }

    #[derive(ToSchema)]
    pub struct ContainerAgent {
        pub id: String,
        pub agent_id: String,
        pub name: String,
        pub description: String,
        pub tools_config: Value,
        pub cpus: String,
        pub mem_limit: String,
        pub pids_limit: i64,
        pub soul_md: String,
        pub rules_md: String,
        pub autonomy_level: String,
        /// `stopped`, `running` or `error`
        pub status: String,
        #[schema(required)]
        pub container_id: Option<String>,
        #[schema(required)]
        pub model_policy_id: Option<String>,
        pub models: Vec<String>,
        pub skills: Vec<AgentSkill>,
        #[schema(required)]
        pub container_profile_id: Option<String>,
        #[schema(required)]
        pub container_profile: Option<AgentContainerProfile>,
        #[schema(required)]
        pub error_message: Option<String>,
        pub created_at: String,
        pub updated_at: String,
        pub created_by: String,
        pub principal_id: String,
        pub principal_type: String,
    }

    /// An agent's fields (`agent_id` and `name` to create one; any of the others to change
    /// one with `PUT`).
    #[derive(ToSchema)]
    pub struct ContainerAgentInput {
        /// Only on creation
        pub agent_id: Option<String>,
        pub name: Option<String>,
        pub description: Option<String>,
        pub tools_config: Option<Map<String, Value>>,
        /// Up to 4
        pub cpus: Option<String>,
        /// Up to 16 GiB (`2g`, `512m`)
        pub mem_limit: Option<String>,
        /// 1 to 300
        pub pids_limit: Option<i64>,
        pub soul_md: Option<String>,
        pub rules_md: Option<String>,
        pub autonomy_level: Option<String>,
        pub model_policy_id: Option<String>,
        /// Names from the server's available models
        pub model_names: Option<Vec<String>>,
        pub skill_ids: Option<Vec<String>>,
        pub container_profile_id: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Deleted {
        pub deleted: bool,
    }
}
