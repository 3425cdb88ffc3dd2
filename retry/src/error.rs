//! Errors: what a retry loop returns when it gives up, and invalid configuration.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Why a single attempt failed: the operation's own error, or the per-attempt timeout.
///
/// A timed-out attempt has no `E` to give back, so the last failure of a retry loop is one of
/// these. Both are treated as transient unless the predicate (for `Failed`) says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError<E> {
    /// The operation returned this error.
    Failed(E),
    /// The attempt did not finish within the policy's `attempt_timeout` (this long).
    TimedOut(Duration),
}

impl<E> AttemptError<E> {
    /// The operation's error, if the attempt did not time out.
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Failed(e) => Some(e),
            Self::TimedOut(_) => None,
        }
    }

    /// Consumes `self`, giving back the operation's error, if the attempt did not time out.
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Failed(e) => Some(e),
            Self::TimedOut(_) => None,
        }
    }

    /// `true` when the attempt was cut short by the per-attempt timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut(_))
    }
}

impl<E: fmt::Display> fmt::Display for AttemptError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::TimedOut(d) => write!(f, "attempt timed out after {d:?}"),
        }
    }
}

impl<E: Error + 'static> Error for AttemptError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Failed(e) => Some(e),
            Self::TimedOut(_) => None,
        }
    }
}

/// Why a retry loop stopped without a success. Every variant gives back the caller's error.
///
/// | variant | meaning |
/// |---|---|
/// | [`Exhausted`](Self::Exhausted) | `max_attempts` were made (or a finite backoff ran out) |
/// | [`Permanent`](Self::Permanent) | the predicate classified the error as permanent |
/// | [`Deadline`](Self::Deadline) | the next delay would have ended past `max_elapsed` |
/// | [`HintBeyondDeadline`](Self::HintBeyondDeadline) | the server's hint would have ended past `max_elapsed` |
/// | [`Budget`](Self::Budget) | the shared [`RetryBudget`](crate::RetryBudget) refused a retry |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError<E> {
    /// Every allowed attempt failed with a transient error.
    Exhausted {
        /// Attempts made, including the first.
        attempts: u32,
        /// The last attempt's failure.
        last: AttemptError<E>,
    },
    /// The predicate classified this error as permanent: no retry was made for it.
    Permanent {
        /// Attempts made, including the first (the last one returned `error`).
        attempts: u32,
        /// The permanent error, unchanged.
        error: E,
    },
    /// The next retry would have started (or its delay ended) past the policy's deadline.
    Deadline {
        /// Attempts made, including the first.
        attempts: u32,
        /// The delay that would have been slept before the next attempt.
        next_delay: Duration,
        /// The last attempt's failure.
        last: AttemptError<E>,
    },
    /// The server's hint (a `Retry-After`, already capped at `max_hint`) asked for a wait that
    /// would have ended past the policy's deadline: no retry was made, because retrying earlier
    /// than the server asked would only be refused again.
    HintBeyondDeadline {
        /// Attempts made, including the first.
        attempts: u32,
        /// The hinted wait (after the `max_hint` cap) that did not fit.
        hint: Duration,
        /// The last attempt's failure (the one that carried the hint).
        last: AttemptError<E>,
    },
    /// The retry budget had no token left for another retry.
    Budget {
        /// Attempts made, including the first.
        attempts: u32,
        /// The last attempt's failure.
        last: AttemptError<E>,
    },
}

