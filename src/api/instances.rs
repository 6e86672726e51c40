//! The instances surface, wire-compatible with Chowder's `/v1`: organization signup, org
//! and scoped keys (`chd_org_…`, `chd_sk_…`, fleetledger keys shown in Chowder's style),
//! and OpenClaw instances with live config changes. Errors are FastAPI's
//! `{"detail": "..."}`; validation errors list `{loc, msg, type}`.
//!
//! A PATCH of a running instance's config records its event, then waits (bounded) for
//! the instance worker to apply it to the live sandbox: failure → 502
//! `{"detail": {"error": "Gateway unavailable – ..."}}` with the change still recorded.

use std::collections::HashSet;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleetledger_events::instance::InstanceEvent;
use fleetledger_events::key::KeyScope;
use fleetledger_events::{Actor, DomainEvent};
use fleetledger_projections::instance::Instance;
use fleetledger_projections::key::Key;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{tagged, JsonBody, RequestMeta, Surface};
use crate::auth::{presented_token, Principal, Role};
use crate::domain::instance::{self as rules, CreateInstance};
use crate::domain::key::PERMISSIONS;
use crate::domain::validation::{at, lenient_model, literal, required, string, FieldError, Problems};
use crate::domain::{first_seen, DomainError};
use crate::ledger::WriteError;
use crate::state::AppState;
use crate::store::StoreError;
use crate::streams::Audited;
use crate::tenancy::{self, NewKey, TenancyError};

pub const ORG_KEY_PREFIX: &str = "chd_org_";
pub const SCOPED_KEY_PREFIX: &str = "chd_sk_";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/organization/signup", post(signup))
        .route("/v1/organization", get(organization))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", get(get_key).delete(revoke_key))
        .route("/v1/instances", get(list_instances).post(create_instance))
        .route(
            "/v1/instances/{id}",
            get(get_instance).patch(update_instance).delete(delete_instance),
        )
        .route("/v1/instances/{id}/status", get(instance_status))
        .route("/v1/instances/{id}/stop", post(stop_instance))
        .route("/v1/instances/{id}/start", post(start_instance))
}

/// FastAPI's error body.
#[derive(Debug)]
pub struct ChowderError {
    status: StatusCode,
    detail: Value,
}

impl ChowderError {
    pub fn new(status: StatusCode, detail: impl Into<Value>) -> Self {
        ChowderError {
            status,
            detail: detail.into(),
        }
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Instance not found.")
    }
    fn org_key_only() -> Self {
        Self::new(StatusCode::FORBIDDEN, "This endpoint requires an organization key.")
    }
    fn validation(errors: Vec<FieldError>) -> Self {
        let detail: Vec<Value> = errors
            .into_iter()
            .map(|e| json!({ "loc": e.loc, "msg": e.msg, "type": e.kind }))
            .collect();
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, Value::Array(detail))
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "instances API failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error.")
    }
}

impl From<StoreError> for ChowderError {
    fn from(error: StoreError) -> Self {
        ChowderError::internal(error)
    }
}

impl From<DomainError> for ChowderError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound => ChowderError::not_found(),
            DomainError::Invalid(m) => ChowderError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            DomainError::AlreadyExists(m) | DomainError::Conflict(m) => ChowderError::new(StatusCode::CONFLICT, m),
            DomainError::Forbidden(m) => ChowderError::new(StatusCode::FORBIDDEN, m),
        }
    }
}

impl From<TenancyError> for ChowderError {
    fn from(error: TenancyError) -> Self {
        match error {
            TenancyError::Domain(e) => e.into(),
            TenancyError::Store(e) => e.into(),
        }
    }
}

impl super::Envelope for ChowderError {
    fn status(status: StatusCode, message: &str) -> Self {
        ChowderError::new(status, message)
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        ChowderError::internal(error)
    }
}

impl From<WriteError<ChowderError>> for ChowderError {
    fn from(error: WriteError<ChowderError>) -> Self {
        super::refused(error, "Instance not found.")
    }
}

impl IntoResponse for ChowderError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

/// The caller's key: an org key, or a scoped key limited to some instances.
pub struct ChowderPrincipal(Principal);

