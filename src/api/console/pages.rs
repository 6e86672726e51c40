//! The console's pages: each parses its request, asks `crate::audit` or the ledger's feed
//! (as the signed-in key), and renders a template. Nothing here decides what a key may see
//! or do.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::session::Fields;
use super::view::{self, ActorView, EventRow, JsonLine, Time};
use super::{page, ConsoleError, Signed};
use crate::api::{IfMatch, RequestMeta};
use crate::audit::{self, Diff, Resource};
use crate::bus::feed::{self, Filter};
use crate::state::AppState;
use crate::streams;

/// Rows of a resource's timeline per page.
const TIMELINE_PAGE: i64 = 100;
/// Resources a list shows at most (a filter narrows it).
const LIST_LIMIT: usize = 500;
/// Events the feed page opens with, and how far back in the log it looks for them.
const FEED_RECENT: usize = 50;
const FEED_LOOK_BACK: i64 = 2000;
/// How often the live feed's badge (NATS, relay lag) is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(2);

type Page = Result<Response, ConsoleError>;

fn bad_request(message: impl Into<String>) -> ConsoleError {
    ConsoleError::new(StatusCode::BAD_REQUEST, message)
}

/// An optional whole number from a query or a form.
fn number(value: Option<&str>, what: &str) -> Result<Option<i64>, ConsoleError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("{what} must be a whole number"))),
    }
}

/// A stream type's name with the surface it belongs to, for filters.
#[derive(Serialize)]
struct TypeOption {
    name: &'static str,
    surface: &'static str,
}

fn type_options(only_products: bool) -> Vec<TypeOption> {
    streams::all()
        .iter()
        .filter(|s| !only_products || s.surface().is_product())
        .map(|s| TypeOption {
            name: s.name(),
            surface: s.surface().name(),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "type")]
    stream_type: Option<String>,
    q: Option<String>,
}

#[derive(Serialize)]
struct ResourceRow {
    stream_type: String,
    surface: &'static str,
    id: String,
    name: Option<String>,
    deleted: bool,
    version: i64,
    event_type: String,
    summary: String,
    actor: ActorView,
    at: Time,
    href: String,
}

#[derive(Serialize)]
struct ResourcesPage {
    types: Vec<TypeOption>,
    selected_type: String,
    q: String,
    rows: Vec<ResourceRow>,
    total: usize,
    shown: usize,
}

/// `GET /ui/resources`: every resource of the org on the five surfaces that the key may
/// read, newest change first, filtered by stream type and text.
pub async fn resources(State(state): State<AppState>, signed: Signed, Query(query): Query<ListQuery>) -> Page {
    let selected_type = query.stream_type.unwrap_or_default();
    let q = query.q.unwrap_or_default();
    let needle = q.trim().to_lowercase();
    let models = &state.ledger.models;
    let rows: Vec<ResourceRow> = audit::resources(&state, &signed.principal)
        .await?
        .into_iter()
        .filter(|r| selected_type.is_empty() || r.last.stream_type == selected_type)
        .map(|r| {
            let e = &r.last;
            ResourceRow {
                surface: streams::get(&e.stream_type).map_or("", |s| s.surface().name()),
                stream_type: e.stream_type.clone(),
                id: e.stream_id.clone(),
                name: r.name,
                deleted: r.deleted,
                version: e.stream_version,
                event_type: e.event_type.clone(),
                summary: streams::summary(e),
                actor: ActorView::of(&e.metadata.actor, models),
                at: Time::of(&e.recorded_at),
                href: view::resource_href(&e.stream_type, &e.stream_id),
            }
        })
        .filter(|r| {
            needle.is_empty()
                || [
                    Some(r.stream_type.as_str()),
                    Some(r.id.as_str()),
                    r.name.as_deref(),
                    Some(r.event_type.as_str()),
                    Some(r.summary.as_str()),
                    Some(r.actor.name.as_str()),
                ]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(&needle))
        })
        .collect();
    let total = rows.len();
    let rows: Vec<ResourceRow> = rows.into_iter().take(LIST_LIMIT).collect();
    let shown = rows.len();
    let body = ResourcesPage {
        types: type_options(true),
        selected_type,
        q,
        rows,
        total,
        shown,
    };
    Ok(page("resources.html", &signed, "resources", body))
}

