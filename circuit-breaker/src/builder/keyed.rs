//! The keyed breaker's builder: a [`CircuitBreakerBuilder`] for every key's breaker, plus the
//! keyed settings.

use super::*;

/// Configures a [`KeyedCircuitBreaker`]; from [`CircuitBreakerBuilder::keyed`] or
/// [`KeyedCircuitBreaker::builder`]. Every key's breaker is built from the
/// [`CircuitBreakerBuilder`] it came from (its name and metrics are the keyed breaker's),
/// except the keys given their own with [`override_key`](Self::override_key).
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | the per-key breaker | [`CircuitBreakerBuilder`]'s defaults |
/// | [`max_keys`](KeyedCircuitBreakerBuilder::max_keys) | 10 000 |
/// | [`override_key`](KeyedCircuitBreakerBuilder::override_key) | none |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker};
///
/// let tenants: KeyedCircuitBreaker<u64> = KeyedCircuitBreaker::builder()
///     .max_keys(50_000)
///     .build()
///     .unwrap();
/// assert_eq!(tenants.max_keys(), 50_000);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyedCircuitBreakerBuilder<K> {
    pub(super) breaker: CircuitBreakerBuilder,
    pub(super) max_keys: usize,
    pub(super) overrides: Vec<(K, CircuitBreakerBuilder)>,
}

impl<K> fmt::Debug for KeyedCircuitBreakerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerBuilder")
            .field("breaker", &self.breaker)
            .field("max_keys", &self.max_keys)
            .field("overrides", &self.overrides.len())
            .finish()
    }
}

impl<K> Default for KeyedCircuitBreakerBuilder<K> {
    fn default() -> Self {
        CircuitBreakerBuilder::default().keyed()
    }
}

impl<K> KeyedCircuitBreakerBuilder<K> {
    /// The default [`max_keys`](Self::max_keys): 10 000.
    pub const DEFAULT_MAX_KEYS: usize = 10_000;

    /// The largest [`max_keys`](Self::max_keys) accepted: 100 000 000.
    pub const MAX_KEYS: usize = 100_000_000;

    /// A builder with the defaults listed [above](KeyedCircuitBreakerBuilder#default).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{KeyedCircuitBreaker, KeyedCircuitBreakerBuilder};
    ///
    /// let keyed: KeyedCircuitBreaker<String> = KeyedCircuitBreakerBuilder::new().build().unwrap();
    /// assert_eq!(keyed.name(), "default");
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration of every key's breaker (replacing the one this builder came from),
    /// and the keyed breaker's name and metrics.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker};
    ///
    /// let keyed: KeyedCircuitBreaker<String> = KeyedCircuitBreaker::builder()
    ///     .breaker(CircuitBreaker::builder().name("hosts").consecutive_failures(2))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(keyed.name(), "hosts");
    /// ```
    pub fn breaker(mut self, breaker: CircuitBreakerBuilder) -> Self {
        self.breaker = breaker;
        self
    }

    /// The most keys tracked at once (default 10 000; must be in `1..=100_000_000`, field
    /// `max_keys`). Memory is allocated per tracked key, never up front.
    ///
    /// When every slot holds a breaker that cannot be forgotten (open, half-open, forced open,
    /// disabled, closed with failures counted, or with a call in flight), a call for a new
    /// key is **passed through untracked**: it runs, its outcome is not recorded, and it is
    /// counted as `untracked` (in [`untracked_calls`](crate::KeyedCircuitBreaker::untracked_calls)
    /// and the `outcome="untracked"` call series). No open or half-open breaker is ever
    /// forgotten to make room, and a healthy new host is never refused because others fail.
    ///
    /// Room is looked for first in the new key's shard, then in every shard; a sweep of every
    /// shard that frees nothing is not tried again for one second (tokio clock), so a keyed
    /// breaker full of failing keys does not scan them all for each new key. In that second a
    /// new key may go untracked although a breaker elsewhere has since become idle.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    ///
    /// let err = KeyedCircuitBreaker::<String>::builder().max_keys(0).build().unwrap_err();
    /// assert_eq!(err.field(), "max_keys");
    /// ```
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Gives `key` its own configuration (e.g. a longer open duration for one slow host).
    /// `breaker`'s name and metrics are ignored: the key's breaker reports as the keyed
    /// breaker's. Checked by `build` (field `override_key`, the reason naming the invalid
    /// setting). A later override of the same key replaces an earlier one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker, State};
    ///
    /// let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
    ///     .consecutive_failures(1)
    ///     .keyed()
    ///     .override_key("batch.internal".to_owned(), CircuitBreaker::builder().consecutive_failures(3))
    ///     .build()
    ///     .unwrap();
    /// hosts.try_acquire("api.example").unwrap().failure();
    /// hosts.try_acquire("batch.internal").unwrap().failure();
    /// assert_eq!(hosts.state("api.example"), State::Open);
    /// assert_eq!(hosts.state("batch.internal"), State::Closed);
    /// ```
    pub fn override_key(mut self, key: K, breaker: CircuitBreakerBuilder) -> Self {
        self.overrides.push((key, breaker));
        self
    }

    /// Builds the keyed breaker, tracking no key yet.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`]: any error of [`CircuitBreakerBuilder::build`] for the per-key
    /// configuration, `max_keys` outside `1..=100_000_000`, or `override_key` when an
    /// override's configuration is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, KeyedCircuitBreaker};
    ///
    /// let err = CircuitBreaker::builder().probes(0).keyed::<String>().build().unwrap_err();
    /// assert_eq!(err.field(), "probes");
    /// ```
    pub fn build(self) -> Result<KeyedCircuitBreaker<K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    {
        let (template, metrics) = self.breaker.into_template()?;
        if !(1..=Self::MAX_KEYS).contains(&self.max_keys) {
            return Err(ConfigError::new(
                "max_keys",
                format!("must be in 1..={}, got {}", Self::MAX_KEYS, self.max_keys),
            ));
        }
        let mut overrides = HashMap::new();
        for (key, breaker) in self.overrides {
            let (t, _) = breaker.into_template().map_err(|e| {
                ConfigError::new(
                    "override_key",
                    format!("invalid `{}` for one key: {}", e.field(), e.reason()),
                )
            })?;
            overrides.insert(key, t);
        }
        Ok(KeyedCircuitBreaker::new(
            template,
            overrides,
            self.max_keys,
            metrics,
        ))
    }
}
