//! Audit and replay over HTTP, for every stream type: revisions, time travel, diffs,
//! restore, verification and "who changed what". Under `/api/v1/ledger`, problem+json
//! errors, org-scoped; any role may read, restore needs a member or admin.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleetledger_events::envelope::micros;
use fleetledger_events::EventEnvelope;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ledger::{registered, LedgerPrincipal, Problem};
use super::{JsonBody, RequestMeta};
use crate::auth::Principal;
use crate::bus::feed::{self, Filter};
use crate::state::AppState;
use crate::store::{self, Snapshot, StoreError};
use crate::streams::{self, RestoreRequest, Step, StreamType};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ledger/verify", get(verify_org))
        .route("/api/v1/ledger/resources/{stream_type}", get(changes))
        .route("/api/v1/ledger/resources/{stream_type}/{id}", get(state_at))
        .route("/api/v1/ledger/resources/{stream_type}/{id}/revisions", get(revisions))
        .route("/api/v1/ledger/resources/{stream_type}/{id}/diff", get(diff))
        .route("/api/v1/ledger/resources/{stream_type}/{id}/restore", post(restore))
        .route("/api/v1/ledger/resources/{stream_type}/{id}/verify", get(verify_stream))
}

fn bad_request(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, detail)
}

fn not_found(stream_type: &str, id: &str) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("no resource {stream_type}/{id}"))
}

/// A stream of the caller's org; 404 for anything else. Returns its current version.
async fn stream_of(state: &AppState, principal: &Principal, stream_type: &str, id: &str) -> Result<i64, Problem> {
    registered(stream_type)?;
    let first = state.ledger.store.read_stream_between(id, 1, 1).await?;
    let org = principal.org_id.to_string();
    match first.first() {
        Some(e) if e.stream_type == stream_type && e.metadata.org_id == org && principal.may_read_stream(stream_type, id) => {
            Ok(state.ledger.store.stream_version(id).await?)
        }
        _ => Err(not_found(stream_type, id)),
    }
}

/// The registered stream type of a stream the caller may read, and its current version.
async fn known_stream(
    state: &AppState,
    principal: &Principal,
    stream_type: &str,
    id: &str,
) -> Result<(&'static dyn StreamType, i64), Problem> {
    let current = stream_of(state, principal, stream_type, id).await?;
    Ok((registered(stream_type)?, current))
}

fn corrupt(e: impl std::fmt::Display) -> Problem {
    Problem::from(StoreError::Corrupt(e.to_string()))
}

/// The newest snapshot of this stream type at or below `version`, and the events after it
/// through `last` (from version 1 when there is none).
async fn from_snapshot(
    state: &AppState,
    stream_type: &str,
    id: &str,
    version: i64,
    last: i64,
) -> Result<(Option<Snapshot>, Vec<EventEnvelope>), Problem> {
    let snapshot = state.ledger.store.snapshot_at(id, version).await?.filter(|s| s.kind == stream_type);
    let from = snapshot.as_ref().map_or(1, |s| s.version + 1);
    let events = state.ledger.store.read_stream_between(id, from, last).await?;
    Ok((snapshot, events))
}

/// The resource as its surface shows it at `version`, and when that version was recorded.
async fn rendered_at(state: &AppState, kind: &dyn StreamType, id: &str, version: i64) -> Result<(Value, Option<String>), Problem> {
    let (snapshot, events) = from_snapshot(state, kind.name(), id, version - 1, version).await?;
    let rendered = kind
        .rendered(state, snapshot.as_ref().map(|s| s.doc.as_str()), &events)
        .map_err(corrupt)?;
    Ok((rendered, events.last().map(|e| micros::format(&e.recorded_at))))
}

fn no_version(stream_type: &str, id: &str, version: i64, current: i64) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("{stream_type}/{id} has no version {version} (it is at {current})"),
    )
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// One entry per event: `{version, revision, event_type, recorded_at, actor, request_id, summary, hash}`.
#[utoipa::path(get, path = "/api/v1/ledger/resources/{stream_type}/{id}/revisions", tag = "audit", security(("bearer" = [])), params(("stream_type" = String, Path, description = "A stream type"), ("id" = String, Path, description = "Stream id")),
    params(("after" = Option<i64>, Query, description = "Versions after this one"), ("limit" = Option<i64>, Query, description = "1..1000, default 100")),
    responses((status = 200, body = wire::RevisionPage, description = "One entry per event, oldest first")))]
