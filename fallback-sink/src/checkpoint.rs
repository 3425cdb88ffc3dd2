//! The replay checkpoint: which prefix of the spool the primary has acknowledged.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

pub(crate) const FILE: &str = "checkpoint.json";
pub(crate) const TMP: &str = "checkpoint.json.tmp";

/// What is persisted. `crc` covers the three numbers so a damaged file is detected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) last_seq: u64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    segment: u64,
    offset: u64,
    last_seq: u64,
    crc: u32,
}

fn crc(c: &Checkpoint) -> u32 {
    crc32c::crc32c(format!("{}:{}:{}", c.segment, c.offset, c.last_seq).as_bytes())
}

/// Reads the checkpoint. `Ok(None)` when there is none; `Err(reason)` when it is damaged.
pub(crate) fn read(dir: &Path) -> Result<Option<Checkpoint>, String> {
    let bytes = match fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let d: OnDisk = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let c = Checkpoint {
        segment: d.segment,
        offset: d.offset,
        last_seq: d.last_seq,
    };
    if crc(&c) != d.crc {
        return Err("checksum mismatch".into());
    }
    Ok(Some(c))
}

/// Writes the checkpoint atomically: temp file, fdatasync, rename, fsync of the directory.
/// When this returns `Ok`, the new checkpoint survives a crash.
pub(crate) fn write(dir: &Path, c: &Checkpoint) -> Result<(), Error> {
    let tmp = dir.join(TMP);
    let dst = dir.join(FILE);
    let body = serde_json::to_vec(&OnDisk {
        segment: c.segment,
        offset: c.offset,
        last_seq: c.last_seq,
        crc: crc(c),
    })
    .map_err(Error::Serde)?;
    let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&body)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", &dst, e))?;
    sync_dir(dir)
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), Ok(None));
        let c = Checkpoint {
            segment: 3,
            offset: 4096,
            last_seq: 77,
        };
        write(dir.path(), &c).unwrap();
        assert_eq!(read(dir.path()), Ok(Some(c)));
        assert!(!dir.path().join(TMP).exists());
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        fs::write(dir.path().join(FILE), text.replace("4096", "4097")).unwrap();
        assert_eq!(read(dir.path()), Err("checksum mismatch".to_string()));
        fs::write(dir.path().join(FILE), b"{\"seg").unwrap();
        assert!(read(dir.path()).is_err());
    }
}
