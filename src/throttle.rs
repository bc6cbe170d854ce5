//! Throttling of the password routes (`/api/auth/login`, `/api/auth/register`): a bounded number of
//! attempts per client address and per username in a window (`auth.limit_*`), refused with `429` and
//! `Retry-After` beyond it. Each attempt comes back `period / limit` after it was spent, so a user who
//! mistyped a few times can try again shortly, while guessing at 50 passwords a second gets nowhere.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use actors::config::AuthSettings;

/// Checks between two sweeps of keys whose attempts have all come back.
const SWEEP_EVERY: u64 = 1_024;

/// What an attempt is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Address,
    Username,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::Username => "username",
        }
    }
}

/// An attempt refused: which limit, and when the next attempt will be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// The limits of one node.
pub struct Throttle {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_username: Option<DefaultKeyedRateLimiter<String>>,
    trust_forwarded_for: bool,
    clock: DefaultClock,
    checks: AtomicU64,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_period: u32,
    period: Duration,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let burst = NonZeroU32::new(per_period)?;
    let quota = Quota::with_period(period / burst.get())?.allow_burst(burst);
    Some(RateLimiter::keyed(quota))
}

impl Throttle {
    pub fn new(settings: &AuthSettings) -> Self {
        let period = Duration::from_secs(settings.limit_period_seconds);
        Self {
            by_address: limiter(settings.limit_per_address, period),
            by_username: limiter(settings.limit_per_username, period),
            trust_forwarded_for: settings.trust_forwarded_for,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// The client's address: the connection's peer, or the last `X-Forwarded-For` entry when the node
    /// is told to trust it.
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        if self.trust_forwarded_for
            && let Some(forwarded) = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|last| last.trim().parse().ok())
        {
            return Some(forwarded);
        }
        req.peer_addr().map(|a| a.ip())
    }

    /// Spends one attempt of the client's address and of the username; `Err` when either is used up.
    pub fn attempt(&self, req: &HttpRequest, username: &str) -> Result<(), Refused> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        if let (Some(limiter), Some(address)) = (&self.by_address, self.client_address(req)) {
            self.spend(limiter, &address, Limit::Address)?;
        }
        if let Some(limiter) = &self.by_username {
            // Usernames are case-sensitive, but a limit that a change of case escapes is no limit.
            self.spend(limiter, &username.to_ascii_lowercase(), Limit::Username)?;
        }
        Ok(())
    }

    fn spend<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        limit: Limit,
    ) -> Result<(), Refused> {
        limiter.check_key(key).map_err(|not_until| {
            metrics::counter!("auth_throttled_total", "limit" => limit.as_str()).increment(1);
            Refused {
                limit,
                retry_after: not_until.wait_time_from(self.clock.now()),
            }
        })
    }

    /// Forgets keys whose attempts have all come back, so that the limiters stay small.
    fn sweep(&self) {
        if let Some(l) = &self.by_address {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.by_username {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn settings(per_address: u32, per_username: u32) -> AuthSettings {
        AuthSettings {
            limit_per_address: per_address,
            limit_per_username: per_username,
            limit_period_seconds: 60,
            ..AuthSettings::default()
        }
    }

    fn from(ip: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr(format!("{ip}:40000").parse().unwrap())
            .to_http_request()
    }

    #[test]
    fn a_username_is_refused_after_its_attempts_whatever_the_address() {
        let t = Throttle::new(&settings(0, 3));
        for i in 0..3 {
            assert!(t.attempt(&from(&format!("10.0.0.{i}")), "alice").is_ok());
        }
        let refused = t.attempt(&from("10.0.0.9"), "Alice").unwrap_err();
        assert_eq!(refused.limit, Limit::Username);
        assert!(
            refused.retry_after > Duration::from_secs(15) && refused.retry_after <= Duration::from_secs(20)
        );
        assert!(
            t.attempt(&from("10.0.0.9"), "bob").is_ok(),
            "other users are not affected"
        );
    }

    #[test]
    fn an_address_is_refused_after_its_attempts_whatever_the_username() {
        let t = Throttle::new(&settings(2, 0));
        assert!(t.attempt(&from("10.0.0.1"), "a").is_ok());
        assert!(t.attempt(&from("10.0.0.1"), "b").is_ok());
        assert_eq!(
            t.attempt(&from("10.0.0.1"), "c").unwrap_err().limit,
            Limit::Address
        );
        assert!(t.attempt(&from("10.0.0.2"), "c").is_ok());
    }

    #[test]
    fn forwarded_addresses_count_only_when_trusted() {
        let mut s = settings(1, 0);
        let req = || {
            TestRequest::default()
                .peer_addr("10.0.0.1:40000".parse().unwrap())
                .insert_header(("x-forwarded-for", "203.0.113.7, 198.51.100.2"))
                .to_http_request()
        };
        let t = Throttle::new(&s);
        assert_eq!(t.client_address(&req()), Some("10.0.0.1".parse().unwrap()));
        s.trust_forwarded_for = true;
        let t = Throttle::new(&s);
        assert_eq!(t.client_address(&req()), Some("198.51.100.2".parse().unwrap()));
    }

    #[test]
    fn zero_means_no_limit() {
        let t = Throttle::new(&settings(0, 0));
        for _ in 0..1_000 {
            assert!(t.attempt(&from("10.0.0.1"), "alice").is_ok());
        }
    }
}
