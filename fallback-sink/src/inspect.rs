//! Read-only inspection of a spool directory, for operators and tools.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::Error;
use crate::checkpoint;
use crate::envelope::from_ms;
use crate::layout::{LOCK, Position, QUARANTINE, parse_segment_name, segment_name};
use crate::record::{self, LineError, Piece};

/// What [`inspect`] found in a spool directory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// Segment files, in order.
    pub segments: Vec<SegmentReport>,
    /// The committed checkpoint and the last sequence number it covers, if there is one.
    pub checkpoint: Option<(Position, u64)>,
    /// Why the checkpoint file could not be read (the owner would replay from the start).
    pub checkpoint_error: Option<String>,
    /// Lines in `quarantine.jsonl`.
    pub quarantined_lines: u64,
    /// Whether a live process holds the directory's lock right now.
    pub locked: bool,
}

impl Inspection {
    /// The quarantine file of the inspected directory (it may not exist).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let report = seawall_fallback_sink::inspect(dir.path())?;
    /// assert_eq!(report.quarantine_path(), dir.path().join("quarantine.jsonl"));
    /// assert_eq!(report.quarantined_lines, 0);
    /// # Ok(()) }
    /// ```
    pub fn quarantine_path(&self) -> PathBuf {
        self.dir.join(QUARANTINE)
    }
    /// Valid records after the checkpoint (what replay would deliver).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use seawall_fallback_sink::{Envelope, Spool};
    /// let dir = tempfile::tempdir()?;
    /// let spool = Spool::open(dir.path()).await?;
    /// spool.append(&Envelope::new(1)).await?;
    /// spool.close().await?;
    /// assert_eq!(seawall_fallback_sink::inspect(dir.path())?.backlog_records(), 1);
    /// # Ok(()) }
    /// ```
    pub fn backlog_records(&self) -> u64 {
        self.segments.iter().map(|s| s.unread_records).sum()
    }
    /// Bytes of those records.
    pub fn backlog_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.unread_bytes).sum()
    }
    /// Lines that fail verification (the owner's next open quarantines them).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("segment-00000000000000000001.jsonl"), "not a record\n")?;
    /// let report = seawall_fallback_sink::inspect(dir.path())?;
    /// assert_eq!(report.bad_lines(), 1);
    /// assert_eq!(report.backlog_records(), 0);
    /// # Ok(()) }
    /// ```
    pub fn bad_lines(&self) -> u64 {
        self.segments.iter().map(|s| s.bad_lines.len() as u64).sum()
    }
    /// Creation time of the oldest unread record.
    pub fn oldest(&self) -> Option<SystemTime> {
        self.segments.iter().find_map(|s| s.oldest_unread)
    }
}

/// One segment file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SegmentReport {
    /// Segment number.
    pub segment: u64,
    /// File path.
    pub path: PathBuf,
    /// File size.
    pub bytes: u64,
    /// Valid records in the whole file.
    pub records: u64,
    /// Valid records after the checkpoint.
    pub unread_records: u64,
    /// Their bytes.
    pub unread_bytes: u64,
    /// Creation time of the first unread record.
    pub oldest_unread: Option<SystemTime>,
    /// Sequence numbers of the first and last valid record.
    pub seq_range: Option<(u64, u64)>,
    /// Byte ranges that are not part of a verified record (the owner's next open quarantines
    /// them): offset and reason. Records found inside damaged lines are counted as records.
    pub bad_lines: Vec<(u64, &'static str)>,
    /// Bytes of an incomplete last line (a torn write; the owner's next open quarantines and
    /// truncates them).
    pub torn_tail: u64,
}

/// A record's bytes on disk, with its newline when it has one.
fn piece_end(piece: &Piece, data: &[u8]) -> usize {
    match *piece {
        Piece::Record { end, .. } | Piece::Bad { end, .. } => {
            if data.get(end) == Some(&b'\n') {
                end + 1
            } else {
                end
            }
        }
    }
}

/// Reads a spool directory without changing anything and without taking its lock (so it
/// works beside a running owner; a tail being written may then show as torn).
///
/// # Errors
///
/// [`Error::Io`] if the directory or a segment cannot be read.
///
/// # Panics
///
/// Never.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use seawall_fallback_sink::{Envelope, Spool, inspect};
/// let dir = tempfile::tempdir()?;
/// let spool = Spool::open(dir.path()).await?;
/// spool.append(&Envelope::new(1)).await?;
/// let report = inspect(dir.path())?;
/// assert!(report.locked);
/// assert_eq!(report.backlog_records(), 1);
/// assert_eq!(report.bad_lines(), 0);
/// # Ok(()) }
/// ```
pub fn inspect(dir: impl AsRef<Path>) -> Result<Inspection, Error> {
    let dir = dir.as_ref();
    let (checkpoint, checkpoint_error) = match checkpoint::read(dir) {
        Ok(c) => (
            c.map(|c| {
                (
                    Position {
                        segment: c.segment,
                        offset: c.offset,
                    },
                    c.last_seq,
                )
            }),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(id) = parse_segment_name(&entry.file_name().to_string_lossy()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let ckpt = checkpoint.map(|c| c.0).unwrap_or_default();
    let mut segments = Vec::new();
    for id in ids {
        let path = dir.join(segment_name(id));
        let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let mut rep = SegmentReport {
            segment: id,
            path,
            bytes: data.len() as u64,
            records: 0,
            unread_records: 0,
            unread_bytes: 0,
            oldest_unread: None,
            seq_range: None,
            bad_lines: Vec::new(),
            torn_tail: 0,
        };
        for piece in record::scan(&data, 0) {
            match piece {
                Piece::Record {
                    start, seq, ts_ms, ..
                } => {
                    let end = piece_end(&piece, &data);
                    rep.records += 1;
                    rep.seq_range = Some(match rep.seq_range {
                        None => (seq, seq),
                        Some((a, _)) => (a, seq),
                    });
                    let unread =
                        id > ckpt.segment || (id == ckpt.segment && start as u64 >= ckpt.offset);
                    if unread {
                        rep.unread_records += 1;
                        rep.unread_bytes += (end - start) as u64;
                        rep.oldest_unread.get_or_insert(from_ms(ts_ms));
                    }
                }
                Piece::Bad {
                    start,
                    end,
                    why: LineError::Torn,
                } => rep.torn_tail = (end - start) as u64,
                Piece::Bad { start, why, .. } => rep.bad_lines.push((start as u64, why.as_str())),
            }
        }
        segments.push(rep);
    }
    let quarantined_lines = fs::read(dir.join(QUARANTINE))
        .map(|d| d.iter().filter(|b| **b == b'\n').count() as u64)
        .unwrap_or(0);
    let locked = match fs::File::open(dir.join(LOCK)) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => {
                let _ = f.unlock();
                false
            }
            Err(_) => true,
        },
        Err(_) => false,
    };
    Ok(Inspection {
        dir: dir.to_path_buf(),
        segments,
        checkpoint,
        checkpoint_error,
        quarantined_lines,
        locked,
    })
}
