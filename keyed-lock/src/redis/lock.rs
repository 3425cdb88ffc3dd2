//! `KeyedLock<K, RedisBackend>` and its guard: the in-memory API with fallible signatures.

use std::borrow::Borrow;
use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

use super::{RedisBackend, RedisBackendError};
use crate::backend::{Refused, Wait};
use crate::{
    ExtendError, Guard, KeyedLock, LockTimeoutError, Timeout, TryLockError, WithLockError,
};

/// The lock API on Redis. Keys are any `K: Display`: the key's `Display` output names the
/// Redis keys (`<prefix>{<key>}`, braces and backslashes escaped: see
/// [`RedisBackend::lease_key`]), so two keys must not display the same. Every method takes
/// the key as any `&Q` where `K: Borrow<Q>` and `Q: Display` displays as the `K` would (as
/// `str` does for `String`): a `KeyedLock<String, RedisBackend>` is locked with a `&str`.
///
/// Every method can fail with [`RedisBackendError`] when Redis is unreachable, does not answer
/// within the backend's command timeout, or answers with an error: it never hangs and never
/// panics. A waiter queued in this process behind a call that fails on the same key fails at
/// the same moment with the same error, so it fails at most one command timeout after it
/// started (or after the holder it waited for released the key). See
/// [the crate docs](crate#redis-backend) for what the lease guarantees.
impl<K> KeyedLock<K, RedisBackend>
where
    K: Display + Send + Sync + 'static,
{
    /// Waits for the lock on `key`, with the lock's default TTL.
    ///
    /// Waiters in this process are served in the order they called (only the first of them
    /// talks to Redis); against other processes it retries with jittered exponential backoff,
    /// never sleeping past the holder's remaining TTL. There is no order across processes.
    ///
    /// # Errors
    ///
    /// [`RedisBackendError`] if a Redis call failed; the caller holds nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the in-process queue at once; a lease Redis
    /// granted while the reply was in flight is deleted in the background (or ends by its
    /// TTL if Redis cannot be reached).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// Redis unreachable: a clear error, within the command timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<u64>::builder().build_with_backend(backend).unwrap();
    /// let err = locks.lock(&7).await.unwrap_err();
    /// assert!(err.to_string().starts_with("redis at 127.0.0.1:1"), "{err}");
    /// # }
    /// ```
    pub async fn lock<Q>(&self, key: &Q) -> Result<Guard<K, RedisBackend>, RedisBackendError>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
    {
        self.lock_with_ttl(key, self.ttl()).await
    }

    /// [`lock`](Self::lock) with a TTL for this lease only (rounded down to whole
    /// milliseconds, at least [`RedisBackend::MIN_TTL`], 3 ms).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock); [`RedisBackendError::InvalidTtl`] (nothing sent) if `ttl` is
    /// shorter than [`RedisBackend::MIN_TTL`]. The same holds for every `*_with_ttl` method
    /// and for [`Guard::extend`].
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    /// # Examples
    ///
    /// Redis unreachable here (a closed port): the error names the server.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend, RedisBackendError};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let err = locks.lock_with_ttl("alice", Duration::from_millis(2)).await.unwrap_err();
    /// assert!(matches!(err, RedisBackendError::InvalidTtl { .. })); // shorter than MIN_TTL
    /// let err = locks.lock_with_ttl("alice", Duration::from_secs(5)).await.unwrap_err();
    /// assert!(matches!(err, RedisBackendError::Unreachable { .. }));
    /// # }
    /// ```
    pub async fn lock_with_ttl<Q>(
        &self,
        key: &Q,
        ttl: Duration,
    ) -> Result<Guard<K, RedisBackend>, RedisBackendError>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
    {
        loop {
            match self.acquire_by(key, ttl, Wait::Forever).await {
                Ok(guard) => return Ok(guard),
                Err(Refused::Backend(e)) => return Err(e),
                // The backend never refuses `Wait::Forever` otherwise; ask again if it did.
                Err(_) => {}
            }
        }
    }

    /// Takes the lock on `key` if it is free now (one round trip), with the lock's default TTL.
    ///
    /// Unlike the in-memory `try_lock` this is `async`: it asks Redis. A guard of this
    /// process dropped just before is released in the background, so `try_lock` right after
    /// it may still see `Busy`; [`lock`](Self::lock) and [`lock_timeout`](Self::lock_timeout)
    /// wait for that release.
    ///
    /// # Errors
    ///
    /// [`TryLockError::Busy`] if another holder (in any process) has the key, or a task of
    /// this process holds or waits for it; [`TryLockError::Backend`] if Redis failed.
    /// `Busy::held_since` comes from the holder's grant time on the Redis server, so it is as
    /// accurate as the two clocks agree.
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    /// # Examples
    ///
    /// Redis unreachable here (a closed port): the error names the server.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend, TryLockError};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// match locks.try_lock("alice").await {
    ///     Err(TryLockError::Backend(e)) => assert_eq!(e.addr(), "127.0.0.1:1"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub async fn try_lock<Q>(
        &self,
        key: &Q,
    ) -> Result<Guard<K, RedisBackend>, TryLockError<RedisBackendError>>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
    {
        self.try_lock_with_ttl(key, self.ttl()).await
    }

    /// [`try_lock`](Self::try_lock) with a TTL for this lease only.
    ///
    /// # Errors
    ///
    /// As [`try_lock`](Self::try_lock).
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    /// # Examples
    ///
    /// Redis unreachable here (a closed port): the error names the server.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend, TryLockError};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let err = locks.try_lock_with_ttl("alice", Duration::from_secs(5)).await.unwrap_err();
    /// assert!(matches!(err, TryLockError::Backend(_)));
    /// # }
    /// ```
    pub async fn try_lock_with_ttl<Q>(
        &self,
        key: &Q,
        ttl: Duration,
    ) -> Result<Guard<K, RedisBackend>, TryLockError<RedisBackendError>>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
    {
        match self.acquire_by(key, ttl, Wait::No).await {
            Ok(guard) => Ok(guard),
            Err(Refused::Busy(busy)) => Err(TryLockError::Busy(busy)),
            Err(Refused::Backend(e)) => Err(TryLockError::Backend(e)),
            // `Wait::No` is never refused with `TimedOut`; report it as "busy now" if it were.
            Err(Refused::TimedOut) => Err(TryLockError::Busy(crate::Busy {
                held_since: Instant::now(),
                expires_at: Instant::now(),
            })),
        }
    }

    /// Waits at most `timeout` for the lock on `key` (in-process queue and Redis together),
    /// with the lock's default TTL. A zero timeout is a single attempt (bounded by the
    /// command timeout). Otherwise the call returns by `timeout` even if Redis is slow: an
    /// acquire still in flight then is abandoned (a lease it may have been granted is
    /// deleted in the background, or ends by its TTL) and the call times out.
    ///
    /// # Errors
    ///
    /// [`LockTimeoutError::Timeout`] if the key was not granted in time (the waiter left the
    /// queue), including when Redis did not answer by then; [`LockTimeoutError::Backend`] if
    /// Redis failed before.
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    /// # Examples
    ///
    /// Redis unreachable here (a closed port): the error names the server.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend, LockTimeoutError};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let err = locks.lock_timeout("alice", Duration::from_secs(1)).await.unwrap_err();
    /// assert!(matches!(err, LockTimeoutError::Backend(_)), "{err:?}");
    /// # }
    /// ```
    pub async fn lock_timeout<Q>(
        &self,
        key: &Q,
        timeout: Duration,
    ) -> Result<Guard<K, RedisBackend>, LockTimeoutError<RedisBackendError>>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
    {
        self.lock_timeout_with_ttl(key, timeout, self.ttl()).await
    }

    /// [`lock_timeout`](Self::lock_timeout) with a TTL for this lease only.
    ///
    /// # Errors
    ///
    /// As [`lock_timeout`](Self::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    /// # Examples
    ///
    /// Redis unreachable here (a closed port): the error names the server.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend, LockTimeoutError};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let err = locks
    ///     .lock_timeout_with_ttl("alice", Duration::from_secs(1), Duration::from_secs(5))
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, LockTimeoutError::Backend(_)), "{err:?}");
    /// # }
    /// ```
    pub async fn lock_timeout_with_ttl<Q>(
        &self,
        key: &Q,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<Guard<K, RedisBackend>, LockTimeoutError<RedisBackendError>>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
    {
        let wait = if timeout.is_zero() {
            Wait::No
        } else {
            Wait::For(timeout)
        };
        match self.acquire_by(key, ttl, wait).await {
            Ok(guard) => Ok(guard),
            Err(Refused::Busy(_) | Refused::TimedOut) => {
                Err(LockTimeoutError::Timeout(Timeout { after: timeout }))
            }
            Err(Refused::Backend(e)) => Err(LockTimeoutError::Backend(e)),
        }
    }

    /// Locks `key`, runs `work` with the guard, and releases the key afterwards. If the lease
    /// is lost first (its local deadline passed, or auto-renewal found it gone), `work` is
    /// cancelled and [`WithLockError::Lost`] is returned.
    ///
    /// # Errors
    ///
    /// [`WithLockError::Backend`] if the lock could not be taken (`work` did not run);
    /// [`WithLockError::Lost`] if the lease ended before `work` finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels `work` and releases the key (or leaves the queue).
    ///
    /// # Panics
    ///
    /// Never (unless `work` panics).
    /// # Examples
    ///
    /// Redis unreachable here (a closed port): the error names the server.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend, WithLockError};
    ///
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let err = locks.with_lock("alice", async |_guard| "work").await.unwrap_err();
    /// assert!(matches!(err, WithLockError::Backend(_))); // the work did not run
    /// # }
    /// ```
    pub async fn with_lock<Q, T, F>(
        &self,
        key: &Q,
        work: F,
    ) -> Result<T, WithLockError<RedisBackendError>>
    where
        K: Borrow<Q>,
        Q: Display + Sync + ?Sized,
        F: AsyncFnOnce(&mut Guard<K, RedisBackend>) -> T,
    {
        let mut guard = self.lock(key).await.map_err(WithLockError::Backend)?;
        guard.run(work).await.map_err(WithLockError::Lost)
    }

    /// [`KeyedLock::acquire`] by a borrowed key: a Redis key is the key's `Display` output, so
    /// no owned `K` is needed.
    async fn acquire_by<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        wait: Wait,
    ) -> Result<Guard<K, RedisBackend>, Refused<RedisBackendError>>
    where
        Q: Display + Sync + ?Sized,
    {
        let shared = self.shared();
        let grant = shared
            .backend
            .acquire_by(&key, ttl, wait, &shared.events)
            .await?;
        Ok(self.guard(grant))
    }
}

