//! The device/image profiles surface, wire-compatible with Fleeti's `/api/v1/profiles`
//! (plus `/api/v1/fleets`, and creation, deletion and revision reads, which Fleeti does
//! in its web UI). Bodies are read and written with Go's `encoding/json` rules: errors are
//! `{"error": "..."}` and every body ends with the newline Go's encoder writes.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;

use super::Surface;
use chrono::{DateTime, Utc};
use fleetledger_events::go_json;
use fleetledger_events::profile::ConfigChangeMode;
use fleetledger_projections::fleet::Fleet;
use fleetledger_projections::profile::{self as profile_model, Profile};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{etag, refused, BufferedResponse, JsonBody, RequestMeta};
use crate::auth::{bearer_token, AuthFailure, Principal};
use crate::domain::profile::{
    self as rules, ChangeConfig, Config, ConvenienceFields, CreateProfile, KernelConfig, KernelPatch, SourceOverride,
};
use crate::domain::{fleet as fleet_rules, DomainError};
use crate::ledger::WriteContext;
use crate::state::{AppState, Rendered};
use crate::store::StoreError;
use crate::streams::{Audited, Refusal, RestoreRequest};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/fleets", get(list_fleets).post(create_fleet))
        .route("/api/v1/profiles", get(list_profiles).post(create_profile))
        .route(
            "/api/v1/profiles/{id}",
            get(get_profile).put(replace_profile).patch(patch_profile).delete(delete_profile),
        )
        .route("/api/v1/profiles/{id}/revisions", get(list_revisions))
        .route("/api/v1/profiles/{id}/revisions/{revision}", get(get_revision))
}

/// Fleeti's error envelope.
#[derive(Debug)]
pub struct FleetiError {
    status: StatusCode,
    message: String,
}

impl FleetiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        FleetiError {
            status,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Profile not found")
    }
    fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Access restricted")
    }
    fn precondition_failed() -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, "Precondition failed")
    }
    fn internal(what: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{what}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, what)
    }
}

impl super::Envelope for FleetiError {
    fn status(status: StatusCode, message: &str) -> Self {
        FleetiError::new(status, message)
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        FleetiError::internal("Failed to update profile", error)
    }
}

impl From<StoreError> for FleetiError {
    fn from(error: StoreError) -> Self {
        FleetiError::internal("Failed to update profile", error)
    }
}

impl IntoResponse for FleetiError {
    fn into_response(self) -> Response {
        let mut response = go_response(self.status, &json!({ "error": self.message }), vec![]).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A body as Go's `json.NewEncoder(w).Encode` writes it.
pub(crate) fn go_response(status: StatusCode, value: &Value, mut headers: Vec<(String, String)>) -> BufferedResponse {
    let mut body = go_json::to_string(value);
    body.push('\n');
    headers.insert(0, ("content-type".into(), "application/json".into()));
    BufferedResponse {
        status,
        headers,
        body: body.into(),
    }
}

/// The authenticated caller, or Fleeti's 401.
pub struct FleetiPrincipal(Principal);

impl FromRequestParts<AppState> for FleetiPrincipal {
    type Rejection = FleetiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, FleetiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(crate::auth::header_text);
        let unauthorized = |m: &str| FleetiError::new(StatusCode::UNAUTHORIZED, m);
        let token = bearer_token(header).map_err(|f| match f {
            AuthFailure::Missing => unauthorized("API key required"),
            AuthFailure::Invalid => unauthorized("Invalid API key"),
        })?;
        let principal = state
            .auth
            .authenticate_request(token)
            .await
            .map_err(|_| unauthorized("Invalid API key"))?;
        Ok(FleetiPrincipal(super::unscoped::<FleetiError>(principal)?))
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as Fleeti's SQL formats timestamps.
fn fleeti_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn org_fleets(state: &AppState, org_id: Uuid) -> Vec<Fleet> {
    state
        .ledger
        .models
        .cache::<Fleet>()
        .all()
        .into_iter()
        .map(|c| (*c.model).clone())
        .filter(|f| f.org_id == org_id)
        .collect()
}

/// The profile's fleets, ordered by name then id (Fleeti's detail order).
fn assigned_fleets(state: &AppState, profile: &Profile) -> Vec<Fleet> {
    let mut fleets: Vec<Fleet> = profile
        .fleet_ids
        .iter()
        .filter_map(|id| {
            state
                .ledger
                .models
                .cache::<Fleet>()
                .get(&fleet_rules::fleet_stream_id(profile.org_id, id))
        })
        .map(|c| (*c.model).clone())
        .collect();
    fleets.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    fleets
}

fn insert_nonempty(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.into(), Value::String(value.into()));
    }
}

/// The fields Fleeti's list item and detail share, in their order, from `id` through
/// `config_hash`. `fleet_ids` comes ordered as the caller wants it (the two differ);
/// `fleet_name` joins the names in name order for both.
fn shared_fields(p: &Profile, fleets: &[Fleet], fleet_ids: Vec<String>) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("id".into(), p.id.to_string().into());
    if let Some(first) = fleet_ids.first() {
        d.insert("fleet_id".into(), first.clone().into());
    }
    d.insert("fleet_ids".into(), fleet_ids.into());
    insert_nonempty(
        &mut d,
        "fleet_name",
        &fleets.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
    );
    d.insert("name".into(), p.name.clone().into());
    insert_nonempty(&mut d, "description", &p.description);
    d.insert("latest_revision".into(), p.latest_revision.into());
    insert_nonempty(&mut d, "config_hash", &p.config_hash);
    d
}

