//! The audit store: a real embedded SQLite database, keyed by the sink's record id so that a
//! replayed record is inserted at most once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One audit event, as the bot hands it to the fallback sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuditEvent {
    /// Which run wrote it (a restarted bot gets a new run id).
    pub(crate) run: String,
    /// Unique per event within a run, e.g. `u7-m3-received`.
    pub(crate) key: String,
    /// `received`, `answered`, `failed` or `cancelled`.
    pub(crate) kind: String,
    /// The user the message belongs to.
    pub(crate) user: u32,
    /// The message's position in its user's stream.
    pub(crate) seq: u32,
    /// The fencing token of the lock held while the event was written.
    pub(crate) token: u64,
    /// The answer, or the reason the message failed.
    pub(crate) detail: String,
}

/// Why a write to the audit store failed.
#[derive(Debug)]
pub(crate) enum AuditError {
    /// The scenario has taken the store down.
    Down,
    /// SQLite itself failed.
    Sqlite(rusqlite::Error),
    /// The blocking worker running the insert died.
    Worker(String),
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Down => f.write_str("audit store is down (scripted outage)"),
            AuditError::Sqlite(e) => write!(f, "sqlite: {e}"),
            AuditError::Worker(e) => write!(f, "sqlite worker: {e}"),
        }
    }
}

impl std::error::Error for AuditError {}

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        AuditError::Sqlite(e)
    }
}

/// The SQLite-backed audit store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AuditStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    conn: Mutex<Connection>,
    down: AtomicBool,
}

impl AuditStore {
    /// Opens (or creates) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS audit (
                 id     TEXT PRIMARY KEY,
                 run    TEXT NOT NULL,
                 key    TEXT NOT NULL,
                 kind   TEXT NOT NULL,
                 user   INTEGER NOT NULL,
                 seq    INTEGER NOT NULL,
                 token  INTEGER NOT NULL,
                 detail TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS audit_run_key ON audit(run, key);",
        )?;
        Ok(AuditStore {
            inner: Arc::new(StoreInner {
                conn: Mutex::new(conn),
                down: AtomicBool::new(false),
            }),
        })
    }

    /// Takes the store down (`true`) or brings it back.
    pub(crate) fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Whether the scripted outage is on.
    pub(crate) fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::SeqCst)
    }

    /// Inserts `(id, event)` pairs in one transaction; an id already present is left as it is,
    /// so a replayed batch is harmless. Blocking: call it from `spawn_blocking`.
    pub(crate) fn insert_batch<'a>(
        &self,
        rows: impl IntoIterator<Item = (String, &'a AuditEvent)>,
    ) -> Result<(), AuditError> {
        if self.is_down() {
            return Err(AuditError::Down);
        }
        let mut conn = self.inner.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO audit (id, run, key, kind, user, seq, token, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (id, e) in rows {
                stmt.execute(params![
                    id,
                    e.run,
                    e.key,
                    e.kind,
                    e.user,
                    e.seq,
                    e.token as i64,
                    e.detail
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Checks run `run` against the keys the bot expects: returns (rows for the run, distinct
    /// keys, keys stored more than once, expected keys missing).
    pub(crate) fn verify(
        &self,
        run: &str,
        expected: &[String],
    ) -> Result<AuditCheck, rusqlite::Error> {
        let conn = self.inner.conn.lock();
        let rows: i64 = conn.query_row(
            "SELECT COUNT(*) FROM audit WHERE run = ?1",
            params![run],
            |r| r.get(0),
        )?;
        let distinct: i64 = conn.query_row(
            "SELECT COUNT(DISTINCT key) FROM audit WHERE run = ?1",
            params![run],
            |r| r.get(0),
        )?;
        let duplicated: i64 = conn.query_row(
            "SELECT COUNT(*) FROM (SELECT key FROM audit WHERE run = ?1 GROUP BY key HAVING COUNT(*) > 1)",
            params![run],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare_cached("SELECT 1 FROM audit WHERE run = ?1 AND key = ?2")?;
        let mut missing = 0u64;
        for key in expected {
            if stmt
                .query_row(params![run, key], |_| Ok(()))
                .optional()?
                .is_none()
            {
                missing += 1;
            }
        }
        Ok(AuditCheck {
            rows: rows as u64,
            distinct: distinct as u64,
            duplicated: duplicated as u64,
            missing,
        })
    }
}

/// What [`AuditStore::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct AuditCheck {
    pub(crate) rows: u64,
    pub(crate) distinct: u64,
    pub(crate) duplicated: u64,
    pub(crate) missing: u64,
}

impl seawall_fallback_sink::Primary<AuditEvent> for AuditStore {
    type Error = AuditError;

    /// One SQLite transaction per batch, off the async threads; idempotent by envelope id.
    fn write_batch(
        &self,
        records: &[seawall_fallback_sink::Envelope<AuditEvent>],
    ) -> impl Future<Output = Result<(), AuditError>> + Send {
        let store = self.clone();
        let rows: Vec<(String, AuditEvent)> = records
            .iter()
            .map(|r| (r.id.to_string(), r.payload.clone()))
            .collect();
        async move {
            tokio::task::spawn_blocking(move || {
                store.insert_batch(rows.iter().map(|(id, e)| (id.clone(), e)))
            })
            .await
            .unwrap_or_else(|join| Err(AuditError::Worker(join.to_string())))
        }
    }
}
