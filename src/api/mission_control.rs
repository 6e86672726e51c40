//! The Mission Control surface, wire-compatible with OpenClaw Mission Control's gateways,
//! boards and agents (`PATCH /api/v1/agents/{id}` is the spec). Errors are FastAPI's
//! `{"detail": ...}` plus the request id (`request_id`, also the `X-Request-Id` header);
//! validation problems are a pydantic list of `{type, loc, msg, input}`.
//!
//! Writes that reprovision an agent append their event and then wait, bounded, for the
//! reprovisioner's outcome: failure → 502, no outcome in time → 504; the change stays
//! recorded either way.
//!
//! A gateway's token is sealed with the org's data key (`secrets`) before the write is
//! decided, so its events and read model only ever hold the sealed form.

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use fleetledger_events::envelope::micros;
use fleetledger_events::mission_control::{AgentEvent, BoardEvent, GatewayEvent};
use fleetledger_events::secret::StoredSecret;
use fleetledger_events::DomainEvent;
use fleetledger_projections::mission_control::{Board, Gateway, McAgent};
use fleetledger_projections::ReadModel;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{read_body, tagged, JsonBody, RequestMeta, Surface, MAX_BODY_BYTES};
use crate::auth::{presented_token, Principal, Role};
use crate::boundary::{Boundary, GatewayUrl, Refused};
use crate::domain::mission_control::{self as rules, AgentPatch, BoardFields, BoardRef, CreateAgent, GatewayFields};
use crate::domain::validation::{self, at, boolean, integer, lenient_model, string, FieldError, Problems};
use crate::domain::DomainError;
use crate::ledger::{WriteContext, WriteError};
use crate::secrets::Plaintext;
use crate::state::AppState;
use crate::store::StoreError;
use crate::streams::{Audited, Refusal, RestoreRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/gateways", get(list_gateways).post(create_gateway))
        .route(
            "/api/v1/gateways/{id}",
            get(get_gateway).patch(update_gateway).delete(delete_gateway),
        )
        .route("/api/v1/boards", get(list_boards).post(create_board))
        .route("/api/v1/boards/{id}", get(get_board).patch(update_board).delete(delete_board))
        .route("/api/v1/agents", get(list_agents).post(create_agent))
        .route("/api/v1/agents/{id}", get(get_agent).patch(update_agent).delete(delete_agent))
        .route("/api/v1/agents/{id}/heartbeat", post(agent_heartbeat))
        .route_layer(axum::middleware::from_fn(with_request_id))
}

/// FastAPI's error body.
#[derive(Debug)]
pub struct McError {
    status: StatusCode,
    detail: Value,
    request_id: Option<String>,
    /// The agent a failed create made anyway: its `id` in the body and its `Location`.
    created: Option<Uuid>,
}

impl McError {
    pub fn new(status: StatusCode, detail: &str) -> Self {
        McError {
            status,
            detail: detail.into(),
            request_id: None,
            created: None,
        }
    }
    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_string);
        self
    }
    fn not_found(detail: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    fn unprocessable(detail: &str) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .into_iter()
            .map(|e| json!({ "type": e.kind, "loc": e.loc, "msg": e.msg, "input": e.input }))
            .collect::<Vec<_>>();
        McError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: Value::Array(detail),
            request_id: None,
            created: None,
        }
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "mission control API failure");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }
}

impl From<StoreError> for McError {
    fn from(error: StoreError) -> Self {
        McError::internal(error)
    }
}

impl From<DomainError> for McError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::NotFound => McError::not_found("Not Found"),
            DomainError::Invalid(m) => McError::unprocessable(&m),
            DomainError::AlreadyExists(m) | DomainError::Conflict(m) => McError::new(StatusCode::CONFLICT, &m),
            DomainError::Forbidden(m) => McError::new(StatusCode::FORBIDDEN, &m),
        }
    }
}

impl super::Envelope for McError {
    fn status(status: StatusCode, message: &str) -> Self {
        McError::new(status, message)
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        McError::internal(error)
    }
}

impl From<WriteError<McError>> for McError {
    fn from(error: WriteError<McError>) -> Self {
        super::refused(error, "Not Found")
    }
}

impl IntoResponse for McError {
    fn into_response(self) -> Response {
        let mut body = json!({ "detail": self.detail });
        if let Some(id) = self.request_id {
            body["request_id"] = id.into();
        }
        if let Some(created) = self.created {
            body["id"] = created.to_string().into();
            let location = [(header::LOCATION, format!("/api/v1/agents/{created}"))];
            return (self.status, location, Json(body)).into_response();
        }
        (self.status, Json(body)).into_response()
    }
}

/// Puts the request id into every error body this surface answers.
async fn with_request_id(request: Request, next: Next) -> Response {
    let request_id = crate::answering::request_id_text();
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let (Some(id), true, true) = (
        request_id,
        response.status().is_client_error() || response.status().is_server_error(),
        is_json,
    ) else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let Ok(Some(bytes)) = read_body(body, MAX_BODY_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
    if let Some(o) = value.as_object_mut() {
        o.entry("request_id").or_insert(id.into());
    }
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(value.to_string()))
}

/// The caller; any role reads, writes need an org admin.
pub struct McPrincipal(Principal);

impl FromRequestParts<AppState> for McPrincipal {
    type Rejection = McError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, McError> {
        let unauthorized = || McError::new(StatusCode::UNAUTHORIZED, "Unauthorized");
        let token = presented_token(&parts.headers).map_err(|_| unauthorized())?;
        let principal = state.auth.authenticate_request(token).await.map_err(|_| unauthorized())?;
        Ok(McPrincipal(super::unscoped::<McError>(principal)?))
    }
}