/// Fleeti's `apiProfileDetail`, field for field.
pub(crate) fn profile_detail(state: &AppState, p: &Profile) -> Value {
    let fleets = assigned_fleets(state, p);
    let config = p.config.as_object().cloned().unwrap_or_default();
    let kernel = rules::kernel_from_config(&config).unwrap_or_default();
    let packages = rules::packages_from_config(&config).unwrap_or_default();
    let mut d = shared_fields(p, &fleets, fleets.iter().map(|f| f.id.clone()).collect());
    d.insert("config_schema_version".into(), p.config_schema_version.into());
    d.insert("created_at".into(), fleeti_time(&p.created_at).into());
    d.insert("config".into(), go_json::canonicalize(&p.config));
    d.insert("packages".into(), packages.into());
    d.insert("kernel".into(), kernel_detail(&kernel));
    d.insert(
        "openclaw_microvm_enabled".into(),
        rules::openclaw_from_config(&config).unwrap_or(false).into(),
    );
    insert_nonempty(&mut d, "raw_nix", p.raw_nix.trim());
    Value::Object(d)
}

fn kernel_detail(kernel: &KernelConfig) -> Value {
    let so = &kernel.source_override;
    let mut over = Map::new();
    over.insert("enabled".into(), so.enabled.into());
    insert_nonempty(&mut over, "url", &so.url);
    insert_nonempty(&mut over, "ref", &so.git_ref);
    insert_nonempty(&mut over, "rev", &so.rev);
    over.insert("patches".into(), serde_json::to_value(&so.patches).unwrap_or_else(|_| json!([])));
    let mut k = Map::new();
    insert_nonempty(&mut k, "attr", &kernel.attr);
    k.insert("source_override".into(), Value::Object(over));
    Value::Object(k)
}

/// Fleeti's `apiProfile` list item: fleet ids by id, fleet names by name.
fn profile_summary(state: &AppState, p: &Profile) -> Value {
    let fleets = assigned_fleets(state, p);
    let mut ids: Vec<String> = fleets.iter().map(|f| f.id.clone()).collect();
    ids.sort();
    let mut d = shared_fields(p, &fleets, ids);
    d.insert("created_at".into(), fleeti_time(&p.created_at).into());
    Value::Object(d)
}

/// A profile the caller may see, with its stream version; anything else is 404.
fn visible_profile(state: &AppState, principal: &Principal, id: &str) -> Result<(i64, std::sync::Arc<Profile>), FleetiError> {
    let cached = state
        .ledger
        .models
        .cache::<Profile>()
        .get(id.trim())
        .ok_or_else(FleetiError::not_found)?;
    let p = &cached.model;
    if p.org_id != principal.org_id || p.deleted_at.is_some() || !principal.may(id.trim(), "read") {
        return Err(FleetiError::not_found());
    }
    Ok((cached.version, cached.model))
}

// ---- request decoding with Go's semantics ----------------------------------------------

/// The first JSON value of a body, decoded as Go's `map[string]json.RawMessage` then its
/// typed struct would: object or `null`, numbers in float64 range, and whether anything
/// follows it.
fn decode_object(body: &[u8]) -> Result<(Map<String, Value>, bool), FleetiError> {
    if body.is_empty() {
        return Err(FleetiError::bad_request("Request body is required"));
    }
    let not_object = || FleetiError::bad_request("Request body must be a JSON object");
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Box<serde_json::value::RawValue>>();
    let first = values.next().ok_or_else(not_object)?.map_err(|_| not_object())?;
    let trailing = values.next().is_some();
    let text = first.get();
    if !(text.starts_with('{') || text == "null") {
        return Err(not_object());
    }
    let map: Option<Map<String, Value>> =
        serde_json::from_str(text).map_err(|_| FleetiError::bad_request("Request body contains invalid fields or values"))?;
    let map = map.unwrap_or_default();
    if map.is_empty() {
        return Err(FleetiError::bad_request("Request body must include at least one field"));
    }
    if super::too_deep_fields(&map) {
        return Err(FleetiError::bad_request("Request body contains invalid fields or values"));
    }
    Ok((map, trailing))
}

