//! Configuration of a [`Cooldown`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use crate::{ConfigError, Cooldown, Metrics};

/// Default window: 1800 s, what the alert service this crate replaces used.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1800);
/// Default cap on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default instance name (the `cooldown` metric label), the same in every
/// seawall crate.
pub const DEFAULT_NAME: &str = "default";
/// The longest window accepted: 100 years.
pub const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// The largest [`max_keys`](CooldownBuilder::max_keys) accepted: 2^30
/// (about a billion keys, some 100 GiB of state).
pub const MAX_MAX_KEYS: usize = 1 << 30;

/// Builds a [`Cooldown`]; start with [`Cooldown::builder`] or
/// [`CooldownBuilder::new`].
///
/// # Default
///
/// | setting | default | accepted |
/// |---|---|---|
/// | [`name`](Self::name) | `"default"` ([`DEFAULT_NAME`]) | not empty |
/// | [`window`](Self::window) | 1800 s ([`DEFAULT_WINDOW`]) | `1ns..=`[`MAX_WINDOW`] (100 years) |
/// | [`max_keys`](Self::max_keys) | 100 000 ([`DEFAULT_MAX_KEYS`]) | `1..=`[`MAX_MAX_KEYS`] (2^30) |
/// | [`metrics`](Self::metrics) | none | |
/// | [`payload`](Self::payload) | `()` (no payload kept) | |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_cooldown::Cooldown;
///
/// let cooldown: Cooldown<String> = Cooldown::builder()
///     .name("alerts")
///     .window(Duration::from_secs(600))
///     .max_keys(10_000)
///     .build()?;
/// assert_eq!(cooldown.window(), Duration::from_secs(600));
/// # Ok::<(), seawall_cooldown::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CooldownBuilder<K, P = ()> {
    name: String,
    window: Duration,
    max_keys: usize,
    metrics: Option<Metrics>,
    _types: PhantomData<fn() -> (K, P)>,
}

impl<K, P> fmt::Debug for CooldownBuilder<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CooldownBuilder")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("max_keys", &self.max_keys)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl<K> Default for CooldownBuilder<K, ()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> CooldownBuilder<K, ()> {
    /// A builder with the defaults listed above.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_cooldown::{Cooldown, CooldownBuilder};
    /// let cooldown: Cooldown<String> = CooldownBuilder::new().build().unwrap();
    /// assert_eq!(cooldown.name(), "default");
    /// ```
    pub fn new() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            window: DEFAULT_WINDOW,
            max_keys: DEFAULT_MAX_KEYS,
            metrics: None,
            _types: PhantomData,
        }
    }
}

impl<K, P> CooldownBuilder<K, P> {
    /// Names the instance: the `cooldown` label of its metrics and the
    /// `cooldown` field of its tracing events. Must not be empty.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<u64>::builder().name("alerts").build().unwrap();
    /// assert_eq!(cooldown.name(), "alerts");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a key stays quiet after it fires. Must be greater than zero
    /// and at most [`MAX_WINDOW`] (100 years).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cooldown = seawall_cooldown::Cooldown::<u64>::builder()
    ///     .window(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cooldown.window(), Duration::from_secs(60));
    /// ```
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The most keys tracked at once: `1..=`[`MAX_MAX_KEYS`]. Nothing is
    /// allocated up front; tables grow with the keys actually tracked.
    ///
    /// Keys live in shards (up to 16, chosen by hash), each holding at most
    /// `max_keys / shards`, so [`Cooldown::len`] never exceeds `max_keys`.
    /// When a new key arrives at a full shard, the shard first forgets keys
    /// with nothing left to remember (window over, nothing to report). If
    /// that frees nothing, it evicts the eighth of its keys that have been
    /// quiet the longest (least recent fire or suppression; keys with a send
    /// in flight go last). An evicted key may fire again before its window
    /// would have ended, and its unreported suppressed events are lost: both
    /// are logged at `warn` and counted in `seawall_cooldown_evictions_total`,
    /// which should stay at zero in a well-sized deployment.
    ///
    /// # Examples
    ///
    /// ```
    /// let cooldown = seawall_cooldown::Cooldown::<u64>::builder().max_keys(10).build().unwrap();
    /// for key in 0..100 {
    ///     cooldown.check(&key);
    /// }
    /// assert!(cooldown.len() <= 10);
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Reports decisions, tracked keys and evictions through `metrics`.
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use seawall_cooldown::{Cooldown, Metrics};
    ///
    /// let mut registry = Registry::default();
    /// let metrics = Metrics::register(&mut registry);
    /// let cooldown = Cooldown::<u64>::builder().metrics(metrics).build().unwrap();
    /// # drop(cooldown);
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Keeps a payload of type `Q` with each key's digest: the last one
    /// passed to a suppressed [`Cooldown::check_with`] or
    /// [`Cooldown::reserve_with`], returned as [`Digest::last_payload`](crate::Digest::last_payload).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::Cooldown;
    ///
    /// let cooldown = Cooldown::builder().payload::<String>().build().unwrap();
    /// cooldown.check_with(&"disk", &"92% full".to_owned());
    /// cooldown.check_with(&"disk", &"97% full".to_owned());
    /// # }
    /// ```
    pub fn payload<Q>(self) -> CooldownBuilder<K, Q> {
        CooldownBuilder {
            name: self.name,
            window: self.window,
            max_keys: self.max_keys,
            metrics: self.metrics,
            _types: PhantomData,
        }
    }

    /// Checks the settings and builds the cooldown. The clock starts now
    /// (`tokio::time::Instant::now()`; a paused test clock is honoured).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: an empty `name`, a
    /// zero or over-long `window`, a zero or over-large `max_keys`.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_cooldown::Cooldown;
    /// let cooldown = Cooldown::<String>::builder().window(Duration::from_secs(60)).build()?;
    /// assert!(cooldown.is_empty());
    /// let err = Cooldown::<String>::builder().max_keys(0).build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `max_keys`: must be in 1..=1073741824, got 0");
    /// # Ok::<(), seawall_cooldown::ConfigError>(())
    /// ```
    pub fn build(self) -> Result<Cooldown<K, P>, ConfigError>
    where
        K: Hash + Eq + Clone,
    {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.window.is_zero() || self.window > MAX_WINDOW {
            return Err(ConfigError::new(
                "window",
                format!(
                    "must be in 1ns..={MAX_WINDOW:?} (100 years), got {:?}",
                    self.window
                ),
            ));
        }
        if self.max_keys == 0 || self.max_keys > MAX_MAX_KEYS {
            return Err(ConfigError::new(
                "max_keys",
                format!("must be in 1..={MAX_MAX_KEYS}, got {}", self.max_keys),
            ));
        }
        Ok(Cooldown::from_config(
            self.name,
            self.window,
            self.max_keys,
            self.metrics,
        ))
    }
}
