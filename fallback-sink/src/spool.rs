//! The spool: a directory of JSON Lines segments with a checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::checkpoint::{self, Checkpoint};
use crate::envelope::{from_ms, to_ms};
use crate::metrics::Handles;
use crate::record::{self, LineError};
use crate::sync::Sync as SyncPolicy;
use crate::writer::{self, Msg};
use crate::{ConfigError, Envelope, Error, Metrics, recovery};

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Segment number (the file is `segment-<20 digits>.jsonl`).
    pub segment: u64,
    /// Byte offset of the next unread line in that segment.
    pub offset: u64,
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// The idempotency key given when it was appended.
    pub id: Uuid,
    /// The spool's sequence number (strictly increasing in append order).
    pub seq: u64,
    /// The record's wall-clock creation time (millisecond precision).
    pub timestamp: SystemTime,
    /// Where the line starts.
    pub position: Position,
    /// The payload's JSON, exactly as appended (its CRC32C verified).
    pub payload: Vec<u8>,
}

impl SpooledRecord {
    /// Decodes the payload into the record type, as an [`Envelope`] with the original id and
    /// timestamp.
    ///
    /// # Errors
    ///
    /// [`Error::Serde`] if the JSON does not fit `T`.
    ///
    /// # Panics
    ///
    /// Never.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Envelope<T>, Error> {
        Ok(Envelope {
            id: self.id,
            timestamp: self.timestamp,
            payload: serde_json::from_slice(&self.payload).map_err(Error::Serde)?,
        })
    }
}

/// Records read from the checkpoint onward; hand it back to [`Spool::commit`] once the
/// primary has acknowledged them.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The records, in spool order.
    pub records: Vec<SpooledRecord>,
    start: Position,
    end: Position,
    bytes: u64,
    skipped: u64,
    next_ts_ms: Option<u64>,
}

impl Batch {
    /// The checkpoint this batch was read from.
    pub fn start(&self) -> Position {
        self.start
    }
    /// The checkpoint committing this batch will write.
    pub fn end(&self) -> Position {
        self.end
    }
    /// True when nothing was read (the batch may still skip quarantined lines).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// True when committing it would not move the checkpoint.
    pub fn is_noop(&self) -> bool {
        self.start == self.end
    }
}

/// A snapshot of the spool's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records appended and not yet committed.
    pub records: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Creation time of the oldest of them (an upper bound on its age when it was appended
    /// after the last read).
    pub oldest: Option<SystemTime>,
    /// Segment files on disk.
    pub segments: u64,
    /// Lines moved to `quarantine.jsonl` since this spool was opened.
    pub quarantined: u64,
    /// The committed checkpoint.
    pub checkpoint: Position,
}

impl Stats {
    /// How long the oldest record has waited, by the wall clock (`None` when empty).
    pub fn oldest_age(&self) -> Option<Duration> {
        self.oldest.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// Settings for [`Spool`].
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) sync: SyncPolicy,
    pub(crate) max_bytes: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) name: String,
    pub(crate) metrics: Option<Metrics>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::default(),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            name: "default".to_owned(),
            metrics: None,
        }
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_bytes == 0 {
            return Err(ConfigError::new("max_bytes", "must be greater than 0"));
        }
        if self.segment_bytes == 0 {
            return Err(ConfigError::new("segment_bytes", "must be greater than 0"));
        }
        if self.segment_bytes > self.max_bytes {
            return Err(ConfigError::new(
                "segment_bytes",
                "must not be larger than max_bytes",
            ));
        }
        if let SyncPolicy::Batch { max_records: 0, .. } = self.sync {
            return Err(ConfigError::new(
                "sync",
                "Batch max_records must be at least 1",
            ));
        }
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        Ok(())
    }
}

/// Builds a [`Spool`].
///
/// # Default
///
/// | setting | default |
/// |---|---|
/// | `sync` | `Sync::Batch { max_records: 64, max_delay: 0 }` (every record fsynced before its ack, concurrent records share the fsync) |
/// | `max_bytes` | 1 GiB of backlog |
/// | `segment_bytes` | 16 MiB |
/// | `name` | `"default"` (the `sink` label) |
/// | `metrics` | none |
#[derive(Debug)]
#[must_use]
pub struct SpoolBuilder {
    dir: PathBuf,
    opts: Options,
}

impl SpoolBuilder {
    pub(crate) fn from_options(dir: PathBuf, opts: Options) -> Self {
        SpoolBuilder { dir, opts }
    }