impl FromRequestParts<AppState> for ChowderPrincipal {
    type Rejection = ChowderError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ChowderError> {
        let token = presented_token(&parts.headers).map_err(|_| ChowderError::new(StatusCode::UNAUTHORIZED, "Missing API key."))?;
        let principal = state
            .auth
            .authenticate_request(token)
            .await
            .map_err(|_| ChowderError::new(StatusCode::UNAUTHORIZED, "Invalid or expired API key."))?;
        Ok(ChowderPrincipal(principal))
    }
}

fn is_org_key(p: &Principal) -> bool {
    p.role == Role::Admin && p.scopes.is_empty()
}

fn require_org_key(p: &Principal) -> Result<(), ChowderError> {
    if is_org_key(p) {
        Ok(())
    } else {
        Err(ChowderError::org_key_only())
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, as Chowder writes times.
fn chowder_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn body_of(body: JsonBody<ChowderError>) -> Result<Map<String, Value>, ChowderError> {
    let bytes = body
        .bytes()
        .ok_or_else(|| ChowderError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large."))?;
    let mut p = Problems::default();
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            let mut p = Problems::default();
            p.add(&[json!("body"), json!(e.column())], "json_invalid", "JSON decode error");
            ChowderError::validation(p.0)
        })?
    };
    if super::too_deep(&value) {
        p.add(&[json!("body")], "json_invalid", super::TOO_DEEP);
        return Err(ChowderError::validation(p.0));
    }
    lenient_model(&mut p, &[json!("body")], &value);
    if !p.0.is_empty() {
        return Err(ChowderError::validation(p.0));
    }
    // Without problems the body is an object or `null` (no fields).
    Ok(match value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    })
}

fn body_at(name: &str) -> Vec<Value> {
    at(&[json!("body")], name)
}

fn checked<T>(p: Problems, value: T) -> Result<T, ChowderError> {
    if p.0.is_empty() {
        Ok(value)
    } else {
        Err(ChowderError::validation(p.0))
    }
}

/// A 1–128 character name.
fn name_field(p: &mut Problems, fields: &Map<String, Value>, is_required: bool) -> Option<String> {
    match fields.get("name") {
        None if is_required => {
            required(p, &body_at("name"), None);
            None
        }
        None => None,
        Some(Value::String(s)) if s.chars().count() > 128 => {
            p.add(&body_at("name"), "string_too_long", "String should have at most 128 characters");
            None
        }
        v => string(p, &body_at("name"), v, false, 1),
    }
}

/// An optional object field (`null` reads as absent).
fn object_field(p: &mut Problems, fields: &Map<String, Value>, name: &str) -> Option<Map<String, Value>> {
    match fields.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            p.add(&body_at(name), "dict_type", "Input should be a valid dictionary");
            None
        }
    }
}

// ---- organization and keys ----------------------------------------------------------------

fn organization_json(org: &fleetledger_projections::org::Org) -> Value {
    json!({ "id": org.id, "name": org.name, "slug": org.slug, "created_at": chowder_time(&org.created_at) })
}

async fn issue(state: &AppState, new: NewKey, actor: Actor) -> Result<(crate::auth::ApiKey, Key), ChowderError> {
    Ok(tenancy::issue_key(&state.ledger, new, actor, Utc::now()).await?)
}

#[utoipa::path(post, path = "/v1/organization/signup", tag = "instances",
    request_body(content = wire::Signup),
    responses((status = 201, body = wire::SignedUp, description = "The organization and its key, shown once"), (status = 403, description = "Signup is off (the server runs without `--allow-signup`)")))]
async fn signup(State(state): State<AppState>, body: JsonBody<ChowderError>) -> Result<Response, ChowderError> {
    if !state.settings.allow_signup {
        return Err(ChowderError::new(StatusCode::FORBIDDEN, "Signup is disabled."));
    }
    let fields = body_of(body)?;
    let mut p = Problems::default();
    let name = name_field(&mut p, &fields, true);
    let name = checked(p, name)?.unwrap_or_default();
    let base = crate::domain::mission_control::slugify(&name);
    let suffix = Uuid::new_v4().simple().to_string();
    let slug = format!("{}-{}", if base.is_empty() { "org" } else { base.as_str() }, &suffix[..8]);
    let actor = Actor::system("signup");
    let org = tenancy::create_org(&state.ledger, &slug, &name, actor.clone(), Utc::now()).await?;
    tenancy::create_workspace(&state.ledger, &org, "default", "Default", actor.clone(), Utc::now()).await?;
    let (token, _) = issue(
        &state,
        NewKey {
            org_id: org.id,
            name: "Organization key".into(),
            role: "admin".into(),
            scopes: vec![],
            expires_at: None,
            principal_id: None,
            token_prefix: ORG_KEY_PREFIX,
        },
        actor,
    )
    .await?;
    let body = json!({ "organization": organization_json(&org), "api_key": token.expose() });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/organization", tag = "instances", security(("bearer" = [])),
    responses((status = 200, body = wire::Organization, description = "The caller's organization")))]
