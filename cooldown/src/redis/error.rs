//! What can go wrong talking to Redis.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::client::{At, ClientError};

/// A Redis cooldown call that got no usable answer from Redis.
///
/// Returned by [`RedisCooldown::try_check`](crate::RedisCooldown::try_check),
/// [`RedisReservation::commit`](crate::RedisReservation::commit) and
/// [`RedisReservation::rollback`](crate::RedisReservation::rollback); the
/// other calls apply the [`UnreachablePolicy`](crate::UnreachablePolicy)
/// instead (the outage is logged at `warn` when it begins). Every variant
/// names the server; for a [Redis Cluster](crate::RedisCooldown::cluster)
/// the seed nodes, as `cluster <host:port>,<host:port>,…` (displayed
/// `redis cluster at <host:port>,…`). [`source`](Error::source) is the
/// `redis` crate's error where there is one.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::error::Error as _;
/// use std::time::Duration;
/// use seawall_cooldown::{RedisCooldown, RedisCooldownError};
///
/// let c: RedisCooldown<&str> = RedisCooldown::builder("redis://127.0.0.1:1/")
///     .command_timeout(Duration::from_millis(200))
///     .build()
///     .unwrap();
/// match c.try_check(&"db-down").await.unwrap_err() {
///     err @ RedisCooldownError::Unreachable { .. } => {
///         assert!(err.to_string().starts_with("redis at 127.0.0.1:1 unreachable: "));
///         assert!(err.source().is_some()); // the redis crate's error
///     }
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RedisCooldownError {
    /// The connection failed or broke: refused, reset, DNS, authentication.
    Unreachable {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The `redis` crate's error.
        source: ::redis::RedisError,
    },
    /// Redis did not answer within the configured
    /// [`command_timeout`](crate::RedisCooldownBuilder::command_timeout) (a
    /// hung server, a black-holed network, a connect that never completes).
    Timeout {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The command timeout that ran out.
        after: Duration,
    },
    /// Redis answered with an error (out of memory, a read-only replica, a
    /// script error).
    Server {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The `redis` crate's error.
        source: ::redis::RedisError,
    },
    /// Redis answered something the cooldown scripts never return (another
    /// program wrote the cooldown's keys with another layout).
    UnexpectedReply {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The reply, as the client decoded it.
        reply: String,
    },
    /// The task that made the call did not finish: its runtime shut down,
    /// or it panicked. Whether the call reached Redis is unknown.
    Interrupted {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// Why the task did not finish.
        source: Arc<tokio::task::JoinError>,
    },
}

impl From<ClientError> for RedisCooldownError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { addr, source } => Self::Unreachable { addr, source },
            ClientError::Timeout { addr, after } => Self::Timeout { addr, after },
            ClientError::Server { addr, source } => Self::Server { addr, source },
        }
    }
}

impl RedisCooldownError {
    /// The server the failed call went to; for a cluster `cluster ` and its
    /// seed nodes, comma-separated.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_cooldown::RedisCooldownError;
    /// let err = RedisCooldownError::Timeout {
    ///     addr: "10.0.0.7:6379".into(),
    ///     after: std::time::Duration::from_millis(500),
    /// };
    /// assert_eq!(err.addr(), "10.0.0.7:6379");
    /// assert_eq!(err.to_string(), "redis at 10.0.0.7:6379 did not answer within 500ms");
    /// ```
    #[must_use]
    pub fn addr(&self) -> &str {
        match self {
            Self::Unreachable { addr, .. }
            | Self::Timeout { addr, .. }
            | Self::Server { addr, .. }
            | Self::UnexpectedReply { addr, .. }
            | Self::Interrupted { addr, .. } => addr,
        }
    }
}

impl fmt::Display for RedisCooldownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { addr, source } => {
                write!(f, "{} unreachable: {source}", At(addr))
            }
            Self::Timeout { addr, after } => {
                write!(f, "{} did not answer within {after:?}", At(addr))
            }
            Self::Server { addr, source } => {
                write!(f, "{} answered with an error: {source}", At(addr))
            }
            Self::UnexpectedReply { addr, reply } => {
                write!(f, "{} sent an unexpected reply: {reply}", At(addr))
            }
            Self::Interrupted { addr, source } => {
                write!(f, "{}: the call's task did not finish: {source}", At(addr))
            }
        }
    }
}

impl Error for RedisCooldownError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Unreachable { source, .. } | Self::Server { source, .. } => Some(source),
            Self::Interrupted { source, .. } => Some(&**source),
            Self::Timeout { .. } | Self::UnexpectedReply { .. } => None,
        }
    }
}
