//! `io_on_runtime_thread(true)`: the writer runs each group's write and fdatasync on its own
//! runtime thread; by default it leaves the runtime for them (`block_in_place`, staying out
//! while appenders keep coming, on a multi-thread runtime; the blocking pool on a
//! `current_thread` one). Everything the spool promises must hold the same in every mode:
//! every acknowledged record is stored once, in sequence order, on both runtime flavors and
//! under every durability policy, across segment rotations, and a full spool refuses cleanly.
//! (The SIGKILL test in `crash.rs` alternates between both modes.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use seawall_fallback_sink::{Durability, Envelope, Error, Metrics, Spool};

const WRITERS: u64 = 8;
const EACH: u64 = 40;

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

/// `seawall_fallback_sink_spool_syncs_total`, read from the registry's text.
fn syncs(registry: &Registry) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find(|l| l.starts_with("seawall_fallback_sink_spool_syncs_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap()
}

/// 8 concurrent appenders, 40 records each, with small segments (so rotations happen on the
/// runtime thread too), in each writer mode; then the spool is reopened in the default mode
/// and drained.
fn appends_are_all_stored_once_in_order(multi_thread: bool, durability: Durability) {
    // Both writer modes: on the runtime thread, and the default (`block_in_place` and the
    // busy loop between groups on a multi-thread runtime, the blocking pool otherwise).
    for on_runtime in [true, false] {
        stored_once_in_order(multi_thread, durability, on_runtime);
    }
}

fn stored_once_in_order(multi_thread: bool, durability: Durability, on_runtime: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(multi_thread);
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let acked: Vec<(u64, u64)> = rt.block_on(async {
        let spool = Arc::new(
            Spool::builder(dir.path())
                .durability(durability)
                .segment_bytes(2 << 10)
                .metrics(&metrics)
                .io_on_runtime_thread(on_runtime)
                .open()
                .await
                .unwrap(),
        );
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..EACH {
                        let n = w * EACH + i;
                        let seq = spool.append(&Envelope::new(n)).await.unwrap();
                        seqs.push((seq, n));
                    }
                    seqs
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            let seqs = t.await.unwrap();
            // One appender's records keep its order.
            assert!(seqs.windows(2).all(|p| p[0].0 < p[1].0), "{seqs:?}");
            acked.extend(seqs);
        }
        assert_eq!(spool.stats().records, WRITERS * EACH);
        spool.close().await.unwrap();
        acked
    });
    let seqs: BTreeSet<u64> = acked.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len() as u64, WRITERS * EACH, "a sequence number twice");
    let written = syncs(&registry);
    match durability {
        Durability::Always => assert!(written >= WRITERS * EACH, "{written} fdatasyncs"),
        Durability::Batch { .. } => assert!(written >= 1, "no fdatasync"),
        Durability::Never => {}
    }

    // Reopened in the default mode: every acknowledged record, once, in sequence order.
    let back = rt.block_on(async {
        let spool = Spool::open(dir.path()).await.unwrap();
        let mut back = Vec::new();
        loop {
            let b = spool.read_batch(64).await.unwrap();
            if b.is_noop() {
                break;
            }
            for r in &b.records {
                back.push((r.seq, r.decode::<u64>().unwrap().payload));
            }
            spool.commit(&b).await.unwrap();
        }
        spool.close().await.unwrap();
        back
    });
    let mut expected = acked;
    expected.sort_unstable();
    assert_eq!(back, expected);
}

#[test]
fn current_thread_always() {
    appends_are_all_stored_once_in_order(false, Durability::Always);
}

#[test]
fn current_thread_batch() {
    appends_are_all_stored_once_in_order(false, Durability::default());
}

#[test]
fn current_thread_never() {
    appends_are_all_stored_once_in_order(false, Durability::Never);
}

#[test]
fn multi_thread_always() {
    appends_are_all_stored_once_in_order(true, Durability::Always);
}

#[test]
fn multi_thread_batch() {
    appends_are_all_stored_once_in_order(true, Durability::default());
}

#[test]
fn multi_thread_batch_with_delay() {
    appends_are_all_stored_once_in_order(
        true,
        Durability::Batch {
            max_records: 4,
            max_delay: Duration::from_millis(1),
        },
    );
}

