//! Errors: a rejected call, a failed call, an invalid configuration.

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
    pub const fn is_open(&self) -> bool {
        matches!(self, Error::Open { .. })
    }

    /// The inner error, or `None` when the call was rejected.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::Open { .. } => None,
        }
    }

    /// The `retry_after` of a rejection, `None` for [`Error::Inner`].
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

/// An invalid breaker configuration, returned by
/// [`Builder::build`](crate::Builder::build); names the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            field,
            message: message.into(),
        }
    }

    /// The builder field that is invalid, e.g. `"probes"` or `"failure_rate.threshold"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid circuit breaker config: `{}` {}",
            self.field, self.message
        )
    }
}

impl StdError for ConfigError {}
