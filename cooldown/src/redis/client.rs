//! The Redis transport: one connection (to a server or a Redis Cluster), every script call
//! bounded by the command timeout, `NOSCRIPT` answered by reloading, and every failure sorted
//! into what the caller needs next ([`ClientError`]).
//!
//! This file is byte-identical in `seawall-keyed-lock` and `seawall-cooldown`
//! (`src/redis/client.rs`), and `.ci/run` fails when the two copies differ: change both at
//! once. Nothing here names an item of either crate; each crate turns a [`ClientError`] into
//! its own public error.
//!
//! # The connection manager's stale timeouts
//!
//! On one server the connection is the `redis` crate's `ConnectionManager`, which shares one
//! connection attempt between all callers. When the caller that started an attempt to a hung
//! server gives up (its command timeout ran out, or its future was dropped), the attempt is
//! left unpolled with its own connect timeout running; the next caller to poll it gets that
//! timeout at once, then the manager reconnects. Such a timeout says nothing about the call
//! that got it: nothing was sent. So [`Client::send`] asks once more when a timeout comes back
//! before the client's own timeouts (both the command timeout, counted from the send) could
//! have run out, on the fresh connection; the whole call stays bounded by the command timeout.
//! This is the one workaround: the client's timeouts are not padded (a longer connect timeout
//! only moves the stale outcome later, to where it is reported as a timeout the call did not
//! wait for).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Cmd, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, RedisResult, ScriptInvocation, ServerErrorKind, Value,
};
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// How many times the cluster client retries a command (redirections, a reconnect) within the
/// command timeout.
const CLUSTER_RETRIES: u32 = 3;

/// How many more times a script is sent after `NOSCRIPT`, beyond the one reload
/// `invoke_async` does itself.
const NOSCRIPT_RELOADS: u32 = 2;

/// How a cluster's address starts (no `host:port` contains a space).
const CLUSTER: &str = "cluster ";

/// Where a [`Client`] connects: parsed, not connected.
pub(crate) enum Target {
    /// One server.
    Node(::redis::Client),
    /// Some nodes of a Redis Cluster (the client discovers the others).
    Cluster(Vec<ConnectionInfo>),
}

impl Target {
    /// One server, from a `redis://` or `redis+unix://` URL.
    ///
    /// # Errors
    ///
    /// Why the URL was refused (the URL itself is not repeated: it may hold a password).
    pub(crate) fn url(url: &str) -> Result<Self, &'static str> {
        ::redis::Client::open(url).map(Self::Node).map_err(|_| {
            if url.starts_with("rediss://") {
                "rediss:// (TLS) is not supported: the redis dependency is built without TLS"
            } else {
                "must be a valid redis:// or redis+unix:// URL"
            }
        })
    }

    /// A Redis Cluster, from the URLs of some of its nodes.
    ///
    /// # Errors
    ///
    /// Why the list was refused: empty, or a URL that does not parse.
    pub(crate) fn cluster<S: AsRef<str>>(
        nodes: impl IntoIterator<Item = S>,
    ) -> Result<Self, &'static str> {
        let nodes: Vec<ConnectionInfo> = nodes
            .into_iter()
            .map(|url| url.as_ref().into_connection_info())
            .collect::<Result<_, _>>()
            .map_err(|_| "every node must be a valid redis:// URL")?;
        if nodes.is_empty() {
            return Err("must list at least one node URL, got none");
        }
        Ok(Self::Cluster(nodes))
    }

    /// The address errors name: `host:port` (or a socket path), or for a cluster `cluster `
    /// and the given nodes, comma-separated.
    pub(crate) fn addr(&self) -> String {
        match self {
            Self::Node(client) => client.get_connection_info().addr().to_string(),
            Self::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
                format!("{CLUSTER}{}", nodes.join(","))
            }
        }
    }
}

/// The rule for a key prefix, the same in both crates: it ends with `:` (the separator
/// before the hash tag is the prefix's own) and holds no `{` or `}` (the hash tag that follows
/// must be the key's first).
///
/// # Errors
///
/// Why not, with the prefix given.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.ends_with(':') && !prefix.contains(['{', '}']) {
        Ok(())
    } else {
        Err(format!(
            "must end with `:` and contain no `{{` or `}}`, got {prefix:?}"
        ))
    }
}

/// `redis at <addr>`, or `redis cluster at <nodes>` for a cluster's address: how every error
/// message names the server.
pub(crate) struct At<'a>(pub(crate) &'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.strip_prefix(CLUSTER) {
            Some(nodes) => write!(f, "redis cluster at {nodes}"),
            None => write!(f, "redis at {}", self.0),
        }
    }
}

