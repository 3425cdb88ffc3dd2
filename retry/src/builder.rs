//! The builders: [`RetryPolicyBuilder`] here, [`BackoffBuilder`] and [`RetryBudgetBuilder`] in
//! `builder/`.

use std::fmt;
use std::time::Duration;

mod backoff;
mod budget;

pub use backoff::BackoffBuilder;
pub use budget::RetryBudgetBuilder;

use crate::backoff::{Backoff, Jitter};
use crate::budget::RetryBudget;
use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::policy::{BoxedDelays, DelayFactory, Delays0, Inner, RetryPolicy};

/// The default cap on a server's hint ([`RetryPolicyBuilder::max_hint`]).
const DEFAULT_MAX_HINT: Duration = Duration::from_secs(300);

/// Builds a [`RetryPolicy`].
///
/// # Default
/// | setting | default | allowed |
/// |---|---|---|
/// | `name` | `"default"` | any (keep it a fixed, low-cardinality name) |
/// | `max_attempts` | 3 (the first attempt and two retries) | `1..=u32::MAX` |
/// | backoff | exponential from 1 s, factor 2: 1 s, 2 s, 4 s, ... | see [`BackoffBuilder`] |
/// | `max_delay` | 30 s, or the initial delay if that is longer | at least the initial delay |
/// | `max_hint` | 5 min | any (saturating) |
/// | `jitter` | [`Jitter::None`] (set [`Jitter::Full`] when many clients retry the same thing) | |
/// | `seed` | none (each call draws from a fresh seed) | any |
/// | `attempt_timeout` | none | above zero (saturating) |
/// | `max_elapsed` | none | any (saturating) |
/// | `budget` | none | |
/// | `metrics` | none | |
///
/// Durations saturate: a sleep or attempt timeout above 30 years (`Duration::MAX` included) is
/// set for 30 years, a deadline too far away to represent is no deadline, never an overflow. Which errors are transient, the server's hint and the notify hook
/// depend on the error type, so they are given per call ([`Retrying::retry_if`],
/// [`Retrying::retry_after`], [`Retrying::notify`]) and the policy serves any error type.
///
/// The backoff setters ([`constant`](Self::constant), [`linear`](Self::linear),
/// [`exponential`](Self::exponential), [`factor`](Self::factor),
/// [`max_delay`](Self::max_delay), [`jitter`](Self::jitter), [`seed`](Self::seed)) may come in
/// any order; [`backoff`](Self::backoff) and [`backoff_fn`](Self::backoff_fn) replace the
/// schedule wholesale.
///
/// [`Retrying::retry_if`]: crate::Retrying::retry_if
/// [`Retrying::retry_after`]: crate::Retrying::retry_after
/// [`Retrying::notify`]: crate::Retrying::notify
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use seawall_retry::{Jitter, RetryPolicyBuilder};
///
/// let policy = RetryPolicyBuilder::new()
///     .name("upstream")
///     .exponential(Duration::from_millis(100))
///     .jitter(Jitter::Full)
///     .build()?;
/// assert_eq!(policy.max_attempts(), 3);
/// # Ok::<(), seawall_retry::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryPolicyBuilder {
    name: String,
    max_attempts: u32,
    backoff: BackoffBuilder,
    factor: Option<f64>,
    max_delay: Option<Duration>,
    max_hint: Duration,
    jitter: Option<Jitter>,
    seed: Option<u64>,
    custom: Option<Box<DelayFactory>>,
    attempt_timeout: Option<Duration>,
    max_elapsed: Option<Duration>,
    budget: Option<RetryBudget>,
    metrics: Option<Metrics>,
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("name", &self.name)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("factor", &self.factor)
            .field("max_delay", &self.max_delay)
            .field("max_hint", &self.max_hint)
            .field("jitter", &self.jitter)
            .field("seed", &self.seed)
            .field("custom_backoff", &self.custom.is_some())
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_elapsed", &self.max_elapsed)
            .field("budget", &self.budget)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl RetryPolicyBuilder {
    /// A builder with the defaults (see the table above).
    ///
    /// # Examples
    /// ```
    /// let policy = seawall_retry::RetryPolicyBuilder::new().build()?;
    /// assert_eq!(policy.name(), "default");
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn new() -> Self {
        RetryPolicyBuilder {
            name: "default".to_owned(),
            max_attempts: 3,
            backoff: BackoffBuilder::new(),
            factor: None,
            max_delay: None,
            max_hint: DEFAULT_MAX_HINT,
            jitter: None,
            seed: None,
            custom: None,
            attempt_timeout: None,
            max_elapsed: None,
            budget: None,
            metrics: None,
        }
    }

    /// Names the policy: the `policy` label of its metrics and a field of its tracing events.
    /// Keep it a fixed, low-cardinality name such as `"upstream"`.
    ///
    /// # Examples
    /// ```
    /// let policy = seawall_retry::RetryPolicy::builder().name("redis").build()?;
    /// assert_eq!(policy.name(), "redis");
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most attempts per call, including the first (3 means up to 2 retries; at least 1).
    ///
    /// # Examples
    /// ```
    /// let policy = seawall_retry::RetryPolicy::builder().max_attempts(5).build()?;
    /// assert_eq!(policy.max_attempts(), 5);
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Uses a prepared schedule (its jitter, cap and seed included); later backoff setters
    /// adjust it.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// use seawall_retry::{Backoff, RetryPolicy};
    /// let policy = RetryPolicy::builder()
    ///     .backoff(Backoff::linear(Duration::from_millis(10), Duration::from_millis(10)))
    ///     .build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn backoff(mut self, backoff: BackoffBuilder) -> Self {
        self.backoff = backoff;
        self.custom = None;
        self
    }

    /// Uses a custom schedule: `make` is called (at the first failure of each call) for a fresh
    /// iterator of delays. A finite iterator also ends the retries when it runs out. This boxes
    /// the iterator once per failing call; the built-in schedules allocate nothing.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let policy = seawall_retry::RetryPolicy::builder()
    ///     .backoff_fn(|| [10, 50, 250].into_iter().map(Duration::from_millis))
    ///     .build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn backoff_fn<F, I>(mut self, make: F) -> Self
    where
        F: Fn() -> I + Send + Sync + 'static,
        I: Iterator<Item = Duration> + Send + 'static,
    {
        self.custom = Some(Box::new(move || Box::new(make()) as BoxedDelays));
        self
    }

    /// The same delay before every retry.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let policy = seawall_retry::RetryPolicy::builder().constant(Duration::ZERO).build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn constant(mut self, delay: Duration) -> Self {
        self.backoff = Backoff::constant(delay);
        self.custom = None;
        self
    }

    /// `initial`, then `initial + step`, `initial + 2 × step`, ...
    pub fn linear(mut self, initial: Duration, step: Duration) -> Self {
        self.backoff = Backoff::linear(initial, step);
        self.custom = None;
        self
    }

    /// `initial`, then `initial × factor`, ... (factor 2 unless [`factor`](Self::factor) says
    /// otherwise).
    pub fn exponential(mut self, initial: Duration) -> Self {
        self.backoff = Backoff::exponential(initial);
        self.custom = None;
        self
    }

    /// The growth factor of the exponential schedule (finite, >= 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = Some(factor);
        self
    }

    /// The cap on every backoff delay (not on a server's hint: see
    /// [`max_hint`](Self::max_hint)).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// The cap on a server's hint ([`Retrying::retry_after`](crate::Retrying::retry_after)),
    /// separate from `max_delay`: a hint above it is waited out only up to this long. A hint
    /// that would end past the deadline stops the call with
    /// [`RetryError::HintBeyondDeadline`](crate::RetryError::HintBeyondDeadline).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let policy = seawall_retry::RetryPolicy::builder()
    ///     .max_delay(Duration::from_secs(10))
    ///     .max_hint(Duration::from_secs(120)) // honour a Retry-After of up to 2 minutes
    ///     .build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn max_hint(mut self, max_hint: Duration) -> Self {
        self.max_hint = max_hint;
        self
    }

    /// The jitter kind ([`Jitter`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Seeds the jitter: every call then sees the same delay sequence (for tests and demos).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Bounds each attempt: an attempt still running after `timeout` is dropped and counts as
    /// a transient failure ([`AttemptError::Timeout`](crate::AttemptError::Timeout)). Must be
    /// above zero. Not applied by [`retry_blocking`](RetryPolicy::retry_blocking).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let policy = seawall_retry::RetryPolicy::builder()
    ///     .attempt_timeout(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A total deadline, `max_elapsed` after the call starts: no sleep is started that would end
    /// past it (the call stops with [`RetryError::Deadline`](crate::RetryError::Deadline)
    /// instead). An attempt already running is not cut short; combine with
    /// [`attempt_timeout`](Self::attempt_timeout).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let policy = seawall_retry::RetryPolicy::builder()
    ///     .max_elapsed(Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = Some(max_elapsed);
        self
    }

    /// Attaches a shared [`RetryBudget`]: every call deposits, every retry withdraws.
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{RetryBudget, RetryPolicy};
    /// let budget = RetryBudget::default();
    /// let a = RetryPolicy::builder().name("a").budget(budget.clone()).build()?;
    /// let b = RetryPolicy::builder().name("b").budget(budget).build()?;
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Records this policy's metrics in `metrics` (labelled with its name).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Validates the configuration and builds the policy.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `max_attempts` (0), `attempt_timeout` (zero), `factor` (NaN,
    /// infinite or below 1) or `max_delay` (below the initial delay).
    ///
    /// # Panics
    /// Never.
    ///
    /// # Examples
    /// ```
    /// let err = seawall_retry::RetryPolicy::builder().max_attempts(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_attempts");
    /// ```
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                "max_attempts",
                "must be at least 1, got 0",
            ));
        }
        if self.attempt_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be above zero, got 0ns",
            ));
        }
        let mut b = self.backoff;
        if let Some(f) = self.factor {
            b = b.factor(f);
        }
        if let Some(d) = self.max_delay {
            b = b.max_delay(d);
        }
        if let Some(j) = self.jitter {
            b = b.jitter(j);
        }
        if let Some(s) = self.seed {
            b = b.seed(s);
        }
        let built = b.build()?;
        let max_delay = built.max_delay();
        let (backoff, fixed_delay) = match self.custom {
            Some(f) => (Delays0::Custom(f), None),
            None => (Delays0::Builtin(built.schedule()), built.schedule().fixed()),
        };
        let metrics = self
            .metrics
            .map(|m| m.resolve(&self.name, self.budget.is_some()));
        if let (Some(m), Some(budget)) = (&metrics, &self.budget) {
            m.budget_tokens.set(budget.tokens());
        }
        Ok(RetryPolicy::from_inner(Inner {
            name: self.name,
            max_attempts: self.max_attempts,
            backoff,
            fixed_delay,
            max_delay,
            max_hint: self.max_hint,
            attempt_timeout: self.attempt_timeout,
            max_elapsed: self.max_elapsed,
            needs_start: self.budget.is_some() || self.max_elapsed.is_some(),
            plain: self.budget.is_none()
                && self.max_elapsed.is_none()
                && self.attempt_timeout.is_none(),
            budget: self.budget,
            metrics,
        }))
    }

    /// Builds from settings known to be valid (the defaults).
    pub(crate) fn build_valid(self) -> RetryPolicy {
        self.build()
            .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}