fn require_admin(principal: &Principal) -> Result<(), McError> {
    if principal.role == Role::Admin && principal.scopes.is_empty() {
        Ok(())
    } else {
        Err(McError::new(StatusCode::FORBIDDEN, "Forbidden"))
    }
}

/// A live resource of the caller's org by id; anything else is 404 `detail`.
async fn find<M: ReadModel>(state: &AppState, principal: &Principal, id: &str, detail: &str) -> Result<M, McError> {
    Ok(found::<M>(state, principal, id, detail).await?.1)
}

/// Like `find`, with the resource's stream version.
async fn found<M: ReadModel>(state: &AppState, principal: &Principal, id: &str, detail: &str) -> Result<(i64, M), McError> {
    let cached = super::live::<M, McError>(state, principal.org_id, id, detail).await?;
    Ok((cached.version, (*cached.model).clone()))
}

/// Every live model of the caller's org that `keep` keeps.
fn all_of<M: ReadModel>(state: &AppState, principal: &Principal, keep: impl Fn(&M) -> bool) -> Vec<M> {
    state
        .ledger
        .models
        .all_live_in_org::<M>(principal.org_id)
        .into_iter()
        .filter(|m| keep(m))
        .map(|m| (*m).clone())
        .collect()
}

fn body_of(body: JsonBody<McError>) -> Result<Value, McError> {
    let bytes = body
        .bytes()
        .ok_or_else(|| McError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        let mut p = Problems::default();
        p.found(&[json!("body"), json!(e.column())], "json_invalid", "JSON decode error", json!({}));
        McError::validation(p.0)
    })?;
    if super::too_deep(&value) {
        let mut p = Problems::default();
        p.found(&body_loc(), "json_invalid", super::TOO_DEEP, json!({}));
        return Err(McError::validation(p.0));
    }
    Ok(value)
}

fn body_loc() -> Vec<Value> {
    vec![json!("body")]
}

/// A required string field.
fn required_text(p: &mut Problems, fields: &Map<String, Value>, name: &str) -> String {
    let loc = at(&body_loc(), name);
    let value = validation::required(p, &loc, fields.get(name));
    string(p, &loc, value, false, 1).unwrap_or_default()
}

/// An optional UUID field: absent → `None`, `null` → `Some(None)`.
fn uuid_field(p: &mut Problems, fields: &Map<String, Value>, name: &str) -> Option<Option<Uuid>> {
    let loc = at(&body_loc(), name);
    match fields.get(name)? {
        Value::Null => Some(None),
        Value::String(s) => match Uuid::parse_str(s) {
            Ok(id) => Some(Some(id)),
            Err(_) => {
                p.found(
                    &loc,
                    "uuid_parsing",
                    "Input should be a valid UUID, unable to parse string as a UUID",
                    json!(s),
                );
                None
            }
        },
        other => {
            p.found(
                &loc,
                "uuid_type",
                "UUID input should be a string, bytes or UUID object",
                other.clone(),
            );
            None
        }
    }
}

/// An optional object field: absent → `None`, `null` → `Some(None)`.
fn object_field(p: &mut Problems, fields: &Map<String, Value>, name: &str) -> Option<Option<Value>> {
    match fields.get(name)? {
        Value::Null => Some(None),
        v @ Value::Object(_) => Some(Some(v.clone())),
        other => {
            p.found(
                &at(&body_loc(), name),
                "dict_type",
                "Input should be a valid dictionary",
                other.clone(),
            );
            None
        }
    }
}

/// An optional text field: absent → `None`, `null` → `Some(None)`; blank reads as `null`
/// when `blank_is_null`.
fn text_field(p: &mut Problems, fields: &Map<String, Value>, name: &str, blank_is_null: bool) -> Option<Option<String>> {
    match fields.get(name)? {
        Value::Null => Some(None),
        v => string(p, &at(&body_loc(), name), Some(v), false, 0).map(|s| (!(blank_is_null && s.trim().is_empty())).then_some(s)),
    }
}

fn checked<T>(p: Problems, value: T) -> Result<T, McError> {
    if p.0.is_empty() {
        Ok(value)
    } else {
        Err(McError::validation(p.0))
    }
}

/// Appends a new resource's first events.
async fn create_stream<M: ReadModel>(
    state: &AppState,
    context: &WriteContext,
    id: Uuid,
    events: Vec<M::Event>,
) -> Result<(M, i64, Vec<fleetledger_events::EventEnvelope>), McError> {
    let written = state
        .ledger
        .write_stream::<M, McError>(&id.to_string(), context, |_| Ok(events.clone()))
        .await?;
    let version = written.version;
    let appended = written.appended.map(|a| a.events).unwrap_or_default();
    let model = written.model.ok_or_else(|| McError::internal("a created resource exists"))?;
    Ok((model, version, appended))
}

/// Records a resource's deletion (once) and answers `{"ok": true}`.
async fn soft_delete<M: ReadModel>(
    state: &AppState,
    principal: &Principal,
    meta: &RequestMeta,
    id: &str,
    missing: &str,
    deleted_at: impl Fn(&M) -> Option<chrono::DateTime<Utc>>,
    event: impl Fn(fleetledger_events::mission_control::Deleted) -> M::Event,
) -> Result<Response, McError> {
    require_admin(principal)?;
    find::<M>(state, principal, id, missing).await?;
    let now = Utc::now();
    let stream_id = Uuid::parse_str(id.trim()).map_err(|_| McError::not_found(missing))?.to_string();
    let written = state
        .ledger
        .write::<M, McError>(&stream_id, &meta.write_context(principal), |m| {
            Ok(rules::deleted_at(deleted_at(m), now).map(&event).into_iter().collect())
        })
        .await?;
    Ok(tagged(written.version, Json(json!({ "ok": true }))))
}

// ---- gateways -----------------------------------------------------------------------------

