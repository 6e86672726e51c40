//! The sandbox runtimes surface, wire-compatible with Dreadnode's
//! `/api/v1/org/{org}/ws/{workspace}/runtimes`: ensure-style creation, listing, the
//! durable config (GET/PUT) and the sandbox lifecycle. Errors are Dreadnode's canonical
//! envelope `{"code", "detail", "type", "errors"?}`; validation problems are listed all at
//! once, pydantic-style.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use fleetledger_events::envelope::micros;
use fleetledger_events::runtime::RuntimeEvent;
use fleetledger_projections::org::Org;
use fleetledger_projections::runtime::Runtime;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{refused, tagged, JsonBody, RequestMeta, Surface, MAX_BODY_BYTES};
use crate::auth::{presented_token, Principal, Role};
use crate::domain::runtime::config::{self, at, ConfigLimits, FieldError, Problems};
use crate::domain::runtime::{self as rules, CreateRuntime, Ensured, MaterializedSandbox, StartAction};
use crate::domain::validation::required;
use crate::domain::DomainError;
use crate::state::AppState;
use crate::store::StoreError;
use crate::streams::{Audited, Refusal, RestoreRequest};
use crate::tenancy;

const DEFAULT_PAGE: i64 = 50;
const DEFAULT_EXTEND_SECONDS: i64 = 300;

const BASE: &str = "/api/v1/org/{org}/ws/{workspace}/runtimes";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(BASE, get(list_runtimes).post(create_runtime))
        .route(&format!("{BASE}/{{id}}"), get(get_runtime))
        .route(&format!("{BASE}/{{id}}/config"), get(get_config).put(replace_config))
        .route(&format!("{BASE}/{{id}}/start"), post(start_runtime))
        .route(&format!("{BASE}/{{id}}/pause"), post(pause_runtime))
        .route(&format!("{BASE}/{{id}}/resume"), post(resume_runtime))
        .route(&format!("{BASE}/{{id}}/reset"), post(reset_runtime))
        .route(&format!("{BASE}/{{id}}/keepalive"), post(keepalive_runtime))
}

/// Dreadnode's canonical error envelope.
#[derive(Debug)]
pub struct DreadnodeError {
    status: StatusCode,
    detail: String,
    kind: &'static str,
    errors: Option<Vec<FieldError>>,
}

impl DreadnodeError {
    pub fn new(status: StatusCode, detail: impl Into<String>, kind: &'static str) -> Self {
        DreadnodeError {
            status,
            detail: detail.into(),
            kind,
            errors: None,
        }
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn detail(&self) -> &str {
        &self.detail
    }
    fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Authentication failed", "authentication_error")
    }
    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"), "not_found")
    }
    fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail, "permission_denied")
    }
    fn validation(errors: Vec<FieldError>) -> Self {
        DreadnodeError {
            errors: Some(errors),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation error", "validation_error")
        }
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "runtimes API failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", "internal_error")
    }
}

/// The envelope's `type` for a status answered without a more specific one.
pub fn error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_denied",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PRECONDITION_FAILED => "precondition_failed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        _ => "internal_error",
    }
}

impl super::Envelope for DreadnodeError {
    fn status(status: StatusCode, message: &str) -> Self {
        DreadnodeError::new(status, message, error_type(status))
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        DreadnodeError::internal(error)
    }
}

impl From<StoreError> for DreadnodeError {
    fn from(error: StoreError) -> Self {
        DreadnodeError::internal(error)
    }
}

impl From<DomainError> for DreadnodeError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound => DreadnodeError::not_found("Runtime"),
            DomainError::AlreadyExists(m) | DomainError::Conflict(m) => DreadnodeError::new(StatusCode::CONFLICT, m, "conflict"),
            DomainError::Invalid(m) => DreadnodeError::new(StatusCode::UNPROCESSABLE_ENTITY, m, "validation_error"),
            DomainError::Forbidden(m) => DreadnodeError::new(StatusCode::FORBIDDEN, m, "permission_denied"),
        }
    }
}