async fn organization(State(state): State<AppState>, ChowderPrincipal(principal): ChowderPrincipal) -> Result<Response, ChowderError> {
    let org = state
        .ledger
        .models
        .refresh::<fleetledger_projections::org::Org>(&principal.org_id.to_string())
        .await?
        .ok_or_else(|| ChowderError::new(StatusCode::NOT_FOUND, "Organization not found."))?;
    Ok(Json(organization_json(&org.model)).into_response())
}

/// The instance ids and permissions of a scoped key.
fn key_grants(key: &Key) -> (Vec<String>, Vec<String>) {
    let ids = first_seen(key.scopes.iter().map(|s| s.resource_id.clone()));
    let permissions = first_seen(key.scopes.iter().flat_map(|s| s.permissions.iter().cloned()));
    (ids, permissions)
}

fn key_json(key: &Key, detailed: bool) -> Value {
    let (ids, permissions) = key_grants(key);
    let mut out = json!({
        "id": key.id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "type": if key.scopes.is_empty() { "organization" } else { "scoped" },
        "instance_ids": ids,
        "permissions": permissions,
        "expires_at": key.expires_at.as_ref().map(chowder_time),
        "revoked_at": key.revoked_at.as_ref().map(chowder_time),
        "created_at": chowder_time(&key.created_at),
    });
    if detailed {
        out["instances"] = key
            .scopes
            .iter()
            .map(|s| json!({ "instance_id": s.resource_id, "permissions": s.permissions }))
            .collect();
    }
    out
}

#[utoipa::path(post, path = "/v1/keys", tag = "instances", security(("bearer" = [])),
    request_body(content = wire::CreateKey),
    responses((status = 201, body = wire::Key, description = "The scoped key with `raw_key`, shown once")))]
async fn create_key(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    body: JsonBody<ChowderError>,
) -> Result<Response, ChowderError> {
    require_org_key(&principal)?;
    let fields = body_of(body)?;
    let mut p = Problems::default();
    let name = name_field(&mut p, &fields, true);
    let strings = |p: &mut Problems, field: &str| -> Vec<String> {
        match required(p, &body_at(field), fields.get(field)) {
            None => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| string(p, &at(&body_at(field), i), Some(v), false, 1))
                .collect(),
            Some(_) => {
                p.add(&body_at(field), "list_type", "Input should be a valid list");
                vec![]
            }
        }
    };
    let instance_ids = strings(&mut p, "instance_ids");
    let permissions = strings(&mut p, "permissions");
    for (i, permission) in permissions.iter().enumerate() {
        literal(&mut p, &at(&body_at("permissions"), i), Some(&json!(permission)), &PERMISSIONS);
    }
    let expires_at = match fields.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
            Some(t) => Some(t.with_timezone(&Utc)),
            None => {
                p.add(&body_at("expires_at"), "datetime_parsing", "Input should be a valid datetime");
                None
            }
        },
    };
    let name = checked(p, name)?.unwrap_or_default();
    // A key holds each instance and each permission once: every instance's scope carries
    // the permission list, so repeats in the body would multiply into each other.
    let permissions = first_seen(permissions);
    let mut scopes = Vec::new();
    let mut granted = HashSet::new();
    for id in &instance_ids {
        if Uuid::parse_str(id.trim()).is_ok_and(|id| granted.contains(&id)) {
            continue;
        }
        let (_, instance) = visible_instance(&state, &principal, id).await?;
        granted.insert(instance.id);
        scopes.push(KeyScope {
            resource_id: instance.id.to_string(),
            permissions: permissions.clone(),
        });
    }
    if scopes.is_empty() {
        return Err(ChowderError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "A scoped key needs at least one instance.",
        ));
    }
    let (token, key) = issue(
        &state,
        NewKey {
            org_id: principal.org_id,
            name,
            role: "member".into(),
            scopes,
            expires_at,
            principal_id: None,
            token_prefix: SCOPED_KEY_PREFIX,
        },
        principal.actor(),
    )
    .await?;
    let mut body = key_json(&key, true);
    body["raw_key"] = token.expose().into();
    Ok(tagged(1, (StatusCode::CREATED, Json(body))))
}

