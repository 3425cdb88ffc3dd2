//! Opening a spool: lock, checkpoint, verification of every unread line, quarantine.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::checkpoint::{self, Checkpoint, sync_dir};
use crate::envelope::to_ms;
use crate::record::{self, LineError};
use crate::spool::{Options, Position, Shared, State, parse_segment_name, segment_name};
use crate::writer::SegWriter;

pub(crate) const LOCK: &str = "spool.lock";
pub(crate) const QUARANTINE: &str = "quarantine.jsonl";

/// One quarantined line, as written to `quarantine.jsonl`.
#[derive(Serialize)]
struct Entry<'a> {
    segment: &'a str,
    offset: u64,
    reason: &'a str,
    quarantined_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_hex: Option<String>,
}

fn append_quarantine(dir: &Path, segment: u64, items: &[(u64, &str, &[u8])]) -> Result<(), Error> {
    if items.is_empty() {
        return Ok(());
    }
    let path = dir.join(QUARANTINE);
    let seg = segment_name(segment);
    let now = to_ms(std::time::SystemTime::now());
    let mut out = Vec::new();
    for (offset, reason, bytes) in items {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let (line, line_hex) = match std::str::from_utf8(bytes) {
            Ok(s) => (Some(s), None),
            Err(_) => (
                None,
                Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        };
        serde_json::to_writer(
            &mut out,
            &Entry {
                segment: &seg,
                offset: *offset,
                reason,
                quarantined_at_ms: now,
                line,
                line_hex,
            },
        )
        .map_err(Error::Serde)?;
        out.push(b'\n');
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    f.write_all(&out)
        .map_err(|e| Error::io("write", &path, e))?;
    f.sync_data().map_err(|e| Error::io("fdatasync", &path, e))
}

/// Quarantines a line found bad while reading (it was good at open: the disk changed).
pub(crate) fn quarantine_at_read(
    shared: &Shared,
    segment: u64,
    offset: u64,
    why: LineError,
    line: &[u8],
) -> Result<(), Error> {
    let pos = Position { segment, offset };
    if !shared.state.lock().quarantine_marks.insert(pos) {
        return Ok(());
    }
    append_quarantine(&shared.dir, segment, &[(offset, why.as_str(), line)])?;
    shared.state.lock().quarantined += 1;
    if let Some(m) = &shared.metrics {
        m.quarantined.inc();
    }
    tracing::warn!(sink = %shared.opts.name, segment, offset, reason = why.as_str(), "corrupt spool line quarantined");
    Ok(())
}

/// Quarantines a verified record whose payload the sink cannot decode.
pub(crate) fn quarantine_record(
    shared: &Shared,
    record: &crate::SpooledRecord,
    reason: &str,
) -> Result<(), Error> {
    if !shared.state.lock().quarantine_marks.insert(record.position) {
        return Ok(());
    }
    let mut line = Vec::new();
    record::encode(
        &mut line,
        record.id,
        record.seq,
        to_ms(record.timestamp),
        crc32c::crc32c(&record.payload),
        &record.payload,
    );
    append_quarantine(
        &shared.dir,
        record.position.segment,
        &[(record.position.offset, reason, &line)],
    )?;
    shared.state.lock().quarantined += 1;
    if let Some(m) = &shared.metrics {
        m.quarantined.inc();
    }
    tracing::warn!(sink = %shared.opts.name, segment = record.position.segment, offset = record.position.offset, reason, "undecodable spool record quarantined");
    Ok(())
}

/// Recovers the directory; returns the writer (holding the lock) and the in-memory state.
pub(crate) fn recover(dir: &Path, opts: &Options) -> Result<(SegWriter, State), Error> {
    let name = &opts.name;
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let lock_path = dir.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                dir: dir.to_path_buf(),
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(Error::io("flock", &lock_path, e)),
    }

    let _ = fs::remove_file(dir.join(checkpoint::TMP));
    let ckpt = match checkpoint::read(dir) {
        Ok(c) => c.unwrap_or_default(),
        Err(why) => {
            // Re-sending everything is safe (replay is idempotent by id); wedging is not.
            tracing::warn!(sink = %name, reason = %why, "spool checkpoint unreadable, replaying from the first segment");
            Checkpoint::default()
        }
    };

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
    for &id in ids.iter().filter(|id| **id < ckpt.segment) {
        let p = dir.join(segment_name(id));
        fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
    }
    ids.retain(|id| *id >= ckpt.segment);

    let mut committed = match ids.first() {
        Some(&first) if first == ckpt.segment => Position {
            segment: first,
            offset: ckpt.offset,
        },
        Some(&first) => Position {
            segment: first,
            offset: 0,
        },
        None => Position {
            segment: ckpt.segment.max(1),
            offset: 0,
        },
    };

    let mut st = State {
        segments: Default::default(),
        active: 0,
        committed,
        last_seq: ckpt.last_seq,
        records: 0,
        bytes: 0,
        oldest_ms: None,
        quarantined: 0,
        quarantine_marks: Default::default(),
        closed: false,
    };
    let mut max_seq = ckpt.last_seq;
    let mut dir_dirty = false;

    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == ids.len();
        let path = dir.join(segment_name(id));
        let data = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let len = data.len() as u64;
        let mut start = if id == committed.segment {
            committed.offset
        } else {
            0
        };
        if start > len {
            tracing::warn!(sink = %name, segment = id, offset = start, len, "checkpoint is past the end of its segment");
            start = len;
        }
        if start > 0 && data[start as usize - 1] != b'\n' {
            // The checkpoint does not sit on a line boundary: it is damaged. Skip to the next
            // line rather than guess; the partial line was before the checkpoint.
            tracing::warn!(sink = %name, segment = id, offset = start, "checkpoint is not on a line boundary");
            start = data[start as usize..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(len, |p| start + p as u64 + 1);
        }
        if id == committed.segment {
            committed.offset = start;
            st.committed = committed;
        }

        let mut good: Vec<(usize, usize)> = Vec::new();
        let mut bad: Vec<(u64, &str, &[u8])> = Vec::new();
        let mut torn_at = None;
        let mut off = start as usize;
        while off < data.len() {
            let end = data[off..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| off + p + 1);
            match end {
                Some(end) => {
                    match record::decode(&data[off..end - 1]) {
                        Ok(l) => {
                            max_seq = max_seq.max(l.seq);
                            st.records += 1;
                            st.bytes += (end - off) as u64;
                            st.oldest_ms.get_or_insert(l.ts_ms);
                            good.push((off, end));
                        }
                        Err(e) => bad.push((off as u64, e.as_str(), &data[off..end])),
                    }
                    off = end;
                }
                None if is_last => {
                    torn_at = Some(off);
                    break;
                }
                None => {
                    bad.push((off as u64, "incomplete line", &data[off..]));
                    off = data.len();
                }
            }
        }

        let mut new_len = len;
        if !bad.is_empty() {
            append_quarantine(dir, id, &bad)?;
            st.quarantined += bad.len() as u64;
            for (offset, reason, _) in &bad {
                tracing::warn!(sink = %name, segment = id, offset, reason, "corrupt spool line quarantined");
            }
            // Rewrite the segment without the bad lines. The consumed prefix is kept byte for
            // byte so the checkpoint's offset stays valid.
            let mut out = data[..start as usize].to_vec();
            for (a, b) in &good {
                out.extend_from_slice(&data[*a..*b]);
            }
            let tmp = dir.join(format!("{}.tmp", segment_name(id)));
            let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
            f.write_all(&out).map_err(|e| Error::io("write", &tmp, e))?;
            f.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
            drop(f);
            fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
            dir_dirty = true;
            new_len = out.len() as u64;
        } else if let Some(at) = torn_at {
            tracing::warn!(sink = %name, segment = id, offset = at, bytes = len - at as u64, "torn last line truncated");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            f.set_len(at as u64)
                .map_err(|e| Error::io("truncate", &path, e))?;
            f.sync_data()
                .map_err(|e| Error::io("fdatasync", &path, e))?;
            new_len = at as u64;
        }
        st.segments.insert(id, new_len);
    }
    // A torn tail of the last segment after bad lines were rewritten: the rewrite dropped it.

    let reuse = ids
        .last()
        .copied()
        .filter(|id| st.segments.get(id).copied().unwrap_or(0) < opts.segment_bytes);
    let active = match reuse {
        Some(id) => id,
        None => ids.last().map_or(committed.segment, |last| last + 1),
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
    if st.quarantined > 0 || st.records > 0 {
        tracing::info!(sink = %name, records = st.records, bytes = st.bytes, quarantined = st.quarantined, "spool recovered");
    }
    Ok((
        SegWriter {
            file,
            id: active,
            len,
            next_seq: max_seq + 1,
            broken: false,
            _lock: lock,
        },
        st,
    ))
}
