//! The keyed lock handle and its builder.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::builder::{DEFAULT_NAME, DEFAULT_TTL, default_shards};
use crate::{
    Busy, Enqueued, Guard, KeyedLockBuilder, LeaseLost, LockEvents, MemoryBackend, Timeout,
};

pub(crate) struct Shared<B> {
    pub(crate) backend: B,
    pub(crate) ttl: Duration,
    pub(crate) events: LockEvents,
}

/// Per-key async mutual exclusion with FIFO queues, lease TTL and fencing tokens.
///
/// A `KeyedLock` is a cheap handle: clones share the same locks. Each key can be held by one
/// [`Guard`] at a time; other acquirers queue in arrival order. A lease lasts until the guard
/// is dropped or its TTL passes, whichever comes first; after the TTL the next waiter takes the
/// key over without any help from the stale holder (whose guard can tell, see
/// [`Guard::is_expired`] and [`Guard::lost`]). Every grant carries a [`FencingToken`](crate::FencingToken)
/// that strictly increases per key.
///
/// Guards own a handle to the lock, so they are `'static + Send` and can move into spawned
/// tasks.
///
/// `B` is where leases live; the default, [`MemoryBackend`], keeps them in this process.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_keyed_lock::KeyedLock;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let locks = KeyedLock::<String>::builder()
///     .name("users")
///     .ttl(Duration::from_secs(60))
///     .build()?;
///
/// // Lookups take any `&Q` the key borrows as: a `&str` for `String` keys, so locking a key
/// // that is already present allocates nothing.
/// let guard = locks.lock("alice").await;
/// assert!(locks.try_lock("alice").is_err());
/// assert!(locks.try_lock(&"bob".to_owned()).is_ok());
/// drop(guard);
/// assert!(locks.try_lock("alice").is_ok());
/// # Ok(())
/// # }
/// ```
pub struct KeyedLock<K, B = MemoryBackend<K>> {
    shared: Arc<Shared<B>>,
    _key: PhantomData<fn(&K)>,
}

impl<K, B> Clone for KeyedLock<K, B> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _key: PhantomData,
        }
    }
}

impl<K, B: fmt::Debug> fmt::Debug for KeyedLock<K, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLock")
            .field("name", &self.shared.events.name())
            .field("ttl", &self.shared.ttl)
            .field("backend", &self.shared.backend)
            .finish()
    }
}

