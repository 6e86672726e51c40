//! Signing in to the console and what a session is.
//!
//! Signing in takes an API key from a form and authenticates it exactly as the API does
//! (`Authenticator::authenticate_request`, so failures count in the login throttle). The
//! key then goes no further: the server opens a session, keeps only the sha256 of its
//! random token (`console_sessions`), and gives the browser the token in an HttpOnly,
//! Secure, SameSite=Strict cookie. Each request finds the session by that hash and acts as
//! the session's key, checked afresh (a revoked or expired key signs its sessions out).
//! Sessions are stored rather than held in memory so that any replica behind a load
//! balancer, or a restarted server, knows them, and sign-out ends them everywhere.
//!
//! CSRF: besides SameSite=Strict, every POST carries a token derived from the session
//! token (so nothing more is stored, and a copy of the table cannot forge it); the sign-in
//! form, made before there is a session, uses a double-submitted cookie.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use chrono::Utc;
use fleetledger_projections::key::Key;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{render, ConsoleError, Frame, ASSET_VERSION};
use crate::api::login_throttle::LoginThrottle;
use crate::auth::{hash_token, Principal};
use crate::state::AppState;
use crate::store::ConsoleSession;

/// The session cookie. `__Host-` makes browsers refuse it unless it is Secure, for this
/// host only and for every path, so a neighbouring site cannot plant one.
pub const SESSION_COOKIE: &str = "__Host-fleetledger-session";
/// The sign-in form's double-submitted CSRF cookie.
const SIGN_IN_COOKIE: &str = "__Host-fleetledger-sign-in";

/// The largest form the console reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A signed-in console user: the principal of the session's key, as the API would see it.
pub struct Signed {
    pub principal: Principal,
    /// The key's name, for the header.
    pub key_name: String,
    /// The session's CSRF token, which every form posts back.
    pub csrf: String,
    token_hash: String,
}

impl Signed {
    /// The stored hash of the session's token: what finds the session again.
    pub fn token_hash(&self) -> &str {
        &self.token_hash
    }