fn invalid_fields() -> FleetiError {
    FleetiError::bad_request("Request body contains invalid fields or values")
}

/// Go matches a JSON key to a struct field exactly, else case-insensitively.
fn field_for<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .find(|k| **k == key)
        .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(key)))
        .copied()
}

fn opt_string(v: &Value) -> Result<Option<String>, FleetiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid_fields()),
    }
}

fn opt_bool(v: &Value) -> Result<Option<bool>, FleetiError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(invalid_fields()),
    }
}

/// A Go `int`: an integer literal in range.
fn opt_int(v: &Value) -> Result<Option<i64>, FleetiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(invalid_fields),
        _ => Err(invalid_fields()),
    }
}

fn string_list(v: &Value) -> Result<Option<Vec<String>>, FleetiError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|i| opt_string(i).map(Option::unwrap_or_default))
            .collect::<Result<_, _>>()
            .map(Some),
        _ => Err(invalid_fields()),
    }
}

/// Decodes a typed sub-object, rejecting unknown fields like Go's `DisallowUnknownFields`.
fn typed_object<'v>(v: &'v Value, known: &[&str]) -> Result<Option<Vec<(String, &'v Value)>>, FleetiError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| field_for(k, known).map(|f| (f.to_string(), v)).ok_or_else(invalid_fields))
            .collect::<Result<_, _>>()
            .map(Some),
        _ => Err(invalid_fields()),
    }
}

fn kernel_input(v: &Value) -> Result<Option<KernelConfig>, FleetiError> {
    let Some(fields) = typed_object(v, &["attr", "source_override"])? else {
        return Ok(None);
    };
    let mut kernel = KernelConfig::default();
    for (name, value) in fields {
        match name.as_str() {
            "attr" => kernel.attr = opt_string(value)?.unwrap_or_default(),
            _ => {
                let Some(so_fields) = typed_object(value, &["enabled", "url", "ref", "rev", "patches"])? else {
                    continue;
                };
                let mut so = SourceOverride::default();
                for (name, value) in so_fields {
                    match name.as_str() {
                        "enabled" => so.enabled = opt_bool(value)?.unwrap_or(false),
                        "url" => so.url = opt_string(value)?.unwrap_or_default(),
                        "ref" => so.git_ref = opt_string(value)?.unwrap_or_default(),
                        "rev" => so.rev = opt_string(value)?.unwrap_or_default(),
                        _ => so.patches = patches_input(value)?,
                    }
                }
                kernel.source_override = so;
            }
        }
    }
    Ok(Some(kernel))
}

fn patches_input(v: &Value) -> Result<Vec<KernelPatch>, FleetiError> {
    let items = match v {
        Value::Null => return Ok(vec![]),
        Value::Array(items) => items,
        _ => return Err(invalid_fields()),
    };
    let mut patches = Vec::with_capacity(items.len());
    for item in items {
        let mut patch = KernelPatch::default();
        for (name, value) in typed_object(item, &["name", "sha256", "content_base64"])?.unwrap_or_default() {
            let text = opt_string(value)?.unwrap_or_default();
            match name.as_str() {
                "name" => patch.name = text,
                "sha256" => patch.sha256 = text,
                _ => patch.content_base64 = text,
            }
        }
        patches.push(patch);
    }
    Ok(patches)
}

const MUTATION_FIELDS: [&str; 6] = [
    "config",
    "packages",
    "kernel",
    "openclaw_microvm_enabled",
    "raw_nix",
    "config_schema_version",
];
const CREATE_FIELDS: [&str; 9] = [
    "name",
    "description",
    "fleet_ids",
    "config",
    "packages",
    "kernel",
    "openclaw_microvm_enabled",
    "raw_nix",
    "config_schema_version",
];

/// A profile write body, typed.
#[derive(Default)]
struct ProfileBody {
    /// The keys exactly as sent.
    sent: Vec<String>,
    name: Option<String>,
    description: Option<String>,
    fleet_ids: Option<Vec<String>>,
    config: Option<Option<Config>>,
    convenience: ConvenienceFields,
    raw_nix: Option<String>,
    config_schema_version: Option<i64>,
}