/// What a resource's pages say about it in their heading.
#[derive(Serialize)]
struct Heading {
    stream_type: &'static str,
    surface: &'static str,
    id: String,
    name: Option<String>,
    current: i64,
    deleted: bool,
    href: String,
}

impl Heading {
    fn of(state: &AppState, resource: &Resource, shown: &Value) -> Heading {
        Heading {
            stream_type: resource.kind.name(),
            surface: resource.kind.surface().name(),
            id: resource.id.clone(),
            name: shown.get("name").and_then(Value::as_str).map(str::to_string),
            current: resource.current,
            deleted: resource.kind.is_deleted(&state.ledger.models, &resource.id),
            href: view::resource_href(resource.kind.name(), &resource.id),
        }
    }
}

#[derive(Deserialize)]
pub struct TimelineQuery {
    version: Option<String>,
    page: Option<String>,
    restored: Option<String>,
}

#[derive(Serialize)]
struct StepRow {
    version: i64,
    revision: Option<i64>,
    event_type: String,
    summary: String,
    actor: ActorView,
    at: Time,
    request_id: Option<String>,
    href: String,
    selected: bool,
}

#[derive(Serialize)]
struct Selected {
    version: i64,
    at: Time,
    lines: Vec<JsonLine>,
    /// The event's data as any reader may see it (`views::public`).
    event_data: Vec<JsonLine>,
    event_type: String,
    /// What this version changed (from the version before it).
    changes: Vec<ChangeRow>,
    restore_href: Option<String>,
    previous_diff: Option<String>,
    current_diff: Option<String>,
}

#[derive(Serialize)]
struct TimelinePage {
    resource: Heading,
    rows: Vec<StepRow>,
    selected: Selected,
    newer: Option<String>,
    older: Option<String>,
    compare_from: i64,
    compare_to: i64,
    restored: Option<i64>,
}

/// `GET /ui/resources/{type}/{id}`: the revision timeline (newest first, paged) and the
/// state at `?version=N` (the current one by default).
pub async fn timeline(
    State(state): State<AppState>,
    signed: Signed,
    Path((stream_type, id)): Path<(String, String)>,
    Query(query): Query<TimelineQuery>,
) -> Page {
    let store = state.ledger.store.as_ref();
    let resource = Resource::find(store, &signed.principal, &stream_type, &id).await?;
    let current = resource.current;
    let version = resource.version(number(query.version.as_deref(), "version")?.unwrap_or(current))?;
    let page_no = match number(query.page.as_deref(), "page")? {
        Some(p) => p.max(0),
        None => (current - version) / TIMELINE_PAGE,
    };
    let last = (current - page_no * TIMELINE_PAGE).max(0);
    let after = (last - TIMELINE_PAGE).max(0);
    let href = view::resource_href(&stream_type, &id);
    let models = &state.ledger.models;
    let mut rows: Vec<StepRow> = resource
        .timeline(store, after, last)
        .await?
        .into_iter()
        .map(|s| {
            let e = &s.envelope;
            StepRow {
                version: e.stream_version,
                revision: s.revision,
                event_type: e.event_type.clone(),
                summary: s.summary,
                actor: ActorView::of(&e.metadata.actor, models),
                at: Time::of(&e.recorded_at),
                request_id: e.metadata.request_id.clone(),
                href: format!("{href}?version={}", e.stream_version),
                selected: e.stream_version == version,
            }
        })
        .collect();
    rows.reverse();
    let (shown, event) = resource.at(&state, version).await?;
    let heading = if version == current {
        Heading::of(&state, &resource, &shown)
    } else {
        Heading::of(&state, &resource, &resource.at(&state, current).await?.0)
    };
    let public = crate::views::public(&event);
    let may_restore = audit::may_restore(&signed.principal, &id) && !heading.deleted && version < current;
    let changed = match version {
        1 => Vec::new(),
        _ => changes(&resource.diff(&state, version - 1, version).await?).0,
    };
    let selected = Selected {
        changes: changed,
        version,
        at: Time::of(&event.recorded_at),
        lines: view::json_lines(&shown, &[]),
        event_data: view::json_lines(&public.envelope().data, &[]),
        event_type: event.event_type.clone(),
        restore_href: may_restore.then(|| format!("{href}/restore?version={version}")),
        previous_diff: (version > 1).then(|| format!("{href}/diff?from={}&to={version}", version - 1)),
        current_diff: (version < current).then(|| format!("{href}/diff?from={version}&to={current}")),
    };
    let body = TimelinePage {
        newer: (page_no > 0).then(|| format!("{href}?page={}", page_no - 1)),
        older: (after > 0).then(|| format!("{href}?page={}", page_no + 1)),
        compare_from: (version - 1).max(1),
        compare_to: version,
        restored: number(query.restored.as_deref(), "restored")?,
        resource: heading,
        rows,
        selected,
    };
    Ok(page("timeline.html", &signed, "resources", body))
}