impl IntoResponse for DreadnodeError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".into(), self.status.as_u16().into());
        body.insert("detail".into(), self.detail.into());
        body.insert("type".into(), self.kind.into());
        if let Some(errors) = self.errors {
            body.insert("errors".into(), serde_json::to_value(errors).unwrap_or_default());
        }
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The caller, by `Authorization: Bearer` or `X-API-Key`.
pub struct RuntimePrincipal(Principal);

impl FromRequestParts<AppState> for RuntimePrincipal {
    type Rejection = DreadnodeError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DreadnodeError> {
        let token = presented_token(&parts.headers).map_err(|_| DreadnodeError::unauthorized())?;
        let principal = state
            .auth
            .authenticate_request(token)
            .await
            .map_err(|_| DreadnodeError::unauthorized())?;
        Ok(RuntimePrincipal(super::unscoped::<DreadnodeError>(principal)?))
    }
}

/// The org and workspace of a path, if the caller belongs to that org; 404 otherwise.
async fn workspace_of(state: &AppState, principal: &Principal, org: &str, workspace: &str) -> Result<Org, DreadnodeError> {
    let org = tenancy::find_org(&state.ledger, org)
        .await?
        .filter(|o| o.id == principal.org_id)
        .ok_or_else(|| DreadnodeError::not_found("Organization"))?;
    if org.workspaces.iter().any(|w| w.slug == workspace) {
        return Ok(org);
    }
    // Perhaps created by another process a moment ago.
    match state.ledger.models.refresh::<Org>(&org.id.to_string()).await? {
        Some(fresh) if fresh.model.workspaces.iter().any(|w| w.slug == workspace) => Ok((*fresh.model).clone()),
        _ => Err(DreadnodeError::not_found("Workspace")),
    }
}

/// A runtime of the workspace by id (any case) or key, with its stream version.
async fn find_runtime(
    state: &AppState,
    principal: &Principal,
    org: &Org,
    workspace: &str,
    id: &str,
) -> Result<(i64, Runtime), DreadnodeError> {
    let id = match Uuid::parse_str(id.trim()) {
        Ok(uuid) => uuid,
        Err(_) => rules::runtime_id_for_key(org.id, workspace, id.trim()),
    }
    .to_string();
    match state.ledger.models.get_or_load::<Runtime>(&id).await? {
        Some(c) if c.model.org_id == org.id && c.model.workspace == workspace && principal.may(&id, "read") => {
            Ok((c.version, (*c.model).clone()))
        }
        _ => Err(DreadnodeError::not_found("Runtime")),
    }
}

/// Only the runtime's owner may change it or drive its sandbox.
fn authorize_owner(principal: &Principal, runtime: &Runtime) -> Result<(), DreadnodeError> {
    if principal.role == Role::Viewer {
        return Err(DreadnodeError::forbidden("Viewers cannot modify runtimes"));
    }
    if principal.principal_id != runtime.owner || !principal.may(&runtime.id.to_string(), "configure") {
        return Err(DreadnodeError::forbidden("Only the runtime's owner may modify it"));
    }
    Ok(())
}

pub fn config_limits(state: &AppState) -> ConfigLimits {
    ConfigLimits {
        max_timeout_seconds: state.settings.max_sandbox_timeout_seconds,
        provider: state.settings.sandbox_provider.clone(),
    }
}

// ---- bodies -------------------------------------------------------------------------------

/// A JSON object body (an empty body reads as `{}`), or the envelope's 413/422.
fn json_body(body: JsonBody<DreadnodeError>) -> Result<Value, DreadnodeError> {
    let bytes = body.bytes().ok_or_else(|| {
        DreadnodeError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body exceeds {MAX_BODY_BYTES} bytes"),
            "payload_too_large",
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        let mut p = Problems::default();
        p.add(&[json!("body"), json!(e.column())], "json_invalid", "JSON decode error");
        DreadnodeError::validation(p.0)
    })?;
    if super::too_deep(&value) {
        let mut p = Problems::default();
        p.add(&body_loc(), "json_invalid", super::TOO_DEEP);
        return Err(DreadnodeError::validation(p.0));
    }
    Ok(value)
}

fn body_loc() -> Vec<Value> {
    vec![json!("body")]
}

// ---- rendering ----------------------------------------------------------------------------