impl<K> Default for KeyedLock<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> KeyedLock<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// An in-memory lock with the default settings (see [`KeyedLockBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// assert!(locks.is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::from_parts(
            MemoryBackend::new(default_shards()),
            DEFAULT_TTL,
            LockEvents::new(Arc::from(DEFAULT_NAME), None),
        )
    }

    /// A builder for an in-memory lock; see [`KeyedLockBuilder`] for the settings and their
    /// defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder().name("users").build().unwrap();
    /// assert_eq!(locks.name(), "users");
    /// ```
    pub fn builder() -> KeyedLockBuilder<K> {
        KeyedLockBuilder::new()
    }

    /// Takes the lock on `key` if it is free now, with the lock's default TTL.
    ///
    /// A key whose lease has expired counts as free when nobody queues for it: the caller
    /// takes it over (and the stale holder's guard becomes stale).
    ///
    /// # Errors
    ///
    /// [`Busy`] (with since when the key is held) if another lease is live, or if waiters are
    /// queued for it (they come first).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.try_lock(&1).unwrap();
    /// let busy = locks.try_lock(&1).unwrap_err();
    /// assert_eq!(busy.held_since, guard.acquired_at());
    /// ```
    pub fn try_lock<Q>(&self, key: &Q) -> Result<Guard<K>, Busy>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.try_lock_with_ttl(key, self.shared.ttl)
    }

    /// [`try_lock`](Self::try_lock) with a TTL for this lease only.
    ///
    /// # Errors
    ///
    /// [`Busy`] as for [`try_lock`](Self::try_lock).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.try_lock_with_ttl(&1, Duration::from_secs(5)).unwrap();
    /// assert_eq!(guard.deadline() - guard.acquired_at(), Duration::from_secs(5));
    /// ```
    pub fn try_lock_with_ttl<Q>(&self, key: &Q, ttl: Duration) -> Result<Guard<K>, Busy>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let grant = self
            .shared
            .backend
            .try_acquire(key, ttl, &self.shared.events)?;
        Ok(self.guard(grant))
    }

    /// The number of keys with an entry (held or awaited). `0` when nothing is held: entries
    /// never outlive their last holder or waiter (an expired lease whose holder never released
    /// it is cleaned up by the next acquirer of that key, or by [`purge_expired`](Self::purge_expired)).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.try_lock(&1).unwrap();
    /// assert_eq!(locks.len(), 1);
    /// drop(guard);
    /// assert_eq!(locks.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.backend.len()
    }

    /// `len() == 0`.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// assert!(locks.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.backend.is_empty()
    }

    /// Removes the entries of expired leases that nobody waits for and returns how many.
    ///
    /// Expired entries are otherwise cleaned up lazily, by the next acquirer of the same key;
    /// a holder that crashed on a key nobody locks again would keep its entry. Call this from
    /// a periodic task if keys are many and such crashes possible. It walks every shard.
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
    /// std::mem::forget(locks.lock_with_ttl(&1, Duration::from_secs(1)).await);
    /// tokio::time::advance(Duration::from_secs(1)).await;
    /// assert_eq!(locks.purge_expired(), 1);
    /// assert!(locks.is_empty());
    /// # }
    /// ```
    pub fn purge_expired(&self) -> usize {
        self.shared.backend.purge_expired(&self.shared.events)
    }

    /// Waits for the lock on `key` and returns its guard, with the lock's default TTL.
    ///
    /// Waiters for one key are served in the order they called. If the current holder's lease
    /// expires, the first waiter takes over at the deadline without the holder doing anything.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the queue at once and leaves no entry behind;
    /// if the key had just been handed to it, it passes the key on to the next waiter.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.lock(&42).await;
    /// assert!(!guard.is_expired());
    /// # }
    /// ```
    pub async fn lock<Q>(&self, key: &Q) -> Guard<K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.lock_with_ttl(key, self.shared.ttl).await
    }

    /// [`lock`](Self::lock) with a TTL for this lease only.
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.lock_with_ttl(&42, Duration::from_secs(1)).await;
    /// assert_eq!(guard.deadline() - guard.acquired_at(), Duration::from_secs(1));
    /// # }
    /// ```
    pub async fn lock_with_ttl<Q>(&self, key: &Q, ttl: Duration) -> Guard<K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        loop {
            // The in-memory backend never refuses `Wait::Forever`; if it did, ask again.
            if let Ok(guard) = self.acquire_memory(key, ttl, Wait::Forever).await {
                return guard;
            }
        }
    }

    /// Takes a place in `key`'s FIFO queue now, and returns a future that resolves to the
    /// guard when the place's turn comes (with the lock's default TTL).
    ///
    /// [`lock`](Self::lock) joins the queue when its future is first polled; `enqueue` joins
    /// it when called, like tokio's `Notified::enable`. Use it to keep arrival order when the
    /// waits are polled later or in another order, for example when a dispatcher takes each
    /// message's place in its user's queue and then spawns a task per message. The returned
    /// [`Enqueued`] is `'static + Send`. If the key is free, it is granted at once (the lease
    /// starts now). `enqueue` does not need a runtime; awaiting does.
    ///
    /// Creating an entry clones the key (as `ToOwned`), and so does queueing (the place
    /// keeps its own copy of the key, since it does not borrow it).
    ///
    /// # Cancel safety
    ///
    /// Dropping the [`Enqueued`] leaves the queue and leaves no entry behind; a grant it was
    /// given is passed on to the next waiter.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::KeyedLock;
    ///
    /// let locks = KeyedLock::<String>::new();
    /// let mut order = Vec::new();
    /// for message in ["first", "second", "third"] {
    ///     order.push((message, locks.enqueue("alice"))); // the place is taken here
    /// }
    /// // Polled in reverse: still served first, second, third.
    /// let mut tasks = Vec::new();
    /// for (message, place) in order.into_iter().rev() {
    ///     tasks.push(tokio::spawn(async move { (place.await.token(), message) }));
    /// }
    /// let mut served = Vec::new();
    /// for task in tasks {
    ///     served.push(task.await.unwrap());
    /// }
    /// served.sort();
    /// let served: Vec<_> = served.into_iter().map(|(_, m)| m).collect();
    /// assert_eq!(served, ["first", "second", "third"]);
    /// # }
    /// ```
    pub fn enqueue<Q>(&self, key: &Q) -> Enqueued<K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.enqueue_with_ttl(key, self.shared.ttl)
    }

    /// [`enqueue`](Self::enqueue) with a TTL for this lease only.
    ///
    /// # Cancel safety
    ///
    /// As [`enqueue`](Self::enqueue).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks.enqueue_with_ttl(&1, Duration::from_secs(5)).await;
    /// assert_eq!(guard.deadline() - guard.acquired_at(), Duration::from_secs(5));
    /// # }
    /// ```
    pub fn enqueue_with_ttl<Q>(&self, key: &Q, ttl: Duration) -> Enqueued<K>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let backend = &self.shared.backend;
        match backend.acquire_or_enqueue(key, ttl, None, &self.shared.events, None) {
            Ok(grant) => Enqueued::granted(self.clone(), grant),
            Err(place) => Enqueued::queued(self.clone(), key.to_owned(), ttl, place),
        }
    }

    /// Waits at most `timeout` for the lock on `key`, with the lock's default TTL.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if the key was not granted within `timeout`; the waiter has then left the
    /// queue. A zero timeout behaves like `try_lock` but reports `Timeout`.
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
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
    /// let _held = locks.lock(&1).await;
    /// let err = locks.lock_timeout(&1, Duration::from_secs(2)).await.unwrap_err();
    /// assert_eq!(err.after, Duration::from_secs(2));
    /// # }
    /// ```
    pub async fn lock_timeout<Q>(&self, key: &Q, timeout: Duration) -> Result<Guard<K>, Timeout>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.lock_timeout_with_ttl(key, timeout, self.shared.ttl)
            .await
    }

    /// [`lock_timeout`](Self::lock_timeout) with a TTL for this lease only.
    ///
    /// # Errors
    ///
    /// [`Timeout`] as for [`lock_timeout`](Self::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// As [`lock`](Self::lock).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// let guard = locks
    ///     .lock_timeout_with_ttl(&1, Duration::from_secs(1), Duration::from_secs(10))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(guard.deadline() - guard.acquired_at(), Duration::from_secs(10));
    /// # }
    /// ```
    pub async fn lock_timeout_with_ttl<Q>(
        &self,
        key: &Q,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<Guard<K>, Timeout>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let wait = if timeout.is_zero() {
            Wait::No
        } else {
            Wait::For(timeout)
        };
        match self.acquire_memory(key, ttl, wait).await {
            Ok(guard) => Ok(guard),
            Err(Refused::Busy(_) | Refused::TimedOut) => Err(Timeout { after: timeout }),
            Err(Refused::Backend(never)) => match never {},
        }
    }

    /// Locks `key`, runs `work` with the guard, and releases the key afterwards. If the lease
    /// is lost first (its TTL passed and it was not extended), `work` is cancelled (its future
    /// dropped) and [`LeaseLost`] is returned.
    ///
    /// `work` gets `&mut Guard` so it can read the [`token`](Guard::token) for its writes and
    /// [`extend`](Guard::extend) the lease; extensions push the cancellation back.
    ///
    /// # Errors
    ///
    /// [`LeaseLost`] if the lease ended before `work` finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels `work` and releases the key (or leaves the queue).
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
    /// use seawall_keyed_lock::KeyedLock;
    ///
    /// let locks = KeyedLock::<u64>::builder().ttl(Duration::from_secs(1)).build().unwrap();
    /// let done = locks.with_lock(&7, async |guard| guard.token().get()).await;
    /// assert!(done.is_ok());
    ///
    /// // Work that outlives the lease is cancelled at the deadline.
    /// let lost = locks
    ///     .with_lock(&7, async |_guard| tokio::time::sleep(Duration::from_secs(5)).await)
    ///     .await;
    /// assert!(lost.is_err());
    /// # }
    /// ```
    pub async fn with_lock<Q, T, F>(&self, key: &Q, work: F) -> Result<T, LeaseLost>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        F: AsyncFnOnce(&mut Guard<K>) -> T,
    {
        let mut guard = self.lock(key).await;
        guard.run(work).await
    }

    /// `acquire` on the in-memory backend, with a borrowed key.
    async fn acquire_memory<Q>(
        &self,
        key: &Q,
        ttl: Duration,
        wait: Wait,
    ) -> Result<Guard<K>, Refused>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let grant = self
            .shared
            .backend
            .acquire_inner(key, ttl, wait, &self.shared.events)
            .await?;
        Ok(self.guard(grant))
    }
}

