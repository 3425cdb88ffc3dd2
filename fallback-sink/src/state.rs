//! State shared by the spool's handle, its writer task and its readers.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::envelope::from_ms;
use crate::layout::Position;
use crate::metrics::Handles;
use crate::writer::SegWriter;
use crate::{ConfigError, Durability, Error, Metrics};

/// Settings for a spool, validated before any I/O.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) durability: Durability,
    pub(crate) max_bytes: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) name: String,
    pub(crate) metrics: Option<Metrics>,
    /// Run each group's write and fdatasync on the writer task's own thread (a runtime
    /// thread) instead of outside the runtime (`block_in_place` or the blocking pool); an
    /// appender that finds the writer idle then writes its own (`writer::append_here`).
    pub(crate) io_on_runtime_thread: bool,
}

/// Longest accepted instance name (it becomes a metrics label value).
pub(crate) const MAX_NAME: usize = 256;

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::default(),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            name: "default".to_owned(),
            metrics: None,
            io_on_runtime_thread: false,
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes == 0 {
            return Err(ConfigError::new("max_bytes", "must be at least 1, got 0"));
        }
        if self.segment_bytes == 0 || self.segment_bytes > self.max_bytes {
            return Err(ConfigError::new(
                "segment_bytes",
                format!(
                    "must be in 1..=max_bytes ({}), got {}",
                    self.max_bytes, self.segment_bytes
                ),
            ));
        }
        if let Durability::Batch {
            max_records,
            max_delay,
        } = self.durability
        {
            if !(1..=Durability::MAX_GROUP).contains(&max_records) {
                return Err(ConfigError::new(
                    "durability",
                    format!(
                        "Batch max_records must be in 1..={}, got {max_records}",
                        Durability::MAX_GROUP
                    ),
                ));
            }
            if max_delay > Durability::MAX_DELAY {
                return Err(ConfigError::new(
                    "durability",
                    format!(
                        "Batch max_delay must be at most {:?}, got {max_delay:?}",
                        Durability::MAX_DELAY
                    ),
                ));
            }
        }
        validate_name(&self.name)
    }
}

pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ConfigError::new(
            "name",
            format!("must be 1..={MAX_NAME} bytes long, got {}", name.len()),
        ));
    }
    Ok(())
}

/// In-memory view of the spool, guarded by `Shared::state`.
#[derive(Debug)]
pub(crate) struct State {
    /// Segment id -> readable (acknowledged) length.
    pub(crate) segments: BTreeMap<u64, u64>,
    pub(crate) active: u64,
    pub(crate) committed: Position,
    pub(crate) last_seq: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) oldest_ms: Option<u64>,
    pub(crate) quarantined: u64,
    pub(crate) quarantine_marks: HashSet<Position>,
    pub(crate) closed: bool,
    /// Why the writer failed, if it did.
    pub(crate) failure: Option<String>,
}

impl State {
    /// The error for a call on a spool that no longer runs.
    pub(crate) fn closed_error(&self) -> Error {
        match &self.failure {
            Some(cause) => Error::WriterFailed {
                cause: cause.clone(),
            },
            None => Error::Closed,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) metrics: Option<Handles>,
    pub(crate) state: parking_lot::Mutex<State>,
    pub(crate) commit_lock: parking_lot::Mutex<()>,
    pub(crate) inflight: AtomicU64,
    /// Appenders that were sent a reply and have not taken it yet (group commit waits for
    /// them to come back before it starts the next group; see `writer::gather_returning` and
    /// `writer::process_while_busy`).
    pub(crate) returning: AtomicUsize,
    /// Notified when `returning` drops to zero.
    pub(crate) returned: tokio::sync::Notify,
    /// Whether the writer task waits for its next message with nothing queued: not writing a
    /// group, nor letting the appenders of the last one come back (`writer::append_here`;
    /// kept only with `io_on_runtime_thread`, the one setting that reads it).
    pub(crate) writer_idle: std::sync::atomic::AtomicBool,
    /// Set (to `true`) once the writer task has ended, whatever ended it.
    pub(crate) writer_done: tokio::sync::watch::Sender<bool>,
    /// The active segment (and the directory lock). Whoever holds this lock writes: the
    /// writer task for the groups it gathers, or an appender that found the writer idle
    /// (`writer::append_here`). `None` once the spool is closed, or after a write panicked.
    pub(crate) seg: parking_lot::Mutex<Option<SegWriter>>,
    /// Notified when `writer::append_here` releases `seg` (the writer may wait for it).
    pub(crate) seg_freed: tokio::sync::Notify,
}

impl Shared {
    /// Pushes the backlog gauges.
    pub(crate) fn publish(&self, st: &State) {
        if let Some(m) = &self.metrics {
            m.backlog_records
                .set(i64::try_from(st.records).unwrap_or(i64::MAX));
            m.backlog_bytes
                .set(i64::try_from(st.bytes).unwrap_or(i64::MAX));
            let age = st.oldest_ms.map_or(0.0, |ms| {
                SystemTime::now()
                    .duration_since(from_ms(ms))
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64()
            });
            m.oldest_age.set(age);
        }
    }

    /// An appender took its reply (or dropped it unread).
    pub(crate) fn reply_taken(&self) {
        if self.returning.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.returned.notify_one();
        }
    }

    /// Records that the writer failed of `cause` (its task died, or an append panicked while
    /// writing): every later call fails with [`Error::WriterFailed`].
    pub(crate) fn writer_failed(&self, cause: String) {
        tracing::error!(sink = %self.opts.name, cause = %cause, "spool writer failed; the spool is closed");
        let mut st = self.state.lock();
        st.closed = true;
        st.failure.get_or_insert(cause);
    }

    /// Waits until the writer task has ended, then returns why calls fail.
    pub(crate) async fn writer_gone(&self) -> Error {
        self.writer_ended().await;
        self.state.lock().closed_error()
    }

    /// Waits until the writer task has ended.
    pub(crate) async fn writer_ended(&self) {
        let mut rx = self.writer_done.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }
}
