//! Health, the OpenAPI document and the docs UI (served from the binary, no CDN).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "fleetledger", description = "Audited, event-sourced control plane for fleets of AI agents, sandboxes and device images."),
    paths(healthz),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

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
    doc.merge(super::profiles::ProfilesApi::openapi());
    doc.merge(super::ledger::LedgerApi::openapi());
    doc.merge(super::audit::AuditApi::openapi());
    doc.merge(super::runtimes::RuntimesApi::openapi());
    doc.merge(super::mission_control::MissionControlApi::openapi());
    doc.merge(super::instances::InstancesApi::openapi());
    doc.merge(super::container_agents::ContainerAgentsApi::openapi());
    doc
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus_metrics))
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
}

/// Whether the store answers.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "`{\"status\":\"ok\",\"store\":\"sqlite|postgres\",\"position\":N}`"),
              (status = 503, description = "The store is unreachable (problem+json)")))]
async fn healthz(State(state): State<AppState>) -> Response {
    match state.ledger.store.ping().await {
        Ok(()) => Json(json!({
            "status": "ok",
            "store": state.ledger.store.backend(),
            "position": state.ledger.models.position(),
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "health check failed");
            let body = json!({"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "the store is unreachable"});
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/problem+json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// Prometheus text exposition of the process's metrics.
async fn prometheus_metrics() -> Response {
    let body = crate::telemetry::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
