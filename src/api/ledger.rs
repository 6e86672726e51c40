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
            .authenticate_request(parts, token)
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
}

/// `{"events": [envelope…], "next_after": n|null}`, oldest first.
#[utoipa::path(get, path = "/api/v1/ledger/events", tag = "ledger", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "Global position to start after"), ("limit" = Option<i64>, Query, description = "1..1000, default 100"),
           ("stream_type" = Option<String>, Query, description = "Only this stream type"), ("stream_id" = Option<String>, Query, description = "Only this stream")),
    responses((status = 200, description = "`{\"events\": [envelope], \"next_after\": n|null}`"), (status = 400, description = "problem+json")))]
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
    let filter = Filter::for_reader(&principal, query.stream_type, query.stream_id);
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
    responses((status = 200, description = "`{\"events\": [envelope]}` in version order"), (status = 404, description = "problem+json")))]
async fn stream_events(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, stream_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
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
}

/// Server-Sent Events: `id:` global position, `event:` event type, `data:` CloudEvent (of
/// the event's public view).
/// Resumes after `Last-Event-ID` (or `?after=`); without either it starts live. Ends with a
/// comment when the server shuts down (see `sse`).
#[utoipa::path(get, path = "/api/v1/ledger/stream", tag = "ledger", security(("bearer" = [])),
    params(("after" = Option<i64>, Query, description = "Resume after this position (or send Last-Event-ID)"),
           ("stream_type" = Option<String>, Query, description = "Only this stream type"), ("stream_id" = Option<String>, Query, description = "Only this stream")),
    responses((status = 200, description = "text/event-stream: `id:` position, `event:` type, `data:` CloudEvent")))]
async fn stream(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let Query(query) = query.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))?;
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
    let filter = Filter::for_reader(&principal, query.stream_type, query.stream_id);
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
#[openapi(paths(events, stream, stream_events), tags((name = "ledger", description = "The change feed (problem+json errors)")))]
pub struct LedgerApi;
