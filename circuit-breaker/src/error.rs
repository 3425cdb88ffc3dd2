//! Errors: a rejected call, a failed call, an invalid configuration.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::State;

/// The error of [`CircuitBreaker::call`](crate::CircuitBreaker::call): either the breaker
/// rejected the call without running it, or the call ran and returned its own error, passed
/// through unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error<E> {
    /// The breaker is open (or half-open with every probe slot taken, or forced open): the
    /// call was not made.
    Open {
        /// How long until the breaker may let a call through again; see [`Rejected`].
        retry_after: Duration,
    },
    /// The call was made and failed with this error.
    Inner(E),
}

impl<E> Error<E> {
    /// `true` for [`Error::Open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::Error;
    ///
    /// assert!(Error::<()>::Open { retry_after: Duration::from_secs(1) }.is_open());
    /// assert!(!Error::Inner("down").is_open());
    /// ```
    pub const fn is_open(&self) -> bool {
        matches!(self, Error::Open { .. })
    }

    /// The inner error, or `None` when the call was rejected.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::Error;
    ///
    /// assert_eq!(Error::Inner("down").into_inner(), Some("down"));
    /// ```
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::Open { .. } => None,
        }
    }

    /// The `retry_after` of a rejection, `None` for [`Error::Inner`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::Error;
    ///
    /// let e = Error::<()>::Open { retry_after: Duration::from_secs(3) };
    /// assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    /// ```
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Open { retry_after } => Some(*retry_after),
            Error::Inner(_) => None,
        }
    }
}

impl<E> From<Rejected> for Error<E> {
    fn from(r: Rejected) -> Self {
        Error::Open {
            retry_after: r.retry_after,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open { retry_after } => {
                write!(f, "circuit breaker open, retry after {retry_after:?}")
            }
            Error::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: StdError + 'static> StdError for Error<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Open { .. } => None,
            Error::Inner(e) => e.source(),
        }
    }
}

/// The error of [`CircuitBreaker::try_acquire`](crate::CircuitBreaker::try_acquire): the
/// breaker does not let a call through now.
///
/// `retry_after` is what the caller needs next:
/// - [`State::Open`]: the time left until the open duration ends and probes may pass;
/// - [`State::HalfOpen`] with every probe slot taken: the open duration that preceded the
///   probes, a conservative hint (the probes may decide sooner);
/// - [`State::ForcedOpen`]: the configured first open duration, a hint only, since an
///   operator decides when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejected {
    /// How long to wait before trying again.
    pub retry_after: Duration,
    /// The state that rejected the call: `Open`, `HalfOpen` or `ForcedOpen`.
    pub state: State,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker {}, retry after {:?}",
            self.state, self.retry_after
        )
    }
}

impl StdError for Rejected {}

/// An invalid setting, returned by [`CircuitBreakerBuilder::build`](crate::CircuitBreakerBuilder::build):
/// names the builder setter and says what it accepts.
///
/// The same shape as every seawall crate's `ConfigError`. `Display` reads
/// ``invalid `field`: reason``.
///
/// # Examples
///
/// ```
/// use seawall_circuit_breaker::CircuitBreaker;
///
/// let err = CircuitBreaker::builder().probes(0).build().unwrap_err();
/// assert_eq!(err.field(), "probes");
/// assert_eq!(err.reason(), "must be in 1..=10000, got 0");
/// assert_eq!(err.to_string(), "invalid `probes`: must be in 1..=10000, got 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The builder setter's name, e.g. `"probes"`, `"open_duration"` or `"failure_rate"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let err = CircuitBreaker::builder().jitter(2.0).build().unwrap_err();
    /// assert_eq!(err.field(), "jitter");
    /// ```
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why, stating the allowed range and the value given, e.g. `"must be in 1..=10000, got 0"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    ///
    /// let err = CircuitBreaker::builder().jitter(2.0).build().unwrap_err();
    /// assert_eq!(err.reason(), "must be in [0, 1], got 2");
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl StdError for ConfigError {}