impl<E> RetryError<E> {
    /// Attempts made, including the first one.
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::Permanent { attempts, .. }
            | Self::Deadline { attempts, .. }
            | Self::HintBeyondDeadline { attempts, .. }
            | Self::Budget { attempts, .. } => *attempts,
        }
    }

    /// The last attempt's failure, borrowed (a permanent error is wrapped in `Failed`).
    pub fn last(&self) -> AttemptError<&E> {
        match self {
            Self::Permanent { error, .. } => AttemptError::Failed(error),
            Self::Exhausted { last, .. }
            | Self::Deadline { last, .. }
            | Self::HintBeyondDeadline { last, .. }
            | Self::Budget { last, .. } => match last {
                AttemptError::Failed(e) => AttemptError::Failed(e),
                AttemptError::TimedOut(d) => AttemptError::TimedOut(*d),
            },
        }
    }

    /// The caller's error from the last attempt, or `None` if that attempt timed out.
    pub fn last_error(&self) -> Option<&E> {
        match self.last() {
            AttemptError::Failed(e) => Some(e),
            AttemptError::TimedOut(_) => None,
        }
    }

    /// Consumes `self`, giving back the caller's error from the last attempt, or `None` if that
    /// attempt timed out.
    pub fn into_last_error(self) -> Option<E> {
        match self {
            Self::Permanent { error, .. } => Some(error),
            Self::Exhausted { last, .. }
            | Self::Deadline { last, .. }
            | Self::HintBeyondDeadline { last, .. }
            | Self::Budget { last, .. } => last.into_error(),
        }
    }

    /// A short, stable name for the stop reason: `exhausted`, `permanent`, `deadline`,
    /// `hint_beyond_deadline` or `budget` (the `result` label of `seawall_retry_calls_total`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Exhausted { .. } => "exhausted",
            Self::Permanent { .. } => "permanent",
            Self::Deadline { .. } => "deadline",
            Self::HintBeyondDeadline { .. } => "hint_beyond_deadline",
            Self::Budget { .. } => "budget",
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts: {last}")
            }
            Self::Permanent { attempts, error } => {
                write!(f, "permanent error on attempt {attempts}: {error}")
            }
            Self::Deadline {
                attempts,
                next_delay,
                last,
            } => write!(
                f,
                "deadline reached after {attempts} attempts (next delay {next_delay:?}): {last}"
            ),
            Self::HintBeyondDeadline {
                attempts,
                hint,
                last,
            } => write!(
                f,
                "server asked to wait {hint:?}, past the deadline, after {attempts} attempts: {last}"
            ),
            Self::Budget { attempts, last } => {
                write!(
                    f,
                    "retry budget exhausted after {attempts} attempts: {last}"
                )
            }
        }
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Permanent { error, .. } => Some(error),
            Self::Exhausted { last, .. }
            | Self::Deadline { last, .. }
            | Self::HintBeyondDeadline { last, .. }
            | Self::Budget { last, .. } => match last {
                AttemptError::Failed(e) => Some(e),
                AttemptError::TimedOut(_) => None,
            },
        }
    }
}

/// Invalid configuration, returned by a builder's `build()`. [`field`](Self::field) names the
/// offending setter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `factor` was NaN, infinite or below 1.
    Factor {
        /// The rejected value.
        value: f64,
    },
    /// `max_attempts` was zero (one attempt is the minimum: the call itself).
    ZeroAttempts,
    /// `max_delay` was below the initial delay.
    MaxDelayBelowInitial {
        /// The initial (or constant) delay.
        initial: Duration,
        /// The rejected cap.
        max_delay: Duration,
    },
    /// `ratio` of a retry budget was NaN, negative, or above 1000.
    Ratio {
        /// The rejected value.
        value: f64,
    },
    /// `max_tokens` of a retry budget was zero.
    ZeroMaxTokens,
}

impl ConfigError {
    /// The name of the setter whose value was rejected (`"factor"`, `"max_attempts"`,
    /// `"max_delay"`, `"ratio"`, `"max_tokens"`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::Factor { .. } => "factor",
            Self::ZeroAttempts => "max_attempts",
            Self::MaxDelayBelowInitial { .. } => "max_delay",
            Self::Ratio { .. } => "ratio",
            Self::ZeroMaxTokens => "max_tokens",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Factor { value } => {
                write!(f, "invalid `factor` {value}: must be a finite number >= 1")
            }
            Self::ZeroAttempts => f.write_str("invalid `max_attempts` 0: must be at least 1"),
            Self::MaxDelayBelowInitial { initial, max_delay } => write!(
                f,
                "invalid `max_delay` {max_delay:?}: must not be below the initial delay {initial:?}"
            ),
            Self::Ratio { value } => {
                write!(
                    f,
                    "invalid `ratio` {value}: must be a finite number in 0..=1000"
                )
            }
            Self::ZeroMaxTokens => f.write_str("invalid `max_tokens` 0: must be at least 1"),
        }
    }
}

impl Error for ConfigError {}