fn gateway_json(g: &Gateway) -> Value {
    json!({
        "id": g.id,
        "organization_id": g.org_id,
        "name": g.name,
        "url": g.url,
        "workspace_root": g.workspace_root,
        "has_token": g.token.is_some(),
        "created_at": micros::format(&g.created_at),
        "updated_at": micros::format(&g.updated_at),
    })
}

/// The boundary's rules on the gateway a create or update would leave: where its URL
/// leads and, for a `local` gateway, where its workspace root lies. A field that already
/// has a problem is not checked again.
fn boundary_problems(p: &mut Problems, boundary: &Boundary, org: Uuid, f: &GatewayFields) {
    let mut refuse = |field: &str, why: Refused, input: &str| {
        let loc = at(&body_loc(), field);
        if !p.0.iter().any(|e| e.loc == loc) {
            p.found(&loc, "value_error", format!("Value error, {why}"), json!(input));
        }
    };
    match boundary.gateway_url(&f.url) {
        Err(why) => refuse("url", why, &f.url),
        Ok(GatewayUrl::Local) => {
            if let Err(why) = boundary.check_workspace_root(&org.to_string(), &f.workspace_root) {
                refuse("workspace_root", why, &f.workspace_root);
            }
        }
        Ok(GatewayUrl::Unset | GatewayUrl::Remote(_)) => {}
    }
}

fn gateway_fields(p: &mut Problems, fields: &Map<String, Value>, base: GatewayFields, creating: bool) -> GatewayFields {
    let mut f = base;
    if creating || fields.contains_key("name") {
        f.name = required_text(p, fields, "name");
    }
    if let Some(url) = text_field(p, fields, "url", false) {
        f.url = url.unwrap_or_default();
    }
    if creating || fields.contains_key("workspace_root") {
        f.workspace_root = required_text(p, fields, "workspace_root");
    }
    f
}

/// A body's `token`: absent → `None`, `null` or blank → `Some(None)`. It is plaintext
/// only until [`seal_token`] seals it, before anything is decided.
fn token_field(p: &mut Problems, fields: &Map<String, Value>) -> Option<Option<Plaintext>> {
    let found = p.0.len();
    let token = text_field(p, fields, "token", true).map(|token| token.map(Plaintext::from));
    // A token of the wrong type is still a secret: its problem does not echo it.
    for problem in &mut p.0[found..] {
        problem.input = json!(fleetledger_events::secret::REDACTED);
    }
    token
}

/// Seals a new token with the org's data key, so the event never sees the plaintext.
async fn seal_token(state: &AppState, principal: &Principal, token: Option<Plaintext>) -> Result<Option<StoredSecret>, McError> {
    let Some(token) = token else { return Ok(None) };
    let sealed = state
        .secrets
        .seal(&principal.org_id.to_string(), &token)
        .await
        .map_err(McError::internal)?;
    Ok(Some(sealed.into()))
}

#[utoipa::path(get, path = "/api/v1/gateways", tag = "mission_control", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::Gateway>, description = "Gateways, newest first; tokens are never shown")))]
async fn list_gateways(State(state): State<AppState>, McPrincipal(principal): McPrincipal) -> Response {
    let mut gateways = all_of::<Gateway>(&state, &principal, |_| true);
    gateways.sort_by_key(|g| std::cmp::Reverse((g.created_at, g.id)));
    Json(gateways.iter().map(gateway_json).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/api/v1/gateways", tag = "mission_control", security(("bearer" = [])),
    request_body(content = wire::CreateGateway),
    responses((status = 200, body = wire::Gateway, description = "The gateway"), (status = 422, description = "Validation failed, including a URL or workspace root the server does not allow")))]
async fn create_gateway(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let body = body_of(body)?;
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), &body).unwrap_or_default();
    let f = gateway_fields(&mut p, &fields, GatewayFields::default(), true);
    let token = token_field(&mut p, &fields);
    boundary_problems(&mut p, &state.boundary, principal.org_id, &f);
    let mut f = checked(p, f)?;
    f.token = seal_token(&state, &principal, token.flatten()).await?;
    let id = Uuid::now_v7();
    let events = rules::create_gateway(id, principal.org_id, f, Utc::now())?;
    let (gateway, version, _) = create_stream::<Gateway>(&state, &meta.write_context(&principal), id, events).await?;
    Ok(tagged(version, Json(gateway_json(&gateway))))
}

#[utoipa::path(get, path = "/api/v1/gateways/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Gateway id")), responses((status = 200, body = wire::Gateway, description = "The gateway")))]
async fn get_gateway(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    Path(id): Path<String>,
) -> Result<Response, McError> {
    let (version, gateway) = found::<Gateway>(&state, &principal, &id, "Gateway not found").await?;
    Ok(tagged(version, Json(gateway_json(&gateway))))
}

#[utoipa::path(patch, path = "/api/v1/gateways/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Gateway id")), request_body(content = wire::UpdateGateway),
    responses((status = 200, body = wire::Gateway, description = "The gateway"), (status = 422, description = "Validation failed, including a URL or workspace root the server does not allow")))]
async fn update_gateway(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let body = body_of(body)?;
    let gateway: Gateway = find(&state, &principal, &id, "Gateway not found").await?;
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), &body).unwrap_or_default();
    let after = gateway_fields(&mut p, &fields, GatewayFields::from(&gateway), false);
    let token = token_field(&mut p, &fields);
    boundary_problems(&mut p, &state.boundary, principal.org_id, &after);
    let after = checked(p, after)?;
    let sealed = match token {
        Some(token) => Some(seal_token(&state, &principal, token).await?),
        None => None,
    };
    let now = Utc::now();
    let written = state
        .ledger
        .write::<Gateway, McError>(&gateway.id.to_string(), &meta.write_context(&principal), |g| {
            // A token the body does not set stays the one stored now: after a lost race it
            // must not come back from the first read (which may be legacy plaintext).
            let token = sealed.clone().unwrap_or_else(|| g.token.clone());
            Ok(rules::update_gateway(g, GatewayFields { token, ..after.clone() }, now)?)
        })
        .await?;
    let version = written.version;
    Ok(tagged(version, Json(gateway_json(&written.into_model()))))
}

