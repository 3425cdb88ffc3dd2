//! The breaker's builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::hash::Hash;

use crate::inner::{Config, Inner};
use crate::limits::{MAX_DURATION, MAX_PROBES};
use crate::metrics::BreakerMetrics;
use crate::open_duration::OpenDurations;
use crate::policy::{SlowCalls, TripPolicy, Window, validate_rate};
use crate::{CircuitBreaker, ConfigError, KeyedCircuitBreaker, Metrics};

mod keyed;

pub use keyed::KeyedCircuitBreakerBuilder;

// `CircuitBreaker::builder` lives here, not in breaker.rs, so that the handle's module does
// not depend on its builder's.
impl CircuitBreaker {
    /// A builder with the defaults listed on [`CircuitBreakerBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().name("users-db").build().unwrap();
    /// # drop(breaker);
    /// ```
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::default()
    }
}

/// Configures a [`CircuitBreaker`]; from [`CircuitBreaker::builder`] or
/// [`CircuitBreakerBuilder::new`].
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | [`name`](CircuitBreakerBuilder::name) | `"default"` |
/// | trip policy | [`consecutive_failures(5)`](CircuitBreakerBuilder::consecutive_failures) |
/// | [`slow_calls`](CircuitBreakerBuilder::slow_calls) | `None` (not tracked) |
/// | [`open_duration`](CircuitBreakerBuilder::open_duration) | 30 s, fixed |
/// | [`jitter`](CircuitBreakerBuilder::jitter) | 0 (none) |
/// | [`seed`](CircuitBreakerBuilder::seed) | none: the jitter is seeded from the OS |
/// | [`probes`](CircuitBreakerBuilder::probes) | 1 |
/// | [`successes_to_close`](CircuitBreakerBuilder::successes_to_close) | 1 |
/// | [`max_probe_duration`](CircuitBreakerBuilder::max_probe_duration) | 30 s |
/// | [`metrics`](CircuitBreakerBuilder::metrics) | none |
///
/// Nothing is checked until [`build`](CircuitBreakerBuilder::build), which names the first
/// invalid setter. Every duration is bounded by [`MAX_DURATION`](Self::MAX_DURATION)
/// (365 days).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_circuit_breaker::CircuitBreakerBuilder;
///
/// let breaker = CircuitBreakerBuilder::new()
///     .name("payments")
///     .consecutive_failures(3)
///     .open_duration(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(breaker.name(), "payments");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBreakerBuilder {
    name: Arc<str>,
    trip: TripPolicy,
    /// The setter that chose the trip policy: the `field` of its errors.
    trip_field: &'static str,
    slow: Option<SlowCalls>,
    slow_field: &'static str,
    open: OpenDurations,
    /// `Some` when set by `open_duration`, checked against `MAX_DURATION`.
    fixed_open: Option<Duration>,
    jitter: f64,
    seed: Option<u64>,
    probes: u32,
    successes_to_close: u32,
    max_probe: Duration,
    metrics: Option<Metrics>,
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("trip", &self.trip)
            .field("slow", &self.slow)
            .field("open", &self.open)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .field("probes", &self.probes)
            .field("successes_to_close", &self.successes_to_close)
            .field("max_probe_duration", &self.max_probe)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        CircuitBreakerBuilder {
            name: Arc::from("default"),
            trip: TripPolicy::default(),
            trip_field: "consecutive_failures",
            slow: None,
            slow_field: "slow_calls",
            open: OpenDurations::fixed(Duration::from_secs(30)),
            fixed_open: Some(Duration::from_secs(30)),
            jitter: 0.0,
            seed: None,
            probes: 1,
            successes_to_close: 1,
            max_probe: Duration::from_secs(30),
            metrics: None,
        }
    }
}

impl CircuitBreakerBuilder {
    /// The longest duration any setting accepts: 365 days.
    pub const MAX_DURATION: Duration = MAX_DURATION;

    /// The most concurrent probes [`probes`](Self::probes) accepts: 10 000.
    pub const MAX_PROBES: u32 = MAX_PROBES;

