//! Trip policies: when a closed breaker opens.

use std::time::Duration;

/// When a closed breaker trips open. Chosen with
/// [`CircuitBreakerBuilder::consecutive_failures`](crate::CircuitBreakerBuilder::consecutive_failures) or
/// [`CircuitBreakerBuilder::failure_rate`](crate::CircuitBreakerBuilder::failure_rate).
///
/// # Default
///
/// `ConsecutiveFailures(5)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TripPolicy {
    /// Trip after this many failures in a row; a success resets the count. The fastest
    /// policy: a success costs one atomic load, and no clock read.
    ConsecutiveFailures(u32),
    /// Trip when the failure rate over the window reaches `threshold`, once the window holds
    /// at least its `min_calls`.
    FailureRate {
        /// The rate that trips the breaker, in `(0, 1]`.
        threshold: f64,
        /// Which calls the rate is measured over.
        window: Window,
    },
}

impl Default for TripPolicy {
    fn default() -> Self {
        TripPolicy::ConsecutiveFailures(5)
    }
}

/// The calls a rate is measured over.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_circuit_breaker::Window;
///
/// // The last 100 calls, measured once 20 were made.
/// let by_count = Window::count(100).min_calls(20);
/// // The last 30 s in 10 buckets of 3 s, measured once 10 calls were made.
/// let by_time = Window::time(Duration::from_secs(30), 10).min_calls(10);
/// # let _ = (by_count, by_time);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `calls` calls.
    Count {
        /// The number of calls the window holds.
        calls: u32,
        /// No rate is computed before this many calls were recorded; at most `calls`.
        min_calls: u32,
    },
    /// The calls of the last `duration`, kept in `buckets` buckets (the window slides one
    /// bucket at a time, so it covers between `duration - duration / buckets` and `duration`).
    Time {
        /// The window's length.
        duration: Duration,
        /// How many buckets the window is split into.
        buckets: u32,
        /// No rate is computed while the window holds fewer calls than this.
        min_calls: u32,
    },
}

impl Window {
    /// The last `calls` calls; `min_calls` defaults to `calls` (the window must be full).
    /// `calls` must be in `1..=`[`MAX_CALLS`](Window::MAX_CALLS), checked by `build`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::Window;
    /// assert_eq!(Window::count(100), Window::Count { calls: 100, min_calls: 100 });
    /// ```
    pub const fn count(calls: u32) -> Window {
        Window::Count {
            calls,
            min_calls: calls,
        }
    }

    /// The last `duration`, in `buckets` buckets; `min_calls` defaults to 10. `buckets` must
    /// be in `1..=`[`MAX_BUCKETS`](Window::MAX_BUCKETS) and `duration` at most
    /// [`MAX_DURATION`](Window::MAX_DURATION) and at least 1 ns per bucket, checked by `build`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::Window;
    /// let w = Window::time(Duration::from_secs(60), 12);
    /// assert_eq!(w, Window::Time { duration: Duration::from_secs(60), buckets: 12, min_calls: 10 });
    /// ```
    pub const fn time(duration: Duration, buckets: u32) -> Window {
        Window::Time {
            duration,
            buckets,
            min_calls: 10,
        }
    }

    /// Sets the minimum number of calls in the window before a rate is computed (at least 1;
    /// for a count window at most its size, checked by `build`).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::Window;
    /// assert_eq!(Window::count(100).min_calls(20), Window::Count { calls: 100, min_calls: 20 });
    /// ```
    pub const fn min_calls(self, min_calls: u32) -> Window {
        match self {
            Window::Count { calls, .. } => Window::Count { calls, min_calls },
            Window::Time {
                duration, buckets, ..
            } => Window::Time {
                duration,
                buckets,
                min_calls,
            },
        }
    }

    /// The largest count window, in calls (a count window keeps one bit per call).
    pub const MAX_CALLS: u32 = 100_000;

    /// The most buckets a time window may have (each bucket is 24 bytes, and every rate
    /// evaluation sums them).
    pub const MAX_BUCKETS: u32 = 1_000;

    /// The longest time window: 365 days.
    pub const MAX_DURATION: Duration = crate::limits::MAX_DURATION;

