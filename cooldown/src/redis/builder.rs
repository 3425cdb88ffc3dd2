//! Configuration of a [`RedisCooldown`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use std::sync::Arc;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::{Client, ConnectionInfo, IntoConnectionInfo};

use super::conn::{Conn, LazyCluster};
use super::cooldown::{RedisCooldown, RedisInner};
use super::error::CLUSTER;
use super::policy::UnreachablePolicy;
use crate::{ConfigError, DEFAULT_NAME, DEFAULT_WINDOW, Metrics};

/// Default bound on every Redis call: 1 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
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
/// Default key prefix; the cooldown's name follows it as a hash tag.
pub const DEFAULT_PREFIX: &str = "seawall:cooldown";

/// How many times the cluster client retries a command (redirections, a
/// reconnect) within the timeout.
const CLUSTER_RETRIES: u32 = 3;

/// Where the builder connects.
enum Target {
    None,
    Url(String),
    Client(Client),
    Cluster(Vec<String>),
}

/// Builds a [`RedisCooldown`]; start with [`RedisCooldown::builder`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | [`url`](Self::url) / [`client`](Self::client) / [`cluster_urls`](Self::cluster_urls) | none: required |
/// | [`name`](Self::name) | `"cooldown"` (also the Redis Cluster hash tag) |
/// | [`window`](Self::window) | 1800 s (at most [`MAX_REDIS_DURATION`], 10 years) |
/// | [`prefix`](Self::prefix) | `"seawall:cooldown"` |
/// | [`timeout`](Self::timeout) | 1 s |
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
/// let alerts: RedisCooldown<String> = RedisCooldown::builder()
///     .url("redis://127.0.0.1:6379/")
///     .name("alerts")
///     .window(Duration::from_secs(1800))
///     .timeout(Duration::from_millis(250))
///     .unreachable(UnreachablePolicy::Fire)
///     .build()
///     .unwrap();
/// assert_eq!(alerts.addr(), "127.0.0.1:6379");
///
/// // A Redis Cluster: some of its nodes, also connected on first use.
/// let alerts: RedisCooldown<String> = RedisCooldown::builder()
///     .cluster_urls(["redis://127.0.0.1:7001/", "redis://127.0.0.1:7002/"])
///     .name("alerts")
///     .build()
///     .unwrap();
/// assert_eq!(alerts.addr(), "cluster 127.0.0.1:7001,127.0.0.1:7002");
/// # }
/// ```
pub struct RedisCooldownBuilder<K> {
    target: Target,
    name: String,
    prefix: String,
    window: Duration,
    timeout: Duration,
    reservation_timeout: Duration,
    retention: Option<Duration>,
    policy: UnreachablePolicy,
    metrics: Option<Metrics>,
    _key: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for RedisCooldownBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::None => "none".to_owned(),
            Target::Url(url) => url.clone(),
            Target::Client(c) => c.get_connection_info().addr().to_string(),
            Target::Cluster(urls) => format!("{CLUSTER}{}", urls.join(",")),
        };
        f.debug_struct("RedisCooldownBuilder")
            .field("target", &target)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("window", &self.window)
            .field("timeout", &self.timeout)
            .field("reservation_timeout", &self.reservation_timeout)
            .field("retention", &self.retention)
            .field("unreachable", &self.policy)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

impl<K> Default for RedisCooldownBuilder<K> {
    fn default() -> Self {
        Self {
            target: Target::None,
            name: DEFAULT_NAME.to_owned(),
            prefix: DEFAULT_PREFIX.to_owned(),
            window: DEFAULT_WINDOW,
            timeout: DEFAULT_TIMEOUT,
            reservation_timeout: DEFAULT_RESERVATION_TIMEOUT,
            retention: None,
            policy: UnreachablePolicy::default(),
            metrics: None,
            _key: PhantomData,
        }
    }
}

