//! The Redis backend's builder.

use std::fmt;
use std::time::Duration;

use super::backend::RedisBackend;
use super::client::{Client, Target, check_prefix};
use super::inner::Inner;
use crate::ConfigError;

/// Default [`command_timeout`](RedisBackendBuilder::command_timeout): 1 second.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Default [`prefix`](RedisBackendBuilder::prefix) of every Redis key: `seawall:lock:`.
pub const DEFAULT_PREFIX: &str = "seawall:lock:";

/// Builds a [`RedisBackend`].
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | [`prefix`](Self::prefix) | `"seawall:lock:"` ([`DEFAULT_PREFIX`]) |
/// | [`command_timeout`](Self::command_timeout) | 1 s ([`DEFAULT_COMMAND_TIMEOUT`]) |
/// | [`auto_renew`](Self::auto_renew) | off |
/// | [`backoff`](Self::backoff) | 2 ms doubling up to 100 ms, full jitter |
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use seawall_keyed_lock::RedisBackend;
///
/// // Building connects lazily: no server is needed until the first lock.
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/")
///     .prefix("myapp:lock:")
///     .command_timeout(Duration::from_millis(500))
///     .auto_renew(true)
///     .build()
///     .unwrap();
/// assert_eq!(backend.addr(), "127.0.0.1:6379");
///
/// let err = RedisBackend::builder("not a url").build().unwrap_err();
/// assert_eq!(err.field(), "url");
///
/// // A Redis Cluster: any of its nodes, also connected on first use.
/// let backend = RedisBackend::cluster(["redis://127.0.0.1:7001/", "redis://127.0.0.1:7002/"])
///     .build()
///     .unwrap();
/// assert_eq!(backend.addr(), "cluster 127.0.0.1:7001,127.0.0.1:7002");
/// # }
/// ```
pub struct RedisBackendBuilder {
    target: Result<Target, ConfigError>,
    prefix: String,
    command_timeout: Duration,
    auto_renew: bool,
    backoff: (Duration, Duration),
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("target", &self.target.as_ref().map(Target::addr))
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .field("auto_renew", &self.auto_renew)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl RedisBackendBuilder {
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
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            auto_renew: false,
            backoff: (Duration::from_millis(2), Duration::from_millis(100)),
        }
    }

    /// The prefix of every Redis key the backend writes: a key `k` becomes `<prefix>{k}` (the
    /// lease) and `<prefix>{k}:fence` (the fencing counter). Must end with `:` and must not
    /// contain `{` or `}` (the hash tag is the key's).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1/").prefix("app:lock:").build().unwrap();
    /// assert_eq!(backend.lease_key(&"alice"), "app:lock:{alice}");
    /// let err = RedisBackend::builder("redis://127.0.0.1/").prefix("app").build().unwrap_err();
    /// assert_eq!(err.field(), "prefix"); // must end with `:`
    /// # }
    /// ```
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any one Redis call may take, connecting included (on a cluster also the
    /// redirections and retries it needs); after it the call fails
    /// with [`RedisBackendError::Timeout`](crate::RedisBackendError::Timeout) (or
    /// `Unreachable` if the connection failed first). Must be greater than zero.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1/")
    ///     .command_timeout(Duration::from_millis(250))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(backend.command_timeout(), Duration::from_millis(250));
    /// # }
    /// ```
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Renew every lease in the background while its guard lives: a watchdog task extends it
    /// by its TTL every TTL/3. If a renewal finds the lease gone (another holder, or Redis
    /// lost its data), [`Guard::lost`](crate::Guard::lost) resolves at once; if Redis cannot
    /// be reached it keeps trying until the local deadline, then `lost()` resolves.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// let backend = RedisBackend::builder("redis://127.0.0.1/").auto_renew(true).build().unwrap();
    /// assert!(backend.auto_renew());
    /// # }
    /// ```
    #[must_use]
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// The bounds of the jittered exponential backoff between attempts on a key another
    /// process holds: the first wait is up to `min`, each next one up to twice as long, capped
    /// at `max`, and never past the holder's remaining TTL. Requires `0 < min <= max`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::RedisBackend;
    /// let ms = Duration::from_millis;
    /// assert!(RedisBackend::builder("redis://127.0.0.1/").backoff(ms(5), ms(50)).build().is_ok());
    /// let err = RedisBackend::builder("redis://127.0.0.1/").backoff(ms(50), ms(5)).build().unwrap_err();
    /// assert_eq!(err.field(), "backoff");
    /// # }
    /// ```
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Builds the backend. It connects lazily: a server (or cluster) that is down now is
    /// reported by the first lock call, not here.
    ///
    /// Must be called inside a tokio runtime: the connection and the release of dropped
    /// guards run on it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid setting: `url`, `nodes` (a cluster's), `prefix`,
    /// `command_timeout`, `backoff`, or `runtime` when called outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use seawall_keyed_lock::RedisBackend;
    /// // Nothing is connected here: the first lock call connects.
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build().unwrap();
    /// assert_eq!(backend.local_len(), 0);
    /// # }
    /// ```
    pub fn build(self) -> Result<RedisBackend, ConfigError> {
        let target = self.target?;
        check_prefix(&self.prefix).map_err(|reason| ConfigError::new("prefix", reason))?;
        if self.command_timeout.is_zero() {
            return Err(ConfigError::new(
                "command_timeout",
                "must be greater than zero",
            ));
        }
        let (min, max) = self.backoff;
        if min.is_zero() || min > max {
            return Err(ConfigError::new("backoff", "requires 0 < min <= max"));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new("runtime", "build() must be called inside a tokio runtime")
        })?;
        let field = match target {
            Target::Node(_) => "url",
            Target::Cluster(_) => "nodes",
        };
        let client = {
            let _enter = runtime.enter();
            Client::new(target, self.command_timeout).map_err(|e| ConfigError::new(field, e))?
        };
        Ok(RedisBackend::from_inner(Inner::new(
            client,
            self.prefix,
            self.auto_renew,
            (min, max),
            runtime,
        )))
    }
}