impl<K> Guard<K, RedisBackend>
where
    K: Display + Send + Sync + 'static,
{
    /// Renews the live lease in Redis: its deadline becomes `ttl` from now, less the
    /// clock-drift margin (1 % + 2 ms). Returns the new local deadline. (With auto-renew the
    /// watchdog keeps renewing with the TTL the lease was granted with.)
    ///
    /// # Errors
    ///
    /// [`ExtendError::Expired`] if the local deadline has passed or Redis holds another value
    /// for the key (another holder, or Redis lost its data): the lease cannot be revived.
    /// [`ExtendError::Backend`] if Redis could not be asked; the lease may still be live until
    /// [`deadline`](Guard::deadline). `ExtendError::Backend(RedisBackendError::InvalidTtl)`
    /// (nothing sent, the lease unchanged) if `ttl` is shorter than [`RedisBackend::MIN_TTL`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the guard's deadline only moves once Redis confirmed (Redis may have
    /// applied an extension whose reply was lost; the lease then simply lasts longer there).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// Needs a Redis server (`no_run`):
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend};
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build().unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let mut guard = locks.lock("alice").await.unwrap();
    /// let deadline = guard.extend(Duration::from_secs(60)).await.unwrap();
    /// assert_eq!(guard.deadline(), deadline);
    /// # }
    /// ```
    pub async fn extend(
        &mut self,
        ttl: Duration,
    ) -> Result<Instant, ExtendError<RedisBackendError>> {
        self.try_extend(ttl).await
    }

    /// The Redis backend this guard's lease lives in.
    ///
    /// # Examples
    ///
    /// Needs a Redis server (`no_run`):
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend};
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build().unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let guard = locks.lock("alice").await.unwrap();
    /// assert_eq!(guard.redis().addr(), "127.0.0.1:6379");
    /// # }
    /// ```
    pub fn redis(&self) -> &RedisBackend {
        self.backend()
    }
}