fn org_keys(state: &AppState, principal: &Principal) -> Vec<Key> {
    let mut keys: Vec<Key> = state
        .ledger
        .models
        .cache::<Key>()
        .all()
        .into_iter()
        .map(|c| (*c.model).clone())
        .filter(|k| k.org_id == principal.org_id && k.revoked_at.is_none())
        .collect();
    keys.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.id)));
    keys
}

#[utoipa::path(get, path = "/v1/keys", tag = "instances", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::Key>, description = "The organization's live keys, newest first"), (status = 403, description = "Needs an organization key")))]
async fn list_keys(State(state): State<AppState>, ChowderPrincipal(principal): ChowderPrincipal) -> Result<Response, ChowderError> {
    require_org_key(&principal)?;
    let keys: Vec<Value> = org_keys(&state, &principal).iter().map(|k| key_json(k, false)).collect();
    Ok(Json(keys).into_response())
}

async fn org_key(state: &AppState, principal: &Principal, id: &str) -> Result<(i64, Key), ChowderError> {
    let missing = || ChowderError::new(StatusCode::NOT_FOUND, "Key not found.");
    let id = Uuid::parse_str(id.trim()).map_err(|_| missing())?;
    let key = state.ledger.models.refresh::<Key>(&id.to_string()).await?.ok_or_else(missing)?;
    if key.model.org_id != principal.org_id {
        return Err(missing());
    }
    Ok((key.version, (*key.model).clone()))
}

#[utoipa::path(get, path = "/v1/keys/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Key id")), responses((status = 200, body = wire::Key, description = "The key with its `instances`"), (status = 403, description = "Needs an organization key")))]
async fn get_key(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    require_org_key(&principal)?;
    let (version, key) = org_key(&state, &principal, &id).await?;
    Ok(tagged(version, Json(key_json(&key, true))))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Key id")), responses((status = 204, description = "Revoked at once"), (status = 409, description = "The key making the request cannot revoke itself")))]
async fn revoke_key(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    require_org_key(&principal)?;
    let (_, key) = org_key(&state, &principal, &id).await?;
    if key.id == principal.key_id {
        // The organization would lock itself out of its own API with one call.
        return Err(ChowderError::new(
            StatusCode::CONFLICT,
            "A key cannot revoke itself; revoke it with another organization key.",
        ));
    }
    let (_, version) = tenancy::revoke_key(&state.ledger, key.id, &meta.write_context(&principal), Utc::now()).await?;
    Ok(tagged(version, StatusCode::NO_CONTENT))
}

// ---- instances ----------------------------------------------------------------------------

/// The instance object, field for field as Chowder shows it.
pub fn instance_json(i: &Instance) -> Value {
    json!({
        "id": i.id,
        "organization_id": i.org_id,
        "name": i.name,
        "status": i.status,
        "model_provider": i.model_provider,
        "sandbox_provider": "local",
        "sandbox_id": i.sandbox_id,
        "gateway_url": i.sandbox_id.as_deref().and_then(|id| crate::boundary::sandbox_url(i.gateway_url.as_deref(), id)),
        "openclaw_version": i.openclaw_version,
        "openclaw_config": i.openclaw_config,
        "region": i.region,
        "error_message": i.error_message,
        "created_at": chowder_time(&i.created_at),
        "updated_at": chowder_time(&i.updated_at),
    })
}

/// An instance of the caller's org that is not terminated, whatever the key's scopes.
async fn visible_instance(state: &AppState, principal: &Principal, id: &str) -> Result<(i64, Instance), ChowderError> {
    let cached = super::live::<Instance, ChowderError>(state, principal.org_id, id, "Instance not found.").await?;
    Ok((cached.version, (*cached.model).clone()))
}

/// An instance the caller may act on with `permission`: another org's is 404, one the
/// key does not cover (or not with this permission) is 403.
async fn permitted_instance(state: &AppState, principal: &Principal, id: &str, permission: &str) -> Result<(i64, Instance), ChowderError> {
    let (version, instance) = visible_instance(state, principal, id).await?;
    if !principal.may(&instance.id.to_string(), permission) {
        return Err(ChowderError::new(
            StatusCode::FORBIDDEN,
            format!("This key does not have the '{permission}' permission on this instance."),
        ));
    }
    Ok((version, instance))
}

#[utoipa::path(post, path = "/v1/instances", tag = "instances", security(("bearer" = [])),
    request_body(content = wire::CreateInstance),
    responses((status = 201, body = wire::Instance, description = "The instance, `status: provisioning`")))]