fn decode_body(body: &[u8], known: &[&str]) -> Result<ProfileBody, FleetiError> {
    let (map, trailing) = decode_object(body)?;
    let mut out = ProfileBody {
        sent: map.keys().cloned().collect(),
        ..Default::default()
    };
    for (key, value) in &map {
        match field_for(key, known).ok_or_else(invalid_fields)? {
            "name" => out.name = opt_string(value)?,
            "description" => out.description = opt_string(value)?,
            "fleet_ids" => out.fleet_ids = string_list(value)?,
            "config" => {
                out.config = Some(match value {
                    Value::Null => None,
                    Value::Object(m) => Some(m.clone()),
                    _ => return Err(invalid_fields()),
                })
            }
            "packages" => out.convenience.packages = string_list(value)?,
            "kernel" => out.convenience.kernel = kernel_input(value)?,
            "openclaw_microvm_enabled" => out.convenience.openclaw_microvm_enabled = opt_bool(value)?,
            "raw_nix" => out.raw_nix = opt_string(value)?,
            _ => out.config_schema_version = opt_int(value)?,
        }
    }
    if trailing {
        return Err(FleetiError::bad_request("Request body must contain a single JSON object"));
    }
    Ok(out)
}

fn domain_error(error: DomainError) -> FleetiError {
    match error {
        DomainError::Invalid(message) => FleetiError::bad_request(message),
        DomainError::NotFound => FleetiError::not_found(),
        DomainError::AlreadyExists(message) | DomainError::Conflict(message) => FleetiError::new(StatusCode::CONFLICT, message),
        DomainError::Forbidden(message) => FleetiError::new(StatusCode::FORBIDDEN, message),
    }
}

// ---- handlers -----------------------------------------------------------------------------

#[utoipa::path(get, path = "/api/v1/fleets", tag = "profiles", security(("bearer" = [])),
    responses((status = 200, body = wire::FleetList, description = "The organization's fleets, ordered by name")))]
async fn list_fleets(State(state): State<AppState>, FleetiPrincipal(principal): FleetiPrincipal) -> Response {
    let mut fleets = org_fleets(&state, principal.org_id);
    fleets.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let items: Vec<Value> = fleets.iter().map(fleet_json).collect();
    go_response(StatusCode::OK, &json!({ "fleets": items }), vec![]).into_response()
}

fn fleet_json(f: &Fleet) -> Value {
    json!({ "id": f.id, "name": f.name, "created_at": fleeti_time(&f.created_at) })
}

#[utoipa::path(post, path = "/api/v1/fleets", tag = "profiles", security(("bearer" = [])),
    request_body(content = wire::CreateFleet),
    responses((status = 201, body = wire::FleetCreated, description = "The fleet"), (status = 400, description = "Invalid fleet"),
              (status = 409, description = "Fleet already exists")))]
async fn create_fleet(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    meta: RequestMeta,
    body: JsonBody<FleetiError>,
) -> Result<Response, FleetiError> {
    let body = body.bytes().ok_or_else(|| FleetiError::bad_request("Request body is too large"))?;
    if !principal.may_write() {
        return Err(FleetiError::forbidden());
    }
    let (map, trailing) = decode_object(&body)?;
    let mut fleet_id = String::new();
    let mut name = String::new();
    for (key, value) in &map {
        match field_for(key, &["id", "name"]).ok_or_else(invalid_fields)? {
            "id" => fleet_id = opt_string(value)?.unwrap_or_default(),
            _ => name = opt_string(value)?.unwrap_or_default(),
        }
    }
    if trailing {
        return Err(FleetiError::bad_request("Request body must contain a single JSON object"));
    }
    let stream_id = fleet_rules::fleet_stream_id(principal.org_id, fleet_id.trim());
    let command = fleet_rules::CreateFleet {
        org_id: principal.org_id,
        fleet_id,
        name,
        now: Utc::now(),
    };
    let written = state
        .ledger
        .write_stream::<Fleet, FleetiError>(&stream_id, &meta.write_context(&principal), |existing| {
            fleet_rules::create_fleet(existing, command.clone()).map_err(domain_error)
        })
        .await
        .map_err(|e| refused(e, "Fleet not found"))?;
    let version = written.version;
    let fleet = written.into_model();
    Ok(go_response(StatusCode::CREATED, &json!({ "fleet": fleet_json(&fleet) }), vec![etag(version)]).into_response())
}

#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles", security(("bearer" = [])),
    responses((status = 200, body = wire::ProfileList, description = "Profiles ordered created_at DESC, name ASC"),
              (status = 401, description = "Missing or invalid API key")))]
