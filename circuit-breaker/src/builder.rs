//! The breaker's builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::inner::{Config, Inner};
use crate::open_duration::OpenDurations;
use crate::policy::{SlowCalls, TripPolicy, Window, validate_rate};
use crate::{CircuitBreaker, ConfigError, Metrics};

/// Configures a [`CircuitBreaker`]; from [`CircuitBreaker::builder`].
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | [`name`](Builder::name) | `"default"` |
/// | trip policy | [`consecutive_failures(5)`](Builder::consecutive_failures) |
/// | slow calls | not tracked |
/// | [`open_duration`](Builder::open_duration) | 30 s, fixed |
/// | [`jitter`](Builder::jitter) | 0 (none) |
/// | [`probes`](Builder::probes) | 1 |
/// | [`successes_to_close`](Builder::successes_to_close) | 1 |
/// | [`metrics`](Builder::metrics) | none |
///
/// Nothing is checked until [`build`](Builder::build), which names the first invalid field.
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    name: Arc<str>,
    trip: TripPolicy,
    slow: Option<SlowCalls>,
    open: OpenDurations,
    jitter: f64,
    seed: Option<u64>,
    probes: u32,
    successes_to_close: u32,
    metrics: Option<Metrics>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("trip", &self.trip)
            .field("slow", &self.slow)
            .field("open", &self.open)
            .field("jitter", &self.jitter)
            .field("probes", &self.probes)
            .field("successes_to_close", &self.successes_to_close)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: Arc::from("default"),
            trip: TripPolicy::default(),
            slow: None,
            open: OpenDurations::fixed(Duration::from_secs(30)),
            jitter: 0.0,
            seed: None,
            probes: 1,
            successes_to_close: 1,
            metrics: None,
        }
    }
}