    /// Refuses a form that does not carry this session's CSRF token.
    pub fn check_csrf(&self, form: &Fields) -> Result<(), ConsoleError> {
        match form.get("csrf").is_some_and(|sent| same(sent, &self.csrf)) {
            true => Ok(()),
            false => Err(ConsoleError::new(
                StatusCode::FORBIDDEN,
                "This form is not from your session (a missing or wrong CSRF token). Reload the page and try again.",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session_of(state, &parts.headers).await? {
            Some(signed) => {
                // Console requests count against the key's rate like its API requests do,
                // in a bucket of their own (the console never sees the token).
                if let Err(wait) = state.limits.check(&format!("console:{}", signed.principal.key_id)) {
                    let error = ConsoleError {
                        retry_after: Some(wait),
                        ..ConsoleError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests; slow down.")
                    };
                    return Err(error.into_response());
                }
                Ok(signed)
            }
            None => Err(signed_out(parts)),
        }
    }
}

/// The session a request's cookie names, if it is open and its key still signs in.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Option<Signed>, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let token_hash = hash_token(token);
    let now = Utc::now();
    let session = match state.ledger.store.console_session(&token_hash, now).await {
        Ok(Some(session)) => session,
        Ok(None) => return Ok(None),
        Err(error) => return Err(ConsoleError::internal(error).into_response()),
    };
    let Ok(principal) = state.auth.principal_of_key(&session.key_id, &session.org_id, now).await else {
        return Ok(None);
    };
    let key_name = state
        .ledger
        .models
        .cache::<Key>()
        .get(&session.key_id)
        .map(|c| c.model.name.clone())
        .unwrap_or_default();
    Ok(Some(Signed {
        principal,
        key_name,
        csrf: csrf_of(token),
        token_hash,
    }))
}

/// Where a request without a session goes: the sign-in page, then back (an event stream
/// is told 401 instead, so the browser stops reconnecting).
fn signed_out(parts: &Parts) -> Response {
    let wants_stream = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if wants_stream {
        return (StatusCode::UNAUTHORIZED, "signed out").into_response();
    }
    let back = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/resources");
    let to = match parts.method == axum::http::Method::GET {
        true => format!("/ui/?next={}", super::view::query_value(back)),
        false => "/ui/".to_string(),
    };
    let mut response = Redirect::to(&to).into_response();
    if cookie(&parts.headers, SESSION_COOKIE).is_some() {
        // A cookie of a session that ended: forget it.
        response.headers_mut().append(header::SET_COOKIE, expired(SESSION_COOKIE));
    }
    response
}

/// The value of a cookie the request carries.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn set_cookie(name: &str, value: &str, max_age_seconds: u64) -> HeaderValue {
    let cookie = format!("{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; Secure; SameSite=Strict");
    HeaderValue::try_from(cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn expired(name: &str) -> HeaderValue {
    set_cookie(name, "", 0)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The session's CSRF token: a one-way function of the session token, distinct from the
/// stored hash, so it needs no storage and the table does not reveal it.
fn csrf_of(token: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"fleetledger console csrf\0");
    digest.update(token.as_bytes());
    hex::encode(digest.finalize())
}

/// Equality that takes as long whatever the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A form's fields (`application/x-www-form-urlencoded`), read up to a small limit.
pub struct Fields(HashMap<String, String>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    async fn read(headers: &HeaderMap, body: axum::body::Body) -> Result<Fields, ConsoleError> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if !form {
            return Err(ConsoleError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Expected a form."));
        }
        let bytes = crate::api::read_body(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| ConsoleError::new(StatusCode::BAD_REQUEST, "The form could not be read."))?
            .ok_or_else(|| ConsoleError::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?;
        Ok(Fields(url::form_urlencoded::parse(&bytes).into_owned().collect()))
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ConsoleError> {
        let (parts, body) = request.into_parts();
        Fields::read(&parts.headers, body).await
    }
}

/// Where to go after signing in: a console page, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') && !n.starts_with("/ui/sign-out") => n.to_string(),
        _ => "/ui/resources".to_string(),
    }
}

#[derive(Serialize)]
struct SignInForm<'a> {
    next: &'a str,
    message: Option<&'a str>,
}

/// The sign-in form, with a fresh double-submit token in a cookie and the form.
fn sign_in_form(status: StatusCode, next: &str, message: Option<&str>) -> Response {
    let token = random_token();
    let frame = Frame {
        v: &ASSET_VERSION,
        user: None,
        csrf: &token,
        nav: "",
        page: SignInForm { next, message },
    };
    let mut response = render("sign_in.html", &frame);
    *response.status_mut() = status;
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, &token, 3600));
    response
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /ui/`: the sign-in form, or on to the console for a signed-in browser.
pub async fn sign_in_page(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<NextQuery>) -> Response {
    let next = safe_next(query.next.as_deref());
    match session_of(&state, &headers).await {
        Ok(Some(_)) => Redirect::to(&next).into_response(),
        Ok(None) => sign_in_form(StatusCode::OK, &next, None),
        Err(response) => response,
    }
}

/// `POST /ui/`: signs in with the key in the form's `key` field.
pub async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let form = match Fields::read(&parts.headers, body).await {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    let next = safe_next(form.get("next"));
    let from_our_form = matches!(
        (cookie(&parts.headers, SIGN_IN_COOKIE), form.get("csrf")),
        (Some(cookie), Some(sent)) if same(cookie, sent)
    );
    if !from_our_form {
        let message = "This sign-in form has expired or is not from this site; try again.";
        return sign_in_form(StatusCode::FORBIDDEN, &next, Some(message));
    }
    if let Some(peer) = crate::answering::peer() {
        if let Some(wait) = state.logins.throttled(LoginThrottle::client(peer.ip()), Instant::now()) {
            let message = format!(
                "Too many failed sign-ins from this address; try again in {} s.",
                wait.as_secs().max(1)
            );
            let mut response = sign_in_form(StatusCode::TOO_MANY_REQUESTS, &next, Some(&message));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
            return response;
        }
    }
    let key = form.get("key").map(str::trim).unwrap_or_default();
    if key.is_empty() {
        return sign_in_form(StatusCode::BAD_REQUEST, &next, Some("Enter an API key."));
    }
    let principal = match state.auth.authenticate_request(key).await {
        Ok(principal) => principal,
        Err(_) => return sign_in_form(StatusCode::UNAUTHORIZED, &next, Some("That key does not sign in.")),
    };
    let token = random_token();
    let now = Utc::now();
    let hours = state.settings.console_session_hours;
    let session = ConsoleSession {
        token_hash: hash_token(&token),
        key_id: principal.key_id.to_string(),
        org_id: principal.org_id.to_string(),
        created_at: now,
        expires_at: now + chrono::TimeDelta::hours(i64::from(hours)),
    };
    if let Err(error) = state.ledger.store.open_console_session(&session).await {
        return ConsoleError::internal(error).into_response();
    }
    tracing::info!(key_id = %principal.key_id, "console: signed in");
    let mut response = Redirect::to(&next).into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &token, u64::from(hours) * 3600));
    headers.append(header::SET_COOKIE, expired(SIGN_IN_COOKIE));
    response
}

/// `POST /ui/sign-out`: ends the session for good (the row is deleted, so the cookie's
/// token opens nothing any more) and forgets the cookie.
pub async fn sign_out(State(state): State<AppState>, signed: Signed, form: Fields) -> Response {
    if let Err(error) = signed.check_csrf(&form) {
        return error.into_response();
    }
    if let Err(error) = state.ledger.store.close_console_session(&signed.token_hash).await {
        return ConsoleError::internal(error).into_response();
    }
    let mut response = Redirect::to("/ui/").into_response();
    response.headers_mut().append(header::SET_COOKIE, expired(SESSION_COOKIE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_pages_are_places_to_go_back_to() {
        assert_eq!(safe_next(Some("/ui/resources?type=profile")), "/ui/resources?type=profile");
        for bad in [
            "https://evil.example/ui/",
            "//evil.example",
            "/ui//evil.example",
            "/ui/\\evil",
            "/api/v1/ledger/events",
            "/ui/sign-out",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/resources", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/resources");
    }

    #[test]
    fn csrf_tokens_are_neither_the_session_token_nor_its_stored_hash() {
        let token = random_token();
        let csrf = csrf_of(&token);
        assert_ne!(csrf, token);
        assert_ne!(csrf, hash_token(&token));
        assert_eq!(csrf, csrf_of(&token));
        assert_ne!(csrf, csrf_of(&random_token()));
        assert!(same(&csrf, &csrf_of(&token)));
        assert!(!same(&csrf, &csrf[1..]));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-fleetledger-session=tok; b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "fleetledger-session"), None);
        assert_eq!(cookie(&headers, "b"), Some("2"));
    }
}