/// One operation of a patch, with what was there before and what is there after.
#[derive(Serialize)]
struct ChangeRow {
    op: &'static str,
    path: String,
    from_path: Option<String>,
    before: Option<String>,
    after: Option<String>,
}

/// How long a value may be in the list of changes before it is cut.
const CHANGE_VALUE_CHARS: usize = 200;

/// The patch's operations as rows, and the pointers each side of a side-by-side marks.
fn changes(diff: &Diff) -> (Vec<ChangeRow>, Vec<String>, Vec<String>) {
    use json_patch::PatchOperation as Op;
    let (mut rows, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
    let was = |path: &str| diff.before.pointer(path).map(|v| view::compact(v, CHANGE_VALUE_CHARS));
    let is = |path: &str| diff.after.pointer(path).map(|v| view::compact(v, CHANGE_VALUE_CHARS));
    for op in &diff.patch.0 {
        let row = match op {
            Op::Add(o) => {
                right.push(o.path.to_string());
                ("added", o.path.to_string(), None)
            }
            Op::Remove(o) => {
                left.push(o.path.to_string());
                ("removed", o.path.to_string(), None)
            }
            Op::Replace(o) => {
                left.push(o.path.to_string());
                right.push(o.path.to_string());
                ("changed", o.path.to_string(), None)
            }
            Op::Move(o) => {
                left.push(o.from.to_string());
                right.push(o.path.to_string());
                ("moved", o.path.to_string(), Some(o.from.to_string()))
            }
            Op::Copy(o) => {
                right.push(o.path.to_string());
                ("copied", o.path.to_string(), Some(o.from.to_string()))
            }
            Op::Test(o) => ("tested", o.path.to_string(), None),
        };
        let (op, path, from_path) = row;
        let before = match op {
            "changed" | "removed" => was(&path),
            "moved" => from_path.as_deref().and_then(was),
            _ => None,
        };
        let after = match op {
            "added" | "changed" | "moved" | "copied" => is(&path),
            _ => None,
        };
        rows.push(ChangeRow {
            op,
            path,
            from_path,
            before,
            after,
        });
    }
    (rows, left, right)
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct DiffPage {
    resource: Heading,
    from: i64,
    to: i64,
    changes: Vec<ChangeRow>,
    before: Vec<JsonLine>,
    after: Vec<JsonLine>,
    from_href: String,
    to_href: String,
}

/// `GET /ui/resources/{type}/{id}/diff?from=A&to=B`: the RFC 6902 patch between two
/// versions, its paths written out, and both states side by side with those paths marked.
pub async fn diff(
    State(state): State<AppState>,
    signed: Signed,
    Path((stream_type, id)): Path<(String, String)>,
    Query(query): Query<DiffQuery>,
) -> Page {
    let resource = Resource::find(state.ledger.store.as_ref(), &signed.principal, &stream_type, &id).await?;
    let current = resource.current;
    let to = number(query.to.as_deref(), "to")?.unwrap_or(current);
    let from = number(query.from.as_deref(), "from")?.unwrap_or((to - 1).max(1));
    let diff = resource.diff(&state, from, to).await?;
    let (rows, left, right) = changes(&diff);
    let href = view::resource_href(&stream_type, &id);
    let body = DiffPage {
        resource: Heading::of(&state, &resource, &diff.after),
        from,
        to,
        before: view::json_lines(&diff.before, &left),
        after: view::json_lines(&diff.after, &right),
        changes: rows,
        from_href: format!("{href}?version={from}"),
        to_href: format!("{href}?version={to}"),
    };
    Ok(page("diff.html", &signed, "resources", body))
}

#[derive(Deserialize)]
pub struct RestoreQuery {
    version: Option<String>,
}

#[derive(Serialize)]
struct RestorePage<'a> {
    resource: Heading,
    version: i64,
    changes: Vec<ChangeRow>,
    message: Option<&'a str>,
    reason: &'a str,
}

/// The confirmation of a restore: what it would change (current → version N), and a
/// reason to give.
async fn restore_form(state: &AppState, signed: &Signed, resource: &Resource, version: i64, message: Option<&str>, reason: &str) -> Page {
    if !audit::may_restore(&signed.principal, &resource.id) {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, "restoring needs a member or admin key"));
    }
    let diff = resource.diff(state, resource.current, version).await?;
    let body = RestorePage {
        resource: Heading::of(state, resource, &diff.before),
        version,
        changes: changes(&diff).0,
        message,
        reason,
    };
    Ok(page("restore.html", signed, "resources", body))
}