async fn create_instance(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    meta: RequestMeta,
    body: JsonBody<ChowderError>,
) -> Result<Response, ChowderError> {
    require_org_key(&principal)?;
    let fields = body_of(body)?;
    let mut p = Problems::default();
    let name = name_field(&mut p, &fields, true);
    let provider = required(&mut p, &body_at("model_provider"), fields.get("model_provider"));
    let provider = literal(&mut p, &body_at("model_provider"), provider, &rules::MODEL_PROVIDERS);
    let version = required(&mut p, &body_at("openclaw_version"), fields.get("openclaw_version"));
    let version = string(&mut p, &body_at("openclaw_version"), version, false, 1);
    let config = object_field(&mut p, &fields, "openclaw_config");
    let region = string(&mut p, &body_at("region"), fields.get("region"), true, 0);
    let (name, provider, version) = checked(p, (name, provider, version))?;
    let id = Uuid::now_v7();
    let command = CreateInstance {
        instance_id: id,
        org_id: principal.org_id,
        name: name.unwrap_or_default(),
        model_provider: provider.unwrap_or_default(),
        openclaw_version: version.unwrap_or_default(),
        openclaw_config: config,
        region,
        now: Utc::now(),
    };
    let written = state
        .ledger
        .write_stream::<Instance, ChowderError>(&id.to_string(), &meta.write_context(&principal), |_| {
            Ok(rules::create_instance(command.clone())?)
        })
        .await?;
    let version = written.version;
    Ok(tagged(version, (StatusCode::CREATED, Json(instance_json(&written.into_model())))))
}

#[utoipa::path(get, path = "/v1/instances", tag = "instances", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::Instance>, description = "The organization's instances that are not terminated, newest first"), (status = 403, description = "Needs an organization key")))]
async fn list_instances(State(state): State<AppState>, ChowderPrincipal(principal): ChowderPrincipal) -> Result<Response, ChowderError> {
    require_org_key(&principal)?;
    let mut instances: Vec<Instance> = state
        .ledger
        .models
        .all_live_in_org::<Instance>(principal.org_id)
        .into_iter()
        .map(|i| (*i).clone())
        .collect();
    instances.sort_by_key(|i| std::cmp::Reverse((i.created_at, i.id)));
    Ok(Json(instances.iter().map(instance_json).collect::<Vec<_>>()).into_response())
}

#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")), responses((status = 200, body = wire::Instance, description = "The instance"), (status = 403, description = "The key lacks `read` on it")))]
async fn get_instance(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    let (version, instance) = permitted_instance(&state, &principal, &id, "read").await?;
    Ok(tagged(version, Json(instance_json(&instance))))
}

#[utoipa::path(get, path = "/v1/instances/{id}/status", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")), responses((status = 200, body = wire::InstanceStatus, description = "Its status"), (status = 403, description = "The key lacks `read` on it")))]
async fn instance_status(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    let (_, i) = permitted_instance(&state, &principal, &id, "read").await?;
    Ok(
        Json(json!({ "id": i.id, "status": i.status, "error_message": i.error_message, "updated_at": chowder_time(&i.updated_at) }))
            .into_response(),
    )
}

