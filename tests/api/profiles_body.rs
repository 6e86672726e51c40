//! Fleeti's request-body errors, in its order of checks.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::*;

both_backends!(body_errors_use_fleetis_messages, bodies_over_one_mebibyte_are_refused);

async fn body_errors_use_fleetis_messages(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let path = format!("/api/v1/profiles/{id}");
    let cases: &[(&str, &str)] = &[
        ("", "Request body is required"),
        ("[1]", "Request body must be a JSON object"),
        ("\"x\"", "Request body must be a JSON object"),
        ("{", "Request body must be a JSON object"),
        ("   ", "Request body must be a JSON object"),
        ("{}", "Request body must include at least one field"),
        ("null", "Request body must include at least one field"),
        (r#"{"unknown":1}"#, "Request body contains invalid fields or values"),
        (r#"{"config":"x"}"#, "Request body contains invalid fields or values"),
        (r#"{"config":{},"packages":[1]}"#, "Request body contains invalid fields or values"),
        (
            r#"{"config":{},"kernel":{"extra":1}}"#,
            "Request body contains invalid fields or values",
        ),
        (r#"{"config":{},"raw_nix":5}"#, "Request body contains invalid fields or values"),
        (r#"{"config":{"n":1e400}}"#, "Request body contains invalid fields or values"),
        (r#"{"config":{}} {"config":{}}"#, "Request body must contain a single JSON object"),
        (r#"{"config":{}} trailing"#, "Request body must contain a single JSON object"),
        (r#"{"raw_nix":"x"}"#, "Config is required"),
        (r#"{"config":null}"#, "Config must be a JSON object"),
    ];
    for (body, message) in cases {
        let a = Answer::of(app.admin(Method::PUT, &path).body(body.to_string())).await;
        assert_eq!(a.text, format!("{{\"error\":\"{message}\"}}\n"), "body {body:?}");
        assert_eq!(a.status, 400);
    }
    // Go matches field names case-insensitively; PUT still wants the exact `config` key.
    let a = Answer::of(app.admin(Method::PUT, &path).body(r#"{"Config":{}}"#)).await;
    a.assert_error(400, "Config is required");
    let ok = Answer::of(app.admin(Method::PATCH, &path).body(r#"{"RAW_NIX":"x"}"#)).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    // Nothing bad was recorded: the profile is at version 2 (create + the PATCH).
    assert_eq!(Answer::of(app.admin(Method::GET, &path)).await.header("etag"), Some("\"2\""));
}

async fn bodies_over_one_mebibyte_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let id = app.create_profile(json!({"name": "P"})).await;
    let path = format!("/api/v1/profiles/{id}");
    let filler = "x".repeat(1024 * 1024);
    let body = format!(r#"{{"config":{{"f":"{filler}"}}}}"#);
    Answer::of(app.admin(Method::PUT, &path).body(body))
        .await
        .assert_error(400, "Request body is too large");
    // Exactly at the limit is read.
    let at_limit = format!(r#"{{"config":{{"f":"{}"}}}}"#, "x".repeat(1024 * 1024 - 19));
    assert_eq!(at_limit.len(), 1024 * 1024);
    assert_eq!(Answer::of(app.admin(Method::PUT, &path).body(at_limit)).await.status, 200);
    let huge = "y".repeat(8 * 1024 * 1024);
    Answer::of(app.admin(Method::PUT, &path).body(huge))
        .await
        .assert_error(400, "Request body is too large");
}