impl<K, B> KeyedLock<K, B>
where
    K: Send + Sync,
    B: LockBackend<K>,
{
    pub(crate) fn from_parts(backend: B, ttl: Duration, events: LockEvents) -> Self {
        Self {
            shared: Arc::new(Shared {
                backend,
                ttl,
                events,
            }),
            _key: PhantomData,
        }
    }

    pub(crate) fn guard(&self, grant: Grant<B::Lease>) -> Guard<K, B> {
        Guard::new(Arc::clone(&self.shared), grant)
    }

    pub(crate) fn shared(&self) -> &Shared<B> {
        &self.shared
    }

    /// The lock's name (its `lock` metric label).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// assert_eq!(locks.name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        self.shared.events.name()
    }

    /// The default lease TTL of this lock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::new();
    /// assert_eq!(locks.ttl(), Duration::from_secs(300));
    /// ```
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// The backend.
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder().shards(4).build().unwrap();
    /// assert_eq!(locks.backend().shards(), 4);
    /// ```
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Acquires `key` on any backend: the backend-neutral entry point under `lock`,
    /// `try_lock` and `lock_timeout`.
    ///
    /// It takes `&K`, as [`LockBackend::acquire`] does (a backend may need to store or
    /// format the owned key type); the backend-specific methods (`lock`, `try_lock`, ...) take
    /// any borrowed form `&Q`.
    ///
    /// `wait` says how long to queue: [`Wait::No`] refuses with [`Refused::Busy`] when the
    /// key is held, [`Wait::For`] with [`Refused::TimedOut`] when the time runs out,
    /// [`Wait::Forever`] waits until granted. `ttl` is this lease's TTL (pass
    /// [`ttl()`](Self::ttl) for the lock's default).
    ///
    /// # Errors
    ///
    /// [`Refused`]: `Busy`, `TimedOut`, or `Backend` when the backend failed (never for the
    /// in-memory backend).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future leaves the queue and leaves no entry behind (a remote
    /// backend's lease that was granted while the reply was in flight ends by its TTL or by
    /// a clean-up the backend starts).
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, Refused, Wait};
    /// let locks = KeyedLock::<u64>::new();
    /// let guard = locks.acquire(&1, locks.ttl(), Wait::Forever).await.unwrap();
    /// let busy = locks.acquire(&1, locks.ttl(), Wait::No).await.unwrap_err();
    /// assert!(matches!(busy, Refused::Busy(_)));
    /// # drop(guard);
    /// # }
    /// ```
    pub async fn acquire(
        &self,
        key: &K,
        ttl: Duration,
        wait: Wait,
    ) -> Result<Guard<K, B>, Refused<B::Error>> {
        let grant = self
            .shared
            .backend
            .acquire(key, ttl, wait, &self.shared.events)
            .await?;
        Ok(self.guard(grant))
    }
}
