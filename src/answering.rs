//! The request the current task is answering: its id, which every line this task logs
//! while answering carries (`telemetry::LogLine`; side effects run in workers, whose lines
//! name the event they act on), and whether a key it presented failed to
//! authenticate, which the login throttle counts once it is answered
//! (`api::login_throttle`). The front middleware (`api::front`) answers every request
//! inside [`scope`].
//!
//! A task-local, not a tracing span or a request extension: a span's fields are formatted
//! when it opens and an extension is a map insert, each on every request whether anything
//! is logged or fails or not, and on a cached read either cost more than the handler.

use std::cell::Cell;
use std::future::Future;

use axum::http::HeaderValue;
use tokio::task::futures::TaskLocalFuture;

struct Answering {
    request_id: HeaderValue,
    login_failed: Cell<bool>,
}

tokio::task_local! {
    static ANSWERING: Answering;
}

/// `answer`, run as the answer to the request with id `request_id`. A plain wrapper, not
/// an `async fn`: every request's future holds it, and an `async fn` around a future
/// holds room for that future twice.
pub fn scope<F: Future>(request_id: HeaderValue, answer: F) -> TaskLocalFuture<impl Sized + 'static, F> {
    let answering = Answering {
        request_id,
        login_failed: Cell::new(false),
    };
    ANSWERING.scope(answering, answer)
}

/// The id of the request being answered, if the current task is answering one.
pub fn request_id() -> Option<HeaderValue> {
    ANSWERING.try_with(|a| a.request_id.clone()).ok()
}

/// The id of the request being answered as text, if it is answering one whose id is text.
pub fn request_id_text() -> Option<String> {
    request_id().and_then(|id| id.to_str().ok().map(str::to_string))
}

/// Notes that a key presented with the request being answered did not authenticate.
pub fn note_failed_login() {
    let _ = ANSWERING.try_with(|a| a.login_failed.set(true));
}

/// Whether a key presented with the request being answered failed to authenticate.
pub fn login_failed() -> bool {
    ANSWERING.try_with(|a| a.login_failed.get()).unwrap_or(false)
}
