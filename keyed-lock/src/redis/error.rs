//! The Redis backend's error.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::client::{At, ClientError};

/// Why a call to Redis failed: the server could not be reached, did not answer in time, or
/// answered with an error. Never "the key is busy" (that is `Busy` / `Timeout`).
///
/// Every variant names the server (`host:port`) so a log line says where to look; for a
/// [Redis Cluster](crate::RedisBackend::cluster) it names the seed nodes, as
/// `cluster <host:port>,<host:port>,…` (displayed `redis cluster at <host:port>,…`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RedisBackendError {
    /// No connection: refused, reset, or dropped while the command was in flight.
    Unreachable {
        /// The server, as `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The client's error.
        source: ::redis::RedisError,
    },
    /// No answer within the backend's
    /// [`command_timeout`](crate::RedisBackendBuilder::command_timeout) (a hung or overloaded
    /// server, or a network that drops packets).
    Timeout {
        /// The server, as `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The command timeout that ran out.
        after: Duration,
    },
    /// The server answered with an error (for example `OOM`, `READONLY`, `NOPERM`, a script
    /// error).
    Server {
        /// The server, as `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The client's error.
        source: ::redis::RedisError,
    },
    /// A TTL too short to leave any validity once the clock-drift margin (1 % + 2 ms) is
    /// taken off: shorter than [`RedisBackend::MIN_TTL`](crate::RedisBackend::MIN_TTL) (3 ms).
    /// Nothing was sent.
    InvalidTtl {
        /// The server, as `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The TTL asked for.
        ttl: Duration,
    },
    /// The server answered something the lock scripts never return (another program wrote a
    /// lock key with another layout).
    UnexpectedReply {
        /// The server, as `host:port` (or a socket path; `cluster <node>,…` for a cluster).
        addr: Arc<str>,
        /// The reply, as the client decoded it.
        reply: String,
    },
}

impl From<ClientError> for RedisBackendError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { addr, source } => Self::Unreachable { addr, source },
            ClientError::Timeout { addr, after } => Self::Timeout { addr, after },
            ClientError::Server { addr, source } => Self::Server { addr, source },
        }
    }
}

impl RedisBackendError {
    /// The server this error is about, as `host:port`; for a cluster `cluster ` and its seed
    /// nodes, comma-separated.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use seawall_keyed_lock::{KeyedLock, RedisBackend};
    /// let backend = RedisBackend::builder("redis://127.0.0.1:1/")
    ///     .command_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// let locks = KeyedLock::<String>::builder().build_with_backend(backend).unwrap();
    /// let err = locks.lock("alice").await.unwrap_err();
    /// assert_eq!(err.addr(), "127.0.0.1:1");
    /// # }
    /// ```
    #[must_use]
    pub fn addr(&self) -> &str {
        match self {
            Self::Unreachable { addr, .. }
            | Self::Timeout { addr, .. }
            | Self::Server { addr, .. }
            | Self::InvalidTtl { addr, .. }
            | Self::UnexpectedReply { addr, .. } => addr,
        }
    }
}

impl fmt::Display for RedisBackendError {
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
            Self::InvalidTtl { addr, ttl } => write!(
                f,
                "{}: ttl {ttl:?} is too short: a lease needs at least {:?} (the clock-drift margin is 1 % + 2 ms)",
                At(addr),
                super::RedisBackend::MIN_TTL
            ),
            Self::UnexpectedReply { addr, reply } => {
                write!(f, "{} sent an unexpected reply: {reply}", At(addr))
            }
        }
    }
}

impl Error for RedisBackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Unreachable { source, .. } | Self::Server { source, .. } => Some(source),
            Self::Timeout { .. } | Self::InvalidTtl { .. } | Self::UnexpectedReply { .. } => None,
        }
    }
}