    /// A builder with the defaults listed [above](CircuitBreakerBuilder#default); the same as
    /// [`CircuitBreaker::builder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreakerBuilder, State};
    ///
    /// let breaker = CircuitBreakerBuilder::new().build().unwrap();
    /// assert_eq!((breaker.name(), breaker.state()), ("default", State::Closed));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The breaker's name: the `breaker` label of its metrics, the `breaker` field of its
    /// tracing events and [`Transition`](crate::Transition)s (default `"default"`). Keep it to
    /// a fixed set of dependency names (never a user key), since every name is a metric
    /// series. Any string is accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().name("audit").build().unwrap();
    /// assert_eq!(breaker.name(), "audit");
    /// ```
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        self.name = Arc::from(name.as_ref());
        self
    }

    /// Trips after `n` failures in a row (the default policy, with `n = 5`). Zero is
    /// rejected by `build` (field `consecutive_failures`).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::builder().consecutive_failures(2).build().unwrap();
    /// breaker.try_acquire().unwrap().failure();
    /// breaker.try_acquire().unwrap().failure();
    /// assert_eq!(breaker.state(), State::Open);
    /// ```
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.trip = TripPolicy::ConsecutiveFailures(n);
        self.trip_field = "consecutive_failures";
        self
    }

    /// Trips when the failure rate over `window` reaches `threshold` (in `(0, 1]`). The rate
    /// is evaluated on every recorded call once the window holds `min_calls`, so a success
    /// that fills the window can trip it. Checked by `build` (field `failure_rate`).
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
        self.trip_field = "failure_rate";
        self
    }

    /// Sets the trip policy directly (checked by `build`, field `trip_policy`).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, TripPolicy};
    ///
    /// let err = CircuitBreaker::builder()
    ///     .trip_policy(TripPolicy::ConsecutiveFailures(0))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "trip_policy");
    /// ```
    pub fn trip_policy(mut self, policy: TripPolicy) -> Self {
        self.trip = policy;
        self.trip_field = "trip_policy";
        self
    }

    /// A call taking at least `threshold` that succeeded counts as a failure. Costs two
    /// clock reads per call. `threshold` must be in `(0, 365 days]` (field
    /// `slow_calls_as_failures`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder()
    ///     .slow_calls_as_failures(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// # drop(breaker);
    /// ```
    pub fn slow_calls_as_failures(mut self, threshold: Duration) -> Self {
        self.slow = Some(SlowCalls::AsFailures { threshold });
        self.slow_field = "slow_calls_as_failures";
        self
    }

    /// Calls taking at least `threshold` are tracked on their own; the breaker trips when
    /// their rate over `window` reaches `rate`, whatever the failure policy says. Costs two
    /// clock reads and a lock per call. Checked by `build` (field `slow_call_rate`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, Window};
    ///
    /// // Trip when half of the last 20 calls took 2 s or more.
    /// let breaker = CircuitBreaker::builder()
    ///     .slow_call_rate(Duration::from_secs(2), 0.5, Window::count(20))
    ///     .build()
    ///     .unwrap();
    /// # drop(breaker);
    /// ```
    pub fn slow_call_rate(mut self, threshold: Duration, rate: f64, window: Window) -> Self {
        self.slow = Some(SlowCalls::Rate {
            threshold,
            rate,
            window,
        });
        self.slow_field = "slow_call_rate";
        self
    }

    /// Sets the slow-call policy directly (`None` to stop tracking slow calls; checked by
    /// `build`, field `slow_calls`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, SlowCalls};
    ///
    /// let slow = SlowCalls::AsFailures { threshold: Duration::from_secs(1) };
    /// let breaker = CircuitBreaker::builder().slow_calls(Some(slow)).build().unwrap();
    /// # drop(breaker);
    /// ```
    pub fn slow_calls(mut self, slow: Option<SlowCalls>) -> Self {
        self.slow = slow;
        self.slow_field = "slow_calls";
        self
    }

    /// Every trip stays open for `duration` (default 30 s; at most 365 days, field
    /// `open_duration`; zero probes at once).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let err = CircuitBreaker::builder().open_duration(Duration::MAX).build().unwrap_err();
    /// assert_eq!(err.field(), "open_duration");
    /// ```
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open = OpenDurations::fixed(duration);
        self.fixed_open = Some(duration);
        self
    }

    /// The n-th trip in a row stays open for the n-th duration of `durations`; once it is
    /// exhausted its last duration repeats. Closing or `reset` starts it over. Any
    /// `Iterator<Item = Duration>` that is `Clone` fits, e.g. a retry backoff. Durations
    /// above 365 days are cut to 365 days (they come at run time, so `build` cannot reject
    /// them). An empty sequence is rejected by `build` (field `open_durations`).
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
        self.fixed_open = None;
        self
    }

    /// Shortens each open duration by a random fraction of up to `jitter` (in `[0, 1]`,
    /// field `jitter`), so breakers that opened together do not probe together. The
    /// configured duration stays the upper bound.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// // Open for 15 s to 30 s.
    /// let breaker = CircuitBreaker::builder().jitter(0.5).build().unwrap();
    /// # drop(breaker);
    /// ```
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter's random generator, for reproducible open durations (default: seeded
    /// from the OS). Replaces `jitter_seed`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().jitter(0.2).seed(42).build().unwrap();
    /// # drop(breaker);
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many probe calls a half-open breaker lets through at once (default 1; must be in
    /// `1..=10000`, field `probes`).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::builder().probes(3).successes_to_close(3).build().unwrap();
    /// # drop(breaker);
    /// ```
    pub fn probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// How many successful probes close a half-open breaker (default 1; zero is rejected by
    /// `build`, field `successes_to_close`). Any failed probe reopens it.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let err = CircuitBreaker::builder().successes_to_close(0).build().unwrap_err();
    /// assert_eq!(err.field(), "successes_to_close");
    /// ```
    pub fn successes_to_close(mut self, successes: u32) -> Self {
        self.successes_to_close = successes;
        self
    }

    /// How long a half-open probe may run before it counts as failed (default 30 s; must be
    /// in `(0, 365 days]`, field `max_probe_duration`).
    ///
    /// A probe that has not reported by then (its call hung, its permit was never used)
    /// counts as a failed probe: the breaker reopens, as of the moment the probe timed out,
    /// with [`Reason::ProbeTimedOut`](crate::Reason::ProbeTimedOut), and the probe's slot is
    /// freed. Its verdict, if it ever comes, is ignored. So the breaker can never stay
    /// half-open with every slot held by a live but hung probe, even when callers set no
    /// timeout of their own. (resilience4j calls this `maxWaitDurationInHalfOpenState`;
    /// Polly admits a new probe after another break duration.)
    ///
    /// It cannot be turned off: that is the guarantee. The default, 30 s, is the default open
    /// duration and the per-call timeout production services used; a dependency whose calls
    /// legitimately take longer should raise it (up to 365 days).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, State};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let breaker = CircuitBreaker::builder()
    ///     .consecutive_failures(1)
    ///     .open_duration(Duration::from_secs(10))
    ///     .max_probe_duration(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// breaker.try_acquire().unwrap().failure();
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// let hung = breaker.try_acquire().unwrap(); // a probe that never reports
    /// tokio::time::advance(Duration::from_secs(5)).await;
    /// assert_eq!(breaker.state(), State::Open); // counted as failed, slot freed
    /// # drop(hung);
    /// # }
    /// ```
    pub fn max_probe_duration(mut self, duration: Duration) -> Self {
        self.max_probe = duration;
        self
    }

    /// Records calls and transitions in `metrics`; the state gauge is computed when the
    /// registry is encoded.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_circuit_breaker::{CircuitBreaker, Metrics};
    ///
    /// let mut registry = Registry::default();
    /// let breaker = CircuitBreaker::builder()
    ///     .metrics(Metrics::register(&mut registry))
    ///     .build()
    ///     .unwrap();
    /// # drop(breaker);
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Builds the breaker, in the `Closed` state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setter, with the allowed range:
    /// `consecutive_failures` / `trip_policy` (zero failures), `failure_rate` /
    /// `trip_policy` (threshold outside `(0, 1]`, or a bad window), `slow_calls_as_failures`,
    /// `slow_call_rate`, `slow_calls` (threshold outside `(0, 365 days]`, rate outside
    /// `(0, 1]`, or a bad window), `open_duration` (over 365 days), `open_durations`
    /// (empty), `jitter` (outside `[0, 1]`), `probes` (outside `1..=10000`),
    /// `successes_to_close` (zero), `max_probe_duration` (outside `(0, 365 days]`). A window
    /// is bad when its calls are outside `1..=`[`Window::MAX_CALLS`], its buckets outside
    /// `1..=`[`Window::MAX_BUCKETS`], its duration over 365 days or under 1 ns per bucket,
    /// or its `min_calls` zero or (for a count window) above its calls.
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
        let (template, metrics) = self.into_template()?;
        let series = metrics.as_ref().map(|m| m.for_breaker(&template.name));
        let breaker = template.instantiate(Arc::clone(&template.name), template.seed, series);
        if let Some(m) = &metrics {
            let weak: std::sync::Weak<Inner> = Arc::downgrade(&breaker.inner);
            m.track(weak);
        }
        Ok(breaker)
    }

    /// A builder of a [`KeyedCircuitBreaker`]: one breaker per key (host, tenant, endpoint),
    /// each configured as this builder says, created on first use. Its name and metrics are
    /// the keyed breaker's. See [`KeyedCircuitBreakerBuilder`] for the keyed settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker};
    ///
    /// let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
    ///     .name("upstream")
    ///     .consecutive_failures(3)
    ///     .open_duration(Duration::from_secs(10))
    ///     .keyed()
    ///     .max_keys(1_000)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(hosts.len(), 0);
    /// ```
    pub fn keyed<K>(self) -> KeyedCircuitBreakerBuilder<K> {
        KeyedCircuitBreakerBuilder {
            breaker: self,
            max_keys: KeyedCircuitBreakerBuilder::<K>::DEFAULT_MAX_KEYS,
            overrides: Vec::new(),
        }
    }

    /// Validates the settings into a template breakers can be built from, any number of
    /// times (the keyed breaker builds one per key).
    pub(crate) fn into_template(self) -> Result<(Template, Option<Metrics>), ConfigError> {
        self.validate()?;
        let Some(first_open) = self.open.first() else {
            return Err(ConfigError::new(
                "open_durations",
                "must yield at least one duration, got an empty sequence",
            ));
        };
        let template = Template {
            name: self.name,
            trip: self.trip,
            slow: self.slow,
            open: self.open,
            first_open: first_open.min(MAX_DURATION),
            jitter: self.jitter,
            seed: self.seed,
            probes: self.probes,
            successes_to_close: self.successes_to_close,
            max_probe: self.max_probe,
        };
        Ok((template, self.metrics))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match self.trip {
            TripPolicy::ConsecutiveFailures(0) => {
                return Err(ConfigError::new(
                    self.trip_field,
                    "consecutive failures must be in 1..=4294967295, got 0",
                ));
            }
            TripPolicy::ConsecutiveFailures(_) => {}
            TripPolicy::FailureRate { threshold, window } => {
                validate_rate(threshold, self.trip_field, "threshold")?;
                window.validate(self.trip_field)?;
            }
        }
        match self.slow {
            None => {}
            Some(SlowCalls::AsFailures { threshold }) => {
                check_duration(self.slow_field, "threshold", threshold, false)?;
            }
            Some(SlowCalls::Rate {
                threshold,
                rate,
                window,
            }) => {
                check_duration(self.slow_field, "threshold", threshold, false)?;
                validate_rate(rate, self.slow_field, "rate")?;
                window.validate(self.slow_field)?;
            }
        }
        if let Some(d) = self.fixed_open {
            check_duration("open_duration", "open duration", d, true)?;
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::new(
                "jitter",
                format!("must be in [0, 1], got {}", self.jitter),
            ));
        }
        if !(1..=MAX_PROBES).contains(&self.probes) {
            return Err(ConfigError::new(
                "probes",
                format!("must be in 1..={MAX_PROBES}, got {}", self.probes),
            ));
        }
        if self.successes_to_close == 0 {
            return Err(ConfigError::new(
                "successes_to_close",
                "must be in 1..=4294967295, got 0",
            ));
        }
        check_duration(
            "max_probe_duration",
            "max probe duration",
            self.max_probe,
            false,
        )
    }
}