    /// The durability policy.
    pub fn sync(mut self, sync: SyncPolicy) -> Self {
        self.opts.sync = sync;
        self
    }
    /// Cap on the backlog (bytes appended and not yet committed). Disk use can exceed it by
    /// the consumed part of the active segment (at most `segment_bytes`).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.opts.max_bytes = bytes;
        self
    }
    /// Size at which a segment is sealed and a new one started.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.opts.segment_bytes = bytes;
        self
    }
    /// The `sink` label of the metrics and the `sink` field of tracing events.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.opts.name = name.into();
        self
    }
    /// Report metrics (backlog gauges, quarantined counter) here; takes `Metrics` or
    /// `&Metrics`.
    pub fn metrics(mut self, metrics: impl Into<Metrics>) -> Self {
        self.opts.metrics = Some(metrics.into());
        self
    }

    /// Opens (creating if needed) and recovers the spool, then starts its writer task.
    ///
    /// Recovery: segments the checkpoint has passed are deleted; every unread line is
    /// verified; a torn last line is truncated; any other bad line is appended to
    /// `quarantine.jsonl` (with its segment, offset and reason) and removed from its segment.
    /// Corruption never makes `open` fail.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid settings, [`Error::Locked`] if another owner holds the
    /// directory, [`Error::Io`] if the directory cannot be read or written.
    ///
    /// # Panics
    ///
    /// Never. Must be called within a tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the recovery half done (it runs on a blocking thread and
    /// finishes there); it is safe to open again, recovery is idempotent.
    pub async fn open(self) -> Result<Spool, Error> {
        self.opts.validate()?;
        let dir = self.dir;
        let opts = self.opts;
        let (writer, state) = {
            let d = dir.clone();
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || recovery::recover(&d, &opts))
                .await
                .map_err(|e| Error::io("recover", &dir, std::io::Error::other(e)))??
        };
        let shared = Arc::new(Shared {
            dir,
            metrics: opts.metrics.as_ref().map(|m| m.handles(&opts.name)),
            opts,
            state: parking_lot::Mutex::new(state),
            commit_lock: parking_lot::Mutex::new(()),
            inflight: AtomicU64::new(0),
        });
        shared.publish(&shared.state.lock());
        if let Some(m) = &shared.metrics {
            m.quarantined.inc_by(shared.state.lock().quarantined);
        }
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer::run(rx, writer, shared.clone()));
        Ok(Spool { shared, tx })
    }
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
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) metrics: Option<Handles>,
    pub(crate) state: parking_lot::Mutex<State>,
    commit_lock: parking_lot::Mutex<()>,
    inflight: AtomicU64,
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
}

/// A durable on-disk queue of JSON records, owned by one process.
///
/// Usable on its own (append, then read and commit batches), and the storage underneath
/// [`FallbackSink`](crate::FallbackSink).
///
/// # Layout
///
/// ```text
/// DIR/spool.lock                       flock'ed by the owner (freed by the OS when it dies)
/// DIR/segment-00000000000000000001.jsonl   one JSON object per line, see below
/// DIR/checkpoint.json                  {"segment":1,"offset":4096,"last_seq":17,"crc":...}
/// DIR/quarantine.jsonl                 corrupt lines found by recovery or reads
/// ```
///
/// Each segment line is
/// `{"id":"<uuidv7>","seq":17,"ts":<unix ms>,"crc":<crc32c of payload>,"payload":<the record>}`,
/// so `jq .payload DIR/segment-*.jsonl` prints the records.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use seawall_fallback_sink::{Envelope, Spool, Sync};
///
/// let dir = tempfile::tempdir()?;
/// let spool = Spool::builder(dir.path()).sync(Sync::Always).open().await?;
/// spool.append(&Envelope::new("first")).await?;
/// spool.append(&Envelope::new("second")).await?;
///
/// let batch = spool.read_batch(10).await?;
/// let texts: Vec<String> = batch.records.iter().map(|r| r.decode().unwrap().payload).collect();
/// assert_eq!(texts, ["first", "second"]);
/// spool.commit(&batch).await?; // durable: these two are never read again
/// assert_eq!(spool.stats().records, 0);
/// spool.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Spool {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Msg>,
}

impl Spool {
    /// Starts building a spool in `dir` (created if missing).
    pub fn builder(dir: impl AsRef<Path>) -> SpoolBuilder {
        SpoolBuilder {
            dir: dir.as_ref().to_path_buf(),
            opts: Options::default(),
        }
    }

