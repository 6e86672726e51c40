//! The request the current task is answering: its id, which every line this task logs
//! while answering carries (`telemetry::LogLine`; side effects run in workers, whose lines
//! name the event they act on), the address of the peer that sent it, and whether a key it
//! presented failed to authenticate, which the login throttle counts once it is answered
//! (`api::login_throttle`). The front (`api::front`) answers every request inside
//! [`scope`].
//!
//! A task-local, not a tracing span or a request extension: a span's fields are formatted
//! when it opens and an extension is a map insert, each on every request whether anything
//! is logged or fails or not, and on a cached read either cost more than the handler.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;

use axum::http::HeaderValue;
use tokio::task::futures::TaskLocalFuture;

struct Answering {
    request_id: RequestId,
    /// The TCP peer's address (what the login throttle counts by), when there is one.
    peer: Option<SocketAddr>,
    login_failed: Cell<bool>,
}

/// The longest request id a caller may send and have kept.
pub const REQUEST_ID_MAX: usize = 128;

/// A request's id: the caller's `X-Request-Id` when usable, else a fresh UUID. Kept inline
/// (a header value's bytes are shared, and the first copy of an id made for the request
/// allocated).
#[derive(Clone, Copy)]
pub struct RequestId(arrayvec::ArrayString<REQUEST_ID_MAX>);

impl RequestId {
    /// The id a caller sent, if it is usable: 1 to 128 letters, digits and `-_.:/+=@`
    /// (UUIDs, ULIDs, trace ids, base64). Anything else (empty, huge, not text, or able to
    /// pass for log syntax) is not kept, since the id is logged and recorded in the
    /// permanent log.
    pub fn sent(id: &[u8]) -> Option<RequestId> {
        let usable = (1..=REQUEST_ID_MAX).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b));
        let text = std::str::from_utf8(id).ok().filter(|_| usable)?;
        arrayvec::ArrayString::from(text).ok().map(RequestId)
    }

    /// A fresh id: a random UUID.
    pub fn fresh() -> RequestId {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        RequestId(arrayvec::ArrayString::from(id).expect("a UUID fits"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).expect("a request id is a header value")
    }
}

tokio::task_local! {
    static ANSWERING: Answering;
}

/// `answer`, run as the answer to the request with id `request_id`. A plain wrapper, not
/// an `async fn`: every request's future holds it, and an `async fn` around a future
/// holds room for that future twice.
pub fn scope<F: Future>(request_id: RequestId, peer: Option<SocketAddr>, answer: F) -> TaskLocalFuture<impl Sized + 'static, F> {
    let answering = Answering {
        request_id,
        peer,
        login_failed: Cell::new(false),
    };
    ANSWERING.scope(answering, answer)
}

/// The address of the peer that sent the request being answered, when it came over TCP.
pub fn peer() -> Option<SocketAddr> {
    ANSWERING.try_with(|a| a.peer).ok().flatten()
}

/// The id of the request being answered, if the current task is answering one.
pub fn request_id() -> Option<RequestId> {
    ANSWERING.try_with(|a| a.request_id).ok()
}

/// The id of the request being answered as text, if it is answering one.
pub fn request_id_text() -> Option<String> {
    request_id().map(|id| id.as_str().to_string())
}

/// Notes that a key presented with the request being answered did not authenticate.
pub fn note_failed_login() {
    let _ = ANSWERING.try_with(|a| a.login_failed.set(true));
}

/// Whether a key presented with the request being answered failed to authenticate.
pub fn login_failed() -> bool {
    ANSWERING.try_with(|a| a.login_failed.get()).unwrap_or(false)
}