/// A runtime as this surface shows it; `viewer` decides `owned_by_me` (absent for audit).
pub fn runtime_json(r: &Runtime, viewer: Option<&Principal>) -> Value {
    let instance = r.sandbox.as_ref().map(|s| {
        json!({
            "id": s.id,
            "provider": s.provider,
            "provider_sandbox_id": s.id,
            "sandbox_url": crate::boundary::sandbox_url(s.sandbox_url.as_deref(), &s.id),
            "status": r.status.as_str(),
            "config_digest": s.config_digest,
            "config_version": s.config_version.to_string(),
            "started_at": micros::format(&s.started_at),
            "expires_at": micros::format(&s.expires_at),
        })
    });
    let mut out = json!({
        "id": r.id,
        "key": r.key,
        "name": r.name,
        "description": r.description,
        "workspace": r.workspace,
        "project_key": r.project,
        "project_name": r.project,
        "status": r.status.as_str(),
        "owner_id": r.owner,
        "config_digest": r.config_digest,
        "config_version": r.config_version.to_string(),
        "materialization_stale": r.materialization_stale(),
        "instance": instance,
        "expires_at": r.sandbox.as_ref().map(|s| micros::format(&s.expires_at)),
        "created_at": micros::format(&r.created_at),
        "updated_at": micros::format(&r.updated_at),
    });
    if let (Some(p), Some(o)) = (viewer, out.as_object_mut()) {
        o.insert("owned_by_me".into(), (p.principal_id == r.owner).into());
    }
    out
}

/// The durable config state.
pub fn config_json(r: &Runtime) -> Value {
    json!({
        "runtime_id": r.id,
        "config": r.config,
        "config_digest": r.config_digest,
        "config_version": r.config_version.to_string(),
        "materialization_stale": r.materialization_stale(),
    })
}

// ---- writes -------------------------------------------------------------------------------

/// Decides against the current runtime through the one write path. A decision with no
/// events commits nothing and answers the runtime as it is.
async fn write(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    id: &str,
    mut decide: impl FnMut(&Runtime) -> Result<Vec<RuntimeEvent>, DreadnodeError>,
) -> Result<(Runtime, i64), DreadnodeError> {
    let written = state
        .ledger
        .write(id, &meta.write_context(principal), |r| decide(r))
        .await
        .map_err(|e| refused(e, "Runtime not found"))?;
    let version = written.version;
    Ok((written.into_model(), version))
}

/// Replaces a runtime's config with an already normalized one; shared with restore.
pub async fn commit_config(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    runtime: &Runtime,
    config: Value,
    restored_from_version: Option<i64>,
    reason: Option<String>,
) -> Result<(Runtime, i64), DreadnodeError> {
    authorize_owner(principal, runtime)?;
    let now = Utc::now();
    write(state, principal, meta, &runtime.id.to_string(), |current| {
        Ok(rules::replace_config(
            Some(current),
            config.clone(),
            restored_from_version,
            reason.clone(),
            now,
        )?)
    })
    .await
}

// ---- handlers -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    owner: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    project_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/org/{org}/ws/{workspace}/runtimes", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"),
           ("state" = Option<String>, Query, description = "Comma-separated statuses: idle, running, paused"),
           ("owner" = Option<String>, Query, description = "`me` for the caller's runtimes only"),
           ("limit" = Option<i64>, Query, description = "1 to 100 (default 50)"), ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = wire::RuntimePage, description = "Runtimes, newest first"), (status = 422, description = "Invalid query")))]