#[utoipa::path(delete, path = "/api/v1/gateways/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Gateway id")), responses((status = 200, body = wire::OkAnswer, description = "Deleted")))]
async fn delete_gateway(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, McError> {
    soft_delete::<Gateway>(
        &state,
        &principal,
        &meta,
        &id,
        "Gateway not found",
        |g| g.deleted_at,
        GatewayEvent::Deleted,
    )
    .await
}

// ---- boards -------------------------------------------------------------------------------

fn board_json(b: &Board) -> Value {
    json!({
        "id": b.id,
        "organization_id": b.org_id,
        "name": b.name,
        "slug": b.slug,
        "description": b.description,
        "gateway_id": b.gateway_id,
        "objective": b.objective,
        "created_at": micros::format(&b.created_at),
        "updated_at": micros::format(&b.updated_at),
    })
}

async fn board_fields(
    state: &AppState,
    principal: &Principal,
    fields: &Map<String, Value>,
    base: BoardFields,
    creating: bool,
) -> Result<BoardFields, McError> {
    let mut p = Problems::default();
    let mut f = base;
    if creating || fields.contains_key("name") {
        f.name = required_text(&mut p, fields, "name");
    }
    if let Some(slug) = text_field(&mut p, fields, "slug", true) {
        f.slug = slug.unwrap_or_default();
    }
    if let Some(d) = text_field(&mut p, fields, "description", true) {
        f.description = d;
    }
    if let Some(o) = text_field(&mut p, fields, "objective", true) {
        f.objective = o;
    }
    let gateway = uuid_field(&mut p, fields, "gateway_id");
    let mut f = checked(p, f)?;
    if let Some(gateway) = gateway {
        if let Some(id) = gateway {
            find::<Gateway>(state, principal, &id.to_string(), "Gateway not found").await?;
        }
        f.gateway_id = gateway;
    }
    Ok(f)
}

#[utoipa::path(get, path = "/api/v1/boards", tag = "mission_control", security(("bearer" = [])),
    responses((status = 200, body = Vec<wire::Board>, description = "Boards, newest first")))]
async fn list_boards(State(state): State<AppState>, McPrincipal(principal): McPrincipal) -> Response {
    let mut boards = all_of::<Board>(&state, &principal, |_| true);
    boards.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
    Json(boards.iter().map(board_json).collect::<Vec<_>>()).into_response()
}

#[utoipa::path(post, path = "/api/v1/boards", tag = "mission_control", security(("bearer" = [])),
    request_body(content = wire::CreateBoard),
    responses((status = 200, body = wire::Board, description = "The board"),
              (status = 404, description = "Gateway not found (nothing recorded)")))]
async fn create_board(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let body = body_of(body)?;
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), &body).unwrap_or_default();
    checked(p, ())?;
    let f = board_fields(&state, &principal, &fields, BoardFields::default(), true).await?;
    let id = Uuid::now_v7();
    let events = rules::create_board(id, principal.org_id, f, Utc::now())?;
    let (board, version, _) = create_stream::<Board>(&state, &meta.write_context(&principal), id, events).await?;
    Ok(tagged(version, Json(board_json(&board))))
}

#[utoipa::path(get, path = "/api/v1/boards/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Board id")), responses((status = 200, body = wire::Board, description = "The board")))]
async fn get_board(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    Path(id): Path<String>,
) -> Result<Response, McError> {
    let (version, board) = found::<Board>(&state, &principal, &id, "Board not found").await?;
    Ok(tagged(version, Json(board_json(&board))))
}

#[utoipa::path(patch, path = "/api/v1/boards/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Board id")), request_body(content = wire::UpdateBoard),
    responses((status = 200, body = wire::Board, description = "The board")))]
async fn update_board(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let body = body_of(body)?;
    let board: Board = find(&state, &principal, &id, "Board not found").await?;
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), &body).unwrap_or_default();
    checked(p, ())?;
    let after = board_fields(&state, &principal, &fields, BoardFields::from(&board), false).await?;
    let now = Utc::now();
    let written = state
        .ledger
        .write::<Board, McError>(&board.id.to_string(), &meta.write_context(&principal), |b| {
            Ok(rules::update_board(b, after.clone(), now)?)
        })
        .await?;
    let version = written.version;
    Ok(tagged(version, Json(board_json(&written.into_model()))))
}

