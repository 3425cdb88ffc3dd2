//! Regression tests for damage to a closed spool (issue 13 §1): each one failed before its fix.

use std::fs;
use std::path::{Path, PathBuf};

use seawall_fallback_sink::{Durability, Envelope, Spool};
use uuid::Uuid;

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("segment-") && n.ends_with(".jsonl")
        })
        .collect();
    v.sort();
    v
}

async fn open(dir: &Path) -> Spool {
    Spool::builder(dir)
        .durability(Durability::Never)
        .open()
        .await
        .unwrap()
}

/// Appends `n` records with payloads `first..first + n`; returns their ids.
async fn append(spool: &Spool, first: u64, n: u64) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for i in first..first + n {
        let e = Envelope::new(i);
        ids.push(e.id);
        spool.append(&e).await.unwrap();
    }
    ids
}

/// Reads and commits everything left; returns (id, payload) pairs.
async fn drain(spool: &Spool) -> Vec<(Uuid, u64)> {
    let mut out = Vec::new();
    loop {
        let b = spool.read_batch(7).await.unwrap();
        if b.is_noop() {
            return out;
        }
        for r in &b.records {
            out.push((r.id, r.decode::<u64>().unwrap().payload));
        }
        spool.commit(&b).await.unwrap();
    }
}

/// Writes 10 records, commits the first `consumed`, closes; returns all ids.
async fn spool_with_checkpoint(dir: &Path, consumed: usize) -> Vec<Uuid> {
    let spool = open(dir).await;
    let ids = append(&spool, 0, 10).await;
    if consumed > 0 {
        let b = spool.read_batch(consumed).await.unwrap();
        assert_eq!(b.records.len(), consumed);
        spool.commit(&b).await.unwrap();
    }
    spool.close().await.unwrap();
    ids
}

fn checkpoint_offset(dir: &Path) -> usize {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
    v["offset"].as_u64().unwrap() as usize
}

#[tokio::test]
async fn damaged_newline_before_the_checkpoint_does_not_skip_the_next_record() {
    for damage in [|b: &mut u8| *b ^= 0x01, |b: &mut u8| *b = 0] {
        let dir = tempfile::tempdir().unwrap();
        let ids = spool_with_checkpoint(dir.path(), 4).await;
        let seg = segments(dir.path())[0].clone();
        let mut data = fs::read(&seg).unwrap();
        let off = checkpoint_offset(dir.path());
        assert_eq!(data[off - 1], b'\n');
        damage(&mut data[off - 1]);
        fs::write(&seg, &data).unwrap();

        let spool = open(dir.path()).await;
        let got: Vec<Uuid> = drain(&spool).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            got,
            ids[4..],
            "the first unread record is intact and must come back"
        );
        spool.close().await.unwrap();
    }
}

#[tokio::test]
async fn appends_after_a_truncation_below_the_checkpoint_survive_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    spool_with_checkpoint(dir.path(), 10).await;
    let seg = segments(dir.path())[0].clone();
    let data = fs::read(&seg).unwrap();
    fs::write(&seg, &data[..data.len() / 2]).unwrap();

    let spool = open(dir.path()).await;
    assert_eq!(drain(&spool).await, []);
    let later = append(&spool, 100, 10).await;
    spool.close().await.unwrap();

    let spool = open(dir.path()).await;
    let got: Vec<Uuid> = drain(&spool).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, later, "every acknowledged append must be read back");
    spool.close().await.unwrap();
}