/// `GET /ui/resources/{type}/{id}/restore?version=N`: asks for a reason and a confirmation.
pub async fn confirm_restore(
    State(state): State<AppState>,
    signed: Signed,
    Path((stream_type, id)): Path<(String, String)>,
    Query(query): Query<RestoreQuery>,
) -> Page {
    let resource = Resource::find(state.ledger.store.as_ref(), &signed.principal, &stream_type, &id).await?;
    let version = number(query.version.as_deref(), "version")?.ok_or_else(|| bad_request("which version? (?version=N)"))?;
    resource.version(version)?;
    restore_form(&state, &signed, &resource, version, None, "").await
}

/// `POST /ui/resources/{type}/{id}/restore` (`version`, `reason`, `expected`, `csrf`): the
/// audit restore, as the signed-in key, expecting the resource still at the version the
/// confirmation showed; then back to the timeline at the new version.
pub async fn restore(
    State(state): State<AppState>,
    signed: Signed,
    meta: RequestMeta,
    Path((stream_type, id)): Path<(String, String)>,
    form: Fields,
) -> Page {
    signed.check_csrf(&form)?;
    let resource = Resource::find(state.ledger.store.as_ref(), &signed.principal, &stream_type, &id).await?;
    let version = number(form.get("version"), "version")?.ok_or_else(|| bad_request("which version?"))?;
    let expected = number(form.get("expected"), "expected")?;
    let reason = form.get("reason").map(str::trim).unwrap_or_default();
    if !audit::may_restore(&signed.principal, &id) {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, "restoring needs a member or admin key"));
    }
    if reason.is_empty() {
        let mut response = restore_form(&state, &signed, &resource, version, Some("Say why you restore this version."), "").await?;
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        return Ok(response);
    }
    let meta = RequestMeta {
        if_match: expected.map(IfMatch::version),
        // A form is not retried by a client library: nothing to replay.
        idempotency_key: None,
        ..meta
    };
    let written = resource
        .restore(&state, &signed.principal, &meta, version, Some(reason.to_string()))
        .await;
    let href = view::resource_href(&stream_type, &id);
    match written {
        Ok(answer) if answer.status().is_success() => {
            let now = state.ledger.store.stream_version(&id).await?;
            Ok(Redirect::to(&format!("{href}?version={now}&restored={version}")).into_response())
        }
        Ok(answer) => Err(ConsoleError::new(answer.status(), surface_message(answer).await)),
        Err(audit::AuditError::Refused(refusal)) if refusal.status == StatusCode::PRECONDITION_FAILED => Err(ConsoleError::new(
            StatusCode::PRECONDITION_FAILED,
            "The resource changed after you reviewed this restore; review it again.",
        )),
        Err(error) => Err(error.into()),
    }
}

/// The message of an answer in a surface's own error envelope (`error`, `detail` or
/// `message`), or its status.
async fn surface_message(answer: Response) -> String {
    let status = answer.status();
    let body = crate::api::read_body(answer.into_body(), 64 * 1024)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            ["error", "detail", "message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str).map(str::to_string))
        })
        .unwrap_or_else(|| format!("The restore was refused ({status})."))
}