/// Checks `d <= MAX_DURATION` and, unless `zero_ok`, `d > 0`.
fn check_duration(
    field: &'static str,
    what: &str,
    d: Duration,
    zero_ok: bool,
) -> Result<(), ConfigError> {
    if d > MAX_DURATION || (!zero_ok && d.is_zero()) {
        let low = if zero_ok { "0 s" } else { "1 ns" };
        return Err(ConfigError::new(
            field,
            format!("{what} must be in {low}..=365 days, got {d:?}"),
        ));
    }
    Ok(())
}

/// A validated configuration: what `build` makes a breaker from.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) name: Arc<str>,
    trip: TripPolicy,
    slow: Option<SlowCalls>,
    open: OpenDurations,
    first_open: Duration,
    jitter: f64,
    pub(crate) seed: Option<u64>,
    probes: u32,
    successes_to_close: u32,
    max_probe: Duration,
}

impl Template {
    /// A new breaker, closed, named `name`, its jitter seeded by `seed` (from the OS if
    /// `None`), counting into `metrics`.
    pub(crate) fn instantiate(
        &self,
        name: Arc<str>,
        seed: Option<u64>,
        metrics: Option<BreakerMetrics>,
    ) -> CircuitBreaker {
        let cfg = Config {
            trip: self.trip,
            slow: self.slow,
            open: self.open.clone(),
            first_open: self.first_open,
            jitter: self.jitter,
            probes: self.probes,
            successes_to_close: self.successes_to_close,
            max_probe: self.max_probe,
        };
        CircuitBreaker {
            inner: Arc::new(Inner::new(name, cfg, seed, metrics)),
        }
    }
}
