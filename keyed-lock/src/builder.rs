//! The builder of a [`KeyedLock`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::LockBackend;
use crate::{ConfigError, KeyedLock, LockEvents, MemoryBackend, Metrics};

/// Default lease TTL: 5 minutes, the value the bot this replaces used.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Default instance name (the `lock` metric label), the same in every seawall crate.
pub const DEFAULT_NAME: &str = "default";

/// The most shards an in-memory lock accepts.
pub const MAX_SHARDS: usize = 1 << 16;

/// 4 × available CPUs, rounded up to a power of two, at most [`MAX_SHARDS`].
pub(crate) fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, usize::from);
    cpus.saturating_mul(4)
        .clamp(1, MAX_SHARDS)
        .next_power_of_two()
}

/// Builds a [`KeyedLock`]; start with [`KeyedLock::builder`] or [`KeyedLockBuilder::new`].
///
/// # Default
///
/// | setting | default | accepted |
/// | --- | --- | --- |
/// | [`name`](Self::name) | `"default"` ([`DEFAULT_NAME`]) | not empty |
/// | [`ttl`](Self::ttl) | 5 minutes ([`DEFAULT_TTL`]) | greater than zero; a TTL too large for a deadline (`Duration::MAX`) saturates to a lease of about 30 years |
/// | [`metrics`](Self::metrics) | none | |
/// | [`shards`](Self::shards) | 4 × available CPUs, rounded up to a power of two | a power of two in `1..=`[`MAX_SHARDS`] (65536) |
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
#[must_use = "a builder does nothing until `build()` is called"]
pub struct KeyedLockBuilder<K> {
    name: String,
    ttl: Duration,
    metrics: Option<Metrics>,
    shards: Option<usize>,
    _key: PhantomData<fn(&K)>,
}

impl<K> fmt::Debug for KeyedLockBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLockBuilder")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("metrics", &self.metrics.is_some())
            .field("shards", &self.shards)
            .finish()
    }
}

impl<K> Default for KeyedLockBuilder<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> KeyedLockBuilder<K> {
    /// A builder with the defaults listed above.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_keyed_lock::KeyedLockBuilder;
    /// let locks = KeyedLockBuilder::<String>::new().build().unwrap();
    /// assert_eq!(locks.name(), "default");
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder().name("users").build().unwrap();
    /// assert_eq!(locks.name(), "users");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The default lease TTL. Must be greater than zero. A TTL whose deadline does not fit
    /// in an `Instant` (`Duration::MAX`) saturates: the lease lasts about 30 years.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder()
    ///     .ttl(Duration::from_secs(30))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(locks.ttl(), Duration::from_secs(30));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Report metrics to these families (see [`Metrics`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_keyed_lock::{KeyedLock, Metrics};
    ///
    /// let mut registry = Registry::default();
    /// let metrics = Metrics::register(&mut registry);
    /// let locks = KeyedLock::<u64>::builder().metrics(metrics).build().unwrap();
    /// # drop(locks);
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The number of shards of the in-memory backend: a power of two in `1..=65536`
    /// ([`MAX_SHARDS`]). Ignored by [`build_with_backend`](Self::build_with_backend).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<u64>::builder().shards(8).build().unwrap();
    /// assert_eq!(locks.backend().shards(), 8);
    /// let err = seawall_keyed_lock::KeyedLock::<u64>::builder().shards(3).build().unwrap_err();
    /// assert_eq!(err.field(), "shards");
    /// ```
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
            && (n == 0 || n > MAX_SHARDS || !n.is_power_of_two())
        {
            return Err(ConfigError::new(
                "shards",
                format!("must be a power of two in 1..={MAX_SHARDS}, got {n}"),
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
    /// [`ConfigError`] naming the first invalid setting (`name`, `ttl`, `shards`).
    ///
    /// # Examples
    ///
    /// ```
    /// let locks = seawall_keyed_lock::KeyedLock::<String>::builder().build().unwrap();
    /// assert!(locks.is_empty());
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_keyed_lock::{KeyedLock, MemoryBackend};
    /// let locks = KeyedLock::<u64>::builder()
    ///     .build_with_backend(MemoryBackend::new(4))
    ///     .unwrap();
    /// assert_eq!(locks.backend().shards(), 4);
    /// ```
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
