//! The keyed lock handle and its builder.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Grant, LockBackend, Refused, Wait};
use crate::{Busy, ConfigError, Guard, LeaseLost, LockEvents, MemoryBackend, Metrics, Timeout};

/// Default lease TTL: 5 minutes, the value the bot this replaces used.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

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
/// let guard = locks.lock(&"alice".to_owned()).await;
/// assert!(locks.try_lock(&"alice".to_owned()).is_err());
/// assert!(locks.try_lock(&"bob".to_owned()).is_ok());
/// drop(guard);
/// assert!(locks.try_lock(&"alice".to_owned()).is_ok());
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
    /// An in-memory lock with the default settings (see [`Builder`]).
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

    /// A builder for an in-memory lock.
    pub fn builder() -> Builder<K> {
        Builder::new()
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
    pub fn try_lock(&self, key: &K) -> Result<Guard<K>, Busy> {
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
    pub fn try_lock_with_ttl(&self, key: &K, ttl: Duration) -> Result<Guard<K>, Busy> {
        let grant = self
            .shared
            .backend
            .try_acquire(key, ttl, &self.shared.events)?;
        Ok(self.guard(grant))
    }

    /// The number of keys with an entry (held or awaited). `0` when nothing is held: entries
    /// never outlive their last holder or waiter (an expired lease whose holder never released
    /// it is cleaned up by the next acquirer of that key, or by [`purge_expired`](Self::purge_expired)).
    pub fn len(&self) -> usize {
        self.shared.backend.len()
    }

    /// `len() == 0`.
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
    pub async fn lock(&self, key: &K) -> Guard<K> {
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
    pub async fn lock_with_ttl(&self, key: &K, ttl: Duration) -> Guard<K> {
        loop {
            // A backend must not refuse `Wait::Forever`; if one does, ask again.
            if let Ok(guard) = self.acquire(key, ttl, Wait::Forever).await {
                return guard;
            }
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
    /// assert_eq!(err.waited, Duration::from_secs(2));
    /// # }
    /// ```
    pub async fn lock_timeout(&self, key: &K, timeout: Duration) -> Result<Guard<K>, Timeout> {
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
    pub async fn lock_timeout_with_ttl(
        &self,
        key: &K,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<Guard<K>, Timeout> {
        let wait = if timeout.is_zero() {
            Wait::No
        } else {
            Wait::For(timeout)
        };
        match self.acquire(key, ttl, wait).await {
            Ok(guard) => Ok(guard),
            Err(Refused::Busy(_) | Refused::TimedOut) => Err(Timeout { waited: timeout }),
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
    pub async fn with_lock<T, F>(&self, key: &K, work: F) -> Result<T, LeaseLost>
    where
        F: AsyncFnOnce(&mut Guard<K>) -> T,
    {
        let mut guard = self.lock(key).await;
        guard.run(work).await
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

    /// The lock's name (its `lock` metric label).
    pub fn name(&self) -> &str {
        self.shared.events.name()
    }

    /// The default lease TTL of this lock.
    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// Acquires `key` on any backend: the backend-neutral entry point under `lock`,
    /// `try_lock` and `lock_timeout`.
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

const DEFAULT_NAME: &str = "default";

fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, usize::from);
    (cpus * 4).next_power_of_two()
}

/// Builds a [`KeyedLock`].
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | [`name`](Self::name) | `"default"` |
/// | [`ttl`](Self::ttl) | 5 minutes ([`DEFAULT_TTL`]) |
/// | [`metrics`](Self::metrics) | none |
/// | [`shards`](Self::shards) | 4 × available CPUs, rounded up to a power of two |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_keyed_lock::KeyedLock;
///
/// let locks = KeyedLock::<u64>::builder()
///     .name("users")
///     .ttl(Duration::from_secs(30))
///     .shards(16)
///     .build()
///     .unwrap();
/// assert_eq!(locks.name(), "users");
///
/// let err = KeyedLock::<u64>::builder().ttl(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "ttl");
/// ```
pub struct Builder<K> {
    name: String,
    ttl: Duration,
    metrics: Option<Metrics>,
    shards: Option<usize>,
    _key: PhantomData<fn(&K)>,
}

impl<K> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("metrics", &self.metrics.is_some())
            .field("shards", &self.shards)
            .finish()
    }
}

impl<K> Default for Builder<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Builder<K> {
    /// A builder with the defaults listed above.
    pub fn new() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            ttl: DEFAULT_TTL,
            metrics: None,
            shards: None,
            _key: PhantomData,
        }
    }

    /// The lock's name: the `lock` label of its metrics and the `lock` field of its events.
    /// Must not be empty.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The default lease TTL. Must be greater than zero.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Report metrics to these families (see [`Metrics`]).
    #[must_use]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The number of shards of the in-memory backend: a power of two from 1 to 65536.
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.ttl.is_zero() {
            return Err(ConfigError::new(
                "ttl",
                format!("must be greater than zero, got {:?}", self.ttl),
            ));
        }
        if let Some(n) = self.shards
            && (n == 0 || n > 1 << 16 || !n.is_power_of_two())
        {
            return Err(ConfigError::new(
                "shards",
                format!("must be a power of two in 1..=65536, got {n}"),
            ));
        }
        Ok(())
    }

    fn events(&self) -> LockEvents {
        LockEvents::new(Arc::from(self.name.as_str()), self.metrics.as_ref())
    }

    /// Builds an in-memory lock.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid setting.
    pub fn build(self) -> Result<KeyedLock<K>, ConfigError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        self.validate()?;
        let backend = MemoryBackend::new(self.shards.unwrap_or_else(default_shards));
        Ok(KeyedLock::from_parts(backend, self.ttl, self.events()))
    }

    /// Builds a lock on another backend (the [`shards`](Self::shards) setting is ignored).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid setting, including a `ttl` the backend
    /// refuses ([`LockBackend::check_ttl`]).
    pub fn build_with_backend<B>(self, backend: B) -> Result<KeyedLock<K, B>, ConfigError>
    where
        K: Send + Sync,
        B: LockBackend<K>,
    {
        self.validate()?;
        backend.check_ttl(self.ttl)?;
        Ok(KeyedLock::from_parts(backend, self.ttl, self.events()))
    }
}
