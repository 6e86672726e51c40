//! HTTP surfaces, one module each; each owns its DTOs and its error envelope. This module
//! holds only what every surface shares: request metadata, ETags, idempotent replay, the
//! one way a body is read (`JsonBody`), and the answer in a surface's envelope to what no
//! handler answers (an unknown route, a wrong method, a path or query that cannot be read).

pub mod audit;
pub mod console;
pub mod container_agents;
pub mod contract;
pub mod front;
pub mod idempotency;
pub mod instances;
pub mod ledger;
pub mod login_throttle;
pub mod mission_control;
pub mod profiles;
pub mod rate_limit;
pub mod runtimes;
pub mod sse;
pub mod system;

use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fleetledger_events::Metadata;

use crate::auth::Principal;
pub use crate::ledger::IfMatch;
use crate::ledger::{WriteContext, WriteError};
use crate::state::AppState;
use crate::store::StoreError;

/// Which API a path belongs to: for metrics, and for answering in its error envelope when
/// a request is refused before it reaches a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Profiles,
    Runtimes,
    MissionControl,
    Instances,
    ContainerAgents,
    Ledger,
    /// The web console: HTML pages over the ledger and audit reads.
    Console,
    System,
}

/// Every API surface and the path prefixes it answers under, declared once: `Surface::of`
/// attributes requests by them and `Surface::router` builds each surface's routes (a test
/// checks every documented route lies under its surface's prefixes).
pub const SURFACES: [(Surface, &[&str]); 8] = [
    (Surface::Ledger, &["/api/v1/ledger"]),
    (Surface::Console, &["/ui"]),
    (Surface::Profiles, &["/api/v1/profiles", "/api/v1/fleets"]),
    (Surface::Runtimes, &["/api/v1/org"]),
    (Surface::MissionControl, &["/api/v1/gateways", "/api/v1/boards", "/api/v1/agents"]),
    (Surface::Instances, &["/v1"]),
    (Surface::ContainerAgents, &["/skills", "/container-profiles", "/agents"]),
    (Surface::System, &["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]),
];

impl Surface {
    /// The surface a path belongs to (a prefix matches whole path segments).
    pub fn of(path: &str) -> Surface {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        SURFACES
            .iter()
            .find(|(_, prefixes)| prefixes.iter().any(|p| under(p)))
            .map_or(Surface::System, |(surface, _)| *surface)
    }

    /// The surface's routes.
    pub fn router(self) -> axum::Router<AppState> {
        match self {
            Surface::Ledger => ledger::router().merge(audit::router()),
            Surface::Profiles => profiles::router(),
            Surface::Runtimes => runtimes::router(),
            Surface::MissionControl => mission_control::router(),
            Surface::Instances => instances::router(),
            Surface::ContainerAgents => container_agents::router(),
            Surface::Console => console::router(),
            Surface::System => system::router(),
        }
    }

    /// Whether this is one of the five products' surfaces (whose resources the console
    /// lists), rather than fleetledger's own.
    pub fn is_product(self) -> bool {
        !matches!(self, Surface::Ledger | Surface::Console | Surface::System)
    }

    /// The surface's part of `/openapi.json`.
    pub fn openapi(self) -> utoipa::openapi::OpenApi {
        use utoipa::OpenApi;
        match self {
            Surface::Ledger => {
                let mut doc = ledger::LedgerApi::openapi();
                doc.merge(audit::AuditApi::openapi());
                doc
            }
            Surface::Profiles => profiles::ProfilesApi::openapi(),
            Surface::Runtimes => runtimes::RuntimesApi::openapi(),
            Surface::MissionControl => mission_control::MissionControlApi::openapi(),
            Surface::Instances => instances::InstancesApi::openapi(),
            Surface::ContainerAgents => container_agents::ContainerAgentsApi::openapi(),
            // Pages for people, not an API.
            Surface::Console => utoipa::openapi::OpenApi::default(),
            Surface::System => system::SystemApi::openapi(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Surface::Profiles => "profiles",
            Surface::Runtimes => "runtimes",
            Surface::MissionControl => "mission_control",
            Surface::Instances => "instances",
            Surface::ContainerAgents => "container_agents",
            Surface::Ledger => "ledger",
            Surface::Console => "console",
            Surface::System => "system",
        }
    }

    /// What `/openapi.json` says of every operation of this surface (`contract`).
    pub fn contract(self) -> SurfaceContract {
        let (error_schema, too_large) = match self {
            Surface::Profiles => ("FleetiError", 400),
            Surface::Runtimes => ("DreadnodeError", 413),
            Surface::MissionControl => ("MissionControlError", 413),
            Surface::Instances => ("ChowderError", 413),
            Surface::ContainerAgents => ("Hill90Error", 413),
            Surface::Ledger | Surface::System => ("Problem", 413),
            // The console's pages are not in `/openapi.json`; its errors are HTML pages.
            Surface::Console => ("Problem", 413),
        };
        SurfaceContract {
            error_schema,
            error_media_type: match self {
                Surface::Ledger | Surface::System => "application/problem+json",
                _ => "application/json",
            },
            api_key_header: self != Surface::Profiles,
            too_large,
        }
    }

    /// An error in this surface's envelope; `kind` is the machine-readable type where the
    /// envelope has one, `request_id` goes where the envelope carries it.
    pub fn error(self, status: StatusCode, message: &str, kind: &'static str, request_id: Option<&str>) -> Response {
        match self {
            Surface::MissionControl => mission_control::McError::new(status, message)
                .with_request_id(request_id)
                .into_response(),
            Surface::Profiles => profiles::FleetiError::new(status, message).into_response(),
            Surface::Runtimes => runtimes::DreadnodeError::new(status, message, kind).into_response(),
            Surface::Instances => instances::ChowderError::new(status, message).into_response(),
            Surface::ContainerAgents => container_agents::HillError::new(status, message).into_response(),
            Surface::Console => console::error_page(status, message),
            Surface::Ledger | Surface::System => ledger::Problem::new(status, message).into_response(),
        }
    }
}

/// How a surface's operations are documented: the schema and media type of its error
/// envelope, whether it takes keys in `X-API-Key` too, and how it answers a body over the
/// limit.
pub struct SurfaceContract {
    pub error_schema: &'static str,
    pub error_media_type: &'static str,
    pub api_key_header: bool,
    pub too_large: u16,
}

/// A surface's error envelope: how it says "this status, this message". What every
/// surface answers the same way (a failed precondition, a missing resource, a refused
/// media type) is written once against this.
pub trait Envelope: IntoResponse + Sized {
    fn status(status: StatusCode, message: &str) -> Self;
    /// A 500 whose cause is logged, never shown.
    fn internal(error: impl std::fmt::Display) -> Self;
}

/// The caller, unless its key is scoped: scoped keys (Chowder's `chd_sk_`) act only on
/// the instances they list, so every other product surface refuses them outright rather
/// than showing them org-wide resources (fleets, gateways, skills) no scope names.
pub fn unscoped<E: Envelope>(principal: crate::auth::Principal) -> Result<crate::auth::Principal, E> {
    if principal.scopes.is_empty() {
        Ok(principal)
    } else {
        Err(E::status(StatusCode::FORBIDDEN, "Scoped keys act only on the instances they list"))
    }
}

/// A write the ledger did not commit, in a surface's envelope: the decision's own
/// refusal as it is, `missing` as 404, a stale `If-Match` as 412, the rest as 500.
pub fn refused<E: Envelope>(error: WriteError<E>, missing: &str) -> E {
    match error {
        WriteError::Rejected(e) => e,
        WriteError::Missing => E::status(StatusCode::NOT_FOUND, missing),
        WriteError::PreconditionFailed { .. } => E::status(StatusCode::PRECONDITION_FAILED, "Precondition failed"),
        WriteError::Duplicate => E::internal("an event with this id is already stored"),
        WriteError::TooLarge { bytes, limit } => E::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("The change is too large to record: its event would hold {bytes} bytes, over the {limit}-byte limit"),
        ),
        WriteError::Unstorable(why) => E::status(StatusCode::UNPROCESSABLE_ENTITY, why),
        WriteError::Store(e) => E::internal(e),
    }
}

/// The largest request body any surface reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every surface says about a body declared as something other than JSON.
pub const NOT_JSON: &str = "Content-Type must be application/json";

/// Whether a request declares its body as JSON: `application/json` or a `+json` type, with
/// any parameters. A body that declares nothing is read as JSON too, as the products'
/// clients (and `curl --data` without a type) have always sent it.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A write's body, the one way every surface reads one: declared as JSON (or not
/// declared), read up to `MAX_BODY_BYTES`. A non-empty body of another media type is 415
/// in the surface's envelope `E`. Each surface then parses the bytes by its own rules.
pub struct JsonBody<E> {
    bytes: Option<Bytes>,
    envelope: PhantomData<fn() -> E>,
}

impl<E> JsonBody<E> {
    /// The body, or `None` when it is longer than `MAX_BODY_BYTES` (each surface says so
    /// in its own words, at the point it always has).
    pub fn bytes(self) -> Option<Bytes> {
        self.bytes
    }
}

impl<S: Send + Sync, E: Envelope> FromRequest<S> for JsonBody<E> {
    type Rejection = E;

    async fn from_request(request: Request, _: &S) -> Result<Self, E> {
        let json = declares_json(request.headers());
        // A body the client broke off or framed wrongly is the client's error, not ours.
        let bytes = read_body(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| E::status(StatusCode::BAD_REQUEST, UNREADABLE_BODY))?;
        if !json && bytes.as_ref().is_none_or(|b| !b.is_empty()) {
            return Err(E::status(StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON));
        }
        Ok(JsonBody {
            bytes,
            envelope: PhantomData,
        })
    }
}

/// What a surface says of a body that could not be read (cut off, or badly chunked).
pub const UNREADABLE_BODY: &str = "The request body could not be read";

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// What a request says about itself, beyond its body.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
    pub idempotency_key: Option<String>,
    pub if_match: Option<IfMatch>,
    pub method: String,
    pub path: String,
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestMeta {
            request_id: crate::answering::request_id_text(),
            user_agent: header(&parts.headers, axum::http::header::USER_AGENT),
            idempotency_key: header(&parts.headers, IDEMPOTENCY_KEY).filter(|k| !k.trim().is_empty()),
            if_match: header(&parts.headers, axum::http::header::IF_MATCH).map(|v| IfMatch::parse(&v)),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
        })
    }
}