async fn list_runtimes(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    Path((org, workspace)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Response, DreadnodeError> {
    let org = workspace_of(&state, &principal, &org, &workspace).await?;
    let mut p = Problems::default();
    let query_loc = [json!("query")];
    let limit = match &query.limit {
        Some(raw) => config::integer(&mut p, &at(&query_loc, "limit"), Some(&json!(raw)), Some(1), Some(100)),
        None => Some(DEFAULT_PAGE),
    };
    let mut statuses = Vec::new();
    for s in query
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if let Some(s) = config::literal(&mut p, &at(&query_loc, "state"), Some(&json!(s)), &["idle", "running", "paused"]) {
            statuses.push(s);
        }
    }
    let mine = config::literal(
        &mut p,
        &at(&query_loc, "owner"),
        query.owner.as_ref().map(|o| json!(o)).as_ref(),
        &["me"],
    )
    .is_some();
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match Uuid::parse_str(c) {
            Ok(id) => Some(id),
            Err(_) => {
                p.value_error(&at(&query_loc, "cursor"), "cursor is not one this server issued");
                None
            }
        },
    };
    if !p.0.is_empty() {
        return Err(DreadnodeError::validation(p.0));
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE) as usize;
    let mut runtimes: Vec<Runtime> = state
        .ledger
        .models
        .cache::<Runtime>()
        .all()
        .into_iter()
        .map(|c| (*c.model).clone())
        .filter(|r| r.org_id == org.id && r.workspace == workspace && principal.may(&r.id.to_string(), "read"))
        .filter(|r| statuses.is_empty() || statuses.iter().any(|s| s == r.status.as_str()))
        .filter(|r| !mine || r.owner == principal.principal_id)
        .filter(|r| query.project_id.as_ref().is_none_or(|p| r.project.as_ref() == Some(p)))
        .collect();
    // Newest first: ids order by creation time; the cursor is the last id shown.
    runtimes.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    let start = match cursor {
        Some(c) => runtimes.iter().position(|r| r.id == c).map_or(runtimes.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<&Runtime> = runtimes.iter().skip(start).take(limit).collect();
    let next_cursor = (start + page.len() < runtimes.len())
        .then(|| page.last().map(|r| r.id.to_string()))
        .flatten();
    let items: Vec<Value> = page.iter().map(|r| runtime_json(r, Some(&principal))).collect();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}

#[utoipa::path(post, path = "/api/v1/org/{org}/ws/{workspace}/runtimes", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug")),
    request_body(content = wire::CreateRuntime),
    responses((status = 201, body = wire::Runtime, description = "Created"), (status = 200, body = wire::Runtime, description = "The runtime with this key already exists with an equal config"),
              (status = 409, description = "The key exists with a different config"), (status = 422, description = "Validation error")))]
async fn create_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace)): Path<(String, String)>,
    body: JsonBody<DreadnodeError>,
) -> Result<Response, DreadnodeError> {
    let org = workspace_of(&state, &principal, &org, &workspace).await?;
    let body = json_body(body)?;
    let mut p = Problems::default();
    let loc = body_loc();
    let known = ["key", "name", "description", "project", "config", "requested_runtime_limit_seconds"];
    let fields = config::model(&mut p, &loc, &body, &known).unwrap_or_default();
    let text = |p: &mut Problems, name: &str| config::string(p, &at(&loc, name), fields.get(name), true, 1);
    let key = text(&mut p, "key");
    let name = text(&mut p, "name");
    let description = config::string(&mut p, &at(&loc, "description"), fields.get("description"), true, 0);
    let project = text(&mut p, "project");
    config::integer(
        &mut p,
        &at(&loc, "requested_runtime_limit_seconds"),
        fields.get("requested_runtime_limit_seconds").filter(|v| !v.is_null()),
        Some(config::MIN_TIMEOUT_SECONDS),
        Some(state.settings.max_sandbox_timeout_seconds),
    );
    let limits = config_limits(&state);
    let given = fields.get("config").filter(|v| !v.is_null());
    let config = match given {
        Some(c) => config::normalize(c, &at(&loc, "config"), &limits).unwrap_or_else(|errors| {
            p.0.extend(errors);
            Value::Null
        }),
        None => config::default_config(&limits),
    };
    if !p.0.is_empty() {
        return Err(DreadnodeError::validation(p.0));
    }
    if !principal.may_write() {
        return Err(DreadnodeError::forbidden("Viewers cannot create runtimes"));
    }
    let key = rules::runtime_key(key.as_deref(), project.as_deref(), Uuid::now_v7()).map_err(|e| {
        let mut p = Problems::default();
        p.add(&at(&loc, "key"), "value_error", format!("Value error, {e}"));
        DreadnodeError::validation(p.0)
    })?;
    let id = rules::runtime_id_for_key(org.id, &workspace, &key);
    let command = CreateRuntime {
        runtime_id: id,
        org_id: org.id,
        workspace: workspace.clone(),
        key: Some(key.clone()),
        name,
        description,
        project,
        owner: principal.principal_id.clone(),
        config,
        config_given: given.is_some(),
        now: Utc::now(),
    };
    // An ensure: concurrent ensures of one key meet on one stream, and only one creates it.
    let mut created = false;
    let written =
        state
            .ledger
            .write_stream::<Runtime, DreadnodeError>(&id.to_string(), &meta.write_context(&principal), |existing| {
                match rules::ensure_runtime(existing, command.clone(), key.clone())? {
                    Ensured::Existing => {
                        created = false;
                        Ok(vec![])
                    }
                    Ensured::Created(events) => {
                        created = true;
                        Ok(events)
                    }
                }
            })
            .await
            .map_err(|e| refused(e, "Runtime not found"))?;
    let version = written.version;
    let runtime = written.into_model();
    let mut body = runtime_json(&runtime, Some(&principal));
    body["created"] = created.into();
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(tagged(version, (status, Json(body))))
}

