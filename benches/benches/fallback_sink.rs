//! seawall-fallback-sink: spool append throughput per durability policy, beside a raw
//! `write` + `fdatasync` loop doing the same batching, and replay throughput.
//!
//! - `fallback_sink/append`: ~200-byte JSON records, in records/s (`Throughput::Elements`).
//!   `spool_<policy>/<n>w` appends from `n` concurrent tasks on a 2-worker tokio runtime (the
//!   default: writes and fdatasyncs outside the runtime, in `block_in_place`); `spool_<policy>_rt/<n>w` the same
//!   with `SpoolBuilder::io_on_runtime_thread(true)` (they run on the writer task's thread).
//!   `raw_sync_every_1` is one `write(2)` + `fdatasync` per record (the floor for
//!   `Durability::Always`, and for group commit with one writer); `raw_sync_every_8` writes 8 records
//!   then syncs once (the floor for group commit with 8 writers); `raw_no_sync` only writes
//!   (the floor for `Durability::Never`). All files live in the system temp dir (a real disk here).
//!   Each spool contender prints its records per fdatasync (records appended over
//!   `seawall_fallback_sink_spool_syncs_total`, warm-up included) to stderr.
//! - `fallback_sink/replay`: a spool pre-filled with 5,000 records drained by
//!   `FallbackSink::replay_once` into a primary that accepts everything, in records/s.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use seawall_fallback_sink::{Durability, Envelope, FallbackSink, Metrics, Primary, Spool};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Event {
    user: u64,
    kind: String,
    text: String,
}

fn event(i: u64) -> Event {
    Event {
        user: i,
        kind: "message_answered".to_owned(),
        text: "x".repeat(90),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The exact line bytes the spool writes for `event(i)` (for the raw loops).
fn line(i: u64) -> Vec<u8> {
    let payload = serde_json::to_vec(&event(i)).expect("json");
    let mut out = format!(
        "{{\"v\":2,\"id\":\"{}\",\"seq\":{i},\"ts\":1700000000000,\"payload\":",
        "0190a8c4-0000-7000-8000-000000000000"
    )
    .into_bytes();
    out.extend_from_slice(&payload);
    // The spool's line format (version 2); the checksum's value does not matter here.
    out.extend_from_slice(b",\"crc\":123456789}\n");
    out
}

/// `seawall_fallback_sink_spool_syncs_total` from `registry` (one sink registered).
fn spool_syncs(registry: &Registry) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find(|l| l.starts_with("seawall_fallback_sink_spool_syncs_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("fallback_sink/append");
    g.throughput(Throughput::Elements(1));
    eprintln!("record line: {} bytes", line(12345).len());

    let batch = Durability::Batch {
        max_records: 64,
        max_delay: Duration::ZERO,
    };
    for (label, sync) in [
        ("always", Durability::Always),
        ("batch", batch),
        ("never", Durability::Never),
    ] {
        for (writers, on_runtime) in [(1u64, false), (8, false), (1, true), (8, true)] {
            let rt_suffix = if on_runtime { "_rt" } else { "" };
            let name = format!("spool_{label}{rt_suffix}/{writers}w");
            // Over every spool criterion opens for this contender (warm-up included).
            let appended = Arc::new(AtomicU64::new(0));
            let mut syncs = 0;
            g.bench_function(&name, |b| {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut registry = Registry::default();
                let metrics = Metrics::register(&mut registry);
                let spool = Arc::new(
                    rt.block_on(
                        Spool::builder(dir.path())
                            .metrics(&metrics)
                            .durability(sync)
                            .max_bytes(64 << 30)
                            .segment_bytes(64 << 20)
                            .io_on_runtime_thread(on_runtime)
                            .open(),
                    )
                    .expect("open"),
                );
                b.iter_custom(|iters| {
                    let spool = spool.clone();
                    let appended = appended.clone();
                    rt.block_on(async move {
                        let per = iters.div_ceil(writers);
                        appended.fetch_add(per * writers, Ordering::Relaxed);
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..writers)
                            .map(|w| {
                                let spool = spool.clone();
                                tokio::spawn(async move {
                                    for i in 0..per {
                                        let e = Envelope::new(event(w * per + i));
                                        black_box(spool.append(&e).await.expect("append"));
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task");
                        }
                        start.elapsed()
                    })
                });
                syncs += spool_syncs(&registry);
                rt.block_on(spool.close()).expect("close");
            });
            let appended = appended.load(Ordering::Relaxed);
            if appended == 0 {
                continue; // filtered out
            }
            eprintln!(
                "{name}: {appended} records, {syncs} fdatasyncs, {:.2} records/fdatasync",
                appended as f64 / syncs.max(1) as f64
            );
        }
    }

    for (label, every) in [
        ("raw_sync_every_1", Some(1u64)),
        ("raw_sync_every_8", Some(8)),
        ("raw_no_sync", None),
    ] {
        g.bench_function(label, |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut f: File = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("raw.jsonl"))
                .expect("open");
            let lines: Vec<Vec<u8>> = (0..64).map(line).collect();
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut buf = Vec::new();
                for i in 0..iters {
                    buf.extend_from_slice(&lines[(i % 64) as usize]);
                    let flush = every.is_none_or(|n| (i + 1) % n == 0) || i + 1 == iters;
                    if flush {
                        f.write_all(&buf).expect("write");
                        buf.clear();
                        if every.is_some() {
                            f.sync_data().expect("fdatasync");
                        }
                    }
                }
                start.elapsed()
            });
        });
    }
    g.finish();
}

struct Accept;

impl Primary<Event> for Accept {
    type Error = std::io::Error;
    async fn write_batch(&self, records: &[Envelope<Event>]) -> Result<(), Self::Error> {
        black_box(records.len());
        Ok(())
    }
}

fn replay(c: &mut Criterion) {
    const N: u64 = 5_000;
    let rt = runtime();
    let mut g = c.benchmark_group("fallback_sink/replay");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("replay_once_5000", |b| {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = rt
            .block_on(
                FallbackSink::builder(dir.path())
                    .name("bench")
                    .durability(Durability::Never)
                    .background_replay(false)
                    .replay_batch(256)
                    .open(Accept),
            )
            .expect("open");
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    for i in 0..N {
                        sink.spool()
                            .append(&Envelope::new(event(i)))
                            .await
                            .expect("append");
                    }
                    let start = Instant::now();
                    let n = sink.replay_once().await.expect("replay");
                    total += start.elapsed();
                    assert_eq!(n, N);
                });
            }
            total
        });
        rt.block_on(sink.shutdown()).expect("shutdown");
    });
    g.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