impl<K> RedisCooldownBuilder<K> {
    /// The Redis server, e.g. `redis://127.0.0.1:6379/0` (any URL the
    /// `redis` crate accepts). Parsed by [`build`](Self::build).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.target = Target::Url(url.into());
        self
    }

    /// The Redis server, as a `redis::Client` configured by the caller (TLS,
    /// credentials). Replaces a [`url`](Self::url).
    pub fn client(mut self, client: Client) -> Self {
        self.target = Target::Client(client);
        self
    }

    /// A Redis Cluster, given the URLs of some of its nodes (the client
    /// discovers the others). Replaces a [`url`](Self::url) or
    /// [`client`](Self::client); parsed by [`build`](Self::build).
    ///
    /// Each script goes to the master that owns the cooldown's slot,
    /// following `MOVED`/`ASK` redirections: all keys of one cooldown share
    /// its [`name`](Self::name) as hash tag, so one cooldown lives in one
    /// slot, and cooldowns with different names spread over the masters.
    /// Connects on first use, like a URL; the [`timeout`](Self::timeout)
    /// bounds every call, connecting, redirections and retries included. See
    /// [the crate docs](crate#redis-cluster) for what a failover does.
    pub fn cluster_urls<S: AsRef<str>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.target = Target::Cluster(urls.into_iter().map(|u| u.as_ref().to_owned()).collect());
        self
    }

    /// Names the cooldown: the `cooldown` metric label, and the part of its
    /// Redis keys every replica must agree on. Replicas that share a name
    /// (and a [`prefix`](Self::prefix)) share the cooldown. Must not be empty
    /// nor contain `{` or `}`: it is the keys' Redis Cluster hash tag.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The start of every Redis key; keys are
    /// `<prefix>:{<name>}:w:<key>` (window), `<prefix>:{<name>}:s:<key>`
    /// (state) and `<prefix>:{<name>}:idx` (digest index). Must not contain
    /// `{` or `}`, so the name is the keys' hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a key stays quiet after it fires. Must be at least 1 µs and
    /// at most [`MAX_REDIS_DURATION`] (10 years, shorter than the in-memory
    /// [`MAX_WINDOW`](crate::MAX_WINDOW); see [`MAX_REDIS_DURATION`] for why); kept in Redis with millisecond
    /// expiries (rounded up) and decided to the microsecond.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The bound on every Redis call, connecting included. A call that gets
    /// no answer in time fails with [`RedisCooldownError::Timeout`](crate::RedisCooldownError::Timeout)
    /// and the [`unreachable`](Self::unreachable) policy decides. Must be
    /// greater than zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a reservation holds its key if it is neither committed nor
    /// rolled back (its replica crashed mid-send, or the rollback could not
    /// reach Redis). After that the key may fire again. Choose it longer
    /// than a send can take. Must be greater than zero and at most
    /// [`MAX_REDIS_DURATION`] (10 years: it becomes a `PX` in Redis).
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
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    /// What to decide when Redis does not answer; see [`UnreachablePolicy`].
    pub fn unreachable(mut self, policy: UnreachablePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Reports decisions and degraded decisions through `metrics`.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks the settings and builds the cooldown. Does not connect: the
    /// connection is made by the first call (and re-made after failures) by
    /// a `redis` connection manager.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field: an empty `name` or
    /// one with `{`/`}`, a `prefix` with `{`/`}`, a window under 1 µs or
    /// over [`MAX_REDIS_DURATION`], a zero `timeout`, a zero
    /// `reservation_timeout` or one over [`MAX_REDIS_DURATION`], a
    /// `retention` under [`MIN_RETENTION`] or over [`MAX_REDIS_DURATION`], no or an
    /// invalid `url`, empty or invalid `cluster_urls`, or no tokio runtime
    /// (`runtime`).
    ///
    /// # Panics
    ///
    /// Never.
    pub fn build(self) -> Result<RedisCooldown<K>, ConfigError> {
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
        if self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "prefix",
                format!(
                    "must not contain `{{` or `}}` (the name is the Redis Cluster hash tag), got {:?}",
                    self.prefix
                ),
            ));
        }
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
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
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
        // Each call is bounded by `timeout` around it. The connection's own
        // timeouts are longer, so a hung server reports our `Timeout` (not a
        // race between two equal timers), while they still make the client
        // drop a connection attempt or a request that hangs for good.
        let inner_timeout = self.timeout.saturating_mul(2);
        let (conn, addr) = match self.target {
            Target::None => {
                return Err(ConfigError::new(
                    "url",
                    "must be set (or `client`, or `cluster_urls`)",
                ));
            }
            Target::Url(url) => {
                let client = Client::open(url.as_str())
                    .map_err(|e| ConfigError::new("url", e.to_string()))?;
                node(client, inner_timeout)?
            }
            Target::Client(client) => node(client, inner_timeout)?,
            Target::Cluster(urls) => cluster(&urls, inner_timeout)?,
        };
        let handle = tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
        let retention = self
            .retention
            .unwrap_or(self.window.max(MIN_DEFAULT_RETENTION));
        Ok(RedisCooldown::from_inner(RedisInner::new(
            conn,
            handle,
            addr,
            format!("{}:{{{}}}:", self.prefix, self.name),
            self.name,
            self.window,
            self.timeout,
            self.reservation_timeout,
            retention,
            self.policy,
            self.metrics,
        )))
    }
}

/// `build` was called outside a tokio runtime.
fn no_runtime() -> ConfigError {
    ConfigError::new("runtime", "build() must be called inside a tokio runtime")
}

/// A lazy connection manager on one server, and its `host:port`.
fn node(client: Client, inner_timeout: Duration) -> Result<(Conn, String), ConfigError> {
    tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
    let addr = client.get_connection_info().addr().to_string();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(inner_timeout))
        .set_response_timeout(Some(inner_timeout))
        // One attempt per call: the caller's timeout bounds the call, and the
        // next call reconnects.
        .set_number_of_retries(0);
    let conn = ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| ConfigError::new("url", e.to_string()))?;
    Ok((Conn::Node(conn), addr))
}

/// A cluster connection made on first use, and `cluster <seed nodes>`.
fn cluster(urls: &[String], inner_timeout: Duration) -> Result<(Conn, String), ConfigError> {
    let invalid = |reason: String| ConfigError::new("cluster_urls", reason);
    let nodes = urls
        .iter()
        .map(|u| u.as_str().into_connection_info())
        .collect::<Result<Vec<ConnectionInfo>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if nodes.is_empty() {
        return Err(invalid("no node URL given".to_owned()));
    }
    tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let addr = format!("{CLUSTER}{}", addrs.join(","));
    let client = ClusterClientBuilder::new(nodes)
        .connection_timeout(inner_timeout)
        .response_timeout(inner_timeout)
        .retries(CLUSTER_RETRIES)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    Ok((Conn::Cluster(Arc::new(LazyCluster::new(client))), addr))
}