#[utoipa::path(get, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    responses((status = 200, body = wire::Runtime, description = "The runtime"), (status = 404, description = "Not found")))]
async fn get_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    Path((org, workspace, id)): Path<(String, String, String)>,
) -> Result<Response, DreadnodeError> {
    let org = workspace_of(&state, &principal, &org, &workspace).await?;
    let (version, runtime) = find_runtime(&state, &principal, &org, &workspace, &id).await?;
    Ok(tagged(version, Json(runtime_json(&runtime, Some(&principal)))))
}

#[utoipa::path(get, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/config", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    responses((status = 200, body = wire::RuntimeConfig, description = "The durable config")))]
async fn get_config(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    Path((org, workspace, id)): Path<(String, String, String)>,
) -> Result<Response, DreadnodeError> {
    let org = workspace_of(&state, &principal, &org, &workspace).await?;
    let (version, runtime) = find_runtime(&state, &principal, &org, &workspace, &id).await?;
    Ok(tagged(version, Json(config_json(&runtime))))
}

#[utoipa::path(put, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/config", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    request_body(content = wire::ReplaceConfig),
    responses((status = 200, body = wire::RuntimeConfig, description = "The durable config, normalized"),
              (status = 401, description = "Authentication failed"), (status = 403, description = "Not the runtime's owner"),
              (status = 404, description = "Not found"), (status = 413, description = "Body over 1 MiB"),
              (status = 422, description = "Validation error, every problem listed"), (status = 429, description = "Rate limited")))]
async fn replace_config(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace, id)): Path<(String, String, String)>,
    body: JsonBody<DreadnodeError>,
) -> Result<Response, DreadnodeError> {
    let org = workspace_of(&state, &principal, &org, &workspace).await?;
    let body = json_body(body)?;
    let mut p = Problems::default();
    let loc = body_loc();
    let fields = config::model(&mut p, &loc, &body, &["config"]).unwrap_or_default();
    let config = match required(&mut p, &at(&loc, "config"), fields.get("config")) {
        None => None,
        Some(c) => config::normalize(c, &at(&loc, "config"), &config_limits(&state))
            .map_err(|errors| p.0.extend(errors))
            .ok(),
    };
    let config = match config {
        Some(c) if p.0.is_empty() => c,
        _ => return Err(DreadnodeError::validation(p.0)),
    };
    let (_, runtime) = find_runtime(&state, &principal, &org, &workspace, &id).await?;
    let (after, version) = commit_config(&state, &principal, &meta, &runtime, config, None, None).await?;
    Ok(tagged(version, Json(config_json(&after))))
}

/// The runtime a lifecycle call drives and its version, once the caller is known to own
/// it and its `If-Match` (if any) is known to hold: lifecycle calls touch the sandbox
/// before they record it.
async fn owned_runtime(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    org: &str,
    workspace: &str,
    id: &str,
) -> Result<(i64, Runtime), DreadnodeError> {
    let org = workspace_of(state, principal, org, workspace).await?;
    let (version, runtime) = find_runtime(state, principal, &org, workspace, id).await?;
    authorize_owner(principal, &runtime)?;
    meta.precondition::<DreadnodeError>(version)?;
    Ok((version, runtime))
}

