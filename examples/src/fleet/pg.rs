//! PostgreSQL through `tokio-postgres` and a `deadpool-postgres` pool: every call bounded in
//! time, and the audit table as the fallback sink's primary store.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    Config, ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts,
};
use seawall_fallback_sink::{Envelope, Primary};
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use super::sql::Sql;

/// How long one database call (pool wait, connect, statement) may take before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a database call failed.
#[derive(Debug)]
pub enum PgError {
    /// No connection: the pool timed out or could not connect.
    Pool(deadpool_postgres::PoolError),
    /// The statement failed.
    Query(tokio_postgres::Error),
    /// The call took longer than [`CALL_TIMEOUT`].
    Timeout {
        /// How long it was given.
        after: Duration,
    },
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgError::Pool(e) => write!(f, "postgres unavailable: {e}"),
            PgError::Query(e) => write!(f, "postgres: {e}"),
            PgError::Timeout { after } => write!(f, "postgres call timed out after {after:?}"),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PgError::Pool(e) => Some(e),
            PgError::Query(e) => Some(e),
            PgError::Timeout { .. } => None,
        }
    }
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PgError::Pool(e)
    }
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Query(e)
    }
}

/// A pool of at most `size` connections to `url`; waiting for, creating and checking a
/// connection are each bounded, so an unreachable server fails calls instead of hanging them.
pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let mut cfg = Config::new();
    cfg.url = Some(url.to_string());
    cfg.connect_timeout = Some(Duration::from_secs(1));
    cfg.manager = Some(ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    });
    let mut pool = PoolConfig::new(size);
    pool.timeouts = Timeouts {
        wait: Some(CALL_TIMEOUT),
        create: Some(Duration::from_secs(1)),
        recycle: Some(Duration::from_secs(1)),
    };
    cfg.pool = Some(pool);
    cfg.create_pool(Some(Runtime::Tokio1), NoTls)
        .map_err(|e| anyhow::anyhow!("bad --postgres URL {url:?}: {e}"))
}

/// Runs `sql` with `params` and returns the rows it changed, within [`CALL_TIMEOUT`].
pub async fn execute(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, PgError> {
    bounded(async {
        let client = pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.execute(&stmt, params).await?)
    })
    .await
}

/// Runs the query `sql` with `params` and returns its rows, within [`CALL_TIMEOUT`].
pub async fn query(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, PgError> {
    bounded(async {
        let client = pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        Ok(client.query(&stmt, params).await?)
    })
    .await
}

/// Runs `sql` (several statements, no parameters), within [`CALL_TIMEOUT`] times 5.
pub async fn batch(pool: &Pool, sql: &str) -> Result<(), PgError> {
    let after = CALL_TIMEOUT * 5;
    tokio::time::timeout(after, async {
        let client = pool.get().await?;
        Ok(client.batch_execute(sql).await?)
    })
    .await
    .unwrap_or(Err(PgError::Timeout { after }))
}

async fn bounded<T>(call: impl Future<Output = Result<T, PgError>>) -> Result<T, PgError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or(Err(PgError::Timeout {
            after: CALL_TIMEOUT,
        }))
}

/// One audit event, as a replica hands it to its fallback sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetEvent {
    /// Derived from the message and the kind ([`super::sql::event_id`]).
    pub event_id: String,
    /// The message's user.
    pub user: u32,
    /// The message's position in its user's stream.
    pub seq: u32,
    /// `received`, `outcome`, `db_wait` (a message's write waited for PostgreSQL) or
    /// `db_down` (a replica saw PostgreSQL go down; user and seq 0).
    pub kind: String,
    /// The fencing token of the lease it was written under.
    pub token: i64,
    /// The replica that wrote it.
    pub replica: String,
    /// What happened.
    pub detail: String,
}

/// The audit table as the fallback sink's primary: one statement per batch, an event id
/// already stored is skipped (`ON CONFLICT (event_id) DO NOTHING`), so a replayed batch, or a
/// message handled twice, leaves one row per event.
#[derive(Debug, Clone)]
pub struct PgAudit {
    pool: Pool,
    insert: Arc<str>,
}

impl PgAudit {
    /// The audit table of `sql`'s schema, through `pool`.
    pub fn new(pool: Pool, sql: &Sql) -> Self {
        PgAudit {
            pool,
            insert: sql.insert_audit().into(),
        }
    }
}

impl Primary<FleetEvent> for PgAudit {
    type Error = PgError;

    fn write_batch(
        &self,
        records: &[Envelope<FleetEvent>],
    ) -> impl Future<Output = Result<(), PgError>> + Send {
        let mut ids = Vec::with_capacity(records.len());
        let mut users = Vec::with_capacity(records.len());
        let mut seqs = Vec::with_capacity(records.len());
        let mut kinds = Vec::with_capacity(records.len());
        let mut tokens = Vec::with_capacity(records.len());
        let mut replicas = Vec::with_capacity(records.len());
        let mut details = Vec::with_capacity(records.len());
        for r in records {
            let e = &r.payload;
            ids.push(e.event_id.clone());
            users.push(e.user as i32);
            seqs.push(e.seq as i32);
            kinds.push(e.kind.clone());
            tokens.push(e.token);
            replicas.push(e.replica.clone());
            details.push(e.detail.clone());
        }
        let (pool, insert) = (self.pool.clone(), Arc::clone(&self.insert));
        async move {
            execute(
                &pool,
                &insert,
                &[&ids, &users, &seqs, &kinds, &tokens, &replicas, &details],
            )
            .await
            .map(drop)
        }
    }
}