/// Decides against the instance through the one write path.
async fn write(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    instance: &Instance,
    mut decide: impl FnMut(&Instance) -> Result<Vec<InstanceEvent>, ChowderError>,
) -> Result<(Instance, i64, Option<crate::store::Appended>), ChowderError> {
    let written = state
        .ledger
        .write(&instance.id.to_string(), &meta.write_context(principal), |i| decide(i))
        .await?;
    let (version, appended) = (written.version, written.appended);
    let model = written.model.ok_or_else(ChowderError::not_found)?;
    Ok((model, version, appended))
}

#[utoipa::path(patch, path = "/v1/instances/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    request_body(content = wire::UpdateInstance),
    responses((status = 200, body = wire::Instance, description = "The instance with its merged `openclaw_config`"), (status = 403, description = "The key lacks `configure` on it"),
              (status = 502, description = "The running sandbox did not take the change (it stays recorded)")))]
async fn update_instance(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<ChowderError>,
) -> Result<Response, ChowderError> {
    let (_, instance) = permitted_instance(&state, &principal, &id, "configure").await?;
    let fields = body_of(body)?;
    let mut p = Problems::default();
    let name = name_field(&mut p, &fields, false);
    let overrides = object_field(&mut p, &fields, "openclaw_config");
    let (name, overrides) = checked(p, (name, overrides))?;
    let now = Utc::now();
    // Whether the change goes to the live sandbox, from the decision itself (the event as
    // stored may be as big as the body; decoding it back would cost as much again).
    let mut applies_live = false;
    let (after, version, appended) = write(&state, &principal, &meta, &instance, |i| {
        let events = rules::update_instance(i, name.clone(), overrides.clone(), now)?;
        applies_live = matches!(events.last(), Some(InstanceEvent::Updated(u)) if u.apply_live);
        Ok(events)
    })
    .await?;
    let live = appended.as_ref().and_then(|a| a.events.last()).filter(|_| applies_live);
    let Some(trigger) = live else {
        return Ok(tagged(version, Json(instance_json(&after))));
    };
    let outcome = super::outcome_of(&state, trigger).await?;
    let unavailable = |why: &str| ChowderError::new(StatusCode::BAD_GATEWAY, json!({ "error": format!("Gateway unavailable – {why}") }));
    match outcome.as_ref().map(InstanceEvent::from_envelope) {
        None => Err(unavailable("the sandbox did not confirm the change in time")),
        Some(Ok(InstanceEvent::ConfigApplyFailed(failed))) => Err(unavailable(&failed.error)),
        Some(_) => {
            // The outcome's model: cached when this process recorded it, else from the store.
            let outcome = outcome.as_ref().map_or(version, |o| o.stream_version);
            let current = match state.ledger.models.cache::<Instance>().get(&trigger.stream_id) {
                Some(cached) if cached.version >= outcome => Some(cached),
                _ => state.ledger.models.refresh::<Instance>(&trigger.stream_id).await?,
            };
            let (version, shown) = current.map_or((version, after), |c| (c.version, (*c.model).clone()));
            Ok(tagged(version, Json(instance_json(&shown))))
        }
    }
}

async fn transition(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    id: &str,
    decide: fn(&Instance, DateTime<Utc>) -> Result<Vec<InstanceEvent>, DomainError>,
) -> Result<Response, ChowderError> {
    let (_, instance) = permitted_instance(state, principal, id, "configure").await?;
    let now = Utc::now();
    let (after, version, _) = write(state, principal, meta, &instance, |i| Ok(decide(i, now)?)).await?;
    Ok(tagged(version, Json(instance_json(&after))))
}

#[utoipa::path(post, path = "/v1/instances/{id}/stop", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")), responses((status = 200, body = wire::Instance, description = "The stopped instance"), (status = 409, description = "Not running")))]
async fn stop_instance(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    transition(&state, &principal, &meta, &id, rules::stop).await
}

#[utoipa::path(post, path = "/v1/instances/{id}/start", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, body = wire::Instance, description = "The instance, `starting` until the worker has applied every stored override"), (status = 409, description = "Not stopped")))]
async fn start_instance(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    transition(&state, &principal, &meta, &id, rules::start).await
}

#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "instances", security(("bearer" = [])),
    params(("id" = String, Path, description = "Instance id")), responses((status = 204, description = "Terminated; its sandbox is destroyed")))]
