//! The web console under `/ui/`: server-rendered pages over the audit and ledger reads,
//! for people holding an API key. Templates (minijinja) and assets (a vendored htmx, a
//! small script and a stylesheet) are compiled into the binary; nothing is fetched from
//! elsewhere, and every answer carries a strict Content-Security-Policy (scripts, styles
//! and connections from this origin only, nothing inline).
//!
//! The console has no rules of its own. What a page shows is what `crate::audit` and the
//! ledger's `Filter::for_reader` let the signed-in key read, states and events leave
//! through the registry's redacted renderings and `views::public`, and a restore is the
//! audit restore, which runs the resource's own surface write. Its only state is its
//! sessions (`session`): a server-issued token in an HttpOnly, SameSite=Strict cookie,
//! and every POST also needs the session's CSRF token.

mod pages;
mod session;
mod view;

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use minijinja::Environment;
use serde::Serialize;

pub use session::Signed;

use crate::audit::AuditError;
use crate::state::AppState;

/// What a console page may load and where it may send things: only this origin, no inline
/// script or style, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(session::sign_in_page).post(session::sign_in))
        .route("/ui/sign-out", axum::routing::post(session::sign_out))
        .route("/ui/resources", get(pages::resources))
        .route("/ui/resources/{stream_type}/{id}", get(pages::timeline))
        .route("/ui/resources/{stream_type}/{id}/diff", get(pages::diff))
        .route(
            "/ui/resources/{stream_type}/{id}/restore",
            get(pages::confirm_restore).post(pages::restore),
        )
        .route("/ui/events", get(pages::events))
        .route("/ui/events/stream", get(pages::event_stream))
        .route("/ui/verify", get(pages::verify))
        .route("/ui/assets/{name}", get(asset))
        .layer(middleware::from_fn(guard))
}

/// Refuses a POST another site sent (its `Origin` names another host, or the browser says
/// it is cross-site) before it reaches a handler, and gives every answer the console's
/// security headers.
async fn guard(request: Request, next: Next) -> Response {
    if request.method() == Method::POST && cross_site(request.headers()) {
        return error_page(StatusCode::FORBIDDEN, "This form was sent from another site.");
    }
    secure(next.run(request).await)
}

/// Whether a request comes from another site. Browsers that send `Sec-Fetch-Site` say so
/// themselves (a sibling subdomain, `same-site`, is another site too: a SameSite cookie
/// goes along with its requests); otherwise its `Origin` must name the host it was sent to
/// (so a reverse proxy must pass the `Host` header on).
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text("host")) {
        // A privacy-sensitive context sends `Origin: null`: not this site either.
        (Some(origin), Some(host)) => url::Url::parse(origin).ok().is_none_or(|o| {
            let authority = match o.port() {
                Some(port) => format!("{}:{port}", o.host_str().unwrap_or_default()),
                None => o.host_str().unwrap_or_default().to_string(),
            };
            !authority.eq_ignore_ascii_case(host)
        }),
        _ => false,
    }
}

/// The console's security headers on an answer (a page that set its own cache policy, an
/// asset, keeps it).
fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The console's templates, parsed once.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("macros.html", include_str!("templates/macros.html")),
        ("sign_in.html", include_str!("templates/sign_in.html")),
        ("error.html", include_str!("templates/error.html")),
        ("resources.html", include_str!("templates/resources.html")),
        ("timeline.html", include_str!("templates/timeline.html")),
        ("diff.html", include_str!("templates/diff.html")),
        ("restore.html", include_str!("templates/restore.html")),
        ("events.html", include_str!("templates/events.html")),
        ("verify.html", include_str!("templates/verify.html")),
    ] {
        if let Err(error) = env.add_template(name, source) {
            // A unit test renders every template, so this is a build that was never tested.
            tracing::error!(%error, template = name, "a console template does not parse");
        }
    }
    env
});

