//! The spool on its own: append, read, commit, limits, locking, recovery from corruption.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use seawall_fallback_sink::{Durability, Envelope, Error, Spool};
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

/// Reads everything left in the spool, committing as it goes; returns the payloads.
async fn drain(spool: &Spool, batch: usize) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let b = spool.read_batch(batch).await.unwrap();
        if b.is_noop() {
            return out;
        }
        for r in &b.records {
            out.push(r.decode::<u64>().unwrap().payload);
        }
        spool.commit(&b).await.unwrap();
    }
}

async fn fill(dir: &Path, n: u64) -> Vec<Uuid> {
    let spool = Spool::builder(dir)
        .durability(Durability::Never)
        .open()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let e = Envelope::new(i);
        ids.push(e.id);
        spool.append(&e).await.unwrap();
    }
    spool.close().await.unwrap();
    ids
}

#[tokio::test]
async fn append_read_commit_in_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::builder(dir.path())
        .durability(Durability::Always)
        .open()
        .await
        .unwrap();
    let mut seqs = Vec::new();
    for i in 0..10u64 {
        seqs.push(spool.append(&Envelope::new(i)).await.unwrap());
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let st = spool.stats();
    assert_eq!(st.records, 10);
    assert_eq!(
        st.bytes,
        fs::metadata(&segments(dir.path())[0]).unwrap().len()
    );
    assert!(st.oldest.is_some());

    let b = spool.read_batch(4).await.unwrap();
    assert_eq!(
        b.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // Reading again without commit returns the same records.
    let again = spool.read_batch(4).await.unwrap();
    assert_eq!(again.records, b.records);
    spool.commit(&b).await.unwrap();
    assert_eq!(spool.stats().records, 6);
    // A batch read before the commit is now stale.
    assert!(matches!(spool.commit(&again).await, Err(Error::StaleBatch)));
    spool.close().await.unwrap();
    assert!(matches!(
        spool.append(&Envelope::new(0u64)).await,
        Err(Error::Closed)
    ));

    let spool = Spool::open(dir.path()).await.unwrap();
    assert_eq!(spool.stats().records, 6);
    assert_eq!(spool.append(&Envelope::new(10u64)).await.unwrap(), 11);
    assert_eq!(drain(&spool, 3).await, (4..=10).collect::<Vec<_>>());
    assert_eq!(spool.stats().records, 0);
    assert_eq!(spool.stats().oldest, None);
    spool.close().await.unwrap();

    // Sequence numbers keep rising after a full drain and reopen.
    let spool = Spool::open(dir.path()).await.unwrap();
    assert_eq!(spool.stats().records, 0);
    assert_eq!(spool.append(&Envelope::new(11u64)).await.unwrap(), 12);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn lines_are_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).await.unwrap();
    let e = Envelope::new(serde_json::json!({"user": "ana", "text": "line\nbreak"}));
    spool.append(&e).await.unwrap();
    spool.close().await.unwrap();
    let text = fs::read_to_string(&segments(dir.path())[0]).unwrap();
    assert_eq!(text.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["id"], e.id.to_string());
    assert_eq!(v["seq"], 1);
    assert_eq!(v["ts"], e.timestamp_ms());
    assert_eq!(v["payload"]["text"], "line\nbreak");
    assert!(v["crc"].is_u64());
}

#[tokio::test]
async fn one_owner_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = Spool::open(dir.path()).await.unwrap();
    match Spool::open(dir.path()).await {
        Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    a.close().await.unwrap();
    let b = Spool::open(dir.path()).await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn full_spool_refuses_then_accepts_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::builder(dir.path())
        .max_bytes(1000)
        .segment_bytes(400)
        .open()
        .await
        .unwrap();
    let mut accepted = 0u64;
    let err = loop {
        match spool.append(&Envelope::new(accepted)).await {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
    };
    let Error::Full {
        bytes,
        record_bytes,
        max_bytes,
    } = err
    else {
        panic!("expected Full, got {err:?}")
    };
    assert_eq!(max_bytes, 1000);
    assert!(bytes + record_bytes > 1000 && bytes <= 1000);
    assert_eq!(spool.stats().records, accepted);
    assert!(accepted >= 8, "{accepted}");
    assert!(segments(dir.path()).len() >= 2);
    // Still full.
    assert!(matches!(
        spool.append(&Envelope::new(0u64)).await,
        Err(Error::Full { .. })
    ));
    // Draining makes room, deletes the passed segments, keeps every accepted record.
    assert_eq!(drain(&spool, 3).await, (0..accepted).collect::<Vec<_>>());
    assert_eq!(segments(dir.path()).len(), 1);
    spool.append(&Envelope::new(99u64)).await.unwrap();
    spool.close().await.unwrap();
}

#[tokio::test]
async fn segments_rotate_and_are_deleted_only_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::builder(dir.path())
        .segment_bytes(300)
        .open()
        .await
        .unwrap();
    for i in 0..20u64 {
        spool.append(&Envelope::new(i)).await.unwrap();
    }
    let n = segments(dir.path()).len();
    assert!(n >= 5, "{n}");
    // Read everything but do not commit: nothing is deleted.
    let b = spool.read_batch(1000).await.unwrap();
    assert_eq!(b.records.len(), 20);
    assert_eq!(segments(dir.path()).len(), n);
    spool.commit(&b).await.unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(spool.stats().segments, 1);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn a_crash_before_the_checkpoint_resends_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    let spool = Spool::open(dir.path()).await.unwrap();
    let b1 = spool.read_batch(4).await.unwrap();
    spool.commit(&b1).await.unwrap();
    let b2 = spool.read_batch(4).await.unwrap();
    let sent: Vec<u64> = b2.records.iter().map(|r| r.seq).collect();
    assert_eq!(sent, [5, 6, 7, 8]);
    // "Crash" after delivering b2, before committing it; also leave a half-written
    // checkpoint temp file behind, as a crash inside the checkpoint write would.
    spool.close().await.unwrap();
    drop(spool);
    fs::write(dir.path().join("checkpoint.json.tmp"), b"{\"segm").unwrap();

    let spool = Spool::open(dir.path()).await.unwrap();
    let again = spool.read_batch(100).await.unwrap();
    let seqs: Vec<u64> = again.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [5, 6, 7, 8, 9, 10]);
    assert!(!dir.path().join("checkpoint.json.tmp").exists());
    spool.close().await.unwrap();
}