#[test]
fn multi_thread_never() {
    appends_are_all_stored_once_in_order(true, Durability::Never);
}

#[tokio::test]
async fn a_full_spool_refuses_and_keeps_what_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::builder(dir.path())
        .max_bytes(600)
        .segment_bytes(600)
        .io_on_runtime_thread(true)
        .open()
        .await
        .unwrap();
    let mut stored = 0;
    let err = loop {
        match spool.append(&Envelope::new("x".repeat(100))).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "never full");
    };
    assert!(matches!(err, Error::Full { .. }), "{err:?}");
    assert!(stored >= 1);
    assert_eq!(spool.stats().records, stored);
    spool.close().await.unwrap();
    let spool = Spool::open(dir.path()).await.unwrap();
    assert_eq!(
        spool.read_batch(100).await.unwrap().records.len() as u64,
        stored
    );
}

/// On a multi-thread runtime appends never need the blocking pool, with the option on (the
/// I/O runs on the writer's runtime thread) or off (the writer's thread leaves the runtime in
/// `block_in_place`, whose hand-off of its scheduler may wait for a pool thread, but the
/// writer does not): with the pool's only thread held busy, appends (and their fdatasyncs)
/// still complete. Had the writer sent its I/O to the pool it would wait for that thread; the
/// test's timeout (real time: the disk is real) would then fail it.
#[test]
fn appends_do_not_wait_for_the_blocking_pool() {
    appends_without_the_blocking_pool(true);
    appends_without_the_blocking_pool(false);
}

fn appends_without_the_blocking_pool(on_runtime: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let spool = Spool::builder(dir.path())
            .durability(Durability::Always)
            .io_on_runtime_thread(on_runtime)
            .open()
            .await
            .unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (busy, is_busy) = tokio::sync::oneshot::channel();
        let blocker = tokio::task::spawn_blocking(move || {
            busy.send(()).unwrap();
            held.recv().unwrap();
        });
        is_busy.await.unwrap();
        let appends = async {
            for i in 0..20u64 {
                spool.append(&Envelope::new(i)).await.unwrap();
            }
        };
        let done = tokio::time::timeout(Duration::from_secs(30), appends).await;
        release.send(()).unwrap();
        blocker.await.unwrap();
        assert!(
            done.is_ok(),
            "appends waited for the busy blocking pool (io_on_runtime_thread = {on_runtime})"
        );
        assert_eq!(spool.stats().records, 20);
        spool.close().await.unwrap();
    });
}

/// The default writer's stay outside the runtime is bounded: with appends arriving without a
/// pause from four threads of other runtimes, dropping the spool's own runtime still finishes
/// (its writer task must come back to its runtime to be cancelled; had it kept serving while
/// appends kept coming, the drop would wait for as long as the appenders run). Real time (the
/// disk is real): the drop gets 30 s.
#[test]
fn a_runtime_drop_is_not_held_up_by_a_steady_stream_of_appends() {
    let dir = tempfile::tempdir().unwrap();
    let own = runtime(true);
    let spool = Arc::new(
        own.block_on(
            Spool::builder(dir.path())
                .durability(Durability::Always)
                .open(),
        )
        .unwrap(),
    );
    // Four appenders, so that one is nearly always queued while the writer syncs another.
    let (started, is_started) = std::sync::mpsc::channel();
    let appenders: Vec<_> = (0..4u64)
        .map(|a| {
            let spool = spool.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                let other = runtime(false);
                let mut acked = 0u64;
                loop {
                    match other.block_on(spool.append(&Envelope::new(a))) {
                        Ok(_) => acked += 1,
                        Err(_) => break acked,
                    }
                    if acked == 20 {
                        started.send(()).unwrap();
                    }
                }
            })
        })
        .collect();
    for _ in 0..4 {
        is_started
            .recv_timeout(Duration::from_secs(30))
            .expect("appends started");
    }
    let (dropped, is_dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(own);
        dropped.send(()).unwrap();
    });
    is_dropped
        .recv_timeout(Duration::from_secs(30))
        .expect("the runtime drop waited for the writer while appends kept coming");
    // With its runtime gone the spool refuses, and the appenders stop.
    for a in appenders {
        let acked = a.join().unwrap();
        assert!(acked >= 20, "{acked}");
    }
}
