//! Opening a spool: lock, checkpoint, verification of every unread byte, quarantine.
//!
//! The rules, in the order they are applied:
//!
//! 1. A checkpoint whose checksum verifies is trusted as written, even when the byte before
//!    its offset is damaged (that byte belongs to a record already replayed). A missing
//!    checkpoint means "from the first segment"; a damaged one too (re-sending is safe,
//!    replay is idempotent by id; wedging is not).
//! 2. Every byte after the checkpoint ends up in exactly one place: in a verified record, or
//!    in `quarantine.jsonl` with its segment and offset ([`record::scan`] covers every byte).
//!    Quarantine is written and synced before the segment is changed, so a crash in between
//!    leaves bytes in both places, never in neither.
//! 3. A verified record whose newline is missing or damaged is kept and rewritten with one.
//! 4. Any position recovery changes (a checkpoint past the end of a truncated segment, a
//!    missing or damaged checkpoint) is written back to `checkpoint.json` atomically before
//!    the writer starts, so an append acknowledged after this open is read by the next one.
//! 5. Appends never follow a partial line: if the last segment does not end on a line
//!    boundary, a new segment is started.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use crate::Error;
use crate::checkpoint::{self, Checkpoint, sync_dir};
use crate::layout::{LOCK, Position, parse_segment_name, segment_name};
use crate::quarantine;
use crate::record::{self, Piece};
use crate::state::{Options, State};
use crate::writer::SegWriter;

/// What recovery found in one segment.
struct Segment {
    /// Bytes kept (the readable length).
    len: u64,
    /// Where reading starts (the checkpoint offset, clamped to the file).
    start: u64,
    /// Whether the kept bytes end on a line boundary (or are empty).
    ends_clean: bool,
    records: u64,
    bytes: u64,
    oldest_ms: Option<u64>,
    max_seq: u64,
    quarantined: u64,
    rewritten: bool,
}

/// Verifies (and repairs) one segment from `start` on.
fn recover_segment(dir: &Path, id: u64, start: u64, name: &str) -> Result<Segment, Error> {
    let path = dir.join(segment_name(id));
    let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let len = data.len() as u64;
    let start = if start > len {
        tracing::warn!(sink = %name, segment = id, offset = start, len, "checkpoint is past the end of its segment (truncated file)");
        len
    } else {
        start
    };
    let start_us = start as usize;
    let pieces = record::scan(&data, start_us);
    let mut seg = Segment {
        len,
        start,
        ends_clean: true,
        records: 0,
        bytes: 0,
        oldest_ms: None,
        max_seq: 0,
        quarantined: 0,
        rewritten: false,
    };
    let mut bad: Vec<(u64, &str, &[u8])> = Vec::new();
    let mut good: Vec<(usize, usize)> = Vec::new();
    let mut repair = false;
    for piece in &pieces {
        match *piece {
            Piece::Record {
                start,
                end,
                clean,
                seq,
                ts_ms,
            } => {
                seg.max_seq = seg.max_seq.max(seq);
                seg.records += 1;
                seg.bytes += (end - start + 1) as u64;
                seg.oldest_ms.get_or_insert(ts_ms);
                // A record after a bad range, or without its newline: the file is rewritten.
                repair |= !clean || !bad.is_empty();
                good.push((start, end));
            }
            Piece::Bad { start, end, why } => {
                bad.push((start as u64, why.as_str(), &data[start..end]));
            }
        }
    }
    if !bad.is_empty() {
        quarantine::append(dir, id, &bad)?;
        seg.quarantined = bad.len() as u64;
        for (offset, reason, bytes) in &bad {
            tracing::warn!(sink = %name, segment = id, offset, len = bytes.len(), reason, "corrupt spool bytes quarantined");
        }
    }
    if repair {
        // Keep the consumed prefix byte for byte so the checkpoint's offset stays valid.
        let mut out = data[..start_us].to_vec();
        for &(a, b) in &good {
            out.extend_from_slice(&data[a..b]);
            out.push(b'\n');
        }
        let tmp = dir.join(format!("{}.tmp", segment_name(id)));
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&out).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        tracing::warn!(sink = %name, segment = id, records = good.len(), "spool segment rewritten around damage");
        seg.len = out.len() as u64;
        seg.rewritten = true;
    } else if let Some(&(at, _, _)) = bad.first() {
        // Bad bytes only at the tail (a torn write, appended garbage): cut them off.
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        f.set_len(at).map_err(|e| Error::io("truncate", &path, e))?;
        f.sync_data()
            .map_err(|e| Error::io("fdatasync", &path, e))?;
        seg.len = at;
    }
    // What is kept is the prefix before `start`, then whole lines.
    seg.ends_clean = !good.is_empty() || start == 0 || data[start_us - 1] == b'\n';
    Ok(seg)
}