    /// Checks the window; `field` is the builder setter it was given to. Every reason starts
    /// with `window`.
    pub(crate) fn validate(&self, field: &'static str) -> Result<(), crate::ConfigError> {
        use crate::ConfigError;
        match *self {
            Window::Count { calls, min_calls } => {
                if !(1..=Window::MAX_CALLS).contains(&calls) {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "window calls must be in 1..={}, got {calls}",
                            Window::MAX_CALLS
                        ),
                    ));
                }
                if !(1..=calls).contains(&min_calls) {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "window min_calls must be in 1..={calls} (the window's calls), got {min_calls}"
                        ),
                    ));
                }
            }
            Window::Time {
                duration,
                buckets,
                min_calls,
            } => {
                if !(1..=Window::MAX_BUCKETS).contains(&buckets) {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "window buckets must be in 1..={}, got {buckets}",
                            Window::MAX_BUCKETS
                        ),
                    ));
                }
                let min = Duration::from_nanos(u64::from(buckets));
                if duration < min || duration > Window::MAX_DURATION {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "window duration must be in {min:?}..={:?} (at least 1 ns per bucket, at most 365 days), got {duration:?}",
                            Window::MAX_DURATION
                        ),
                    ));
                }
                if min_calls == 0 {
                    return Err(ConfigError::new(
                        field,
                        "window min_calls must be in 1..=4294967295, got 0",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a call slower than the slow-call threshold means. Set with
/// [`CircuitBreakerBuilder::slow_calls_as_failures`](crate::CircuitBreakerBuilder::slow_calls_as_failures) or
/// [`CircuitBreakerBuilder::slow_call_rate`](crate::CircuitBreakerBuilder::slow_call_rate).
///
/// A call is slow when it takes at least the threshold, from the permit's acquisition to its
/// verdict. A slow probe in half-open state always reopens the breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlowCalls {
    /// A slow call that succeeded counts as a failure.
    AsFailures {
        /// Calls taking at least this long are slow.
        threshold: Duration,
    },
    /// Slow calls (successful or not) are tracked on their own: the breaker trips when their
    /// rate over `window` reaches `rate`.
    Rate {
        /// Calls taking at least this long are slow.
        threshold: Duration,
        /// The slow-call rate that trips the breaker, in `(0, 1]`.
        rate: f64,
        /// Which calls the rate is measured over.
        window: Window,
    },
}

impl SlowCalls {
    pub(crate) const fn threshold(&self) -> Duration {
        match *self {
            SlowCalls::AsFailures { threshold } | SlowCalls::Rate { threshold, .. } => threshold,
        }
    }
}

/// Checks a rate in `(0, 1]` (NaN is rejected); `what` names it in the reason.
pub(crate) fn validate_rate(
    rate: f64,
    field: &'static str,
    what: &str,
) -> Result<(), crate::ConfigError> {
    if rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(crate::ConfigError::new(
            field,
            format!("{what} must be in (0, 1], got {rate}"),
        ))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    index: u64,
    calls: u32,
    bad: u32,
}

#[derive(Debug)]
enum Slots {
    Count {
        ring: Vec<bool>,
        next: usize,
        len: u32,
        bad: u32,
    },
    Time {
        bucket_nanos: u64,
        buckets: Vec<Bucket>,
    },
}

/// The running state of a rate over a window: counts "bad" calls (failures, or slow calls)
/// among all calls.
#[derive(Debug)]
pub(crate) struct RateWindow {
    slots: Slots,
    min_calls: u32,
    threshold: f64,
}

impl RateWindow {
    pub(crate) fn new(window: Window, threshold: f64) -> RateWindow {
        let (slots, min_calls) = match window {
            Window::Count { calls, min_calls } => (
                Slots::Count {
                    ring: vec![false; calls.clamp(1, Window::MAX_CALLS) as usize],
                    next: 0,
                    len: 0,
                    bad: 0,
                },
                min_calls,
            ),
            Window::Time {
                duration,
                buckets,
                min_calls,
            } => {
                let nanos = duration.as_nanos() / u128::from(buckets.max(1));
                (
                    Slots::Time {
                        bucket_nanos: u64::try_from(nanos).unwrap_or(u64::MAX).max(1),
                        buckets: vec![
                            Bucket::default();
                            buckets.clamp(1, Window::MAX_BUCKETS) as usize
                        ],
                    },
                    min_calls,
                )
            }
        };
        RateWindow {
            slots,
            min_calls,
            threshold,
        }
    }

    /// Records a call at `now` (nanoseconds on the breaker's clock). Returns `Some((rate,
    /// calls))` when the window now trips.
    pub(crate) fn record(&mut self, bad: bool, now: u64) -> Option<(f64, u32)> {
        match &mut self.slots {
            Slots::Count {
                ring,
                next,
                len,
                bad: bad_count,
            } => {
                if (*len as usize) == ring.len() {
                    if ring[*next] {
                        *bad_count -= 1;
                    }
                } else {
                    *len += 1;
                }
                ring[*next] = bad;
                if bad {
                    *bad_count += 1;
                }
                *next = (*next + 1) % ring.len();
            }
            Slots::Time {
                bucket_nanos,
                buckets,
            } => {
                let index = now / *bucket_nanos + 1;
                let n = buckets.len() as u64;
                let slot = &mut buckets[(index % n) as usize];
                if slot.index != index {
                    *slot = Bucket {
                        index,
                        calls: 0,
                        bad: 0,
                    };
                }
                slot.calls = slot.calls.saturating_add(1);
                if bad {
                    slot.bad = slot.bad.saturating_add(1);
                }
            }
        }
        // Evaluated on every call, not only on bad ones: a good call can cross the threshold
        // too, by bringing the window to `min_calls` or by sliding good calls out of it.
        let (calls, bad) = self.totals(now);
        if calls >= self.min_calls && calls > 0 {
            let rate = f64::from(bad) / f64::from(calls);
            if rate >= self.threshold {
                return Some((rate, calls));
            }
        }
        None
    }

    /// `(calls, bad)` in the window at `now`.
    pub(crate) fn totals(&self, now: u64) -> (u32, u32) {
        match &self.slots {
            Slots::Count { len, bad, .. } => (*len, *bad),
            Slots::Time {
                bucket_nanos,
                buckets,
            } => {
                let index = now / *bucket_nanos + 1;
                let oldest = index.saturating_sub(buckets.len() as u64 - 1);
                buckets
                    .iter()
                    .filter(|b| b.index >= oldest && b.index <= index && b.index != 0)
                    .fold((0u32, 0u32), |(c, f), b| {
                        (c.saturating_add(b.calls), f.saturating_add(b.bad))
                    })
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        match &mut self.slots {
            Slots::Count {
                ring,
                next,
                len,
                bad,
            } => {
                ring.iter_mut().for_each(|b| *b = false);
                *next = 0;
                *len = 0;
                *bad = 0;
            }
            Slots::Time { buckets, .. } => {
                buckets.iter_mut().for_each(|b| *b = Bucket::default());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn count_window_needs_min_calls_then_trips_at_threshold() {
        let mut w = RateWindow::new(Window::count(4), 0.5);
        assert_eq!(w.record(true, 0), None); // 1 call, below min_calls 4
        assert_eq!(w.record(false, 0), None);
        assert_eq!(w.record(false, 0), None);
        assert_eq!(w.totals(0), (3, 1));
        // 4 calls, 2 bad: 50% >= 50%.
        assert_eq!(w.record(true, 0), Some((0.5, 4)));
    }

    #[test]
    fn count_window_slides_out_old_calls() {
        let mut w = RateWindow::new(Window::count(3), 1.0);
        w.record(true, 0);
        w.record(true, 0);
        w.record(false, 0);
        assert_eq!(w.totals(0), (3, 2));
        // Evicts the first failure.
        assert_eq!(w.record(false, 0), None);
        assert_eq!(w.totals(0), (3, 1));
        assert_eq!(w.record(true, 0), None);
        assert_eq!(w.totals(0), (3, 1)); // evicted the second failure, added one
        assert_eq!(w.record(true, 0), None);
        assert_eq!(w.totals(0), (3, 2));
        assert_eq!(w.record(true, 0), Some((1.0, 3)));
        w.clear();
        assert_eq!(w.totals(0), (0, 0));
    }

    #[test]
    fn count_window_min_calls_below_size() {
        let mut w = RateWindow::new(Window::count(10).min_calls(2), 0.5);
        assert_eq!(w.record(true, 0), None);
        assert_eq!(w.record(true, 0), Some((1.0, 2)));
    }

    #[test]
    fn time_window_expires_buckets() {
        // 100 ms in 10 buckets of 10 ms, min 3 calls, trips at 60%.
        let mut w = RateWindow::new(
            Window::time(Duration::from_millis(100), 10).min_calls(3),
            0.6,
        );
        assert_eq!(w.record(true, 0), None);
        assert_eq!(w.record(true, 5 * MS), None); // same bucket, 2 calls < 3
        assert_eq!(w.totals(5 * MS), (2, 2));
        // 3 calls, 2 bad: 66% >= 60%. A success that brings the window to `min_calls` trips it.
        assert_eq!(w.record(false, 50 * MS), Some((2.0 / 3.0, 3)));
        assert_eq!(w.totals(50 * MS), (3, 2));
        // At 100 ms the bucket [0, 10) has left the window: 1 call.
        assert_eq!(w.totals(100 * MS), (1, 0));
        assert_eq!(w.record(true, 100 * MS), None); // 2 calls
        assert_eq!(w.record(true, 105 * MS), Some((2.0 / 3.0, 3)));
        // Far in the future everything has expired.
        assert_eq!(w.totals(10_000 * MS), (0, 0));
    }

    #[test]
    fn time_window_counts_the_whole_window() {
        let mut w = RateWindow::new(Window::time(Duration::from_secs(30), 10).min_calls(10), 0.5);
        for i in 0..9u64 {
            // one failure every 3 s: 9 calls, below min_calls
            assert_eq!(w.record(true, i * 3_000 * MS), None);
        }
        assert_eq!(w.totals(26_999 * MS), (9, 9));
        // The tenth call, a success, reaches min_calls at 90 %.
        assert_eq!(w.record(false, 27_000 * MS), Some((0.9, 10)));
        assert_eq!(w.totals(27_000 * MS), (10, 9));
        // At 30 s the first bucket [0, 3 s) expires: 9 calls remain, 8 bad.
        assert_eq!(w.totals(30_000 * MS), (9, 8));
        assert_eq!(w.record(true, 30_000 * MS), Some((0.9, 10)));
    }

    use proptest::prelude::*;

    /// A naive reference: every call with its time, the window recomputed from scratch.
    fn reference(
        window: Window,
        threshold: f64,
        calls: &[(bool, u64)],
        upto: usize,
    ) -> ((u32, u32), bool) {
        let (now, in_window): (u64, Vec<bool>) = match window {
            Window::Count { calls: size, .. } => {
                let start = (upto + 1).saturating_sub(size as usize);
                (
                    calls[upto].1,
                    calls[start..=upto].iter().map(|c| c.0).collect(),
                )
            }
            Window::Time {
                duration, buckets, ..
            } => {
                let bucket = (duration.as_nanos() / u128::from(buckets)) as u64;
                let now = calls[upto].1;
                let newest = now / bucket;
                let oldest = newest.saturating_sub(u64::from(buckets) - 1);
                (
                    now,
                    calls[..=upto]
                        .iter()
                        .filter(|c| c.1 / bucket >= oldest)
                        .map(|c| c.0)
                        .collect(),
                )
            }
        };
        let _ = now;
        let n = in_window.len() as u32;
        let bad = in_window.iter().filter(|b| **b).count() as u32;
        let min_calls = match window {
            Window::Count { min_calls, .. } | Window::Time { min_calls, .. } => min_calls,
        };
        let trips = n >= min_calls && f64::from(bad) / f64::from(n) >= threshold;
        ((n, bad), trips)
    }

    proptest! {
        /// The window agrees with the naive reference on every call: counts, and whether it
        /// trips (evaluated on good calls too).
        #[test]
        fn windows_match_a_naive_reference(
            count in any::<bool>(),
            size in 1u32..12,
            min in 1u32..12,
            threshold in 0.05f64..=1.0,
            steps in proptest::collection::vec((any::<bool>(), 0u64..40), 1..120),
        ) {
            let window = if count {
                Window::count(size).min_calls(min.min(size))
            } else {
                Window::time(Duration::from_millis(10 * u64::from(size)), size).min_calls(min)
            };
            let mut w = RateWindow::new(window, threshold);
            let mut calls = Vec::new();
            let mut now = 0u64;
            for (i, (bad, gap_ms)) in steps.into_iter().enumerate() {
                now += gap_ms * MS;
                calls.push((bad, now));
                let tripped = w.record(bad, now);
                let (totals, trips) = reference(window, threshold, &calls, i);
                prop_assert_eq!(w.totals(now), totals);
                prop_assert_eq!(tripped.is_some(), trips);
            }
        }
    }

    #[test]
    fn window_validation_names_the_field() {
        assert_eq!(Window::count(0).validate("w").unwrap_err().field(), "w");
        assert!(Window::count(5).min_calls(6).validate("w").is_err());
        assert!(Window::count(5).min_calls(0).validate("w").is_err());
        assert!(Window::time(Duration::ZERO, 10).validate("w").is_err());
        assert!(
            Window::time(Duration::from_secs(1), 0)
                .validate("w")
                .is_err()
        );
        assert!(
            Window::time(Duration::from_secs(1), 10)
                .validate("w")
                .is_ok()
        );
        assert!(Window::count(Window::MAX_CALLS).validate("w").is_ok());
        assert!(Window::count(u32::MAX).validate("w").is_err());
        assert!(
            Window::time(Duration::from_secs(1), u32::MAX)
                .validate("w")
                .is_err()
        );
        assert!(Window::time(Duration::MAX, 10).validate("w").is_err());
        assert!(
            Window::time(Duration::from_nanos(9), 10)
                .validate("w")
                .is_err()
        );
        assert!(
            Window::time(Duration::from_nanos(10), 10)
                .validate("w")
                .is_ok()
        );
        assert!(validate_rate(0.0, "r", "rate").is_err());
        assert!(validate_rate(1.01, "r", "rate").is_err());
        assert!(validate_rate(f64::NAN, "r", "rate").is_err());
        assert!(validate_rate(1.0, "r", "rate").is_ok());
    }
}
