//! Reading batches from the checkpoint on, and committing them.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::checkpoint::{self, Checkpoint};
use crate::envelope::{from_ms, to_ms};
use crate::layout::{Position, segment_name};
use crate::record::{self, LineError};
use crate::state::Shared;
use crate::{Envelope, Error, quarantine};

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
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// let sent = Envelope::new(vec![1, 2, 3]);
    /// spool.append(&sent).await?;
    /// let batch = spool.read_batch(1).await?;
    /// let back = batch.records[0].decode::<Vec<u8>>()?;
    /// assert_eq!((back.id, back.payload), (sent.id, sent.payload));
    /// # Ok(()) }
    /// ```
    pub fn decode<T: DeserializeOwned>(&self) -> Result<Envelope<T>, Error> {
        Ok(Envelope {
            id: self.id,
            timestamp: self.timestamp,
            payload: serde_json::from_slice(&self.payload).map_err(Error::Serde)?,
        })
    }
}

/// Records read from the checkpoint onward; hand it back to [`Spool::commit`](crate::Spool::commit) once the
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
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// spool.append(&Envelope::new(1)).await?;
    /// let batch = spool.read_batch(10).await?;
    /// assert!(batch.end() > batch.start());
    /// spool.commit(&batch).await?;
    /// assert_eq!(spool.stats().checkpoint, batch.end());
    /// # Ok(()) }
    /// ```
    pub fn end(&self) -> Position {
        self.end
    }
    /// True when nothing was read (the batch may still skip quarantined lines).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// True when committing it would not move the checkpoint.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// let batch = spool.read_batch(10).await?;
    /// assert!(batch.is_noop() && batch.is_empty()); // nothing to read, nothing to commit
    /// # Ok(()) }
    /// ```
    pub fn is_noop(&self) -> bool {
        self.start == self.end
    }
}

/// Reads up to `max` records from the checkpoint on (see [`Spool::read_batch`](crate::Spool::read_batch)).
pub(crate) fn read(shared: &Shared, max: usize) -> Result<Batch, Error> {
    let (start, segs) = {
        let st = shared.state.lock();
        if st.closed {
            return Err(st.closed_error());
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
                        quarantine::at_read(shared, id, pos.offset, e, &line)?;
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
pub(crate) struct Commit {
    start: Position,
    end: Position,
    bytes: u64,
    consumed: u64,
    last: Option<(u64, u64)>,
    next_ts_ms: Option<u64>,
}

impl Commit {
    pub(crate) fn of(batch: &Batch) -> Self {
        Commit {
            start: batch.start,
            end: batch.end,
            bytes: batch.bytes,
            consumed: batch.records.len() as u64 + batch.skipped,
            last: batch.records.last().map(|r| (r.seq, to_ms(r.timestamp))),
            next_ts_ms: batch.next_ts_ms,
        }
    }
}

/// Durably moves the checkpoint past a batch (see [`Spool::commit`](crate::Spool::commit)).
pub(crate) fn commit(shared: &Shared, batch: &Commit) -> Result<(), Error> {
    let _g = shared.commit_lock.lock();
    let last_seq = {
        let st = shared.state.lock();
        if st.closed {
            return Err(st.closed_error());
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
