//! `append_here`: where an append is written on the caller's thread (only with
//! `io_on_runtime_thread`), that everything the spool promises still holds when it is, and
//! what the default keeps: appends that a timeout can cut short and that work in a `LocalSet`.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::{Durability, Envelope, Error, Spool};

thread_local! {
    /// Set by a test: the next `append_here` on this thread panics while it holds the segment.
    static PANIC_HERE: Cell<bool> = const { Cell::new(false) };
    /// Set by a test: the next `append_here` on this thread signals, then waits, while it
    /// holds the segment (two waits on the barrier).
    static HOLD_HERE: std::cell::RefCell<Option<Arc<std::sync::Barrier>>> =
        const { std::cell::RefCell::new(None) };
}

/// Called by `append_here` with the segment lock held.
pub(super) fn on_append_here() {
    if PANIC_HERE.with(|p| p.replace(false)) {
        panic!("injected panic in append_here");
    }
    if let Some(hold) = HOLD_HERE.with(|h| h.borrow_mut().take()) {
        hold.wait();
        hold.wait();
    }
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut b = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().unwrap()
}

fn batch(max_delay: Duration) -> Durability {
    Durability::Batch {
        max_records: 8,
        max_delay,
    }
}

/// Opens a spool in `dir` with `durability`, its I/O on the runtime thread if `on_runtime`.
async fn open(dir: &std::path::Path, durability: Durability, on_runtime: bool) -> Spool {
    Spool::builder(dir)
        .durability(durability)
        .io_on_runtime_thread(on_runtime)
        .open()
        .await
        .unwrap()
}

/// Whether `f` is ready at its first poll (then its output).
fn first_poll<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Every sequence number stored in `dir` (reopened).
async fn stored(dir: &std::path::Path) -> BTreeSet<u64> {
    let spool = Spool::open(dir).await.unwrap();
    let batch = spool.read_batch(1 << 20).await.unwrap();
    spool.close().await.unwrap();
    batch.records.iter().map(|r| r.seq).collect()
}

/// An append is written within its first poll exactly where `append_here` says:
/// `io_on_runtime_thread`, `Always` or a `Batch` without `max_delay`, and an idle writer.
/// Elsewhere (the default included) it goes to the writer task.
#[test]
fn an_idle_writer_lets_an_append_write_within_its_first_poll_only_where_it_may() {
    for (multi_thread, durability, on_runtime, here) in [
        (true, Durability::Always, true, true),
        (false, Durability::Always, true, true),
        (true, batch(Duration::ZERO), true, true),
        (false, batch(Duration::ZERO), true, true),
        (true, Durability::Always, false, false),
        (false, Durability::Always, false, false),
        (true, batch(Duration::ZERO), false, false),
        (true, Durability::Never, true, false),
        (true, batch(Duration::from_millis(1)), true, false),
    ] {
        let rt = runtime(multi_thread);
        let dir = tempfile::tempdir().unwrap();
        let case = format!("{multi_thread} {durability:?} {on_runtime}");
        let seqs = rt.block_on(async {
            let spool = open(dir.path(), durability, on_runtime).await;
            // Run on a worker (the test's `block_on` thread is not one).
            let spool = Arc::new(spool);
            let s = spool.clone();
            let first = tokio::spawn(async move {
                let e = Envelope::new(0u64);
                first_poll(s.append(&e)).map(|r| r.unwrap())
            })
            .await
            .unwrap();
            assert_eq!(first.is_some(), here, "{case}");
            // Then the normal path, and both are stored once, in order.
            let second = spool.append(&Envelope::new(1u64)).await.unwrap();
            spool.close().await.unwrap();
            (first, second)
        });
        let all = rt.block_on(stored(dir.path()));
        match seqs {
            (Some(a), b) => {
                assert!(a < b, "{case}");
                assert_eq!(all, BTreeSet::from([a, b]), "{case}");
            }
            (None, b) => assert!(all.contains(&b) && all.len() <= 2, "{case}"),
        }
    }
}

/// A panic while an append holds the segment (there is none by construction; one is
/// injected) fails the spool as a dead writer task does: every later call says why, the
/// directory lock is released, and what was acknowledged before survives.
#[test]
fn a_panic_while_appending_here_fails_the_spool_and_keeps_what_it_had() {
    let rt = runtime(true);
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let spool = Arc::new(open(dir.path(), Durability::Always, true).await);
        let before = spool.append(&Envelope::new(0u64)).await.unwrap();
        let s = spool.clone();
        let crashed = tokio::spawn(async move {
            PANIC_HERE.with(|p| p.set(true));
            s.append(&Envelope::new(1u64)).await
        })
        .await;
        assert!(crashed.unwrap_err().is_panic());
        let e = spool.append(&Envelope::new(2u64)).await.unwrap_err();
        assert!(
            matches!(&e, Error::WriterFailed { cause } if cause.contains("panicked")),
            "{e}"
        );
        assert!(matches!(
            spool.sync().await,
            Err(Error::WriterFailed { .. })
        ));
        assert!(matches!(
            spool.close().await,
            Err(Error::WriterFailed { .. })
        ));
        // The lock is released while the handle still lives: the directory opens again.
        assert_eq!(stored(dir.path()).await, BTreeSet::from([before]));
    });
}

