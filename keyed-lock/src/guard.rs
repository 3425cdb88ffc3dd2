//! The lease guard.

use std::fmt;
use std::future::poll_fn;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Grant, LockBackend};
use crate::lock::Shared;
use crate::{ExtendError, FencingToken, LeaseExpired, LeaseLost, MemoryBackend};

/// A lease on one key; dropping it releases the key.
///
/// The guard owns a handle to its lock, so it is `'static` and `Send`: it can move into a
/// spawned task. Dropping a live guard releases the key at once and hands it to the next
/// waiter. Dropping a stale guard (its lease expired and someone else took the key over)
/// changes nothing: it never releases the new holder.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
/// let guard = locks.lock(&1).await;
/// let task = tokio::spawn(async move {
///     // ... work under the lock, passing guard.token() to the store ...
///     guard.token()
/// });
/// let token = task.await.unwrap();
/// assert!(locks.lock(&1).await.token() > token);
/// # }
/// ```
#[must_use = "the key is released as soon as the guard is dropped"]
pub struct Guard<K, B: LockBackend<K> = MemoryBackend<K>> {
    shared: Arc<Shared<B>>,
    lease: B::Lease,
    token: FencingToken,
    acquired_at: Instant,
    deadline: Instant,
    _key: PhantomData<fn(&K)>,
}

impl<K, B: LockBackend<K>> fmt::Debug for Guard<K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("lock", &self.shared.events.name())
            .field("token", &self.token)
            .field("acquired_at", &self.acquired_at)
            .field("deadline", &self.deadline())
            .finish()
    }
}

impl<K, B: LockBackend<K>> Guard<K, B> {
    pub(crate) fn new(shared: Arc<Shared<B>>, grant: Grant<B::Lease>) -> Self {
        Self {
            shared,
            lease: grant.lease,
            token: grant.token,
            acquired_at: grant.acquired_at,
            deadline: grant.deadline,
            _key: PhantomData,
        }
    }

    /// The backend's handle to this lease.
    pub fn lease(&self) -> &B::Lease {
        &self.lease
    }

    /// The lock's shared state (for backend-specific guard methods).
    #[cfg(feature = "redis")]
    pub(crate) fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// The fencing token of this lease: larger than that of every earlier lease on the key.
    /// Send it with every write made under the lock (see [`FencingToken`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let first = locks.try_lock(&1).unwrap().token();
    /// let second = locks.try_lock(&1).unwrap().token();
    /// assert!(second > first);
    /// ```
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// When this lease was granted.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.try_lock(&1).unwrap();
    /// assert!(guard.acquired_at() <= tokio::time::Instant::now());
    /// ```
    pub fn acquired_at(&self) -> Instant {
        self.acquired_at
    }

    /// When this lease ends unless extended (by `extend`, [`try_extend`](Self::try_extend),
    /// or a backend's background renewal).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.try_lock(&1).unwrap();
    /// assert_eq!(guard.deadline() - guard.acquired_at(), locks.ttl());
    /// ```
    pub fn deadline(&self) -> Instant {
        self.shared
            .backend
            .current_deadline(&self.lease)
            .unwrap_or(self.deadline)
    }

    /// The time left before the deadline (zero once expired).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.lock_with_ttl(&1, Duration::from_secs(10)).await;
    /// tokio::time::advance(Duration::from_secs(4)).await;
    /// assert_eq!(guard.remaining(), Duration::from_secs(6));
    /// # }
    /// ```
    pub fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// Whether the lease's deadline has passed. An expired guard no longer excludes anyone:
    /// the next acquirer of the key takes it over. Reads the clock.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.lock_with_ttl(&1, Duration::from_secs(10)).await;
    /// assert!(!guard.is_expired());
    /// tokio::time::advance(Duration::from_secs(10)).await;
    /// assert!(guard.is_expired());
    /// # }
    /// ```
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    /// Resolves when the lease is lost: at the deadline, unless the lease was extended in the
    /// meantime (or earlier, when a backend learns that another holder has the key). Use it
    /// with `tokio::select!` to stop work that no longer holds the key.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.lock_with_ttl(&1, Duration::from_secs(1)).await;
    /// let outcome = tokio::select! {
    ///     _ = tokio::time::sleep(Duration::from_secs(60)) => "finished",
    ///     _ = guard.lost() => "lease lost, work abandoned",
    /// };
    /// assert_eq!(outcome, "lease lost, work abandoned");
    /// # }
    /// ```
    pub async fn lost(&self) {
        self.shared
            .backend
            .lost(&self.lease, self.token, self.deadline())
            .await;
    }

