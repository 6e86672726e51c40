//! Per-key rate limiting for every surface: a token bucket per presented key (refill
//! `FLEETLEDGER_RATE_LIMIT_PER_SEC`, burst `FLEETLEDGER_RATE_LIMIT_BURST`). A refused
//! request gets 429 with `Retry-After` in its surface's own error envelope. Requests
//! without a key are not limited here; they are refused by authentication.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use super::Surface;
use crate::auth::presented_token;

/// Token buckets by key, in a map hashed like the rest of the request path's.
pub(super) type Buckets<K> = RateLimiter<K, governor::state::keyed::DashMapStateStore<K, crate::FastHash>, DefaultClock>;

/// Empty buckets for `quota`, one per key as keys come.
pub(super) fn buckets<K: std::hash::Hash + Eq + Clone>(quota: Quota) -> Buckets<K> {
    RateLimiter::dashmap_with_clock_and_hasher(quota, DefaultClock::default(), crate::FastHash::default())
}

pub struct RateLimits {
    limiter: Buckets<u64>,
    /// Buckets are keyed by a seeded (per-process random) hash of the token: cheap on
    /// every request, and no token is kept in memory.
    hasher: crate::FastHash,
}

impl RateLimits {
    pub fn new(per_second: u32, burst: u32) -> Arc<Self> {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Arc::new(RateLimits {
            limiter: buckets(Quota::per_second(per_second).allow_burst(burst)),
            hasher: crate::FastHash::default(),
        })
    }

    /// `Err(wait)` when the bucket named `token` (a presented key, or another name for a
    /// caller, such as a console session's key) has no token left.
    pub fn check(&self, token: &str) -> Result<(), Duration> {
        use std::hash::BuildHasher;
        self.limiter
            .check_key(&self.hasher.hash_one(token))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose buckets are full again, so unused keys cost no memory.
    pub async fn prune(self: Arc<Self>, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    self.limiter.retain_recent();
                    self.limiter.shrink_to_fit();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl RateLimits {
    /// 429 in the request's surface envelope when the bucket of the key it presents is
    /// empty. Requests without a key are refused by authentication, not here.
    pub fn refusal(&self, request: &Request, request_id: Option<&str>) -> Option<Response> {
        let wait = self.check(presented_token(request.headers()).ok()?).err()?;
        Some(too_many(Surface::of(request.uri().path()), request_id, "Rate limit exceeded", wait))
    }
}

/// 429 in `surface`'s envelope, saying `what` and when to retry, with `Retry-After`
/// (whole seconds, at least 1).
pub fn too_many(surface: Surface, request_id: Option<&str>, what: &str, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = surface.error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("{what}; retry in {seconds} s"),
        "rate_limited",
        request_id,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// A token bucket per organization for calls too heavy to serve at the per-key rate
/// (verifying an organization's whole log reads and hashes every event it has).
pub struct HeavyCalls {
    limiter: Buckets<uuid::Uuid>,
}

impl HeavyCalls {
    /// One call per `every` once `burst` calls are used.
    pub fn new(every: Duration, burst: u32) -> Arc<Self> {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(every.max(Duration::from_millis(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Arc::new(HeavyCalls { limiter: buckets(quota) })
    }

    /// `Err(wait)` when `org` has no call left.
    pub fn check(&self, org: uuid::Uuid) -> Result<(), Duration> {
        self.limiter
            .check_key(&org)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets organizations whose buckets are full again.
    pub async fn prune(self: Arc<Self>, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    self.limiter.retain_recent();
                    self.limiter.shrink_to_fit();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_calls_are_counted_per_organization() {
        let heavy = HeavyCalls::new(Duration::from_secs(60), 2);
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        assert!(heavy.check(a).is_ok() && heavy.check(a).is_ok());
        let wait = heavy.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60), "{wait:?}");
        assert!(heavy.check(b).is_ok(), "another organization has its own bucket");
    }
}