async fn revisions(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, id)): Path<(String, String)>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 1000"));
    }
    let (kind, current) = known_stream(&state, &principal, &stream_type, &id).await?;
    let after = query.after.unwrap_or(0).max(0);
    let last = (after + limit).min(current);
    let (snapshot, events) = from_snapshot(&state, &stream_type, &id, after, last).await?;
    let steps = kind.timeline(snapshot.as_ref().map(|s| s.doc.as_str()), &events).map_err(corrupt)?;
    let page: Vec<&Step> = steps.iter().filter(|s| s.envelope.stream_version > after).collect();
    let next_after = page.last().map(|s| s.envelope.stream_version).filter(|v| *v < current);
    let items: Vec<Value> = page
        .iter()
        .map(|s| {
            let e = &s.envelope;
            json!({
                "version": e.stream_version,
                "revision": s.revision,
                "event_type": e.event_type,
                "recorded_at": micros::format(&e.recorded_at),
                "actor": e.metadata.actor,
                "request_id": e.metadata.request_id,
                "summary": s.summary,
                "hash": e.hash,
            })
        })
        .collect();
    Ok(Json(json!({ "revisions": items, "next_after": next_after })).into_response())
}

#[derive(Deserialize)]
struct AtQuery {
    version: Option<i64>,
    as_of: Option<String>,
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, Problem> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_request(format!("{value:?} is not an RFC 3339 time")))
}

/// The resource folded from the log to a version or a time: `{version, recorded_at, state}`.
#[utoipa::path(get, path = "/api/v1/ledger/resources/{stream_type}/{id}", tag = "audit", security(("bearer" = [])), params(("stream_type" = String, Path, description = "A stream type"), ("id" = String, Path, description = "Stream id")),
    params(("version" = Option<i64>, Query, description = "This version (default: the current one)"), ("as_of" = Option<String>, Query, description = "The version current at this RFC 3339 time")),
    responses((status = 200, body = wire::StateAt, description = "The resource as its surface shows it, folded from the log, with `ETag`"), (status = 400, description = "Both `version` and `as_of`, or a bad time")))]
async fn state_at(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, id)): Path<(String, String)>,
    query: Result<Query<AtQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let (kind, current) = known_stream(&state, &principal, &stream_type, &id).await?;
    let version = match (query.version, query.as_of.as_deref()) {
        (Some(_), Some(_)) => return Err(bad_request("give version or as_of, not both")),
        (Some(v), None) => v,
        (None, Some(t)) => state.ledger.store.version_at(&id, parse_time(t)?).await?,
        (None, None) => current,
    };
    if version < 1 || version > current {
        return Err(no_version(&stream_type, &id, version, current));
    }
    let (rendered, recorded_at) = rendered_at(&state, kind, &id, version).await?;
    let body = json!({ "version": version, "recorded_at": recorded_at, "state": rendered });
    Ok(([(header::ETAG, format!("\"{version}\""))], Json(body)).into_response())
}

#[derive(Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
}

fn pointer_summary(patch: &json_patch::Patch) -> Vec<String> {
    patch
        .0
        .iter()
        .map(|op| match op {
            json_patch::PatchOperation::Add(o) => format!("added {}", o.path),
            json_patch::PatchOperation::Remove(o) => format!("removed {}", o.path),
            json_patch::PatchOperation::Replace(o) => format!("changed {}", o.path),
            json_patch::PatchOperation::Move(o) => format!("moved {} to {}", o.from, o.path),
            json_patch::PatchOperation::Copy(o) => format!("copied {} to {}", o.from, o.path),
            json_patch::PatchOperation::Test(o) => format!("tested {}", o.path),
        })
        .collect()
}

/// RFC 6902 patch from version `from` to version `to`, with a summary of changed paths.
#[utoipa::path(get, path = "/api/v1/ledger/resources/{stream_type}/{id}/diff", tag = "audit", security(("bearer" = [])), params(("stream_type" = String, Path, description = "A stream type"), ("id" = String, Path, description = "Stream id")),
    params(("from" = i64, Query, description = "The older version"), ("to" = i64, Query, description = "The newer version")),
    responses((status = 200, body = wire::Diff, description = "The RFC 6902 patch from one version to the other, and the changed paths")))]
