//! Error types.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::FencingToken;

/// Returned by `try_lock` when another holder has the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// When the current holder was granted the lease.
    pub held_since: Instant,
    /// When the current holder's lease ends unless it is extended; the key may free up
    /// earlier, when the holder drops its guard.
    pub expires_at: Instant,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = Instant::now();
        write!(
            f,
            "key is locked (held for {:?}, lease ends in {:?})",
            now.saturating_duration_since(self.held_since),
            self.expires_at.saturating_duration_since(now)
        )
    }
}

impl Error for Busy {}

/// Returned by `lock_timeout` when the key did not become free in time.
///
/// The waiter has left the queue: it holds nothing and left no entry behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// How long the caller waited: the timeout it asked for.
    pub after: Duration,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key still locked after {:?}", self.after)
    }
}

impl Error for Timeout {}

/// Returned by `Guard::extend` when the lease already ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseExpired {
    /// The token of the lease that ended.
    pub token: FencingToken,
    /// When that lease ended (or was due to end).
    pub expired_at: Instant,
}

impl fmt::Display for LeaseExpired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease with fencing token {} has expired", self.token)
    }
}

impl Error for LeaseExpired {}

/// Returned by `with_lock` when the lease was lost before the closure finished; the closure's
/// future was dropped at that point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLost {
    /// The token of the lost lease.
    pub token: FencingToken,
    /// When the lease ended.
    pub deadline: Instant,
}

impl fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lease with fencing token {} was lost before the work finished",
            self.token
        )
    }
}

impl Error for LeaseLost {}

/// Returned by a fallible `extend` (`Guard::try_extend`, or `extend` on a remote backend).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtendError<E> {
    /// The lease already ended (past its deadline, or another holder has the key): it cannot
    /// be revived. Lock again instead.
    Expired(LeaseExpired),
    /// The backend failed before it could tell; the lease may still be live until its
    /// current deadline.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for ExtendError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired(e) => fmt::Display::fmt(e, f),
            Self::Backend(e) => write!(f, "could not extend the lease: {e}"),
        }
    }
}

impl<E: Error + 'static> Error for ExtendError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Expired(e) => Some(e),
            Self::Backend(e) => Some(e),
        }
    }
}

/// Returned by `try_lock` on a backend that can fail (Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryLockError<E> {
    /// Another holder has the key.
    Busy(Busy),
    /// The backend failed; the caller holds nothing.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for TryLockError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy(b) => fmt::Display::fmt(b, f),
            Self::Backend(e) => write!(f, "could not lock: {e}"),
        }
    }
}

impl<E: Error + 'static> Error for TryLockError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Busy(b) => Some(b),
            Self::Backend(e) => Some(e),
        }
    }
}

/// Returned by `lock_timeout` on a backend that can fail (Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockTimeoutError<E> {
    /// The key was not granted in time; the waiter left the queue.
    Timeout(Timeout),
    /// The backend failed; the caller holds nothing.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for LockTimeoutError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(t) => fmt::Display::fmt(t, f),
            Self::Backend(e) => write!(f, "could not lock: {e}"),
        }
    }
}

impl<E: Error + 'static> Error for LockTimeoutError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Timeout(t) => Some(t),
            Self::Backend(e) => Some(e),
        }
    }
}

/// Returned by `with_lock` on a backend that can fail (Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WithLockError<E> {
    /// The lease was lost before the work finished; the work was cancelled.
    Lost(LeaseLost),
    /// The lock could not be taken; the work did not run.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for WithLockError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lost(l) => fmt::Display::fmt(l, f),
            Self::Backend(e) => write!(f, "could not lock: {e}"),
        }
    }
}

impl<E: Error + 'static> Error for WithLockError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Lost(l) => Some(l),
            Self::Backend(e) => Some(e),
        }
    }
}

/// An invalid builder setting, returned by [`KeyedLockBuilder::build`](crate::KeyedLockBuilder::build)
/// (and, with the `redis` feature, by `RedisBackendBuilder::build`).
///
/// [`field`](Self::field) is the name of the builder setter whose value was rejected,
/// [`reason`](Self::reason) states the allowed range and the value given. It displays as
/// ``invalid `field`: reason``.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_keyed_lock::KeyedLock;
///
/// let err = KeyedLock::<String>::builder()
///     .ttl(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "ttl");
/// assert!(err.to_string().starts_with("invalid `ttl`: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The builder setter's name: `"ttl"`, `"name"`, `"shards"`, and for the Redis backend
    /// `"url"`, `"nodes"`, `"prefix"`, `"command_timeout"`, `"backoff"`, `"runtime"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = seawall_keyed_lock::KeyedLock::<u64>::builder()
    ///     .name("")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "name");
    /// ```
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was rejected: the allowed range and the value given.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = seawall_keyed_lock::KeyedLock::<u64>::builder()
    ///     .name("")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.reason(), "must not be empty");
    /// ```
    #[must_use]
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