async fn delete_instance(
    State(state): State<AppState>,
    ChowderPrincipal(principal): ChowderPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, ChowderError> {
    let (_, instance) = visible_instance(&state, &principal, &id).await?;
    require_org_key(&principal)?;
    let now = Utc::now();
    let (_, version, _) = write(&state, &principal, &meta, &instance, |i| Ok(rules::terminate(i, now)?)).await?;
    Ok(tagged(version, StatusCode::NO_CONTENT))
}

impl Audited for Instance {
    const SURFACE: Surface = Surface::Instances;

    fn render(&self, _state: &AppState) -> Value {
        instance_json(self)
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(signup, organization, create_key, list_keys, get_key, revoke_key, create_instance, list_instances, get_instance, instance_status,
          update_instance, stop_instance, start_instance, delete_instance),
    components(schemas(wire::ChowderError)),
    tags((name = "instances", description = "OpenClaw instances and scoped keys (Chowder-compatible)"))
)]
pub struct InstancesApi;

/// The shapes of this surface's bodies, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    /// FastAPI's error body.
    #[derive(ToSchema)]
    pub struct ChowderError {
        /// A message, a list of `{loc, msg, type}` for validation errors, or
        /// `{"error": …}` when a running sandbox did not take a change
        pub detail: Value,
    }

    #[derive(ToSchema)]
    pub struct Organization {
        pub id: String,
        pub name: String,
        pub slug: String,
        pub created_at: String,
    }

    #[derive(ToSchema)]
    pub struct Signup {
        /// 1 to 128 characters
        pub name: String,
    }

    #[derive(ToSchema)]
    pub struct SignedUp {
        pub organization: Organization,
        /// The organization key `chd_org_…`, shown once
        pub api_key: String,
    }

    #[derive(ToSchema)]
    pub struct KeyInstance {
        pub instance_id: String,
        pub permissions: Vec<String>,
    }

    #[derive(ToSchema)]
    pub struct Key {
        pub id: String,
        pub name: String,
        pub key_prefix: String,
        /// `organization` or `scoped`
        #[schema(rename = "type")]
        pub kind: String,
        pub instance_ids: Vec<String>,
        pub permissions: Vec<String>,
        #[schema(required)]
        pub expires_at: Option<String>,
        #[schema(required)]
        pub revoked_at: Option<String>,
        pub created_at: String,
        /// In a key's detail
        pub instances: Option<Vec<KeyInstance>>,
        /// The key `chd_sk_…`, shown once when it is made
        pub raw_key: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct CreateKey {
        pub name: String,
        pub instance_ids: Vec<String>,
        /// Each of `read`, `interact`, `configure`, `files`, `channels`
        pub permissions: Vec<String>,
        pub expires_at: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Instance {
        pub id: String,
        pub organization_id: String,
        pub name: String,
        /// `provisioning`, `running`, `starting`, `stopped`, `error` or `terminated`
        pub status: String,
        pub model_provider: String,
        pub sandbox_provider: String,
        #[schema(required)]
        pub sandbox_id: Option<String>,
        /// `local://<sandbox id>` for a local sandbox
        #[schema(required)]
        pub gateway_url: Option<String>,
        pub openclaw_version: String,
        /// The deep merge of every override
        pub openclaw_config: Map<String, Value>,
        #[schema(required)]
        pub region: Option<String>,
        #[schema(required)]
        pub error_message: Option<String>,
        pub created_at: String,
        pub updated_at: String,
    }

    #[derive(ToSchema)]
    pub struct InstanceStatus {
        pub id: String,
        pub status: String,
        #[schema(required)]
        pub error_message: Option<String>,
        pub updated_at: String,
    }

    #[derive(ToSchema)]
    pub struct CreateInstance {
        /// 1 to 128 characters
        pub name: String,
        /// One of the providers the server knows (`anthropic`, `openai`, …)
        pub model_provider: String,
        pub openclaw_version: String,
        pub openclaw_config: Option<Map<String, Value>>,
        pub region: Option<String>,
    }

    /// `openclaw_config` holds overrides, deep-merged into the stored config (`null`
    /// removes a path).
    #[derive(ToSchema)]
    pub struct UpdateInstance {
        pub name: Option<String>,
        pub openclaw_config: Option<Map<String, Value>>,
    }
}
