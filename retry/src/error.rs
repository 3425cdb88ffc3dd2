//! Errors: what a retry loop returns when it gives up, and invalid configuration.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Why a single attempt failed: the operation's own error, or the per-attempt timeout.
///
/// A timed-out attempt has no `E` to give back, so the last failure of a retry loop is one of
/// these. Both are treated as transient unless the predicate (for `Inner`) says otherwise.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use seawall_retry::AttemptError;
///
/// let failed: AttemptError<&str> = AttemptError::Inner("reset");
/// assert_eq!(failed.error(), Some(&"reset"));
/// let timed_out: AttemptError<&str> = AttemptError::Timeout { after: Duration::from_secs(1) };
/// assert!(timed_out.is_timeout());
/// assert_eq!(timed_out.to_string(), "attempt timed out after 1s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError<E> {
    /// The operation returned this error, unchanged.
    Inner(E),
    /// The attempt did not finish within the policy's `attempt_timeout`.
    Timeout {
        /// The attempt timeout that ran out.
        after: Duration,
    },
}

impl<E> AttemptError<E> {
    /// The operation's error, if the attempt did not time out.
    ///
    /// # Examples
    /// ```
    /// # use seawall_retry::AttemptError;
    /// assert_eq!(AttemptError::Inner(7).error(), Some(&7));
    /// ```
    pub fn error(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Timeout { .. } => None,
        }
    }

    /// Consumes `self`, giving back the operation's error, if the attempt did not time out.
    ///
    /// # Examples
    /// ```
    /// # use std::time::Duration;
    /// # use seawall_retry::AttemptError;
    /// let e = AttemptError::<u8>::Timeout { after: Duration::from_secs(1) };
    /// assert_eq!(e.into_error(), None);
    /// ```
    pub fn into_error(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Timeout { .. } => None,
        }
    }

    /// `true` when the attempt was cut short by the per-attempt timeout.
    ///
    /// # Examples
    /// ```
    /// # use seawall_retry::AttemptError;
    /// assert!(!AttemptError::Inner("reset").is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

impl<E: fmt::Display> fmt::Display for AttemptError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => e.fmt(f),
            Self::Timeout { after } => write!(f, "attempt timed out after {after:?}"),
        }
    }
}

impl<E: Error + 'static> Error for AttemptError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Timeout { .. } => None,
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
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{AttemptError, RetryError};
    /// let err = RetryError::Exhausted { attempts: 3, last: AttemptError::Inner("reset") };
    /// assert_eq!(err.attempts(), 3);
    /// ```
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Exhausted { attempts, .. }
            | Self::Permanent { attempts, .. }
            | Self::Deadline { attempts, .. }
            | Self::HintBeyondDeadline { attempts, .. }
            | Self::Budget { attempts, .. } => *attempts,
        }
    }

    /// The last attempt's failure, borrowed (a permanent error is wrapped in `Inner`).
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{AttemptError, RetryError};
    /// let err = RetryError::Exhausted { attempts: 3, last: AttemptError::Inner("reset") };
    /// assert_eq!(err.last(), AttemptError::Inner(&"reset"));
    /// ```
    pub fn last(&self) -> AttemptError<&E> {
        match self {
            Self::Permanent { error, .. } => AttemptError::Inner(error),
            Self::Exhausted { last, .. }
            | Self::Deadline { last, .. }
            | Self::HintBeyondDeadline { last, .. }
            | Self::Budget { last, .. } => match last {
                AttemptError::Inner(e) => AttemptError::Inner(e),
                AttemptError::Timeout { after } => AttemptError::Timeout { after: *after },
            },
        }
    }

    /// The caller's error from the last attempt, or `None` if that attempt timed out.
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{AttemptError, RetryError};
    /// let err = RetryError::Exhausted { attempts: 3, last: AttemptError::Inner("reset") };
    /// assert_eq!(err.last_error(), Some(&"reset"));
    /// ```
    pub fn last_error(&self) -> Option<&E> {
        match self.last() {
            AttemptError::Inner(e) => Some(e),
            AttemptError::Timeout { .. } => None,
        }
    }

    /// Consumes `self`, giving back the caller's error from the last attempt, or `None` if that
    /// attempt timed out.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use seawall_retry::{AttemptError, RetryError};
    /// let err = RetryError::<&str>::Budget {
    ///     attempts: 2,
    ///     last: AttemptError::Timeout { after: Duration::from_secs(1) },
    /// };
    /// assert_eq!(err.into_last_error(), None);
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{AttemptError, RetryError};
    /// let err = RetryError::Exhausted { attempts: 3, last: AttemptError::Inner("reset") };
    /// assert_eq!(err.reason(), "exhausted");
    /// ```
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
                AttemptError::Inner(e) => Some(e),
                AttemptError::Timeout { .. } => None,
            },
        }
    }
}

/// An invalid setting, returned by a builder's `build()`
/// ([`RetryPolicyBuilder`](crate::RetryPolicyBuilder), [`BackoffBuilder`](crate::BackoffBuilder),
/// [`RetryBudgetBuilder`](crate::RetryBudgetBuilder)).
///
/// [`field`](Self::field) is the name of the setter whose value was rejected,
/// [`reason`](Self::reason) states the allowed range and the value given. Displayed as
/// ``invalid `field`: reason``.
///
/// # Examples
/// ```
/// use seawall_retry::RetryPolicy;
///
/// let err = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_attempts");
/// assert_eq!(err.reason(), "must be at least 1, got 0");
/// assert_eq!(err.to_string(), "invalid `max_attempts`: must be at least 1, got 0");
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

    /// The builder setter's name, e.g. `"max_attempts"`, `"factor"`, `"ratio"`.
    ///
    /// # Examples
    /// ```
    /// let err = seawall_retry::RetryBudget::builder().max_tokens(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_tokens");
    /// ```
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why: the allowed range and the value given, e.g. `"must be at least 1, got 0"`.
    ///
    /// # Examples
    /// ```
    /// let err = seawall_retry::RetryBudget::builder().ratio(f64::NAN).build().unwrap_err();
    /// assert_eq!(err.reason(), "must be a finite number in 0..=1000, got NaN");
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

impl Error for ConfigError {}