fn sandbox_unavailable(error: impl std::fmt::Display) -> DreadnodeError {
    DreadnodeError::new(StatusCode::BAD_GATEWAY, format!("Sandbox unavailable: {error}"), "bad_gateway")
}

#[utoipa::path(post, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/start", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    request_body(content = wire::Empty, description = "Nothing, or `{}`"),
    responses((status = 200, body = wire::Runtime, description = "The runtime with its `instance`; a running sandbox is returned as it is"), (status = 502, description = "The sandbox could not be created")))]
async fn start_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace, id)): Path<(String, String, String)>,
    body: JsonBody<DreadnodeError>,
) -> Result<Response, DreadnodeError> {
    let (version, runtime) = owned_runtime(&state, &principal, &meta, &org, &workspace, &id).await?;
    json_body(body)?;
    let id = runtime.id.to_string();
    match rules::start_action(&runtime) {
        StartAction::AlreadyRunning => return Ok(tagged(version, Json(runtime_json(&runtime, Some(&principal))))),
        StartAction::Resume => return switch(&state, &principal, &meta, runtime, Switch::Resume).await,
        StartAction::Materialize => {}
    }
    // The start is recorded first; creating the sandbox is its outcome.
    let sandbox_id = Uuid::now_v7().to_string();
    let handle = state.sandboxes.describe(&sandbox_id);
    let now = Utc::now();
    let mut materialize = false;
    let (started, version) = write(&state, &principal, &meta, &id, |current| {
        materialize = rules::start_action(current) == StartAction::Materialize;
        if !materialize {
            return Ok(vec![]);
        }
        let sandbox = MaterializedSandbox {
            sandbox_id: sandbox_id.clone(),
            provider: handle.provider.clone(),
            sandbox_url: handle.url.clone(),
        };
        Ok(rules::started(Some(current), sandbox, now)?)
    })
    .await?;
    if !materialize {
        return Ok(tagged(version, Json(runtime_json(&started, Some(&principal)))));
    }
    if let Err(error) = state.sandboxes.create(&sandbox_id, &id, &started.config).await {
        // Recorded as failed: the runtime goes back to idle and a retry starts afresh.
        let now = Utc::now();
        write(&state, &principal, &meta, &id, |current| Ok(rules::reset(Some(current), now)?)).await?;
        return Err(sandbox_unavailable(error));
    }
    Ok(tagged(version, Json(runtime_json(&started, Some(&principal)))))
}

#[utoipa::path(post, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/pause", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    responses((status = 200, body = wire::Runtime, description = "The paused runtime"), (status = 409, description = "No sandbox to pause"), (status = 502, description = "The sandbox is unreachable")))]
async fn pause_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace, id)): Path<(String, String, String)>,
) -> Result<Response, DreadnodeError> {
    let (_, runtime) = owned_runtime(&state, &principal, &meta, &org, &workspace, &id).await?;
    switch(&state, &principal, &meta, runtime, Switch::Pause).await
}

#[utoipa::path(post, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/resume", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    responses((status = 200, body = wire::Runtime, description = "The running runtime"), (status = 409, description = "No sandbox to resume"), (status = 502, description = "The sandbox is unreachable")))]
async fn resume_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace, id)): Path<(String, String, String)>,
) -> Result<Response, DreadnodeError> {
    let (_, runtime) = owned_runtime(&state, &principal, &meta, &org, &workspace, &id).await?;
    switch(&state, &principal, &meta, runtime, Switch::Resume).await
}

#[derive(Clone, Copy)]
enum Switch {
    Pause,
    Resume,
}

/// Pauses or resumes the sandbox, then records it; both are idempotent, so a retry after
/// a lost race or a crash in between is safe.
async fn switch(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    runtime: Runtime,
    to: Switch,
) -> Result<Response, DreadnodeError> {
    let decide = |r: &Runtime, now| match to {
        Switch::Pause => rules::pause(Some(r), now),
        Switch::Resume => rules::resume(Some(r), now),
    };
    decide(&runtime, Utc::now())?;
    if let Some(sandbox) = &runtime.sandbox {
        match to {
            Switch::Pause => state.sandboxes.pause(&sandbox.id).await,
            Switch::Resume => state.sandboxes.resume(&sandbox.id).await,
        }
        .map_err(sandbox_unavailable)?;
    }
    let now = Utc::now();
    let (after, version) = write(state, principal, meta, &runtime.id.to_string(), |current| Ok(decide(current, now)?)).await?;
    Ok(tagged(version, Json(runtime_json(&after, Some(principal)))))
}

