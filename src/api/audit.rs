//! Audit and replay over HTTP, for every stream type: revisions, time travel, diffs,
//! restore, verification and "who changed what". Under `/api/v1/ledger`, problem+json
//! errors, org-scoped; any role may read, restore needs a member or admin. The handlers
//! parse and render; the reads, the access rules and the restore are `crate::audit`'s,
//! which the web console calls too.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fleetledger_events::envelope::micros;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ledger::{registered, LedgerPrincipal, Problem};
use super::{JsonBody, RequestMeta};
use crate::audit::{self, AuditError, Resource};
use crate::bus::feed::{self, Filter};
use crate::state::AppState;
use crate::store;
use crate::streams;

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

impl From<AuditError> for Problem {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::BadRequest(detail) => bad_request(detail),
            AuditError::NotFound(detail) => Problem::new(StatusCode::NOT_FOUND, detail),
            AuditError::Forbidden(detail) => Problem::new(StatusCode::FORBIDDEN, detail),
            AuditError::Conflict(detail) => Problem::new(StatusCode::CONFLICT, detail),
            AuditError::TooMany(_) => Problem::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded"),
            AuditError::Refused(refusal) => Problem::new(refusal.status, refusal.detail),
            AuditError::Store(error) => Problem::from(error),
        }
    }
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
    registered(&stream_type)?;
    let resource = Resource::find(state.ledger.store.as_ref(), &principal, &stream_type, &id).await?;
    let current = resource.current;
    let after = query.after.unwrap_or(0).max(0);
    let last = (after + limit).min(current);
    let page = resource.timeline(state.ledger.store.as_ref(), after, last).await?;
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
    registered(&stream_type)?;
    let resource = Resource::find(state.ledger.store.as_ref(), &principal, &stream_type, &id).await?;
    let version = match (query.version, query.as_of.as_deref()) {
        (Some(_), Some(_)) => return Err(bad_request("give version or as_of, not both")),
        (Some(v), None) => v,
        (None, Some(t)) => resource.version_at(state.ledger.store.as_ref(), parse_time(t)?).await?,
        (None, None) => resource.current,
    };
    let (rendered, event) = resource.at(&state, version).await?;
    let recorded_at = micros::format(&event.recorded_at);
    let body = json!({ "version": version, "recorded_at": recorded_at, "state": rendered });
    Ok(([(header::ETAG, super::etag_value(version))], Json(body)).into_response())
}

#[derive(Deserialize)]
struct DiffQuery {
    from: i64,
    to: i64,
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
    registered(&stream_type)?;
    let resource = Resource::find(state.ledger.store.as_ref(), &principal, &stream_type, &id).await?;
    let diff = resource.diff(&state, from, to).await?;
    let summary = diff.summary();
    Ok(Json(json!({ "from": from, "to": to, "patch": diff.patch, "summary": summary })).into_response())
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
    let unreadable = |e: serde_json::Error| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body must be {{version, reason?}}: {e}"),
        )
    };
    // Read whole, like every surface's body: fields it ignores are JSON too, and nest no
    // deeper than any body may.
    let body: Value = serde_json::from_slice(&body).map_err(unreadable)?;
    if super::too_deep(&body) {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, super::TOO_DEEP));
    }
    let body = RestoreBody::deserialize(body).map_err(unreadable)?;
    registered(&stream_type)?;
    let resource = Resource::find(state.ledger.store.as_ref(), &principal, &stream_type, &id).await?;
    Ok(resource.restore(&state, &principal, &meta, body.version, body.reason).await?)
}

/// Hash-chain verification of one stream.
#[utoipa::path(get, path = "/api/v1/ledger/resources/{stream_type}/{id}/verify", tag = "audit", security(("bearer" = [])), params(("stream_type" = String, Path, description = "A stream type"), ("id" = String, Path, description = "Stream id")),
    responses((status = 200, body = wire::Verification, description = "The chain's verification")))]
async fn verify_stream(
    State(state): State<AppState>,
    LedgerPrincipal(principal): LedgerPrincipal,
    Path((stream_type, id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    registered(&stream_type)?;
    audit::readable_stream(state.ledger.store.as_ref(), &principal, &stream_type, &id).await?;
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
    match audit::verify_org(&state, &principal).await {
        Ok(verification) => Ok(Json(verification).into_response()),
        Err(AuditError::TooMany(wait)) => Ok(super::rate_limit::too_many(
            super::Surface::Ledger,
            meta.request_id.as_deref(),
            "Verification of the whole log is rate-limited",
            wait,
        )),
        Err(error) => Err(error.into()),
    }
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
    registered(&stream_type)?;
    let since = query.changed_since.as_deref().map(parse_time).transpose()?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 10000"));
    }
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
