//! `Idempotency-Key` on every write of every surface, written once as a middleware.
//!
//! A write (POST, PUT, PATCH, DELETE) that carries the header first claims the key for its
//! org, bound to a fingerprint of the request (the API key making it, method, path and
//! query, body). A kept answer is only ever replayed to the key that earned it: another key
//! of the org reusing the header (a viewer, a narrower scoped key) is a different request,
//! so it cannot read an answer it was never authorized to get (a new key's value). The first
//! request with a key runs; its answer is stored and replayed byte for byte, with
//! `Idempotent-Replayed: true`, to every later request with the same key and fingerprint
//! for 24 hours. The same key with another request is 422 in the surface's envelope.
//! Concurrent requests with one key never both run: in this process the later one waits
//! for the earlier; across processes the claim in the store decides, and the loser waits
//! for the winner's answer (409 if it does not come in time).
//!
//! A claim whose holder died before answering is taken over only when the log shows the
//! holder recorded nothing; otherwise the retry is told so (409), never run twice.
//!
//! What the store keeps tells nothing of secrets a request or its answer carried (a
//! gateway token, a key shown once): the fingerprint is keyed with the org's data key, and
//! the kept answer is sealed with it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use chrono::Utc;
use dashmap::DashMap;
use fleetledger_events::secret::SealedSecret;
use futures::StreamExt;
use http_body_util::BodyExt;
use secrecy::ExposeSecret;

use super::front::routed;
use super::{Surface, IDEMPOTENCY_KEY};
use crate::auth::presented_token;
use crate::secrets::Plaintext;
use crate::state::AppState;
use crate::store::{IdempotencyClaim, IdempotencyRecord, StoreError};

pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The largest body any surface accepts; a longer one passes through for its surface to
/// refuse in its own words.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a claim may go unanswered before its holder is presumed dead.
const CLAIM_LEASE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);
/// How often a request waiting for another's answer looks again.
const WAIT_POLL: Duration = Duration::from_millis(25);
/// Headers a replay does not repeat: the transport's own and the request's id.
const NOT_REPLAYED: [&str; 5] = ["content-length", "date", "transfer-encoding", "connection", "x-request-id"];

/// Requests of this process holding an idempotency key, by (org, key).
#[derive(Default)]
pub struct Claims(DashMap<(String, String), Arc<tokio::sync::Mutex<()>>>);

fn is_write(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
}

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// The request answered through `Idempotency-Key` when it is a write that names one, else
/// simply routed. A function returning a future, not an `async fn` (see `api::front`).
pub fn idempotency(state: AppState, request: Request, routes: Router) -> impl std::future::Future<Output = Response> {
    use futures::future::Either;
    if !is_write(request.method()) || !request.headers().contains_key(IDEMPOTENCY_KEY) {
        return Either::Left(routed(routes, request));
    }
    // Boxed: what a keyed write holds across its awaits is large, and every other request
    // would otherwise carry (and move) room for it.
    Either::Right(Box::pin(keyed(state, request, routes)))
}

async fn keyed(state: AppState, request: Request, routes: Router) -> Response {
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY).map(|v| v.as_bytes().to_vec()) else {
        return routed(routes, request).await;
    };
    let surface = Surface::of(request.uri().path());
    let request_id = crate::answering::request_id_text();
    let refuse = |status: StatusCode, message: &str| surface.error(status, message, "idempotency_error", request_id.as_deref());
    let key = match String::from_utf8(key) {
        Ok(key) if valid_key(key.trim()) => key.trim().to_string(),
        _ => return refuse(StatusCode::BAD_REQUEST, "Idempotency-Key must be 1 to 255 visible ASCII characters"),
    };
    // Keys belong to an org; a request that does not authenticate is refused by its
    // surface without touching the key.
    let (org, caller) = match presented_token(request.headers()) {
        Ok(token) => match state.auth.authenticate(token, Utc::now()).await {
            Ok(principal) => (principal.org_id.to_string(), principal.key_id.to_string()),
            Err(_) => return routed(routes, request).await,
        },
        Err(_) => return routed(routes, request).await,
    };
    let (parts, body) = request.into_parts();
    let (body, complete) = match buffer(body).await {
        Ok(read) => read,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, super::UNREADABLE_BODY),
    };
    let Some(bytes) = complete else {
        // Over every surface's limit: let the surface refuse it as it always does.
        return routed(routes, Request::from_parts(parts, body)).await;
    };
    let message = [
        caller.as_bytes(),
        b"\n",
        parts.method.as_str().as_bytes(),
        b" ",
        parts.uri.path_and_query().map_or("", |p| p.as_str()).as_bytes(),
        b"\n",
        &bytes,
    ]
    .concat();
    let fingerprint = match state.secrets.fingerprint(&org, &message).await {
        Ok(fingerprint) => fingerprint,
        Err(error) => {
            tracing::error!(%error, "cannot fingerprint a request for its idempotency key");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The request could not be checked for repeats; retry later",
            );
        }
    };
    let request = Request::from_parts(parts, Body::from(bytes));

    // One request per key at a time in this process; the store arbitrates between processes.
    let lock = state.claims.0.entry((org.clone(), key.clone())).or_default().clone();
    let answer = {
        let _held = lock.lock().await;
        hold_and_run(&state, &org, &key, &fingerprint, request, routes, &refuse).await
    };
    drop(lock);
    state.claims.0.remove_if(&(org, key), |_, lock| Arc::strong_count(lock) == 1);
    answer
}

