//! Liveness (`/healthz`), readiness (`/readyz`), metrics, the OpenAPI document and the docs
//! UI (served from the binary, no CDN).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::bus::relay;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(info(
    title = "fleetledger",
    description = "Audited, event-sourced control plane for fleets of AI agents, sandboxes and device images."
))]
struct ApiDoc;

#[derive(OpenApi)]
#[openapi(paths(healthz, readyz), tags((name = "system", description = "Health and metrics")))]
pub struct SystemApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (surface, _) in super::SURFACES {
        doc.merge(surface.openapi());
    }
    utoipa::Modify::modify(&super::contract::SharedContract, &mut doc);
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
    responses((status = 200, body = wire::Health, description = "Alive, with the log position this process has seen")))]
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
    responses((status = 200, body = wire::Ready, description = "Ready: every part is `ok` or `not_configured`"),
              (status = 503, content_type = "application/problem+json", body = wire::NotReady, description = "The failing parts in `detail` and `failing`, with every part's status in `checks`")))]
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

/// The shapes of the system answers, for `/openapi.json`.
#[allow(dead_code)]
pub(crate) mod wire {
    use serde_json::{Map, Value};
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct Health {
        /// `ok`
        pub status: String,
        /// `sqlite` or `postgres`
        pub store: String,
        pub position: i64,
    }

    #[derive(ToSchema)]
    pub struct Ready {
        /// `ready`
        pub status: String,
        /// `{status, backend}`
        pub store: Map<String, Value>,
        /// `{status}`: `ok` or `not_configured`
        pub nats: Map<String, Value>,
        /// `{status, value?, max?}`
        pub relay_lag_seconds: Map<String, Value>,
    }

    /// A problem naming what is not ready.
    #[derive(ToSchema)]
    pub struct NotReady {
        #[schema(rename = "type")]
        pub kind: String,
        pub title: String,
        pub status: u16,
        pub detail: String,
        /// `store`, `nats`, `relay_lag_seconds`, `shutdown`
        pub failing: Vec<String>,
        pub checks: Map<String, Value>,
    }
}