    /// Opens `dir` with the default settings; see [`SpoolBuilder::open`].
    ///
    /// # Errors
    ///
    /// As [`SpoolBuilder::open`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// As [`SpoolBuilder::open`].
    pub async fn open(dir: impl AsRef<Path>) -> Result<Spool, Error> {
        Spool::builder(dir).open().await
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The name given to the builder (the `sink` metrics label).
    pub fn name(&self) -> &str {
        &self.shared.opts.name
    }

    /// Copies a record that cannot be used (its payload does not decode) to
    /// `quarantine.jsonl`; committing its batch then drops it from the spool.
    pub(crate) async fn quarantine_record(
        &self,
        record: &SpooledRecord,
        reason: &str,
    ) -> Result<(), Error> {
        let shared = self.shared.clone();
        let record = record.clone();
        let reason = format!("payload does not decode: {reason}");
        tokio::task::spawn_blocking(move || recovery::quarantine_record(&shared, &record, &reason))
            .await
            .map_err(|e| Error::io("quarantine", &self.shared.dir, std::io::Error::other(e)))?
    }

    /// Appends a record and returns its sequence number once the durability policy is met.
    ///
    /// The payload is serialised here, on the caller's task; the write and fdatasync happen
    /// on the spool's writer (blocking I/O runs on tokio's blocking pool, never on a runtime
    /// worker).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the backlog would exceed `max_bytes`; [`Error::Io`] when the
    /// write or fdatasync failed (the record may still be found by a later open: append the
    /// same envelope again and its id makes the copies one); [`Error::Serde`];
    /// [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes may or may not store the record (it is then
    /// stored but unacknowledged). Retrying with the same envelope is safe: replay is
    /// idempotent by id.
    pub async fn append<T: Serialize>(&self, record: &Envelope<T>) -> Result<u64, Error> {
        let payload = serde_json::to_vec(&record.payload).map_err(Error::Serde)?;
        self.append_raw(record.id, record.timestamp_ms(), payload)
            .await
    }

    pub(crate) async fn append_raw(
        &self,
        id: Uuid,
        ts_ms: u64,
        payload: Vec<u8>,
    ) -> Result<u64, Error> {
        let (reply, rx) = oneshot::channel();
        let _inflight = Inflight::new(&self.shared.inflight);
        self.tx
            .send(Msg::Append {
                id,
                ts_ms,
                crc: crc32c::crc32c(&payload),
                payload,
                reply,
            })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Makes everything appended so far durable (useful with [`Sync::Never`](crate::Sync::Never)).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the fdatasync failed; [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the sync may still happen.
    pub async fn sync(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Sync { reply })
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Writes out and syncs everything appended, stops the writer and releases the
    /// directory lock. Later calls fail with [`Error::Closed`].
    ///
    /// Dropping a `Spool` without closing it also finishes the queued appends and releases
    /// the lock, but asynchronously.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the final fdatasync failed; [`Error::Closed`] if already closed.
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close still happens.
    pub async fn close(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Close { reply })
            .await
            .map_err(|_| Error::Closed)?;
        let r = rx.await.map_err(|_| Error::Closed)?;
        self.shared.state.lock().closed = true;
        r
    }

    /// The backlog right now. Cheap (a mutex-protected snapshot, no I/O); also refreshes
    /// the backlog gauges.
    pub fn stats(&self) -> Stats {
        let st = self.shared.state.lock();
        self.shared.publish(&st);
        Stats {
            records: st.records,
            bytes: st.bytes,
            oldest: st.oldest_ms.map(from_ms),
            segments: st.segments.len() as u64,
            quarantined: st.quarantined,
            checkpoint: st.committed,
        }
    }

    /// True when nothing is waiting and no append is in flight.
    pub fn is_empty(&self) -> bool {
        self.shared.inflight.load(Ordering::Acquire) == 0 && self.shared.state.lock().records == 0
    }

    /// Reads up to `max_records` records from the checkpoint onward (only acknowledged
    /// records are visible). Reading does not move the checkpoint: reading again without a
    /// commit returns the same records. Lines that fail verification are quarantined and
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`]; [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: reading has no effect besides quarantining.
    pub async fn read_batch(&self, max_records: usize) -> Result<Batch, Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || read_batch(&shared, max_records.max(1)))
            .await
            .map_err(|e| Error::io("read", &self.shared.dir, std::io::Error::other(e)))?
    }

    /// Durably moves the checkpoint past `batch` (temp file, fdatasync, rename, directory
    /// fsync), then deletes the segments it passed. After `Ok`, the batch is never read again,
    /// even after a crash.
    ///
    /// # Errors
    ///
    /// [`Error::StaleBatch`] if the checkpoint moved since the batch was read;
    /// [`Error::Io`] if the checkpoint could not be written (the batch will be read again);
    /// [`Error::Closed`].
    ///
    /// # Panics
    ///
    /// Never.
    ///
    /// # Cancel safety
    ///
    /// The commit finishes on a blocking thread even if the future is dropped.
    pub async fn commit(&self, batch: &Batch) -> Result<(), Error> {
        let shared = self.shared.clone();
        let c = Commit {
            start: batch.start,
            end: batch.end,
            bytes: batch.bytes,
            consumed: batch.records.len() as u64 + batch.skipped,
            last: batch.records.last().map(|r| (r.seq, to_ms(r.timestamp))),
            next_ts_ms: batch.next_ts_ms,
        };
        tokio::task::spawn_blocking(move || commit(&shared, &c))
            .await
            .map_err(|e| Error::io("commit", &self.shared.dir, std::io::Error::other(e)))?
    }
}

struct Inflight<'a>(&'a AtomicU64);

impl<'a> Inflight<'a> {
    fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::AcqRel);
        Inflight(c)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn segment_name(id: u64) -> String {
    format!("segment-{id:020}.jsonl")
}

pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_batch(shared: &Shared, max: usize) -> Result<Batch, Error> {
    let (start, segs) = {
        let st = shared.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        let segs: Vec<(u64, u64)> = st
            .segments
            .range(st.committed.segment..)
            .map(|(k, v)| (*k, *v))
            .collect();
        (st.committed, segs)
    };
    let mut batch = Batch {
        records: Vec::new(),
        start,
        end: start,
        bytes: 0,
        skipped: 0,
        next_ts_ms: None,
    };
    let mut pos = start;
    let mut line = Vec::new();
    'segments: for (i, &(id, readable)) in segs.iter().enumerate() {
        if id > pos.segment {
            pos = Position {
                segment: id,
                offset: 0,
            };
        }
        if pos.offset < readable {
            let path = shared.dir.join(segment_name(id));
            let mut f = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            f.seek(SeekFrom::Start(pos.offset))
                .map_err(|e| Error::io("seek", &path, e))?;
            let mut r = BufReader::with_capacity(64 << 10, f.take(readable - pos.offset));
            loop {
                line.clear();
                let n = r
                    .read_until(b'\n', &mut line)
                    .map_err(|e| Error::io("read", &path, e))?;
                if n == 0 {
                    break;
                }
                let complete = line.last() == Some(&b'\n');
                let body = if complete { &line[..n - 1] } else { &line[..] };
                let decoded = if complete {
                    record::decode(body)
                } else {
                    Err(LineError::Malformed)
                };
                if batch.records.len() >= max {
                    batch.next_ts_ms = decoded.ok().map(|l| l.ts_ms);
                    break 'segments;
                }
                match decoded {
                    Ok(l) => batch.records.push(SpooledRecord {
                        id: l.id,
                        seq: l.seq,
                        timestamp: from_ms(l.ts_ms),
                        position: pos,
                        payload: l.payload.to_vec(),
                    }),
                    Err(e) => {
                        recovery::quarantine_at_read(shared, id, pos.offset, e, &line)?;
                        batch.skipped += 1;
                    }
                }
                pos.offset += n as u64;
                batch.bytes += n as u64;
                batch.end = pos;
            }
        }
        // Only move past a segment once a later one exists (it is sealed then).
        if i + 1 < segs.len() {
            batch.end = Position {
                segment: segs[i + 1].0,
                offset: 0,
            };
        }
    }
    Ok(batch)
}

/// What committing a batch needs (not its payloads).
struct Commit {
    start: Position,
    end: Position,
    bytes: u64,
    consumed: u64,
    last: Option<(u64, u64)>,
    next_ts_ms: Option<u64>,
}

fn commit(shared: &Shared, batch: &Commit) -> Result<(), Error> {
    let _g = shared.commit_lock.lock();
    let last_seq = {
        let st = shared.state.lock();
        if st.closed {
            return Err(Error::Closed);
        }
        if st.committed != batch.start {
            return Err(Error::StaleBatch);
        }
        if batch.start == batch.end {
            return Ok(());
        }
        batch.last.map_or(st.last_seq, |(seq, _)| seq)
    };
    checkpoint::write(
        &shared.dir,
        &Checkpoint {
            segment: batch.end.segment,
            offset: batch.end.offset,
            last_seq,
        },
    )?;
    let doomed: Vec<u64> = {
        let mut st = shared.state.lock();
        st.committed = batch.end;
        st.last_seq = last_seq;
        st.records = st.records.saturating_sub(batch.consumed);
        st.bytes = st.bytes.saturating_sub(batch.bytes);
        st.oldest_ms = if st.records == 0 {
            None
        } else {
            batch
                .next_ts_ms
                .or(batch.last.map(|(_, ts)| ts))
                .or(st.oldest_ms)
        };
        let active = st.active;
        let doomed: Vec<u64> = st
            .segments
            .range(..batch.end.segment)
            .map(|(k, _)| *k)
            .filter(|k| *k != active)
            .collect();
        for k in &doomed {
            st.segments.remove(k);
        }
        st.quarantine_marks.retain(|p| *p >= batch.end);
        shared.publish(&st);
        doomed
    };
    for id in doomed {
        let path = shared.dir.join(segment_name(id));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Harmless: the next open deletes segments the checkpoint has passed.
            Err(e) => {
                tracing::warn!(sink = %shared.opts.name, path = %path.display(), error = %e, "could not delete a replayed segment")
            }
        }
    }
    Ok(())
}