async fn diff(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, id)): Path<(String, String)>,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(DiffQuery { from, to }) = query.map_err(|e| bad_request(e.body_text()))?;
    let (kind, current) = known_stream(&state, &principal, &stream_type, &id).await?;
    let mut states = Vec::with_capacity(2);
    for v in [from, to] {
        if v < 1 || v > current {
            return Err(no_version(&stream_type, &id, v, current));
        }
        states.push(rendered_at(&state, kind, &id, v).await?.0);
    }
    let patch = json_patch::diff(&states[0], &states[1]);
    let summary = pointer_summary(&patch);
    Ok(Json(json!({ "from": from, "to": to, "patch": patch, "summary": summary })).into_response())
}

#[derive(Deserialize)]
struct RestoreBody {
    version: i64,
    #[serde(default)]
    reason: Option<String>,
}

/// Appends a new revision whose configuration equals version N's, through the surface's
/// own rules; answers like the surface's own write.
#[utoipa::path(post, path = "/api/v1/ledger/resources/{stream_type}/{id}/restore", tag = "audit", security(("bearer" = [])), params(("stream_type" = String, Path, description = "A stream type"), ("id" = String, Path, description = "Stream id")),
    request_body(content = wire::Restore),
    responses((status = 200, body = Object, description = "As the surface's own write answers"),
              (status = 409, description = "The resource is deleted"), (status = 502, description = "The restored change's side effect failed (it is recorded)"),
              (status = 504, description = "No outcome of the restored change's side effect in time")))]
async fn restore(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    meta: RequestMeta,
    Path((stream_type, id)): Path<(String, String)>,
    body: JsonBody<Problem>,
) -> Result<Response, Problem> {
    let body = body
        .bytes()
        .ok_or_else(|| Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "the request body is over 1 MiB"))?;
    let body: RestoreBody = serde_json::from_slice(&body).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body must be {{version, reason?}}: {e}"),
        )
    })?;
    let (kind, current) = known_stream(&state, &principal, &stream_type, &id).await?;
    if !principal.may(&id, "configure") {
        return Err(Problem::new(StatusCode::FORBIDDEN, "restoring needs a member or admin key"));
    }
    if !(1..=current).contains(&body.version) {
        return Err(no_version(&stream_type, &id, body.version, current));
    }
    if kind.is_deleted(&state.ledger.models, &id) {
        // None of the surfaces can bring a deleted resource back (its sandbox, container
        // or workspace is gone, or the product has no undelete): say so, rather than 404.
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("{stream_type}/{id} is deleted; a deleted resource cannot be restored (create a new one from this version's state)"),
        ));
    }
    let (snapshot, events) = from_snapshot(&state, &stream_type, &id, body.version - 1, body.version).await?;
    let request = RestoreRequest {
        state: &state,
        principal: &principal,
        meta: &meta,
        id: &id,
        version: body.version,
        reason: body.reason,
    };
    let restored = kind
        .restore(request, snapshot.as_ref().map(|s| s.doc.as_str()), &events)
        .map_err(corrupt)?;
    restored.await.map_err(|refusal| Problem::new(refusal.status, refusal.detail))
}

/// Hash-chain verification of one stream.
#[utoipa::path(get, path = "/api/v1/ledger/resources/{stream_type}/{id}/verify", tag = "audit", security(("bearer" = [])), params(("stream_type" = String, Path, description = "A stream type"), ("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = wire::Verification, description = "The chain's verification")))]
async fn verify_stream(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    stream_of(&state, &principal, &stream_type, &id).await?;
    Ok(Json(store::verify_stream(state.ledger.store.as_ref(), &id).await?).into_response())
}

/// Hash-chain verification of every stream of the caller's org.
#[utoipa::path(get, path = "/api/v1/ledger/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = wire::Verification, description = "Verification of every chain of the caller's org"), (status = 403, description = "Not an admin key"),
              (status = 429, description = "Verified too often (per org); `Retry-After` says when to retry")))]
async fn verify_org(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    meta: RequestMeta,
) -> Result<Response, Problem> {
    // It reads and hashes the org's whole log: for admins, and rarely.
    if principal.role != crate::auth::Role::Admin {
        return Err(Problem::new(StatusCode::FORBIDDEN, "verifying the log needs an admin key"));
    }
    if let Err(wait) = state.heavy.check(principal.org_id) {
        let what = "Verification of the whole log is rate-limited";
        return Ok(super::rate_limit::too_many(
            super::Surface::Ledger,
            meta.request_id.as_deref(),
            what,
            wait,
        ));
    }
    let org = principal.org_id.to_string();
    let verification = store::verify_where(state.ledger.store.as_ref(), |e| e.metadata.org_id == org).await?;
    Ok(Json(verification).into_response())
}