#[tokio::test]
async fn the_checksum_covers_id_seq_and_timestamp() {
    // One changed digit in each identifying field; none may come back as another record.
    for field in ["\"id\":\"", "\"seq\":", "\"ts\":"] {
        let dir = tempfile::tempdir().unwrap();
        let ids = spool_with_checkpoint(dir.path(), 0).await;
        let seg = segments(dir.path())[0].clone();
        let mut data = fs::read(&seg).unwrap();
        let line3 = data
            .split(|b| *b == b'\n')
            .take(3)
            .map(|l| l.len() + 1)
            .sum::<usize>();
        let at = line3
            + data[line3..]
                .windows(field.len())
                .position(|w| w == field.as_bytes())
                .unwrap()
            + field.len()
            + 1;
        data[at] = if data[at] == b'1' { b'2' } else { b'1' };
        fs::write(&seg, &data).unwrap();

        let spool = open(dir.path()).await;
        let got = drain(&spool).await;
        let want: Vec<(Uuid, u64)> = (0..10u64)
            .filter(|i| *i != 3)
            .map(|i| (ids[i as usize], i))
            .collect();
        assert_eq!(got, want, "damage in {field} must be detected");
        assert_eq!(
            spool.stats().quarantined,
            1,
            "damage in {field} is quarantined"
        );
        spool.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_complete_record_whose_newline_is_damaged_is_kept() {
    // The last line's newline removed, flipped or zeroed; then a middle line's newline.
    for (line, damage) in [
        (9usize, None),
        (9, Some(b'x')),
        (9, Some(0u8)),
        (4, Some(b'x')),
        (4, Some(0)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ids = spool_with_checkpoint(dir.path(), 0).await;
        let seg = segments(dir.path())[0].clone();
        let mut data = fs::read(&seg).unwrap();
        let nl = data
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line)
            .unwrap()
            .0;
        match damage {
            None => {
                data.remove(nl);
            }
            Some(b) => data[nl] = b,
        }
        fs::write(&seg, &data).unwrap();

        let spool = open(dir.path()).await;
        let got: Vec<Uuid> = drain(&spool).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, ids, "line {line}, newline -> {damage:?}");
        // Later appends are not glued to the repaired line.
        let later = append(&spool, 100, 2).await;
        spool.close().await.unwrap();
        let spool = open(dir.path()).await;
        let got: Vec<Uuid> = drain(&spool).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, later);
        assert_eq!(spool.stats().quarantined, 0);
        spool.close().await.unwrap();
    }
}

/// The name of the segment with the last possible id.
fn last_possible_segment(dir: &Path) -> PathBuf {
    dir.join(format!("segment-{:020}.jsonl", u64::MAX))
}

/// Writes a checkpoint, with a valid checksum (it covers `segment:offset:last_seq`), at
/// `offset` in the last possible segment.
fn checkpoint_in_last_possible_segment(dir: &Path, offset: u64) {
    let max = u64::MAX;
    let crc = crc32c::crc32c(format!("{max}:{offset}:0").as_bytes());
    fs::write(
        dir.join("checkpoint.json"),
        format!(r#"{{"segment":{max},"offset":{offset},"last_seq":0,"crc":{crc}}}"#),
    )
    .unwrap();
}

/// Opens `dir` with small segments, so that a few records fill one.
async fn open_small(dir: &Path) -> Spool {
    Spool::builder(dir)
        .durability(Durability::Never)
        .segment_bytes(300)
        .open()
        .await
        .unwrap()
}

/// Appends `first..first + n`; returns the ids acknowledged, and checks that every refusal
/// says why.
async fn append_refusable(spool: &Spool, first: u64, n: u64) -> (Vec<Uuid>, usize) {
    let (mut acked, mut refused) = (Vec::new(), 0);
    for i in first..first + n {
        let e = Envelope::new(i);
        match spool.append(&e).await {
            Ok(_) => acked.push(e.id),
            Err(err) => {
                assert!(
                    err.to_string().contains("no segment id follows"),
                    "unexpected error: {err}"
                );
                refused += 1;
            }
        }
    }
    (acked, refused)
}

/// Found by an outside probe: a stray `u64::MAX` segment made the next rotation add with
/// overflow. The writer panicked (debug builds), or wrapped to segment 0 (release), after which
/// acknowledged records were read out of order, or dropped as consumed on the next open.
#[tokio::test]
async fn segment_ids_never_wrap_after_a_stray_last_possible_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(last_possible_segment(dir), b"").unwrap();
    let spool = open_small(dir).await;
    let (mut acked, _) = append_refusable(&spool, 0, 1).await;
    assert_eq!(acked.len(), 1);
    let b = spool.read_batch(1).await.unwrap();
    spool.commit(&b).await.unwrap();
    acked.clear();
    let (more, refused) = append_refusable(&spool, 1, 6).await;
    acked.extend(more);
    assert!(refused > 0, "the segment filled, and no id follows it");
    assert!(!acked.is_empty(), "records that fit were written");
    // The spool is still open: a refused rotation does not kill the writer.
    assert!(spool.stats().records >= acked.len() as u64);
    spool.close().await.unwrap();
    assert_eq!(
        segments(dir),
        vec![last_possible_segment(dir)],
        "no wrapped segment"
    );

    let spool = open_small(dir).await;
    let got: Vec<Uuid> = drain(&spool).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, acked, "every acknowledged record, in order");
    spool.close().await.unwrap();
}

