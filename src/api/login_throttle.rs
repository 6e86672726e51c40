//! Failed-login throttling for every surface: a token bucket per client address that only
//! failed authentications drain (refill `FLEETLEDGER_LOGIN_FAILURES_PER_MINUTE`, burst
//! `FLEETLEDGER_LOGIN_FAILURE_BURST`). Once an address has used its burst, every request
//! from it that presents a key is answered 429 with `Retry-After` in its surface's
//! envelope until its next token, a valid key included: otherwise a guesser could go on
//! guessing and only its misses would be slowed, and a hit would still be told apart.
//!
//! The address is the TCP peer's; `X-Forwarded-For` is not trusted, as
//! any client can write it. An IPv6 client counts per /64, the block one host usually
//! holds. Behind a proxy every client shares the proxy's address, so throttling there
//! belongs in the proxy.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::Quota;

use super::rate_limit::too_many;

pub struct LoginThrottle {
    failures: super::rate_limit::Buckets<IpAddr>,
    /// Addresses whose bucket is empty, until their next token. governor cannot tell
    /// whether a bucket is empty without taking a token, and a request that presents a
    /// valid key must not take one.
    throttled: crate::FastMap<IpAddr, Instant>,
}

impl LoginThrottle {
    pub fn new(per_minute: u32, burst: u32) -> Arc<Self> {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Arc::new(LoginThrottle {
            failures: super::rate_limit::buckets(Quota::per_minute(per_minute).allow_burst(burst)),
            throttled: Default::default(),
        })
    }

    /// The address a client is counted by: its own, or its /64 for IPv6.
    pub fn client(addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(prefix))
                }
            },
            v4 => v4,
        }
    }

    /// How long `client` must still wait, when it is throttled.
    pub fn throttled(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let until = *self.throttled.get(&client)?;
        if until > now {
            return Some(until - now);
        }
        self.throttled.remove_if(&client, |_, until| *until <= now);
        None
    }

    /// Counts a failed authentication from `client`; past the burst it is throttled until
    /// its bucket has a token again.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        if let Err(not_until) = self.failures.check_key(&client) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.throttled.insert(client, now + wait);
        }
    }

    /// Forgets addresses whose buckets are full again and throttles that have ended.
    pub async fn prune(self: Arc<Self>, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    self.failures.retain_recent();
                    self.failures.shrink_to_fit();
                    let now = Instant::now();
                    self.throttled.retain(|_, until| *until > now);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A request the throttle let through: the address its failed authentication counts
/// against.
pub struct Admitted {
    client: IpAddr,
}

impl LoginThrottle {
    /// Admits a request unless it presents a key from a throttled address (`Err`: how long
    /// that address must still wait; `refused` answers it). A failed authentication while
    /// answering it is counted by `settle`.
    pub fn admit(&self, request: &Request, peer: SocketAddr) -> Result<Admitted, Duration> {
        let client = LoginThrottle::client(peer.ip());
        let headers = request.headers();
        let presents_key = headers.contains_key(axum::http::header::AUTHORIZATION) || headers.contains_key(crate::auth::X_API_KEY);
        // The clock is read only for an address with a throttle (most have none).
        if presents_key && self.throttled.contains_key(&client) {
            if let Some(wait) = self.throttled(client, Instant::now()) {
                return Err(wait);
            }
        }
        Ok(Admitted { client })
    }

    /// 429 in the request's surface envelope for a throttled address.
    pub fn refused(request: &Request, request_id: Option<&str>, wait: Duration) -> Response {
        let surface = super::Surface::of(request.uri().path());
        too_many(surface, request_id, "Too many failed authentications from this address", wait)
    }

    /// Counts the admitted request's authentication if it failed (as
    /// `answering::login_failed` says).
    pub fn settle(&self, admitted: Admitted, login_failed: bool) {
        if login_failed {
            self.failed(admitted.client, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_once_its_failures_pass_the_burst() {
        let throttle = LoginThrottle::new(1, 3);
        let (guesser, other): (IpAddr, IpAddr) = ("192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap());
        let now = Instant::now();
        for _ in 0..3 {
            throttle.failed(guesser, now);
            assert_eq!(throttle.throttled(guesser, now), None);
        }
        throttle.failed(guesser, now);
        let wait = throttle.throttled(guesser, now).expect("throttled after the burst");
        assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(throttle.throttled(other, now), None, "another address is not");
        assert_eq!(throttle.throttled(guesser, now + wait), None, "it ends with the wait");
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a = LoginThrottle::client("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = LoginThrottle::client("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = LoginThrottle::client("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(
            LoginThrottle::client("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