#[derive(Deserialize)]
struct ChangesQuery {
    changed_since: Option<String>,
    actor: Option<String>,
    limit: Option<i64>,
}

/// Who changed which resources of a type, when: newest last.
#[utoipa::path(get, path = "/api/v1/ledger/resources/{stream_type}", tag = "audit", security(("bearer" = [])),
    params(("stream_type" = String, Path, description = "Stream type"), ("changed_since" = Option<String>, Query, description = "RFC 3339"),
           ("actor" = Option<String>, Query, description = "Principal or key id"), ("limit" = Option<i64>, Query, description = "1..10000, default 1000")),
    responses((status = 200, body = wire::Changes, description = "Who changed which resources of the type, oldest first")))]
async fn changes(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path(stream_type): Path<String>,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let since = query.changed_since.as_deref().map(parse_time).transpose()?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 10000"));
    }
    registered(&stream_type)?;
    let filter = Filter::for_reader(&principal, Some(stream_type.clone()), None);
    let mut after = 0;
    let mut out = Vec::new();
    loop {
        let (page, scanned) = feed::page(state.ledger.store.as_ref(), after, 1000, &filter).await?;
        for e in &page {
            let recent = since.is_none_or(|t| e.recorded_at >= t);
            let by = query
                .actor
                .as_ref()
                .is_none_or(|a| &e.metadata.actor.principal_id == a || e.metadata.actor.key_id.as_ref() == Some(a));
            if recent && by && out.len() < limit as usize {
                out.push(json!({
                    "stream_type": e.stream_type,
                    "stream_id": e.stream_id,
                    "version": e.stream_version,
                    "event_type": e.event_type,
                    "recorded_at": micros::format(&e.recorded_at),
                    "actor": e.metadata.actor,
                    "summary": streams::summary(e),
                }));
            }
        }
        if page.len() < 1000 {
            break;
        }
        after = scanned;
    }
    Ok(Json(json!({ "changes": out })).into_response())
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(revisions, state_at, diff, restore, verify_stream, verify_org, changes),
    tags((name = "audit", description = "History, time travel, diffs, restore and verification of any resource"))
)]
pub struct AuditApi;

/// The shapes of the audit API's bodies, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    use crate::api::ledger::wire::Actor;

    #[derive(ToSchema)]
    pub struct RevisionEntry {
        pub version: i64,
        /// The resource's revision number, where its surface counts them
        #[schema(required)]
        pub revision: Option<i64>,
        pub event_type: String,
        pub recorded_at: String,
        pub actor: Actor,
        #[schema(required)]
        pub request_id: Option<String>,
        pub summary: String,
        pub hash: String,
    }

    #[derive(ToSchema)]
    pub struct RevisionPage {
        pub revisions: Vec<RevisionEntry>,
        #[schema(required)]
        pub next_after: Option<i64>,
    }

    #[derive(ToSchema)]
    pub struct StateAt {
        pub version: i64,
        #[schema(required)]
        pub recorded_at: Option<String>,
        /// The resource as its own surface renders it
        pub state: Value,
    }

    #[derive(ToSchema)]
    pub struct Diff {
        pub from: i64,
        pub to: i64,
        /// RFC 6902 operations
        pub patch: Vec<Map<String, Value>>,
        pub summary: Vec<String>,
    }

    #[derive(ToSchema)]
    pub struct Restore {
        /// The version whose configuration comes back
        pub version: i64,
        pub reason: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct ChainBreak {
        pub stream: String,
        pub version: i64,
        pub global_position: i64,
        pub event_id: String,
        pub expected: String,
        pub actual: String,
    }

    #[derive(ToSchema)]
    pub struct Verification {
        pub ok: bool,
        pub checked: u64,
        #[schema(required)]
        pub first_bad: Option<ChainBreak>,
    }

    #[derive(ToSchema)]
    pub struct Change {
        pub stream_type: String,
        pub stream_id: String,
        pub version: i64,
        pub event_type: String,
        pub recorded_at: String,
        pub actor: Actor,
        pub summary: String,
    }

    #[derive(ToSchema)]
    pub struct Changes {
        pub changes: Vec<Change>,
    }
}