#[derive(Deserialize)]
pub struct FeedQuery {
    #[serde(rename = "type")]
    stream_type: Option<String>,
    after: Option<String>,
}

/// The live feed's badge: NATS and how far the relay is behind.
#[derive(Serialize)]
struct FeedStatus {
    nats: &'static str,
    ok: bool,
    lag_events: Option<i64>,
    lag_seconds: Option<f64>,
    /// The badge's words.
    text: String,
}

impl FeedStatus {
    async fn now(state: &AppState) -> FeedStatus {
        let Some(bus) = &state.bus else {
            // Without NATS there is no relay: the feed follows the log itself.
            return FeedStatus {
                nats: "not configured",
                ok: true,
                lag_events: None,
                lag_seconds: None,
                text: "NATS not configured · no relay".into(),
            };
        };
        let nats = if bus.connected() { "connected" } else { "disconnected" };
        let lag = crate::bus::relay::lag(state.ledger.store.as_ref()).await.ok();
        let text = match lag {
            Some(l) => format!("NATS {nats} · relay lag {} events, {:.1} s", l.events, l.seconds),
            None => format!("NATS {nats} · relay lag unknown"),
        };
        FeedStatus {
            nats,
            ok: nats == "connected" && lag.is_some_and(|l| l.seconds <= state.settings.ready_max_relay_lag_seconds),
            lag_events: lag.map(|l| l.events),
            lag_seconds: lag.map(|l| l.seconds),
            text,
        }
    }
}

#[derive(Serialize)]
struct EventsPage {
    types: Vec<TypeOption>,
    selected_type: String,
    rows: Vec<EventRow>,
    after: i64,
    status: FeedStatus,
}

/// `GET /ui/events`: the latest events the key may read, then new ones live over SSE
/// (`/ui/events/stream`), filterable by stream type and pausable.
pub async fn events(State(state): State<AppState>, signed: Signed, Query(query): Query<FeedQuery>) -> Page {
    let store = state.ledger.store.as_ref();
    let selected_type = query.stream_type.unwrap_or_default();
    let filter = Filter::for_reader(&signed.principal, Some(selected_type.clone()), None);
    let head = store.head().await?;
    let (recent, _) = feed::page(store, (head - FEED_LOOK_BACK).max(0), FEED_LOOK_BACK as usize, &filter).await?;
    let after = recent.last().map_or(head, |e| e.global_position.max(head));
    let rows: Vec<EventRow> = recent
        .iter()
        .rev()
        .take(FEED_RECENT)
        .map(|e| EventRow::of(e, &state.ledger.models))
        .collect();
    let body = EventsPage {
        types: type_options(false),
        selected_type,
        rows,
        after,
        status: FeedStatus::now(&state).await,
    };
    Ok(page("events.html", &signed, "events", body))
}

/// What the live stream sends: events, the badge, or its end.
enum Item {
    Send(Event),
    End,
}