#[utoipa::path(post, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/reset", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    responses((status = 200, body = wire::Runtime, description = "The idle runtime; its sandbox is killed"), (status = 502, description = "The sandbox could not be killed (the reset is recorded)")))]
async fn reset_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace, id)): Path<(String, String, String)>,
) -> Result<Response, DreadnodeError> {
    let (_, runtime) = owned_runtime(&state, &principal, &meta, &org, &workspace, &id).await?;
    let now = Utc::now();
    let mut killed = None;
    let (after, version) = write(&state, &principal, &meta, &runtime.id.to_string(), |current| {
        killed = current.sandbox.as_ref().map(|s| s.id.clone());
        Ok(rules::reset(Some(current), now)?)
    })
    .await?;
    if let Some(sandbox_id) = killed {
        state.sandboxes.destroy(&sandbox_id).await.map_err(sandbox_unavailable)?;
    }
    Ok(tagged(version, Json(runtime_json(&after, Some(&principal)))))
}

#[utoipa::path(post, path = "/api/v1/org/{org}/ws/{workspace}/runtimes/{id}/keepalive", tag = "runtimes", security(("bearer" = []), ("api_key" = [])),
    params(("org" = String, Path, description = "Organization slug"), ("workspace" = String, Path, description = "Workspace slug"), ("id" = String, Path, description = "Runtime UUID (any case) or key")),
    request_body(content = wire::Keepalive),
    responses((status = 200, body = wire::Runtime, description = "The runtime with its new `expires_at`"), (status = 409, description = "No sandbox to keep alive")))]
async fn keepalive_runtime(
    State(state): State<AppState>,
    RuntimePrincipal(principal): RuntimePrincipal,
    meta: RequestMeta,
    Path((org, workspace, id)): Path<(String, String, String)>,
    body: JsonBody<DreadnodeError>,
) -> Result<Response, DreadnodeError> {
    let body = json_body(body)?;
    let max = state.settings.max_sandbox_timeout_seconds;
    let mut p = Problems::default();
    let loc = body_loc();
    let fields = config::model(&mut p, &loc, &body, &["extend_seconds"]).unwrap_or_default();
    let extend = config::integer(
        &mut p,
        &at(&loc, "extend_seconds"),
        fields.get("extend_seconds"),
        Some(1),
        Some(max),
    );
    if !p.0.is_empty() {
        return Err(DreadnodeError::validation(p.0));
    }
    let (_, runtime) = owned_runtime(&state, &principal, &meta, &org, &workspace, &id).await?;
    let now = Utc::now();
    let extend = extend.unwrap_or(DEFAULT_EXTEND_SECONDS);
    let (after, version) = write(&state, &principal, &meta, &runtime.id.to_string(), |current| {
        Ok(rules::keepalive(Some(current), extend, max, now)?)
    })
    .await?;
    Ok(tagged(version, Json(runtime_json(&after, Some(&principal)))))
}

impl Audited for Runtime {
    const SURFACE: Surface = Surface::Runtimes;

    /// The runtime with its durable config, so a state at a version shows what the config
    /// was and a diff between versions shows how it changed.
    fn render(&self, _state: &AppState) -> Value {
        let mut shown = runtime_json(self, None);
        shown["config"] = self.config.clone();
        shown
    }

