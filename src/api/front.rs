//! What every request passes through before its route, in one service around the router
//! instead of a stack of middleware (each layer of which cloned and boxed the service
//! below it on every request, which cost a cached read more than its handler; a layer on
//! the router is one more around every route): the request id (which every
//! line logged while answering carries), the request timeout, the failed-login throttle,
//! the per-key rate limit, `Idempotency-Key`, the surface envelope for what the router
//! refuses, the HTTP metrics and the log line of a request that failed on the server.

use std::convert::Infallible;
use std::future::{ready, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use futures::future::Either;
use futures::FutureExt;

use super::login_throttle::LoginThrottle;
use super::{read_body, runtimes, Surface, REQUEST_ID};
use crate::answering::RequestId;
use crate::state::AppState;

/// The log target of the line per answered request (off by default; see
/// `telemetry::DEFAULT_LOG_FILTER`).
pub const ACCESS_LOG: &str = "access";

// The functions here return futures instead of being `async fn`s wherever they can: a
// request's future holds every layer's, an `async fn` keeps its arguments (a request is
// 240 bytes) beside its locals, and the whole is moved several times before it is boxed.
// As `async fn`s they made a cached read's future 8 KiB, and copying it cost more than
// the handler.

/// The service every request enters: the front, then `routes`.
#[derive(Clone)]
pub struct Front {
    state: AppState,
    routes: Router,
}

impl Front {
    pub fn new(state: AppState, routes: Router) -> Self {
        Front { state, routes }
    }

    /// The answer to `request` from `peer`, as the service every connection calls.
    pub fn answer(&self, request: Request, peer: SocketAddr) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> {
        let (state, routes) = (self.state.clone(), self.routes.clone());
        let timeout = Duration::from_secs(state.settings.guards.request_timeout_seconds);
        let answered = outermost(timeout, request, Some(peer), move |request, request_id| {
            guarded(state, request, routes, request_id, peer)
        });
        Box::pin(answered.map(Ok))
    }
}

/// `routes`' answer to `request` (the router is always ready and never fails).
pub(super) fn routed(mut routes: Router, request: Request) -> impl Future<Output = Response> {
    tower::Service::call(&mut routes, request).map(|answered| answered.unwrap_or_else(|never| match never {}))
}

/// The guards in their order: a throttled address, then an empty rate-limit bucket, is
/// refused before anything runs; then `Idempotency-Key` replays, claims or passes. A
/// failed authentication while answering is counted once the answer is ready.
fn guarded(
    state: AppState,
    request: Request,
    routes: Router,
    request_id: Option<&str>,
    peer: SocketAddr,
) -> impl Future<Output = Response> {
    let admitted = match state.logins.admit(&request, peer) {
        Ok(admitted) => admitted,
        Err(wait) => return Either::Left(ready(LoginThrottle::refused(&request, request_id, wait))),
    };
    if let Some(refused) = state.limits.refusal(&request, request_id) {
        return Either::Left(ready(refused));
    }
    let logins = state.logins.clone();
    let answered = super::idempotency::idempotency(state, request, routes);
    Either::Right(answered.inspect(move |_| logins.settle(admitted, crate::answering::login_failed())))
}

/// Everything around the guards and the route: id, timeout, envelope, metrics, log.
/// `route` is given the request and its id.
fn outermost<F: Future<Output = Response>>(
    timeout: Duration,
    request: Request,
    peer: Option<SocketAddr>,
    route: impl FnOnce(Request, Option<&str>) -> F,
) -> impl Future<Output = Response> {
    // The caller's id when it sent a usable one, else a fresh one; it goes back with the
    // answer, onto log lines and into the events the request records.
    // Not written into the request (a header map grown on every request): whatever needs
    // the id while answering asks `answering::request_id`.
    let request_id = match request.headers().get(REQUEST_ID).and_then(|id| RequestId::sent(id.as_bytes())) {
        Some(id) => id,
        None => RequestId::fresh(),
    };
    let seen = Seen {
        started: Instant::now(),
        surface: Surface::of(request.uri().path()),
        method: request.method().clone(),
        path: LoggedPath::of(request.uri().path()),
        streaming: is_streaming(&request),
    };
    let answered = route(request, Some(request_id.as_str()));
    // Every line logged while answering carries the id.
    crate::answering::scope(request_id, peer, seen.answer(timeout, answered))
}

/// What the front noted of a request before routing it, for its answer and log line.
struct Seen {
    started: Instant,
    surface: Surface,
    method: Method,
    path: LoggedPath,
    streaming: bool,
}

/// The longest path a log line shows whole.
const LOGGED_PATH: usize = 160;

/// A request's path as its log line shows it: kept inline, and cut (ending in `…`) past
/// `LOGGED_PATH` bytes. Cloning the request's `Uri` instead made its shared bytes
/// allocate on every request.
struct LoggedPath(arrayvec::ArrayString<{ LOGGED_PATH + '…'.len_utf8() }>);

impl LoggedPath {
    fn of(path: &str) -> Self {
        let mut logged = arrayvec::ArrayString::new();
        if path.len() <= LOGGED_PATH {
            logged.push_str(path);
        } else {
            let mut end = LOGGED_PATH;
            while !path.is_char_boundary(end) {
                end -= 1;
            }
            logged.push_str(&path[..end]);
            logged.push('…');
        }
        LoggedPath(logged)
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

impl Seen {
    /// Runs inside `answering::scope`, which holds the request's id.
    async fn answer(self, timeout: Duration, answered: impl Future<Output = Response>) -> Response {
        let Seen {
            started,
            surface,
            method,
            path,
            streaming,
        } = self;
        let request_id = crate::answering::request_id().unwrap_or_else(RequestId::fresh);
        let id = request_id.as_str();
        let mut response = match streaming {
            true => answered.await,
            // From when the request came (one clock read for both).
            false => match tokio::time::timeout_at((started + timeout).into(), answered).await {
                Ok(response) => response,
                Err(_) => {
                    tracing::warn!(timeout_seconds = timeout.as_secs(), "request timed out");
                    surface.error(StatusCode::SERVICE_UNAVAILABLE, "Request timed out", "request_timeout", Some(id))
                }
            },
        };
        response = in_envelope(surface, Some(id), response).await;
        if let header::Entry::Vacant(slot) = response.headers_mut().entry(REQUEST_ID) {
            slot.insert(request_id.header_value());
        }
        let status = response.status();
        let latency = started.elapsed();
        crate::telemetry::http_answered(surface.name(), status.as_u16(), latency.as_secs_f64());
        let (path, latency_ms) = (path.as_str(), latency.as_millis() as u64);
        if status.is_server_error() {
            tracing::error!(%method, path, status = status.as_u16(), latency_ms, "request failed on the server");
        } else {
            tracing::info!(target: ACCESS_LOG, %method, path, status = status.as_u16(), latency_ms, "answered");
        }
        response
    }
}

/// The change feed's SSE streams (the API's and the console's) are meant to stay open:
/// no timeout cuts them. Only those routes: a caller's `Accept` does not lift the timeout
/// anywhere else (a slow body sent with it would hold a connection forever).
fn is_streaming(request: &Request) -> bool {
    request.method() == Method::GET && matches!(request.uri().path(), "/api/v1/ledger/stream" | "/ui/events/stream")
}

/// Puts what the router itself refuses into the envelope of the surface the path falls
/// under: an unknown route (404), a method the route does not have (405, keeping its
/// `Allow`), and a path or query axum could not read (its plain-text 400s). Handlers
/// answer in their envelope already; this is for what never reached one.
async fn in_envelope(surface: Surface, request_id: Option<&str>, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let enveloped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // JSON envelopes, SSE, and the console's own error pages are answers already.
        .is_some_and(|v| v.contains("json") || v.starts_with("text/event-stream") || v.starts_with("text/html"));
    if enveloped {
        return response;
    }
    // Boxed: only what the router itself refused gets here, and reading its body would
    // otherwise make room in every request's future.
    Box::pin(rewrapped(surface, request_id, response)).await
}

async fn rewrapped(surface: Surface, request_id: Option<&str>, response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let said = read_body(body, 4096).await.ok().flatten().unwrap_or_default();
    let said = String::from_utf8_lossy(&said);
    let message = match said.trim() {
        "" => status.canonical_reason().unwrap_or("Error"),
        text => text,
    };
    let mut answer = surface.error(status, message, runtimes::error_type(status), request_id);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A handler slower than the timeout the tests give the middleware.
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(500)).await;
        "late"
    }

    fn app() -> Router {
        Router::new()
            .route("/api/v1/profiles/{id}", get(slow))
            .route("/api/v1/org/{org}/ws/{ws}/runtimes", get(slow))
            .route("/v1/instances", get(slow))
            .route("/agents", get(slow))
            .route("/api/v1/ledger/stream", get(slow))
            .route("/ui/events/stream", get(slow))
            .layer(axum::middleware::from_fn(|request: Request, next: axum::middleware::Next| {
                outermost(Duration::from_millis(50), request, None, |request, _| next.run(request))
            }))
    }

    async fn answer_with(path: &str, request_id: Option<&str>) -> (u16, Option<String>, String) {
        let mut request = axum::http::Request::get(path);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).expect("a request"))
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        let id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        (status, id, String::from_utf8_lossy(&body).into_owned())
    }

    async fn answer(path: &str) -> (u16, String) {
        let (status, id, body) = answer_with(path, Some("r-1")).await;
        assert_eq!(id.as_deref(), Some("r-1"), "the caller's request id goes back");
        (status, body)
    }

    #[tokio::test]
    async fn a_slow_request_is_cut_with_503_in_its_surface_envelope() {
        assert_eq!(
            answer("/api/v1/profiles/p").await,
            (503, "{\"error\":\"Request timed out\"}\n".into())
        );
        let (status, body) = answer("/api/v1/org/o/ws/w/runtimes").await;
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            (status, &body["code"], &body["type"]),
            (503, &503.into(), &"request_timeout".into())
        );
        assert_eq!(answer("/v1/instances").await, (503, "{\"detail\":\"Request timed out\"}".into()));
        assert_eq!(answer("/agents").await, (503, "{\"error\":\"Request timed out\"}".into()));
    }

    #[tokio::test]
    async fn asking_for_an_event_stream_elsewhere_does_not_lift_the_timeout() {
        let request = axum::http::Request::get("/api/v1/profiles/p")
            .header("accept", "text/event-stream")
            .body(Body::empty())
            .expect("a request");
        let response = app().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), 503);
    }

    #[tokio::test]
    async fn an_unusable_request_id_is_replaced() {
        let long = "a".repeat(129);
        for sent in ["", " ", "}: forged request{x=y", "a\"b", long.as_str(), "ü"] {
            let (status, id, _) = answer_with("/nowhere", Some(sent)).await;
            assert_eq!(status, 404);
            let id = id.expect("an id goes back");
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{sent:?} was replaced: {id}");
        }
        let kept = "01J9Z-trace_id.7:a/b+c=d@e";
        assert_eq!(answer_with("/nowhere", Some(kept)).await.1.as_deref(), Some(kept));
    }

    #[tokio::test]
    async fn the_event_stream_is_not_cut() {
        assert_eq!(answer("/api/v1/ledger/stream").await, (200, "late".into()));
        assert_eq!(answer("/ui/events/stream").await, (200, "late".into()));
    }

    #[test]
    fn a_logged_path_is_whole_up_to_its_limit_and_cut_on_a_character_after() {
        assert_eq!(LoggedPath::of("/api/v1/profiles/p").as_str(), "/api/v1/profiles/p");
        let limit = "/".repeat(LOGGED_PATH);
        assert_eq!(LoggedPath::of(&limit).as_str(), limit);
        let long = format!("{limit}tail");
        assert_eq!(LoggedPath::of(&long).as_str(), format!("{limit}…"));
        let wide = format!("{}é", "/".repeat(LOGGED_PATH - 1));
        assert_eq!(LoggedPath::of(&wide).as_str(), format!("{}…", "/".repeat(LOGGED_PATH - 1)));
    }

    #[tokio::test]
    async fn a_request_without_an_id_is_given_one() {
        let (status, id, _) = answer_with("/nowhere", None).await;
        assert_eq!(status, 404);
        let id = id.expect("an id goes back");
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
}
