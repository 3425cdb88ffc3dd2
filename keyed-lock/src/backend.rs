//! The seam between the guard logic and where leases live.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Busy, ExtendError, FencingToken, LockEvents};

/// How long an acquisition may wait for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// Do not queue: grant now or refuse with [`Refused::Busy`].
    No,
    /// Queue for at most this long, then refuse with [`Refused::TimedOut`].
    For(Duration),
    /// Queue until granted. A backend must not refuse such a request.
    Forever,
}

/// Why a backend did not grant a lease.
///
/// `E` is the backend's [`Error`](LockBackend::Error): [`Infallible`] for the in-memory
/// backend, so only `Busy` and `TimedOut` can happen there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused<E = Infallible> {
    /// [`Wait::No`] and the key is held.
    Busy(Busy),
    /// [`Wait::For`] elapsed.
    TimedOut,
    /// The backend failed (for example its server was unreachable); the caller holds nothing.
    Backend(E),
}

impl<E: fmt::Display> fmt::Display for Refused<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy(busy) => fmt::Display::fmt(busy, f),
            Self::TimedOut => f.write_str("key still locked when the wait timed out"),
            Self::Backend(e) => write!(f, "lock backend failed: {e}"),
        }
    }
}

impl<E: Error + 'static> Error for Refused<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Busy(busy) => Some(busy),
            Self::TimedOut => None,
            Self::Backend(e) => Some(e),
        }
    }
}

/// A lease granted by a backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Grant<L> {
    /// The backend's handle to this lease, given back on release, extend and lookups.
    pub lease: L,
    /// The fencing token of this grant.
    pub token: FencingToken,
    /// When the lease was granted.
    pub acquired_at: Instant,
    /// When the lease ends unless extended.
    pub deadline: Instant,
}

impl<L> Grant<L> {
    /// A grant of `lease` with `token`, valid from `acquired_at` until `deadline`.
    pub fn new(lease: L, token: FencingToken, acquired_at: Instant, deadline: Instant) -> Self {
        Self {
            lease,
            token,
            acquired_at,
            deadline,
        }
    }
}

/// Where leases live: the in-memory [`MemoryBackend`](crate::MemoryBackend) or a shared store
/// such as Redis (`RedisBackend`, behind the `redis` feature).
///
/// [`KeyedLock`](crate::KeyedLock) and [`Guard`](crate::Guard) hold the logic that is the same
/// for every backend: TTL defaults, timeouts, guards that release on drop, stale detection,
/// [`lost`](crate::Guard::lost), [`with_lock`](crate::KeyedLock::with_lock). A backend only
/// grants, renews and ends leases, and must uphold:
///
/// - at most one live lease per key; a lease is live from its grant until its deadline or its
///   release, whichever comes first;
/// - every grant for a key carries a larger [`FencingToken`] than every earlier grant for it;
/// - a release or extend naming a token that is no longer the key's current lease changes
///   nothing;
/// - every grant is reported to [`LockEvents::granted`] and every lease that ends is reported
///   once, to [`LockEvents::released`] or [`LockEvents::taken_over`]; refusals to
///   [`LockEvents::busy`] / [`LockEvents::timed_out`];
/// - the futures may be dropped at any await point without leaving a queued waiter or a
///   granted-but-unclaimed lease behind (a remote backend may instead leave a lease that ends
///   by its TTL, and must say so).
///
/// A backend that talks to a server reports failures as [`Self::Error`]: [`Refused::Backend`]
/// from `acquire`, [`ExtendError::Backend`] from `extend`, `Err` from `deadline`. The
/// in-memory backend cannot fail and uses [`Infallible`].
pub trait LockBackend<K>: Send + Sync + 'static {
    /// The backend's handle to one granted lease (for example a key's hash, or the key).
    type Lease: Clone + Send + Sync + 'static;

    /// Why a call to the backend failed (not "the key is busy": a transport or server error).
    type Error: Error + Send + Sync + 'static;

    /// Grants a lease on `key` for `ttl`, waiting as `wait` allows. Waiters are served in the
    /// order they asked. A waiter whose turn is blocked by an expired lease takes over without
    /// any action from the stale holder.
    fn acquire(
        &self,
        key: &K,
        ttl: Duration,
        wait: Wait,
        events: &LockEvents,
    ) -> impl Future<Output = Result<Grant<Self::Lease>, Refused<Self::Error>>> + Send;

    /// Ends the lease `token` if it is still the key's current lease, handing the key to the
    /// next waiter. Called from `Drop`, so it must not block or wait.
    fn release(&self, lease: &Self::Lease, token: FencingToken, events: &LockEvents);

    /// Moves the deadline of the live lease `token` to `ttl` from now.
    ///
    /// # Errors
    ///
    /// [`ExtendError::Expired`] when `token` is no longer live (past its deadline or
    /// replaced); [`ExtendError::Backend`] when the backend could not tell.
    fn extend(
        &self,
        lease: &Self::Lease,
        token: FencingToken,
        ttl: Duration,
    ) -> impl Future<Output = Result<Instant, ExtendError<Self::Error>>> + Send;

    /// The current deadline of lease `token`, or `None` if it is no longer the key's lease.
    ///
    /// # Errors
    ///
    /// [`Self::Error`] when the backend could not tell.
    fn deadline(
        &self,
        lease: &Self::Lease,
        token: FencingToken,
    ) -> impl Future<Output = Result<Option<Instant>, Self::Error>> + Send;

    /// Checks the lock's default TTL when a [`KeyedLock`](crate::KeyedLock) is built on this
    /// backend ([`KeyedLockBuilder::build_with_backend`](crate::KeyedLockBuilder::build_with_backend)). The
    /// default accepts every TTL (the builder already refuses zero).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming `ttl` if the backend cannot grant leases
    /// that long.
    fn check_ttl(&self, ttl: Duration) -> Result<(), crate::ConfigError> {
        let _ = ttl;
        Ok(())
    }

    /// The lease's deadline as the backend tracks it, when it can move without the guard
    /// asking (a backend that renews leases in the background). `None` (the default) means
    /// "the deadline the guard was last given".
    fn current_deadline(&self, lease: &Self::Lease) -> Option<Instant> {
        let _ = lease;
        None
    }

    /// Resolves when lease `token` is no longer live, with the deadline it had.
    ///
    /// The default sleeps until `deadline`, then asks [`deadline`](Self::deadline) whether
    /// the lease was extended in the meantime, and repeats; a backend error counts as lost.
    /// A backend that learns earlier that a lease is gone (a background renewal that found
    /// another holder) overrides it to resolve at once.
    fn lost(
        &self,
        lease: &Self::Lease,
        token: FencingToken,
        deadline: Instant,
    ) -> impl Future<Output = Instant> + Send {
        async move {
            let mut deadline = deadline;
            loop {
                tokio::time::sleep_until(deadline).await;
                match self.deadline(lease, token).await {
                    Ok(Some(next)) if next > Instant::now() => deadline = next,
                    _ => return deadline,
                }
            }
        }
    }
}
