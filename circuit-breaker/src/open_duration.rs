//! How long the breaker stays open: fixed, or growing with repeated trips, with jitter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::MAX_DURATION;

type MakeIter = dyn Fn() -> Box<dyn Iterator<Item = Duration> + Send> + Send + Sync;

/// The sequence of open durations: the n-th trip in a row (without the breaker closing in
/// between) stays open for the n-th duration. When the sequence ends, its last duration is
/// repeated. Closing (or [`reset`](crate::CircuitBreaker::reset)) restarts the sequence.
#[derive(Clone)]
pub(crate) struct OpenDurations {
    make: Arc<MakeIter>,
}

impl fmt::Debug for OpenDurations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first: Vec<Duration> = (self.make)().take(4).collect();
        f.debug_struct("OpenDurations")
            .field("first", &first)
            .finish()
    }
}

impl OpenDurations {
    pub(crate) fn fixed(d: Duration) -> Self {
        OpenDurations {
            make: Arc::new(move || Box::new(std::iter::once(d))),
        }
    }

    pub(crate) fn from_iter<I>(iter: I) -> Self
    where
        I: IntoIterator<Item = Duration> + Clone + Send + Sync + 'static,
        I::IntoIter: Send + 'static,
    {
        OpenDurations {
            make: Arc::new(move || Box::new(iter.clone().into_iter())),
        }
    }

    pub(crate) fn first(&self) -> Option<Duration> {
        (self.make)().next()
    }

    pub(crate) fn start(&self) -> Schedule {
        Schedule {
            iter: (self.make)(),
            last: Duration::ZERO,
        }
    }
}

/// A running sequence of open durations.
pub(crate) struct Schedule {
    iter: Box<dyn Iterator<Item = Duration> + Send>,
    last: Duration,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("last", &self.last)
            .finish()
    }
}

impl Schedule {
    /// The next open duration, before jitter.
    pub(crate) fn next_duration(&mut self) -> Duration {
        if let Some(d) = self.iter.next() {
            self.last = d.min(MAX_DURATION);
        }
        self.last
    }
}

/// Scales `d` by a factor in `[1 - jitter, 1]`, given `unit` uniform in `[0, 1)`: jitter only
/// ever shortens the configured duration, so it stays an upper bound.
///
/// Never panics: `Duration::mul_f64` would on a duration near `Duration::MAX` (the product
/// rounds above it), so the product is computed in `f64` and checked; the result never
/// exceeds `d`.
pub(crate) fn apply_jitter(d: Duration, jitter: f64, unit: f64) -> Duration {
    if jitter.is_nan() || jitter <= 0.0 {
        return d;
    }
    let factor = (1.0 - jitter * unit).clamp(0.0, 1.0);
    Duration::try_from_secs_f64(d.as_secs_f64() * factor)
        .unwrap_or(d)
        .min(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_repeats() {
        let mut s = OpenDurations::fixed(Duration::from_secs(30)).start();
        for _ in 0..3 {
            assert_eq!(s.next_duration(), Duration::from_secs(30));
        }
    }

    #[test]
    fn sequence_then_last_repeats_and_restarts() {
        let o = OpenDurations::from_iter([1u64, 2, 4].map(Duration::from_secs).to_vec());
        let mut s = o.start();
        let got: Vec<u64> = (0..5).map(|_| s.next_duration().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 4, 4]);
        assert_eq!(o.start().next_duration(), Duration::from_secs(1));
        assert_eq!(o.first(), Some(Duration::from_secs(1)));
        assert_eq!(OpenDurations::from_iter(Vec::new()).first(), None);
    }

    #[test]
    fn huge_durations_neither_panic_nor_grow() {
        for unit in [0.0, 1e-12, 0.5, 0.999_999_999] {
            for jitter in [1e-9, 0.5, 1.0] {
                assert!(apply_jitter(Duration::MAX, jitter, unit) <= Duration::MAX);
                assert!(apply_jitter(MAX_DURATION, jitter, unit) <= MAX_DURATION);
            }
        }
        let mut s = OpenDurations::fixed(Duration::MAX).start();
        assert_eq!(s.next_duration(), MAX_DURATION);
    }

    #[test]
    fn jitter_only_shortens() {
        let d = Duration::from_secs(10);
        assert_eq!(apply_jitter(d, 0.0, 0.7), d);
        assert_eq!(apply_jitter(d, 0.5, 0.0), d);
        assert_eq!(apply_jitter(d, 0.5, 0.5), Duration::from_millis(7500));
        assert_eq!(apply_jitter(d, 1.0, 0.75), Duration::from_millis(2500));
    }
}