/// What every page's layout shows besides the page itself.
#[derive(Serialize)]
struct Frame<'a, T: Serialize> {
    /// The assets' version, so a new build's assets are fetched anew.
    v: &'static str,
    /// The signed-in key, when there is one.
    user: Option<view::User>,
    csrf: &'a str,
    /// Which part of the console the page belongs to (`resources`, `events`, `verify`).
    nav: &'a str,
    #[serde(flatten)]
    page: T,
}

/// A page for a signed-in user.
fn page<T: Serialize>(template: &str, signed: &Signed, nav: &str, page: T) -> Response {
    render(
        template,
        &Frame {
            v: &ASSET_VERSION,
            user: Some(view::User::of(signed)),
            csrf: &signed.csrf,
            nav,
            page,
        },
    )
}

fn render(template: &str, context: &impl Serialize) -> Response {
    match TEMPLATES.get_template(template).and_then(|t| t.render(context)) {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, template, "a console page could not be rendered");
            secure((StatusCode::INTERNAL_SERVER_ERROR, "The page could not be shown.").into_response())
        }
    }
}

#[derive(Serialize)]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// A page saying why a request was refused; also how the console answers when the
/// server's own limits (the request timeout, rate limits) refuse a request.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let frame = Frame {
        v: &ASSET_VERSION,
        user: None,
        csrf: "",
        nav: "",
        page: ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        },
    };
    let mut response = render("error.html", &frame);
    *response.status_mut() = status;
    secure(response)
}

/// Why a console request was refused: a status and a sentence for the page.
#[derive(Debug)]
pub struct ConsoleError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

impl ConsoleError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ConsoleError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "console request failed");
        ConsoleError::new(StatusCode::INTERNAL_SERVER_ERROR, "The log could not be read.")
    }
}

impl From<AuditError> for ConsoleError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::BadRequest(m) => ConsoleError::new(StatusCode::BAD_REQUEST, m),
            AuditError::NotFound(m) => ConsoleError::new(StatusCode::NOT_FOUND, m),
            AuditError::Forbidden(m) => ConsoleError::new(StatusCode::FORBIDDEN, m),
            AuditError::Conflict(m) => ConsoleError::new(StatusCode::CONFLICT, m),
            AuditError::TooMany(wait) => ConsoleError {
                retry_after: Some(wait),
                ..ConsoleError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Verification of the whole log is rate-limited; try again in {} s.",
                        wait.as_secs().max(1)
                    ),
                )
            },
            AuditError::Refused(refusal) => ConsoleError::new(refusal.status, refusal.detail),
            AuditError::Store(error) => ConsoleError::internal(error),
        }
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(error: crate::store::StoreError) -> Self {
        ConsoleError::internal(error)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let mut response = error_page(self.status, &self.message);
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// A file the pages load.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/htmx.min.js"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/console.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("assets/icon.svg"),
    },
    Asset {
        name: "htmx.LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("assets/htmx.LICENSE"),
    },
];

/// A digest of every asset: pages link `…?v=<this>`, so assets may be cached for good.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for asset in ASSETS {
        digest.update(asset.bytes);
    }
    hex::encode(digest.finalize())[..12].to_string()
});

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => error_page(StatusCode::NOT_FOUND, "There is no such file."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for name in [
            "layout.html",
            "macros.html",
            "sign_in.html",
            "error.html",
            "resources.html",
            "timeline.html",
            "diff.html",
            "restore.html",
            "events.html",
            "verify.html",
        ] {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name} does not parse");
        }
    }

    #[test]
    fn error_pages_escape_what_they_say_and_carry_the_policy() {
        let response = error_page(StatusCode::NOT_FOUND, "no resource <script>alert(1)</script>");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers().get(header::CONTENT_SECURITY_POLICY).unwrap(),
            CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn posts_from_other_sites_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!cross_site(&headers(&[
            ("host", "ledger.example"),
            ("origin", "https://ledger.example")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(cross_site(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin")
        ])));
        // Behind a proxy that rewrites Host, the browser's own word counts.
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://ledger.example"),
            ("sec-fetch-site", "same-origin")
        ])));
    }
}