impl RequestMeta {
    /// Event metadata for a write by `principal`.
    pub fn metadata(&self, principal: &Principal) -> Metadata {
        Metadata {
            org_id: principal.org_id.to_string(),
            actor: principal.actor(),
            request_id: self.request_id.clone(),
            correlation_id: self.request_id.clone(),
            causation_id: None,
            idempotency_key: self.idempotency_key.clone(),
            user_agent: self.user_agent.clone(),
        }
    }

    /// What a write by `principal` carries into the one write path.
    pub fn write_context(&self, principal: &Principal) -> WriteContext {
        WriteContext {
            metadata: self.metadata(principal),
            if_match: self.if_match.clone(),
            event_id: None,
        }
    }
}

/// A response whose body is already serialised.
#[derive(Clone, Debug)]
pub struct BufferedResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl IntoResponse for BufferedResponse {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

pub fn etag(version: i64) -> (String, String) {
    ("etag".into(), String::from_utf8_lossy(etag_value(version).as_bytes()).into_owned())
}

/// The `ETag` of a resource at a stream version: the version, quoted (what a later
/// `If-Match` names). Written without the formatting machinery: every read sends one.
pub fn etag_value(version: i64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(version).as_bytes();
    let quoted = [b"\"", digits, b"\""].concat();
    HeaderValue::from_maybe_shared(bytes::Bytes::from(quoted)).expect("a quoted number is a header value")
}

/// A live (not deleted) resource of `org` by id, with its stream version; anything else
/// (a malformed id, another org's resource, a deleted one) is the surface's 404 `missing`.
pub async fn live<M: fleetledger_projections::ReadModel, E: Envelope>(
    state: &AppState,
    org: uuid::Uuid,
    id: &str,
    missing: &str,
) -> Result<crate::store::cache::Cached<M>, E> {
    let not_found = || E::status(StatusCode::NOT_FOUND, missing);
    let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| not_found())?;
    match state.ledger.models.live_in_org::<M>(org, id).await {
        Ok(found) => found.ok_or_else(not_found),
        Err(error) => Err(E::internal(error)),
    }
}

