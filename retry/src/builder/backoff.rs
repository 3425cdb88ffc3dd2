//! [`BackoffBuilder`]: validates a delay schedule.

use std::time::Duration;

use crate::backoff::{Backoff, DEFAULT_MAX_DELAY, Jitter, Kind, nanos};
use crate::error::ConfigError;

/// Builds a [`Backoff`]; start from [`Backoff::constant`], [`Backoff::linear`] or
/// [`Backoff::exponential`] (or [`BackoffBuilder::new`], the default schedule).
///
/// Durations saturate: a delay, step or cap above `u64::MAX` nanoseconds (584 years, e.g.
/// `Duration::MAX`) is taken as 584 years, and a growing schedule stops growing at its cap.
///
/// # Default
/// | setting | default |
/// |---|---|
/// | schedule | exponential from 1 s |
/// | `factor` (exponential only) | 2 |
/// | `max_delay` | 30 s, or the initial delay if that is longer |
/// | `jitter` | [`Jitter::None`] |
/// | `seed` | none: every iterator draws from its own fresh seed |
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use seawall_retry::BackoffBuilder;
///
/// let delays: Vec<_> = BackoffBuilder::new().build()?.take(3).collect();
/// assert_eq!(delays, [1, 2, 4].map(Duration::from_secs));
/// # Ok::<(), seawall_retry::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BackoffBuilder {
    kind: Kind,
    initial: Duration,
    max_delay: Option<Duration>,
    jitter: Jitter,
    seed: Option<u64>,
}

impl Default for BackoffBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BackoffBuilder {
    /// The default schedule: exponential from 1 s, factor 2, capped at 30 s, no jitter.
    ///
    /// # Examples
    /// ```
    /// let b = seawall_retry::BackoffBuilder::new().build()?;
    /// assert_eq!(b.max_delay(), std::time::Duration::from_secs(30));
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn new() -> Self {
        Self::with_kind(Kind::Exponential { factor: 2.0 }, Duration::from_secs(1))
    }

    pub(crate) fn with_kind(kind: Kind, initial: Duration) -> Self {
        BackoffBuilder {
            kind,
            initial,
            max_delay: None,
            jitter: Jitter::None,
            seed: None,
        }
    }

    /// The growth factor of an exponential schedule (a finite number >= 1; a huge factor
    /// reaches the cap at the second delay). Setting it on a constant or linear schedule turns
    /// that schedule exponential from its initial delay.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let b = seawall_retry::Backoff::exponential(Duration::from_secs(1)).factor(3.0).build()?;
    /// assert_eq!(b.take(3).collect::<Vec<_>>(), [1, 3, 9].map(Duration::from_secs));
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn factor(mut self, factor: f64) -> Self {
        self.kind = Kind::Exponential { factor };
        self
    }

    /// The cap on every delay, jitter included (at least the initial delay).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// let b = seawall_retry::Backoff::exponential(Duration::from_secs(1))
    ///     .max_delay(Duration::from_secs(3))
    ///     .build()?;
    /// assert_eq!(b.take(4).collect::<Vec<_>>(), [1, 2, 3, 3].map(Duration::from_secs));
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = Some(max_delay);
        self
    }

    /// The jitter kind (see [`Jitter`]).
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// use seawall_retry::{Backoff, Jitter};
    /// let b = Backoff::constant(Duration::from_secs(1)).jitter(Jitter::Full).build()?;
    /// assert_eq!(b.jitter_kind(), Jitter::Full);
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the random number generator: every iterator built from this schedule then yields
    /// the same sequence. For tests and demos; leave unset in production so that clients that
    /// failed together spread out.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// use seawall_retry::{Backoff, Jitter};
    /// let b = Backoff::exponential(Duration::from_secs(1)).jitter(Jitter::Full).seed(7);
    /// let one: Vec<_> = b.build()?.take(5).collect();
    /// let two: Vec<_> = b.build()?.take(5).collect();
    /// assert_eq!(one, two);
    /// # Ok::<(), seawall_retry::ConfigError>(())
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The effective cap: the explicit `max_delay`, or 30 s / the initial delay.
    pub(crate) fn effective_max_delay(&self) -> Duration {
        self.max_delay
            .unwrap_or_else(|| DEFAULT_MAX_DELAY.max(self.initial))
    }

    /// Validates and builds the schedule.
    ///
    /// # Errors
    /// A [`ConfigError`] for `factor` when it is NaN, infinite or below 1, and for `max_delay`
    /// when it is below the initial delay.
    ///
    /// # Panics
    /// Never.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// use seawall_retry::Backoff;
    /// let err = Backoff::exponential(Duration::from_secs(1)).factor(0.5).build().unwrap_err();
    /// assert_eq!(err.field(), "factor");
    /// assert_eq!(err.reason(), "must be a finite number >= 1, got 0.5");
    /// ```
    pub fn build(&self) -> Result<Backoff, ConfigError> {
        if let Kind::Exponential { factor } = self.kind
            && !(factor.is_finite() && factor >= 1.0)
        {
            return Err(ConfigError::new(
                "factor",
                format!("must be a finite number >= 1, got {factor}"),
            ));
        }
        let max_delay = self.effective_max_delay();
        if max_delay < self.initial {
            return Err(ConfigError::new(
                "max_delay",
                format!(
                    "must be at least the initial delay {:?}, got {max_delay:?}",
                    self.initial
                ),
            ));
        }
        Ok(Backoff::new(
            self.kind,
            nanos(self.initial),
            nanos(max_delay),
            self.jitter,
            self.seed,
        ))
    }
}
