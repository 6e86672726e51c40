//! The HTTP contract every operation shares, written into `/openapi.json` once rather than
//! repeated per operation: the security schemes, the headers of every write (`If-Match`,
//! `Idempotency-Key`) and of its answers (`ETag`, `Idempotent-Replayed`, `Retry-After`),
//! and the error statuses the shared machinery can answer (authentication, rate limits,
//! body limits and media types, preconditions, idempotency, the request timeout), each
//! with the error envelope of the surface the path belongs to.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Header, ObjectBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Type};

use super::Surface;

/// What the machinery every surface shares may answer, and why.
const SHARED: [(u16, &str); 11] = [
    (400, "A query or `Idempotency-Key` that cannot be read, or an invalid body"),
    (401, "Missing or invalid API key"),
    (403, "The key's role or scopes do not allow this"),
    (404, "No such resource for the caller"),
    (
        409,
        "A conflict with the resource's state, or a request with this `Idempotency-Key` still in progress",
    ),
    (412, "`If-Match` names another version; nothing was recorded"),
    (413, "The body is over 1 MiB"),
    (
        415,
        "The body is not JSON: `Content-Type` must be `application/json` or a `+json` type (or absent)",
    ),
    (
        422,
        "An invalid body, or an `Idempotency-Key` already used with a different request",
    ),
    (
        429,
        "Rate limited, or too many failed authentications from this address; `Retry-After` says when to retry",
    ),
    (
        503,
        "The request took longer than the request timeout, or its `Idempotency-Key` could not be checked",
    ),
];

pub struct SharedContract;

impl utoipa::Modify for SharedContract {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        for (path, item) in openapi.paths.paths.iter_mut() {
            let surface = Surface::of(path);
            // A path naming one resource (it ends in a parameter or an action on one).
            let single = path.contains('{') && !path.ends_with("/revisions") && !path.contains("/ledger/streams/");
            let writes = [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for operation in writes.into_iter().flatten() {
                document_write(operation);
            }
            let all = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for (method, operation) in ["get", "post", "put", "patch", "delete"].into_iter().zip(all) {
                if let Some(operation) = operation {
                    document_errors(operation, surface, path, method != "get");
                    if single {
                        tag_answers(operation);
                    }
                }
            }
        }
    }
}

fn header_param(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

fn header(description: &str) -> Header {
    let mut h = Header::default();
    h.description = Some(description.into());
    h
}

/// `If-Match` and `Idempotency-Key`, and the replay marker on the answers.
fn document_write(operation: &mut Operation) {
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
    for (status, response) in operation.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response
                .headers
                .entry("Idempotent-Replayed".into())
                .or_insert_with(|| header("`true` when this is the kept answer to an earlier request with the same `Idempotency-Key`"));
        }
    }
}

/// The `ETag` of every answer about one resource.
fn tag_answers(operation: &mut Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response
                .headers
                .entry("ETag".into())
                .or_insert_with(|| header("The resource's stream version, quoted (`\"3\"`): what `If-Match` names"));
        }
    }
}

/// The statuses the shared machinery can answer for this operation, and the surface's
/// envelope (and its media type) on every error answer.
fn document_errors(operation: &mut Operation, surface: Surface, path: &str, write: bool) {
    let contract = surface.contract();
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    if secured {
        // Fleeti reads `Authorization: Bearer` only; every other surface also `X-API-Key`.
        let mut schemes = vec![SecurityRequirement::new("bearer", Vec::<String>::new())];
        if contract.api_key_header {
            schemes.push(SecurityRequirement::new("api_key", Vec::<String>::new()));
        }
        operation.security = Some(schemes);
    }
    let has_body = operation.request_body.is_some();
    let has_query = operation.parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query);
    let applies = |status: u16| match status {
        401 => secured,
        // The login throttle refuses any request that presents a key from a throttled
        // address, on every path.
        429 => true,
        404 => path.contains('{'),
        400 => has_query || write,
        403 | 409 | 412 | 422 => write,
        413 => has_body && contract.too_large == 413,
        415 => has_body,
        503 => true,
        _ => false,
    };
    let responses = &mut operation.responses.responses;
    for (status, description) in SHARED {
        if applies(status) {
            responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
        }
    }
    let envelope = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(contract.error_schema)))
        .build();
    for (status, response) in responses.iter_mut() {
        let (RefOr::T(response), true) = (response, status.starts_with('4') || status.starts_with('5')) else {
            continue;
        };
        if response.content.is_empty() {
            response.content.insert(contract.error_media_type.into(), envelope.clone());
        }
        if status == "429" {
            response
                .headers
                .entry("Retry-After".into())
                .or_insert_with(|| header("Seconds to wait before retrying"));
        }
    }
}
