//! fleetledger's own API under `/api/v1/ledger`: the change feed as JSON pages and as
//! Server-Sent Events, and a stream's events. Errors are RFC 9457 problem+json; every
//! answer is limited to the caller's org; any role may read; every event goes out as its
//! public view (`views::public`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{presented_token, Principal};
use crate::bus::feed::{self, Filter};
use crate::bus::CloudEvent;
use crate::state::AppState;
use crate::store::StoreError;
use crate::streams;
use crate::views::{self, PublicEvent};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ledger/events", get(events))
        .route("/api/v1/ledger/stream", get(stream))
        .route("/api/v1/ledger/streams/{stream_type}/{stream_id}", get(stream_events))
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
        }
    }
}

impl super::Envelope for Problem {
    fn status(status: StatusCode, message: &str) -> Self {
        Problem::new(status, message)
    }
    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "ledger API failure");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the request could not be served")
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "ledger API store error");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the log could not be read")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A caller authenticated by `Authorization: Bearer` or `X-API-Key`.
pub struct LedgerPrincipal(pub Principal);

impl FromRequestParts<AppState> for LedgerPrincipal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = presented_token(&parts.headers).map_err(|_| Problem::new(StatusCode::UNAUTHORIZED, "an API key is required"))?;
        let principal = state
            .auth
            .authenticate_request(token)
            .await
            .map_err(|_| Problem::new(StatusCode::UNAUTHORIZED, "the API key is invalid"))?;
        Ok(LedgerPrincipal(principal))
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<i64>,
    stream_type: Option<String>,
    stream_id: Option<String>,
    event_type: Option<String>,
}

/// A stream type named in a path, or 404 naming the registered ones.
pub fn registered(stream_type: &str) -> Result<&'static dyn streams::StreamType, Problem> {
    streams::get(stream_type).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            format!("no stream type {stream_type:?}; stream types are: {}", streams::names().join(", ")),
        )
    })
}

/// A feed's filter for `principal`, its values checked against the stream-type registry: an
/// unknown stream or event type is a typo, refused with the valid ones listed rather than
/// answered with an empty feed.
pub fn checked_filter(
    principal: &Principal,
    stream_type: Option<String>,
    stream_id: Option<String>,
    event_type: Option<String>,
) -> Result<Filter, Problem> {
    let stream_type = stream_type.filter(|t| !t.is_empty());
    let kinds: Vec<&dyn streams::StreamType> = match stream_type.as_deref() {
        None => streams::all().to_vec(),
        Some(name) => vec![streams::get(name).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("unknown stream_type {name:?}; valid values: {}", streams::names().join(", ")),
            )
        })?],
    };
    let event_type = event_type.filter(|t| !t.is_empty());
    if let Some(name) = event_type.as_deref() {
        let valid: Vec<&str> = kinds.iter().flat_map(|k| k.event_types().iter().map(|(t, _)| *t)).collect();
        if !valid.contains(&name) {
            let of = stream_type.as_deref().map(|t| format!(" of {t} streams")).unwrap_or_default();
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                format!("unknown event_type {name:?}{of}; valid values: {}", valid.join(", ")),
            ));
        }
    }
    Ok(Filter {
        event_type,
        ..Filter::for_reader(principal, stream_type, stream_id)
    })
}

/// `{"events": [envelope…], "next_after": n|null}`, oldest first.
#[utoipa::path(get, path = "/api/v1/ledger/events", tag = "ledger", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "Global position to start after"), ("limit" = Option<i64>, Query, description = "1..1000, default 100"),
           ("stream_type" = Option<String>, Query, description = "Only this stream type (400 for one that does not exist)"), ("stream_id" = Option<String>, Query, description = "Only this stream"),
           ("event_type" = Option<String>, Query, description = "Only this event type (400 for one that does not exist)")),
    responses((status = 200, body = wire::EventPage, description = "Events oldest first; `next_after` is null at the end"), (status = 400, description = "An unknown filter value (the valid ones are listed) or a bad page")))]
async fn events(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "limit must be between 1 and 1000"));
    }
    let after = query.after.unwrap_or(0).max(0);
    let filter = checked_filter(&principal, query.stream_type, query.stream_id, query.event_type)?;
    let (events, scanned) = feed::page(state.ledger.store.as_ref(), after, limit as usize, &filter).await?;
    let head = state.ledger.store.head().await?;
    let next_after = if events.len() == limit as usize && scanned < head {
        Some(scanned)
    } else {
        None
    };
    let events: Vec<PublicEvent> = events.iter().map(views::public).collect();
    Ok(Json(json!({ "events": events, "next_after": next_after })).into_response())
}

/// A stream's events in version order.
#[utoipa::path(get, path = "/api/v1/ledger/streams/{stream_type}/{stream_id}", tag = "ledger", security(("bearer" = [])),
    params(("stream_type" = String, Path, description = "Stream type"), ("stream_id" = String, Path, description = "Stream id")),
    responses((status = 200, body = wire::StreamEvents, description = "The stream's events in version order"), (status = 404, description = "No such stream of the caller's org")))]
