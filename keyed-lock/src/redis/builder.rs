//! The Redis backend's builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Client;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::backend::{Inner, RedisBackend};
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
/// # }
/// ```
pub struct RedisBackendBuilder {
    client: Result<Client, ConfigError>,
    prefix: String,
    command_timeout: Duration,
    auto_renew: bool,
    backoff: (Duration, Duration),
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field(
                "client",
                &self
                    .client
                    .as_ref()
                    .map(|c| c.get_connection_info().addr().to_string()),
            )
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .field("auto_renew", &self.auto_renew)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl RedisBackendBuilder {
    pub(crate) fn from_url(url: &str) -> Self {
        let client =
            Client::open(url).map_err(|_| ConfigError::new("url", "not a valid redis:// URL"));
        Self::with(client)
    }

    pub(crate) fn from_client(client: Client) -> Self {
        Self::with(Ok(client))
    }

    fn with(client: Result<Client, ConfigError>) -> Self {
        Self {
            client,
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            auto_renew: false,
            backoff: (Duration::from_millis(2), Duration::from_millis(100)),
        }
    }

    /// The prefix of every Redis key the backend writes: a key `k` becomes `<prefix>{k}` (the
    /// lease) and `<prefix>{k}:fence` (the fencing counter). Must not be empty and must not
    /// contain `{` or `}` (the hash tag is the key's).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any one Redis call may take, connecting included; after it the call fails
    /// with [`RedisBackendError::NoAnswer`](crate::RedisBackendError::NoAnswer) (or
    /// `Unreachable` if the connection failed first). Must be greater than zero.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Renew every lease in the background while its guard lives: a watchdog task extends it
    /// by its TTL every TTL/3. If a renewal finds the lease gone (another holder, or Redis
    /// lost its data), [`Guard::lost`](crate::Guard::lost) resolves at once; if Redis cannot
    /// be reached it keeps trying until the local deadline, then `lost()` resolves.
    #[must_use]
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// The bounds of the jittered exponential backoff between attempts on a key another
    /// process holds: the first wait is up to `min`, each next one up to twice as long, capped
    /// at `max`, and never past the holder's remaining TTL. Requires `0 < min <= max`.
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    /// Builds the backend. It connects lazily: a server that is down now is reported by the
    /// first lock call, not here.
    ///
    /// Must be called inside a tokio runtime: the connection and the release of dropped
    /// guards run on it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid setting: `url`, `prefix`,
    /// `command_timeout`, `backoff`, or `runtime` when called outside a tokio runtime.
    pub fn build(self) -> Result<RedisBackend, ConfigError> {
        let client = self.client?;
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "prefix",
                "must not be empty nor contain `{` or `}`",
            ));
        }
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
        let addr: Arc<str> = Arc::from(client.get_connection_info().addr().to_string());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.command_timeout))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(0);
        let conn = {
            let _enter = runtime.enter();
            ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|_| ConfigError::new("url", "the redis client rejected it"))?
        };
        Ok(RedisBackend::from_inner(Inner::new(
            conn,
            addr,
            self.prefix,
            self.command_timeout,
            self.auto_renew,
            (min, max),
            runtime,
        )))
    }
}
