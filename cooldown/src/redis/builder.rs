//! Configuration of a [`RedisCooldown`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::client::{Client, Target, check_prefix};
use super::cooldown::RedisCooldown;
use super::inner::RedisInner;
use super::policy::UnreachablePolicy;
use crate::{ConfigError, DEFAULT_NAME, DEFAULT_WINDOW, Metrics};

/// Default [`command_timeout`](RedisCooldownBuilder::command_timeout), the
/// bound on every Redis call: 1 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Default lifetime of a reservation a replica never committed nor rolled
/// back (it crashed mid-send): 60 s.
pub const DEFAULT_RESERVATION_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest default [`retention`](RedisCooldownBuilder::retention): 10 min.
pub const MIN_DEFAULT_RETENTION: Duration = Duration::from_secs(600);
/// The longest [`window`](RedisCooldownBuilder::window),
/// [`reservation_timeout`](RedisCooldownBuilder::reservation_timeout) and
/// [`retention`](RedisCooldownBuilder::retention) a Redis cooldown accepts:
/// 10 years (3650 days) each.
///
/// The scripts compute expiries in server microseconds as Lua doubles, up to
/// `now + window + retention`; with both at most 10 years that sum stays
/// below 2^53 µs (where doubles stop being exact, the year 2255) until the
/// year 2235, and every `PX`/`PEXPIRE` stays far inside what Redis accepts.
pub const MAX_REDIS_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The shortest [`retention`](RedisCooldownBuilder::retention): 1 s. A
/// shorter one would let the state hash (the suppressed count) expire as
/// the window ends, before a drain or the next fire can report it.
pub const MIN_RETENTION: Duration = Duration::from_secs(1);
/// Default [`prefix`](RedisCooldownBuilder::prefix) of every Redis key:
/// `seawall:cooldown:`; the cooldown's name follows it as a hash tag.
pub const DEFAULT_PREFIX: &str = "seawall:cooldown:";