async fn list_profiles(State(state): State<AppState>, FleetiPrincipal(principal): FleetiPrincipal) -> Response {
    let mut profiles: Vec<Profile> = state
        .ledger
        .models
        .cache::<Profile>()
        .all()
        .into_iter()
        .map(|c| (*c.model).clone())
        .filter(|p| p.org_id == principal.org_id && p.deleted_at.is_none() && principal.may(&p.id.to_string(), "read"))
        .collect();
    profiles.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.name.cmp(&b.name)));
    let items: Vec<Value> = profiles.iter().map(|p| profile_summary(&state, p)).collect();
    go_response(StatusCode::OK, &json!({ "profiles": items }), vec![]).into_response()
}

#[utoipa::path(get, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile identifier")),
    responses((status = 200, body = wire::ProfileAnswer, description = "The profile, with `ETag`"), (status = 404, description = "Profile not found")))]
async fn get_profile(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    Path(id): Path<String>,
) -> Result<Response, FleetiError> {
    let (version, profile) = visible_profile(&state, &principal, &id)?;
    // Rendered once per stream version (fleets, the only other input, never change).
    let rendered = match state.rendered.get(&profile.id).map(|hit| hit.clone()) {
        Some(rendered) if rendered.version == version => rendered,
        _ => {
            let rendered = Rendered {
                version,
                body: go_response(StatusCode::OK, &json!({ "profile": profile_detail(&state, &profile) }), vec![]).body,
                etag: super::etag_value(version),
            };
            state.rendered.insert(profile.id, rendered.clone());
            rendered
        }
    };
    // Built as it goes out: a body's `into_response` would set a content type only to have
    // it replaced.
    let mut response = Response::new(axum::body::Body::from(rendered.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    headers.insert(header::ETAG, rendered.etag);
    Ok(response)
}

#[utoipa::path(post, path = "/api/v1/profiles", tag = "profiles", security(("bearer" = [])),
    request_body(content = wire::CreateProfile),
    responses((status = 201, body = wire::ProfileAnswer, description = "The profile at revision 1"), (status = 400, description = "Invalid profile")))]
async fn create_profile(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    meta: RequestMeta,
    body: JsonBody<FleetiError>,
) -> Result<Response, FleetiError> {
    let body = body.bytes();
    if !principal.may_write() {
        return Err(FleetiError::forbidden());
    }
    let body = body.ok_or_else(|| FleetiError::bad_request("Request body is too large"))?;
    let request = decode_body(&body, &CREATE_FIELDS)?;
    let fleet_ids = rules::normalize_packages(&request.fleet_ids.unwrap_or_default());
    for fleet_id in &fleet_ids {
        if state
            .ledger
            .models
            .cache::<Fleet>()
            .get(&fleet_rules::fleet_stream_id(principal.org_id, fleet_id))
            .is_none()
        {
            return Err(FleetiError::bad_request("Fleet not found"));
        }
    }
    let config = match request.config {
        Some(None) => return Err(FleetiError::bad_request("Config must be a JSON object")),
        Some(Some(config)) => Some(config),
        None => None,
    };
    let profile_id = Uuid::now_v7();
    let command = CreateProfile {
        profile_id,
        org_id: principal.org_id,
        name: request.name.unwrap_or_default(),
        description: request.description.unwrap_or_default(),
        fleet_ids,
        config,
        convenience: request.convenience,
        raw_nix: request.raw_nix.unwrap_or_default(),
        config_schema_version: request.config_schema_version,
        now: Utc::now(),
    };
    let written = state
        .ledger
        .write_stream::<Profile, FleetiError>(&profile_id.to_string(), &meta.write_context(&principal), |existing| {
            rules::create_profile(existing, command.clone(), &state.settings.available_kernels).map_err(domain_error)
        })
        .await
        .map_err(|e| refused(e, "Profile not found"))?;
    let version = written.version;
    let profile = written.into_model();
    Ok(go_response(
        StatusCode::CREATED,
        &json!({ "profile": profile_detail(&state, &profile) }),
        vec![etag(version)],
    )
    .into_response())
}

#[utoipa::path(put, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile identifier")),
    request_body(content = wire::ReplaceProfile),
    responses((status = 200, body = wire::ProfileChanged, description = "The profile; a new revision when the config hash changed"),
              (status = 400, description = "Invalid profile mutation request"), (status = 401, description = "Missing or invalid API key"),
              (status = 403, description = "Access restricted"), (status = 404, description = "Profile not found"),
              (status = 412, description = "Precondition failed")))]
async fn replace_profile(
    state: State<AppState>,
    principal: FleetiPrincipal,
    meta: RequestMeta,
    id: Path<String>,
    body: JsonBody<FleetiError>,
) -> Result<Response, FleetiError> {
    change_profile(state, principal, meta, id, body, ConfigChangeMode::Replace).await
}