/// Why a call got no usable answer, as the public errors of both crates name it.
#[derive(Debug, Clone)]
pub(crate) enum ClientError {
    /// No connection: refused, reset, DNS, authentication, or dropped in flight.
    Unreachable {
        /// The server ([`Target::addr`]).
        addr: Arc<str>,
        /// The client's error.
        source: RedisError,
    },
    /// No answer within the bound.
    Timeout {
        /// The server ([`Target::addr`]).
        addr: Arc<str>,
        /// The bound that ran out: the command timeout.
        after: Duration,
    },
    /// The server answered with an error (`OOM`, `READONLY`, a script error, ...).
    Server {
        /// The server ([`Target::addr`]).
        addr: Arc<str>,
        /// The client's error.
        source: RedisError,
    },
}

/// A connection to one server or a cluster, made on first use. Cloning is cheap: clones share
/// the connection.
#[derive(Clone)]
pub(crate) struct Client {
    conn: Conn,
    addr: Arc<str>,
    command_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `target` whose every call is bounded by `command_timeout` (greater than
    /// zero), connecting included. Connects on first use: nothing needs to be reachable now.
    /// Must be called inside a tokio runtime (the connection manager lives on it).
    ///
    /// # Errors
    ///
    /// Why the `redis` crate refused the target.
    pub(crate) fn new(target: Target, command_timeout: Duration) -> Result<Self, &'static str> {
        let addr: Arc<str> = Arc::from(target.addr());
        let conn = match target {
            Target::Node(client) => {
                // Zero retries: the command timeout bounds the call, and the next call
                // reconnects.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(command_timeout))
                    .set_response_timeout(Some(command_timeout))
                    .set_number_of_retries(0);
                Conn::Node(
                    ConnectionManager::new_lazy_with_config(client, config)
                        .map_err(|_| "refused by the redis client")?,
                )
            }
            Target::Cluster(nodes) => Conn::Cluster(Arc::new(LazyCluster {
                client: ClusterClientBuilder::new(nodes)
                    .connection_timeout(command_timeout)
                    .response_timeout(command_timeout)
                    .retries(CLUSTER_RETRIES)
                    .build()
                    .map_err(|_| "refused by the redis cluster client")?,
                conn: OnceCell::new(),
            })),
        };
        Ok(Self {
            conn,
            addr,
            command_timeout,
        })
    }

    /// The server as errors name it ([`Target::addr`]).
    pub(crate) fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// The bound on every call.
    pub(crate) fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Runs a script ([`send`](Self::send)), bounded by the command timeout.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, ClientError> {
        self.bounded(self.send(invocation)).await
    }

    /// Bounds `call` (made of [`send`](Self::send)s) by the command timeout and sorts its
    /// failure.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.command_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(ClientError::Timeout {
                addr: Arc::clone(&self.addr),
                after: self.command_timeout,
            }),
        }
    }

    /// Runs a script, unbounded (the caller bounds it, see [`bounded`](Self::bounded)).
    ///
    /// `invoke_async` answers `NOSCRIPT` by loading the script and sending `EVALSHA` again; a
    /// `SCRIPT FLUSH` (or a failover) between that load and the retry makes the retry fail
    /// with `NOSCRIPT` too, so it goes round again, a bounded number of times. A stale timeout
    /// (see the module docs) is asked again once.
    pub(crate) async fn send<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let mut conn = self.conn.clone();
        let start = Instant::now();
        let mut reloads = 0;
        let mut stale_retried = false;
        loop {
            match invocation.invoke_async(&mut conn).await {
                Err(e) if is_noscript(&e) && reloads < NOSCRIPT_RELOADS => reloads += 1,
                Err(e)
                    if e.is_timeout()
                        && !stale_retried
                        && start.elapsed() < self.command_timeout =>
                {
                    stale_retried = true;
                }
                other => return other,
            }
        }
    }

    /// Sorts an error of the `redis` crate: a timeout (the client's own connect or response
    /// timeout, both the command timeout), a connection that failed, or the server's answer.
    fn classify(&self, e: RedisError) -> ClientError {
        let addr = Arc::clone(&self.addr);
        if e.is_timeout() {
            ClientError::Timeout {
                addr,
                after: self.command_timeout,
            }
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            ClientError::Unreachable { addr, source: e }
        } else {
            ClientError::Server { addr, source: e }
        }
    }
}

fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A connection to one server or to a cluster; clones share it.
#[derive(Clone)]
enum Conn {
    /// One server: redirections are not followed.
    Node(ConnectionManager),
    /// A Redis Cluster: `MOVED`/`ASK` are followed, each script goes to its keys' slot.
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made by the first call that needs it (so building never blocks nor
/// needs a reachable cluster). A failed or cancelled attempt leaves it unset: the next call
/// tries again.
struct LazyCluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl LazyCluster {
    /// The cluster connection, made now if it was not yet. The caller bounds the wait (the
    /// client's own connection timeout bounds each node's connect too).
    async fn get(&self) -> RedisResult<ClusterConnection> {
        self.conn
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut conn = lazy.get().await?;
                conn.req_packed_commands(pipeline, offset, count).await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}