/// Builds a [`RedisCooldown`]; start with [`RedisCooldown::builder`] (one
/// server), [`RedisCooldown::cluster`] (a Redis Cluster) or
/// [`RedisCooldown::builder_with_client`] (a `redis::Client` you configured).
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | [`name`](Self::name) | [`DEFAULT_NAME`](crate::DEFAULT_NAME) (also the Redis Cluster hash tag) |
/// | [`window`](Self::window) | 1800 s (at most [`MAX_REDIS_DURATION`], 10 years) |
/// | [`prefix`](Self::prefix) | `"seawall:cooldown:"` ([`DEFAULT_PREFIX`]) |
/// | [`command_timeout`](Self::command_timeout) | 1 s ([`DEFAULT_COMMAND_TIMEOUT`]) |
/// | [`reservation_timeout`](Self::reservation_timeout) | 60 s (at most [`MAX_REDIS_DURATION`]) |
/// | [`retention`](Self::retention) | the window, at least 10 min (accepted: [`MIN_RETENTION`] 1 s ..= [`MAX_REDIS_DURATION`]) |
/// | [`unreachable`](Self::unreachable) | [`UnreachablePolicy::Fire`] |
/// | [`metrics`](Self::metrics) | none |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seawall_cooldown::{RedisCooldown, UnreachablePolicy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Connects lazily: building needs a runtime, not a server.
/// let alerts: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:6379/")
///     .name("alerts")
///     .window(Duration::from_secs(1800))
///     .command_timeout(Duration::from_millis(250))
///     .unreachable(UnreachablePolicy::Fire)
///     .build()
///     .unwrap();
/// assert_eq!(alerts.addr(), "127.0.0.1:6379");
///
/// // A Redis Cluster: some of its nodes, also connected on first use.
/// let alerts: RedisCooldown<String> =
///     RedisCooldown::cluster(["redis://127.0.0.1:7001/", "redis://127.0.0.1:7002/"])
///         .name("alerts")
///         .build()
///         .unwrap();
/// assert_eq!(alerts.addr(), "cluster 127.0.0.1:7001,127.0.0.1:7002");
///
/// let err = RedisCooldown::<String>::builder("not a url").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// # }
/// ```
#[must_use]
pub struct RedisCooldownBuilder<K> {
    target: Result<Target, ConfigError>,
    name: String,
    prefix: String,
    window: Duration,
    command_timeout: Duration,
    reservation_timeout: Duration,
    retention: Option<Duration>,
    policy: UnreachablePolicy,
    metrics: Option<Metrics>,
    _key: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for RedisCooldownBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCooldownBuilder")
            .field("target", &self.target.as_ref().map(Target::addr))
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .field("command_timeout", &self.command_timeout)
            .field("reservation_timeout", &self.reservation_timeout)
            .field("retention", &self.retention)
            .field("unreachable", &self.policy)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl<K> RedisCooldownBuilder<K> {
    pub(crate) fn from_url(url: &str) -> Self {
        Self::with(Target::url(url).map_err(|reason| ConfigError::new("url", reason)))
    }

    pub(crate) fn from_client(client: ::redis::Client) -> Self {
        Self::with(Ok(Target::Node(client)))
    }

    pub(crate) fn from_cluster_urls<S: AsRef<str>>(nodes: impl IntoIterator<Item = S>) -> Self {
        Self::with(Target::cluster(nodes).map_err(|reason| ConfigError::new("nodes", reason)))
    }

    fn with(target: Result<Target, ConfigError>) -> Self {
        Self {
            target,
            name: DEFAULT_NAME.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            window: DEFAULT_WINDOW,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            reservation_timeout: DEFAULT_RESERVATION_TIMEOUT,
            retention: None,
            policy: UnreachablePolicy::default(),
            metrics: None,
            _key: PhantomData,
        }
    }

    /// Names the cooldown: the `cooldown` metric label, and the part of its
    /// Redis keys every replica must agree on. Replicas that share a name
    /// (and a [`prefix`](Self::prefix)) share the cooldown. Must not be empty
    /// nor contain `{` or `}`: it is the keys' Redis Cluster hash tag.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// assert_eq!(b().name("alerts").build().unwrap().name(), "alerts");
    /// assert_eq!(b().name("a{b}").build().unwrap_err().field(), "name");
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The start of every Redis key; keys are `<prefix>{<name>}:w:<key>`
    /// (window), `<prefix>{<name>}:s:<key>` (state) and
    /// `<prefix>{<name>}:idx` (digest index). Must end with `:` and must not
    /// contain `{` or `}` (the name is the keys' hash tag).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// assert_eq!(b().prefix("app:cooldown:").build().unwrap().prefix(), "app:cooldown:");
    /// assert_eq!(b().prefix("app").build().unwrap_err().field(), "prefix"); // must end with `:`
    /// # }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a key stays quiet after it fires. Must be at least 1 µs and
    /// at most [`MAX_REDIS_DURATION`] (10 years, shorter than the in-memory
    /// [`MAX_WINDOW`](crate::MAX_WINDOW); see [`MAX_REDIS_DURATION`] for why);
    /// kept in Redis with millisecond expiries (rounded up) and decided to
    /// the microsecond.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::{MAX_REDIS_DURATION, RedisCooldown};
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// let c = b().window(Duration::from_secs(60)).build().unwrap();
    /// assert_eq!(c.window(), Duration::from_secs(60));
    /// let too_long = MAX_REDIS_DURATION + Duration::from_secs(1);
    /// assert_eq!(b().window(too_long).build().unwrap_err().field(), "window");
    /// # }
    /// ```
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The bound on every Redis call, connecting included (on a cluster also
    /// the redirections and retries it needs). A call that gets no answer in
    /// time fails with
    /// [`RedisCooldownError::Timeout`](crate::RedisCooldownError::Timeout)
    /// and the [`unreachable`](Self::unreachable) policy decides. Must be
    /// greater than zero.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// let c = b().command_timeout(Duration::from_millis(250)).build().unwrap();
    /// assert_eq!(c.command_timeout(), Duration::from_millis(250));
    /// assert_eq!(b().command_timeout(Duration::ZERO).build().unwrap_err().field(), "command_timeout");
    /// # }
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long a reservation holds its key if it is neither committed nor
    /// rolled back (its replica crashed mid-send, or the rollback could not
    /// reach Redis). After that the key may fire again. Choose it longer
    /// than a send can take. Must be greater than zero and at most
    /// [`MAX_REDIS_DURATION`] (10 years: it becomes a `PX` in Redis).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// assert!(b().reservation_timeout(Duration::from_secs(30)).build().is_ok());
    /// let err = b().reservation_timeout(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err.field(), "reservation_timeout");
    /// # }
    /// ```
    pub fn reservation_timeout(mut self, timeout: Duration) -> Self {
        self.reservation_timeout = timeout;
        self
    }

    /// How long a key's state outlives its window: a pending digest that no
    /// [`drain_digests`](RedisCooldown::drain_digests) took within this
    /// time after the window ended is dropped by Redis (key expiry), and
    /// `last_fired` is remembered this long. Bounds what the cooldown keeps
    /// in Redis when nobody drains. Run the drain more often than this.
    /// Defaults to the window, and at least [`MIN_DEFAULT_RETENTION`] (10 min).
    /// Must be at least [`MIN_RETENTION`] (1 s), so a digest outlives its
    /// window long enough to be drained, and at most [`MAX_REDIS_DURATION`]
    /// (10 years).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use seawall_cooldown::RedisCooldown;
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// assert!(b().retention(Duration::from_secs(3600)).build().is_ok());
    /// assert_eq!(b().retention(Duration::ZERO).build().unwrap_err().field(), "retention");
    /// # }
    /// ```
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// What to decide when Redis does not answer; see [`UnreachablePolicy`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::{RedisCooldown, UnreachablePolicy};
    /// let b = || RedisCooldown::<String>::builder("redis://127.0.0.1:6379/");
    /// let c = b().unreachable(UnreachablePolicy::Suppress).build().unwrap();
    /// assert_eq!(c.unreachable_policy(), UnreachablePolicy::Suppress);
    /// # }
    /// ```
    pub fn unreachable(mut self, policy: UnreachablePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Reports decisions and degraded decisions through `metrics`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use prometheus_client::registry::Registry;
    /// use seawall_cooldown::{Metrics, RedisCooldown};
    /// let mut registry = Registry::default();
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:6379/")
    ///     .metrics(Metrics::register(&mut registry))
    ///     .build()
    ///     .unwrap();
    /// # let _ = c;
    /// # }
    /// ```
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks the settings and builds the cooldown. Does not connect: the
    /// connection is made by the first call (and re-made after failures).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid setting: `url` (or `nodes`
    /// for a cluster), `name` (empty, or with `{`/`}`), `prefix` (not ending
    /// in `:`, or with `{`/`}`), `window` (under 1 µs or over
    /// [`MAX_REDIS_DURATION`]), `command_timeout` (zero),
    /// `reservation_timeout` (zero or over [`MAX_REDIS_DURATION`]),
    /// `retention` (under [`MIN_RETENTION`] or over [`MAX_REDIS_DURATION`]),
    /// or `runtime` when called outside a tokio runtime.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use seawall_cooldown::RedisCooldown;
    /// // No server needed: the first call connects.
    /// let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:6379/").build().unwrap();
    /// assert_eq!(c.addr(), "127.0.0.1:6379");
    /// # }
    /// ```
    pub fn build(self) -> Result<RedisCooldown<K>, ConfigError> {
        let target = self.target?;
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.name.contains(['{', '}']) {
            return Err(ConfigError::new(
                "name",
                format!(
                    "must not contain `{{` or `}}` (it is the Redis Cluster hash tag), got {:?}",
                    self.name
                ),
            ));
        }
        check_prefix(&self.prefix).map_err(|reason| ConfigError::new("prefix", reason))?;
        if self.window.as_micros() == 0 {
            return Err(ConfigError::new(
                "window",
                format!(
                    "must be in 1µs..={MAX_REDIS_DURATION:?}, got {:?}",
                    self.window
                ),
            ));
        }
        let range = |field: &'static str, value: Duration, min: Duration| {
            if value < min || value > MAX_REDIS_DURATION {
                Err(ConfigError::new(
                    field,
                    format!("must be in {min:?}..={MAX_REDIS_DURATION:?}, got {value:?}"),
                ))
            } else {
                Ok(())
            }
        };
        range("window", self.window, Duration::from_micros(1))?;
        if self.command_timeout.is_zero() {
            return Err(ConfigError::new(
                "command_timeout",
                "must be greater than zero, got 0ns",
            ));
        }
        if self.reservation_timeout.is_zero() {
            return Err(ConfigError::new(
                "reservation_timeout",
                format!("must be in 1ns..={MAX_REDIS_DURATION:?}, got 0ns"),
            ));
        }
        range(
            "reservation_timeout",
            self.reservation_timeout,
            Duration::from_nanos(1),
        )?;
        if let Some(retention) = self.retention {
            range("retention", retention, MIN_RETENTION)?;
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new("runtime", "build() must be called inside a tokio runtime")
        })?;
        let field = match target {
            Target::Node(_) => "url",
            Target::Cluster(_) => "nodes",
        };
        let client =
            Client::new(target, self.command_timeout).map_err(|e| ConfigError::new(field, e))?;
        let retention = self
            .retention
            .unwrap_or(self.window.max(MIN_DEFAULT_RETENTION));
        Ok(RedisCooldown::from_inner(RedisInner::new(
            client,
            handle,
            self.prefix,
            self.name,
            self.window,
            self.reservation_timeout,
            retention,
            self.policy,
            self.metrics,
        )))
    }
}