#[utoipa::path(patch, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile identifier")),
    request_body(content = wire::PatchProfile),
    responses((status = 200, body = wire::ProfileChanged, description = "The profile; `config` keys are merged shallowly"), (status = 400, description = "Invalid request")))]
async fn patch_profile(
    state: State<AppState>,
    principal: FleetiPrincipal,
    meta: RequestMeta,
    id: Path<String>,
    body: JsonBody<FleetiError>,
) -> Result<Response, FleetiError> {
    change_profile(state, principal, meta, id, body, ConfigChangeMode::Patch).await
}

async fn change_profile(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
    body: JsonBody<FleetiError>,
    mode: ConfigChangeMode,
) -> Result<Response, FleetiError> {
    let id = id.trim().to_string();
    let body = body.bytes();
    let (version, _) = visible_profile(&state, &principal, &id)?;
    if !principal.may(&id, "configure") {
        return Err(FleetiError::forbidden());
    }
    // A stale precondition answers before the body is read, as it always has; the write
    // checks it again where the stream's writes are serialised.
    if meta.if_match.as_ref().is_some_and(|m| !m.matches(version)) {
        return Err(FleetiError::precondition_failed());
    }
    let body = body.ok_or_else(|| FleetiError::bad_request("Request body is too large"))?;
    let request = decode_body(&body, &MUTATION_FIELDS)?;
    if mode == ConfigChangeMode::Replace {
        if !request.sent.iter().any(|k| k == "config") {
            return Err(FleetiError::bad_request("Config is required"));
        }
        if !matches!(request.config, Some(Some(_))) {
            return Err(FleetiError::bad_request("Config must be a JSON object"));
        }
    }
    let command = ChangeConfig {
        mode,
        fields: request.sent.clone(),
        config: request.config,
        convenience: request.convenience,
        raw_nix: request.raw_nix,
        config_schema_version: request.config_schema_version,
        restored_from_version: None,
        reason: None,
        now: Utc::now(),
    };
    change_config(&state, &meta.write_context(&principal), &id, command).await
}

/// Appends a config change through Fleeti's rules and answers like Fleeti's PUT.
async fn change_config(state: &AppState, context: &WriteContext, id: &str, command: ChangeConfig) -> Result<Response, FleetiError> {
    let mut revision_before = 0;
    let written = state
        .ledger
        .write::<Profile, FleetiError>(id, context, |before| {
            revision_before = before.latest_revision;
            rules::change_config(Some(before), command.clone(), &state.settings.available_kernels).map_err(domain_error)
        })
        .await
        .map_err(|e| refused(e, "Profile not found"))?;
    let version = written.version;
    let after = written.into_model();
    let created_new_revision = after.latest_revision != revision_before;
    Ok(go_response(
        StatusCode::OK,
        &json!({ "profile": profile_detail(state, &after), "created_new_revision": created_new_revision }),
        vec![etag(version)],
    )
    .into_response())
}

#[utoipa::path(delete, path = "/api/v1/profiles/{id}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile identifier")),
    responses((status = 204, description = "Deleted; the history stays in the log"), (status = 404, description = "Profile not found")))]
async fn delete_profile(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> Result<Response, FleetiError> {
    let id = id.trim().to_string();
    visible_profile(&state, &principal, &id)?;
    if !principal.may(&id, "configure") {
        return Err(FleetiError::forbidden());
    }
    let now = Utc::now();
    let written = state
        .ledger
        .write::<Profile, FleetiError>(&id, &meta.write_context(&principal), |profile| {
            rules::delete_profile(Some(profile), now).map_err(domain_error)
        })
        .await
        .map_err(|e| refused(e, "Profile not found"))?;
    Ok(super::tagged(written.version, StatusCode::NO_CONTENT))
}

async fn profile_revisions(state: &AppState, principal: &Principal, id: &str) -> Result<Vec<profile_model::ProfileRevision>, FleetiError> {
    visible_profile(state, principal, id)?;
    let events = state.ledger.store.read_stream(id.trim(), 1).await?;
    profile_model::revisions(&events).map_err(|e| FleetiError::internal("Failed to load profile revisions", e))
}

fn revision_json(r: &profile_model::ProfileRevision, full: bool) -> Value {
    let mut d = Map::new();
    d.insert("revision".into(), r.revision.into());
    d.insert("config_hash".into(), r.config_hash.clone().into());
    d.insert("config_schema_version".into(), r.config_schema_version.into());
    d.insert("created_at".into(), fleeti_time(&r.created_at).into());
    d.insert("actor".into(), r.actor.clone().into());
    if full {
        d.insert("config".into(), go_json::canonicalize(&r.config));
        d.insert("raw_nix".into(), r.raw_nix.clone().into());
    }
    Value::Object(d)
}

#[utoipa::path(get, path = "/api/v1/profiles/{id}/revisions", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile identifier")),
    responses((status = 200, body = wire::RevisionList, description = "Every revision, newest first")))]