/// Takes the directory's lock (held by the returned file as long as it is open).
fn lock(dir: &Path) -> Result<File, Error> {
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("flock", &lock_path, e)),
    }
}

/// Lists segment ids (sorted), deleting leftover temp files and the segments the
/// checkpoint has passed.
fn segments(dir: &Path, first: u64) -> Result<Vec<u64>, Error> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let fname = entry.file_name();
        let fname = fname.to_string_lossy();
        if let Some(id) = parse_segment_name(&fname) {
            ids.push(id);
        } else if fname.starts_with("segment-") && fname.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
    ids.sort_unstable();
    for &id in ids.iter().filter(|id| **id < first) {
        let p = dir.join(segment_name(id));
        fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
    }
    ids.retain(|id| *id >= first);
    Ok(ids)
}

/// Recovers the directory; returns the writer (holding the lock) and the in-memory state.
pub(crate) fn recover(dir: &Path, opts: &Options) -> Result<(SegWriter, State), Error> {
    let name = &opts.name;
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let lock = lock(dir)?;

    let _ = fs::remove_file(dir.join(checkpoint::TMP));
    let (ckpt, ckpt_damaged) = match checkpoint::read(dir) {
        Ok(c) => (c, false),
        Err(why) => {
            tracing::warn!(sink = %name, reason = %why, "spool checkpoint unreadable, replaying from the first segment");
            (None, true)
        }
    };
    let c = ckpt.unwrap_or_default();
    let ids = segments(dir, c.segment)?;

    let mut committed = match ids.first() {
        Some(&first) if first == c.segment => Position {
            segment: first,
            offset: c.offset,
        },
        Some(&first) => Position {
            segment: first,
            offset: 0,
        },
        None => Position {
            segment: c.segment.max(1),
            offset: 0,
        },
    };

    let mut st = State {
        segments: Default::default(),
        active: 0,
        committed,
        last_seq: c.last_seq,
        records: 0,
        bytes: 0,
        oldest_ms: None,
        quarantined: 0,
        quarantine_marks: Default::default(),
        closed: false,
        failure: None,
    };
    let mut max_seq = c.last_seq;
    let mut dir_dirty = false;
    let mut last_clean = true;

    for &id in &ids {
        let start = if id == committed.segment {
            committed.offset
        } else {
            0
        };
        let seg = recover_segment(dir, id, start, name)?;
        if id == committed.segment {
            committed.offset = seg.start;
        }
        max_seq = max_seq.max(seg.max_seq);
        st.records += seg.records;
        st.bytes += seg.bytes;
        if st.oldest_ms.is_none() {
            st.oldest_ms = seg.oldest_ms;
        }
        st.quarantined += seg.quarantined;
        dir_dirty |= seg.rewritten;
        last_clean = seg.ends_clean;
        st.segments.insert(id, seg.len);
    }
    st.committed = committed;

    let reuse = ids
        .last()
        .copied()
        .filter(|id| last_clean && st.segments.get(id).copied().unwrap_or(0) < opts.segment_bytes);
    // After the last possible id (only a crafted name gets there) nothing can follow: write
    // on in that segment if it ends clean, else mark it broken, so that appends get
    // `next_segment_id`'s error; either way `open` succeeds and what is there stays readable.
    let (active, broken) = match (reuse, ids.last()) {
        (Some(id), _) => (id, false),
        (None, None) => (committed.segment, false),
        (None, Some(&last)) => last
            .checked_add(1)
            .map_or((last, !last_clean), |n| (n, false)),
    };
    let path = dir.join(segment_name(active));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    if reuse.is_none() {
        dir_dirty = true;
    }
    let len = *st.segments.entry(active).or_insert(0);
    if !st.segments.contains_key(&st.committed.segment) {
        st.committed = Position {
            segment: active,
            offset: 0,
        };
    }
    st.active = active;
    if dir_dirty {
        sync_dir(dir)?;
    }

    // Rule 4: the position the readers start from is the one on disk before any append.
    let moved =
        ckpt.is_some_and(|c| (c.segment, c.offset) != (st.committed.segment, st.committed.offset));
    if ckpt_damaged || moved {
        tracing::warn!(sink = %name, segment = st.committed.segment, offset = st.committed.offset, "spool checkpoint rewritten to the recovered position");
        checkpoint::write(
            dir,
            &Checkpoint {
                segment: st.committed.segment,
                offset: st.committed.offset,
                last_seq: st.last_seq,
            },
        )?;
    }

    if st.quarantined > 0 || st.records > 0 {
        tracing::info!(sink = %name, records = st.records, bytes = st.bytes, quarantined = st.quarantined, "spool recovered");
    }
    Ok((
        SegWriter {
            file,
            id: active,
            len,
            next_seq: max_seq.saturating_add(1),
            broken,
            _lock: lock,
        },
        st,
    ))
}
