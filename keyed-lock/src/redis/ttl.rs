//! TTL arithmetic: what is sent to Redis, and how long this process trusts a lease.
//!
//! TTLs go to Redis in whole milliseconds, between 1 ms and about ten years. Every lease
//! loses a clock-drift margin (as Redlock): 1 % of its TTL plus 2 ms, so a lease this process
//! believes live is live in Redis even if the two clocks run apart by that much.

use std::time::Duration;

use tokio::time::Instant;

use crate::memory::deadline_after;

/// The longest TTL sent to Redis: about ten years, in milliseconds.
const MAX_TTL_MS: u64 = 10 * 365 * 86_400 * 1000;

/// `ttl` as sent to Redis: whole milliseconds (rounded down), at least 1, at most ten years.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

/// The margin taken off every lease for clock drift between this host and Redis: 1 % of the
/// TTL plus 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// Whether a lease of `ttl` (as sent: whole milliseconds) is still valid for some time once
/// the drift margin is taken off.
pub(crate) fn ttl_valid(ttl: Duration) -> bool {
    let sent = Duration::from_millis(ttl_millis(ttl));
    sent > drift(sent)
}

/// When a lease of `ttl` asked for at `sent_at` ends for this process: the TTL less the drift
/// margin, counted from when the request was sent (not from when the reply came).
pub(crate) fn lease_deadline(sent_at: Instant, ttl: Duration) -> Instant {
    deadline_after(sent_at, ttl.saturating_sub(drift(ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisBackend;

    #[test]
    fn min_ttl_is_the_shortest_valid_ttl() {
        assert!(ttl_valid(RedisBackend::MIN_TTL));
        assert!(!ttl_valid(RedisBackend::MIN_TTL - Duration::from_nanos(1)));
        assert!(!ttl_valid(Duration::ZERO));
        assert!(ttl_valid(Duration::from_secs(3600)));
        let sent = Duration::from_millis(ttl_millis(RedisBackend::MIN_TTL));
        assert!(lease_deadline(Instant::now(), sent) > Instant::now());
    }

    #[test]
    fn ttls_are_sent_in_whole_milliseconds_within_bounds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(2999)), 2);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS);
        assert_eq!(drift(Duration::from_secs(1)), Duration::from_millis(12));
    }
}