impl Builder {
    /// The breaker's name: the `breaker` label of its metrics, the `breaker` field of its
    /// tracing events and [`Transition`](crate::Transition)s. Keep it to a fixed set of
    /// dependency names (never a user key), since every name is a metric series.
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        self.name = Arc::from(name.as_ref());
        self
    }

    /// Trips after `n` failures in a row (the default policy, with `n = 5`). Zero is
    /// rejected by `build` (field `consecutive_failures`).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.trip = TripPolicy::ConsecutiveFailures(n);
        self
    }

    /// Trips when the failure rate over `window` reaches `threshold` (in `(0, 1]`). Fields
    /// `failure_rate.threshold` and `failure_rate.window` are checked by `build`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, Window};
    ///
    /// // Half of the calls of the last 30 s failed, out of at least 20.
    /// let breaker = CircuitBreaker::builder()
    ///     .failure_rate(0.5, Window::time(Duration::from_secs(30), 10).min_calls(20))
    ///     .build()
    ///     .unwrap();
    /// # drop(breaker);
    /// ```
    pub fn failure_rate(mut self, threshold: f64, window: Window) -> Self {
        self.trip = TripPolicy::FailureRate { threshold, window };
        self
    }

    /// Sets the trip policy directly.
    pub fn trip_policy(mut self, policy: TripPolicy) -> Self {
        self.trip = policy;
        self
    }

    /// A call taking at least `threshold` that succeeded counts as a failure. Costs two
    /// clock reads per call.
    pub fn slow_calls_as_failures(mut self, threshold: Duration) -> Self {
        self.slow = Some(SlowCalls::AsFailures { threshold });
        self
    }

    /// Calls taking at least `threshold` are tracked on their own; the breaker trips when
    /// their rate over `window` reaches `rate`, whatever the failure policy says. Costs two
    /// clock reads and a lock per call.
    pub fn slow_call_rate(mut self, threshold: Duration, rate: f64, window: Window) -> Self {
        self.slow = Some(SlowCalls::Rate {
            threshold,
            rate,
            window,
        });
        self
    }

    /// Sets the slow-call policy directly (`None` to stop tracking slow calls).
    pub fn slow_calls(mut self, slow: Option<SlowCalls>) -> Self {
        self.slow = slow;
        self
    }

    /// Every trip stays open for `duration` (default 30 s).
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open = OpenDurations::fixed(duration);
        self
    }

    /// The n-th trip in a row stays open for the n-th duration of `durations`; once it is
    /// exhausted its last duration repeats. Closing or `reset` starts it over. Any
    /// `Iterator<Item = Duration>` that is `Clone` fits, e.g. a retry backoff. An empty
    /// sequence is rejected by `build` (field `open_durations`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// // 1 s, 2 s, 4 s, ... capped at 60 s.
    /// let doubling = (0..).map(|n: u32| Duration::from_secs(1 << n.min(6)).min(Duration::from_secs(60)));
    /// let breaker = CircuitBreaker::builder().open_durations(doubling).build().unwrap();
    /// # drop(breaker);
    /// ```
    pub fn open_durations<I>(mut self, durations: I) -> Self
    where
        I: IntoIterator<Item = Duration> + Clone + Send + Sync + 'static,
        I::IntoIter: Send + 'static,
    {
        self.open = OpenDurations::from_iter(durations);
        self
    }

    /// Shortens each open duration by a random fraction of up to `jitter` (in `[0, 1]`), so
    /// breakers that opened together do not probe together. The configured duration stays
    /// the upper bound.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter's random generator, for reproducible durations (default: seeded
    /// from the OS).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many probe calls a half-open breaker lets through at once (default 1; zero is
    /// rejected by `build`, field `probes`).
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// How many successful probes close a half-open breaker (default 1; zero is rejected by
    /// `build`, field `successes_to_close`). Any failed probe reopens it.
    pub fn successes_to_close(mut self, successes: u32) -> Self {
        self.successes_to_close = successes;
        self
    }

    /// Records calls and transitions in `metrics`.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Builds the breaker, in the `Closed` state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: `consecutive_failures` (zero),
    /// `failure_rate.threshold` (outside `(0, 1]`), `failure_rate.window` (zero calls, zero
    /// duration or buckets, fewer calls than `min_calls`), `slow_call_rate.threshold` (zero),
    /// `slow_call_rate.rate`, `slow_call_rate.window`, `slow_calls_as_failures` (zero),
    /// `open_durations` (empty), `jitter` (outside `[0, 1]`), `probes` (zero),
    /// `successes_to_close` (zero).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let err = CircuitBreaker::builder().probes(0).build().unwrap_err();
    /// assert_eq!(err.field(), "probes");
    /// ```
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        match self.trip {
            TripPolicy::ConsecutiveFailures(0) => {
                return Err(ConfigError::new(
                    "consecutive_failures",
                    "must be at least 1",
                ));
            }
            TripPolicy::ConsecutiveFailures(_) => {}
            TripPolicy::FailureRate { threshold, window } => {
                validate_rate(threshold, "failure_rate.threshold")?;
                window.validate("failure_rate.window")?;
            }
        }
        match self.slow {
            None => {}
            Some(SlowCalls::AsFailures { threshold }) if threshold.is_zero() => {
                return Err(ConfigError::new(
                    "slow_calls_as_failures",
                    "threshold must not be zero",
                ));
            }
            Some(SlowCalls::AsFailures { .. }) => {}
            Some(SlowCalls::Rate {
                threshold,
                rate,
                window,
            }) => {
                if threshold.is_zero() {
                    return Err(ConfigError::new(
                        "slow_call_rate.threshold",
                        "must not be zero",
                    ));
                }
                validate_rate(rate, "slow_call_rate.rate")?;
                window.validate("slow_call_rate.window")?;
            }
        }
        let Some(first_open) = self.open.first() else {
            return Err(ConfigError::new("open_durations", "is empty"));
        };
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::new(
                "jitter",
                format!("must be in [0, 1], got {}", self.jitter),
            ));
        }
        if self.probes == 0 {
            return Err(ConfigError::new("probes", "must be at least 1"));
        }
        if self.successes_to_close == 0 {
            return Err(ConfigError::new("successes_to_close", "must be at least 1"));
        }
        let metrics = self.metrics.as_ref().map(|m| m.for_breaker(&self.name));
        let cfg = Config {
            trip: self.trip,
            slow: self.slow,
            open: self.open,
            first_open,
            jitter: self.jitter,
            probes: self.probes,
            successes_to_close: self.successes_to_close,
        };
        Ok(CircuitBreaker {
            inner: Arc::new(Inner::new(self.name, cfg, self.seed, metrics)),
        })
    }
}