#[utoipa::path(delete, path = "/api/v1/boards/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Board id")), responses((status = 200, body = wire::OkAnswer, description = "Deleted")))]
async fn delete_board(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, McError> {
    soft_delete::<Board>(
        &state,
        &principal,
        &meta,
        &id,
        "Board not found",
        |b| b.deleted_at,
        BoardEvent::Deleted,
    )
    .await
}

// ---- agents -------------------------------------------------------------------------------

/// AgentRead, plus fleetledger's `revision`, `provision_state` and `last_provision_error`.
pub fn agent_json(a: &McAgent, workspace_root: &str) -> Value {
    json!({
        "id": a.id,
        "gateway_id": a.gateway_id,
        "board_id": a.board_id,
        "name": a.name,
        "status": a.status,
        "gateway_agent_id": a.gateway_agent_id(),
        "workspace_path": a.workspace_path(workspace_root),
        "is_mc_agent": true,
        "is_board_lead": false,
        "is_gateway_main": a.is_gateway_main,
        "openclaw_session_id": a.session_key(),
        "last_seen_at": a.last_seen_at.as_ref().map(micros::format),
        "created_at": micros::format(&a.created_at),
        "updated_at": micros::format(&a.updated_at),
        "identity_profile": a.identity_profile,
        "heartbeat_config": a.heartbeat_config,
        "identity_template": a.identity_template,
        "soul_template": a.soul_template,
        "revision": a.revision,
        "provision_state": a.provision_state,
        "last_provision_error": a.last_provision_error,
    })
}

/// The workspace root of an agent's gateway, as the cache knows it.
pub fn workspace_root(state: &AppState, agent: &McAgent) -> String {
    state
        .ledger
        .models
        .cache::<Gateway>()
        .get(&agent.gateway_id.to_string())
        .map(|g| g.model.workspace_root.clone())
        .unwrap_or_default()
}

fn agent_response(state: &AppState, agent: &McAgent, version: i64, status: StatusCode) -> Response {
    tagged(version, (status, Json(agent_json(agent, &workspace_root(state, agent)))))
}

/// Renders an agent's workspace files as the reprovisioner will (strict: a name the context
/// lacks is an error), so a template that cannot render is refused before anything is
/// recorded, as a pydantic problem on the template's field.
fn check_templates(state: &AppState, agent: &McAgent) -> Result<(), McError> {
    let models = &state.ledger.models;
    let Some(gateway) = models.cache::<Gateway>().get(&agent.gateway_id.to_string()) else {
        // A gateway that is gone fails the provisioning itself, with its own message.
        return Ok(());
    };
    let board = agent.board_id.and_then(|b| models.cache::<Board>().get(&b.to_string()));
    let context = crate::workers::reprovisioner::template_context(agent, board.as_ref().map(|b| b.model.as_ref()), &gateway.model);
    let soul = agent.soul_template.as_deref();
    let identity = agent.identity_template.as_deref();
    let Err(error) = crate::workers::drivers::workspace::render(&context, soul, identity, false) else {
        return Ok(());
    };
    let (field, input) = if error.starts_with("IDENTITY.md") {
        ("identity_template", identity)
    } else {
        ("soul_template", soul)
    };
    let mut p = Problems::default();
    p.found(
        &at(&body_loc(), field),
        "value_error",
        format!("Value error, the template cannot be rendered: {error}"),
        json!(input),
    );
    Err(McError::validation(p.0))
}

/// `events` and the agent after them, checked to render, or the refusal.
fn rendering(state: &AppState, before: Option<&McAgent>, events: Vec<AgentEvent>) -> Result<(Vec<AgentEvent>, Option<McAgent>), McError> {
    let after = events.iter().fold(before.cloned(), McAgent::evolve);
    if let Some(after) = &after {
        check_templates(state, after)?;
    }
    Ok((events, after))
}

/// Whether an appended agent event asks the reprovisioner to provision again.
fn reprovisions(e: &fleetledger_events::EventEnvelope) -> bool {
    matches!(AgentEvent::from_envelope(e), Ok(AgentEvent::Updated(u)) if u.reprovision)
}

/// After an event that reprovisions: waits for the reprovisioner's outcome and answers
/// with the agent as it then is, 502 when provisioning failed, 504 when no outcome came.
async fn settle(state: &AppState, trigger: &fleetledger_events::EventEnvelope, status: StatusCode) -> Result<Response, McError> {
    let outcome = super::outcome_of(state, trigger).await?;
    let Some(outcome) = outcome else {
        return Err(McError::new(StatusCode::GATEWAY_TIMEOUT, "Gateway update timed out"));
    };
    // The outcome's read model is stored with it: reads after this answer see it.
    let agent = state
        .ledger
        .models
        .refresh::<McAgent>(&trigger.stream_id)
        .await?
        .ok_or_else(|| McError::not_found("Not Found"))?;
    if let Ok(AgentEvent::ProvisionFailed(failed)) = AgentEvent::from_envelope(&outcome) {
        return Err(McError::new(
            StatusCode::BAD_GATEWAY,
            &format!("Gateway update failed: {}", failed.error),
        ));
    }
    Ok(agent_response(state, &agent.model, agent.version, status))
}

#[derive(Deserialize)]
struct AgentQuery {
    board_id: Option<String>,
    gateway_id: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/agents", tag = "mission_control", security(("bearer" = [])),
    params(("board_id" = Option<String>, Query, description = "Only this board's agents"), ("gateway_id" = Option<String>, Query, description = "Only this gateway's agents"),
           ("limit" = Option<i64>, Query, description = "1 to 200 (default 50)"), ("offset" = Option<i64>, Query, description = "Items to skip")),
    responses((status = 200, body = wire::AgentPage, description = "Agents, newest first"), (status = 422, description = "Invalid query")))]
async fn list_agents(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    Query(query): Query<AgentQuery>,
) -> Result<Response, McError> {
    let mut p = Problems::default();
    let q = [json!("query")];
    let limit = match &query.limit {
        Some(raw) => integer(&mut p, &at(&q, "limit"), Some(&json!(raw)), Some(1), Some(200)),
        None => Some(50),
    };
    let offset = match &query.offset {
        Some(raw) => integer(&mut p, &at(&q, "offset"), Some(&json!(raw)), Some(0), None),
        None => Some(0),
    };
    let id_filter = |p: &mut Problems, name: &str, raw: &Option<String>| {
        raw.as_ref().and_then(|s| match Uuid::parse_str(s) {
            Ok(id) => Some(id),
            Err(_) => {
                p.found(
                    &at(&q, name),
                    "uuid_parsing",
                    "Input should be a valid UUID, unable to parse string as a UUID",
                    json!(s),
                );
                None
            }
        })
    };
    let board = id_filter(&mut p, "board_id", &query.board_id);
    let gateway = id_filter(&mut p, "gateway_id", &query.gateway_id);
    let (limit, offset) = checked(p, (limit.unwrap_or(50), offset.unwrap_or(0)))?;
    let mut agents = all_of::<McAgent>(&state, &principal, |a| {
        board.is_none_or(|b| a.board_id == Some(b)) && gateway.is_none_or(|g| a.gateway_id == g)
    });
    agents.sort_by_key(|a| std::cmp::Reverse((a.created_at, a.id)));
    let items: Vec<Value> = agents
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|a| agent_json(a, &workspace_root(&state, a)))
        .collect();
    Ok(Json(json!({ "items": items, "total": agents.len(), "limit": limit, "offset": offset })).into_response())
}