/// A full segment with the last possible id (copied or renamed there): `open` succeeds, its
/// records are read, and appends are refused with the reason.
#[tokio::test]
async fn a_full_last_possible_segment_opens_and_is_read() {
    let src = tempfile::tempdir().unwrap();
    let spool = open_small(src.path()).await;
    let ids = append(&spool, 0, 3).await;
    spool.close().await.unwrap();
    let seg = segments(src.path());
    assert_eq!(
        seg.len(),
        2,
        "three records filled the first 300-byte segment"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut in_first = Vec::new();
    fs::copy(&seg[0], last_possible_segment(dir)).unwrap();
    // Exactly full: `open` does not write on in it, and looks for the id after it.
    let full = fs::metadata(&seg[0]).unwrap().len();
    let spool = Spool::builder(dir)
        .durability(Durability::Never)
        .segment_bytes(full)
        .open()
        .await
        .unwrap();
    for (id, _) in drain(&spool).await {
        in_first.push(id);
    }
    assert!(!in_first.is_empty());
    assert_eq!(in_first[..], ids[..in_first.len()]);
    let (acked, refused) = append_refusable(&spool, 10, 2).await;
    assert_eq!(
        (acked.len(), refused),
        (0, 2),
        "the segment is full and nothing follows it"
    );
    spool.close().await.unwrap();
}

/// A checkpoint (with a valid checksum) at the last possible segment, with no segments.
#[tokio::test]
async fn a_checkpoint_at_the_last_possible_segment_never_wraps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    checkpoint_in_last_possible_segment(dir, 0);
    let spool = open_small(dir).await;
    let (acked, refused) = append_refusable(&spool, 0, 6).await;
    assert!(!acked.is_empty() && refused > 0);
    spool.close().await.unwrap();
    let spool = open_small(dir).await;
    let got: Vec<Uuid> = drain(&spool).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(got, acked);
    spool.close().await.unwrap();
}

/// The last possible segment cut mid-line at the checkpoint: nothing may be appended after the
/// partial line, and no segment can follow it, so `open` succeeds and appends are refused.
#[tokio::test]
async fn a_last_possible_segment_cut_mid_line_opens_and_refuses_appends() {
    let src = tempfile::tempdir().unwrap();
    let spool = open_small(src.path()).await;
    append(&spool, 0, 1).await;
    spool.close().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::copy(&segments(src.path())[0], last_possible_segment(dir)).unwrap();
    checkpoint_in_last_possible_segment(dir, 5);
    let spool = open_small(dir).await;
    assert!(drain(&spool).await.is_empty());
    let (acked, refused) = append_refusable(&spool, 1, 2).await;
    assert_eq!((acked.len(), refused), (0, 2));
    spool.close().await.unwrap();
}
