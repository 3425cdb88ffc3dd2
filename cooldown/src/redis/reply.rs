//! Decoding the scripts' replies: decisions and digests, with server times (µs) turned into
//! local instants.

use std::time::Duration;

use tokio::time::Instant;

use super::reservation::Taken;
use crate::{Digest, Fire, Suppressed};

/// A decision as the `DECIDE` script returned it, with what a reservation took.
pub(crate) enum Raw {
    Fire(Fire, Taken),
    Suppressed(Suppressed),
}

/// The server's clock at the moment a reply arrived, to turn server times
/// into local instants.
#[derive(Clone, Copy)]
struct ServerNow {
    server_us: i64,
    local: Instant,
}

impl ServerNow {
    fn instant(self, server_us: i64) -> Instant {
        let delta = Duration::from_micros(server_us.abs_diff(self.server_us));
        if server_us <= self.server_us {
            self.local.checked_sub(delta).unwrap_or(self.local)
        } else {
            self.local.checked_add(delta).unwrap_or(self.local)
        }
    }
}

/// `d` in whole microseconds, saturating.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A `DECIDE` reply that arrived at `local`: `{0, now, remaining µs, count}` (suppressed) or
/// `{1, now, last fired, count, first, last, bypassed}` (fire); `None` for anything else.
pub(crate) fn decision(reply: &[i64], local: Instant) -> Option<Raw> {
    match *reply {
        [0, _now, remaining, count] => Some(Raw::Suppressed(Suppressed {
            remaining: Duration::from_micros(remaining.max(0).cast_unsigned()),
            suppressed: count.max(0).cast_unsigned(),
            degraded: false,
        })),
        [1, now, fired, count, first, last, bypassed] => {
            let clock = ServerNow {
                server_us: now,
                local,
            };
            let last_fired = (fired >= 0).then(|| clock.instant(fired));
            let digest = (count > 0).then(|| Digest {
                count: count.cast_unsigned(),
                first_suppressed: clock.instant(first),
                last_suppressed: clock.instant(last),
                last_fired,
                last_payload: None,
            });
            Some(Raw::Fire(
                Fire {
                    suppressed_since_last: count.max(0).cast_unsigned(),
                    last_fired,
                    digest,
                    bypassed: bypassed == 1,
                    degraded: false,
                },
                Taken {
                    count: count.max(0),
                    first,
                    last,
                },
            ))
        }
        _ => None,
    }
}

/// A `DRAIN` reply that arrived at `local`: `{0, now}` (nothing to report: `Some(None)`) or
/// `{1, now, last fired, count, first, last}`; `None` for anything else.
pub(crate) fn drained(reply: &[i64], local: Instant) -> Option<Option<Digest>> {
    match *reply {
        [0, _] => Some(None),
        [1, now, fired, count, first, last] => {
            let clock = ServerNow {
                server_us: now,
                local,
            };
            Some(Some(Digest {
                count: count.max(0).cast_unsigned(),
                first_suppressed: clock.instant(first),
                last_suppressed: clock.instant(last),
                last_fired: (fired >= 0).then(|| clock.instant(fired)),
                last_payload: None,
            }))
        }
        _ => None,
    }
}

/// Whether a failed call may have run in Redis without its reply reaching
/// us (the connection broke or timed out), so sending it again with the same
/// call id is worth it; not for an error Redis itself replied.
pub(crate) fn lost_reply(e: &::redis::RedisError) -> bool {
    e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_times_become_local_instants_relative_to_the_reply() {
        let local = Instant::now();
        let clock = ServerNow {
            server_us: 1_000_000_000,
            local,
        };
        assert_eq!(clock.instant(1_000_000_000), local);
        assert_eq!(
            clock.instant(999_750_000),
            local - Duration::from_millis(250)
        );
        assert_eq!(
            clock.instant(1_000_000_001),
            local + Duration::from_micros(1)
        );
    }

    #[test]
    fn micros_saturate() {
        assert_eq!(micros(Duration::from_nanos(1_999)), 1);
        assert_eq!(micros(Duration::MAX), u64::MAX);
    }

    #[test]
    fn replies_of_another_shape_are_refused() {
        let now = Instant::now();
        assert!(decision(&[0, 1, 2], now).is_none());
        assert!(decision(&[2, 0, 0, 0], now).is_none());
        assert!(drained(&[1, 0], now).is_none());
        assert!(matches!(drained(&[0, 5], now), Some(None)));
        let Some(Raw::Suppressed(s)) = decision(&[0, 9, 1_500, 3], now) else {
            panic!("a suppression")
        };
        assert_eq!(
            (s.remaining, s.suppressed),
            (Duration::from_micros(1_500), 3)
        );
    }
}
