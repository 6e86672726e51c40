//! Liveness (`/healthz`), readiness (`/readyz`), metrics, the OpenAPI document and the docs
//! UI (served from the binary, no CDN).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::bus::relay;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "fleetledger", description = "Audited, event-sourced control plane for fleets of AI agents, sandboxes and device images."),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

#[derive(OpenApi)]
#[openapi(paths(healthz, readyz), tags((name = "system", description = "Health and metrics")))]
pub struct SystemApi;

/// What every write of every surface shares, documented once: `If-Match` (412 when it no
/// longer matches), `Idempotency-Key` (replayed answers, 422 for another request, 409 while
/// the first is in progress), and the `ETag` every answer about one resource carries.
struct WriteContract;

impl utoipa::Modify for WriteContract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{Header, RefOr, Required, ResponseBuilder};
        let header_param = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String),
                ))
                .build()
        };
        let etag = || {
            let mut h = Header::default();
            h.description = Some("The resource's stream version, quoted (`\"3\"`): what `If-Match` names".into());
            h
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            // A path naming one resource (it ends in a parameter or an action on one).
            let single = path.contains('{') && !path.ends_with("/revisions") && !path.contains("/ledger/streams/");
            let writes = [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in writes.into_iter().flatten() {
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                parameters.push(header_param(
                    "If-Match",
                    "Write only if the resource is at this version (an ETag, or `*`); otherwise 412 and nothing is recorded",
                ));
                parameters.push(header_param(
                    "Idempotency-Key",
                    "1–255 visible ASCII characters, per organization for 24 h: the same key and request replay the first answer \
                     (`Idempotent-Replayed: true`) and record nothing",
                ));
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    (
                        "412",
                        "`If-Match` names another version; nothing was recorded (in the surface's error envelope)",
                    ),
                    (
                        "422",
                        "Invalid body, or `Idempotency-Key` already used with a different request (in the surface's error envelope)",
                    ),
                    (
                        "409",
                        "Conflict, or a request with this `Idempotency-Key` is still in progress (in the surface's error envelope)",
                    ),
                ] {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
                }
            }
            if !single {
                continue;
            }
            let all = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in all.into_iter().flatten() {
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                        response.headers.entry("ETag".into()).or_insert_with(etag);
                    }
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("X-API-Key"),
            )),
        );
    }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (surface, _) in super::SURFACES {
        doc.merge(surface.openapi());
    }
    utoipa::Modify::modify(&WriteContract, &mut doc);
    doc
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus_metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
}

/// Liveness: the process answers. It touches nothing else, so a slow store or an absent
/// NATS never gets a live process restarted; `/readyz` says whether it can do its work.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "`{\"status\":\"ok\",\"store\":\"sqlite|postgres\",\"position\":N}` (the log position this process has seen)")))]
async fn healthz(State(state): State<AppState>) -> Response {
    Json(json!({
        "status": "ok",
        "store": state.ledger.store.backend(),
        "position": state.ledger.models.position(),
    }))
    .into_response()
}

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the store answers; with NATS, the client is connected and the relay is less
/// than `--ready-max-relay-lag-seconds` behind; and shutdown has not begun.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "`{\"status\":\"ready\",\"store\":{\"status\":\"ok\",…},\"nats\":{\"status\":\"ok|not_configured\"},\"relay_lag_seconds\":{\"status\":\"ok|not_configured\",\"value\":s,\"max\":s}}`"),
              (status = 503, description = "problem+json naming the failing parts in `detail` and `failing`, with every part's status in `checks`")))]
async fn readyz(State(state): State<AppState>) -> Response {
    let mut failing: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let store_ok = match tokio::time::timeout(CHECK_TIMEOUT, state.ledger.store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the store is unreachable");
            false
        }
        Err(_) => {
            tracing::warn!("readiness: the store did not answer in time");
            false
        }
    };
    let backend = state.ledger.store.backend();
    let store = if store_ok {
        json!({"status": "ok", "backend": backend})
    } else {
        failing.push("store".into());
        reasons.push("the store is unreachable".into());
        json!({"status": "unreachable", "backend": backend})
    };
    let (nats, relay_lag) = match &state.bus {
        // Without NATS there is no relay: nothing to be behind.
        None => (json!({"status": "not_configured"}), json!({"status": "not_configured"})),
        Some(bus) => {
            let nats = if bus.connected() {
                json!({"status": "ok"})
            } else {
                failing.push("nats".into());
                reasons.push("nats is not connected".into());
                json!({"status": "disconnected"})
            };
            let max = state.settings.ready_max_relay_lag_seconds;
            let lag = match store_ok {
                true => Some(tokio::time::timeout(CHECK_TIMEOUT, relay::lag(state.ledger.store.as_ref())).await),
                // The store's own check names the cause.
                false => None,
            };
            let relay_lag = match lag {
                None => json!({"status": "unknown", "max": max}),
                Some(Ok(Ok(lag))) if lag.seconds <= max => json!({"status": "ok", "value": lag.seconds, "max": max}),
                Some(Ok(Ok(lag))) => {
                    failing.push("relay_lag_seconds".into());
                    reasons.push(format!("relay_lag_seconds {} is above {max}", lag.seconds));
                    json!({"status": "behind", "value": lag.seconds, "max": max})
                }
                Some(_) => {
                    failing.push("relay_lag_seconds".into());
                    reasons.push("relay_lag_seconds could not be measured".into());
                    json!({"status": "unknown", "max": max})
                }
            };
            (nats, relay_lag)
        }
    };
    if state.shutdown.has_begun() {
        failing.push("shutdown".into());
        reasons.push("the server is shutting down".into());
    }
    let checks = json!({"store": store, "nats": nats, "relay_lag_seconds": relay_lag});
    if failing.is_empty() {
        return Json(
            json!({"status": "ready", "store": checks["store"], "nats": checks["nats"], "relay_lag_seconds": checks["relay_lag_seconds"]}),
        )
        .into_response();
    }
    let body = json!({
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": format!("not ready: {}", reasons.join("; ")),
        "failing": failing,
        "checks": checks,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Prometheus text exposition of the process's metrics.
async fn prometheus_metrics() -> Response {
    let body = crate::telemetry::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