#[utoipa::path(post, path = "/api/v1/agents", tag = "mission_control", security(("bearer" = [])),
    request_body(content = wire::CreateAgent),
    responses((status = 200, body = wire::Agent, description = "The provisioned agent"),
              (status = 404, description = "Gateway not found / Board not found (nothing recorded)"),
              (status = 422, description = "Validation failed, or a template cannot be rendered (nothing recorded)"),
              (status = 502, description = "Provisioning failed; the agent is recorded: its `id` is in the body and `Location`"),
              (status = 504, description = "No provisioning outcome in time; the agent is recorded: its `id` is in the body and `Location`")))]
async fn create_agent(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let body = body_of(body)?;
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), &body).unwrap_or_default();
    let name = required_text(&mut p, &fields, "name");
    let board_id = uuid_field(&mut p, &fields, "board_id").flatten();
    let gateway_id = uuid_field(&mut p, &fields, "gateway_id").flatten();
    let heartbeat = object_field(&mut p, &fields, "heartbeat_config").flatten();
    let profile = object_field(&mut p, &fields, "identity_profile").flatten();
    let identity = text_field(&mut p, &fields, "identity_template", true).flatten();
    let soul = text_field(&mut p, &fields, "soul_template", true).flatten();
    checked(p, ())?;
    let board = match board_id {
        Some(id) => Some(BoardRef::from(
            &find::<Board>(&state, &principal, &id.to_string(), "Board not found").await?,
        )),
        None => None,
    };
    if let (None, Some(id)) = (&board, gateway_id) {
        find::<Gateway>(&state, &principal, &id.to_string(), "Gateway not found").await?;
    }
    let id = Uuid::now_v7();
    let events = rules::create_agent(CreateAgent {
        agent_id: id,
        org_id: principal.org_id,
        name,
        board,
        gateway_id,
        heartbeat_config: heartbeat,
        identity_profile: profile,
        identity_template: identity,
        soul_template: soul,
        now: Utc::now(),
    })?;
    let (events, _) = rendering(&state, None, events)?;
    // Without a board the agent is its gateway's main agent (checked once the body is
    // known to be valid: a 422 says more than a 409).
    if let (None, Some(gateway)) = (board_id, gateway_id) {
        one_main_agent(&state, principal.org_id, gateway, None)?;
    }
    let (_, _, appended) = create_stream::<McAgent>(&state, &meta.write_context(&principal), id, events).await?;
    let trigger = appended.last().ok_or_else(|| McError::internal("nothing appended"))?;
    // The agent exists whatever its provisioning did: a failure says which agent it was,
    // so a client retrying it does not make another.
    settle(&state, trigger, StatusCode::OK).await.map_err(|mut e| {
        if e.status.is_server_error() {
            e.created = Some(id);
        }
        e
    })
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")), responses((status = 200, body = wire::Agent, description = "The agent"), (status = 404, description = "Not Found")))]
async fn get_agent(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    Path(id): Path<String>,
) -> Result<Response, McError> {
    let (version, agent) = found::<McAgent>(&state, &principal, &id, "Not Found").await?;
    Ok(agent_response(&state, &agent, version, StatusCode::OK))
}

#[derive(Deserialize)]
struct ForceQuery {
    force: Option<String>,
}

fn force_of(query: &ForceQuery) -> Result<bool, McError> {
    match query.force.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => {
            let mut p = Problems::default();
            p.found(
                &[json!("query"), json!("force")],
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
                json!(other),
            );
            Err(McError::validation(p.0))
        }
    }
}

/// The Update Agent body, pydantic-validated; unknown fields are ignored.
fn agent_patch(body: &Value) -> Result<AgentPatch, McError> {
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), body).unwrap_or_default();
    let name = match fields.get("name") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => {
            p.found(
                &at(&body_loc(), "name"),
                "string_too_short",
                "String should have at least 1 character",
                json!(s),
            );
            None
        }
        v => string(&mut p, &at(&body_loc(), "name"), v, false, 1),
    };
    let status = match fields.get("status") {
        None => None,
        Some(Value::String(s)) if rules::STATUSES.contains(&s.as_str()) => Some(s.clone()),
        Some(other) => {
            p.found(
                &at(&body_loc(), "status"),
                "literal_error",
                "Input should be 'active', 'paused' or 'retired'",
                other.clone(),
            );
            None
        }
    };
    let is_gateway_main = match fields.get("is_gateway_main") {
        None | Some(Value::Null) => None,
        v => boolean(&mut p, &at(&body_loc(), "is_gateway_main"), v),
    };
    let patch = AgentPatch {
        name,
        status,
        board_id: uuid_field(&mut p, &fields, "board_id"),
        is_gateway_main,
        heartbeat_config: object_field(&mut p, &fields, "heartbeat_config"),
        identity_profile: object_field(&mut p, &fields, "identity_profile"),
        identity_template: text_field(&mut p, &fields, "identity_template", true),
        soul_template: text_field(&mut p, &fields, "soul_template", true),
    };
    checked(p, patch)
}

