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
    modifiers(&BearerAuth)
)]
struct ApiDoc;

#[derive(OpenApi)]
#[openapi(paths(healthz), tags((name = "system", description = "Health and metrics")))]
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
