//! The quarantine file: every byte range the spool will not deliver, with where it was.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::Error;
use crate::envelope::to_ms;
use crate::layout::{Position, QUARANTINE, segment_name};
use crate::record::LineError;
use crate::state::Shared;

/// One quarantined byte range, as written to `quarantine.jsonl`.
#[derive(Serialize)]
struct Entry<'a> {
    segment: &'a str,
    offset: u64,
    len: u64,
    reason: &'a str,
    quarantined_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_hex: Option<String>,
}

/// Appends `(offset, reason, bytes)` ranges of `segment` to the quarantine file and syncs it.
pub(crate) fn append(dir: &Path, segment: u64, items: &[(u64, &str, &[u8])]) -> Result<(), Error> {
    if items.is_empty() {
        return Ok(());
    }
    let path = dir.join(QUARANTINE);
    let seg = segment_name(segment);
    let now = to_ms(std::time::SystemTime::now());
    let mut out = Vec::new();
    for (offset, reason, bytes) in items {
        let len = bytes.len() as u64;
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
                len,
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
pub(crate) fn at_read(
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
    append(&shared.dir, segment, &[(offset, why.as_str(), line)])?;
    shared.state.lock().quarantined += 1;
    if let Some(m) = &shared.metrics {
        m.quarantined.inc();
    }
    tracing::warn!(sink = %shared.opts.name, segment, offset, reason = why.as_str(), "corrupt spool line quarantined");
    Ok(())
}

/// Quarantines a verified record (its encoded `line`, at `position`) whose payload the sink
/// cannot decode.
pub(crate) fn record(
    shared: &Shared,
    position: Position,
    line: &[u8],
    reason: &str,
) -> Result<(), Error> {
    if !shared.state.lock().quarantine_marks.insert(position) {
        return Ok(());
    }
    append(
        &shared.dir,
        position.segment,
        &[(position.offset, reason, line)],
    )?;
    shared.state.lock().quarantined += 1;
    if let Some(m) = &shared.metrics {
        m.quarantined.inc();
    }
    tracing::warn!(sink = %shared.opts.name, segment = position.segment, offset = position.offset, reason, "undecodable spool record quarantined");
    Ok(())
}
