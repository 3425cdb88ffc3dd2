//! What can go wrong talking to Redis.

use std::fmt;
use std::time::Duration;

/// A Redis cooldown call that got no usable answer from Redis.
///
/// Returned by [`RedisCooldown::try_check`](crate::RedisCooldown::try_check),
/// [`RedisReservation::commit`](crate::RedisReservation::commit) and
/// [`RedisReservation::rollback`](crate::RedisReservation::rollback); the
/// other calls apply the [`UnreachablePolicy`](crate::UnreachablePolicy)
/// instead (the outage is logged at `warn` when it begins). Every variant
/// names the server; for a [Redis Cluster](crate::RedisCooldownBuilder::cluster_urls)
/// the seed nodes, as `cluster <host:port>,<host:port>,…` (displayed
/// `redis cluster at <host:port>,…`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisCooldownError {
    /// The connection failed or broke: refused, reset, DNS, authentication.
    Unreachable {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: String,
        /// What the `redis` crate reported.
        reason: String,
    },
    /// Redis did not answer within the configured
    /// [`timeout`](crate::RedisCooldownBuilder::timeout) (a hung server, a
    /// black-holed network, a connect that never completes).
    Timeout {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Redis answered with an error or a reply the cooldown did not expect
    /// (out of memory, a read-only replica, a script error).
    Server {
        /// The server, `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: String,
        /// What Redis (or the `redis` crate) said.
        reason: String,
    },
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
    pub fn addr(&self) -> &str {
        match self {
            RedisCooldownError::Unreachable { addr, .. }
            | RedisCooldownError::Timeout { addr, .. }
            | RedisCooldownError::Server { addr, .. } => addr,
        }
    }

    /// Classifies an error of the `redis` crate; `timeout` is the call's
    /// bound, reported for the crate's own (longer) connection and response
    /// timeouts too, since either means the server did not answer in time.
    pub(crate) fn from_redis(addr: &str, timeout: Duration, err: &::redis::RedisError) -> Self {
        let addr = addr.to_owned();
        if err.is_timeout() {
            RedisCooldownError::Timeout {
                addr,
                after: timeout,
            }
        } else if err.is_io_error()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
            || err.is_unrecoverable_error()
        {
            RedisCooldownError::Unreachable {
                addr,
                reason: err.to_string(),
            }
        } else {
            RedisCooldownError::Server {
                addr,
                reason: err.to_string(),
            }
        }
    }
}

/// How a cluster's `addr` starts (no `host:port` contains a space).
pub(crate) const CLUSTER: &str = "cluster ";

/// `redis at <addr>`, or `redis cluster at <nodes>` for a cluster's `cluster <nodes>`.
struct At<'a>(&'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.strip_prefix(CLUSTER) {
            Some(nodes) => write!(f, "redis cluster at {nodes}"),
            None => write!(f, "redis at {}", self.0),
        }
    }
}

impl fmt::Display for RedisCooldownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisCooldownError::Unreachable { addr, reason } => {
                write!(f, "{} unreachable: {reason}", At(addr))
            }
            RedisCooldownError::Timeout { addr, after } => {
                write!(f, "{} did not answer within {after:?}", At(addr))
            }
            RedisCooldownError::Server { addr, reason } => {
                write!(f, "{} failed the cooldown script: {reason}", At(addr))
            }
        }
    }
}

impl std::error::Error for RedisCooldownError {}