/// A response about one resource at a stream version, with that version as its `ETag`
/// (what a later `If-Match` names).
pub fn tagged(version: i64, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(axum::http::header::ETAG, etag_value(version));
    response
}

impl RequestMeta {
    /// Refuses early, before any side effect, when `If-Match` names another version than
    /// the one just read; the write path checks again where writes are serialised.
    pub fn precondition<E: Envelope>(&self, version: i64) -> Result<(), E> {
        match &self.if_match {
            Some(expected) if !expected.matches(version) => Err(E::status(StatusCode::PRECONDITION_FAILED, "Precondition failed")),
            _ => Ok(()),
        }
    }
}

/// The outcome a worker recorded for `trigger` (an event caused by it in the same stream),
/// waited for as long as the settings allow a write to wait for its side effect.
pub async fn outcome_of(
    state: &AppState,
    trigger: &fleetledger_events::EventEnvelope,
) -> Result<Option<fleetledger_events::EventEnvelope>, StoreError> {
    crate::workers::await_outcome(
        state.ledger.store.as_ref(),
        &trigger.stream_id,
        trigger.stream_version,
        trigger.event_id,
        std::time::Duration::from_secs(state.settings.apply_timeout_seconds),
        std::time::Duration::from_millis(state.settings.follow_interval_ms.max(10)),
    )
    .await
}

