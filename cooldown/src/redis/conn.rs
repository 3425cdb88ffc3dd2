//! The connection the cooldown sends its scripts on: one server (a connection manager) or a
//! Redis Cluster (a cluster connection, made on first use).

use std::fmt;
use std::sync::Arc;

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

/// A connection to one server or to a cluster. Cloning is cheap (both share their
/// connections); every clone of a cluster connection shares the one made on first use.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server: redirections are not followed.
    Node(ConnectionManager),
    /// A Redis Cluster: `MOVED`/`ASK` are followed, each script goes to its keys' slot.
    Cluster(Arc<LazyCluster>),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(_) => f.write_str("Conn::Node"),
            Self::Cluster(_) => f.write_str("Conn::Cluster"),
        }
    }
}

/// A cluster connection made by the first call that needs it (so building never blocks nor
/// needs a reachable cluster). A failed or cancelled attempt leaves it unset: the next call
/// tries again.
pub(crate) struct LazyCluster {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
}

impl LazyCluster {
    pub(crate) fn new(client: ClusterClient) -> Self {
        Self {
            client,
            conn: OnceCell::new(),
        }
    }

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