/// Claims the key and runs the request, or answers from (or about) whoever holds it.
async fn hold_and_run(
    state: &AppState,
    org: &str,
    key: &str,
    fingerprint: &str,
    request: Request,
    routes: Router,
    refuse: &impl Fn(StatusCode, &str) -> Response,
) -> Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.settings.apply_timeout_seconds + 5);
    loop {
        let now = Utc::now();
        let held = match state.ledger.store.claim_idempotency(org, key, fingerprint, now).await {
            Ok(IdempotencyClaim::Claimed) => return run(state, org, key, fingerprint, request, routes).await,
            Ok(IdempotencyClaim::Taken(held)) => held,
            Err(error) => return store_failure(error, refuse),
        };
        if held.request_hash != fingerprint {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency-Key was already used with a different request",
            );
        }
        if !held.in_progress() {
            return match replay(state, held).await {
                Some(answer) => answer,
                None => refuse(
                    StatusCode::CONFLICT,
                    "The answer to the first request with this Idempotency-Key can no longer be read; it is not run again",
                ),
            };
        }
        if now - held.created_at > CLAIM_LEASE {
            // Its holder never answered. Run it again only if it recorded nothing.
            match state.ledger.store.idempotency_key_used(org, key, held.created_at).await {
                Ok(true) => {
                    return refuse(
                        StatusCode::CONFLICT,
                        "The first request with this Idempotency-Key was interrupted after it was recorded; it is not run again",
                    )
                }
                Ok(false) => match state
                    .ledger
                    .store
                    .take_over_idempotency(org, key, held.created_at, fingerprint, now)
                    .await
                {
                    Ok(true) => return run(state, org, key, fingerprint, request, routes).await,
                    Ok(false) => {}
                    Err(error) => return store_failure(error, refuse),
                },
                Err(error) => return store_failure(error, refuse),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return refuse(
                StatusCode::CONFLICT,
                "A request with this Idempotency-Key is still in progress; retry later",
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

fn store_failure(error: StoreError, refuse: &impl Fn(StatusCode, &str) -> Response) -> Response {
    tracing::error!(%error, "idempotency record unavailable");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "The request could not be checked for repeats; retry later",
    )
}

/// Runs the request holding the key and keeps its answer for replay (or frees the key
/// when the answer is a failure worth retrying).
async fn run(state: &AppState, org: &str, key: &str, fingerprint: &str, request: Request, routes: Router) -> Response {
    let response = routed(routes, request).await;
    let status = response.status();
    // A 502/504 is kept: the write is recorded even though its side effect failed, and a
    // retry must not record it twice.
    let keep = !status.is_server_error() || matches!(status, StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT);
    let store = &state.ledger.store;
    if !keep {
        if let Err(error) = store.release_idempotency(org, key, fingerprint).await {
            tracing::warn!(%error, "could not free an idempotency key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(%error, "could not read a response to keep for replay");
            let _ = store.release_idempotency(org, key, fingerprint).await;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !NOT_REPLAYED.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    // Every surface answers in UTF-8 JSON (or nothing); the answer is kept sealed.
    let kept = match std::str::from_utf8(&body) {
        Ok(text) => state.secrets.seal(org, &Plaintext::from(text.to_string())).await.ok(),
        Err(_) => None,
    };
    let Some(sealed) = kept.and_then(|sealed| serde_json::to_vec(&sealed).ok()) else {
        tracing::warn!("could not seal a response to keep for replay; the key is freed");
        let _ = store.release_idempotency(org, key, fingerprint).await;
        return Response::from_parts(parts, Body::from(body));
    };
    let record = IdempotencyRecord {
        org_id: org.to_string(),
        key: key.to_string(),
        request_hash: fingerprint.to_string(),
        status: status.as_u16(),
        headers,
        body: sealed,
        created_at: Utc::now(),
    };
    if let Err(error) = store.complete_idempotency(&record).await {
        tracing::warn!(%error, "could not keep a response for replay");
    }
    Response::from_parts(parts, Body::from(body))
}

/// The kept answer, opened; `None` when it can no longer be (its org was forgotten).
async fn replay(state: &AppState, record: IdempotencyRecord) -> Option<Response> {
    let sealed: SealedSecret = serde_json::from_slice(&record.body).ok()?;
    let body = match state.secrets.open(&record.org_id, &sealed).await {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, "a kept answer cannot be opened");
            return None;
        }
    };
    let mut response = Response::new(Body::from(body.expose_secret().to_string()));
    *response.status_mut() = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    for (name, value) in record.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    Some(response)
}

/// Reads a body up to the limit: `(body, Some(bytes))` when it fits, else the body as it
/// was (what was read, then the rest) and `None`.
async fn buffer(mut body: Body) -> Result<(Body, Option<Bytes>), axum::Error> {
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        read.extend_from_slice(&data);
        if read.len() > MAX_BODY_BYTES {
            let head = futures::stream::once(async move { Ok::<Bytes, axum::Error>(read.freeze()) });
            return Ok((Body::from_stream(head.chain(body.into_data_stream())), None));
        }
    }
    Ok((Body::empty(), Some(read.freeze())))
}