/// `GET /ui/events/stream?type=&after=N`: Server-Sent Events of the key's events after N
/// (or `Last-Event-ID`), as `ledger` events carrying a feed row, and a `status` event
/// with the badge every few seconds. It ends when the session ends or the server shuts
/// down.
pub async fn event_stream(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Response, ConsoleError> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match number(last_event_id.or(query.after.as_deref()), "after")? {
        Some(after) => after.max(0),
        None => state.ledger.store.head().await?,
    };
    let filter = Filter::for_reader(&signed.principal, query.stream_type, None);
    let models = state.ledger.models.clone();
    let events = feed::follow(
        state.ledger.store.clone(),
        after,
        filter,
        Duration::from_millis(state.settings.follow_interval_ms),
    )
    .map(move |item| match item {
        Ok(e) => {
            let row = serde_json::to_string(&EventRow::of(&e, &models)).unwrap_or_default();
            Item::Send(Event::default().id(e.global_position.to_string()).event("ledger").data(row))
        }
        Err(error) => {
            tracing::warn!(%error, "console feed could not read the log");
            Item::Send(Event::default().comment("the log could not be read"))
        }
    });
    let (key_id, org_id) = (signed.principal.key_id.to_string(), signed.principal.org_id.to_string());
    let token_hash = signed.token_hash().to_string();
    let status = futures::stream::unfold((state.clone(), true), move |(state, first)| {
        let (key_id, org_id, token_hash) = (key_id.clone(), org_id.clone(), token_hash.clone());
        async move {
            if !first {
                tokio::time::sleep(STATUS_EVERY).await;
                // A session that ended (signed out, its key revoked) stops its stream.
                let now = chrono::Utc::now();
                let open = matches!(state.ledger.store.console_session(&token_hash, now).await, Ok(Some(_)))
                    && state.auth.principal_of_key(&key_id, &org_id, now).await.is_ok();
                if !open {
                    return Some((Item::End, (state, false)));
                }
            }
            let badge = serde_json::to_string(&FeedStatus::now(&state).await).unwrap_or_default();
            Some((Item::Send(Event::default().event("status").data(badge)), (state, false)))
        }
    });
    let stream = futures::stream::select(events, status)
        .take_while(|item| std::future::ready(matches!(item, Item::Send(_))))
        .map(|item| match item {
            Item::Send(event) => event,
            Item::End => Event::default().comment("signed out"),
        });
    Ok(crate::api::sse::respond(stream, &state.shutdown).into_response())
}

#[derive(Serialize)]
struct Break {
    version: i64,
    global_position: i64,
    event_id: String,
    expected: String,
    actual: String,
    href: String,
}

#[derive(Serialize)]
struct CheckRow {
    stream_type: String,
    stream_id: String,
    href: String,
    checked: u64,
    first_bad: Option<Break>,
}

#[derive(Serialize)]
struct VerifyPage {
    ok: bool,
    streams: usize,
    events: u64,
    broken: Vec<CheckRow>,
    intact: Vec<CheckRow>,
}

/// `GET /ui/verify`: verifies every hash chain of the org (admins, as often as the API
/// allows) and shows each stream's result; a broken one names its first bad event.
pub async fn verify(State(state): State<AppState>, signed: Signed) -> Page {
    let checks = audit::verify_org_streams(&state, &signed.principal).await?;
    let events = checks.iter().map(|c| c.checked).sum();
    let streams = checks.len();
    let (broken, intact): (Vec<CheckRow>, Vec<CheckRow>) = checks
        .into_iter()
        .map(|c| {
            let href = view::resource_href(&c.stream_type, &c.stream_id);
            CheckRow {
                first_bad: c.first_bad.map(|b| Break {
                    href: format!("{href}?version={}", b.version),
                    version: b.version,
                    global_position: b.global_position,
                    event_id: b.event_id,
                    expected: b.expected,
                    actual: b.actual,
                }),
                href,
                stream_type: c.stream_type,
                stream_id: c.stream_id,
                checked: c.checked,
            }
        })
        .partition(|c| c.first_bad.is_some());
    let body = VerifyPage {
        ok: broken.is_empty(),
        streams,
        events,
        broken,
        intact,
    };
    Ok(page("verify.html", &signed, "verify", body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_is_written_out_with_what_each_side_marks() {
        let before = json!({"config": {"packages": ["vim"], "kernel": "a"}, "old": 1});
        let after = json!({"config": {"packages": ["vim", "git"], "kernel": "b"}});
        let patch = json_patch::diff(&before, &after);
        let diff = Diff { before, after, patch };
        let (rows, left, right) = changes(&diff);
        let written: Vec<(&str, &str, Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (r.op, r.path.as_str(), r.before.as_deref(), r.after.as_deref()))
            .collect();
        assert!(
            written.contains(&("changed", "/config/kernel", Some("\"a\""), Some("\"b\""))),
            "{written:?}"
        );
        assert!(
            written.contains(&("added", "/config/packages/1", None, Some("\"git\""))),
            "{written:?}"
        );
        assert!(written.contains(&("removed", "/old", Some("1"), None)), "{written:?}");
        assert!(left.contains(&"/old".to_string()) && left.contains(&"/config/kernel".to_string()));
        assert!(right.contains(&"/config/packages/1".to_string()) && !right.contains(&"/old".to_string()));
    }
}