#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id"), ("force" = Option<bool>, Query, description = "Reprovision even when nothing significant changed")),
    request_body(content = wire::UpdateAgent),
    responses((status = 200, body = wire::Agent, description = "The agent"), (status = 403, description = "Not an org admin"), (status = 404, description = "Not Found / Board not found"),
              (status = 422, description = "Validation failed"), (status = 502, description = "Gateway update failed (the change is recorded)"),
              (status = 504, description = "No provisioning outcome in time")))]
async fn update_agent(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    Query(query): Query<ForceQuery>,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let force = force_of(&query)?;
    let patch = agent_patch(&body_of(body)?)?;
    let agent: McAgent = find(&state, &principal, &id, "Not Found").await?;
    let target = match patch.board_id {
        Some(Some(board_id)) => Some(BoardRef::from(
            &find::<Board>(&state, &principal, &board_id.to_string(), "Board not found").await?,
        )),
        _ => None,
    };
    let current = match agent.board_id {
        Some(b) => state
            .ledger
            .models
            .cache::<Board>()
            .get(&b.to_string())
            .map(|c| BoardRef::from(c.model.as_ref())),
        None => None,
    };
    let now = Utc::now();
    let written = state
        .ledger
        .write::<McAgent, McError>(&agent.id.to_string(), &meta.write_context(&principal), |a| {
            let events = rules::update_agent(a, patch.clone(), target, current, force, now)?;
            let (events, after) = rendering(&state, Some(a), events)?;
            if let Some(main) = after.filter(|m| m.is_gateway_main && (!a.is_gateway_main || m.gateway_id != a.gateway_id)) {
                one_main_agent(&state, principal.org_id, main.gateway_id, Some(a.id))?;
            }
            Ok(events)
        })
        .await?;
    let (version, appended) = (written.version, written.appended);
    let after = written.model.ok_or_else(|| McError::not_found("Not Found"))?;
    let reprovisions = appended.as_ref().and_then(|a| a.events.last()).filter(|e| reprovisions(e));
    match reprovisions {
        Some(trigger) => settle(&state, trigger, StatusCode::OK).await,
        None => Ok(agent_response(&state, &after, version, StatusCode::OK)),
    }
}

/// A gateway has one main agent: its workspace is `workspace-mc-gateway-<gateway id>`, so
/// a second would write over the first's files. 409 when another live agent holds it.
/// (Read from this process's cache: two requests racing to make one may both pass.)
fn one_main_agent(state: &AppState, org: Uuid, gateway: Uuid, except: Option<Uuid>) -> Result<(), McError> {
    let taken = state
        .ledger
        .models
        .all_live_in_org::<McAgent>(org)
        .iter()
        .any(|a| a.is_gateway_main && a.gateway_id == gateway && Some(a.id) != except);
    match taken {
        true => Err(McError::new(StatusCode::CONFLICT, "The gateway already has a main agent")),
        false => Ok(()),
    }
}

/// Its sealed token never leaves the process: `Gateway::PRIVATE_FIELDS`.
impl Audited for Gateway {
    const SURFACE: Surface = Surface::MissionControl;
}

impl Audited for Board {
    const SURFACE: Surface = Surface::MissionControl;
}

impl Audited for McAgent {
    const SURFACE: Surface = Surface::MissionControl;

    fn render(&self, state: &AppState) -> Value {
        agent_json(self, &workspace_root(state, self))
    }

    /// Puts back what an agent was at an older version (its name, status, heartbeat,
    /// identity and templates; not its placement) through the Update Agent rules,
    /// reprovisioning when that changes its templates.
    fn restore(request: RestoreRequest<'_>, target: Self) -> BoxFuture<'_, Result<Response, Refusal>> {
        Box::pin(async move {
            let refusal = |e: McError| {
                let detail = e.detail.as_str().map(str::to_string).unwrap_or_else(|| e.detail.to_string());
                Refusal::new(e.status, detail)
            };
            let (state, principal) = (request.state, request.principal);
            require_admin(principal).map_err(refusal)?;
            let agent: McAgent = find(state, principal, request.id, "Not Found").await.map_err(refusal)?;
            let patch = AgentPatch {
                name: Some(target.name),
                status: Some(target.status),
                heartbeat_config: Some(Some(target.heartbeat_config)),
                identity_profile: Some(target.identity_profile),
                identity_template: Some(target.identity_template),
                soul_template: Some(target.soul_template),
                ..Default::default()
            };
            let now = Utc::now();
            let written = state
                .ledger
                .write::<McAgent, McError>(&agent.id.to_string(), &request.meta.write_context(principal), |a| {
                    let events = rules::update_agent(a, patch.clone(), None, None, false, now)?;
                    rendering(state, Some(a), events).map(|(events, _)| events)
                })
                .await
                .map_err(|e| refusal(e.into()))?;
            let trigger = written.appended.as_ref().and_then(|a| a.events.last()).filter(|e| reprovisions(e));
            match trigger {
                Some(trigger) => settle(state, trigger, StatusCode::OK).await.map_err(refusal),
                None => {
                    let version = written.version;
                    Ok(agent_response(state, &written.into_model(), version, StatusCode::OK))
                }
            }
        })
    }
}

#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")), responses((status = 200, body = wire::OkAnswer, description = "Deleted, also for an unknown id")))]
async fn delete_agent(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, McError> {
    // Deleting an unknown agent is fine too.
    match soft_delete::<McAgent>(&state, &principal, &meta, &id, "Not Found", |a| a.deleted_at, AgentEvent::Deleted).await {
        Err(e) if e.status == StatusCode::NOT_FOUND => Ok(Json(json!({ "ok": true })).into_response()),
        other => other,
    }
}

#[utoipa::path(post, path = "/api/v1/agents/{id}/heartbeat", tag = "mission_control", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")), request_body(content = wire::Heartbeat),
    responses((status = 200, body = wire::Agent, description = "The agent with `last_seen_at` set")))]