/// How deep a request body may nest. serde_json refuses 128 levels, but what a body
/// carries is stored wrapped in more (an event's data, its envelope, the CloudEvent a
/// worker reads), and a value that cannot be read back there would stop every reader of
/// the log at that event. Real configs nest a handful of levels.
pub const MAX_BODY_DEPTH: usize = 64;

/// What the surfaces say about a body that nests deeper than `MAX_BODY_DEPTH`.
pub const TOO_DEEP: &str = "JSON nested more than 64 levels deep";

/// Whether a body `value` nests deeper than `MAX_BODY_DEPTH` (the body itself is the first
/// level). Iterative, so it needs no stack of its own.
pub fn too_deep(value: &serde_json::Value) -> bool {
    deeper_than_limit(std::iter::once(value), 1)
}

/// `too_deep` for a body object already taken apart into its fields.
pub fn too_deep_fields(fields: &serde_json::Map<String, serde_json::Value>) -> bool {
    deeper_than_limit(fields.values(), 2)
}

fn deeper_than_limit<'v>(values: impl Iterator<Item = &'v serde_json::Value>, depth: usize) -> bool {
    use serde_json::Value;
    let mut pending: Vec<(&Value, usize)> = values.map(|v| (v, depth)).collect();
    while let Some((value, depth)) = pending.pop() {
        let is_container = matches!(value, Value::Array(_) | Value::Object(_));
        if is_container && depth > MAX_BODY_DEPTH {
            return true;
        }
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(map) => pending.extend(map.values().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    false
}

/// How much of an oversized body is read and discarded so the client sees the error
/// response rather than a reset connection.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads at most `limit` bytes of a body; `None` when it is longer.
pub async fn read_body(mut body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    use http_body_util::BodyExt;
    // A declared length past what would be drained is refused before any of it is waited
    // for. Below that the body is still read (and dropped): a client that is still sending
    // when the answer comes would see a broken pipe, not the answer.
    if axum::body::HttpBody::size_hint(&body).lower() > limit.max(DRAIN_LIMIT) as u64 {
        return Ok(None);
    }
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    Ok((seen <= limit).then(|| buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_route_lies_under_its_surfaces_prefixes() {
        let doc = system::openapi();
        for (path, item) in &doc.paths.paths {
            let operations = [&item.get, &item.post, &item.put, &item.patch, &item.delete];
            for operation in operations.into_iter().flatten() {
                let tag = operation.tags.as_ref().and_then(|t| t.first()).expect("every operation is tagged");
                let expected = match tag.as_str() {
                    "audit" => Surface::Ledger,
                    other => SURFACES
                        .iter()
                        .map(|(s, _)| *s)
                        .find(|s| s.name() == other)
                        .unwrap_or_else(|| panic!("tag {other} names no surface")),
                };
                assert_eq!(Surface::of(path), expected, "{path} is documented under {tag}");
            }
        }
    }

    #[test]
    fn prefixes_match_whole_path_segments() {
        assert_eq!(Surface::of("/agents"), Surface::ContainerAgents);
        assert_eq!(Surface::of("/agents/1/start"), Surface::ContainerAgents);
        assert_eq!(Surface::of("/agentsx"), Surface::System);
        assert_eq!(Surface::of("/api/v1/agents/1"), Surface::MissionControl);
        assert_eq!(Surface::of("/v1/instances"), Surface::Instances);
        assert_eq!(Surface::of("/v10"), Surface::System);
        assert_eq!(Surface::of("/api/v1/ledger/events"), Surface::Ledger);
        assert_eq!(Surface::of("/ui"), Surface::Console);
        assert_eq!(Surface::of("/ui/resources/profile/p"), Surface::Console);
        assert_eq!(Surface::of("/uix"), Surface::System);
    }

    fn nested(levels: usize) -> serde_json::Value {
        (1..levels).fold(serde_json::json!([]), |inner, _| serde_json::json!({ "k": inner }))
    }

    #[test]
    fn bodies_may_nest_up_to_the_limit() {
        assert!(!super::too_deep(&serde_json::json!(1)));
        assert!(!super::too_deep(&nested(super::MAX_BODY_DEPTH)));
        assert!(super::too_deep(&nested(super::MAX_BODY_DEPTH + 1)));
        assert!(super::too_deep(&serde_json::json!([1, {"a": nested(super::MAX_BODY_DEPTH)}])));
        let fields = serde_json::json!({"a": nested(super::MAX_BODY_DEPTH - 1)});
        assert!(!super::too_deep_fields(fields.as_object().unwrap()));
        let fields = serde_json::json!({"a": nested(super::MAX_BODY_DEPTH)});
        assert!(super::too_deep_fields(fields.as_object().unwrap()));
    }
}