    /// Puts back the config a runtime had at a version, through the PUT rules of today (a
    /// limit lowered since then refuses it), recording where it came from.
    fn restore(request: RestoreRequest<'_>, target: Self) -> BoxFuture<'_, Result<Response, Refusal>> {
        Box::pin(async move {
            let limits = config_limits(request.state);
            let config = config::normalize(&target.config, &[json!("config")], &limits).map_err(|errors| {
                let problems: Vec<String> = errors.iter().map(|e| format!("{}: {}", json!(e.loc), e.msg)).collect();
                Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("version {}'s config is no longer valid: {}", request.version, problems.join("; ")),
                )
            })?;
            let current = request
                .state
                .ledger
                .models
                .get_or_load::<Runtime>(request.id)
                .await?
                .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("no resource runtime/{}", request.id)))?;
            let (after, version) = commit_config(
                request.state,
                request.principal,
                request.meta,
                &current.model,
                config,
                Some(request.version),
                request.reason.clone(),
            )
            .await
            .map_err(|e| Refusal::new(e.status(), e.detail()))?;
            Ok(tagged(version, Json(config_json(&after))))
        })
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_runtimes, create_runtime, get_runtime, get_config, replace_config, start_runtime, pause_runtime, resume_runtime, reset_runtime, keepalive_runtime),
    components(schemas(wire::DreadnodeError)),
    tags((name = "runtimes", description = "Sandbox runtimes (Dreadnode-compatible)"))
)]
pub struct RuntimesApi;

/// The shapes of this surface's bodies, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    /// One problem of a validation error, pydantic-style.
    #[derive(ToSchema)]
    pub struct FieldProblem {
        /// Where: `body`/`query`, then field names and list indexes
        pub loc: Vec<Value>,
        pub msg: String,
        #[schema(rename = "type")]
        pub kind: String,
    }

    /// Dreadnode's canonical error envelope.
    #[derive(ToSchema)]
    pub struct DreadnodeError {
        pub code: u16,
        pub detail: String,
        #[schema(rename = "type")]
        pub kind: String,
        /// Every problem, for validation errors
        pub errors: Option<Vec<FieldProblem>>,
    }

    /// The sandbox a runtime runs in.
    #[derive(ToSchema)]
    pub struct RuntimeInstance {
        pub id: String,
        pub provider: String,
        pub provider_sandbox_id: String,
        /// `local://<sandbox id>` for the local driver
        #[schema(required)]
        pub sandbox_url: Option<String>,
        pub status: String,
        pub config_digest: String,
        pub config_version: String,
        pub started_at: String,
        pub expires_at: String,
    }

    #[derive(ToSchema)]
    pub struct Runtime {
        pub id: String,
        pub key: String,
        #[schema(required)]
        pub name: Option<String>,
        #[schema(required)]
        pub description: Option<String>,
        pub workspace: String,
        #[schema(required)]
        pub project_key: Option<String>,
        #[schema(required)]
        pub project_name: Option<String>,
        /// `idle`, `running` or `paused`
        pub status: String,
        pub owner_id: String,
        pub config_digest: String,
        pub config_version: String,
        pub materialization_stale: bool,
        #[schema(required)]
        pub instance: Option<RuntimeInstance>,
        #[schema(required)]
        pub expires_at: Option<String>,
        pub created_at: String,
        pub updated_at: String,
        /// Whether the caller owns it
        pub owned_by_me: Option<bool>,
        /// On creation: whether this call created it
        pub created: Option<bool>,
    }

    #[derive(ToSchema)]
    pub struct RuntimePage {
        pub items: Vec<Runtime>,
        #[schema(required)]
        pub next_cursor: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct RuntimeConfig {
        pub runtime_id: String,
        /// The whole durable config, normalized
        pub config: Map<String, Value>,
        /// sha256 of the config's RFC 8785 form
        pub config_digest: String,
        pub config_version: String,
        pub materialization_stale: bool,
    }

    /// An ensure: the same key again answers the existing runtime when its config is equal.
    #[derive(ToSchema)]
    pub struct CreateRuntime {
        pub key: Option<String>,
        pub name: Option<String>,
        pub description: Option<String>,
        pub project: Option<String>,
        /// The durable config (`resources`, `sandbox`, `runtime_server`, `secrets`, …);
        /// omitted fields take their defaults
        pub config: Option<Map<String, Value>>,
        pub requested_runtime_limit_seconds: Option<i64>,
    }

    #[derive(ToSchema)]
    pub struct ReplaceConfig {
        /// The whole durable config; omitted fields take their defaults
        pub config: Map<String, Value>,
    }

    #[derive(ToSchema)]
    pub struct Keepalive {
        /// Seconds to extend by (default 300)
        pub extend_seconds: Option<i64>,
    }

    /// No fields.
    #[derive(ToSchema)]
    pub struct Empty {}
}