#[tokio::test]
async fn damaged_checkpoint_replays_from_the_start_instead_of_wedging() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 5).await;
    let spool = Spool::open(dir.path()).await.unwrap();
    let b = spool.read_batch(3).await.unwrap();
    spool.commit(&b).await.unwrap();
    spool.close().await.unwrap();
    fs::write(dir.path().join("checkpoint.json"), b"\x00\x00garbage").unwrap();
    let spool = Spool::open(dir.path()).await.unwrap();
    assert_eq!(drain(&spool, 10).await, [0, 1, 2, 3, 4]);
    spool.close().await.unwrap();
}

/// Byte ranges of each line of a segment.
fn line_ranges(data: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut start = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            v.push((start, i + 1));
            start = i + 1;
        }
    }
    v
}

fn quarantine_lines(dir: &Path) -> Vec<serde_json::Value> {
    match fs::read_to_string(dir.join("quarantine.jsonl")) {
        Ok(s) => s
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Writes 20 records, damages the segment with `damage` (given the bytes and line ranges,
/// returns which lines it touched), reopens, and checks what comes back.
async fn corruption_case(
    damage: impl FnOnce(&mut Vec<u8>, &[(usize, usize)]) -> BTreeSet<u64>,
    expect_quarantined: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20).await;
    let seg = segments(dir.path())[0].clone();
    let mut data = fs::read(&seg).unwrap();
    let ranges = line_ranges(&data);
    assert_eq!(ranges.len(), 20);
    let touched = damage(&mut data, &ranges);
    fs::write(&seg, &data).unwrap();

    let spool = Spool::open(dir.path())
        .await
        .expect("open never fails on corruption");
    let st = spool.stats();
    assert_eq!(st.quarantined as usize, expect_quarantined);
    let q = quarantine_lines(dir.path());
    assert_eq!(q.len(), expect_quarantined);
    for entry in &q {
        assert!(entry["segment"].as_str().unwrap().starts_with("segment-"));
        assert!(entry["offset"].is_u64());
        assert!(entry["reason"].is_string());
    }
    let got = drain(&spool, 7).await;
    let expected: Vec<u64> = (0..20).filter(|i| !touched.contains(i)).collect();
    assert_eq!(got, expected);
    assert_eq!(spool.stats().records, 0);
    spool.close().await.unwrap();

    // Quarantine happened once: a second open finds a clean spool.
    let spool = Spool::open(dir.path()).await.unwrap();
    assert_eq!(spool.stats().quarantined, 0);
    assert_eq!(quarantine_lines(dir.path()).len(), expect_quarantined);
    spool.close().await.unwrap();
}

#[tokio::test]
async fn corruption_flipped_bytes() {
    corruption_case(
        |data, r| {
            data[r[3].0 + 60] ^= 0x20; // inside the header or payload of line 3
            data[r[11].1 - 3] ^= 0x01; // in the payload of line 11
            [3, 11].into()
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn corruption_truncated_mid_line() {
    // The last line is torn: its bytes are quarantined, then cut off.
    corruption_case(
        |data, r| {
            data.truncate(r[19].0 + 30);
            [19].into()
        },
        1,
    )
    .await;
}

#[tokio::test]
async fn corruption_zeroed_region() {
    corruption_case(
        |data, r| {
            // From the middle of line 5 to the middle of line 7: the newlines of 5 and 6 are
            // gone, so the three records become one bad line.
            let (a, b) = ((r[5].0 + r[5].1) / 2, (r[7].0 + r[7].1) / 2);
            data[a..b].fill(0);
            [5, 6, 7].into()
        },
        1,
    )
    .await;
}

#[tokio::test]
async fn corruption_garbage_appended() {
    corruption_case(
        |data, _| {
            data.extend_from_slice(b"{\"id\":\"not a record\"}\n\xff\xfe garbage\n");
            BTreeSet::new()
        },
        2,
    )
    .await;
}

#[tokio::test]
async fn corruption_garbage_tail_without_newline_is_quarantined() {
    corruption_case(
        |data, _| {
            data.extend_from_slice(b"\x00\x00\x00\x00");
            BTreeSet::new()
        },
        1,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn batch_policy_waits_at_most_max_delay_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let spool = std::sync::Arc::new(
        Spool::builder(dir.path())
            .durability(Durability::Batch {
                max_records: 4,
                max_delay: Duration::from_millis(50),
            })
            .open()
            .await
            .unwrap(),
    );
    // Alone, a record waits the whole max_delay for company.
    let t0 = tokio::time::Instant::now();
    spool.append(&Envelope::new(1u64)).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(50));

    // Four at once fill the group: nobody waits.
    let t0 = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..4u64)
        .map(|i| {
            let s = spool.clone();
            tokio::spawn(async move { s.append(&Envelope::new(i)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(t0.elapsed(), Duration::ZERO);
    spool.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_unique_ordered_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let spool = std::sync::Arc::new(Spool::open(dir.path()).await.unwrap());
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let s = spool.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..100u64 {
                    seqs.push(s.append(&Envelope::new(t * 1000 + i)).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<_>>());
    let b = spool.read_batch(1000).await.unwrap();
    assert_eq!(
        b.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=800).collect::<Vec<_>>()
    );
    // Each writer's records come back in its own order.
    for t in 0..8u64 {
        let mine: Vec<u64> = b
            .records
            .iter()
            .map(|r| r.decode::<u64>().unwrap().payload)
            .filter(|p| p / 1000 == t)
            .collect();
        assert_eq!(mine, (0..100).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
    spool.close().await.unwrap();
}

#[tokio::test]
async fn invalid_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let e = Spool::builder(dir.path())
        .segment_bytes(10)
        .max_bytes(5)
        .open()
        .await
        .unwrap_err();
    let Error::Config(c) = e else { panic!("{e:?}") };
    assert_eq!(c.field(), "segment_bytes");
    let e = Spool::builder(dir.path())
        .durability(Durability::Batch {
            max_records: 0,
            max_delay: Duration::ZERO,
        })
        .open()
        .await
        .unwrap_err();
    let Error::Config(c) = e else { panic!("{e:?}") };
    assert_eq!(c.field(), "durability");
}

#[test]
fn bounds() {
    fn send_sync<T: Send + std::marker::Sync + 'static>(_: &T) {}
    fn is_send<T: Send>(_: &T) {}
    fn types<T: Send + std::marker::Sync + 'static>() {}
    types::<Spool>();
    types::<Error>();
    types::<seawall_fallback_sink::Batch>();
    types::<seawall_fallback_sink::Stats>();
    types::<seawall_fallback_sink::SpoolBuilder>();
    types::<seawall_fallback_sink::Metrics>();
    types::<Envelope<u64>>();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let spool = rt.block_on(Spool::open(dir.path())).unwrap();
    send_sync(&spool);
    let e = Envelope::new(1u64);
    is_send(&spool.append(&e));
    is_send(&spool.read_batch(1));
    is_send(&spool.sync());
    is_send(&spool.close());
    is_send(&Spool::open(dir.path()));
    let b = rt.block_on(spool.read_batch(1)).unwrap();
    is_send(&spool.commit(&b));
    rt.block_on(spool.close()).unwrap();
}

#[tokio::test]
async fn inspect_reports_damage_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10).await;
    let spool = Spool::open(dir.path()).await.unwrap();
    let b = spool.read_batch(4).await.unwrap();
    spool.commit(&b).await.unwrap();
    spool.close().await.unwrap();
    let seg = segments(dir.path())[0].clone();
    let mut data = fs::read(&seg).unwrap();
    let r = line_ranges(&data);
    data[r[6].1 - 3] ^= 0x01;
    data.extend_from_slice(b"{\"id\":");
    fs::write(&seg, &data).unwrap();

    let rep = seawall_fallback_sink::inspect(dir.path()).unwrap();
    assert!(!rep.locked);
    assert_eq!(rep.checkpoint.unwrap().1, 4);
    assert_eq!(rep.segments.len(), 1);
    let s = &rep.segments[0];
    assert_eq!(s.records, 9);
    assert_eq!(s.unread_records, 5);
    assert_eq!(s.seq_range, Some((1, 10)));
    assert_eq!(s.bad_lines, vec![(r[6].0 as u64, "checksum mismatch")]);
    assert_eq!(s.torn_tail, 6);
    assert_eq!(rep.backlog_records(), 5);
    assert_eq!(fs::read(&seg).unwrap(), data, "inspect is read-only");
    assert!(!dir.path().join("quarantine.jsonl").exists());
}