async fn list_revisions(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    Path(id): Path<String>,
) -> Result<Response, FleetiError> {
    let revisions = profile_revisions(&state, &principal, &id).await?;
    let items: Vec<Value> = revisions.iter().rev().map(|r| revision_json(r, false)).collect();
    Ok(go_response(StatusCode::OK, &json!({ "revisions": items }), vec![]).into_response())
}

#[utoipa::path(get, path = "/api/v1/profiles/{id}/revisions/{revision}", tag = "profiles", security(("bearer" = [])),
    params(("id" = String, Path, description = "Profile identifier"), ("revision" = i64, Path, description = "Revision number")),
    responses((status = 200, body = wire::RevisionAnswer, description = "The revision with its config and raw Nix"), (status = 404, description = "Revision not found")))]
async fn get_revision(
    State(state): State<AppState>,
    FleetiPrincipal(principal): FleetiPrincipal,
    Path((id, revision)): Path<(String, String)>,
) -> Result<Response, FleetiError> {
    let revisions = profile_revisions(&state, &principal, &id).await?;
    let wanted: i64 = revision
        .trim()
        .parse()
        .map_err(|_| FleetiError::new(StatusCode::NOT_FOUND, "Revision not found"))?;
    let found = revisions
        .iter()
        .find(|r| r.revision == wanted)
        .ok_or_else(|| FleetiError::new(StatusCode::NOT_FOUND, "Revision not found"))?;
    Ok(go_response(StatusCode::OK, &json!({ "revision": revision_json(found, true) }), vec![]).into_response())
}

impl Audited for Fleet {
    const SURFACE: Surface = Surface::Profiles;
}

impl Audited for Profile {
    const SURFACE: Surface = Surface::Profiles;

    /// Fleeti's profile detail, through Go's encoder so numbers read exactly as a Fleeti
    /// client sees them.
    fn render(&self, state: &AppState) -> Value {
        let detail = profile_detail(state, self);
        serde_json::from_str(&go_json::to_string(&detail)).unwrap_or(detail)
    }

    /// Puts back version N's config, raw Nix and schema version through the PUT rules,
    /// recording where it came from and why.
    fn restore(request: RestoreRequest<'_>, target: Self) -> BoxFuture<'_, Result<Response, Refusal>> {
        Box::pin(async move {
            if target.deleted_at.is_some() {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    format!("profile/{} has no configuration at version {}", request.id, request.version),
                ));
            }
            let command = ChangeConfig {
                mode: ConfigChangeMode::Restore,
                fields: vec!["config".into(), "raw_nix".into(), "config_schema_version".into()],
                config: Some(target.config.as_object().cloned()),
                convenience: ConvenienceFields::default(),
                raw_nix: Some(target.raw_nix.clone()),
                config_schema_version: Some(target.config_schema_version),
                restored_from_version: Some(request.version),
                reason: request.reason.clone(),
                now: Utc::now(),
            };
            let context = request.meta.write_context(request.principal);
            change_config(request.state, &context, request.id, command).await.map_err(|e| {
                let status = if e.status == StatusCode::BAD_REQUEST {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    e.status
                };
                Refusal::new(status, e.message)
            })
        })
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_fleets, create_fleet, list_profiles, get_profile, create_profile, replace_profile, patch_profile, delete_profile, list_revisions, get_revision),
    components(schemas(wire::FleetiError)),
    tags((name = "profiles", description = "Device/image profiles (Fleeti-compatible)"))
)]
pub struct ProfilesApi;