    /// Renews a live lease on any backend: its deadline becomes `ttl` from now (less the
    /// backend's clock-drift margin, for a remote backend). Returns the new deadline.
    ///
    /// # Errors
    ///
    /// [`ExtendError::Expired`] if the deadline has already passed or another holder has the
    /// key; [`ExtendError::Backend`] if the backend failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled, the deadline the guard reports is unchanged (a remote
    /// backend may still have applied the extension).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let mut guard = locks.lock_with_ttl(&1, Duration::from_secs(10)).await;
    /// let deadline = guard.try_extend(Duration::from_secs(20)).await.unwrap();
    /// assert_eq!(deadline - guard.acquired_at(), Duration::from_secs(20));
    /// # }
    /// ```
    pub async fn try_extend(&mut self, ttl: Duration) -> Result<Instant, ExtendError<B::Error>> {
        let deadline = self
            .shared
            .backend
            .extend(&self.lease, self.token, ttl)
            .await?;
        self.deadline = deadline;
        Ok(deadline)
    }

    /// Runs `work` with this guard, cancelling it (dropping its future) if the lease is lost
    /// first. `work` may extend the lease, which pushes the cancellation back.
    ///
    /// # Errors
    ///
    /// [`LeaseLost`] if the lease ended before `work` finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops `work`; the guard stays held.
    ///
    /// # Panics
    ///
    /// Never (unless `work` panics).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let mut guard = locks.lock_with_ttl(&1, Duration::from_secs(1)).await;
    /// let out = guard
    ///     .run(async |_g| tokio::time::sleep(Duration::from_secs(5)).await)
    ///     .await;
    /// assert!(out.is_err());
    /// # }
    /// ```
    pub async fn run<T, F>(&mut self, work: F) -> Result<T, LeaseLost>
    where
        F: AsyncFnOnce(&mut Self) -> T,
    {
        let shared = Arc::clone(&self.shared);
        let lease = self.lease.clone();
        let token = self.token;
        let deadline = self.deadline();
        let mut lost = pin!(shared.backend.lost(&lease, token, deadline));
        let mut work = pin!(work(self));
        poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if let Poll::Ready(deadline) = lost.as_mut().poll(cx) {
                return Poll::Ready(Err(LeaseLost { token, deadline }));
            }
            Poll::Pending
        })
        .await
    }
}

impl<K> Guard<K, MemoryBackend<K>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Renews a live lease: its deadline becomes `ttl` from now. Returns the new deadline.
    ///
    /// # Errors
    ///
    /// [`LeaseExpired`] if the deadline has already passed (whether or not someone else took
    /// the key over): an expired lease cannot be revived, since another holder may already
    /// have acted on it. Lock again instead.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe for the in-memory backend (it completes without waiting).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let mut guard = locks.lock_with_ttl(&1, Duration::from_secs(10)).await;
    /// tokio::time::advance(Duration::from_secs(9)).await;
    /// guard.extend(Duration::from_secs(10)).await.unwrap();
    /// tokio::time::advance(Duration::from_secs(9)).await;
    /// assert!(!guard.is_expired());
    /// # }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<Instant, LeaseExpired> {
        match self.try_extend(ttl).await {
            Ok(deadline) => Ok(deadline),
            Err(ExtendError::Expired(e)) => Err(e),
            Err(ExtendError::Backend(never)) => match never {},
        }
    }
}

impl<K, B: LockBackend<K>> Drop for Guard<K, B> {
    fn drop(&mut self) {
        self.shared
            .backend
            .release(&self.lease, self.token, &self.shared.events);
    }
}