async fn agent_heartbeat(
    State(state): State<AppState>,
    McPrincipal(principal): McPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<McError>,
) -> Result<Response, McError> {
    require_admin(&principal)?;
    let body = body_of(body).or_else(|e| {
        if e.status == StatusCode::UNPROCESSABLE_ENTITY {
            Ok(json!({}))
        } else {
            Err(e)
        }
    })?;
    let mut p = Problems::default();
    let fields = lenient_model(&mut p, &body_loc(), &body).unwrap_or_default();
    let status = text_field(&mut p, &fields, "status", true).flatten();
    checked(p, ())?;
    let agent: McAgent = find(&state, &principal, &id, "Not Found").await?;
    let now = Utc::now();
    let written = state
        .ledger
        .write::<McAgent, McError>(&agent.id.to_string(), &meta.write_context(&principal), |_| {
            Ok(rules::heartbeat(status.clone(), now)?)
        })
        .await?;
    let version = written.version;
    Ok(agent_response(&state, &written.into_model(), version, StatusCode::OK))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_gateways, create_gateway, get_gateway, update_gateway, delete_gateway, list_boards, create_board, get_board, update_board, delete_board,
          list_agents, create_agent, get_agent, update_agent, delete_agent, agent_heartbeat),
    components(schemas(wire::MissionControlError)),
    tags((name = "mission_control", description = "Gateways, boards and agents (OpenClaw Mission Control-compatible)"))
)]
pub struct MissionControlApi;

/// The shapes of this surface's bodies, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    /// FastAPI's error body, with the request id.
    #[derive(ToSchema)]
    pub struct MissionControlError {
        /// A message, or for validation errors a list of `{type, loc, msg, input}`
        pub detail: Value,
        pub request_id: Option<String>,
        /// The agent a failed create recorded anyway (502/504)
        pub id: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Gateway {
        pub id: String,
        pub organization_id: String,
        pub name: String,
        pub url: String,
        pub workspace_root: String,
        /// Tokens are never shown
        pub has_token: bool,
        pub created_at: String,
        pub updated_at: String,
    }

    /// `url` is empty (provisioning skipped), `local`, or ws(s):// to an allowed host; a
    /// `local` gateway's `workspace_root` is a relative name under the server's workspaces
    /// directory (or inside an operator-allowed root).
    #[derive(ToSchema)]
    pub struct CreateGateway {
        pub name: String,
        pub url: Option<String>,
        pub token: Option<String>,
        pub workspace_root: String,
    }

    #[derive(ToSchema)]
    pub struct UpdateGateway {
        pub name: Option<String>,
        pub url: Option<String>,
        pub token: Option<String>,
        pub workspace_root: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Board {
        pub id: String,
        pub organization_id: String,
        pub name: String,
        pub slug: String,
        #[schema(required)]
        pub description: Option<String>,
        #[schema(required)]
        pub gateway_id: Option<String>,
        #[schema(required)]
        pub objective: Option<String>,
        pub created_at: String,
        pub updated_at: String,
    }

    #[derive(ToSchema)]
    pub struct CreateBoard {
        pub name: String,
        pub slug: Option<String>,
        pub description: Option<String>,
        pub gateway_id: Option<uuid::Uuid>,
        pub objective: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct UpdateBoard {
        pub name: Option<String>,
        pub slug: Option<String>,
        pub description: Option<String>,
        pub gateway_id: Option<uuid::Uuid>,
        pub objective: Option<String>,
    }

    /// AgentRead, plus fleetledger's `revision`, `provision_state` and `last_provision_error`.
    #[derive(ToSchema)]
    pub struct Agent {
        pub id: String,
        pub gateway_id: String,
        #[schema(required)]
        pub board_id: Option<String>,
        pub name: String,
        pub status: String,
        pub gateway_agent_id: String,
        pub workspace_path: String,
        pub is_mc_agent: bool,
        pub is_board_lead: bool,
        pub is_gateway_main: bool,
        pub openclaw_session_id: String,
        #[schema(required)]
        pub last_seen_at: Option<String>,
        pub created_at: String,
        pub updated_at: String,
        #[schema(required)]
        pub identity_profile: Option<Map<String, Value>>,
        pub heartbeat_config: Value,
        #[schema(required)]
        pub identity_template: Option<String>,
        #[schema(required)]
        pub soul_template: Option<String>,
        pub revision: i64,
        /// `pending`, `provisioned`, `failed` or `skipped`
        pub provision_state: String,
        #[schema(required)]
        pub last_provision_error: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct AgentPage {
        pub items: Vec<Agent>,
        pub total: i64,
        pub limit: i64,
        pub offset: i64,
    }

    #[derive(ToSchema)]
    pub struct CreateAgent {
        pub name: String,
        pub board_id: Option<uuid::Uuid>,
        pub gateway_id: Option<uuid::Uuid>,
        pub heartbeat_config: Option<Map<String, Value>>,
        pub identity_profile: Option<Map<String, Value>>,
        pub identity_template: Option<String>,
        pub soul_template: Option<String>,
    }

    /// Any of the fields; `null` clears.
    #[derive(ToSchema)]
    pub struct UpdateAgent {
        pub name: Option<String>,
        pub board_id: Option<uuid::Uuid>,
        pub is_gateway_main: Option<bool>,
        /// `active`, `paused` or `retired`
        pub status: Option<String>,
        pub heartbeat_config: Option<Map<String, Value>>,
        pub identity_profile: Option<Map<String, Value>>,
        pub identity_template: Option<String>,
        pub soul_template: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Heartbeat {
        pub status: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct OkAnswer {
        pub ok: bool,
    }
}