async fn stream_events(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, stream_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    registered(&stream_type)?;
    let missing = || Problem::new(StatusCode::NOT_FOUND, format!("no stream {stream_type}/{stream_id}"));
    if !principal.may_read_stream(&stream_type, &stream_id) {
        return Err(missing());
    }
    let events = state.ledger.store.read_stream(&stream_id, 1).await?;
    let org = principal.org_id.to_string();
    if events.is_empty() || events.iter().any(|e| e.stream_type != stream_type || e.metadata.org_id != org) {
        return Err(Problem::new(StatusCode::NOT_FOUND, format!("no stream {stream_type}/{stream_id}")));
    }
    let events: Vec<PublicEvent> = events.iter().map(views::public).collect();
    Ok(Json(json!({ "events": events })).into_response())
}

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<i64>,
    stream_type: Option<String>,
    stream_id: Option<String>,
    event_type: Option<String>,
}

/// Server-Sent Events: `id:` global position, `event:` event type, `data:` CloudEvent (of
/// the event's public view).
/// Resumes after `Last-Event-ID` (or `?after=`); without either it starts live. Ends with a
/// comment when the server shuts down (see `sse`).
#[utoipa::path(get, path = "/api/v1/ledger/stream", tag = "ledger", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "Resume after this position (or send Last-Event-ID)"),
           ("stream_type" = Option<String>, Query, description = "Only this stream type (400 for one that does not exist)"), ("stream_id" = Option<String>, Query, description = "Only this stream"),
           ("event_type" = Option<String>, Query, description = "Only this event type (400 for one that does not exist)"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this global position")),
    responses((status = 200, content_type = "text/event-stream", body = wire::SseEvent, description = "Each event: `id:` position, `event:` type, `data:` CloudEvent"),
              (status = 400, description = "An unknown filter value (the valid ones are listed), or a Last-Event-ID that is not a position")))]
async fn stream(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let filter = checked_filter(&principal, query.stream_type, query.stream_id, query.event_type)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string());
    let after = match (last_event_id, query.after) {
        (Some(id), _) => id
            .parse::<i64>()
            .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "Last-Event-ID must be a global position"))?,
        (None, Some(after)) => after,
        (None, None) => state.ledger.store.head().await?,
    };
    let events = feed::follow(
        state.ledger.store.clone(),
        after,
        filter,
        Duration::from_millis(state.settings.follow_interval_ms),
    )
    .map(|item| match item {
        Ok(e) => Event::default()
            .id(e.global_position.to_string())
            .event(e.event_type.clone())
            .data(CloudEvent::to_json(&e)),
        Err(error) => {
            tracing::warn!(%error, "SSE feed could not read the log");
            Event::default().comment("the log could not be read; reconnect with Last-Event-ID")
        }
    });
    Ok(super::sse::respond(events, &state.shutdown))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(events, stream, stream_events),
    components(schemas(wire::Problem)),
    tags((name = "ledger", description = "The change feed (problem+json errors)"))
)]
pub struct LedgerApi;

/// The shapes of the ledger's bodies, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::Value;
    use utoipa::ToSchema;

    /// An RFC 9457 problem.
    #[derive(ToSchema)]
    pub struct Problem {
        #[schema(rename = "type")]
        pub kind: String,
        pub title: String,
        pub status: u16,
        pub detail: String,
    }

    #[derive(ToSchema)]
    pub struct Actor {
        pub principal_id: String,
        pub key_id: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Metadata {
        pub org_id: String,
        pub actor: Actor,
        pub request_id: Option<String>,
        pub correlation_id: Option<String>,
        pub causation_id: Option<String>,
        pub idempotency_key: Option<String>,
        pub user_agent: Option<String>,
    }

    /// An event's public view: secrets shown as `"***"`, internal fields left out, the
    /// stored `hash` kept.
    #[derive(ToSchema)]
    pub struct Event {
        pub global_position: i64,
        pub event_id: String,
        pub stream_type: String,
        pub stream_id: String,
        pub stream_version: i64,
        pub event_type: String,
        pub schema_version: i32,
        pub data: Value,
        pub metadata: Metadata,
        pub prev_hash: String,
        pub hash: String,
        pub recorded_at: String,
    }

    #[derive(ToSchema)]
    pub struct EventPage {
        pub events: Vec<Event>,
        /// The cursor of the next page; null at the end
        #[schema(required)]
        pub next_after: Option<i64>,
    }

    /// One Server-Sent Event of the change feed.
    #[derive(ToSchema)]
    pub struct SseEvent {
        /// The event's global position
        pub id: Option<String>,
        /// The event type
        pub event: Option<String>,
        /// The CloudEvent, as JSON text
        pub data: String,
    }

    #[derive(ToSchema)]
    pub struct StreamEvents {
        pub events: Vec<Event>,
    }
}