/// Appenders on both paths racing a close: each append is either acknowledged and stored
/// once, or refused with `Closed` and not stored; nothing is written after the close; and
/// no append waits for ever (before `reply::wait` also watched for the writer's end, an
/// append sent as the writer ended hung about once in 60 runs, in both writer modes, and
/// before `append_here` existed too).
#[test]
fn appends_racing_a_close_are_stored_exactly_when_acknowledged() {
    for on_runtime in [false, true] {
        for round in 0..20u64 {
            let rt = runtime(true);
            let dir = tempfile::tempdir().unwrap();
            let acked = rt.block_on(async {
                let spool = Arc::new(open(dir.path(), Durability::Always, on_runtime).await);
                let tasks: Vec<_> = (0..4u64)
                    .map(|a| {
                        let spool = spool.clone();
                        tokio::spawn(async move {
                            let mut acked = Vec::new();
                            loop {
                                match spool.append(&Envelope::new(a)).await {
                                    Ok(seq) => acked.push(seq),
                                    Err(Error::Closed) => break acked,
                                    Err(e) => panic!("{e}"),
                                }
                                tokio::task::yield_now().await;
                            }
                        })
                    })
                    .collect();
                for _ in 0..round {
                    tokio::task::yield_now().await;
                }
                spool.close().await.unwrap();
                let mut acked = BTreeSet::new();
                for t in tasks {
                    for seq in t.await.unwrap() {
                        assert!(acked.insert(seq), "sequence {seq} acknowledged twice");
                    }
                }
                acked
            });
            let all = rt.block_on(stored(dir.path()));
            assert_eq!(
                all, acked,
                "round {round}, io_on_runtime_thread {on_runtime}"
            );
        }
    }
}

/// The segment (and the directory lock) lives in state the handle shares, not in the writer
/// task: when the spool's runtime is dropped with the handle still alive, the lock is still
/// released (the writer task's drop takes the segment), and what was acknowledged survives.
#[test]
fn dropping_the_runtime_releases_the_directory_while_the_handle_lives() {
    let dir = tempfile::tempdir().unwrap();
    let own = runtime(true);
    let spool = own.block_on(async {
        let spool = open(dir.path(), Durability::Always, false).await;
        spool.append(&Envelope::new(0u64)).await.unwrap();
        spool
    });
    drop(own);
    let other = runtime(false);
    assert_eq!(other.block_on(stored(dir.path())).len(), 1);
    drop(spool);
}

/// An unpolled writer task still owns the segment: a `current_thread` runtime dropped right
/// after `open` (its writer task never ran) releases the directory while the handle lives.
#[test]
fn a_writer_task_that_never_ran_still_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let own = runtime(false);
    let spool = own.block_on(Spool::open(dir.path())).unwrap();
    drop(own);
    let other = runtime(false);
    assert!(other.block_on(stored(dir.path())).is_empty());
    drop(spool);
}

/// Appends work inside a `LocalSet` (where `block_in_place` panics), run by a multi-thread
/// runtime's `block_on` (as under `#[tokio::main]`), in both writer modes and under every
/// policy.
#[test]
fn appends_work_inside_a_local_set() {
    for on_runtime in [false, true] {
        for durability in [Durability::Always, batch(Duration::ZERO), Durability::Never] {
            let rt = runtime(true);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            rt.block_on(async move {
                let spool = open(&path, durability, on_runtime).await;
                let local = tokio::task::LocalSet::new();
                local
                    .run_until(async {
                        spool.append(&Envelope::new(1u64)).await.unwrap();
                        tokio::task::spawn_local(async move {
                            spool.append(&Envelope::new(2u64)).await.unwrap();
                            spool.close().await.unwrap();
                        })
                        .await
                        .unwrap();
                    })
                    .await;
            });
            assert_eq!(rt.block_on(stored(dir.path())).len(), 2);
        }
    }
}

/// With `io_on_runtime_thread`, an appender writing in `append_here` blocks its own worker
/// for its fdatasync; the writer task, woken meanwhile by another append, must not block the
/// other worker waiting for the segment. Held here with a barrier: a third task still runs
/// while the first append holds the segment. Real time, because what is checked is that a
/// thread is free: the wait is bounded by 30 s, reached only on failure.
#[test]
fn the_writer_waits_for_an_appender_writing_without_blocking_its_thread() {
    let rt = runtime(true);
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(rt.block_on(open(dir.path(), Durability::Always, true)));
    let hold = Arc::new(std::sync::Barrier::new(2));
    let (h, s) = (hold.clone(), spool.clone());
    let first = rt.spawn(async move {
        HOLD_HERE.with(|c| *c.borrow_mut() = Some(h));
        s.append(&Envelope::new(1u64)).await.unwrap()
    });
    hold.wait(); // the first append holds the segment, on its worker
    let s = spool.clone();
    let second = rt.spawn(async move { s.append(&Envelope::new(2u64)).await.unwrap() });
    // The second append went to the writer (the segment is busy), which now waits for it.
    let (ran, is_ran) = std::sync::mpsc::channel();
    rt.spawn(async move {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        ran.send(()).unwrap();
    });
    let free = is_ran.recv_timeout(Duration::from_secs(30));
    hold.wait();
    free.expect("no worker was free while an append held the segment");
    let (a, b) = rt.block_on(async { (first.await.unwrap(), second.await.unwrap()) });
    assert!(a < b);
    rt.block_on(spool.close()).unwrap();
    assert_eq!(rt.block_on(stored(dir.path())), BTreeSet::from([a, b]));
}