/// The shapes of this surface's bodies, for `/openapi.json` (the handlers write them with
/// Go's encoder; the schema conformance run checks the two agree).
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    /// Fleeti's error envelope.
    #[derive(ToSchema)]
    pub struct FleetiError {
        pub error: String,
    }

    #[derive(ToSchema)]
    pub struct Fleet {
        pub id: String,
        pub name: String,
        /// `YYYY-MM-DD HH:MM:SS`, UTC
        pub created_at: String,
    }

    #[derive(ToSchema)]
    pub struct FleetList {
        pub fleets: Vec<Fleet>,
    }

    #[derive(ToSchema)]
    pub struct FleetCreated {
        pub fleet: Fleet,
    }

    #[derive(ToSchema)]
    pub struct CreateFleet {
        pub id: String,
        pub name: String,
    }

    #[derive(ToSchema)]
    pub struct KernelPatch {
        pub name: String,
        pub sha256: String,
        pub content_base64: String,
    }

    #[derive(ToSchema)]
    pub struct SourceOverride {
        pub enabled: bool,
        pub url: Option<String>,
        #[schema(rename = "ref")]
        pub git_ref: Option<String>,
        pub rev: Option<String>,
        pub patches: Vec<KernelPatch>,
    }

    #[derive(ToSchema)]
    pub struct Kernel {
        /// A nixpkgs kernel attribute the server allows
        pub attr: Option<String>,
        pub source_override: SourceOverride,
    }

    /// A profile as its detail shows it; optional text fields are left out when empty.
    #[derive(ToSchema)]
    pub struct Profile {
        pub id: String,
        /// The first of `fleet_ids`
        pub fleet_id: Option<String>,
        pub fleet_ids: Vec<String>,
        /// The fleets' names, comma-separated
        pub fleet_name: Option<String>,
        pub name: String,
        pub description: Option<String>,
        pub latest_revision: i64,
        pub config_hash: Option<String>,
        pub config_schema_version: i64,
        /// `YYYY-MM-DD HH:MM:SS`, UTC
        pub created_at: String,
        pub config: Map<String, Value>,
        pub packages: Vec<String>,
        pub kernel: Kernel,
        pub openclaw_microvm_enabled: bool,
        pub raw_nix: Option<String>,
    }

    /// A profile as the list shows it.
    #[derive(ToSchema)]
    pub struct ProfileSummary {
        pub id: String,
        pub fleet_id: Option<String>,
        pub fleet_ids: Vec<String>,
        pub fleet_name: Option<String>,
        pub name: String,
        pub description: Option<String>,
        pub latest_revision: i64,
        pub config_hash: Option<String>,
        pub created_at: String,
    }

    #[derive(ToSchema)]
    pub struct ProfileList {
        pub profiles: Vec<ProfileSummary>,
    }

    #[derive(ToSchema)]
    pub struct ProfileAnswer {
        pub profile: Profile,
    }

    #[derive(ToSchema)]
    pub struct ProfileChanged {
        pub profile: Profile,
        pub created_new_revision: bool,
    }

    #[derive(ToSchema)]
    pub struct KernelInput {
        pub attr: Option<String>,
        pub source_override: Option<SourceOverrideInput>,
    }

    #[derive(ToSchema)]
    pub struct SourceOverrideInput {
        pub enabled: Option<bool>,
        pub url: Option<String>,
        #[schema(rename = "ref")]
        pub git_ref: Option<String>,
        pub rev: Option<String>,
        pub patches: Option<Vec<KernelPatch>>,
    }

    /// A new profile; unknown fields are refused.
    #[derive(ToSchema)]
    pub struct CreateProfile {
        pub name: String,
        pub description: Option<String>,
        /// Fleets that exist in the organization
        pub fleet_ids: Option<Vec<String>>,
        pub config: Option<Map<String, Value>>,
        pub packages: Option<Vec<String>>,
        pub kernel: Option<KernelInput>,
        pub openclaw_microvm_enabled: Option<bool>,
        pub raw_nix: Option<String>,
        pub config_schema_version: Option<i64>,
    }

    /// The whole config (Fleeti's PUT); unknown fields are refused.
    #[derive(ToSchema)]
    pub struct ReplaceProfile {
        pub config: Map<String, Value>,
        pub packages: Option<Vec<String>>,
        pub kernel: Option<KernelInput>,
        pub openclaw_microvm_enabled: Option<bool>,
        pub raw_nix: Option<String>,
        pub config_schema_version: Option<i64>,
    }

    /// Any of the fields; `config`'s top-level keys are merged shallowly. Unknown fields
    /// are refused.
    #[derive(ToSchema)]
    pub struct PatchProfile {
        pub config: Option<Map<String, Value>>,
        pub packages: Option<Vec<String>>,
        pub kernel: Option<KernelInput>,
        pub openclaw_microvm_enabled: Option<bool>,
        pub raw_nix: Option<String>,
        pub config_schema_version: Option<i64>,
    }

    #[derive(ToSchema)]
    pub struct Revision {
        pub revision: i64,
        pub config_hash: String,
        pub config_schema_version: i64,
        pub created_at: String,
        pub actor: String,
    }

    #[derive(ToSchema)]
    pub struct RevisionList {
        pub revisions: Vec<Revision>,
    }

    #[derive(ToSchema)]
    pub struct RevisionDetail {
        pub revision: i64,
        pub config_hash: String,
        pub config_schema_version: i64,
        pub created_at: String,
        pub actor: String,
        pub config: Map<String, Value>,
        pub raw_nix: String,
    }

    #[derive(ToSchema)]
    pub struct RevisionAnswer {
        pub revision: RevisionDetail,
    }
}
